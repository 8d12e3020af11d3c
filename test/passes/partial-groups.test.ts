/**
 * Partial last groups end to end: `group 128` on 320 input channels (groups of 128, 128 and 64) compiles from a
 * recipe, the CPU lowering turns the MatMul and Gemm layers into MatMulNBits (a 1×1 Conv keeps its blocked
 * DequantizeLinear), the stored codes and scales equal an independent reference group quantization exactly —
 * the last group quantized by its own 64 values — and ORT runs the compiled model, matching x·W_ref.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { Graph, Model, type Node } from '../../src/ir/core.js';
import { DataType } from '../../src/ir/dtype.js';
import { Op, isOp } from '../../src/ir/ops.js';
import { encodeModel, loadModelSync, saveModel } from '../../src/ir/serde.js';
import { Tensor } from '../../src/ir/tensor.js';
import { dequantizeTensor } from '../../src/quant/quantized-forms.js';
import { seededRandom } from '../../src/random.js';
import { runCli } from '../cli/run-cli.js';
import { DEFAULT_ACTIVATION_LOWERING, quantizePlannedActivations } from '../../src/passes/activation-quantization.js';
import { quantizePlannedWeights } from '../../src/passes/weight-quantization.js';
import { discoverLayers } from '../../src/quant/layers.js';
import type { ActivationQuantSpec, WeightQuantSpec } from '../../src/quant/plan.js';
import { sqnrDb } from './fixture.js';

const C = 320;
const GROUP = 128;
const BLOCKS = Math.ceil(C / GROUP); // 3: 128, 128 and a partial 64
const BATCH = 3;
const next = seededRandom(20);
const gaussian = (n: number, scale: number) => Float32Array.from({ length: n }, () => scale * Math.sqrt(-2 * Math.log(next() + 1e-12)) * Math.cos(2 * Math.PI * next()));
// Stored layouts: MatMul W[K, N], Gemm(transB) W[N, K], Conv W[N, K, 1, 1].
const W1 = gaussian(C * C, 0.05); // MatMul
const W2 = gaussian(C * C, 0.05); // Gemm transB
const W3 = gaussian(C * C, 0.05); // Conv 1×1

/** h [B, C] → MatMul W1 → Tanh → Gemm(transB) W2 → y; x [B, C, 2, 2] → Conv 1×1 W3 → z (without `conv`, only y). */
function buildModel(conv = true): Model {
  const graph = new Graph('partial');
  const h = graph.addInput('h', { elemType: DataType.FLOAT, shape: [BATCH, C] });
  const x = graph.addInput('x', { elemType: DataType.FLOAT, shape: [BATCH, C, 2, 2] });
  const w1 = graph.addInitializer('w1', Tensor.fromFloat32([C, C], W1));
  const w2 = graph.addInitializer('w2', Tensor.fromFloat32([C, C], W2));
  const w3 = graph.addInitializer('w3', Tensor.fromFloat32([C, C, 1, 1], W3));
  const b2 = graph.addInitializer('b2', Tensor.fromFloat32([C], gaussian(C, 0.1)));
  const mm = graph.addNode({ opType: Op.MatMul, name: 'fc1', inputs: [h, w1], outputs: ['fc1_out'] }).outputs[0]!;
  const act = graph.addNode({ opType: Op.Tanh, name: 'act', inputs: [mm], outputs: ['act_out'] }).outputs[0]!;
  const y = graph.addNode({ opType: Op.Gemm, name: 'fc2', inputs: [act, w2, b2], outputs: ['y'], attributes: { transB: { kind: 'int', value: 1 } } }).outputs[0]!;
  y.type = { elemType: DataType.FLOAT, shape: [BATCH, C] };
  graph.outputs.push(y);
  if (conv) {
    const z = graph.addNode({ opType: Op.Conv, name: 'proj', inputs: [x, w3], outputs: ['z'], attributes: { kernel_shape: { kind: 'ints', value: [1, 1] } } }).outputs[0]!;
    z.type = { elemType: DataType.FLOAT, shape: [BATCH, C, 2, 2] };
    graph.outputs.push(z);
  } else {
    graph.inputs.splice(graph.inputs.indexOf(x), 1);
    graph.removeInitializer(w3);
  }
  const model = new Model(graph);
  model.irVersion = 8;
  model.opsetImports.set('', 17);
  return model;
}

