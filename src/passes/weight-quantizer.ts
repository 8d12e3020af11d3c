/**
 * Weight quantization math, free of the IR: quantization grids, per-cell ranges (min-max or an L_p search over
 * a shrink grid), and rounding. A weight is an N×K matrix (output channel n, reduction index k) read in its
 * stored order, [N][K] or [K][N], so no transposed copy is made; a cell is one (group, channel) pair whose
 * values share a scale and zero point, indexed g·N + n like gptq.ts. A group size need not divide K: the last
 * group of each channel is then shorter (K mod size values) and quantized by its own range, as ONNX blocked
 * DequantizeLinear (scale dim ceil(K / block)) and ORT's MatMulNBits read it.
 */
import { assertFinite } from '../ir/numerics.js';
import type { Granularity, RangeMethod } from '../quant/plan.js';
import { roundHalfEven } from './gptq.js';
import { scanCellRanges, storedCodes, type CellParams, type IntRange, type WeightMatrix } from '../quant/kernels/weight-kernels.js';


/** The integer range of a `bits`-wide signed or unsigned type. */
export function intRange(bits: number, signed: boolean): IntRange {
  return signed ? { qmin: -(2 ** (bits - 1)), qmax: 2 ** (bits - 1) - 1 } : { qmin: 0, qmax: 2 ** bits - 1 };
}



/** Describes how to quantize one weight. */
export interface QuantizerSettings {
  bits: number;
  symmetric: boolean;
  signed: boolean;
  granularity: Granularity;
  range: RangeMethod;
}

/**
 * Walks the stored values as runs: `visit(start, end, cell, cellStep)` covers indices [start, end), whose first
 * element is in `cell` and each next one `cellStep` cells further (1 along a [K][N] row, 0 along a [N][K] group).
 * Hot loops live in the visitors, so no call is made per element.
 */
function forEachRun(weight: WeightMatrix, cellLength: number, perTensor: boolean, visit: (start: number, end: number, cell: number, cellStep: number) => void): void {
  const { N, K } = weight;
  if (perTensor) visit(0, N * K, 0, 0);
  else if (weight.kMajor) for (let k = 0; k < K; k++) visit(k * N, (k + 1) * N, Math.floor(k / cellLength) * N, 1);
  else for (let n = 0; n < N; n++) for (let k = 0; k < K; k += cellLength) visit(n * K + k, n * K + Math.min(k + cellLength, K), (k / cellLength) * N + n, 0);
}

/** True when no element is NaN or infinite. */
function allFinite(values: Float32Array): boolean {
  for (let i = 0; i < values.length; i++) if (!Number.isFinite(values[i]!)) return false;
  return true;
}

/**
 * Computes the scale and zero point of every cell. Asymmetric: s = (max − min)/(qmax − qmin) over a range
 * widened to contain 0, z = qmin + round(−min/s). Symmetric: s = max|x| / (2^(b−1) − 1), z = 0 (signed) or
 * 2^(b−1) (unsigned). With an L_p range the candidate ranges are the min-max range times 1 − 0.01·i.
 * A NaN or ±Inf weight, or a scale that is not finite, throws NonFiniteError naming the weight (a NaN would
 * otherwise be skipped by the min/max scan and quietly stored as the zero point).
 */
export function computeCellParams(weight: WeightMatrix, settings: QuantizerSettings): CellParams {
  const { N, K, values } = weight;
  const tensor = `weight '${weight.name ?? '(unnamed)'}'`;
  const perTensor = settings.granularity.kind === 'per-tensor';
  const { cellLength, cellsPerRow } = cellGeometry(K, settings.granularity);
  const cells = perTensor ? 1 : cellsPerRow * N;
  const min = new Float32Array(cells);
  const max = new Float32Array(cells);
  // The finiteness check rides on the min-max scan: it reports a NaN, and an infinity is a cell's min or max;
  // only then does assertFinite walk the values again, to name the first.
  if (!scanCellRanges(weight, cellLength, perTensor, min, max) || !allFinite(min) || !allFinite(max)) assertFinite(values, tensor);
  const scale = new Float32Array(cells);
  const zeroPoint = new Int32Array(cells);
  const grid = new CellGrid(settings);
  if (settings.range.kind === 'lp') {
    const gathered = gatherCells(weight, cellLength, perTensor, cells);
    const search = new RangeSearch(settings, grid, gathered.longest);
    for (let cell = 0; cell < cells; cell++) {
      const params = search.run(gathered.values.subarray(gathered.starts[cell]!, gathered.starts[cell + 1]!), min[cell]!, max[cell]!);
      scale[cell] = params.scale;
      zeroPoint[cell] = params.zeroPoint;
    }
  } else {
    for (let cell = 0; cell < cells; cell++) {
      const s = grid.scale(min[cell]!, max[cell]!);
      scale[cell] = s;
      zeroPoint[cell] = grid.zeroPoint(min[cell]!, s);
    }
  }
  assertFinite(scale, `the quantization scale of ${tensor}`);
  return { cellLength, cellsPerRow, scale, zeroPoint };
}

