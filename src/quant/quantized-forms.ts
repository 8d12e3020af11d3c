/**
 * The forms of a quantized graph: a weight or activation quantization in capability terms (bits, granularity
 * or mode, symmetry, signedness), and the readers that recover them from the IR (weight `DequantizeLinear`s,
 * activation Q/DQ pairs), so that `lower` judges the graph it is given, not a plan that may have been edited
 * since, and the report describes what a compiled model does. The readers scan the graph rather than
 * `discoverLayers`, whose structural names can shift once inputs carry Q/DQ; names come from the quantize
 * passes' node names (`<layer>/weight_dequantize`, `<layer>/input_quant/q`).
 */
import type { Model, Node, Value } from '../ir/core.js';
import { DataType, bitsOf } from '../ir/dtype.js';
import { Op, isOp } from '../ir/ops.js';
import { Tensor } from '../ir/tensor.js';

/** How weight scales are grouped, as a form names it. */
export type WeightGranularity = 'per-tensor' | 'per-channel' | 'group';

/** How activation scales are obtained, as a form names it. */
export type ActivationModeKind = 'static' | 'per-timestep' | 'dynamic';

/** A weight quantization described in capability terms (from a plan or read off the graph). */
export interface WeightForm {
  op: string;
  bits: number;
  granularity: WeightGranularity;
  groupSize?: number;
  /** True when the group size does not divide the blocked axis: the last group of each channel is shorter. */
  partialLastGroup?: boolean;
  symmetric: boolean;
  /** Signed codes (int8/int4); plans default to signed. */
  signed: boolean;
}

/** An activation quantization described in capability terms. */
export interface ActivationForm {
  op: string;
  bits: number;
  mode: ActivationModeKind;
  symmetric: boolean;
  signed: boolean;
}

/** A linear op whose weight input is a DequantizeLinear over constant codes. */
export interface QuantizedWeight {
  /** The layer name (from the pass's node name, else the consumer node's name). */
  name: string;
  node: Node;
  dq: Node;
  /** A constant [N] bias: Gemm's C, or the constant operand of the Add right after a MatMul. */
  bias?: Value;
}

/** A QuantizeLinear (or DynamicQuantizeLinear) → DequantizeLinear pair on an activation. */
export interface ActivationPair {
  name: string;
  quantize: Node;
  dequantize: Node;
  /** The op reading the dequantized activation (the first one, when several layers share it). */
  consumer: Node;
}

const LINEAR_OPS = [Op.MatMul, Op.Gemm, Op.Conv] as const;

function isLinear(node: Node): boolean {
  return LINEAR_OPS.some((op) => isOp(node, op));
}

/** Every weight DequantizeLinear feeding input 1 of MatMul/Gemm/Conv, in graph order. */
export function findQuantizedWeights(model: Model): QuantizedWeight[] {
  const found: QuantizedWeight[] = [];
  for (const dq of model.graph.nodes) {
    if (!isOp(dq, Op.DequantizeLinear) || !dq.input(0).isConstant) continue;
    for (const use of dq.outputs[0]!.uses) {
      if (use.index !== 1 || !isLinear(use.node)) continue;
      const node = use.node;
      const name = /^(.+)\/weight_dequantize$/.exec(dq.name)?.[1] ?? node.name;
      found.push({ name, node, dq, ...(biasOf(node) ? { bias: biasOf(node)! } : {}) });
    }
  }
  return found;
}

function biasOf(node: Node): Value | undefined {
  if (!isOp(node, Op.MatMul)) return isOp(node, Op.Gemm) ? node.inputs[2] : undefined;
  const uses = node.outputs[0]!.uses;
  if (uses.length !== 1 || !isOp(uses[0]!.node, Op.Add)) return undefined;
  return uses[0]!.node.inputs.find((v) => v?.isConstant);
}

/** Every activation Q → DQ pair feeding a MatMul/Gemm/Conv, in graph order. */
export function findActivationPairs(model: Model): ActivationPair[] {
  const found: ActivationPair[] = [];
  for (const quantize of model.graph.nodes) {
    if (!(isOp(quantize, Op.QuantizeLinear) || isOp(quantize, Op.DynamicQuantizeLinear))) continue;
    for (const use of quantize.outputs[0]!.uses) {
      const dequantize = use.node;
      if (!isOp(dequantize, Op.DequantizeLinear) || use.index !== 0) continue;
      const consumer = dequantize.outputs[0]!.uses.find((u) => isLinear(u.node))?.node;
      if (!consumer) continue;
      const name = /^(.+)\/input_quant\/q$/.exec(quantize.name)?.[1] ?? consumer.name;
      found.push({ name, quantize, dequantize, consumer });
    }
  }
  return found;
}

