/**
 * Weight quantization of a plan: each planned layer's weight becomes an int8/int4 (or uint) initializer
 * feeding a DequantizeLinear, rounded to nearest or by GPTQ with the layer's Hessian. The quantize-weights pass
 * wraps it; search-group-sizes and collect-hessians apply it to candidate models and working copies.
 */
import type { Model } from '../ir/core.js';
import { IrError } from '../ir/errors.js';
import { layersOf } from '../quant/identity.js';
import type { QuantPlan, WeightQuantSpec } from '../quant/plan.js';
import { GPTQ_CODES } from './artifacts.js';
import { gptqRound } from './gptq.js';
import { upgradeModelOpset } from './opset-upgrade.js';
import { yieldToEventLoop, type PassResult, type ProgressReporter } from './pass.js';
import { roundToNearest, type CellParams, type IntRange, type RoundingFunction, type WeightMatrix } from './weight-quantizer.js';
import { storeQuantizedWeight, type WeightedLayer } from './weight-storage.js';

/** The ai.onnx opset of blocked and 4-bit DequantizeLinear. */
const BLOCKED_DQ_OPSET = 21;
/** The ai.onnx opset of per-axis DequantizeLinear. */
const PER_AXIS_DQ_OPSET = 13;

/**
 * What GPTQ-rounded layers read: the codes GPTQ already gave a layer, else its Hessian — then the layer is rounded
 * by GPTQ and its codes are recorded in `codes` (collect-hessians measures a stage's Hessians, rounds the stage,
 * and keeps only the codes: 1 byte per weight instead of K² doubles per layer).
 */
export interface GptqRounding {
  hessians?: ReadonlyMap<string, Float64Array>;
  codes: Map<string, Int8Array | Uint8Array>;
}

/**
 * Quantizes the weight of every layer in `quantPlan` that has a weight spec; GPTQ layers take their codes or their
 * Hessian from `gptq`. Raises the opset as the chosen DequantizeLinear forms need. Yields to the event loop between
 * layers (signals).
 */
export async function quantizePlannedWeights(model: Model, quantPlan: QuantPlan, gptq: GptqRounding | undefined, progress: ProgressReporter): Promise<PassResult> {
  const planned = [...quantPlan.values()].filter((p) => p.weight);
  if (planned.length === 0) return { modified: false, statistics: { layers_quantized: 0 } };
  const layers = new Map(layersOf(model).map((l) => [l.name, l]));
  for (const plan of planned) {
    if (!layers.has(plan.layer)) throw new IrError('invalid-argument', `quantize-weights: the plan names '${plan.layer}', which is not a layer of this model`);
    if (plan.weight!.granularity.kind === 'auto') throw new IrError('invalid-argument', `quantize-weights: '${plan.layer}' has granularity auto; run search-group-sizes first`);
  }

  const statistics: Record<string, number> = { layers_quantized: 0, float_bytes_removed: 0, quantized_bytes_added: 0 };
  const count = (key: string) => (statistics[key] = (statistics[key] ?? 0) + 1);
  const from = model.opset;
  const needsOpset21 = planned.some((p) => p.weight!.bits <= 4 || p.weight!.granularity.kind === 'group');
  const target = needsOpset21 ? BLOCKED_DQ_OPSET : PER_AXIS_DQ_OPSET;
  if (from < target) {
    upgradeModelOpset(model, target);
    statistics.opset_upgraded_to = target;
  }

  for (const [done, plan] of planned.entries()) {
    progress('layers', done, planned.length);
    if (done > 0) await yieldToEventLoop();
    const layer = layers.get(plan.layer)!;
    const weight = layer.weight;
    if (model.graph.initializers.get(weight.name) !== weight) {
      count('skipped_shared_weight');
      continue;
    }
    const result = storeQuantizedWeight(layer, plan.weight!, roundingFor(plan.weight!, layer, gptq));
    if (result.fellBackToPerChannel) count('conv_group_fallback_per_channel');
    count(`granularity_${result.granularity}`);
    count(`bits_${plan.weight!.bits}`);
    statistics.layers_quantized!++;
    statistics.float_bytes_removed! += result.floatBytes;
    statistics.quantized_bytes_added! += result.quantizedBytes;
  }
  progress('layers', planned.length, planned.length);
  return { modified: true, statistics };
}

/** The rounding step `spec.rounding` asks for. */
function roundingFor(spec: WeightQuantSpec, layer: WeightedLayer, gptq: GptqRounding | undefined): RoundingFunction {
  if (spec.rounding.kind === 'nearest') return roundToNearest;
  const rounded = gptq?.codes.get(layer.name);
  if (rounded) {
    return (weight) => {
      if (rounded.length !== weight.values.length) throw new IrError('invalid-argument', `quantize-weights: the GPTQ codes of '${layer.name}' have ${rounded.length} values, its weight ${weight.values.length}`);
      return Int32Array.from(rounded);
    };
  }
  const hessian = gptq?.hessians?.get(layer.name);
  if (!gptq || !hessian) throw new IrError('invalid-argument', `quantize-weights: GPTQ rounding of '${layer.name}' needs its codes (artifact '${GPTQ_CODES.name}'); run collect-hessians first`);
  const options = { blockSize: spec.rounding.blockSize, damp: spec.rounding.damp };
  return (weight, params, range) => {
    const codes = gptqRoundWeight(weight, params, range, hessian, options);
    gptq.codes.set(layer.name, range.qmin < 0 ? Int8Array.from(codes) : Uint8Array.from(codes));
    return codes;
  };
}

/** GPTQ rounding of one weight with its Hessian; codes in the order of the weight's values. */
function gptqRoundWeight(weight: WeightMatrix, params: CellParams, range: IntRange, hessian: Float64Array, options: { blockSize: number; damp: number }): Int32Array {
  // gptqRound works on W[K,N] with one scale per (group, channel): spread a per-tensor scale over channels.
  const { N, K } = weight;
  const perTensor = params.scale.length === 1;
  const grid = {
    groupSize: params.cellLength,
    scale: perTensor ? new Float32Array(N).fill(params.scale[0]!) : params.scale,
    zeroPoint: perTensor ? new Int32Array(N).fill(params.zeroPoint[0]!) : params.zeroPoint,
    ...range,
  };
  if (weight.kMajor) return gptqRound(weight.values, K, N, hessian, grid, options);
  const codes = gptqRound(transpose(weight.values, N, K, new Float32Array(N * K)), K, N, hessian, grid, options);
  return transpose(codes, K, N, new Int32Array(N * K));
}

/** Writes the transpose of `data` [rows, columns] into `out` [columns, rows]. */
function transpose<T extends Float32Array | Int32Array>(data: T, rows: number, columns: number, out: T): T {
  for (let r = 0; r < rows; r++) for (let c = 0; c < columns; c++) out[c * rows + r] = data[r * columns + c]!;
  return out;
}