/** The values reordered cell by cell (cell c's values at [starts[c], starts[c + 1])), for range searches. */
function gatherCells(weight: WeightMatrix, cellLength: number, perTensor: boolean, cells: number): { values: Float32Array; starts: Int32Array; longest: number } {
  const { N, K } = weight;
  // Cell g·N + n holds the values of group g of channel n: cellLength of them, fewer in a partial last group.
  const starts = new Int32Array(cells + 1);
  for (let cell = 0; cell < cells; cell++) starts[cell + 1] = starts[cell]! + (perTensor ? N * K : Math.min(cellLength, K - Math.floor(cell / N) * cellLength));
  const values = new Float32Array(weight.values.length);
  const filled = starts.slice(0, cells);
  forEachRun(weight, cellLength, perTensor, (start, end, first, step) => {
    for (let i = start, cell = first; i < end; i++, cell += step) values[filled[cell]!++] = weight.values[i]!;
  });
  return { values, starts, longest: perTensor ? N * K : Math.min(cellLength, K) };
}

/** Cell length and cells per row for a granularity: groups of `size` along K, the last one partial when `size` does not divide K. */
export function cellGeometry(K: number, granularity: Granularity): { cellLength: number; cellsPerRow: number } {
  if (granularity.kind !== 'group') return { cellLength: K, cellsPerRow: 1 };
  if (!Number.isInteger(granularity.size) || granularity.size <= 0) throw new RangeError(`group size ${granularity.size} is not a positive integer`);
  return { cellLength: granularity.size, cellsPerRow: Math.ceil(K / granularity.size) };
}

/**
 * The L_p range search: of the candidate ranges min-max × (1 − 0.01·i), i < gridSize, the first with the least
 * Σ |x − s(q − z)|^p (LpTerms) summed in the cell's order. Exact but pruned, without allocating per candidate:
 * - the previous cell's winner is scored first, so its error bounds every candidate from the start (neighbouring
 *   channels shrink alike); a candidate is then kept only while its running error stays within that bound;
 * - before the in-order sum, a candidate's clipped values (the ends of the cell's sorted values, where the error
 *   is largest) are summed: every term is ≥ 0, so once that partial sum exceeds the bound by more than the
 *   reordering's rounding can account for, the in-order sum would too, and the candidate cannot win.
 * The winner and its error are the ones the plain scan in index order finds, bit for bit.
 */
class RangeSearch {
  private readonly sorted: Float32Array;
  private readonly candidates: number;
  private readonly terms: LpTerms;
  private hint = 0;

  private readonly range: IntRange;

  constructor(
    settings: QuantizerSettings,
    private readonly grid: CellGrid,
    longestCell: number,
  ) {
    if (settings.range.kind !== 'lp') throw new RangeError(`range method '${settings.range.kind}' is not supported for weights`);
    this.range = grid.range;
    this.sorted = new Float32Array(longestCell);
    this.terms = LpTerms.of(settings.range.p);
    let candidates = 0;
    while (candidates < settings.range.gridSize && shrinkOf(candidates) > 0) candidates++;
    this.candidates = candidates;
  }

  run(values: Float32Array, min: number, max: number): { scale: number; zeroPoint: number } {
    const { grid, range, candidates } = this;
    if (candidates === 0) return grid.params(min, max);
    const terms = this.terms;
    const sorted = this.sorted.subarray(0, values.length);
    sorted.set(values);
    sorted.sort();
    // Float sums of the same ≥ 0 terms in two orders differ by less than this factor of the bound.
    const slack = 1 + values.length * 2 ** -50;
    const prior = Math.min(this.hint, candidates - 1);
    const priorParams = grid.params(min * shrinkOf(prior), max * shrinkOf(prior));
    const priorError = lpError(values, priorParams.scale, priorParams.zeroPoint, range, terms, Infinity);
    let best = priorParams;
    let bestIndex = prior;
    let bestError = Infinity;
    for (let i = 0; i < candidates; i++) {
      const bound = Math.min(bestError, priorError);
      let error: number;
      let candidate = priorParams;
      if (i === prior) error = priorError;
      else {
        candidate = grid.params(min * shrinkOf(i), max * shrinkOf(i));
        if (clippedError(sorted, candidate.scale, candidate.zeroPoint, range, terms, bound * slack) > bound * slack) continue;
        error = lpError(values, candidate.scale, candidate.zeroPoint, range, terms, bound);
      }
      if (error < bestError && error <= priorError) {
        bestError = error;
        best = candidate;
        bestIndex = i;
      }
    }
    this.hint = bestIndex;
    return best;
  }
}

