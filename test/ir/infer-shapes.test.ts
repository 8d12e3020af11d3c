import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { Graph, Model, type Dim, type Value, type ValueType } from '../../src/ir/core.js';
import { DataType } from '../../src/ir/dtype.js';
import { IrError } from '../../src/ir/errors.js';
import { inferShapes } from '../../src/ir/infer-shapes.js';
import { MS_DOMAIN, Op } from '../../src/ir/ops.js';
import { encodeModel, loadModelSync } from '../../src/ir/serde.js';
import { Tensor } from '../../src/ir/tensor.js';
import { DIT_PRESETS, buildDit } from '../../src/synth/dit.js';

const DIT = 'test/fixtures/dit-digits/model.onnx';
const CLASSIFIER = 'test/fixtures/digits-classifier/classifier.onnx';

/** Random feeds for every graph input, with `batch` bound to `batch`. */
function feedsFor(model: Model, batch: number): Record<string, ort.Tensor> {
  const feeds: Record<string, ort.Tensor> = {};
  for (const input of model.graph.inputs) {
    const dims = input.type!.shape!.map((d) => (typeof d === 'number' ? d : batch));
    const count = dims.reduce((a, b) => a * b, 1);
    if (input.type!.elemType === DataType.INT64) feeds[input.name] = new ort.Tensor('int64', BigInt64Array.from({ length: count }, (_, i) => BigInt((i * 7) % 10)), dims);
    else feeds[input.name] = new ort.Tensor('float32', Float32Array.from({ length: count }, (_, i) => Math.sin(i)), dims);
  }
  return feeds;
}

/** Every node output's shape as ORT computes it, by exposing all of them as graph outputs. */
async function ortShapes(load: () => Model, batch: number): Promise<Map<string, readonly number[]>> {
  const probe = load();
  inferShapes(probe);
  const outputs = new Set(probe.graph.outputs);
  for (const node of probe.graph.nodes) for (const output of node.outputs) if (!outputs.has(output)) probe.graph.outputs.push(output);
  const session = await ort.InferenceSession.create(encodeModel(probe), { graphOptimizationLevel: 'disabled' });
  try {
    const results = await session.run(feedsFor(probe, batch));
    return new Map(Object.entries(results).map(([name, t]) => [name, t.dims]));
  } finally {
    await session.release();
  }
}

/** Binds `batch` (also inside product dims like `3*batch`) to a number. */
function bind(shape: readonly Dim[], batch: number): Dim[] {
  return shape.map((d) => (typeof d === 'string' ? d.split('*').reduce((p, part) => p * (part === 'batch' ? batch : Number(part)), 1) : d));
}

describe.each([
  { name: 'dit-digits', load: () => loadModelSync(DIT) },
  { name: 'digits-classifier', load: () => loadModelSync(CLASSIFIER) },
  { name: 'synthetic tiny DiT', load: () => buildDit(DIT_PRESETS['tiny']!, { seed: 3 }) },
])('inferShapes on $name', ({ load }) => {
  it('types every node output, with no unknown dims', () => {
    const model = load();
    for (const node of model.graph.nodes) for (const output of node.outputs) if (!output.isGraphOutput) output.type = undefined;
    const result = inferShapes(model);
    expect(result.unknown).toEqual([]);
    const outputs = model.graph.nodes.flatMap((n) => n.outputs);
    expect(result.inferred).toBe(outputs.length);
    for (const output of outputs) {
      expect(output.type?.shape, output.name).toBeDefined();
      expect(output.type!.shape!.every((d) => d !== null), `${output.name}: ${JSON.stringify(output.type!.shape)}`).toBe(true);
    }
  });

  it.each([2, 3])('matches ORT shapes of every intermediate at batch %i', async (batch) => {
    const model = load();
    for (const node of model.graph.nodes) for (const output of node.outputs) if (!output.isGraphOutput) output.type = undefined;
    inferShapes(model);
    const actual = await ortShapes(load, batch);
    const outputs = model.graph.nodes.flatMap((n) => n.outputs);
    expect(actual.size).toBe(outputs.length);
    let symbolic = 0;
    for (const output of outputs) {
      const shape = output.type!.shape!;
      if (shape.some((d) => typeof d === 'string')) symbolic++;
      expect(bind(shape, batch), output.name).toEqual([...actual.get(output.name)!]);
    }
    // The batch dim must stay symbolic, not be guessed.
    expect(symbolic).toBeGreaterThan(0);
  });
});

/** A model with one graph around `build`, at `opset`. */
function modelWith(opset: number, build: (g: Graph) => void, msOpset = false): Model {
  const graph = new Graph('g');
  const model = new Model(graph);
  model.opsetImports.set('', opset);
  if (msOpset) model.opsetImports.set(MS_DOMAIN, 1);
  build(graph);
  return model;
}

function f32(...shape: Dim[]): ValueType {
  return { elemType: DataType.FLOAT, shape };
}