/** ONNX Round / QuantizeLinear rounding: half to even. */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * Reference int4 asymmetric min-max group quantization of output channel n: `at(n, k)` reads W(n, k); groups of
 * GROUP along k, the last one shorter. Returns codes [N][K] and per-(n, block) scales and zero points.
 */
function referenceQuantization(at: (n: number, k: number) => number) {
  const codes = new Int32Array(C * C);
  const scales = new Float32Array(C * BLOCKS);
  const zeroPoints = new Int32Array(C * BLOCKS);
  for (let n = 0; n < C; n++) {
    for (let b = 0; b < BLOCKS; b++) {
      const end = Math.min(C, (b + 1) * GROUP);
      let lo = 0;
      let hi = 0;
      for (let k = b * GROUP; k < end; k++) {
        lo = Math.min(lo, at(n, k));
        hi = Math.max(hi, at(n, k));
      }
      const s = Math.fround((hi - lo) / 15);
      const z = Math.min(7, Math.max(-8, -8 + roundHalfEven(-lo / s)));
      scales[n * BLOCKS + b] = s;
      zeroPoints[n * BLOCKS + b] = z;
      for (let k = b * GROUP; k < end; k++) codes[n * C + k] = Math.min(7, Math.max(-8, roundHalfEven(at(n, k) / s) + z));
    }
  }
  return { codes, scales, zeroPoints };
}

/** Codes, scales and zero points a MatMulNBits node stores, unpacked to signed codes [N][K] (the lowering adds 8). */
function unpackMatMulNBits(node: Node) {
  const b = node.input(1).initializer!.toNumbers();
  const scales = node.input(2).initializer!.toFloat32();
  const zp = node.input(3).initializer!.toNumbers();
  const bytesPerBlock = GROUP / 2;
  const nibble = (bytes: ArrayLike<number>, at: number, i: number) => (bytes[at + (i >> 1)]! >> ((i & 1) * 4)) & 15;
  const perRow = Math.ceil(BLOCKS / 2);
  const codes = new Int32Array(C * C);
  const padding: number[] = [];
  const zeroPoints = new Int32Array(C * BLOCKS);
  for (let n = 0; n < C; n++) {
    for (let blk = 0; blk < BLOCKS; blk++) zeroPoints[n * BLOCKS + blk] = nibble(zp, n * perRow, blk) - 8;
    for (let k = 0; k < BLOCKS * GROUP; k++) {
      const code = nibble(b, n * BLOCKS * bytesPerBlock, k) - 8;
      if (k < C) codes[n * C + k] = code;
      else padding.push(code - zeroPoints[n * BLOCKS + BLOCKS - 1]!);
    }
  }
  return { codes, scales, zeroPoints, padding };
}

/** W_ref as float32 values (q − z)·s, in the stored [N][K] order. */
function dequantizeReference(ref: ReturnType<typeof referenceQuantization>): Float32Array {
  return Float32Array.from(ref.codes, (q, i) => {
    const cell = Math.floor(i / C) * BLOCKS + Math.floor((i % C) / GROUP);
    return Math.fround((q - ref.zeroPoints[cell]!) * ref.scales[cell]!);
  });
}

async function run(model: Model, h: Float32Array, x: Float32Array): Promise<{ y: Float32Array; z: Float32Array }> {
  const session = await ort.InferenceSession.create(encodeModel(model), { graphOptimizationLevel: 'all' });
  const out = await session.run({ h: new ort.Tensor('float32', h, [BATCH, C]), x: new ort.Tensor('float32', x, [BATCH, C, 2, 2]) });
  await session.release();
  return { y: out.y!.data as Float32Array, z: out.z!.data as Float32Array };
}

