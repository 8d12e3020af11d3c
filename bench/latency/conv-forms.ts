/**
 * Which int8 / int4 Conv forms ORT CPU runs faster than float, on one SD-1.5-sized Conv (320→320, 3×3, input
 * [2, 320, 64, 64]): FP32; the W8A8 Q/DQ form the lowering keeps (DQ(input), DQ(weight) → Conv: ORT does not
 * fuse it); the same with a Q/DQ pair on its output (ORT fuses it into QLinearConv); the same input Q/DQ with
 * the weight dequantized at compile time to a float constant (`folded`: exact, prepacked like FP32); ConvInteger
 * (uint8 × uint8 → int32, then Cast and Mul by the scales); and weight-only forms: int8 DQ → Conv and int4 DQ
 * (opset 21, per output channel) → Conv, also with the session option `session.disable_quant_qdq=1`
 * (`w4-dq-load`), under which ORT's constant folding dequantizes the weight once at session load (float speed and
 * float memory at run time, the int4 file). Medians of 9 interleaved runs, 2 threads, and the kernels ORT's
 * profiler shows for one run of each (what the graph became).
 * Run: npx tsx bench/latency/conv-forms.ts
 */
import * as ort from 'onnxruntime-node';
import { Graph, Model } from '../../src/ir/core.js';
import { DataType } from '../../src/ir/dtype.js';
import { Op } from '../../src/ir/ops.js';
import { encodeModel } from '../../src/ir/serde.js';
import { Tensor } from '../../src/ir/tensor.js';
import { profileByOp } from './ort-profile.js';

const C = 320, H = 64, K = 3;
const FORMS = ['fp32', 'dq', 'qlinear', 'folded', 'convinteger', 'w8-dq', 'w4-dq', 'w4-dq-load'] as const;
type Form = (typeof FORMS)[number];
const attr = (value: number) => ({ kind: 'int' as const, value });
const ints = (value: number[]) => ({ kind: 'ints' as const, value });

