/**
 * ORT CPU latency of the runtime formats the backends emit, side by side on the same weights: FP32 MatMul,
 * int8 Q/DQ (per-tensor static activations, per-channel weights; fused by ORT at optimization `all`), int4
 * blocked DequantizeLinear as written (optimization `basic`: no rewrite), and the cpu backend's MatMulNBits
 * at accuracy_level 0 and 4 — on DiT-XL/2 layer shapes and on the whole dit-digits fixture (W8A8 static Q/DQ,
 * and rtn-w4a16-g128 style int4) — with each model's size. Medians of `runs` timed runs after 2 warm-ups;
 * prints one JSON line.
 * Run: npx tsx bench/runtime-formats.ts [runs=9] [threads=2]
 */
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { cpuBackend } from '../src/backends/cpu.js';
import { Graph, Model, type Value } from '../src/ir/core.js';
import { DataType } from '../src/ir/dtype.js';
import { discoverLayers } from '../src/quant/layers.js';
import { Op } from '../src/ir/ops.js';
import { encodeModel, loadModelSync } from '../src/ir/serde.js';
import { Tensor, packInt4 } from '../src/ir/tensor.js';
import { calibrate } from '../src/passes/calibrate.js';
import { quantizeActivations } from '../src/passes/quantize-activations.js';
import { quantizeWeights } from '../src/passes/quantize-weights.js';
import { OrtExecutor } from '../src/runtime/ir-executor.js';
import type { WeightQuantSpec } from '../src/quant/plan.js';
import { seededRandom } from '../src/random.js';
import { Artifacts, CALIBRATION_BATCHES } from '../src/passes/artifacts.js';
import { runPass } from '../src/passes/pass-manager.js';

const runs = Number(process.argv[2] ?? 9);
const threads = Number(process.argv[3] ?? 2);
const BLOCK = 128;

type Format = 'fp32' | 'qdq_int8' | 'int4_dq' | 'nbits_acc0' | 'nbits_acc4';
const FORMATS: Format[] = ['fp32', 'qdq_int8', 'int4_dq', 'nbits_acc0', 'nbits_acc4'];

/** Y = A[M,K]·W[K,N] in `format`, from one seeded weight matrix. */
function linear(M: number, K: number, N: number, format: Format): Model {
  const random = seededRandom(K * 31 + N);
  const graph = new Graph('linear');
  const a = graph.addInput('a', { elemType: DataType.FLOAT, shape: [M, K] });
  const attr = (value: number) => ({ kind: 'int' as const, value });
  let w: Value;
  if (format === 'fp32') {
    w = graph.addInitializer('w', Tensor.fromFloat32([K, N], Float32Array.from({ length: K * N }, () => (random() - 0.5) * 0.1)));
  } else if (format === 'qdq_int8') {
    const codes = Int8Array.from({ length: K * N }, () => Math.round((random() - 0.5) * 254));
    const q = graph.addInitializer('w_quantized', Tensor.fromBytes(DataType.INT8, [K, N], new Uint8Array(codes.buffer)));
    const s = graph.addInitializer('w_scale', Tensor.fromFloat32([N], new Float32Array(N).fill(0.001)));
    w = graph.addNode({ opType: Op.DequantizeLinear, inputs: [q, s], outputs: ['w'], attributes: { axis: attr(1) } }).outputs[0]!;
  } else {
    const q = graph.addInitializer('w_quantized', Tensor.fromBytes(DataType.INT4, [K, N], packInt4(Array.from({ length: K * N }, () => Math.floor(random() * 16) - 8))));
    const s = graph.addInitializer('w_scale', Tensor.fromFloat32([K / BLOCK, N], new Float32Array((K / BLOCK) * N).fill(0.01)));
    w = graph.addNode({ opType: Op.DequantizeLinear, name: 'fc/weight_dequantize', inputs: [q, s], outputs: ['w'], attributes: { axis: attr(0), block_size: attr(BLOCK) } }).outputs[0]!;
  }
  let input = a;
  if (format === 'qdq_int8') {
    const scale = graph.addInitializer('a_scale', Tensor.fromFloat32([], Float32Array.of(0.02)));
    const zp = graph.addInitializer('a_zero_point', Tensor.fromBytes(DataType.INT8, [], Uint8Array.of(0)));
    const q = graph.addNode({ opType: Op.QuantizeLinear, inputs: [a, scale, zp], outputs: ['a_q'] }).outputs[0]!;
    input = graph.addNode({ opType: Op.DequantizeLinear, inputs: [q, scale, zp], outputs: ['a_dq'] }).outputs[0]!;
  }
  const y = graph.addNode({ opType: Op.MatMul, name: 'fc', inputs: [input, w], outputs: ['y'] }).outputs[0]!;
  y.type = { elemType: DataType.FLOAT, shape: [M, N] };
  graph.outputs.push(y);
  const model = new Model(graph);
  model.irVersion = 10;
  model.opsetImports.set('', 21);
  if (format === 'nbits_acc0' || format === 'nbits_acc4') cpuBackend.lower(model, { accuracyLevel: format === 'nbits_acc0' ? 0 : 4 });
  return model;
}

/** Session options per format: `int4_dq` at basic, so ORT does not rewrite it into MatMulNBits itself. */
function sessionOptions(format: Format): ort.InferenceSession.SessionOptions {
  return { graphOptimizationLevel: format === 'int4_dq' ? 'basic' : 'all', intraOpNumThreads: threads, interOpNumThreads: 1 };
}

/** Serialized bytes of the last model timed (its size on disk, weights inline). */
let lastBytes = 0;

