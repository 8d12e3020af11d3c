/**
 * End-to-end image quality of a diffusion model against its FP twin: DDIM samples from shared seeds, paired
 * PSNR, label agreement under the digits classifier, and the Fréchet distance of the classifier's features to
 * the real digits. Shared by test/e2e/quality.test.ts and bench/quality-w8a8.ts.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Model } from '../../src/ir/core.js';
import { loadModelSync } from '../../src/ir/serde.js';
import { seededNormal } from '../../src/random.js';
import { diffusionIO, epsModel } from '../../src/runtime/calibration.js';
import { readSidecar, sampleDdim, scheduleFromSidecar } from '../../src/runtime/diffusion.js';
import { OrtExecutor } from '../../src/runtime/ir-executor.js';

const fixtures = join(import.meta.dirname, '..', 'fixtures');
/** Folder of the dit-digits fixture. */
export const DIT_DIGITS = join(fixtures, 'dit-digits');
const CLASSIFIER = join(fixtures, 'digits-classifier');
const PIXELS = 256;

function floats64(file: string): Float64Array {
  const b = readFileSync(join(CLASSIFIER, file));
  return new Float64Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
}

/** `count` class-conditional DDIM samples (label i mod 10) from seeded noise: the same seed gives the same x_T for every model. */
export async function sampleDigits(model: Model, count: number, steps: number, seed: number, batch = 100): Promise<{ images: Float32Array; labels: number[] }> {
  const schedule = scheduleFromSidecar(readSidecar(join(DIT_DIGITS, 'schedule.json')));
  const io = diffusionIO(model, 10);
  const { eps, release } = await epsModel(model, io, new OrtExecutor());
  const normal = seededNormal(seed);
  const images = Float32Array.from({ length: count * PIXELS }, () => normal());
  const labels = Array.from({ length: count }, (_, i) => i % 10);
  try {
    for (let start = 0; start < count; start += batch) {
      const end = Math.min(count, start + batch);
      await sampleDdim(eps, schedule, images.subarray(start * PIXELS, end * PIXELS), labels.slice(start, end), steps);
    }
  } finally {
    await release();
  }
  return { images, labels };
}

/** The classifier's 64-d features and predicted labels of images in [-1, 1]. */
export async function classify(images: Float32Array): Promise<{ features: Float32Array; predicted: number[] }> {
  const model = loadModelSync(join(CLASSIFIER, 'classifier.onnx'));
  const prepared = await new OrtExecutor().prepare(model, ['features', 'logits']);
  try {
    const n = images.length / PIXELS;
    const out = await prepared.run({ x: { dtype: 'float32', dims: [n, 1, 16, 16], data: images } });
    const logits = out.logits!.data as Float32Array;
    const predicted = Array.from({ length: n }, (_, i) => {
      let best = 0;
      for (let k = 1; k < 10; k++) if (logits[i * 10 + k]! > logits[i * 10 + best]!) best = k;
      return best;
    });
    return { features: out.features!.data as Float32Array, predicted };
  } finally {
    await prepared.release();
  }
}

/** Mean PSNR (dB, peak-to-peak 2 for images in [-1, 1]) of each test image against its reference twin, over the first `count`. */
export function pairedPsnr(reference: Float32Array, test: Float32Array, count: number): number {
  let sum = 0;
  for (let s = 0; s < count; s++) {
    let mse = 0;
    for (let i = s * PIXELS; i < (s + 1) * PIXELS; i++) mse += (reference[i]! - test[i]!) ** 2;
    mse /= PIXELS;
    sum += mse === 0 ? 100 : Math.min(100, 10 * Math.log10(4 / mse));
  }
  return sum / count;
}

/** Fraction of the first `count` samples where both label lists agree. */
export function agreement(a: number[], b: number[], count = a.length): number {
  let same = 0;
  for (let i = 0; i < count; i++) if (a[i] === b[i]) same++;
  return same / count;
}

/** Symmetric eigendecomposition by cyclic Jacobi rotations: eigenvalues and column eigenvectors (row-major n×n). */
function symmetricEigen(matrix: Float64Array, n: number): { values: Float64Array; vectors: Float64Array } {
  const a = Float64Array.from(matrix);
  const v = new Float64Array(n * n);
  for (let i = 0; i < n; i++) v[i * n + i] = 1;
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0;
    for (let p = 0; p < n; p++) for (let q = p + 1; q < n; q++) off += a[p * n + q]! ** 2;
    if (off < 1e-22) break;
    for (let p = 0; p < n; p++) {
      for (let q = p + 1; q < n; q++) {
        const apq = a[p * n + q]!;
        if (Math.abs(apq) < 1e-300) continue;
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
  return { values: Float64Array.from({ length: n }, (_, i) => a[i * n + i]!), vectors: v };
}

function multiply(a: Float64Array, b: Float64Array, n: number): Float64Array {
  const out = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let k = 0; k < n; k++) {
    const aik = a[i * n + k]!;
    for (let j = 0; j < n; j++) out[i * n + j] += aik * b[k * n + j]!;
  }
  return out;
}

/** Fréchet distance of features [N, 64] to the real digits: ‖μ1−μ2‖² + Tr(S1 + S2 − 2 (S1^½ S2 S1^½)^½), covariances with ddof 1. */
export function frechetToRealDigits(features: Float32Array): number {
  const d = 64;
  const n = features.length / d;
  const mu = new Float64Array(d);
  for (let i = 0; i < n; i++) for (let j = 0; j < d; j++) mu[j] += features[i * d + j]! / n;
  const cov = new Float64Array(d * d);
  for (let i = 0; i < n; i++) for (let j = 0; j < d; j++) {
    const fj = features[i * d + j]! - mu[j]!;
    for (let k = 0; k < d; k++) cov[j * d + k] += (fj * (features[i * d + k]! - mu[k]!)) / (n - 1);
  }
  const realMu = floats64('real_features_mu_f64.bin');
  const realCov = floats64('real_features_cov_f64.bin');
  // S1^½ from the eigendecomposition of S1 (PSD), then Tr((S1^½ S2 S1^½)^½) = Σ √λ.
  const { values, vectors } = symmetricEigen(cov, d);
  const root = new Float64Array(d * d);
  for (let i = 0; i < d; i++) for (let j = 0; j < d; j++) {
    let s = 0;
    for (let k = 0; k < d; k++) s += vectors[i * d + k]! * Math.sqrt(Math.max(values[k]!, 0)) * vectors[j * d + k]!;
    root[i * d + j] = s;
  }
  const inner = symmetricEigen(multiply(multiply(root, realCov, d), root, d), d).values;
  let distance = 0;
  for (let j = 0; j < d; j++) distance += (mu[j]! - realMu[j]!) ** 2 + cov[j * d + j]! + realCov[j * d + j]!;
  for (const lambda of inner) distance -= 2 * Math.sqrt(Math.max(lambda, 0));
  return distance;
}