/** The shrink factor of candidate `i`. */
function shrinkOf(i: number): number {
  return 1 - 0.01 * i;
}

/**
 * The grid a cell's range maps onto, resolved once per weight (a hot loop reads these fields, not the settings):
 * the scale and zero point of a range as computeCellParams says.
 */
class CellGrid {
  readonly range: IntRange;
  private readonly symmetric: boolean;
  /** Symmetric: the positive codes 2^(b−1) − 1; asymmetric: qmax − qmin. */
  private readonly steps: number;
  /** The zero point of a symmetric grid: 0 signed, 2^(b−1) unsigned. */
  private readonly symmetricZero: number;

  constructor(settings: QuantizerSettings) {
    this.range = intRange(settings.bits, settings.signed);
    this.symmetric = settings.symmetric;
    this.steps = settings.symmetric ? 2 ** (settings.bits - 1) - 1 : this.range.qmax - this.range.qmin;
    this.symmetricZero = settings.signed ? 0 : 2 ** (settings.bits - 1);
  }

  scale(min: number, max: number): number {
    return Math.fround((this.symmetric ? Math.max(-min, max) : max - min) / this.steps) || 1;
  }

  zeroPoint(min: number, scale: number): number {
    if (this.symmetric) return this.symmetricZero;
    const { qmin, qmax } = this.range;
    return Math.min(qmax, Math.max(qmin, qmin + roundHalfEven(-min / scale)));
  }

  params(min: number, max: number): { scale: number; zeroPoint: number } {
    const scale = this.scale(min, max);
    return { scale, zeroPoint: this.zeroPoint(min, scale) };
  }
}

/** Σ |x − s(q − z)|^p, stopping early once it exceeds `bound`. Ties may round either way: |x − ŷ| is the same. */
function lpError(values: Float32Array, scale: number, zeroPoint: number, range: IntRange, terms: LpTerms, bound: number): number {
  const inverse = 1 / scale;
  const scaleP = Math.pow(scale, terms.p);
  const low = range.qmin - zeroPoint;
  const high = range.qmax - zeroPoint;
  let total = 0;
  for (let i = 0; i < values.length; i++) {
    total += terms.term(values[i]!, inverse, scale, scaleP, low, high);
    if (total > bound) return total;
  }
  return total;
}

/**
 * Σ of lpError's terms over the clipped values only (q outside [low, high]), walking `sorted` in from both ends;
 * stops once it exceeds `bound`. A lower bound of lpError's sum, up to the rounding of the order.
 */
function clippedError(sorted: Float32Array, scale: number, zeroPoint: number, range: IntRange, terms: LpTerms, bound: number): number {
  const inverse = 1 / scale;
  const scaleP = Math.pow(scale, terms.p);
  const low = range.qmin - zeroPoint;
  const high = range.qmax - zeroPoint;
  let total = 0;
  let first = 0;
  let last = sorted.length - 1;
  let lowClipped = true;
  let highClipped = true;
  while ((lowClipped || highClipped) && first <= last) {
    if (lowClipped) {
      const v = sorted[first]!;
      if (codeOf(v * inverse) < low) {
        total += terms.term(v, inverse, scale, scaleP, low, high);
        first++;
      } else lowClipped = false;
    }
    if (highClipped && first <= last) {
      const v = sorted[last]!;
      if (codeOf(v * inverse) > high) {
        total += terms.term(v, inverse, scale, scaleP, low, high);
        last--;
      } else highClipped = false;
    }
    if (total > bound) return total;
  }
  return total;
}

/**
 * The error terms |x − s(q − z)|^p of the L_p search. A value inside the candidate's range is off by at most half
 * a step, so its term is s^p · u^p with u = |x − s(q − z)| / s in [0, ½]: u^p is read from a table (quadratic
 * interpolation over 2^16 intervals; within 1e-9 of Math.pow, relative, for u ≥ 0.01, and the smaller terms
 * weigh less than 1e-5 of the largest) instead of Math.pow, which was most of the search's time: on DiT-XL/2's
 * linears (bench/lp-search.ts) int4 went from 3.3 to 1.4 µs CPU per weight, int8 from 497 to 284 ns. A clipped
 * value's term, and every term for p < 1 (where u^p is too steep at 0 to interpolate), is Math.pow's. Each
 * value's term is the same float in every sum.
 */