async function medianMs(model: Model, options: ort.InferenceSession.SessionOptions, feeds: Record<string, ort.Tensor>): Promise<number> {
  const bytes = encodeModel(model);
  lastBytes = bytes.length;
  const session = await ort.InferenceSession.create(bytes, options);
  for (let i = 0; i < 2; i++) await session.run(feeds);
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const start = performance.now();
    await session.run(feeds);
    times.push(performance.now() - start);
  }
  await session.release();
  times.sort((x, y) => x - y);
  return Number(times[Math.floor(times.length / 2)]!.toFixed(2));
}

const shapes = { mlp_fc1: [256, 1152, 4608], mlp_fc2: [256, 4608, 1152], attn_qkv: [256, 1152, 3456] } as const;
const layers: Record<string, Record<string, number>> = {};
for (const [name, [M, K, N]] of Object.entries(shapes)) {
  const random = seededRandom(M + K);
  const feeds = { a: new ort.Tensor('float32', Float32Array.from({ length: M * K }, () => random() * 2 - 1), [M, K]) };
  const row: Record<string, number> = {};
  for (const format of FORMATS) {
    row[`${format}_ms`] = await medianMs(linear(M, K, N, format), sessionOptions(format), feeds);
    row[`${format}_bytes`] = lastBytes;
  }
  for (const format of FORMATS.slice(1)) row[`${format}_speedup_vs_fp32`] = Number((row.fp32_ms! / row[`${format}_ms`]!).toFixed(2));
  layers[name] = row;
}

// The fixture: FP32, W8A8 static Q/DQ (fused at `all`), int4 g128 as DequantizeLinear (basic), and the cpu
// lowering of the int4 model at accuracy 0 and 4.
const fixturePath = join(import.meta.dirname, '..', 'test', 'fixtures', 'dit-digits', 'model.onnx');
const w4: WeightQuantSpec = { bits: 4, symmetric: true, granularity: { kind: 'group', size: 128 }, range: { kind: 'minmax' }, rounding: { kind: 'nearest' } };
const w8: WeightQuantSpec = { bits: 8, symmetric: true, granularity: { kind: 'per-channel' }, range: { kind: 'minmax' }, rounding: { kind: 'nearest' } };
const random = seededRandom(5);
const batch = 8;
const x = Float32Array.from({ length: batch * 256 }, () => random() * 2 - 1);
const t = BigInt64Array.from({ length: batch }, (_, i) => BigInt(i * 100));
const y = BigInt64Array.from({ length: batch }, (_, i) => BigInt(i % 10));
const fixtureFeeds = { x: new ort.Tensor('float32', x, [batch, 1, 16, 16]), t: new ort.Tensor('int64', t, [batch]), y: new ort.Tensor('int64', y, [batch]) };

async function quantizedFixture(weight: WeightQuantSpec, activations: boolean): Promise<Model> {
  const model = loadModelSync(fixturePath);
  const input = activations ? ({ bits: 8, symmetric: true, mode: { kind: 'static' }, range: { kind: 'minmax' } } as const) : undefined;
  const plan = new Map(discoverLayers(model).filter((l) => /^(attn|mlp)\.|^adaln$/.test(l.role)).map((l) => [l.name, { layer: l.name, weight, input }]));
  const calibration = [{ x: { dtype: 'float32' as const, dims: [batch, 1, 16, 16], data: x }, t: { dtype: 'int64' as const, dims: [batch], data: t }, y: { dtype: 'int64' as const, dims: [batch], data: y } }];
  const context = { seed: 0, plan, executor: new OrtExecutor({ threads }), artifacts: new Artifacts().set(CALIBRATION_BATCHES, calibration), progress: () => {}, log: () => {} };
  await runPass(quantizeWeights, model, {}, context);
  if (activations) {
    await runPass(calibrate, model, { ema: 0, timesteps: 1000 }, context);
    await runPass(quantizeActivations, model, { timesteps: 1000 }, context);
  }
  return model;
}
const fixture: Record<string, number> = {};
const timeFixture = async (format: string, model: Model, options: ort.InferenceSession.SessionOptions) => {
  fixture[`${format}_ms`] = await medianMs(model, options, fixtureFeeds);
  fixture[`${format}_bytes`] = lastBytes;
};
await timeFixture('fp32', loadModelSync(fixturePath), sessionOptions('fp32'));
await timeFixture('qdq_int8', await quantizedFixture(w8, true), sessionOptions('qdq_int8'));
await timeFixture('int4_dq', await quantizedFixture(w4, false), sessionOptions('int4_dq'));
for (const level of [0, 4]) {
  const model = await quantizedFixture(w4, false);
  cpuBackend.lower(model, { accuracyLevel: level });
  await timeFixture(`nbits_acc${level}`, model, sessionOptions('fp32'));
}
for (const format of ['qdq_int8', 'int4_dq', 'nbits_acc0', 'nbits_acc4']) fixture[`${format}_speedup_vs_fp32`] = Number((fixture.fp32_ms! / fixture[`${format}_ms`]!).toFixed(2));

const mlp = (name: string) => `${name} ${['qdq_int8', 'nbits_acc0', 'nbits_acc4'].map((f) => `${f} ${layers[name]![`${f}_speedup_vs_fp32`]}x`).join(', ')}`;
const summary = `speed-up vs FP32: ${mlp('mlp_fc1')}; ${mlp('mlp_fc2')}; fixture ${['qdq_int8', 'int4_dq', 'nbits_acc0', 'nbits_acc4'].map((f) => `${f} ${fixture[`${f}_speedup_vs_fp32`]}x`).join(', ')}`;
console.log(JSON.stringify({ summary, ort: ort.env.versions, threads, runs, batch, layers, fixture }));
