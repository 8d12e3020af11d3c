import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { Graph, Model, type Node, type Value, type ValueType } from '../../src/ir/core.js';
import { DataType } from '../../src/ir/dtype.js';
import { IrError } from '../../src/ir/errors.js';
import { MS_DOMAIN, Op } from '../../src/ir/ops.js';
import { encodeModel, loadModelSync } from '../../src/ir/serde.js';
import { Tensor } from '../../src/ir/tensor.js';
import { assertValid, verifyModel } from '../../src/ir/verify.js';

const f32 = (...shape: (number | string)[]): ValueType => ({ elemType: DataType.FLOAT, shape });

/** x → Relu → Neg → y, valid; `break_` then damages it. */
function chain(): { model: Model; graph: Graph; x: Value; relu: Node; neg: Node } {
  const graph = new Graph('g');
  const model = new Model(graph);
  model.opsetImports.set('', 17);
  const x = graph.addInput('x', f32('batch', 4));
  const relu = graph.addNode({ opType: Op.Relu, inputs: [x], outputs: ['r'] });
  const neg = graph.addNode({ opType: Op.Neg, inputs: [relu.outputs[0]!], outputs: ['y'] });
  graph.outputs.push(neg.outputs[0]!);
  return { model, graph, x, relu, neg };
}

function codes(model: Model): string[] {
  return verifyModel(model).map((i) => i.code);
}

