/**
 * Weight quantization math, free of the IR: quantization grids, per-cell ranges (min-max or an L_p search over
 * a shrink grid), and rounding. A weight is seen as rows [N][K] (output channel n, reduction index k); a cell
 * is one (group, channel) pair whose values share a scale and zero point, indexed g·N + n like gptq.ts.
 */
import type { Granularity, RangeMethod } from './quant-plan.js';
import { roundHalfEven } from './gptq.js';

/** The integer range of a quantized type. */
export interface IntRange {
  qmin: number;
  qmax: number;
}

/** The integer range of a `bits`-wide signed or unsigned type. */
export function intRange(bits: number, signed: boolean): IntRange {
  return signed ? { qmin: -(2 ** (bits - 1)), qmax: 2 ** (bits - 1) - 1 } : { qmin: 0, qmax: 2 ** bits - 1 };
}

/** Scales and zero points of every cell, and the cell geometry. */
export interface CellParams {
  /** Values of one row that share a cell (K for per-channel, the group size for groups, K for per-tensor). */
  cellLength: number;
  /** Cells per row (K / cellLength); 1 for per-tensor, where the single cell spans all rows. */
  cellsPerRow: number;
  /** Scale of cell g·N + n (length 1 for per-tensor). */
  scale: Float32Array;
  /** Zero point of cell g·N + n. */
  zeroPoint: Int32Array;
}

/** Describes how to quantize one weight held as rows [N][K]. */
export interface QuantizerSettings {
  bits: number;
  symmetric: boolean;
  signed: boolean;
  granularity: Granularity;
  range: RangeMethod;
}

/**
 * Computes the scale and zero point of every cell. Asymmetric: s = (max − min)/(qmax − qmin) over a range
 * widened to contain 0, z = qmin + round(−min/s). Symmetric: s = max|x| / (2^(b−1) − 1), z = 0 (signed) or
 * 2^(b−1) (unsigned). With an L_p range the candidate ranges are the min-max range times 1 − 0.01·i.
 */
export function computeCellParams(rows: Float32Array, N: number, K: number, settings: QuantizerSettings): CellParams {
  const { cellLength, cellsPerRow } = cellGeometry(K, settings.granularity);
  const cells = settings.granularity.kind === 'per-tensor' ? 1 : cellsPerRow * N;
  const scale = new Float32Array(cells);
  const zeroPoint = new Int32Array(cells);
  const range = intRange(settings.bits, settings.signed);
  const values = new Float32Array(settings.granularity.kind === 'per-tensor' ? N * K : cellLength);
  for (let cell = 0; cell < cells; cell++) {
    if (settings.granularity.kind === 'per-tensor') values.set(rows);
    else {
      const g = Math.floor(cell / N);
      const n = cell % N;
      values.set(rows.subarray(n * K + g * cellLength, n * K + (g + 1) * cellLength));
    }
    const params = chooseRange(values, settings, range);
    scale[cell] = params.scale;
    zeroPoint[cell] = params.zeroPoint;
  }
  return { cellLength, cellsPerRow, scale, zeroPoint };
}

/** Cell length and cells per row for a granularity; a group size that does not divide K throws. */
export function cellGeometry(K: number, granularity: Granularity): { cellLength: number; cellsPerRow: number } {
  if (granularity.kind !== 'group') return { cellLength: K, cellsPerRow: 1 };
  if (granularity.size <= 0 || K % granularity.size !== 0) throw new RangeError(`group size ${granularity.size} does not divide the input channels (${K})`);
  return { cellLength: granularity.size, cellsPerRow: K / granularity.size };
}

function chooseRange(values: Float32Array, settings: QuantizerSettings, range: IntRange): { scale: number; zeroPoint: number } {
  let min = 0;
  let max = 0;
  for (const v of values) {
    if (v < min) min = v;
    if (v > max) max = v;
  }
  if (settings.range.kind === 'minmax') return paramsFor(min, max, settings, range);
  if (settings.range.kind !== 'lp') throw new RangeError(`range method '${settings.range.kind}' is not supported for weights`);
  const { p, gridSize } = settings.range;
  let best = paramsFor(min, max, settings, range);
  let bestError = Infinity;
  for (let i = 0; i < gridSize; i++) {
    const shrink = 1 - 0.01 * i;
    if (shrink <= 0) break;
    const candidate = paramsFor(min * shrink, max * shrink, settings, range);
    const error = lpError(values, candidate.scale, candidate.zeroPoint, range, p, bestError);
    if (error < bestError) {
      bestError = error;
      best = candidate;
    }
  }
  return best;
}

function paramsFor(min: number, max: number, settings: QuantizerSettings, range: IntRange): { scale: number; zeroPoint: number } {
  if (settings.symmetric) {
    const positive = 2 ** (settings.bits - 1) - 1;
    const scale = Math.fround(Math.max(-min, max) / positive) || 1;
    return { scale, zeroPoint: settings.signed ? 0 : 2 ** (settings.bits - 1) };
  }
  const scale = Math.fround((max - min) / (range.qmax - range.qmin)) || 1;
  const zeroPoint = Math.min(range.qmax, Math.max(range.qmin, range.qmin + roundHalfEven(-min / scale)));
  return { scale, zeroPoint };
}

/** Σ |x − s(q − z)|^p, stopping early once it exceeds `bound`. Ties may round either way: |x − ŷ| is the same. */
function lpError(values: Float32Array, scale: number, zeroPoint: number, range: IntRange, p: number, bound: number): number {
  const inverse = 1 / scale;
  const low = range.qmin - zeroPoint;
  const high = range.qmax - zeroPoint;
  let total = 0;
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    let q = Math.round(v * inverse);
    if (q < low) q = low;
    else if (q > high) q = high;
    const e = Math.abs(v - q * scale);
    total += Math.pow(e, p);
    if (total > bound) return total;
  }
  return total;
}

/** A rounding step: integer codes for rows [N][K] on fixed cell parameters (the seam GPTQ plugs into). */
export type RoundingFunction = (rows: Float32Array, N: number, K: number, params: CellParams, range: IntRange) => Int32Array;

/** Round to nearest (half to even, as ONNX QuantizeLinear), clamped to the integer range. */
export const roundToNearest: RoundingFunction = (rows, N, K, params, range) => {
  const codes = new Int32Array(N * K);
  const perTensor = params.scale.length === 1;
  for (let n = 0; n < N; n++) {
    for (let start = 0; start < K; start += params.cellLength) {
      const cell = perTensor ? 0 : (start / params.cellLength) * N + n;
      const scale = params.scale[cell]!;
      const zero = params.zeroPoint[cell]!;
      const end = n * K + start + params.cellLength;
      for (let i = n * K + start; i < end; i++) {
        const x = rows[i]! / scale;
        let q = Math.round(x);
        if (q - x === 0.5 && (q & 1) !== 0) q -= 1; // a tie: Math.round went up to an odd integer
        q += zero;
        codes[i] = q < range.qmin ? range.qmin : q > range.qmax ? range.qmax : q;
      }
    }
  }
  return codes;
};
