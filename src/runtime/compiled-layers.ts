/**
 * Reads a compiled model's per-layer quantization for the report: weight and activation forms off the graph
 * (blocked/per-channel DequantizeLinear, MatMulNBits, activation Q/DQ or its fake-quant ops), plus what the
 * graph cannot tell — whether a group size was searched, the scaling factors — from `qcompile.layers` metadata.
 */
import { activationFormOf, hasSymmetricZeroPoint, weightFormOf, type ActivationForm, type WeightForm } from '../quant/quantized-forms.js';
import type { Model, Node, Value } from '../ir/core.js';
import { DataType } from '../ir/dtype.js';
import { IrError } from '../ir/errors.js';
import { layerStamps, layersOf } from '../quant/identity.js';
import type { Layer } from '../quant/layers.js';
import { Op, isOp } from '../ir/ops.js';
import { LAYERS_METADATA_KEY, decodeLayerChoices } from '../report/compile-record.js';
import type { LayerRow } from '../report/report.js';

/** One row per layer of the FP model, describing what the quantized model does with it. */
export function compiledLayerRows(fp: Model, quant: Model): LayerRow[] {
  const choices = decodeLayerChoices(quant.metadataProps.get(LAYERS_METADATA_KEY));
  // Each layer's node in the compiled graph carries its stamp, whatever kernel it was lowered to.
  const byName = new Map(layerStamps(quant).map((s) => [s.name, s.node]));
  if (byName.size === 0) throw new IrError('invalid-argument', 'the quantized model carries no layer stamps: it was not compiled by this qcompile');
  return layersOf(fp).map((layer) => {
    const node = byName.get(layer.name);
    const weight = node ? weightForm(layer, node) : undefined;
    const input = node ? activationForm(node) : undefined;
    const chosen = choices?.get(layer.name);
    const groupSize = weight?.form.groupSize ?? chosen?.groupSize;
    return {
      name: layer.name,
      role: layer.role,
      weight: weight ? `${describeWeightForm(weight.form)}${weight.kernel ? ` (${weight.kernel})` : ''}` : 'float',
      input: input ?? 'float',
      ...(weight ? { bits: weight.form.bits } : {}),
      ...(weight?.form.granularity === 'group' && groupSize !== undefined ? { groupSize } : {}),
      ...(chosen?.searched ? { searched: true } : {}),
      ...(chosen?.scaling?.length ? { scaling: chosen.scaling } : {}),
    };
  });
}

/** `int4 asym group 128`. */
function describeWeightForm(form: WeightForm): string {
  return `${form.signed ? 'int' : 'uint'}${form.bits} ${form.symmetric ? 'sym' : 'asym'} ${form.granularity === 'group' ? `group ${form.groupSize}` : form.granularity}`;
}

function describeActivationForm(form: ActivationForm): string {
  return `${form.signed ? 'int' : 'uint'}${form.bits} ${form.symmetric ? 'sym' : 'asym'} ${form.mode}`;
}

function weightForm(layer: Layer, node: Node): { form: WeightForm; kernel?: string } | undefined {
  if (isOp(node, Op.MatMulNBits)) {
    // Codes are stored offset to unsigned (zero point 8 when omitted), so signedness is not recoverable.
    const form: WeightForm = { op: layer.opType, bits: node.intAttr('bits', 4), granularity: 'group', groupSize: node.intAttr('block_size', 0), symmetric: node.inputs[3] === undefined, signed: true };
    return { form, kernel: 'MatMulNBits' };
  }
  if (isOp(node, Op.MatMulIntegerToFloat)) {
    // An int8 Gemm lowered for ORT's integer kernel: the weight's codes, b_scale and b_zero_point are its inputs 1, 3, 5.
    const codes = node.input(1).initializer;
    if (!codes) return undefined;
    const scales = node.input(3).initializer?.size ?? 2;
    const form: WeightForm = { op: layer.opType, bits: 8, granularity: scales === 1 ? 'per-tensor' : 'per-channel', symmetric: hasSymmetricZeroPoint(node.inputs[5], codes.dtype), signed: codes.dtype === DataType.INT8 };
    return { form, kernel: 'MatMulIntegerToFloat' };
  }
  const dq = node.inputs[1]?.producer;
  if (!dq || !isOp(dq, Op.DequantizeLinear) || !dq.input(0).isConstant) return undefined;
  return { form: weightFormOf({ name: layer.name, node, dq }) };
}

/**
 * The input activation's quantization: a Q/DQ pair (static, per-timestep, dynamic), fake-quant ops, or a float
 * input that MatMulNBits quantizes itself at accuracy_level 4 (symmetric int8 per row and block of K).
 */
