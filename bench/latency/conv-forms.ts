/**
 * Why W8A8 Convs are not faster on ORT CPU unless a QuantizeLinear follows them: one SD-1.5-sized Conv (320→320,
 * 3×3, input [2, 320, 64, 64]) as FP32, as the Q/DQ form our W8A8 lowering keeps (DQ(input), DQ(weight) → Conv:
 * ORT does not fuse it), with a Q/DQ pair on its output too (ORT fuses it into QLinearConv), and as ConvInteger
 * (uint8 × uint8 → int32, then Cast and Mul by the scales). Medians of 9 interleaved runs, 2 threads.
 * Run: npx tsx bench/latency/conv-forms.ts
 */
import * as ort from 'onnxruntime-node';
import { Graph, Model } from '../../src/ir/core.js';
import { DataType } from '../../src/ir/dtype.js';
import { Op } from '../../src/ir/ops.js';
import { encodeModel } from '../../src/ir/serde.js';
import { Tensor } from '../../src/ir/tensor.js';
const C = 320, H = 64, K = 3;
const attr = (value: number) => ({ kind: 'int' as const, value });
const ints = (value: number[]) => ({ kind: 'ints' as const, value });
function build(form: string): Model {
  const g = new Graph('c');
  const x = g.addInput('x', { elemType: DataType.FLOAT, shape: [2, C, H, H] });
  const n = C * C * K * K;
  const codes = Int8Array.from({ length: n }, (_, i) => ((i * 7919) % 255) - 127);
  const ws = g.addInitializer('ws', Tensor.fromFloat32([C], new Float32Array(C).fill(0.001)));
  const xs = g.addInitializer('xs', Tensor.fromFloat32([], Float32Array.of(0.02)));
  const xz = g.addInitializer('xz', Tensor.fromBytes(DataType.UINT8, [], Uint8Array.of(128)));
  const pads = { pads: ints([1, 1, 1, 1]) };
  let y;
  if (form === 'fp32') {
    const w = g.addInitializer('w', Tensor.fromFloat32([C, C, K, K], Float32Array.from(codes, (c) => c * 0.001)));
    y = g.addNode({ opType: Op.Conv, inputs: [x, w], outputs: ['y'], attributes: pads }).outputs[0]!;
  } else if (form === 'dq' || form === 'qlinear') {
    const q = g.addInitializer('wq', Tensor.fromBytes(DataType.INT8, [C, C, K, K], new Uint8Array(codes.buffer)));
    const w = g.addNode({ opType: Op.DequantizeLinear, inputs: [q, ws], outputs: ['w'], attributes: { axis: attr(0) } }).outputs[0]!;
    const xq = g.addNode({ opType: Op.QuantizeLinear, inputs: [x, xs, xz], outputs: ['xq'] }).outputs[0]!;
    const xd = g.addNode({ opType: Op.DequantizeLinear, inputs: [xq, xs, xz], outputs: ['xd'] }).outputs[0]!;
    y = g.addNode({ opType: Op.Conv, inputs: [xd, w], outputs: ['yc'], attributes: pads }).outputs[0]!;
    if (form === 'qlinear') {
      const ys = g.addInitializer('ys', Tensor.fromFloat32([], Float32Array.of(0.05)));
      const yq = g.addNode({ opType: Op.QuantizeLinear, inputs: [y, ys, xz], outputs: ['yq'] }).outputs[0]!;
      y = g.addNode({ opType: Op.DequantizeLinear, inputs: [yq, ys, xz], outputs: ['y'] }).outputs[0]!;
    }
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
const feeds = { x: new ort.Tensor('float32', Float32Array.from({ length: 2 * C * H * H }, (_, i) => Math.sin(i)), [2, C, H, H]) };
const sessions: Record<string, ort.InferenceSession> = {};
for (const f of ['fp32', 'dq', 'qlinear', 'convinteger']) sessions[f] = await ort.InferenceSession.create(encodeModel(build(f)), { graphOptimizationLevel: 'all', intraOpNumThreads: 2, interOpNumThreads: 1 });
const times: Record<string, number[]> = {};
for (let r = 0; r < 9; r++) for (const [f, s] of Object.entries(sessions)) { const t = performance.now(); await s.run(feeds); (times[f] ??= []).push(performance.now() - t); }
const medians = Object.fromEntries(Object.entries(times).map(([f, t]) => [f, Number([...t].sort((a, b) => a - b)[4]!.toFixed(1))]));
console.log(JSON.stringify({ medians_ms: medians, summary: Object.entries(medians).map(([f, ms]) => `${f} ${ms} ms (${(medians.fp32! / ms).toFixed(2)}x fp32)`).join(", ") }));