export class LpTerms {
  private static readonly cache = new Map<number, LpTerms>();
  /** Per interval i: a, b, c of u^p ≈ a + w(b + w·c), w = u/h − i. */
  private readonly coefficients: Float64Array | undefined;

  private constructor(readonly p: number) {
    if (p < 1) return;
    // Nodes u = j·h up to j = INTERVALS + 2, so intervals 0..INTERVALS (u a rounding past ½ included) have three.
    const nodes = Float64Array.from({ length: LP_TABLE_INTERVALS + 3 }, (_, j) => Math.pow(j * LP_TABLE_STEP, p));
    const coefficients = new Float64Array(3 * (LP_TABLE_INTERVALS + 1));
    for (let i = 0; i <= LP_TABLE_INTERVALS; i++) {
      const first = nodes[i + 1]! - nodes[i]!;
      const second = nodes[i + 2]! - 2 * nodes[i + 1]! + nodes[i]!;
      coefficients[3 * i] = nodes[i]!;
      coefficients[3 * i + 1] = first - second / 2;
      coefficients[3 * i + 2] = second / 2;
    }
    this.coefficients = coefficients;
  }

  /** The terms of exponent p (tables are shared). */
  static of(p: number): LpTerms {
    let terms = LpTerms.cache.get(p);
    if (!terms) LpTerms.cache.set(p, (terms = new LpTerms(p)));
    return terms;
  }

  /** x's term for the candidate with scale `scale` (`inverse` = 1/scale, `scaleP` = scale^p) and codes q − z in [low, high]. */
  term(v: number, inverse: number, scale: number, scaleP: number, low: number, high: number): number {
    const x = v * inverse;
    const q = codeOf(x);
    if (q < low) return Math.pow(Math.abs(v - low * scale), this.p);
    if (q > high) return Math.pow(Math.abs(v - high * scale), this.p);
    const coefficients = this.coefficients;
    if (!coefficients) return Math.pow(Math.abs(v - q * scale), this.p);
    // |x − q| ≤ ½ exactly (q is x rounded, and the difference of the two is exact), so i ≤ LP_TABLE_INTERVALS.
    const at = Math.abs(x - q) * LP_TABLE_SCALE;
    const i = at | 0;
    const w = at - i;
    const k = 3 * i;
    return scaleP * (coefficients[k]! + w * (coefficients[k + 1]! + w * coefficients[k + 2]!));
  }
}

/** x rounded to an integer, half to even (ties of the L_p terms may round either way: |x − q| is the same). */
function codeOf(x: number): number {
  return x + ROUND_HALF_EVEN - ROUND_HALF_EVEN;
}

/** Intervals of the u^p table over [0, ½]. */
const LP_TABLE_INTERVALS = 1 << 16;
const LP_TABLE_STEP = 0.5 / LP_TABLE_INTERVALS;
const LP_TABLE_SCALE = 1 / LP_TABLE_STEP;

/**
 * A rounding step: integer codes, in the stored order, on fixed cell parameters (the seam GPTQ plugs into).
 * `stored`, when a step has it, gives the same codes as the bytes they are stored in: one a code (its low 8 bits,
 * int8 or uint8), or with `nibbles` two to a byte (int4 or uint4, low nibble first), without the int32 codes.
 */
export type RoundingFunction = ((weight: WeightMatrix, params: CellParams, range: IntRange) => Int32Array) & {
  stored?: (weight: WeightMatrix, params: CellParams, range: IntRange, nibbles: boolean) => Uint8Array;
};

/**
 * Adding and subtracting 1.5·2^52 rounds a double to an integer half to even (exact for |x| < 2^51; a larger |x|
 * stays as large, so it clamps the same), without Math.round's tie fix-up.
 */
const ROUND_HALF_EVEN = 6755399441055744;

/** Round to nearest (half to even, as ONNX QuantizeLinear), clamped to the integer range. */
export const roundToNearest: RoundingFunction = (weight, params, range) => {
  const codes = new Int32Array(weight.values.length);
  const { values } = weight;
  const { scale, zeroPoint } = params;
  const { qmin, qmax } = range;
  forEachRun(weight, params.cellLength, scale.length === 1, (start, end, first, step) => roundRun(values, codes, scale, zeroPoint, qmin, qmax, start, end, first, step));
  return codes;
};

