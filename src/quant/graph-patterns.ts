/**
 * The small op patterns layer discovery recognises, whatever an exporter names them: a constant weight (float or
 * behind a DequantizeLinear), a weighted layer, normalizations (LayerNorm, GroupNorm spelled as
 * InstanceNormalization, LayerNorm spelled out before opset 17), SiLU as x·Sigmoid(x), GELU cores, and the
 * data inputs of a node (what a value-tracing walk follows, not shape operands). Shared by layers.ts and
 * attention.ts.
 */
import type { Node, Value } from '../ir/core.js';
import { Op, isOp } from '../ir/ops.js';

/** Ops that only move or select data (head split/merge, chunking, token reshapes). */
export const LAYOUT = new Set<string>([Op.Reshape, Op.Transpose, Op.Unsqueeze, Op.Squeeze, Op.Flatten, Op.Identity, Op.Gather, Op.Slice, Op.Split, Op.Concat]);
/** A layout op, or a one-operand Einsum (a permutation: `einsum('nhwpqc->nchpwq', x)` unpatchifies DiT and SD3). */
export function isLayout(node: Node): boolean {
  return LAYOUT.has(node.opType) || (isOp(node, Op.Einsum) && node.inputs.length === 1);
}

/** Elementwise arithmetic and activations (bias, GELU spelled out, gates). */
export const ELEMENTWISE = new Set<string>([Op.Add, Op.Mul, Op.Sub, Op.Div, Op.Pow, Op.Tanh, Op.Erf, Op.Sigmoid, Op.Relu, Op.Sqrt, Op.Cast]);

/** The stored shape of a constant weight: an initializer, or a DequantizeLinear of constant codes. */
export function weightDims(value: Value): readonly number[] | undefined {
  if (value.initializer) return value.initializer.dims;
  const dq = value.producer;
  if (dq && isOp(dq, Op.DequantizeLinear) && dq.inputs.every((v) => v === undefined || v.initializer)) return dq.input(0).initializer!.dims;
  return undefined;
}

/** A MatMul, Gemm or Conv applying a constant weight (the nodes walks stop at). */
export function isWeighted(node: Node): boolean {
  const weight = node.inputs[1];
  return (isOp(node, Op.MatMul) || isOp(node, Op.Gemm) || isOp(node, Op.Conv) || isOp(node, Op.ConvTranspose)) && weight !== undefined && weightDims(weight) !== undefined;
}

/**
 * A product of two activations: the score (q·kᵀ) or mixing (probabilities·v) product of an attention, as a
 * MatMul or a two-operand Einsum (CompVis LDM writes `einsum('b i d, b j d -> b i j', q, k)`).
 */
export function isActivationMatMul(node: Node): boolean {
  return (isOp(node, Op.MatMul) || (isOp(node, Op.Einsum) && node.inputs.length === 2)) && node.inputs.every((v) => v !== undefined && weightDims(v) === undefined);
}

export function isNormalization(node: Node): boolean {
  return isOp(node, Op.LayerNormalization) || isOp(node, Op.GroupNormalization) || isOp(node, Op.InstanceNormalization) || isOp(node, Op.SkipLayerNormalization);
}

/** GroupNorm, or InstanceNormalization (torch exports GroupNorm as Reshape → InstanceNormalization → Reshape). */
export function isSpatialNormalization(node: Node): boolean {
  return isOp(node, Op.GroupNormalization) || isOp(node, Op.InstanceNormalization);
}

/** (x − mean(x)) / sqrt(var + eps), as exports before opset 17 spell LayerNorm: a Div (or Mul by a Reciprocal) of Sub(x, ReduceMean(x)). */
export function isSpelledOutNorm(node: Node): boolean {
  if (!isOp(node, Op.Div) && !isOp(node, Op.Mul)) return false;
  return node.inputs.some((v) => {
    const sub = v?.producer;
    return sub !== undefined && isOp(sub, Op.Sub) && sub.inputs[1]?.producer !== undefined && isOp(sub.inputs[1].producer, Op.ReduceMean) && sub.inputs[1].producer.inputs[0] === sub.inputs[0];
  });
}

/** Whether `value` is x·Sigmoid(x). */
export function isSilu(value: Value): boolean {
  const mul = value.producer;
  if (!mul || !isOp(mul, Op.Mul)) return false;
  const [a, b] = [mul.inputs[0], mul.inputs[1]];
  const sig = (x: Value | undefined, y: Value | undefined) => x?.producer !== undefined && isOp(x.producer, Op.Sigmoid) && x.producer.inputs[0] === y;
  return sig(a, b) || sig(b, a);
}

/** The nonlinearity at the heart of a GELU, in any of its spellings. */
export function isGeluCore(node: Node): boolean {
  return isOp(node, Op.Tanh) || isOp(node, Op.Erf) || isOp(node, Op.Gelu) || isOp(node, Op.FastGelu) || isOp(node, Op.BiasGelu) || isOp(node, Op.QuickGelu);
}

/** Ops whose outputs describe a shape, not data: walks tracing activations stop there. */
const SHAPE_OPS = new Set<string>([Op.Shape, Op.Size, Op.ConstantOfShape, Op.Constant]);

/** The inputs of `node` that carry the data it transforms (Reshape's shape, Slice's bounds and the like excluded). */
export function dataInputs(node: Node): Value[] {
  if (SHAPE_OPS.has(node.opType)) return [];
  const single = LAYOUT.has(node.opType) && !isOp(node, Op.Concat);
  const inputs = single || isOp(node, Op.Expand) || isOp(node, Op.Tile) || isOp(node, Op.ReduceMean) || isNormalization(node) ? [node.inputs[0]] : node.inputs;
  return inputs.filter((v): v is Value => v !== undefined && !v.initializer);
}
