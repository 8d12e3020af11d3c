/**
 * Activation fake-quant for execution providers without a QuantizeLinear kernel (ORT's WebGPU EP): a
 * QuantizeLinear → DequantizeLinear pair becomes `Mul(Clip(round(Div(x, s)) + zp, lo, hi) − zp, s)`, ops the
 * EP runs, so the graph stays on the GPU. ORT Web 1.30's WebGPU EP has no Round kernel either (checked in
 * headless Chromium: "webgpu kernel not found in registries for Op type: Round", so Round ran on CPU), so
 * `round` is QuantizeLinear's half-to-even built from Floor/Sub/Equal/Mul/Where, which it does run:
 * f = Floor(v + 0.5); ties (f − v = 0.5) take f − (f mod 2). The values equal the Q/DQ pair's up to Div vs
 * the kernel's multiply by 1/s (one float ulp before rounding) and v + 0.5 rounding up for the one float
 * just below a half. It models the int8 grid but computes in float: no int8 GEMM is gained, only placement.
 */
import type { Node, Value } from '../ir/core.js';
import { DataType } from '../ir/dtype.js';
import { Op, isOp } from '../ir/ops.js';
import { Tensor } from '../ir/tensor.js';

/** The integer range of a Q/DQ code type. */
function rangeOf(dtype: DataType): [number, number] | undefined {
  if (dtype === DataType.INT8) return [-128, 127];
  if (dtype === DataType.UINT8) return [0, 255];
  if (dtype === DataType.INT4) return [-8, 7];
  if (dtype === DataType.UINT4) return [0, 15];
  return undefined;
}

/** Why a Q/DQ pair cannot become fake-quant ops, or undefined when it can. */
export function fakeQuantObstacle(quantize: Node, dequantize: Node): string | undefined {
  if (!isOp(quantize, Op.QuantizeLinear)) return `${quantize.opType} has no fake-quant form`;
  const scale = quantize.input(1);
  const shape = scale.initializer?.dims ?? scale.type?.shape;
  if (!shape || shape.reduce<number>((n, d) => n * (typeof d === 'number' ? d : 2), 1) !== 1) return 'only per-tensor activation scales lower to fake-quant';
  if (dequantize.input(1) !== scale && !(scale.isConstant && dequantize.input(1).isConstant && sameValues(scale, dequantize.input(1)))) return 'the DequantizeLinear scale differs from the QuantizeLinear scale';
  const zp = quantize.inputs[2];
  if (zp && !zp.isConstant) return 'a runtime zero point has no fake-quant form';
  if (zp && (!dequantize.inputs[2] || !sameValues(zp, dequantize.inputs[2]))) return 'the DequantizeLinear zero point differs';
  const dtype = zp?.initializer?.dtype ?? DataType.UINT8;
  if (!rangeOf(dtype)) return `codes of type ${dtype} have no fake-quant form`;
  return undefined;
}

function sameValues(a: Value, b: Value): boolean {
  const x = a.initializer?.toNumbers();
  const y = b.initializer?.toNumbers();
  return x !== undefined && y !== undefined && x.length === y.length && x.every((v, i) => v === y[i]);
}

/** ONNX Round (half to even) from ops with WebGPU kernels: Floor(v + 0.5), then ties step down to the even neighbour. */
function roundHalfToEven(v: Value, op: (opType: string, inputs: Value[], suffix: string) => Value, scalar: (suffix: string, v: number) => Value): Value {
  const half = scalar('half', 0.5);
  const floor = op(Op.Floor, [op(Op.Add, [v, half], 'add_half')], 'floor');
  const tie = op(Op.Equal, [op(Op.Sub, [floor, v], 'frac'), half], 'tie');
  const odd = op(Op.Sub, [floor, op(Op.Mul, [op(Op.Floor, [op(Op.Mul, [floor, half], 'halve')], 'floor_half'), scalar('two', 2)], 'even')], 'odd');
  return op(Op.Where, [tie, op(Op.Sub, [floor, odd], 'to_even'), floor], 'round');
}

/** Rewrites the pair (call only when `fakeQuantObstacle` is undefined); the Q/DQ nodes die with their last use. */
export function lowerToFakeQuant(quantize: Node, dequantize: Node): void {
  const graph = quantize.graph;
  const x = quantize.input(0);
  const scale = quantize.input(1);
  const zpTensor = quantize.inputs[2]?.initializer;
  const [lo, hi] = rangeOf(zpTensor?.dtype ?? DataType.UINT8)!;
  const zp = zpTensor ? zpTensor.toNumbers()[0]! : 0;
  const name = quantize.name;
  const scalar = (suffix: string, v: number): Value => graph.addInitializer(`${name}_${suffix}`, Tensor.fromFloat32([], Float32Array.of(v)));
  const op = (opType: string, inputs: Value[], suffix: string): Value => graph.addNode({ opType, name: `${name}_${suffix}`, inputs, outputs: [`${name}_${suffix}`], before: quantize }).outputs[0]!;
  let v = roundHalfToEven(op(Op.Div, [x, scale], 'div'), op, scalar);
  if (zp !== 0) v = op(Op.Add, [v, scalar('zp', zp)], 'add_zp');
  v = op(Op.Clip, [v, scalar('lo', lo), scalar('hi', hi)], 'clip');
  if (zp !== 0) v = op(Op.Sub, [v, scalar('zp_back', zp)], 'sub_zp');
  const out = op(Op.Mul, [v, scale], 'mul');
  out.type = dequantize.outputs[0]!.type;
  dequantize.outputs[0]!.replaceAllUsesWith(out);
  graph.sortTopologically();
}