function ints(g: Graph, name: string, values: number[]): Value {
  return g.addInitializer(name, Tensor.fromInt64([values.length], values));
}

/** Infers a single node's first output type. */
function inferOne(opset: number, build: (g: Graph) => Value, msOpset = false): ValueType | undefined {
  let out: Value | undefined;
  const model = modelWith(opset, (g) => (out = build(g)), msOpset);
  inferShapes(model);
  return out!.type;
}

describe('shape rules', () => {
  it('broadcasts element-wise ops with symbolic dims', () => {
    const t = inferOne(17, (g) => g.addNode({ opType: Op.Add, inputs: [g.addInput('a', f32('batch', 1, 8)), g.addInput('b', f32(4, 1))], outputs: ['y'] }).outputs[0]!);
    expect(t).toEqual(f32('batch', 4, 8));
    const eq = inferOne(17, (g) => g.addNode({ opType: Op.Equal, inputs: [g.addInput('a', f32(3)), g.addInput('b', f32(2, 1))], outputs: ['y'] }).outputs[0]!);
    expect(eq).toEqual({ elemType: DataType.BOOL, shape: [2, 3] });
    expect(() => inferOne(17, (g) => g.addNode({ opType: Op.Mul, inputs: [g.addInput('a', f32(3)), g.addInput('b', f32(4))], outputs: ['y'] }).outputs[0]!)).toThrow(IrError);
  });

  it('MatMul, Gemm and their errors name the node', () => {
    expect(inferOne(17, (g) => g.addNode({ opType: Op.MatMul, inputs: [g.addInput('a', f32('batch', 64, 128)), g.addInput('b', f32(128, 384))], outputs: ['y'] }).outputs[0]!)).toEqual(f32('batch', 64, 384));
    expect(inferOne(17, (g) => g.addNode({ opType: Op.MatMul, inputs: [g.addInput('a', f32(5)), g.addInput('b', f32(2, 5, 7))], outputs: ['y'] }).outputs[0]!)).toEqual(f32(2, 7));
    expect(inferOne(17, (g) => g.addNode({ opType: Op.Gemm, inputs: [g.addInput('a', f32(6, 'batch')), g.addInput('b', f32(10, 6))], outputs: ['y'], attributes: { transA: { kind: 'int', value: 1 }, transB: { kind: 'int', value: 1 } } }).outputs[0]!)).toEqual(f32('batch', 10));
    expect(() => inferOne(17, (g) => g.addNode({ name: 'bad_mm', opType: Op.MatMul, inputs: [g.addInput('a', f32(2, 3)), g.addInput('b', f32(4, 5))], outputs: ['y'] }).outputs[0]!)).toThrow(
      expect.objectContaining({ code: 'shape-inference', message: expect.stringContaining("node 'bad_mm' (MatMul): inner dims differ") }),
    );
    expect(() => inferOne(17, (g) => g.addNode({ name: 'flat_gemm', opType: Op.Gemm, inputs: [g.addInput('a', f32(2, 3, 4)), g.addInput('b', f32(4, 5))], outputs: ['y'] }).outputs[0]!)).toThrow(
      expect.objectContaining({ code: 'shape-inference', message: expect.stringContaining("'flat_gemm'") }),
    );
  });

  it('Conv / ConvTranspose / pooling windows', () => {
    const conv = inferOne(17, (g) => g.addNode({ opType: Op.Conv, inputs: [g.addInput('x', f32('batch', 4, 17, 17)), g.addInitializer('w', Tensor.fromFloat32([8, 2, 3, 3], new Float32Array(144)))], outputs: ['y'], attributes: { group: { kind: 'int', value: 2 }, strides: { kind: 'ints', value: [2, 2] }, pads: { kind: 'ints', value: [1, 1, 1, 1] }, dilations: { kind: 'ints', value: [1, 2] } } }).outputs[0]!);
    expect(conv).toEqual(f32('batch', 8, 9, 8));
    const same = inferOne(17, (g) => g.addNode({ opType: Op.Conv, inputs: [g.addInput('x', f32(1, 1, 15, 15)), g.addInitializer('w', Tensor.fromFloat32([1, 1, 3, 3], new Float32Array(9)))], outputs: ['y'], attributes: { auto_pad: { kind: 'string', value: 'SAME_UPPER' }, strides: { kind: 'ints', value: [2, 2] } } }).outputs[0]!);
    expect(same).toEqual(f32(1, 1, 8, 8));
    const deconv = inferOne(17, (g) => g.addNode({ opType: Op.ConvTranspose, inputs: [g.addInput('x', f32(1, 4, 8, 8)), g.addInitializer('w', Tensor.fromFloat32([4, 3, 4, 4], new Float32Array(192)))], outputs: ['y'], attributes: { strides: { kind: 'ints', value: [2, 2] }, pads: { kind: 'ints', value: [1, 1, 1, 1] } } }).outputs[0]!);
    expect(deconv).toEqual(f32(1, 3, 16, 16));
  });

  it('reduce axes: attribute before opset 18, input from 18; keepdims', () => {
    const attr = inferOne(17, (g) => g.addNode({ opType: Op.ReduceMean, inputs: [g.addInput('x', f32('batch', 4, 6))], outputs: ['y'], attributes: { axes: { kind: 'ints', value: [-1] } } }).outputs[0]!);
    expect(attr).toEqual(f32('batch', 4, 1));
    const input = inferOne(18, (g) => g.addNode({ opType: Op.ReduceMax, inputs: [g.addInput('x', f32('batch', 4, 6)), ints(g, 'axes', [1])], outputs: ['y'], attributes: { keepdims: { kind: 'int', value: 0 } } }).outputs[0]!);
    expect(input).toEqual(f32('batch', 6));
  });

  it('LayerNormalization optional Mean / InvStdDev outputs', () => {
    let node!: ReturnType<Graph['addNode']>;
    const model = modelWith(17, (g) => {
      node = g.addNode({ opType: Op.LayerNormalization, inputs: [g.addInput('x', f32('batch', 64, 128)), g.addInitializer('s', Tensor.fromFloat32([128], new Float32Array(128)))], outputs: ['y', 'mean', 'inv'], attributes: { axis: { kind: 'int', value: -1 } } });
    });
    inferShapes(model);
    expect(node.outputs.map((o) => o.type)).toEqual([f32('batch', 64, 128), f32('batch', 64, 1), f32('batch', 64, 1)]);
  });

  it('folds a Shape → Gather → Unsqueeze → Concat chain into a symbolic Reshape target', () => {
    let y!: Value;
    const model = modelWith(17, (g) => {
      const x = g.addInput('x', f32('batch', 64, 128));
      const shape = g.addNode({ opType: Op.Shape, inputs: [x], outputs: ['s'] }).outputs[0]!;
      const b = g.addNode({ opType: Op.Gather, inputs: [shape, g.addInitializer('zero', Tensor.fromInt64([], [0]))], outputs: ['b'] }).outputs[0]!;
      const b1 = g.addNode({ opType: Op.Unsqueeze, inputs: [b, ints(g, 'ax', [0])], outputs: ['b1'] }).outputs[0]!;
      const target = g.addNode({ opType: Op.Concat, inputs: [b1, ints(g, 'rest', [-1, 4, 32])], outputs: ['t'], attributes: { axis: { kind: 'int', value: 0 } } }).outputs[0]!;
      y = g.addNode({ opType: Op.Reshape, inputs: [x, target], outputs: ['y'] }).outputs[0]!;
    });
    inferShapes(model);
    expect(y.type).toEqual(f32('batch', 64, 4, 32));
    const zero = inferOne(17, (g) => g.addNode({ opType: Op.Reshape, inputs: [g.addInput('x', f32('batch', 6, 4)), ints(g, 't', [0, -1])], outputs: ['y'] }).outputs[0]!);
    expect(zero).toEqual(f32('batch', 24));
    expect(() => inferOne(17, (g) => g.addNode({ opType: Op.Reshape, inputs: [g.addInput('x', f32(6, 4)), ints(g, 't', [5, 5])], outputs: ['y'] }).outputs[0]!)).toThrow(IrError);
  });

  it('Split by input sizes, attribute and num_outputs', () => {
    const outs = (opset: number, attributes: Record<string, { kind: 'int'; value: number } | { kind: 'ints'; value: number[] }>, count: number, sizes?: number[]): (ValueType | undefined)[] => {
      let outputs: Value[] = [];
      const model = modelWith(opset, (g) => {
        const inputs = [g.addInput('x', f32('batch', 10)), ...(sizes ? [ints(g, 's', sizes)] : [])];
        outputs = g.addNode({ opType: Op.Split, inputs, outputs: count, attributes: { axis: { kind: 'int', value: 1 }, ...attributes } }).outputs;
      });
      inferShapes(model);
      return outputs.map((o) => o.type);
    };
    expect(outs(17, {}, 2, [3, 7])).toEqual([f32('batch', 3), f32('batch', 7)]);
    expect(outs(11, { split: { kind: 'ints', value: [4, 6] } }, 2)).toEqual([f32('batch', 4), f32('batch', 6)]);
    expect(outs(18, { num_outputs: { kind: 'int', value: 3 } }, 3)).toEqual([f32('batch', 4), f32('batch', 4), f32('batch', 2)]);
    expect(outs(17, {}, 5)).toEqual(Array(5).fill(f32('batch', 2)));
  });

  it('Unsqueeze / Squeeze axes as attribute before 13 and input from 13', () => {
    expect(inferOne(11, (g) => g.addNode({ opType: Op.Unsqueeze, inputs: [g.addInput('x', f32('batch', 3))], outputs: ['y'], attributes: { axes: { kind: 'ints', value: [0, -1] } } }).outputs[0]!)).toEqual(f32(1, 'batch', 3, 1));
    expect(inferOne(13, (g) => g.addNode({ opType: Op.Squeeze, inputs: [g.addInput('x', f32('batch', 1, 3)), ints(g, 'a', [1])], outputs: ['y'] }).outputs[0]!)).toEqual(f32('batch', 3));
  });

  it('Slice, Gather, Transpose, Concat, Expand, Tile, Pad, Flatten', () => {
    expect(inferOne(17, (g) => g.addNode({ opType: Op.Slice, inputs: [g.addInput('x', f32('batch', 10, 8)), ints(g, 's', [1, -1]), ints(g, 'e', [9, -100]), ints(g, 'a', [1, 2]), ints(g, 'st', [3, -2])], outputs: ['y'] }).outputs[0]!)).toEqual(f32('batch', 3, 4));
    expect(inferOne(17, (g) => g.addNode({ opType: Op.Gather, inputs: [g.addInput('x', f32(10, 'batch', 4)), g.addInput('i', { elemType: DataType.INT64, shape: [2, 3] })], outputs: ['y'], attributes: { axis: { kind: 'int', value: 1 } } }).outputs[0]!)).toEqual(f32(10, 2, 3, 4));
    expect(inferOne(17, (g) => g.addNode({ opType: Op.Transpose, inputs: [g.addInput('x', f32('batch', 2, 3))], outputs: ['y'], attributes: { perm: { kind: 'ints', value: [2, 0, 1] } } }).outputs[0]!)).toEqual(f32(3, 'batch', 2));
    expect(inferOne(17, (g) => g.addNode({ opType: Op.Concat, inputs: [g.addInput('a', f32('batch', 2)), g.addInput('b', f32('batch', 5))], outputs: ['y'], attributes: { axis: { kind: 'int', value: -1 } } }).outputs[0]!)).toEqual(f32('batch', 7));
    expect(inferOne(17, (g) => g.addNode({ opType: Op.Expand, inputs: [g.addInput('x', f32('batch', 1)), ints(g, 's', [2, 1, 6])], outputs: ['y'] }).outputs[0]!)).toEqual(f32(2, 'batch', 6));
    expect(inferOne(17, (g) => g.addNode({ opType: Op.Tile, inputs: [g.addInput('x', f32('batch', 3)), ints(g, 'r', [1, 4])], outputs: ['y'] }).outputs[0]!)).toEqual(f32('batch', 12));
    expect(inferOne(17, (g) => g.addNode({ opType: Op.Pad, inputs: [g.addInput('x', f32('batch', 3, 4)), ints(g, 'p', [0, 1, 2, 0, 1, 2])], outputs: ['y'] }).outputs[0]!)).toEqual(f32('batch', 5, 8));
    expect(inferOne(17, (g) => g.addNode({ opType: Op.Flatten, inputs: [g.addInput('x', f32('batch', 3, 4))], outputs: ['y'] }).outputs[0]!)).toEqual(f32('batch', 12));
  });

  it('Resize, Einsum, Range, ConstantOfShape, Cast, Where', () => {
    const scales = (g: Graph): Value => g.addInitializer('sc', Tensor.fromFloat32([4], Float32Array.from([1, 1, 2, 2])));
    expect(inferOne(17, (g) => g.addNode({ opType: Op.Resize, inputs: [g.addInput('x', f32('batch', 4, 8, 8)), undefined, scales(g)], outputs: ['y'] }).outputs[0]!)).toEqual(f32('batch', 4, 16, 16));
    expect(inferOne(17, (g) => g.addNode({ opType: Op.Einsum, inputs: [g.addInput('a', f32('batch', 4, 5, 6)), g.addInput('b', f32('batch', 4, 7, 6))], outputs: ['y'], attributes: { equation: { kind: 'string', value: 'bhqd,bhkd->bhqk' } } }).outputs[0]!)).toEqual(f32('batch', 4, 5, 7));
    expect(inferOne(17, (g) => g.addNode({ opType: Op.Einsum, inputs: [g.addInput('a', f32(3, 5)), g.addInput('b', f32(5, 2))], outputs: ['y'], attributes: { equation: { kind: 'string', value: 'ij,jk' } } }).outputs[0]!)).toEqual(f32(3, 2));
    const scalar = (g: Graph, name: string, v: number): Value => g.addInitializer(name, Tensor.fromInt64([], [v]));
    expect(inferOne(17, (g) => g.addNode({ opType: Op.Range, inputs: [scalar(g, 'a', 2), scalar(g, 'b', 11), scalar(g, 'c', 3)], outputs: ['y'] }).outputs[0]!)).toEqual({ elemType: DataType.INT64, shape: [3] });
    expect(inferOne(17, (g) => g.addNode({ opType: Op.ConstantOfShape, inputs: [ints(g, 's', [2, 3])], outputs: ['y'], attributes: { value: { kind: 'tensor', value: Tensor.fromInt64([1], [1]) } } }).outputs[0]!)).toEqual({ elemType: DataType.INT64, shape: [2, 3] });
    expect(inferOne(17, (g) => g.addNode({ opType: Op.Cast, inputs: [g.addInput('x', f32('batch'))], outputs: ['y'], attributes: { to: { kind: 'int', value: DataType.FLOAT16 } } }).outputs[0]!)).toEqual({ elemType: DataType.FLOAT16, shape: ['batch'] });
    expect(inferOne(17, (g) => g.addNode({ opType: Op.Where, inputs: [g.addInput('c', { elemType: DataType.BOOL, shape: [4, 1] }), g.addInput('a', f32('batch', 1, 1)), g.addInput('b', f32(3))], outputs: ['y'] }).outputs[0]!)).toEqual(f32('batch', 4, 3));
  });

  it('Q/DQ element types from zero point, scale and output_dtype; blocked shapes kept', () => {
    const q = inferOne(21, (g) => g.addNode({ opType: Op.QuantizeLinear, inputs: [g.addInput('x', f32('batch', 64)), g.addInitializer('s', Tensor.fromFloat32([], Float32Array.of(1))), g.addInitializer('z', Tensor.fromBytes(DataType.INT8, [], new Uint8Array(1)))], outputs: ['y'] }).outputs[0]!);
    expect(q).toEqual({ elemType: DataType.INT8, shape: ['batch', 64] });
    const qDefault = inferOne(21, (g) => g.addNode({ opType: Op.QuantizeLinear, inputs: [g.addInput('x', f32(2)), g.addInitializer('s', Tensor.fromFloat32([], Float32Array.of(1)))], outputs: ['y'] }).outputs[0]!);
    expect(qDefault?.elemType).toBe(DataType.UINT8);
    const dq = inferOne(21, (g) => g.addNode({ opType: Op.DequantizeLinear, inputs: [g.addInitializer('w', Tensor.fromBytes(DataType.INT4, [64, 32], new Uint8Array(1024))), g.addInitializer('s', Tensor.fromBytes(DataType.FLOAT16, [2, 32], new Uint8Array(128)))], outputs: ['y'], attributes: { axis: { kind: 'int', value: 0 }, block_size: { kind: 'int', value: 32 } } }).outputs[0]!);
    expect(dq).toEqual({ elemType: DataType.FLOAT16, shape: [64, 32] });
  });

  it('MatMulNBits gives [..., N]; an unknown op is listed, never a crash', () => {
    const nbits = inferOne(21, (g) => g.addNode({ opType: Op.MatMulNBits, domain: MS_DOMAIN, inputs: [g.addInput('a', f32('batch', 64, 128)), g.addInitializer('b', Tensor.fromBytes(DataType.UINT8, [384, 4, 16], new Uint8Array(384 * 64))), g.addInitializer('s', Tensor.fromFloat32([384 * 4], new Float32Array(384 * 4)))], outputs: ['y'], attributes: { K: { kind: 'int', value: 128 }, N: { kind: 'int', value: 384 }, bits: { kind: 'int', value: 4 }, block_size: { kind: 'int', value: 32 } } }).outputs[0]!, true);
    expect(nbits).toEqual(f32('batch', 64, 384));
    const model = modelWith(17, (g) => {
      const x = g.addInput('x', f32(2));
      const custom = g.addNode({ opType: 'Frobnicate', domain: 'acme', inputs: [x], outputs: ['weird'] });
      g.addNode({ opType: Op.Relu, inputs: [custom.outputs[0]!], outputs: ['after'] });
    });
    expect(inferShapes(model)).toEqual({ inferred: 0, unknown: ['weird', 'after'] });
  });
});