describe('group 128 on 320 input channels: a partial last group of 64', () => {
  it('compiles from a recipe, lowers the linears to MatMulNBits, stores exactly the reference group quantization, and runs in ORT', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'qc-partial-'));
    const modelPath = join(dir, 'model.onnx');
    const fp = buildModel();
    saveModel(fp, modelPath);
    const recipePath = join(dir, 'g128.qrecipe');
    writeFileSync(recipePath, 'recipe "g128 on 320" {\n  target cpu\n  quantize all {\n    weight int4 asym group 128\n  }\n}\n');
    const check = await runCli(['check', recipePath, '--model', modelPath]);
    expect(check.code, check.stderr).toBe(0);
    expect(check.stderr).toBe(''); // no divisibility refusal, no warning
    const result = await runCli([modelPath, recipePath, '-o', join(dir, 'out.onnx')]);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain('layers quantized: 3\n');

    const compiled = loadModelSync(join(dir, 'out.onnx'));
    const nbits = compiled.graph.nodes.filter((n) => isOp(n, Op.MatMulNBits));
    expect(nbits.map((n) => [n.intAttr('K', 0), n.intAttr('N', 0), n.intAttr('block_size', 0), n.input(1).initializer!.dims])).toEqual([
      [C, C, GROUP, [C, BLOCKS, GROUP / 2]],
      [C, C, GROUP, [C, BLOCKS, GROUP / 2]],
    ]);
    const references = [referenceQuantization((n, k) => W1[k * C + n]!), referenceQuantization((n, k) => W2[n * C + k]!)];
    for (const [i, node] of nbits.entries()) {
      const stored = unpackMatMulNBits(node);
      expect(stored.scales).toEqual(references[i]!.scales);
      expect(stored.zeroPoints).toEqual(references[i]!.zeroPoints);
      expect(stored.codes).toEqual(references[i]!.codes);
      // The 64 padded positions of each row's last block hold its zero point: they dequantize to 0.
      expect(stored.padding).toEqual(new Array(C * (BLOCKS * GROUP - C)).fill(0));
    }
    // The Conv keeps a blocked DequantizeLinear (scale [N, 3, 1, 1]), equal to the reference too.
    const dq = compiled.graph.nodes.find((n) => isOp(n, Op.DequantizeLinear))!;
    expect([dq.intAttr('axis', 1), dq.intAttr('block_size', 0), dq.input(1).initializer!.dims]).toEqual([1, GROUP, [C, BLOCKS, 1, 1]]);
    const convReference = dequantizeReference(referenceQuantization((n, k) => W3[n * C + k]!));
    expect(dequantizeTensor(dq).toFloat32()).toEqual(convReference);

    // ORT runs the compiled model; it computes x·W_ref (W_ref dequantized from the reference codes).
    const h = gaussian(BATCH * C, 1);
    const x = gaussian(BATCH * C * 4, 1);
    const reference = await run(fp, h, x);
    const quantized = await run(compiled, h, x);
    const w1Ref = dequantizeReference(references[0]!);
    const w2Ref = dequantizeReference(references[1]!);
    const expectedY = new Float32Array(BATCH * C);
    const bias = fp.graph.initializers.get('b2')!.initializer!.toFloat32();
    for (let r = 0; r < BATCH; r++) {
      const hidden = Array.from({ length: C }, (_, n) => {
        let sum = 0;
        for (let k = 0; k < C; k++) sum += h[r * C + k]! * w1Ref[n * C + k]!;
        return Math.tanh(sum);
      });
      for (let n = 0; n < C; n++) {
        let sum = bias[n]!;
        for (let k = 0; k < C; k++) sum += hidden[k]! * w2Ref[n * C + k]!;
        expectedY[r * C + n] = sum;
      }
    }
    expect(sqnrDb(expectedY, quantized.y)).toBeGreaterThan(90); // float32 rounding only
    const ySqnr = sqnrDb(reference.y, quantized.y);
    const zSqnr = sqnrDb(reference.z, quantized.z);
    console.log(`partial groups (group 128 on 320 channels, W4 asym): output SQNR vs FP ${ySqnr.toFixed(2)} dB (MatMulNBits MatMul → Gemm), ${zSqnr.toFixed(2)} dB (blocked DQ 1×1 Conv)`);
    expect(ySqnr).toBeGreaterThan(15);
    expect(zSqnr).toBeGreaterThan(15);
  });
});

/** Q-DiT's input form on 320 channels: int8 sym per-token groups of 128, 128 and a partial 64 of each row. */
function referenceGroupQuantized(h: Float32Array): Float32Array {
  const out = new Float32Array(h.length);
  for (let r = 0; r < BATCH; r++) {
    for (let b = 0; b < BLOCKS; b++) {
      const start = r * C + b * GROUP;
      const end = r * C + Math.min(C, (b + 1) * GROUP);
      let absmax = 0;
      for (let i = start; i < end; i++) absmax = Math.max(absmax, Math.abs(h[i]!));
      const s = Math.max(Math.fround(absmax / 127), Math.fround(1e-8));
      for (let i = start; i < end; i++) out[i] = Math.fround(Math.min(127, Math.max(-128, roundHalfEven(Math.fround(h[i]! / s)))) * s);
    }
  }
  return out;
}

