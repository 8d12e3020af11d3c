/**
 * Image and tensor metrics: SQNR, max-abs error, PSNR, label agreement, and the Fréchet distance of feature
 * sets in float64 (covariances ddof=1, matrix square roots by symmetric Jacobi eigendecomposition), plus the
 * digits-classifier feature extractor.
 */
import { openSession, runBatched, type RuntimeSession, type SessionSettings } from './ort-session.js';

type Floats = ArrayLike<number>;

/** Signal-to-quantization-noise ratio in dB: 10·log10(Σref² / Σ(ref−test)²); +Infinity when identical. */
export function sqnrDb(reference: Floats, test: Floats): number {
  checkLengths(reference, test);
  let signal = 0;
  let noise = 0;
  for (let i = 0; i < reference.length; i++) {
    const r = reference[i]!;
    const d = r - test[i]!;
    signal += r * r;
    noise += d * d;
  }
  return 10 * Math.log10(signal / noise);
}

/** Largest |reference − test|. */
export function maxAbsError(reference: Floats, test: Floats): number {
  checkLengths(reference, test);
  let max = 0;
  for (let i = 0; i < reference.length; i++) max = Math.max(max, Math.abs(reference[i]! - test[i]!));
  return max;
}

/** PSNR in dB for data in [-1, 1] (peak-to-peak 2): 10·log10(4 / MSE). */
export function psnrDb(reference: Floats, test: Floats): number {
  checkLengths(reference, test);
  let sum = 0;
  for (let i = 0; i < reference.length; i++) sum += (reference[i]! - test[i]!) ** 2;
  return 10 * Math.log10(4 / (sum / reference.length));
}

/** Fraction of rows of `logits` [N, C] whose argmax equals `labels[i]`. */
export function labelAgreement(logits: Floats, classes: number, labels: ArrayLike<number | bigint>): number {
  const n = labels.length;
  if (logits.length !== n * classes) throw new Error(`labelAgreement: ${logits.length} logits for ${n} rows of ${classes} classes`);
  let hits = 0;
  for (let i = 0; i < n; i++) if (argmax(logits, i * classes, classes) === Number(labels[i])) hits++;
  return hits / n;
}

/** Index (0..count−1) of the largest of `count` values starting at `offset`; first wins ties. */
export function argmax(values: Floats, offset: number, count: number): number {
  let best = 0;
  for (let c = 1; c < count; c++) if (values[offset + c]! > values[offset + best]!) best = c;
  return best;
}

/** Mean [D] and covariance [D×D] (ddof=1) of `rows` × `dim` features, row-major, in float64. */
export interface FeatureStats {
  dim: number;
  mu: Float64Array;
  cov: Float64Array;
}

/** Feature statistics of a row-major [rows, dim] matrix. */
export function featureStats(features: Floats, dim: number): FeatureStats {
  const rows = features.length / dim;
  if (!Number.isInteger(rows) || rows < 2) throw new Error(`featureStats: need ≥ 2 rows of ${dim}, got ${features.length} values`);
  const mu = new Float64Array(dim);
  for (let r = 0; r < rows; r++) for (let d = 0; d < dim; d++) mu[d]! += features[r * dim + d]!;
  for (let d = 0; d < dim; d++) mu[d]! /= rows;
  const cov = new Float64Array(dim * dim);
  const centered = new Float64Array(dim);
  for (let r = 0; r < rows; r++) {
    for (let d = 0; d < dim; d++) centered[d] = features[r * dim + d]! - mu[d]!;
    for (let i = 0; i < dim; i++) {
      const ci = centered[i]!;
      if (ci === 0) continue;
      for (let j = i; j < dim; j++) cov[i * dim + j]! += ci * centered[j]!;
    }
  }
  for (let i = 0; i < dim; i++) {
    for (let j = i; j < dim; j++) {
      const v = cov[i * dim + j]! / (rows - 1);
      cov[i * dim + j] = v;
      cov[j * dim + i] = v;
    }
  }
  return { dim, mu, cov };
}

/**
 * Fréchet distance ||μ1−μ2||² + Tr(S1 + S2 − 2·sqrtm(S1·S2)). Tr sqrtm(S1·S2) = Tr sqrt(√S1·S2·√S1), and
 * √S1·S2·√S1 is symmetric PSD, so both roots come from symmetric eigendecompositions (exact for PSD input;
 * round-off negatives clamp to 0).
 */
export function frechetDistance(a: FeatureStats, b: FeatureStats): number {
  const n = a.dim;
  if (b.dim !== n) throw new Error(`frechetDistance: dimensions ${a.dim} and ${b.dim} differ`);
  let meanTerm = 0;
  for (let i = 0; i < n; i++) meanTerm += (a.mu[i]! - b.mu[i]!) ** 2;
  let trace = 0;
  for (let i = 0; i < n; i++) trace += a.cov[i * n + i]! + b.cov[i * n + i]!;
  const rootA = symmetricSqrt(a.cov, n);
  const inner = multiply(multiply(rootA, b.cov, n), rootA, n);
  symmetrize(inner, n);
  const { values } = jacobiEigen(inner, n);
  let traceRoot = 0;
  for (const v of values) traceRoot += Math.sqrt(Math.max(v, 0));
  return meanTerm + trace - 2 * traceRoot;
}

