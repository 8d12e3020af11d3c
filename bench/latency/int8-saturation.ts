/**
 * What ORT CPU's int8 forms cost and whether they are exact, on one DiT-XL/2 fc1 at batch 2 ([512, 1152] ×
 * [1152, 4608]; the cpu lowering's W8A8 form: uint8 input Q/DQ, int8 per-channel weight DQ → MatMul, which ORT
 * fuses into MatMulIntegerToFloat): FP32; int8 weights with full-range codes under ORT's default session (`s8`:
 * uint8×int8, whose pair sums saturate int16 on x86 without VNNI) and with `session.x64quantprecision=1`
 * (`s8-precise`: ORT rewrites the weights to uint8 and runs uint8×uint8, exact everywhere); the same codes stored
 * as uint8 by the compiler (`u8`); and 7-bit codes within ±64 (`s7`, `s7-precise`: ORT leaves them int8).
 * Per form: the median of 9 interleaved runs (2 threads) and the largest relative error of the output against
 * the exact integer products on inputs with large activation codes. Run: npx tsx bench/latency/int8-saturation.ts
 */
import * as ort from 'onnxruntime-node';
import { Graph, Model } from '../../src/ir/core.js';
import { DataType } from '../../src/ir/dtype.js';
import { Op } from '../../src/ir/ops.js';
import { encodeModel } from '../../src/ir/serde.js';
import { Tensor } from '../../src/ir/tensor.js';

const M = 512, K = 1152, N = 4608;
const X_SCALE = 0.02, W_SCALE = 0.001;
const FORMS = ['fp32', 's8', 's8-precise', 'u8', 's7', 's7-precise'] as const;
type Form = (typeof FORMS)[number];

/** Weight code of element (k, n): full int8 range, or 7-bit. */
const code = (i: number, sevenBit: boolean): number => (sevenBit ? ((i * 7919) % 127) - 63 : ((i * 7919) % 255) - 127);

function build(form: Form): Uint8Array {
  const g = new Graph('fc1');
  const x = g.addInput('x', { elemType: DataType.FLOAT, shape: [M, K] });
  const sevenBit = form.startsWith('s7');
  let w;
  if (form === 'fp32') {
    w = g.addInitializer('w', Tensor.fromFloat32([K, N], Float32Array.from({ length: K * N }, (_, i) => code(i, false) * W_SCALE)));
  } else {
    const unsigned = form === 'u8';
    const codes = Uint8Array.from({ length: K * N }, (_, i) => (code(i, sevenBit) + (unsigned ? 128 : 256)) & 255);
    const wq = g.addInitializer('wq', Tensor.fromBytes(unsigned ? DataType.UINT8 : DataType.INT8, [K, N], codes));
    const ws = g.addInitializer('ws', Tensor.fromFloat32([N], new Float32Array(N).fill(W_SCALE)));
    const wz = g.addInitializer('wz', Tensor.fromBytes(unsigned ? DataType.UINT8 : DataType.INT8, [N], new Uint8Array(N).fill(unsigned ? 128 : 0)));
    w = g.addNode({ opType: Op.DequantizeLinear, inputs: [wq, ws, wz], outputs: ['w'], attributes: { axis: { kind: 'int', value: 1 } } }).outputs[0]!;
  }
  let input = x;
  if (form !== 'fp32') {
    const xs = g.addInitializer('xs', Tensor.fromFloat32([], Float32Array.of(X_SCALE)));
    const xz = g.addInitializer('xz', Tensor.fromBytes(DataType.UINT8, [], Uint8Array.of(128)));
    const xq = g.addNode({ opType: Op.QuantizeLinear, inputs: [x, xs, xz], outputs: ['xq'] }).outputs[0]!;
    input = g.addNode({ opType: Op.DequantizeLinear, inputs: [xq, xs, xz], outputs: ['xd'] }).outputs[0]!;
  }
  const y = g.addNode({ opType: Op.MatMul, inputs: [input, w], outputs: ['y'] }).outputs[0]!;
  y.type = { elemType: DataType.FLOAT, shape: [M, N] };
  g.outputs.push(y);
  const model = new Model(g);
  model.irVersion = 10;
  model.opsetImports.set('', 21);
  return encodeModel(model);
}

const optionsOf = (form: Form): ort.InferenceSession.SessionOptions => ({
  graphOptimizationLevel: 'all',
  intraOpNumThreads: 2,
  interOpNumThreads: 1,
  ...(form.endsWith('-precise') ? { extra: { session: { x64quantprecision: '1' } } } : {}),
});
// Activation codes 128 ± 127 (x = ±2.54): large codes in every pair, where int16 pair sums saturate.
const xCodes = Int16Array.from({ length: M * K }, (_, i) => (i % 3 === 0 ? 127 : i % 3 === 1 ? -127 : ((i * 31) % 255) - 127));
const feeds = { x: new ort.Tensor('float32', Float32Array.from(xCodes, (c) => c * X_SCALE), [M, K]) };

/** The exact output of rows 0..rows-1 (integer products times the scales), for the codes `form` stores. */
function exactRows(sevenBit: boolean, rows: number): Float64Array {
  const out = new Float64Array(rows * N);
  for (let m = 0; m < rows; m++)
    for (let k = 0; k < K; k++) {
      const a = xCodes[m * K + k]!;
      for (let n = 0; n < N; n++) out[m * N + n]! += a * code(k * N + n, sevenBit);
    }
  return out.map((v) => v * X_SCALE * W_SCALE);
}

const CHECKED_ROWS = 8;
const exact = { full: exactRows(false, CHECKED_ROWS), sevenBit: exactRows(true, CHECKED_ROWS) };
const sessions = new Map<Form, ort.InferenceSession>();
for (const form of FORMS) sessions.set(form, await ort.InferenceSession.create(build(form), optionsOf(form)));
const errors: Partial<Record<Form, number>> = {};
for (const [form, session] of sessions) {
  const y = (await session.run(feeds)).y!.data as Float32Array;
  const want = form.startsWith('s7') ? exact.sevenBit : exact.full;
  let worst = 0, scale = 0;
  for (let i = 0; i < want.length; i++) {
    worst = Math.max(worst, Math.abs(y[i]! - want[i]!));
    scale = Math.max(scale, Math.abs(want[i]!));
  }
  errors[form] = Number((worst / scale).toExponential(2));
}
const times = new Map<Form, number[]>();
for (let r = 0; r < 9; r++)
  for (const [form, session] of sessions) {
    const t = performance.now();
    await session.run(feeds);
    times.set(form, [...(times.get(form) ?? []), performance.now() - t]);
  }
for (const session of sessions.values()) await session.release();
const medians = Object.fromEntries([...times].map(([form, t]) => [form, Number([...t].sort((a, b) => a - b)[4]!.toFixed(1))])) as Record<Form, number>;
console.log(
  JSON.stringify({
    shape: { M, K, N },
    medians_ms: medians,
    max_relative_error: errors,
    summary: FORMS.map((f) => `${f} ${medians[f]} ms (${(medians.fp32 / medians[f]).toFixed(2)}x fp32, rel. error ${errors[f]})`).join(', '),
  }),
);
