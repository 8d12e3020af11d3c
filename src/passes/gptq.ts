/**
 * GPTQ rounding (Frantar et al.): quantizes a weight one input channel at a time and spreads each channel's
 * rounding error over the channels not yet quantized, weighted by the inverse Hessian H = XᵀX of the layer's
 * calibration inputs. Scales and zero points are fixed beforehand (static groups), so the result lies exactly
 * on the grid the weight quantizer emits. Pure math: no IR here. At real size (K up to 4608) the cost is one
 * Cholesky and one triangular inverse of H (K³/2 multiply-adds) plus the error spreading (K²N/2), so every inner
 * loop runs over contiguous rows and reuses each value it loads for several products.
 */

/** A fixed quantization grid for W[K,N] (input channel k, output channel n), groups of `groupSize` along K. */
export interface WeightGrid {
  groupSize: number;
  /** Scale of (group g, output channel n) at g·N + n. */
  scale: Float32Array;
  /** Zero point of (group g, output channel n) at g·N + n. */
  zeroPoint: Int32Array;
  qmin: number;
  qmax: number;
}

/** GPTQ settings. */
export interface GptqOptions {
  /** Columns updated lazily together (the paper's B). */
  blockSize: number;
  /** Dampening as a fraction of the mean Hessian diagonal. */
  damp: number;
}

/** Accumulates H = Σ XᵀX over batches of activation rows, from each batch's Gram product [K, K] (float64 sums). */
export class HessianAccumulator {
  readonly h: Float64Array;
  rows = 0;

  constructor(readonly channels: number) {
    this.h = new Float64Array(channels * channels);
  }

  /** Adds one batch's XᵀX ([K, K], row-major) taken over `rows` rows. */
  addGram(gram: Float32Array | Float64Array, rows: number): void {
    if (gram.length !== this.h.length) throw new RangeError(`a Gram product of ${gram.length} values for ${this.channels} channels`);
    const h = this.h;
    for (let i = 0; i < h.length; i++) h[i]! += gram[i]!;
    this.rows += rows;
  }

  /** The mean Hessian H/rows, symmetrized (the float32 products are symmetric only up to rounding). */
  result(): Float64Array {
    const K = this.channels;
    const out = new Float64Array(K * K);
    const n = Math.max(this.rows, 1);
    for (let i = 0; i < K; i++) {
      for (let j = i; j < K; j++) {
        const v = (this.h[i * K + j]! + this.h[j * K + i]!) / (2 * n);
        out[i * K + j] = v;
        out[j * K + i] = v;
      }
    }
    return out;
  }
}

/**
 * Rounds W[K,N] (row-major, k-major) to integer codes on `grid`, minimising ‖X(W − Ŵ)‖ for the inputs whose
 * Hessian is `hessian` [K,K]. Returns codes laid out like W.
 */
export function gptqRound(weight: Float32Array, K: number, N: number, hessian: Float64Array, grid: WeightGrid, options: GptqOptions): Int32Array {
  const w = Float64Array.from(weight);
  const h = Float64Array.from(hessian);
  // Channels that never saw a non-zero input: any value is exact; pin them so H stays invertible.
  for (let k = 0; k < K; k++) {
    if (h[k * K + k] === 0) {
      h[k * K + k] = 1;
      w.fill(0, k * N, (k + 1) * N);
    }
  }
  let meanDiagonal = 0;
  for (let k = 0; k < K; k++) meanDiagonal += h[k * K + k]!;
  meanDiagonal /= K;
  for (let k = 0; k < K; k++) h[k * K + k]! += options.damp * meanDiagonal;
  // U = Lᵀ (upper, UᵀU = H⁻¹); row j of L holds U's column j, the factors every update of channel j reads.
  const l = inverseCholesky(h, K);

  const { scale, zeroPoint, qmin, qmax, groupSize } = grid;
  const B = options.blockSize;
  const codes = new Int32Array(K * N);
  const error = new Float64Array(B * N);
  for (let start = 0; start < K; start += B) {
    const end = Math.min(start + B, K);
    // Four channels at a time: each one's error reaches the other three at once, and the rest of the block
    // takes all four together (the same lazy update one level down, so every entry's order is unchanged).
    for (let k0 = start; k0 < end; k0 += 4) {
      const k1 = Math.min(k0 + 4, end);
      for (let k = k0; k < k1; k++) {
        const g = Math.floor(k / groupSize) * N;
        const d = l[k * K + k]!;
        const row = k * N;
        const errRow = (k - start) * N;
        for (let n = 0; n < N; n++) {
          const s = scale[g + n]!;
          const zero = zeroPoint[g + n]!;
          const value = w[row + n]!;
          const q = Math.min(qmax, Math.max(qmin, roundHalfEven(value / s) + zero));
          codes[row + n] = q;
          error[errRow + n] = (value - (q - zero) * s) / d;
        }
        spreadErrors(w, N, 0, N, error, errRow, 1, l, K, k, k + 1, k1);
      }
      spreadErrors(w, N, 0, N, error, (k0 - start) * N, k1 - k0, l, K, k0, k1, end);
    }
    // And over every later channel once per block (the lazy batch update), in column tiles that keep the
    // block's errors in cache while every later row streams past them.
    for (let n0 = 0; n0 < N; n0 += TILE) spreadErrors(w, N, n0, Math.min(TILE, N - n0), error, 0, end - start, l, K, start, end, K);
  }
  return codes;
}

