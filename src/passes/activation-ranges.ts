/**
 * Activation observers and range choice: streaming min/max (optionally EMA across batches), per-channel
 * min/max, a bounded reservoir sample of values for percentile and L_p searches — one observer per timestep
 * group — and the scale / zero point a range method gives at a bit width. Memory per observer is fixed.
 * A NaN or ±Inf observed (or a scale that comes out non-finite) is a NonFiniteError naming the tensor: a NaN
 * would otherwise slip past every min/max comparison and leave a range that looks fine.
 */
import { assertFinite } from '../ir/numerics.js';
import type { RangeMethod } from '../quant/plan.js';

/** Statistics of one tensor (for one timestep group): min/max per tensor and per channel, and a value sample. */
export class TensorStats {
  min = Infinity;
  max = -Infinity;
  batches = 0;
  /** A uniform sample of the values seen (reservoir), for percentile and L_p searches. */
  readonly sample: Float32Array;
  /** Running per-channel extremes over every batch (never EMA'd). */
  readonly channelMin: Float32Array;
  readonly channelMax: Float32Array;
  /** Per-channel extremes of the batch being observed, folded in by `endBatch`. */
  private readonly batchMin: Float32Array;
  private readonly batchMax: Float32Array;
  private observed = false;
  private seen = 0;
  private state: number;

  constructor(
    readonly sampleSize: number,
    seed: number,
    /** EMA momentum for min/max across batches (0: running extremes). */
    readonly ema: number,
    readonly channels = 1,
    /** The observed tensor's name, for errors. */
    readonly tensor = '(unnamed)',
  ) {
    this.sample = new Float32Array(sampleSize);
    this.state = seed >>> 0 || 1;
    this.channelMin = new Float32Array(channels).fill(Infinity);
    this.channelMax = new Float32Array(channels).fill(-Infinity);
    this.batchMin = new Float32Array(channels).fill(Infinity);
    this.batchMax = new Float32Array(channels).fill(-Infinity);
  }

  /** Observes per-channel extremes of the current batch: `lo` and `hi` hold rows of `channels` values (then call `endBatch`). */
  observeExtremes(lo: Float32Array, hi: Float32Array): void {
    assertFinite(lo, `the calibration minima of activation '${this.tensor}' (batch ${this.batches + 1})`);
    assertFinite(hi, `the calibration maxima of activation '${this.tensor}' (batch ${this.batches + 1})`);
    const channels = this.channels;
    const batchMin = this.batchMin;
    const batchMax = this.batchMax;
    for (let i = 0; i < lo.length; i += channels) {
      for (let c = 0; c < channels; c++) {
        if (lo[i + c]! < batchMin[c]!) batchMin[c] = lo[i + c]!;
        if (hi[i + c]! > batchMax[c]!) batchMax[c] = hi[i + c]!;
      }
    }
    this.observed ||= lo.length > 0;
  }

  /** Offers values to the reservoir sample (a uniform sample of everything offered: Algorithm R). */
  observeValues(values: Float32Array): void {
    assertFinite(values, `the calibration sample of activation '${this.tensor}' (batch ${this.batches + 1})`);
    const k = this.sampleSize;
    const sample = this.sample;
    let seen = this.seen;
    let state = this.state;
    for (let j = 0; j < values.length; j++) {
      if (seen < k) sample[seen] = values[j]!;
      else {
        state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
        // A uniform index in [0, seen] by multiplication (no float modulo).
        const slot = Math.floor((state / 4294967296) * (seen + 1));
        if (slot < k) sample[slot] = values[j]!;
      }
      seen++;
    }
    this.seen = seen;
    this.state = state;
  }

