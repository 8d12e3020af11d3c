/**
 * Activation fake-quant for execution providers without a QuantizeLinear kernel (ORT's WebGPU EP): a
 * QuantizeLinear → DequantizeLinear pair becomes the fake-quant of `src/quant/fake-quant.ts`, with its
 * rounding built from Floor/Where (the EP has no Round kernel either), so the graph stays on the GPU. The
 * values equal the Q/DQ pair's up to Div vs the kernel's multiply by 1/s (one float ulp before rounding) and
 * v + 0.5 rounding up for the one float just below a half. It models the int8 grid but computes in float: no
 * int8 GEMM is gained, only placement.
 */
import type { Node, Value } from '../ir/core.js';
import { DataType } from '../ir/dtype.js';
import { Op, isOp } from '../ir/ops.js';
import { Tensor } from '../ir/tensor.js';
import { fakeQuantize, type FakeQuantEmitter } from '../quant/fake-quant.js';

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

/** Rewrites the pair (call only when `fakeQuantObstacle` is undefined); the Q/DQ nodes die with their last use. */
export function lowerToFakeQuant(quantize: Node, dequantize: Node): void {
  const graph = quantize.graph;
  const zpTensor = quantize.inputs[2]?.initializer;
  const [qmin, qmax] = rangeOf(zpTensor?.dtype ?? DataType.UINT8)!;
  const zp = zpTensor ? zpTensor.toNumbers()[0]! : 0;
  const name = quantize.name;
  const emit: FakeQuantEmitter = {
    scalar: (suffix, v) => graph.addInitializer(`${name}_${suffix}`, Tensor.fromFloat32([], Float32Array.of(v))),
    op: (opType, inputs, suffix) => graph.addNode({ opType, name: `${name}_${suffix}`, inputs, outputs: [`${name}_${suffix}`], before: quantize }).outputs[0]!,
  };
  const out = fakeQuantize(emit, { x: quantize.input(0), scale: quantize.input(1), ...(zp !== 0 ? { zeroPoint: emit.scalar('zp', zp) } : {}), qmin, qmax, rounding: 'floor-where' });
  out.type = dequantize.outputs[0]!.type;
  // No re-sort: the chain sits right before the QuantizeLinear, after its input and before the DequantizeLinear's readers.
  dequantize.outputs[0]!.replaceAllUsesWith(out);
}