/** Output columns per pass of the lazy update: 128 channels' errors × 256 columns × 8 B = 256 KiB stay in L2. */
const TILE = 256;

/**
 * w[j·N + n0 + n] −= Σ_r error[e + r·N + n0 + n] · l[j·K + k0 + r] for channels j in [j0, j1), r < rows, n < width:
 * the errors of channels k0 + r spread over channel j with their factors U[k0 + r][j] = L[j][k0 + r]. Every entry
 * takes the rows one at a time in order of r (the rounding of the plain loop); four target rows × four error rows
 * per pass, so each value loaded serves four products.
 */
function spreadErrors(w: Float64Array, N: number, n0: number, width: number, error: Float64Array, e: number, rows: number, l: Float64Array, K: number, k0: number, j0: number, j1: number): void {
  let j = j0;
  for (; j + 4 <= j1; j += 4) {
    const t0 = j * N + n0;
    const t1 = t0 + N;
    const t2 = t1 + N;
    const t3 = t2 + N;
    let r = 0;
    for (; r + 4 <= rows; r += 4) {
      const f = j * K + k0 + r;
      const a0 = l[f]!;
      const a1 = l[f + 1]!;
      const a2 = l[f + 2]!;
      const a3 = l[f + 3]!;
      const b0 = l[f + K]!;
      const b1 = l[f + K + 1]!;
      const b2 = l[f + K + 2]!;
      const b3 = l[f + K + 3]!;
      const c0 = l[f + 2 * K]!;
      const c1 = l[f + 2 * K + 1]!;
      const c2 = l[f + 2 * K + 2]!;
      const c3 = l[f + 2 * K + 3]!;
      const d0 = l[f + 3 * K]!;
      const d1 = l[f + 3 * K + 1]!;
      const d2 = l[f + 3 * K + 2]!;
      const d3 = l[f + 3 * K + 3]!;
      const e0 = e + r * N + n0;
      const e1 = e0 + N;
      const e2 = e1 + N;
      const e3 = e2 + N;
      for (let n = 0; n < width; n++) {
        const x0 = error[e0 + n]!;
        const x1 = error[e1 + n]!;
        const x2 = error[e2 + n]!;
        const x3 = error[e3 + n]!;
        w[t0 + n] = w[t0 + n]! - x0 * a0 - x1 * a1 - x2 * a2 - x3 * a3;
        w[t1 + n] = w[t1 + n]! - x0 * b0 - x1 * b1 - x2 * b2 - x3 * b3;
        w[t2 + n] = w[t2 + n]! - x0 * c0 - x1 * c1 - x2 * c2 - x3 * c3;
        w[t3 + n] = w[t3 + n]! - x0 * d0 - x1 * d1 - x2 * d2 - x3 * d3;
      }
    }
    for (let i = j; i < j + 4; i++) spreadErrorsRow(w, N, n0, width, error, e, r, rows, l, K, k0, i);
  }
  for (; j < j1; j++) spreadErrorsRow(w, N, n0, width, error, e, 0, rows, l, K, k0, j);
}

/** spreadErrors for one channel j and error rows [r0, rows), one row per pass. */
function spreadErrorsRow(w: Float64Array, N: number, n0: number, width: number, error: Float64Array, e: number, r0: number, rows: number, l: Float64Array, K: number, k0: number, j: number): void {
  const t = j * N + n0;
  for (let r = r0; r < rows; r++) {
    const f = l[j * K + k0 + r]!;
    const er = e + r * N + n0;
    for (let n = 0; n < width; n++) w[t + n]! -= error[er + n]! * f;
  }
}