function build(form: Form): Model {
  const g = new Graph('c');
  const x = g.addInput('x', { elemType: DataType.FLOAT, shape: [2, C, H, H] });
  const n = C * C * K * K;
  // int4 forms use codes in [-8, 7]; the scale keeps the float weights of the same magnitude.
  const int4 = form === 'w4-dq' || form === 'w4-dq-load';
  const codes = Int8Array.from({ length: n }, (_, i) => (int4 ? ((i * 7919) % 15) - 7 : ((i * 7919) % 255) - 127));
  const step = int4 ? 0.016 : 0.001;
  const ws = g.addInitializer('ws', Tensor.fromFloat32([C], new Float32Array(C).fill(step)));
  const xs = g.addInitializer('xs', Tensor.fromFloat32([], Float32Array.of(0.02)));
  const xz = g.addInitializer('xz', Tensor.fromBytes(DataType.UINT8, [], Uint8Array.of(128)));
  const pads = { pads: ints([1, 1, 1, 1]) };
  const quantizedInput = (): ReturnType<typeof g.addInput> => {
    const xq = g.addNode({ opType: Op.QuantizeLinear, inputs: [x, xs, xz], outputs: ['xq'] }).outputs[0]!;
    return g.addNode({ opType: Op.DequantizeLinear, inputs: [xq, xs, xz], outputs: ['xd'] }).outputs[0]!;
  };
  const weightDq = (dtype: DataType, bytes: Uint8Array) => {
    const q = g.addInitializer('wq', Tensor.fromBytes(dtype, [C, C, K, K], bytes));
    return g.addNode({ opType: Op.DequantizeLinear, inputs: [q, ws], outputs: ['w'], attributes: { axis: attr(0) } }).outputs[0]!;
  };
  let y;
  if (form === 'fp32' || form === 'folded') {
    const w = g.addInitializer('w', Tensor.fromFloat32([C, C, K, K], Float32Array.from(codes, (c) => Math.fround(c * step))));
    y = g.addNode({ opType: Op.Conv, inputs: [form === 'folded' ? quantizedInput() : x, w], outputs: ['y'], attributes: pads }).outputs[0]!;
  } else if (form === 'dq' || form === 'qlinear') {
    const w = weightDq(DataType.INT8, new Uint8Array(codes.buffer));
    y = g.addNode({ opType: Op.Conv, inputs: [quantizedInput(), w], outputs: ['yc'], attributes: pads }).outputs[0]!;
    if (form === 'qlinear') {
      const ys = g.addInitializer('ys', Tensor.fromFloat32([], Float32Array.of(0.05)));
      const yq = g.addNode({ opType: Op.QuantizeLinear, inputs: [y, ys, xz], outputs: ['yq'] }).outputs[0]!;
      y = g.addNode({ opType: Op.DequantizeLinear, inputs: [yq, ys, xz], outputs: ['y'] }).outputs[0]!;
    }
  } else if (form === 'w8-dq') {
    y = g.addNode({ opType: Op.Conv, inputs: [x, weightDq(DataType.INT8, new Uint8Array(codes.buffer))], outputs: ['y'], attributes: pads }).outputs[0]!;
  } else if (int4) {
    const packed = new Uint8Array(n / 2);
    for (let i = 0; i < n; i++) packed[i >> 1]! |= (codes[i]! & 0x0f) << ((i & 1) * 4);
    y = g.addNode({ opType: Op.Conv, inputs: [x, weightDq(DataType.INT4, packed)], outputs: ['y'], attributes: pads }).outputs[0]!;
  } else {
    const u = Uint8Array.from(codes, (c) => c + 128);
    const q = g.addInitializer('wq', Tensor.fromBytes(DataType.UINT8, [C, C, K, K], u));
    const wz = g.addInitializer('wz', Tensor.fromBytes(DataType.UINT8, [], Uint8Array.of(128)));
    const xq = g.addNode({ opType: Op.QuantizeLinear, inputs: [x, xs, xz], outputs: ['xq'] }).outputs[0]!;
    const acc = g.addNode({ opType: 'ConvInteger', inputs: [xq, q, xz, wz], outputs: ['acc'], attributes: pads }).outputs[0]!;
    const f = g.addNode({ opType: Op.Cast, inputs: [acc], outputs: ['f'], attributes: { to: attr(1) } }).outputs[0]!;
    const sc = g.addInitializer('sc', Tensor.fromFloat32([1, C, 1, 1], new Float32Array(C).fill(0.00002)));
    y = g.addNode({ opType: Op.Mul, inputs: [f, sc], outputs: ['y'] }).outputs[0]!;
  }
  y.type = { elemType: DataType.FLOAT, shape: [2, C, H, H] };
  g.outputs.push(y);
  const m = new Model(g); m.irVersion = 10; m.opsetImports.set('', 21);
  return m;
}

const options = { graphOptimizationLevel: 'all', intraOpNumThreads: 2, interOpNumThreads: 1 } as const;
const optionsOf = (form: Form): ort.InferenceSession.SessionOptions => (form === 'w4-dq-load' ? { ...options, extra: { session: { disable_quant_qdq: '1' } } } : options);
const feeds = { x: new ort.Tensor('float32', Float32Array.from({ length: 2 * C * H * H }, (_, i) => Math.sin(i)), [2, C, H, H]) };

const sessions = new Map<Form, ort.InferenceSession>();
for (const f of FORMS) sessions.set(f, await ort.InferenceSession.create(encodeModel(build(f)), optionsOf(f)));
for (const s of sessions.values()) await s.run(feeds);
const times = new Map<Form, number[]>();
for (let r = 0; r < 9; r++) for (const [f, s] of sessions) { const t = performance.now(); await s.run(feeds); times.set(f, [...(times.get(f) ?? []), performance.now() - t]); }
for (const s of sessions.values()) await s.release();
const medians = Object.fromEntries([...times].map(([f, t]) => [f, Number([...t].sort((a, b) => a - b)[4]!.toFixed(1))]));
const kernels: Record<string, Record<string, number>> = {};
for (const f of FORMS) kernels[f] = await profileByOp(encodeModel(build(f)), feeds, optionsOf(f));
console.log(JSON.stringify({ medians_ms: medians, kernels, summary: Object.entries(medians).map(([f, ms]) => `${f} ${ms} ms (${(medians.fp32! / ms).toFixed(2)}x fp32)`).join(', ') }));