describe('verifyModel', () => {
  it('passes both fixtures and a hand-built chain', () => {
    expect(verifyModel(loadModelSync('test/fixtures/dit-digits/model.onnx'))).toEqual([]);
    expect(verifyModel(loadModelSync('test/fixtures/digits-classifier/classifier.onnx'))).toEqual([]);
    expect(verifyModel(chain().model)).toEqual([]);
  });

  it('use-before-def: a node reads a value no one defined earlier', () => {
    const { model, graph, relu, neg } = chain();
    graph.nodes.splice(0, 2, neg, relu);
    expect(verifyModel(model)).toEqual([expect.objectContaining({ code: 'use-before-def', node: neg.name })]);
    const other = chain();
    other.relu.setInput(0, other.graph.createValue('ghost'));
    expect(codes(other.model)).toEqual(['use-before-def']);
  });

  it('duplicate-value: SSA broken by a second definition of a name', () => {
    const { model, neg } = chain();
    neg.outputs[0]!.name = 'r';
    expect(codes(model)).toEqual(['duplicate-value']);
  });

  it('missing-use and stale-use: use-lists must match input slots exactly', () => {
    const a = chain();
    (a.neg.inputs as (Value | undefined)[])[0] = a.x; // bypasses setInput: x does not record the use
    expect(codes(a.model)).toEqual(['missing-use', 'stale-use']); // …and r still records a use that is gone
    const b = chain();
    b.x.uses.push({ node: b.neg, index: 0 });
    expect(verifyModel(b.model)).toEqual([expect.objectContaining({ code: 'stale-use', node: b.neg.name })]);
  });

  it('duplicate-node-name', () => {
    const { model, neg } = chain();
    neg.name = 'Relu';
    expect(verifyModel(model)).toEqual([expect.objectContaining({ code: 'duplicate-node-name', node: 'Relu' })]);
  });

  it('undefined-output and bad-producer', () => {
    const a = chain();
    a.graph.outputs.push(a.graph.createValue('nowhere'));
    expect(codes(a.model)).toEqual(['undefined-output']);
    const b = chain();
    b.relu.outputs[0]!.producerIndex = 1;
    expect(codes(b.model)).toEqual(['bad-producer']);
  });

  it('unknown-op names the op, node and domain; domain-not-imported', () => {
    const { model, graph, x } = chain();
    graph.addNode({ name: 'fancy', opType: 'Frobnicate', domain: 'acme', inputs: [x], outputs: ['f'] });
    graph.addNode({ name: 'typo', opType: 'Reluu', inputs: [x], outputs: ['t'] });
    const issues = verifyModel(model);
    expect(issues.map((i) => `${i.code}@${i.node}`).sort()).toEqual(['domain-not-imported@fancy', 'unknown-op@fancy', 'unknown-op@typo']);
    const fancy = issues.find((i) => i.code === 'unknown-op' && i.node === 'fancy')!;
    expect(fancy.message).toContain("'Frobnicate'");
    expect(fancy.message).toContain("'acme'");
    const typo = issues.find((i) => i.node === 'typo')!;
    expect(typo.message).toContain("'Reluu'");
    expect(typo.message).toContain("'ai.onnx'");
  });

  it('arity: too many / too few inputs and outputs', () => {
    const { model, graph, x } = chain();
    graph.addNode({ name: 'add1', opType: Op.Add, inputs: [x], outputs: ['a'] });
    graph.addNode({ name: 'relu3', opType: Op.Relu, inputs: [x, x, x], outputs: ['b'] });
    graph.addNode({ name: 'relu_2out', opType: Op.Relu, inputs: [x], outputs: ['c', 'd'] });
    expect(verifyModel(model).map((i) => `${i.code}@${i.node}`).sort()).toEqual(['arity@add1', 'arity@relu3', 'arity@relu_2out']);
  });

  it('opset-too-new above ai.onnx 26, opset-missing without ai.onnx', () => {
    const a = chain();
    a.model.opsetImports.set('', 27);
    expect(codes(a.model)).toEqual(['opset-too-new']);
    a.model.opsetImports.set('', 26);
    a.model.opsetImports.set(MS_DOMAIN, 2);
    expect(verifyModel(a.model).map((i) => i.message)).toEqual([expect.stringContaining('com.microsoft opset 2')]);
    const b = chain();
    b.model.opsetImports.clear();
    expect(codes(b.model)).toEqual(['opset-missing', 'domain-not-imported', 'domain-not-imported']);
  });

  it('initializer-type: the value type must describe its tensor', () => {
    const { model, graph, x } = chain();
    const w = graph.addInitializer('w', Tensor.fromFloat32([4], new Float32Array(4)));
    graph.addNode({ opType: Op.Add, inputs: [x, w], outputs: ['s'] });
    w.type = { elemType: DataType.FLOAT16, shape: [4] };
    expect(codes(model)).toEqual(['initializer-type']);
    w.type = f32(5);
    expect(codes(model)).toEqual(['initializer-type']);
  });

  it('assertValid throws IrError(verify) listing every issue', () => {
    const { model, graph, relu } = chain();
    relu.outputs[0]!.producerIndex = 2;
    graph.outputs.push(graph.createValue('nowhere'));
    let error: unknown;
    try {
      assertValid(model);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(IrError);
    expect((error as IrError).code).toBe('verify');
    expect((error as IrError).message).toMatch(/2 verifier issue.*\n.*bad-producer.*\n.*undefined-output/);
    expect(() => assertValid(chain().model)).not.toThrow();
  });
});

/** W int4 [64, 32] dequantized with blocks of 32 along axis 0, then x·W. */
function blockedDq(scaleDims: number[], extraInput = false): Model {
  const graph = new Graph('dq');
  const model = new Model(graph);
  model.opsetImports.set('', 21);
  const x = graph.addInput('x', f32(2, 64));
  const w = graph.addInitializer('w', Tensor.fromBytes(DataType.INT4, [64, 32], new Uint8Array(1024).fill(0x11)));
  const scale = graph.addInitializer('scale', Tensor.fromFloat32(scaleDims, new Float32Array(scaleDims.reduce((a, b) => a * b, 1)).fill(0.5)));
  const zp = graph.addInitializer('zp', Tensor.fromBytes(DataType.INT4, scaleDims, new Uint8Array(Math.ceil(scaleDims.reduce((a, b) => a * b, 1) / 2))));
  const inputs = [w, scale, zp, ...(extraInput ? [graph.addInitializer('junk', Tensor.fromFloat32([1], new Float32Array(1)))] : [])];
  const dq = graph.addNode({ opType: Op.DequantizeLinear, inputs, outputs: ['wf'], attributes: { axis: { kind: 'int', value: 0 }, block_size: { kind: 'int', value: 32 } } });
  const mm = graph.addNode({ opType: Op.MatMul, inputs: [x, dq.outputs[0]!], outputs: ['y'] });
  mm.outputs[0]!.type = f32(2, 32);
  graph.outputs.push(mm.outputs[0]!);
  return model;
}

async function ortRun(model: Model): Promise<'create-failed' | 'run-failed' | 'ok'> {
  let session: ort.InferenceSession;
  try {
    session = await ort.InferenceSession.create(encodeModel(model), { graphOptimizationLevel: 'basic' });
  } catch {
    return 'create-failed';
  }
  try {
    await session.run({ x: new ort.Tensor('float32', new Float32Array(128), [2, 64]) });
    return 'ok';
  } catch {
    return 'run-failed';
  } finally {
    await session.release();
  }
}

describe('Q/DQ checks ORT misses at load', () => {
  it('a correct blocked DQ is clean and runs', async () => {
    const model = blockedDq([2, 32]);
    expect(verifyModel(model)).toEqual([]);
    expect(await ortRun(model)).toBe('ok');
  });

  it('a wrong block-scale shape: ORT loads it and fails only at run(); we report qdq-params', async () => {
    const model = blockedDq([4, 32]);
    const issues = verifyModel(model);
    expect(issues.map((i) => i.code)).toEqual(['qdq-params']);
    expect(issues[0]!.message).toContain('expected [2,32]');
    expect(await ortRun(model)).toBe('run-failed');
  });

  it('an unknown extra DQ input: we report arity before saving (the installed ORT also refuses it at load)', async () => {
    const model = blockedDq([2, 32], true);
    expect(verifyModel(model).map((i) => i.code)).toEqual(['arity']);
    expect(await ortRun(model)).toBe('create-failed');
  });

  it('per-axis scale length and zero-point shape must match', () => {
    const graph = new Graph('q');
    const model = new Model(graph);
    model.opsetImports.set('', 21);
    const x = graph.addInput('x', f32('batch', 8));
    const scale = graph.addInitializer('s', Tensor.fromFloat32([4], new Float32Array(4)));
    const zp = graph.addInitializer('z', Tensor.fromBytes(DataType.INT8, [8], new Uint8Array(8)));
    graph.addNode({ opType: Op.QuantizeLinear, inputs: [x, scale, zp], outputs: ['q'], attributes: { axis: { kind: 'int', value: 1 } } });
    expect(verifyModel(model).map((i) => i.code)).toEqual(['qdq-params', 'qdq-params']);
  });
});

describe('MatMulNBits layout', () => {
  /** A[.., 128] · W[128, 96] in 4 bits, blocks of 32: B u8[96, 4, 16], scales [384], zero points [192]. */
  function nbits(options: { bDims?: number[]; scaleCount?: number; zpCount?: number; blockSize?: number; k?: number } = {}): Model {
    const graph = new Graph('nb');
    const model = new Model(graph);
    model.opsetImports.set('', 21);
    model.opsetImports.set(MS_DOMAIN, 1);
    const bDims = options.bDims ?? [96, 4, 16];
    const a = graph.addInput('a', f32('batch', 128));
    const b = graph.addInitializer('b', Tensor.fromBytes(DataType.UINT8, bDims, new Uint8Array(bDims.reduce((x, y) => x * y, 1))));
    const scales = graph.addInitializer('s', Tensor.fromFloat32([options.scaleCount ?? 384], new Float32Array(options.scaleCount ?? 384)));
    const zp = graph.addInitializer('z', Tensor.fromBytes(DataType.UINT8, [options.zpCount ?? 192], new Uint8Array(options.zpCount ?? 192)));
    const node = graph.addNode({
      opType: Op.MatMulNBits,
      domain: MS_DOMAIN,
      inputs: [a, b, scales, zp],
      outputs: ['y'],
      attributes: { K: { kind: 'int', value: options.k ?? 128 }, N: { kind: 'int', value: 96 }, bits: { kind: 'int', value: 4 }, block_size: { kind: 'int', value: options.blockSize ?? 32 } },
    });
    node.outputs[0]!.type = f32('batch', 96);
    graph.outputs.push(node.outputs[0]!);
    return model;
  }

  it('a consistent MatMulNBits is clean and ORT runs it', async () => {
    const model = nbits();
    expect(verifyModel(model)).toEqual([]);
    const session = await ort.InferenceSession.create(encodeModel(model));
    const out = await session.run({ a: new ort.Tensor('float32', new Float32Array(256), [2, 128]) });
    expect(out.y!.dims).toEqual([2, 96]);
    await session.release();
  });

  it.each([
    ['B shape', { bDims: [96, 2, 32] }],
    ['scales count', { scaleCount: 96 }],
    ['zero-point count', { zpCount: 384 }],
    ['block size not a power of 2', { blockSize: 48 }],
    ['K differs from A', { k: 256 }],
  ])('%s gives matmulnbits', (_, options) => {
    const issues = verifyModel(nbits(options));
    expect(issues.length).toBeGreaterThan(0);
    expect(new Set(issues.map((i) => i.code))).toEqual(new Set(['matmulnbits']));
  });
});
