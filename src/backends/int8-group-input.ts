/**
 * Recognizes the in-graph quantizer of a dynamic symmetric int8 per-token-group input (quantize-activations'
 * `input int8 sym dynamic per-token-group(size: N)`: Reshape x to [..., C/N, N] → scale = max(ReduceMax|x|/127,
 * 1e-8) → Div, Round, Clip[-128, 127], Mul → Reshape back) in front of a blocked weight of block size N. That is
 * the math of ORT's MatMulNBits at accuracy_level 4: per row, per block of K, A is quantized to symmetric int8 at
 * scale max|a|/127 before the int8 dot products. So where the groups are the weight's blocks the lowering drops
 * the quantizer and lets the kernel quantize: one node instead of eleven, the same codes up to a rounding tie
 * (ORT multiplies by 127/max|a| where the graph divides by max|a|/127; test/backends/cpu-kernels.test.ts).
 */
import type { Node, Value } from '../ir/core.js';
import { Op, isOp, type OpType } from '../ir/ops.js';

/**
 * The float value a dynamic sym int8 per-token-group quantizer of `groupSize` reads, if `value` is its output. A
 * quantizer with a partial last group (C not a multiple of the size) zero-pads C in front and slices it off after,
 * which is how the kernel treats a partial last block of A.
 */
export function int8GroupInputSource(value: Value, groupSize: number): Value | undefined {
  const unpadded = producer(value, Op.Slice);
  const ungrouped = producer(unpadded ? unpadded.input(0) : value, Op.Reshape);
  const dequantized = ungrouped && producer(ungrouped.input(0), Op.Mul);
  const clipped = dequantized && producer(dequantized.input(0), Op.Clip);
  const rounded = clipped && producer(clipped.input(0), Op.Round);
  const ratio = rounded && producer(rounded.input(0), Op.Div);
  if (!ungrouped || !dequantized || !clipped || !ratio) return undefined;
  if (scalarOf(clipped.inputs[1]) !== -128 || scalarOf(clipped.inputs[2]) !== 127) return undefined;
  const scale = ratio.input(1);
  if (dequantized.input(1) !== scale) return undefined;
  const grouped = producer(ratio.input(0), Op.Reshape);
  const shape = grouped?.inputs[1]?.initializer?.toNumbers();
  if (!grouped || shape?.at(-1) !== groupSize || shape.at(-2) !== -1 || shape.slice(0, -2).some((d) => d !== 0)) return undefined;
  const quantized = grouped.input(0);
  const restore = producer(ungrouped.input(1), Op.Shape);
  if (!restore || restore.input(0) !== quantized) return undefined;
  if (!isSymmetricInt8Scale(scale, grouped.outputs[0]!, shape.length - 1)) return undefined;
  return unpadded ? paddedSource(quantized, unpadded, groupSize) : quantized;
}

/**
 * x where `padded` is Pad(x) with zeros at the end of the last axis only, fewer than one group of them, and `slice`
 * takes that axis back to x's channels: the partial last group's frame.
 */
function paddedSource(padded: Value, slice: Node, groupSize: number): Value | undefined {
  const pad = producer(padded, Op.Pad);
  if (!pad || pad.stringAttr('mode', 'constant') !== 'constant' || (pad.inputs[2] && scalarOf(pad.inputs[2]) !== 0) || pad.inputs[3]) return undefined;
  const pads = pad.inputs[1]?.initializer?.toNumbers();
  const amount = pads?.at(-1);
  if (!pads || amount === undefined || amount <= 0 || amount >= groupSize || pads.slice(0, -1).some((p) => p !== 0)) return undefined;
  const [starts, ends, axes, steps] = [1, 2, 3, 4].map((i) => slice.inputs[i]?.initializer?.toNumbers());
  const channels = ends?.[0];
  if (starts?.length !== 1 || starts[0] !== 0 || axes?.length !== 1 || (axes[0] !== -1 && axes[0] !== pads.length / 2 - 1) || (steps && steps.some((s) => s !== 1))) return undefined;
  if (channels === undefined || (channels + amount) % groupSize !== 0) return undefined;
  return pad.input(0);
}

/** True when `scale` is Max(Div(ReduceMax(Abs(grouped), axes [last], keepdims), 127), eps > 0). */
function isSymmetricInt8Scale(scale: Value, grouped: Value, lastAxis: number): boolean {
  const floor = producer(scale, Op.Max);
  const raw = floor && producer(floor.input(0), Op.Div);
  const absmax = raw && producer(raw.input(0), Op.ReduceMax);
  const abs = absmax && producer(absmax.input(0), Op.Abs);
  if (!floor || !raw || !absmax || !abs || abs.input(0) !== grouped) return false;
  const eps = scalarOf(floor.inputs[1]);
  if (eps === undefined || eps <= 0 || eps > 1e-6 || scalarOf(raw.inputs[1]) !== 127) return false;
  const axes = absmax.inputs[1]?.initializer?.toNumbers() ?? absmax.intsAttr('axes', []);
  return absmax.intAttr('keepdims', 1) === 1 && axes.length === 1 && (axes[0] === lastAxis || axes[0] === -1);
}

function producer(value: Value | undefined, opType: OpType): Node | undefined {
  const node = value?.producer;
  return node && isOp(node, opType) ? node : undefined;
}

/** The value of a constant single-element tensor. */
function scalarOf(value: Value | undefined): number | undefined {
  const tensor = value?.initializer;
  return tensor && tensor.size === 1 ? tensor.toNumbers()[0] : undefined;
}