describe('inferShapes on the synthetic DiT-XL/2 (28 blocks, lazy weights)', () => {
  it('types every output in well under a second and reads no weight bytes (only int constants of ≤ 64 elements)', () => {
    const model = buildDit(DIT_PRESETS['dit-xl-2']!);
    const reads: number[] = [];
    for (const value of model.graph.initializers.values()) {
      const tensor = value.initializer!;
      value.initializer = Tensor.lazy(tensor.dtype, tensor.dims, () => {
        reads.push(tensor.size);
        return tensor.bytes();
      });
    }
    for (const node of model.graph.nodes) for (const output of node.outputs) if (!output.isGraphOutput) output.type = undefined;
    const start = performance.now();
    const result = inferShapes(model);
    const elapsed = performance.now() - start;
    expect(model.graph.nodes.length).toBeGreaterThan(2000);
    expect(result.unknown).toEqual([]);
    expect(model.graph.outputs[0]!.type).toEqual(f32('batch', 8, 32, 32));
    for (const node of model.graph.nodes) for (const output of node.outputs) expect(output.type!.shape!.includes(null), output.name).toBe(false);
    expect(reads.every((n) => n <= 64)).toBe(true);
    expect(elapsed).toBeLessThan(1000);
  });
});

type Attrs = NonNullable<Parameters<Graph['addNode']>[0]['attributes']>;
const int = (value: number): Attrs[string] => ({ kind: 'int', value });
const intList = (...value: number[]): Attrs[string] => ({ kind: 'ints', value });
const weight = (g: Graph, name: string, dims: number[]): Value => g.addInitializer(name, Tensor.fromFloat32(dims, Float32Array.from({ length: dims.reduce((a, b) => a * b, 1) }, (_, i) => Math.cos(i))));

