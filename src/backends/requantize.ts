/**
 * Symmetric re-expression of asymmetric 8-bit quantization, for targets that only run zero point 0
 * (TensorRT explicit quantization; the CUDA EP's QDQ kernels). It changes numerics, so it runs only under the
 * `requantize` lowering option: a weight is requantized from its dequantized values to int8 per-channel on
 * the consumer's output axis (scale = max|w|/127 per channel, codes in [−127, 127]); an activation Q/DQ pair
 * keeps its calibrated range [lo, hi] = [(qmin − zp)·s, (qmax − zp)·s] and becomes int8 zero point 0 with
 * scale max(|lo|, |hi|)/127. The symmetric grid covers the old range, so nothing calibrated is clipped.
 */
import type { Node, Value } from '../ir/core.js';
import { DataType } from '../ir/dtype.js';
import { Op, isOp } from '../ir/ops.js';
import { Tensor } from '../ir/tensor.js';
import { dequantizeTensor, type ActivationPair, type QuantizedWeight } from '../quant/quantized-forms.js';
import { outputAxis } from './tensorrt-placement.js';

/** The integer range of an 8-bit code type. */
function codeRange(dtype: DataType): [number, number] | undefined {
  if (dtype === DataType.INT8) return [-128, 127];
  if (dtype === DataType.UINT8) return [0, 255];
  return undefined;
}

/** ONNX QuantizeLinear rounding (half to even). */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** Why a weight cannot be requantized symmetrically, or undefined when it can. */
export function requantizeWeightObstacle(weight: QuantizedWeight): string | undefined {
  const dq = weight.dq;
  if (dq.intAttr('block_size', 0) > 0) return 'blocked (group) weights have no per-channel symmetric form here';
  if (!dq.input(1).isConstant || (dq.inputs[2] && !dq.inputs[2].isConstant)) return 'scales and zero points must be constants';
  const dims = dq.input(0).initializer!.dims;
  const axis = outputAxis(weight.node);
  if (dims.length < 2 || axis >= dims.length) return `a rank-${dims.length} weight has no output axis ${axis}`;
  const others = dq.outputs[0]!.uses.filter((u) => u.index === 1).map((u) => outputAxis(u.node));
  if (others.some((a) => a !== axis)) return 'the weight is shared by consumers with different output axes';
  return undefined;
}

/** Rewrites the weight's DequantizeLinear in place to int8 zero point 0, per channel on the output axis. */
export function requantizeWeight(weight: QuantizedWeight): void {
  const dq = weight.dq;
  const graph = dq.graph;
  const w = dequantizeTensor(dq).toFloat32();
  const dims = dq.input(0).initializer!.dims;
  const axis = outputAxis(weight.node);
  const channels = dims[axis]!;
  const inner = dims.slice(axis + 1).reduce((a, b) => a * b, 1);
  const channelOf = (i: number): number => Math.floor(i / inner) % channels;
  const maxAbs = new Float32Array(channels);
  for (let i = 0; i < w.length; i++) maxAbs[channelOf(i)] = Math.max(maxAbs[channelOf(i)]!, Math.abs(w[i]!));
  // An all-zero channel keeps scale 1 (codes 0): a zero scale is invalid in DequantizeLinear.
  const scale = Float32Array.from(maxAbs, (m) => (m > 0 ? m / 127 : 1));
  const codes = new Int8Array(w.length);
  for (let i = 0; i < w.length; i++) codes[i] = Math.max(-127, Math.min(127, roundHalfEven(w[i]! / scale[channelOf(i)]!)));
  const prefix = dq.input(0).name.replace(/_quantized$/, '');
  const old = dq.inputs.filter((v): v is Value => v !== undefined);
  dq.setInput(0, graph.addInitializer(graph.uniqueName(`${prefix}_sym_quantized`), Tensor.fromBytes(DataType.INT8, [...dims], new Uint8Array(codes.buffer))));
  dq.setInput(1, graph.addInitializer(graph.uniqueName(`${prefix}_sym_scale`), Tensor.fromFloat32([channels], scale)));
  dq.setInput(2, undefined);
  while (dq.inputs.length > 2 && dq.inputs[dq.inputs.length - 1] === undefined) dq.inputs.pop();
  dq.attributes.set('axis', { kind: 'int', value: axis });
  dq.attributes.delete('block_size');
  for (const v of old) if (v.isConstant && v.uses.length === 0) graph.removeInitializer(v);
}

