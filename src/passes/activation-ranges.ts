/**
 * Activation statistics and range choice: streaming min/max (optionally EMA across batches), a bounded
 * reservoir sample of values for percentile and L_p searches, per-channel |x| maxima, all per timestep
 * group; and the scale / zero point a range gives at a bit width.
 */
import type { RangeMethod } from './quant-plan.js';

/** Statistics of one tensor (for one timestep group). */
export class TensorStats {
  min = Infinity;
  max = -Infinity;
  batches = 0;
  /** A uniform sample of the values seen (reservoir), for percentile and L_p searches. */
  readonly sample: Float32Array;
  private seen = 0;
  private state: number;

  constructor(
    readonly sampleSize: number,
    seed: number,
    /** EMA momentum for min/max across batches (0: running extremes). */
    readonly ema: number,
  ) {
    this.sample = new Float32Array(sampleSize);
    this.state = seed >>> 0 || 1;
  }

  /** Adds one batch of values. */
  add(values: Float32Array): void {
    let lo = Infinity;
    let hi = -Infinity;
    for (let i = 0; i < values.length; i++) {
      const v = values[i]!;
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
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
    // Reservoir sampling with a strided pass: at most sampleSize draws per batch keep it cheap.
    const stride = Math.max(1, Math.floor(values.length / this.sampleSize));
    for (let i = 0; i < values.length; i += stride) {
      this.seen++;
      if (this.seen <= this.sampleSize) this.sample[this.seen - 1] = values[i]!;
      else {
        this.state = (Math.imul(this.state, 1664525) + 1013904223) >>> 0;
        const j = this.state % this.seen;
        if (j < this.sampleSize) this.sample[j] = values[i]!;
      }
    }
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

/** Chooses quantization parameters from statistics with a range method. */
export function chooseActivationParams(stats: TensorStats, method: RangeMethod, bits: number, symmetric: boolean): QuantParams {
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