describe('dynamic per-token groups of 128 on 320 input channels: a partial last token group of 64', () => {
  it('checks clean, quantizes each row\'s last 64 channels by their own max |x| in the Q/DQ graph, and leaves it to MatMulNBits at accuracy_level 4 on cpu', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'qc-partial-tokens-'));
    const modelPath = join(dir, 'model.onnx');
    saveModel(buildModel(false), modelPath);
    const recipePath = join(dir, 'w4a8.qrecipe');
    writeFileSync(recipePath, 'recipe "w4a8 g128 on 320" {\n  target cpu\n  quantize all {\n    weight int4 sym group 128\n    input int8 sym dynamic per-token-group(size: weight)\n  }\n}\n');
    const check = await runCli(['check', recipePath, '--model', modelPath]);
    expect(check.code, check.stderr).toBe(0);
    expect(check.stderr).toBe('');

    // The Q/DQ graph (the recipe's plan, not lowered): the quantizer's output is the reference per-group quantization of h.
    const graphForm = loadModelSync(modelPath);
    const weight: WeightQuantSpec = { bits: 4, symmetric: true, granularity: { kind: 'group', size: GROUP }, range: { kind: 'minmax' }, rounding: { kind: 'nearest' } };
    const input: ActivationQuantSpec = { bits: 8, symmetric: true, mode: { kind: 'dynamic', granularity: 'per-token-group', groupSize: 'weight' }, range: { kind: 'minmax' } };
    const plan = new Map(discoverLayers(graphForm).map((l) => [l.name, { layer: l.name, weight, input }]));
    expect(plan.size).toBe(2);
    await quantizePlannedWeights(graphForm, plan, undefined, () => {});
    quantizePlannedActivations(graphForm, plan, undefined, DEFAULT_ACTIVATION_LOWERING);
    const unpadded = graphForm.graph.nodes.find((n) => isOp(n, Op.Slice))!;
    expect(graphForm.graph.nodes.filter((n) => isOp(n, Op.Pad)).length).toBe(2); // fc1's input and fc2's
    const h = gaussian(BATCH * C, 1);
    h[C - 1] = 40; // an outlier in row 0's partial group: only that group's scale may see it
    graphForm.graph.outputs.push(unpadded.outputs[0]!);
    const session = await ort.InferenceSession.create(encodeModel(graphForm));
    const fetched = await session.run({ h: new ort.Tensor('float32', h, [BATCH, C]) });
    await session.release();
    expect(fetched[unpadded.outputs[0]!.name]!.dims).toEqual([BATCH, C]);
    expect(fetched[unpadded.outputs[0]!.name]!.data).toEqual(referenceGroupQuantized(h));

    // The cpu compile hands both inputs to the kernel: no Pad, Slice or quantizer left, within rounding ties of the Q/DQ graph.
    const out = join(dir, 'out.onnx');
    const compiled = await runCli([modelPath, recipePath, '-o', out]);
    expect(compiled.code, compiled.stderr).toBe(0);
    expect(compiled.stdout).toMatch(/int8_group_inputs_in_kernel=2/);
    const lowered = loadModelSync(out);
    expect(lowered.graph.nodes.map((n) => n.opType).sort()).toEqual(['MatMulNBits', 'MatMulNBits', 'Tanh']);
    expect(lowered.graph.nodes.filter((n) => isOp(n, Op.MatMulNBits)).map((n) => n.intAttr('accuracy_level', 0))).toEqual([4, 4]);
    graphForm.graph.outputs.pop();
    const run1 = async (m: Model) => {
      const s = await ort.InferenceSession.create(encodeModel(m));
      const y = (await s.run({ h: new ort.Tensor('float32', h, [BATCH, C]) })).y!.data as Float32Array;
      await s.release();
      return y;
    };
    const kernelSqnr = sqnrDb(await run1(graphForm), await run1(lowered));
    console.log(`partial token groups (128 on 320, W4A8 sym): MatMulNBits accuracy 4 against the Q/DQ graph ${kernelSqnr.toFixed(2)} dB`);
    expect(kernelSqnr).toBeGreaterThan(40);
  });
});