/** √S of a symmetric PSD matrix by eigendecomposition (negative round-off eigenvalues clamp to 0). */
export function symmetricSqrt(matrix: Float64Array, n: number): Float64Array {
  const { values, vectors } = jacobiEigen(matrix, n);
  const out = new Float64Array(n * n);
  for (let k = 0; k < n; k++) {
    const root = Math.sqrt(Math.max(values[k]!, 0));
    if (root === 0) continue;
    for (let i = 0; i < n; i++) {
      const vik = vectors[i * n + k]! * root;
      for (let j = 0; j < n; j++) out[i * n + j]! += vik * vectors[j * n + k]!;
    }
  }
  return out;
}

/**
 * Eigenvalues and eigenvectors (columns of `vectors`) of a symmetric matrix by cyclic Jacobi rotations; the
 * input is not modified. Converges quadratically; stops when the off-diagonal mass is negligible.
 */
export function jacobiEigen(matrix: Float64Array, n: number): { values: Float64Array; vectors: Float64Array } {
  const a = Float64Array.from(matrix);
  const v = new Float64Array(n * n);
  for (let i = 0; i < n; i++) v[i * n + i] = 1;
  let scale = 0;
  for (let i = 0; i < n * n; i++) scale += a[i]! * a[i]!;
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0;
    for (let p = 0; p < n; p++) for (let q = p + 1; q < n; q++) off += a[p * n + q]! * a[p * n + q]!;
    if (off <= 1e-30 * scale || off === 0) break;
    for (let p = 0; p < n; p++) {
      for (let q = p + 1; q < n; q++) {
        const apq = a[p * n + q]!;
        if (apq === 0) continue;
        const theta = (a[q * n + q]! - a[p * n + p]!) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        for (let k = 0; k < n; k++) {
          const akp = a[k * n + p]!;
          const akq = a[k * n + q]!;
          a[k * n + p] = c * akp - s * akq;
          a[k * n + q] = s * akp + c * akq;
        }
        for (let k = 0; k < n; k++) {
          const apk = a[p * n + k]!;
          const aqk = a[q * n + k]!;
          a[p * n + k] = c * apk - s * aqk;
          a[q * n + k] = s * apk + c * aqk;
        }
        for (let k = 0; k < n; k++) {
          const vkp = v[k * n + p]!;
          const vkq = v[k * n + q]!;
          v[k * n + p] = c * vkp - s * vkq;
          v[k * n + q] = s * vkp + c * vkq;
        }
      }
    }
  }
  const values = new Float64Array(n);
  for (let i = 0; i < n; i++) values[i] = a[i * n + i]!;
  return { values, vectors: v };
}

function multiply(x: Float64Array, y: Float64Array, n: number): Float64Array {
  const out = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < n; k++) {
      const xik = x[i * n + k]!;
      if (xik === 0) continue;
      for (let j = 0; j < n; j++) out[i * n + j]! += xik * y[k * n + j]!;
    }
  }
  return out;
}

function symmetrize(m: Float64Array, n: number): void {
  for (let i = 0; i < n; i++) {
    for (let j = i + 1; j < n; j++) {
      const v = (m[i * n + j]! + m[j * n + i]!) / 2;
      m[i * n + j] = v;
      m[j * n + i] = v;
    }
  }
}

function checkLengths(a: Floats, b: Floats): void {
  if (a.length !== b.length) throw new Error(`metric: lengths ${a.length} and ${b.length} differ`);
}

/** Features and logits of a batch of images. */
export interface ClassifierOutputs {
  features: Float32Array;
  featureDim: number;
  logits: Float32Array;
  classes: number;
}

/** Runs a classifier with outputs `features` and `logits` (the digits-classifier fixture) over image batches. */
export class FeatureExtractor {
  private constructor(private readonly session: RuntimeSession, private readonly inputName: string, private readonly batchSize: number) {}

  /** Opens the classifier (path or bytes); its single input takes [B, C, H, W] images. */
  static async open(model: string | Uint8Array, batchSize = 256, settings: SessionSettings = {}): Promise<FeatureExtractor> {
    const session = await openSession(model, settings);
    for (const name of ['features', 'logits']) if (!session.outputNames.includes(name)) throw new Error(`feature extractor: the classifier has no output '${name}'`);
    return new FeatureExtractor(session, session.inputNames[0]!, batchSize);
  }

  /** Features and logits of `images` with shape `dims` ([N, C, H, W]). */
  async extract(images: Float32Array, dims: number[]): Promise<ClassifierOutputs> {
    const out = await runBatched(this.session, { [this.inputName]: { dtype: 'float32', dims, data: images } }, this.batchSize, ['features', 'logits']);
    const features = out.features!;
    const logits = out.logits!;
    return { features: features.data as Float32Array, featureDim: features.dims[1]!, logits: logits.data as Float32Array, classes: logits.dims[1]! };
  }

  /** Closes the session. */
  release(): Promise<void> {
    return this.session.release();
  }
}
