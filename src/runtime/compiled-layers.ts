/**
 * Reads a compiled model's per-layer quantization for the report: weight and activation forms off the graph
 * (blocked/per-channel DequantizeLinear, MatMulNBits, activation Q/DQ or its fake-quant ops), plus what the
 * graph cannot tell — whether a group size was searched, the scaling factors — from `qcompile.layers` metadata.
 */
import { activationFormOf, weightFormOf } from '../backends/quantized-forms.js';
import type { ActivationForm, WeightForm } from '../backends/backend.js';
import type { Model, Node, Value } from '../ir/core.js';
import { discoverLayers, type Layer } from '../ir/layers.js';
import { Op, isOp } from '../ir/ops.js';
import { LAYERS_METADATA_KEY, decodeLayerChoices } from '../report/compile-record.js';
import type { LayerRow } from '../report/report.js';

/** One row per layer of the FP model, describing what the quantized model does with it. */
export function compiledLayerRows(fp: Model, quant: Model): LayerRow[] {
  const choices = decodeLayerChoices(quant.metadataProps.get(LAYERS_METADATA_KEY));
  const byName = new Map<string, Node>();
  for (const node of quant.graph.nodes) if (node.name) byName.set(node.name, node);
  return discoverLayers(fp).map((layer) => {
    // Quantize passes keep the layer's node name; the MatMulNBits lowering appends `_nbits`.
    const node = byName.get(`${layer.node.name}_nbits`) ?? byName.get(layer.node.name);
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
    // Codes are stored unsigned with zero point 8 when omitted: a symmetric signed grid.
    const symmetric = node.inputs[3] === undefined;
    const form: WeightForm = { op: layer.opType, bits: node.intAttr('bits', 4), granularity: 'group', groupSize: node.intAttr('block_size', 0), symmetric, signed: symmetric };
    return { form, kernel: 'MatMulNBits' };
  }
  const dq = node.inputs[1]?.producer;
  if (!dq || !isOp(dq, Op.DequantizeLinear) || !dq.input(0).isConstant) return undefined;
  return { form: weightFormOf({ name: layer.name, node, dq }) };
}

/** The input activation's quantization: a Q/DQ pair (static, per-timestep, dynamic) or its fake-quant ops. */
function activationForm(node: Node): string | undefined {
  const x = node.inputs[0];
  const dequantize = x?.producer;
  if (!dequantize) return undefined;
  const quantize = isOp(dequantize, Op.DequantizeLinear) ? dequantize.inputs[0]?.producer : undefined;
  if (quantize && (isOp(quantize, Op.QuantizeLinear) || isOp(quantize, Op.DynamicQuantizeLinear))) {
    return describeActivationForm(activationFormOf({ name: node.name, quantize, dequantize, consumer: node }));
  }
  return isOp(dequantize, Op.Mul) ? fakeQuantForm(dequantize) : undefined;
}

/** `Mul(Clip(Round(Div(x, s)) (+ zp), lo, hi) (− zp), s)`: the grid's bits from the Clip bounds. */
function fakeQuantForm(mul: Node): string | undefined {
  let value: Value | undefined = mul.inputs[0];
  for (let hops = 0; value?.producer && hops < 2; hops++) {
    const producer: Node = value.producer;
    if (isOp(producer, Op.Clip)) {
      const lo = producer.inputs[1]?.initializer?.toNumbers()[0];
      const hi = producer.inputs[2]?.initializer?.toNumbers()[0];
      if (lo === undefined || hi === undefined || hi <= lo) return undefined;
      const rounds = producer.inputs[0]?.producer;
      const round = rounds && isOp(rounds, Op.Add) ? rounds.inputs[0]?.producer : rounds;
      if (!round || !isOp(round, Op.Round)) return undefined;
      const bits = Math.round(Math.log2(hi - lo + 1));
      return `${lo < 0 ? 'int' : 'uint'}${bits} ${lo < 0 && hi === -lo - 1 && !(rounds && isOp(rounds, Op.Add)) ? 'sym' : 'asym'} fake-quant`;
    }
    value = producer.inputs[0];
  }
  return undefined;
}
