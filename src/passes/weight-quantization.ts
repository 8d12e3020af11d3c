/**
 * Weight quantization of a plan: each planned layer's weight becomes an int8/int4 (or uint) initializer
 * feeding a DequantizeLinear, rounded to nearest (in worker threads for a large plan) or by GPTQ with the layer's
 * Hessian. The quantize-weights pass wraps it; search-group-sizes and collect-hessians apply it to candidate models and working copies.
 */
import type { Model, Value } from '../ir/core.js';
import { IrError } from '../ir/errors.js';
import { layersOf } from '../quant/identity.js';
import type { QuantPlan, WeightQuantSpec } from '../quant/plan.js';
import { GPTQ_CODES } from './artifacts.js';
import { gptqRound } from './gptq.js';
import { upgradeModelOpset } from './opset-upgrade.js';
import { yieldToEventLoop, type PassResult, type ProgressReporter } from './pass.js';
import type { CellParams, IntRange, WeightMatrix } from '../quant/kernels/weight-kernels.js';
import { roundToNearest, type RoundingFunction } from './weight-quantizer.js';
import { WeightQuantizerPool, poolThreadsFor, type WeightSlot } from './weight-quantizer-pool.js';
import { installQuantizedWeight, prepareWeight, quantizeWeightTask, type PreparedWeight, type QuantizedWeight, type WeightedLayer } from './weight-storage.js';

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

/** How quantizePlannedWeights runs: `threads` weight-quantizer workers (0: in-process), by default poolThreadsFor the plan. */
export interface WeightQuantizationOptions {
  threads?: number;
}

/**
 * Quantizes the weight of every layer in `quantPlan` that has a weight spec; GPTQ layers take their codes or their
 * Hessian from `gptq`. Raises the opset as the chosen DequantizeLinear forms need. Round-to-nearest weights are
 * quantized in worker threads when the plan is large (weight-quantizer-pool.ts): the main thread reads the next
 * weights meanwhile, and rewires the graph layer by layer in plan order, so the model, the statistics and the
 * first error are those of the in-process run. Yields to the event loop between layers (signals).
 */
export async function quantizePlannedWeights(model: Model, quantPlan: QuantPlan, gptq: GptqRounding | undefined, progress: ProgressReporter, options: WeightQuantizationOptions = {}): Promise<PassResult> {
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

  const nearestElements = planned.reduce((n, p) => n + (p.weight!.rounding.kind === 'nearest' ? layers.get(p.layer)!.weight.initializer?.size ?? 0 : 0), 0);
  const threads = options.threads ?? poolThreadsFor(nearestElements);
  // External weights are read straight into the workers' memory, each into a slot the size of the largest.
  const slotBytes = planned.reduce((n, p) => {
    const tensor = layers.get(p.layer)!.weight.initializer;
    return p.weight!.rounding.kind === 'nearest' && tensor?.isExternal ? Math.max(n, tensor.byteLength) : n;
  }, 0);
  const pool = threads > 0 ? WeightQuantizerPool.open(threads, slotBytes) : undefined;
  // Layers read and dispatched but not yet installed, in plan order; a failed read or rounding is an entry too, so
  // the first error in plan order is the one thrown.
  const pending: { prepared?: PreparedWeight; quantized: Promise<QuantizedWeight> }[] = [];
  const claimed = new Set<Value>();
  let done = 0;
  const installNext = async () => {
    const { prepared, quantized } = pending.shift()!;
    const result = installQuantizedWeight(prepared!, await quantized);
    if (result.fellBackToPerChannel) count('conv_group_fallback_per_channel');
    count(`granularity_${result.granularity}`);
    count(`bits_${prepared!.spec.bits}`);
    statistics.layers_quantized!++;
    statistics.float_bytes_removed! += result.floatBytes;
    statistics.quantized_bytes_added! += result.quantizedBytes;
    progress('layers', ++done, planned.length);
  };
  try {
    progress('layers', 0, planned.length);
    for (const plan of planned) {
      const layer = layers.get(plan.layer)!;
      const weight = layer.weight;
      if (model.graph.initializers.get(weight.name) !== weight || claimed.has(weight)) {
        count('skipped_shared_weight');
        progress('layers', ++done, planned.length);
        continue;
      }
      claimed.add(weight);
      const spec = plan.weight!;
      let entry: (typeof pending)[number];
      let slot: WeightSlot | undefined;
      let toWorker = false;
      try {
        const rounding = roundingFor(spec, layer, gptq);
        toWorker = pool !== undefined && rounding === roundToNearest;
        slot = toWorker && weight.initializer!.isExternal ? await pool!.slot() : undefined;
        const into = slot && pool!.slotBytes(slot, weight.initializer!.byteLength);
        const prepared = prepareWeight(layer, spec, into);
        const values = prepared.task.matrix.values;
        const inSlot = into !== undefined && values.buffer === into.buffer;
        // A deferred weight read for this task alone may move to the worker (when its view spans the whole buffer).
        const own = weight.initializer!.isDeferred && values.byteOffset === 0 && values.byteLength === values.buffer.byteLength;
        const quantized = toWorker
          ? pool!.quantize(prepared.task, inSlot ? slot! : own ? 'transfer' : 'copy')
          : Promise.resolve(quantizeWeightTask(prepared.task, rounding));
        if (inSlot) slot = undefined; // the pool frees it when its worker answers
        entry = { prepared, quantized };
      } catch (error) {
        entry = { quantized: Promise.reject(error) };
      } finally {
        if (slot) pool!.release(slot); // taken but not posted with a task
      }
      entry.quantized.catch(() => {}); // observed when installed, in order
      pending.push(entry);
      // In-process, each layer is installed before the next is read; with workers, two tasks per worker are in
      // flight, so a worker that finishes one starts the next while the main thread reads and installs.
      while (pending.length > 2 * (pool?.size ?? 0)) await installNext();
      // A layer rounded here (GPTQ's seconds per layer at real size, or every layer without workers) lets signals in.
      if (!toWorker) await yieldToEventLoop();
    }
    while (pending.length > 0) await installNext();
  } finally {
    await pool?.close();
  }
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
