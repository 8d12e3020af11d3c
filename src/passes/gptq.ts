/**
 * GPTQ rounding (Frantar et al.): quantizes a weight one input channel at a time and spreads each channel's
 * rounding error over the channels not yet quantized, weighted by the inverse Hessian H = XᵀX of the layer's
 * calibration inputs. Scales and zero points are fixed beforehand (static groups), so the result lies exactly
 * on the grid the weight quantizer emits. Pure math: no IR here.
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
      for (let n = 0; n < N; n++) w[k * N + n] = 0;
    }
  }
  let meanDiagonal = 0;
  for (let k = 0; k < K; k++) meanDiagonal += h[k * K + k]!;
  meanDiagonal /= K;
  for (let k = 0; k < K; k++) h[k * K + k]! += options.damp * meanDiagonal;
  const u = upperCholeskyOfInverse(h, K);

  const codes = new Int32Array(K * N);
  const error = new Float64Array(options.blockSize * N);
  for (let start = 0; start < K; start += options.blockSize) {
    const end = Math.min(start + options.blockSize, K);
    for (let k = start; k < end; k++) {
      const group = Math.floor(k / grid.groupSize);
      const d = u[k * K + k]!;
      const errRow = (k - start) * N;
      for (let n = 0; n < N; n++) {
        const scale = grid.scale[group * N + n]!;
        const zero = grid.zeroPoint[group * N + n]!;
        const value = w[k * N + n]!;
        const q = Math.min(grid.qmax, Math.max(grid.qmin, roundHalfEven(value / scale) + zero));
        codes[k * N + n] = q;
        error[errRow + n] = (value - (q - zero) * scale) / d;
      }
      // Spread this channel's error over the rest of the block now.
      for (let j = k + 1; j < end; j++) {
        const factor = u[k * K + j]!;
        if (factor === 0) continue;
        for (let n = 0; n < N; n++) w[j * N + n]! -= error[errRow + n]! * factor;
      }
    }
    // And over every later channel once per block (the lazy batch update).
    for (let j = end; j < K; j++) {
      for (let k = start; k < end; k++) {
        const factor = u[k * K + j]!;
        if (factor === 0) continue;
        const errRow = (k - start) * N;
        for (let n = 0; n < N; n++) w[j * N + n]! -= error[errRow + n]! * factor;
      }
    }
  }
  return codes;
}

/** Round half to even, as ONNX QuantizeLinear rounds. */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** U with Uᵀ U = H⁻¹ (upper triangular), for symmetric positive definite H [K,K]. */
function upperCholeskyOfInverse(h: Float64Array, K: number): Float64Array {
  const inverse = choleskyInverse(h, K);
  // Cholesky of the inverse: L Lᵀ = H⁻¹, U = Lᵀ.
  const l = cholesky(inverse, K);
  const u = new Float64Array(K * K);
  for (let i = 0; i < K; i++) for (let j = 0; j <= i; j++) u[j * K + i] = l[i * K + j]!;
  return u;
}

function cholesky(a: Float64Array, K: number): Float64Array {
  const l = new Float64Array(K * K);
  for (let i = 0; i < K; i++) {
    for (let j = 0; j <= i; j++) {
      let sum = a[i * K + j]!;
      for (let p = 0; p < j; p++) sum -= l[i * K + p]! * l[j * K + p]!;
      if (i === j) {
        if (sum <= 0) throw new Error(`GPTQ: Hessian is not positive definite at channel ${i} (increase damp)`);
        l[i * K + i] = Math.sqrt(sum);
      } else {
        l[i * K + j] = sum / l[j * K + j]!;
      }
    }
  }
  return l;
}

/** H⁻¹ from H's Cholesky factor: invert L, then H⁻¹ = L⁻ᵀ L⁻¹. */
function choleskyInverse(h: Float64Array, K: number): Float64Array {
  const l = cholesky(h, K);
  const li = new Float64Array(K * K);
  for (let i = 0; i < K; i++) {
    li[i * K + i] = 1 / l[i * K + i]!;
    for (let j = 0; j < i; j++) {
      let sum = 0;
      for (let p = j; p < i; p++) sum += l[i * K + p]! * li[p * K + j]!;
      li[i * K + j] = -sum / l[i * K + i]!;
    }
  }
  const inverse = new Float64Array(K * K);
  for (let i = 0; i < K; i++) {
    for (let j = 0; j <= i; j++) {
      let sum = 0;
      for (let p = i; p < K; p++) sum += li[p * K + i]! * li[p * K + j]!;
      inverse[i * K + j] = sum;
      inverse[j * K + i] = sum;
    }
  }
  return inverse;
}