/** Round half to even, as ONNX QuantizeLinear rounds. */
export function roundHalfEven(x: number): number {
  // Math.round takes halves up; r − x is exact (Sterbenz), so it is 0.5 exactly at a half.
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * L, lower triangular with L Lᵀ = H⁻¹ (so U = Lᵀ is the upper factor GPTQ reads, UᵀU = H⁻¹), for symmetric
 * positive definite H [K,K], row-major; `h` is overwritten. One Cholesky and one triangular inverse: with J the
 * index reversal, JHJ = M Mᵀ (M lower) gives H = R Rᵀ with R = JMJ upper, so H⁻¹ = R⁻ᵀ R⁻¹ and L = R⁻ᵀ = J M⁻ᵀ J.
 * Reversing both indices of a row-major K×K matrix reverses its flat array.
 */
export function inverseCholesky(h: Float64Array, K: number): Float64Array {
  const m = h.reverse();
  const failed = choleskyInPlace(m, K);
  if (failed >= 0) throw new Error(`GPTQ: Hessian is not positive definite at channel ${K - 1 - failed} (increase damp)`);
  return inverseTransposeOfLower(m, K).reverse();
}

/**
 * The lower Cholesky factor M (M Mᵀ = A) of symmetric positive definite A [K,K], over A's lower triangle in place
 * (the upper triangle is left as it was); returns −1, or the pivot at which A proved not positive definite. Row by
 * row: four rows at a time are substituted against every earlier, finished row, then their diagonal block.
 */
function choleskyInPlace(a: Float64Array, K: number): number {
  for (let i0 = 0; i0 < K; i0 += 4) {
    const i1 = Math.min(i0 + 4, K);
    if (i1 - i0 === 4) substituteRows4(a, i0 * K, K, a, 0, 0, i0);
    else for (let i = i0; i < i1; i++) substituteRow(a, i * K, a, K, 0, 0, i0);
    for (let i = i0; i < i1; i++) {
      substituteRow(a, i * K, a, K, 0, i0, i);
      const pivot = residual(a[i * K + i]!, a, i * K, a, i * K, i);
      if (!(pivot > 0)) return i;
      a[i * K + i] = Math.sqrt(pivot);
    }
  }
  return -1;
}

/**
 * M⁻ᵀ (upper) for lower triangular M [K,K] (only M's lower triangle is read): T Mᵀ = I row by row, each row of the
 * identity substituted against M's rows (a row r of T is zero left of r, so its sums start there).
 */
function inverseTransposeOfLower(m: Float64Array, K: number): Float64Array {
  const t = new Float64Array(K * K);
  for (let r = 0; r < K; r++) t[r * K + r] = 1;
  for (let r0 = 0; r0 < K; r0 += 4) {
    if (r0 + 4 <= K) substituteRows4(t, r0 * K, K, m, r0, r0, K);
    else for (let r = r0; r < K; r++) substituteRow(t, r * K, m, K, r, r, K);
  }
  return t;
}

/**
 * Forward substitution of row x[row…] against lower triangular rows of m: for j in [j0, j1) ascending,
 * x[row + j] = (x[row + j] − Σ_{p0≤p<j} x[row + p] · m[j·K + p]) / m[j·K + j].
 */
function substituteRow(x: Float64Array, row: number, m: Float64Array, K: number, p0: number, j0: number, j1: number): void {
  for (let j = j0; j < j1; j++) x[row + j] = residual(x[row + j]!, x, row + p0, m, j * K + p0, j - p0) / m[j * K + j]!;
}

/**
 * substituteRow for the four rows of x from offset `row` (stride K) at once, two rows of m per pass over p: each
 * loaded value serves two or four products. Every entry's sum is still taken in order of p.
 */
function substituteRows4(x: Float64Array, row: number, K: number, m: Float64Array, p0: number, j0: number, j1: number): void {
  const r0 = row;
  const r1 = r0 + K;
  const r2 = r1 + K;
  const r3 = r2 + K;
  let j = j0;
  for (; j + 2 <= j1; j += 2) {
    const mj = j * K;
    const mk = mj + K;
    let s0 = x[r0 + j]!;
    let s1 = x[r1 + j]!;
    let s2 = x[r2 + j]!;
    let s3 = x[r3 + j]!;
    let u0 = x[r0 + j + 1]!;
    let u1 = x[r1 + j + 1]!;
    let u2 = x[r2 + j + 1]!;
    let u3 = x[r3 + j + 1]!;
    for (let p = p0; p < j; p++) {
      const y = m[mj + p]!;
      const z = m[mk + p]!;
      const v0 = x[r0 + p]!;
      const v1 = x[r1 + p]!;
      const v2 = x[r2 + p]!;
      const v3 = x[r3 + p]!;
      s0 -= v0 * y;
      s1 -= v1 * y;
      s2 -= v2 * y;
      s3 -= v3 * y;
      u0 -= v0 * z;
      u1 -= v1 * z;
      u2 -= v2 * z;
      u3 -= v3 * z;
    }
    const d = m[mj + j]!;
    s0 /= d;
    s1 /= d;
    s2 /= d;
    s3 /= d;
    x[r0 + j] = s0;
    x[r1 + j] = s1;
    x[r2 + j] = s2;
    x[r3 + j] = s3;
    // Row j + 1's last term needs the entry just finished.
    const z = m[mk + j]!;
    const e = m[mk + j + 1]!;
    x[r0 + j + 1] = (u0 - s0 * z) / e;
    x[r1 + j + 1] = (u1 - s1 * z) / e;
    x[r2 + j + 1] = (u2 - s2 * z) / e;
    x[r3 + j + 1] = (u3 - s3 * z) / e;
  }
  for (; j < j1; j++) for (let r = r0; r <= r3; r += K) substituteRow(x, r, m, K, p0, j, j + 1);
}

/** value − Σ_{p<length} x[xi + p] · y[yi + p], subtracted in order of p. */
function residual(value: number, x: Float64Array, xi: number, y: Float64Array, yi: number, length: number): number {
  let sum = value;
  for (let p = 0; p < length; p++) sum -= x[xi + p]! * y[yi + p]!;
  return sum;
}