/** Single-op graphs whose every inferred output shape is compared with ORT's at batch 2 and 3. */
const ORT_CASES: { name: string; opset: number; ms?: boolean; build: (g: Graph) => void }[] = [
  { name: 'Conv group/strides/pads/dilations', opset: 18, build: (g) => void g.addNode({ opType: Op.Conv, inputs: [g.addInput('x', f32('batch', 4, 17, 17)), weight(g, 'w', [8, 2, 3, 3])], outputs: ['y'], attributes: { group: int(2), strides: intList(2, 3), pads: intList(1, 0, 2, 1), dilations: intList(1, 2) } }) },
  { name: 'Conv SAME_LOWER', opset: 18, build: (g) => void g.addNode({ opType: Op.Conv, inputs: [g.addInput('x', f32('batch', 1, 15, 14)), weight(g, 'w', [2, 1, 3, 3])], outputs: ['y'], attributes: { auto_pad: { kind: 'string', value: 'SAME_LOWER' }, strides: intList(2, 2) } }) },
  { name: 'ConvTranspose output_padding, group', opset: 18, build: (g) => void g.addNode({ opType: Op.ConvTranspose, inputs: [g.addInput('x', f32('batch', 4, 7, 5)), weight(g, 'w', [4, 3, 3, 4])], outputs: ['y'], attributes: { group: int(2), strides: intList(2, 3), pads: intList(1, 0, 1, 2), output_padding: intList(1, 2) } }) },
  { name: 'MaxPool ceil_mode with indices', opset: 18, build: (g) => void g.addNode({ opType: Op.MaxPool, inputs: [g.addInput('x', f32('batch', 3, 16, 15))], outputs: ['y', 'i'], attributes: { kernel_shape: intList(3, 3), strides: intList(2, 2), pads: intList(1, 1, 0, 0), ceil_mode: int(1) } }) },
  { name: 'AveragePool and GlobalAveragePool', opset: 18, build: (g) => {
    const x = g.addInput('x', f32('batch', 3, 9, 9));
    g.addNode({ opType: Op.AveragePool, inputs: [x], outputs: ['a'], attributes: { kernel_shape: intList(2, 2), strides: intList(2, 2) } });
    g.addNode({ opType: Op.GlobalAveragePool, inputs: [x], outputs: ['b'] });
  } },
  { name: 'Gemm transA, MatMul broadcast', opset: 18, build: (g) => {
    g.addNode({ opType: Op.Gemm, inputs: [weight(g, 'a', [6, 5]), weight(g, 'b', [6, 4]), weight(g, 'c', [4])], outputs: ['y'], attributes: { transA: int(1) } });
    g.addNode({ opType: Op.MatMul, inputs: [g.addInput('x', f32('batch', 1, 3, 5)), weight(g, 'w', [4, 5, 2])], outputs: ['z'] });
  } },
  { name: 'Resize by scales and by sizes', opset: 18, build: (g) => {
    const x = g.addInput('x', f32('batch', 2, 5, 6));
    g.addNode({ opType: Op.Resize, inputs: [x, undefined, g.addInitializer('sc', Tensor.fromFloat32([4], Float32Array.of(1, 1, 2, 1.5)))], outputs: ['a'] });
    g.addNode({ opType: Op.Resize, inputs: [x, undefined, undefined, ints(g, 'sz', [2, 2, 7, 3])], outputs: ['b'] });
  } },
  { name: 'Einsum attention, matmul, ellipsis', opset: 18, build: (g) => {
    g.addNode({ opType: Op.Einsum, inputs: [g.addInput('q', f32('batch', 2, 5, 4)), g.addInput('k', f32('batch', 2, 7, 4))], outputs: ['s'], attributes: { equation: { kind: 'string', value: 'bhqd,bhkd->bhqk' } } });
    g.addNode({ opType: Op.Einsum, inputs: [g.addInput('a', f32('batch', 3, 5)), weight(g, 'w', [5, 2])], outputs: ['m'], attributes: { equation: { kind: 'string', value: '...ij,jk->...ik' } } });
  } },
  { name: 'Slice with negative steps, Split num_outputs', opset: 18, build: (g) => {
    const x = g.addInput('x', f32('batch', 10, 8));
    g.addNode({ opType: Op.Slice, inputs: [x, ints(g, 's', [-1, 1]), ints(g, 'e', [-100, 7]), ints(g, 'ax', [2, 1]), ints(g, 'st', [-3, 2])], outputs: ['a'] });
    g.addNode({ opType: Op.Slice, inputs: [x, ints(g, 's2', [-100, 20, 0]), ints(g, 'e2', [-200, 3, 2 ** 40]), ints(g, 'ax2', [2, 1, 0]), ints(g, 'st2', [-1, -4, 1])], outputs: ['b'] });
    g.addNode({ opType: Op.Split, inputs: [x], outputs: ['p', 'q', 'r'], attributes: { axis: int(1), num_outputs: int(3) } });
  } },
  { name: 'Reduce with axes input, ArgMax', opset: 18, build: (g) => {
    const x = g.addInput('x', f32('batch', 4, 6));
    g.addNode({ opType: Op.ReduceMean, inputs: [x, ints(g, 'ax', [-1])], outputs: ['a'], attributes: { keepdims: int(0) } });
    g.addNode({ opType: Op.ReduceSum, inputs: [x], outputs: ['b'] });
    g.addNode({ opType: Op.ArgMax, inputs: [x], outputs: ['c'], attributes: { axis: int(1) } });
  } },
  { name: 'Pad, Tile, Expand, Flatten, Gather, Squeeze, Unsqueeze, Transpose', opset: 18, build: (g) => {
    const x = g.addInput('x', f32('batch', 3, 1, 4));
    g.addNode({ opType: Op.Pad, inputs: [x, ints(g, 'p', [0, 1, 0, 2, 0, 2, 0, 1])], outputs: ['a'] });
    g.addNode({ opType: Op.Tile, inputs: [x, ints(g, 'r', [1, 2, 3, 1])], outputs: ['b'] });
    g.addNode({ opType: Op.Expand, inputs: [x, ints(g, 'e', [5, 1, 1, 2, 1])], outputs: ['c'] });
    g.addNode({ opType: Op.Flatten, inputs: [x], outputs: ['d'], attributes: { axis: int(2) } });
    g.addNode({ opType: Op.Gather, inputs: [x, g.addInitializer('idx', Tensor.fromInt64([2, 2], [0, 3, -1, 1]))], outputs: ['e'], attributes: { axis: int(3) } });
    g.addNode({ opType: Op.Squeeze, inputs: [x, ints(g, 'sq', [2])], outputs: ['f'] });
    g.addNode({ opType: Op.Unsqueeze, inputs: [x, ints(g, 'us', [0, 5])], outputs: ['h'] });
    g.addNode({ opType: Op.Transpose, inputs: [x], outputs: ['k'] });
  } },
  { name: 'Shape start/end, Size, ConstantOfShape, Range, Reshape from the chain', opset: 18, build: (g) => {
    const x = g.addInput('x', f32('batch', 6, 4));
    const tail = g.addNode({ opType: Op.Shape, inputs: [x], outputs: ['tail'], attributes: { start: int(-2) } }).outputs[0]!;
    g.addNode({ opType: Op.Size, inputs: [x], outputs: ['n'] });
    g.addNode({ opType: Op.ConstantOfShape, inputs: [tail], outputs: ['zeros'] });
    const scalar = (name: string, v: number): Value => g.addInitializer(name, Tensor.fromInt64([], [v]));
    g.addNode({ opType: Op.Range, inputs: [scalar('r0', 10), scalar('r1', 1), scalar('r2', -4)], outputs: ['range'] });
    const prod = g.addNode({ opType: Op.Mul, inputs: [g.addNode({ opType: Op.Gather, inputs: [tail, scalar('zero', 0)], outputs: ['d1'] }).outputs[0]!, scalar('two', 2)], outputs: ['d1x2'] }).outputs[0]!;
    const target = g.addNode({ opType: Op.Concat, inputs: [ints(g, 'lead', [-1]), g.addNode({ opType: Op.Unsqueeze, inputs: [prod, ints(g, 'u0', [0])], outputs: ['d1x2v'] }).outputs[0]!], outputs: ['target'], attributes: { axis: int(0) } }).outputs[0]!;
    g.addNode({ opType: Op.Reshape, inputs: [x, target], outputs: ['reshaped'] });
  } },
  { name: 'LayerNormalization with Mean/InvStdDev, Instance/Batch/GroupNormalization', opset: 18, build: (g) => {
    const x = g.addInput('x', f32('batch', 4, 3, 5));
    g.addNode({ opType: Op.LayerNormalization, inputs: [x, weight(g, 's', [3, 5]), weight(g, 'b', [3, 5])], outputs: ['y', 'mean', 'inv'], attributes: { axis: int(2) } });
    g.addNode({ opType: Op.InstanceNormalization, inputs: [x, weight(g, 'is', [4]), weight(g, 'ib', [4])], outputs: ['in'] });
    g.addNode({ opType: Op.BatchNormalization, inputs: [x, weight(g, 'bs', [4]), weight(g, 'bb', [4]), weight(g, 'bm', [4]), g.addInitializer('bv', Tensor.fromFloat32([4], Float32Array.of(1, 2, 3, 4)))], outputs: ['bn'] });
    g.addNode({ opType: Op.GroupNormalization, inputs: [x, weight(g, 'gs', [2]), weight(g, 'gb', [2])], outputs: ['gn'], attributes: { num_groups: int(2) } });
  } },
  { name: 'Where, comparisons, logic, Cast, CastLike, Clip, Trilu, Softmax', opset: 18, build: (g) => {
    const x = g.addInput('x', f32('batch', 1, 5));
    const w = weight(g, 'w', [3, 1]);
    const gt = g.addNode({ opType: Op.Greater, inputs: [x, w], outputs: ['gt'] }).outputs[0]!;
    const lt = g.addNode({ opType: Op.Less, inputs: [x, weight(g, 'v', [5])], outputs: ['lt'] }).outputs[0]!;
    g.addNode({ opType: Op.And, inputs: [gt, g.addNode({ opType: Op.Not, inputs: [lt], outputs: ['nlt'] }).outputs[0]!], outputs: ['and'] });
    g.addNode({ opType: Op.Where, inputs: [gt, x, w], outputs: ['where'] });
    g.addNode({ opType: Op.CastLike, inputs: [g.addNode({ opType: Op.Cast, inputs: [x], outputs: ['half'], attributes: { to: int(DataType.FLOAT16) } }).outputs[0]!, x], outputs: ['back'] });
    g.addNode({ opType: Op.Clip, inputs: [x], outputs: ['clip'] });
    g.addNode({ opType: Op.Trilu, inputs: [weight(g, 'sq', [4, 4])], outputs: ['tri'] });
    g.addNode({ opType: Op.Softmax, inputs: [x], outputs: ['soft'] });
  } },
  { name: 'blocked QuantizeLinear / DequantizeLinear, DynamicQuantizeLinear', opset: 21, build: (g) => {
    const x = g.addInput('x', f32('batch', 64));
    const q = g.addNode({ opType: Op.QuantizeLinear, inputs: [x, g.addInitializer('s', Tensor.fromFloat32([], Float32Array.of(0.1))), g.addInitializer('z', Tensor.fromBytes(DataType.INT8, [], new Uint8Array(1)))], outputs: ['q'] }).outputs[0]!;
    g.addNode({ opType: Op.DequantizeLinear, inputs: [q, g.addInitializer('s2', Tensor.fromFloat32([], Float32Array.of(0.1)))], outputs: ['dq'] });
    g.addNode({ opType: Op.DequantizeLinear, inputs: [g.addInitializer('w', Tensor.fromBytes(DataType.INT4, [64, 32], new Uint8Array(1024))), g.addInitializer('ws', Tensor.fromFloat32([2, 32], new Float32Array(64).fill(1)))], outputs: ['wdq'], attributes: { axis: int(0), block_size: int(32) } });
    g.addNode({ opType: Op.DynamicQuantizeLinear, inputs: [x], outputs: ['dy', 'dys', 'dyz'] });
  } },
  { name: 'MatMulNBits and MatMulIntegerToFloat', opset: 21, ms: true, build: (g) => {
    const a = g.addInput('a', f32('batch', 3, 64));
    g.addNode({ opType: Op.MatMulNBits, domain: MS_DOMAIN, inputs: [a, g.addInitializer('b', Tensor.fromBytes(DataType.UINT8, [24, 2, 16], new Uint8Array(768))), g.addInitializer('bs', Tensor.fromFloat32([48], new Float32Array(48).fill(1)))], outputs: ['nb'], attributes: { K: int(64), N: int(24), bits: int(4), block_size: int(32) } });
    const dq = g.addNode({ opType: Op.DynamicQuantizeLinear, inputs: [a], outputs: ['qa', 'qs', 'qz'] }).outputs;
    g.addNode({ opType: Op.MatMulIntegerToFloat, domain: MS_DOMAIN, inputs: [dq[0]!, g.addInitializer('wq', Tensor.fromBytes(DataType.UINT8, [64, 5], new Uint8Array(320))), dq[1]!, g.addInitializer('wsc', Tensor.fromFloat32([5], new Float32Array(5).fill(1))), dq[2]!], outputs: ['mi'] });
  } },
];

describe.each(ORT_CASES)('ORT agrees with the rules: $name', ({ opset, ms, build }) => {
  const load = (): Model => {
    const model = modelWith(opset, build, ms);
    return model;
  };
  it.each([2, 3])('at batch %i', async (batch) => {
    const model = load();
    const result = inferShapes(model);
    expect(result.unknown).toEqual([]);
    const actual = await ortShapes(load, batch);
    const outputs = model.graph.nodes.flatMap((n) => n.outputs);
    for (const output of outputs) {
      expect(output.type!.shape!.includes(null), `${output.name}: ${JSON.stringify(output.type!.shape)}`).toBe(false);
      expect(bind(output.type!.shape!, batch), output.name).toEqual([...actual.get(output.name)!]);
    }
  });
});
