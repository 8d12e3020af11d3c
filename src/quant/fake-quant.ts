/**
 * The one activation fake-quant builder: `(clip(round(x / s) + zp, qmin, qmax) − zp) · s`, the integer grid
 * computed in float. quantize-activations emits it for scales it computes in the graph (dynamic, per-timestep
 * per sample); the WebGPU lowering turns a static Q/DQ pair into it. Rounding is half to even, as in
 * QuantizeLinear: ONNX Round, or — for ORT Web's WebGPU EP, which has no Round kernel ("webgpu kernel not found
 * in registries for Op type: Round", checked in headless Chromium) — built from Floor/Sub/Equal/Mul/Where:
 * f = Floor(v + 0.5); ties (f − v = 0.5) take f − (f mod 2). The two agree except for the one float just
 * below a half, which v + 0.5 rounds up.
 */
import type { Value } from '../ir/core.js';
import { Op } from '../ir/ops.js';

/** How the caller adds nodes and constants (it owns names and placement); `suffix` names each within the quantizer. */
export interface FakeQuantEmitter {
  op(opType: string, inputs: Value[], suffix: string): Value;
  /** A float32 scalar constant. */
  scalar(suffix: string, value: number): Value;
}

/** `round`: ONNX Round; `floor-where`: the same half-to-even rounding from ops with WebGPU kernels. */
export type FakeQuantRounding = 'round' | 'floor-where';

/** What to fake-quantize, and on which grid: `zeroPoint` as a float value (undefined: 0), codes in [qmin, qmax]. */
export interface FakeQuantSpec {
  x: Value;
  scale: Value;
  zeroPoint?: Value;
  qmin: number;
  qmax: number;
  rounding: FakeQuantRounding;
}

/** Emits the fake-quant of `spec.x`; returns the dequantized value. */
export function fakeQuantize(emit: FakeQuantEmitter, spec: FakeQuantSpec): Value {
  const { x, scale, zeroPoint } = spec;
  const lowQ = emit.scalar('qmin', spec.qmin);
  const highQ = emit.scalar('qmax_clip', spec.qmax);
  const ratio = emit.op(Op.Div, [x, scale], 'x_over_scale');
  let q = spec.rounding === 'round' ? emit.op(Op.Round, [ratio], 'rounded') : roundHalfToEven(emit, ratio);
  if (zeroPoint) q = emit.op(Op.Add, [q, zeroPoint], 'shifted');
  q = emit.op(Op.Clip, [q, lowQ, highQ], 'clipped');
  if (zeroPoint) q = emit.op(Op.Sub, [q, zeroPoint], 'unshifted');
  return emit.op(Op.Mul, [q, scale], 'dequantized');
}

/** ONNX Round (half to even) from ops with WebGPU kernels: Floor(v + 0.5), then ties step down to the even neighbour. */
function roundHalfToEven(emit: FakeQuantEmitter, v: Value): Value {
  const half = emit.scalar('half', 0.5);
  const floor = emit.op(Op.Floor, [emit.op(Op.Add, [v, half], 'add_half')], 'floor');
  const tie = emit.op(Op.Equal, [emit.op(Op.Sub, [floor, v], 'frac'), half], 'tie');
  const even = emit.op(Op.Mul, [emit.op(Op.Floor, [emit.op(Op.Mul, [floor, half], 'halve')], 'floor_half'), emit.scalar('two', 2)], 'even');
  const odd = emit.op(Op.Sub, [floor, even], 'odd');
  return emit.op(Op.Where, [tie, emit.op(Op.Sub, [floor, odd], 'to_even'), floor], 'rounded');
}