function isSigned(dtype: DataType): boolean {
  return dtype === DataType.INT8 || dtype === DataType.INT4 || dtype === DataType.INT16;
}

/** True when every zero point is the type's midpoint (0 signed, 2^(b-1) unsigned) or absent on a signed type: a symmetric grid. */
export function hasSymmetricZeroPoint(zeroPoint: Value | undefined, codes: DataType): boolean {
  if (!zeroPoint) return isSigned(codes);
  const tensor = zeroPoint.initializer;
  if (!tensor) return false;
  const mid = isSigned(tensor.dtype) ? 0 : 2 ** (bitsOf(tensor.dtype) - 1);
  return tensor.toNumbers().every((v) => v === mid);
}

/** The weight form a DequantizeLinear encodes for `weight.node`. */
export function weightFormOf(weight: QuantizedWeight): WeightForm {
  const dq = weight.dq;
  const codes = dq.input(0).initializer!.dtype;
  const blockSize = dq.intAttr('block_size', 0);
  const scaleSize = dq.input(1).initializer?.size ?? 2;
  const granularity = blockSize > 0 ? 'group' : scaleSize === 1 ? 'per-tensor' : 'per-channel';
  const dims = dq.input(0).initializer!.dims;
  const rank = dims.length;
  const blocked = dims[(((dq.intAttr('axis', 1) % rank) + rank) % rank)] ?? 0;
  const group = blockSize > 0 ? { groupSize: blockSize, ...(blocked % blockSize !== 0 ? { partialLastGroup: true } : {}) } : {};
  return { op: weight.node.opType, bits: bitsOf(codes), granularity, ...group, symmetric: hasSymmetricZeroPoint(dq.inputs[2], codes), signed: isSigned(codes) };
}

/** The activation form of a pair: static (constant scale), per-timestep (scale gathered from a table), else dynamic. */
export function activationFormOf(pair: ActivationPair): ActivationForm {
  const { quantize, consumer } = pair;
  if (isOp(quantize, Op.DynamicQuantizeLinear)) return { op: consumer.opType, bits: 8, mode: 'dynamic', symmetric: false, signed: false };
  const scale = quantize.input(1);
  const zeroPoint = quantize.inputs[2];
  const attr = quantize.intAttr('output_dtype', 0);
  const codes: DataType = zeroPoint?.initializer?.dtype ?? zeroPoint?.type?.elemType ?? (attr > 0 ? (attr as DataType) : DataType.UINT8);
  const mode = scale.isConstant ? 'static' : scaleFromTable(scale) ? 'per-timestep' : 'dynamic';
  return { op: consumer.opType, bits: bitsOf(codes), mode, symmetric: hasSymmetricZeroPoint(zeroPoint, codes), signed: isSigned(codes) };
}

/** True when a runtime scale is a Gather (possibly reshaped) from a constant table: the per-timestep form. */
function scaleFromTable(scale: Value): boolean {
  let value: Value | undefined = scale;
  for (let hops = 0; value?.producer && hops < 4; hops++) {
    const producer: Node = value.producer;
    if (isOp(producer, Op.Gather)) return producer.input(0).isConstant;
    value = producer.inputs[0];
  }
  return false;
}

/** W = (q − zp)·scale for per-tensor, per-axis and blocked DequantizeLinear over constants. */
export function dequantizeTensor(dq: Node): Tensor {
  const codes = dq.input(0).initializer!;
  const q = codes.toNumbers();
  const scale = dq.input(1).initializer!.toFloat32();
  const zp = dq.inputs[2]?.initializer?.toNumbers();
  const dims = codes.dims;
  const rank = dims.length;
  const axis = ((dq.intAttr('axis', 1) % Math.max(rank, 1)) + rank) % Math.max(rank, 1);
  const blockSize = dq.intAttr('block_size', 0);
  const out = new Float32Array(q.length);
  const inner = dims.slice(axis + 1).reduce((a, b) => a * b, 1);
  const axisDim = dims[axis] ?? 1;
  const blocks = blockSize > 0 ? Math.ceil(axisDim / blockSize) : axisDim;
  for (let i = 0; i < q.length; i++) {
    let s = 0;
    if (scale.length > 1) {
      const outer = Math.floor(i / (inner * axisDim));
      const c = Math.floor(i / inner) % axisDim;
      const r = i % inner;
      s = blockSize > 0 ? (outer * blocks + Math.floor(c / blockSize)) * inner + r : c;
    }
    out[i] = (q[i]! - (zp?.[s] ?? 0)) * scale[s]!;
  }
  return Tensor.fromFloat32([...dims], out);
}