  /** Folds the observed batch into min/max: running extremes, or an EMA across batches. No-op when nothing was observed. */
  endBatch(): void {
    if (!this.observed) return;
    let lo = Infinity;
    let hi = -Infinity;
    for (let c = 0; c < this.channels; c++) {
      lo = Math.min(lo, this.batchMin[c]!);
      hi = Math.max(hi, this.batchMax[c]!);
      this.channelMin[c] = Math.min(this.channelMin[c]!, this.batchMin[c]!);
      this.channelMax[c] = Math.max(this.channelMax[c]!, this.batchMax[c]!);
    }
    this.batchMin.fill(Infinity);
    this.batchMax.fill(-Infinity);
    this.observed = false;
    if (this.ema > 0 && this.batches > 0) {
      this.min = this.ema * this.min + (1 - this.ema) * lo;
      this.max = this.ema * this.max + (1 - this.ema) * hi;
    } else if (this.ema > 0) {
      this.min = lo;
      this.max = hi;
    } else {
      this.min = Math.min(this.min, lo);
      this.max = Math.max(this.max, hi);
    }
    this.batches++;
  }

  /** The sampled values (fewer than sampleSize until enough were seen). */
  values(): Float32Array {
    return this.sample.subarray(0, Math.min(this.seen, this.sampleSize));
  }
}

/** Scale and zero point of a quantizer. */
export interface QuantParams {
  scale: number;
  zeroPoint: number;
}

/** Integer range of activations: uint8-style for asymmetric, int8-style for symmetric. */
export function activationRange(bits: number, symmetric: boolean): { qmin: number; qmax: number } {
  return symmetric ? { qmin: -(2 ** (bits - 1)), qmax: 2 ** (bits - 1) - 1 } : { qmin: 0, qmax: 2 ** bits - 1 };
}

/** Parameters for the range [lo, hi] (widened to contain 0). */
export function paramsForRange(lo: number, hi: number, bits: number, symmetric: boolean): QuantParams {
  const { qmin, qmax } = activationRange(bits, symmetric);
  if (symmetric) {
    const absmax = Math.max(Math.abs(lo), Math.abs(hi));
    return { scale: Math.fround(absmax / qmax) || 1e-8, zeroPoint: 0 };
  }
  const low = Math.min(lo, 0);
  const high = Math.max(hi, 0);
  const scale = Math.fround((high - low) / (qmax - qmin)) || 1e-8;
  const zeroPoint = Math.min(qmax, Math.max(qmin, qmin + Math.round(-low / scale)));
  return { scale, zeroPoint };
}

/** Chooses quantization parameters from statistics with a range method; a non-finite scale throws NonFiniteError. */
export function chooseActivationParams(stats: TensorStats, method: RangeMethod, bits: number, symmetric: boolean): QuantParams {
  const params = rangeParams(stats, method, bits, symmetric);
  assertFinite([params.scale, params.zeroPoint], `the quantization scale and zero point of activation '${stats.tensor}'`);
  return params;
}

function rangeParams(stats: TensorStats, method: RangeMethod, bits: number, symmetric: boolean): QuantParams {
  if (!Number.isFinite(stats.min)) return { scale: 1, zeroPoint: symmetric ? 0 : 0 };
  if (method.kind === 'minmax') return paramsForRange(stats.min, stats.max, bits, symmetric);
  const values = stats.values();
  if (method.kind === 'percentile') {
    const sorted = Float32Array.from(values).sort();
    const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.round((q / 100) * (sorted.length - 1))))]!;
    return paramsForRange(at(100 - method.percentile), at(method.percentile), bits, symmetric);
  }
  // L_p search over a shrink grid of the observed range.
  const { qmin, qmax } = activationRange(bits, symmetric);
  let best = paramsForRange(stats.min, stats.max, bits, symmetric);
  let bestError = Infinity;
  for (let i = 0; i < method.gridSize; i++) {
    const shrink = 1 - 0.01 * i;
    if (shrink <= 0) break;
    const candidate = paramsForRange(stats.min * shrink, stats.max * shrink, bits, symmetric);
    const inverse = 1 / candidate.scale;
    let error = 0;
    for (let j = 0; j < values.length && error < bestError; j++) {
      const v = values[j]!;
      let q = Math.round(v * inverse) + candidate.zeroPoint;
      if (q < qmin) q = qmin;
      else if (q > qmax) q = qmax;
      error += Math.abs(v - (q - candidate.zeroPoint) * candidate.scale) ** method.p;
    }
    if (error < bestError) {
      bestError = error;
      best = candidate;
    }
  }
  return best;
}