/** Why an activation pair cannot be requantized symmetrically, or undefined when it can. */
export function requantizeActivationObstacle(pair: ActivationPair): string | undefined {
  const { quantize } = pair;
  if (!isOp(quantize, Op.QuantizeLinear)) return `${quantize.opType} has no static symmetric form`;
  const scale = quantize.input(1).initializer;
  if (!scale) return 'the scale must be a constant';
  if (scale.size !== 1) return 'only per-tensor activation scales are requantized';
  const zp = quantize.inputs[2];
  if (zp && !zp.initializer) return 'the zero point must be a constant';
  if (!codeRange(zp?.initializer?.dtype ?? DataType.UINT8)) return 'only 8-bit activation codes are requantized';
  for (const use of quantize.outputs[0]!.uses) {
    const dq = use.node;
    if (!isOp(dq, Op.DequantizeLinear)) return `the quantized activation feeds ${dq.opType}, not only DequantizeLinear`;
    if (!sameConstant(dq.input(1), quantize.input(1)) || !sameConstant(dq.inputs[2], zp)) return 'the DequantizeLinear scale or zero point differs from the QuantizeLinear one';
  }
  return undefined;
}

function sameConstant(a: Value | undefined, b: Value | undefined): boolean {
  if (a === b) return true;
  const x = a?.initializer?.toNumbers();
  const y = b?.initializer?.toNumbers();
  return x !== undefined && y !== undefined && x.length === y.length && x.every((v, i) => v === y[i]);
}

/** The calibrated range [lo, hi] a per-tensor Q/DQ pair represents. */
export function calibratedRange(quantize: Node): [number, number] {
  const scale = quantize.input(1).initializer!.toFloat32()[0]!;
  const zpTensor = quantize.inputs[2]?.initializer;
  const [qmin, qmax] = codeRange(zpTensor?.dtype ?? DataType.UINT8)!;
  const zp = zpTensor?.toNumbers()[0] ?? 0;
  return [(qmin - zp) * scale, (qmax - zp) * scale];
}

/** Rewrites the pair's QuantizeLinear and every DequantizeLinear reading it to int8, zero point 0, scale max(|lo|, |hi|)/127. */
export function requantizeActivation(pair: ActivationPair): void {
  const { quantize } = pair;
  const graph = quantize.graph;
  const [lo, hi] = calibratedRange(quantize);
  const scale = Math.max(Math.abs(lo), Math.abs(hi)) / 127;
  const old = [quantize.input(1), quantize.inputs[2]].filter((v): v is Value => v !== undefined);
  const scaleValue = graph.addInitializer(graph.uniqueName(`${pair.name}/input_quant/sym_scale`), Tensor.fromFloat32([], Float32Array.of(scale)));
  const zeroPoint = graph.addInitializer(graph.uniqueName(`${pair.name}/input_quant/sym_zero_point`), Tensor.fromBytes(DataType.INT8, [], Uint8Array.of(0)));
  for (const node of [quantize, ...quantize.outputs[0]!.uses.map((u) => u.node)]) {
    for (const v of node.inputs.slice(1)) if (v) old.push(v);
    node.setInput(1, scaleValue);
    node.setInput(2, zeroPoint);
  }
  quantize.attributes.delete('output_dtype');
  const codes = quantize.outputs[0]!;
  if (codes.type) codes.type = { ...codes.type, elemType: DataType.INT8 };
  for (const v of new Set(old)) if (v.isConstant && v.uses.length === 0) graph.removeInitializer(v);
}