/**
 * roundToNearest's codes as stored, by the SIMD kernels (simd/weight-kernels.ts); nibbles of a layout they do not
 * pack (a run of odd length) by roundRunInt4. An eighth (a quarter) of the int32 codes' memory traffic.
 */
roundToNearest.stored = (weight, params, range, nibbles) => {
  if (nibbles && (range.qmin < -8 || range.qmax > 15)) throw new RangeError(`codes in [${range.qmin}, ${range.qmax}] do not fit 4 bits`);
  const simd = storedCodes(weight, params, range, nibbles);
  if (simd) return simd;
  const packed = new Uint8Array(Math.ceil(weight.values.length / 2));
  const { values } = weight;
  const { scale, zeroPoint } = params;
  const { qmin, qmax } = range;
  forEachRun(weight, params.cellLength, scale.length === 1, (start, end, first, step) => roundRunInt4(values, packed, scale, zeroPoint, qmin, qmax, start, end, first, step));
  return packed;
};

/**
 * roundRun writing nibbles: element i in byte i >> 1, low nibble first. Whole bytes inside the run are stored;
 * a run's odd first or even last element shares its byte with the neighbouring run, so it is OR-ed into the
 * zeroed byte (runs cover each element once, in any order).
 */
function roundRunInt4(values: Float32Array, packed: Uint8Array, scale: Float32Array, zeroPoint: Int32Array, qmin: number, qmax: number, start: number, end: number, first: number, step: number): void {
  let i = start;
  let cell = first;
  if (i & 1 && i < end) {
    packed[i >> 1]! |= nibbleOf(values[i]! / scale[cell]! + ROUND_HALF_EVEN - ROUND_HALF_EVEN + zeroPoint[cell]!, qmin, qmax) << 4;
    i++;
    cell += step;
  }
  // The hot pairs spelled out (no call per element), one loop per cell step like roundRun.
  if (step === 0) {
    const s = scale[cell]!;
    const z = zeroPoint[cell]!;
    for (; i + 1 < end; i += 2) {
      let low = values[i]! / s + ROUND_HALF_EVEN - ROUND_HALF_EVEN + z;
      let high = values[i + 1]! / s + ROUND_HALF_EVEN - ROUND_HALF_EVEN + z;
      low = low < qmin ? qmin : low > qmax ? qmax : low;
      high = high < qmin ? qmin : high > qmax ? qmax : high;
      packed[i >> 1] = (low & 0x0f) | ((high & 0x0f) << 4);
    }
  } else {
    for (; i + 1 < end; i += 2, cell += 2) {
      let low = values[i]! / scale[cell]! + ROUND_HALF_EVEN - ROUND_HALF_EVEN + zeroPoint[cell]!;
      let high = values[i + 1]! / scale[cell + 1]! + ROUND_HALF_EVEN - ROUND_HALF_EVEN + zeroPoint[cell + 1]!;
      low = low < qmin ? qmin : low > qmax ? qmax : low;
      high = high < qmin ? qmin : high > qmax ? qmax : high;
      packed[i >> 1] = (low & 0x0f) | ((high & 0x0f) << 4);
    }
  }
  if (i < end) packed[i >> 1]! |= nibbleOf(values[i]! / scale[cell]! + ROUND_HALF_EVEN - ROUND_HALF_EVEN + zeroPoint[cell]!, qmin, qmax);
}

/** A rounded code q clamped to [qmin, qmax], as its low 4 bits. */
function nibbleOf(q: number, qmin: number, qmax: number): number {
  return (q < qmin ? qmin : q > qmax ? qmax : q) & 0x0f;
}

/** roundToNearest over one run (see forEachRun), a top-level loop over locals like scanRun. */
function roundRun(values: Float32Array, codes: Int32Array, scale: Float32Array, zeroPoint: Int32Array, qmin: number, qmax: number, start: number, end: number, first: number, step: number): void {
  if (step === 0) {
    const s = scale[first]!;
    const z = zeroPoint[first]!;
    for (let i = start; i < end; i++) {
      const q = values[i]! / s + ROUND_HALF_EVEN - ROUND_HALF_EVEN + z;
      codes[i] = q < qmin ? qmin : q > qmax ? qmax : q;
    }
    return;
  }
  for (let i = start, cell = first; i < end; i++, cell++) {
    const q = values[i]! / scale[cell]! + ROUND_HALF_EVEN - ROUND_HALF_EVEN + zeroPoint[cell]!;
    codes[i] = q < qmin ? qmin : q > qmax ? qmax : q;
  }
}