function activationForm(node: Node): string | undefined {
  const inGraph = inGraphActivationForm(node);
  if (inGraph === undefined && isOp(node, Op.MatMulNBits) && node.intAttr('accuracy_level', 0) === 4) return `int8 sym dynamic per-token-group ${node.intAttr('block_size', 0)} (MatMulNBits accuracy 4)`;
  return inGraph;
}

/** A quantization the graph spells out before the layer: a Q/DQ pair or fake-quant ops. */
function inGraphActivationForm(node: Node): string | undefined {
  const x = node.inputs[0];
  let producer = x?.producer;
  if (!producer) return undefined;
  // MatMulIntegerToFloat reads the quantized codes themselves (it dequantizes inside).
  if (isOp(node, Op.MatMulIntegerToFloat) && isOp(producer, Op.QuantizeLinear)) return describeActivationForm(activationFormOf({ name: node.name, quantize: producer, dequantize: node, consumer: node }));
  const quantize = isOp(producer, Op.DequantizeLinear) ? producer.inputs[0]?.producer : undefined;
  if (quantize && (isOp(quantize, Op.QuantizeLinear) || isOp(quantize, Op.DynamicQuantizeLinear))) {
    return describeActivationForm(activationFormOf({ name: node.name, quantize, dequantize: producer, consumer: node }));
  }
  // Per-token-group dynamic scales run on a [..., C/g, g] view that is reshaped back (and, for a partial last
  // group, zero-padded to whole groups before and sliced after); a convolution's input, channels-last, is
  // transposed back after that.
  if (isOp(producer, Op.Transpose)) producer = producer.inputs[0]?.producer;
  if (producer && isOp(producer, Op.Slice)) producer = producer.inputs[0]?.producer;
  if (!producer) return undefined;
  const grouped = isOp(producer, Op.Reshape);
  if (grouped) producer = producer.inputs[0]?.producer;
  return producer && isOp(producer, Op.Mul) ? fakeQuantForm(producer, grouped) : undefined;
}

/**
 * `Mul(Clip(Round(Div(x, s)) (+ zp), lo, hi) (− zp), s)`, as quantize-activations writes dynamic and
 * per-timestep scales: bits from the Clip bounds, the mode from where s comes from.
 */
function fakeQuantForm(mul: Node, grouped: boolean): string | undefined {
  let clip = mul.inputs[0]?.producer;
  const shifted = clip !== undefined && isOp(clip, Op.Sub);
  if (clip && shifted) clip = clip.inputs[0]?.producer;
  if (!clip || !isOp(clip, Op.Clip)) return undefined;
  const lo = clip.inputs[1]?.initializer?.toNumbers()[0];
  const hi = clip.inputs[2]?.initializer?.toNumbers()[0];
  if (lo === undefined || hi === undefined || hi <= lo) return undefined;
  const bits = Math.ceil(Math.log2(hi - lo + 1));
  return `${lo < 0 ? 'int' : 'uint'}${bits} ${shifted ? 'asym' : 'sym'} ${scaleMode(mul.input(1), grouped)} (fake-quant)`;
}

/** The group size of a per-token-group reduction: the last dimension of the [..., C/g, g] view it reads. */
function tokenGroupSize(reduce: Node): number | undefined {
  let source = reduce.inputs[0]?.producer;
  if (source && isOp(source, Op.Abs)) source = source.inputs[0]?.producer;
  if (!source || !isOp(source, Op.Reshape)) return undefined;
  return source.inputs[1]?.initializer?.toNumbers().at(-1);
}

/** `static` (a constant), `per-timestep` (gathered from a table) or `dynamic <granularity>` (reduced from x). */
function scaleMode(scale: Value, grouped: boolean): string {
  if (scale.isConstant) return 'static';
  const seen = new Set<Node>();
  const queue: Node[] = scale.producer ? [scale.producer] : [];
  while (queue.length > 0 && seen.size < 16) {
    const node = queue.shift()!;
    if (seen.has(node)) continue;
    seen.add(node);
    if (isOp(node, Op.Gather) && node.input(0).isConstant) return 'per-timestep';
    if (isOp(node, Op.ReduceMax) || isOp(node, Op.ReduceMin)) {
      if (grouped) return `dynamic per-token-group ${tokenGroupSize(node) ?? '?'}`;
      const axes = node.inputs[1]?.initializer?.toNumbers() ?? node.intsAttr('axes', []);
      return axes.length === 1 && axes[0]! >= 2 ? 'dynamic per-token' : 'dynamic per-sample';
    }
    for (const input of node.inputs) if (input?.producer) queue.push(input.producer);
  }
  return 'dynamic';
}
