/**
 * End-to-end image quality of a diffusion model against its FP twin: DDIM samples from shared seeds, paired
 * PSNR, label agreement under the digits classifier, and the Fréchet distance of the classifier's features to
 * the real digits. Shared by bench/quality.ts and bench/proxy-ranking.ts.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Model } from '../src/ir/core.js';
import { loadModelSync } from '../src/ir/serde.js';
import type { ModelExecutor } from '../src/ir/executor.js';
import { buildCalibrationSet, type CalibrationOptions, type CalibrationSet } from '../src/runtime/calibration.js';
import { classLabelConditioning, type ConditioningSet } from '../src/runtime/diffusion/conditioning.js';
import type { DiffusionInterface } from '../src/runtime/diffusion/interface.js';
import { findDiffusionInterface } from '../src/runtime/diffusion/interface.js';
import { noiseScheduleFromSidecar } from '../src/runtime/diffusion/scheduler-config.js';
import { openDenoiser, sample } from '../src/runtime/diffusion/sampler.js';
import { makeScheduler, type Scheduler } from '../src/runtime/diffusion/scheduler.js';
import { readSidecar } from '../src/runtime/diffusion/sidecar.js';
import { OrtExecutor } from '../src/runtime/ir-executor.js';
import { featureStats, frechetDistance } from '../src/runtime/metrics.js';

const fixtures = join(import.meta.dirname, '..', 'test', 'fixtures');
/** Folder of the dit-digits fixture. */
export const DIT_DIGITS = join(fixtures, 'dit-digits');
const CLASSIFIER = join(fixtures, 'digits-classifier');
const PIXELS = 256;

function floats64(file: string): Float64Array {
  const b = readFileSync(join(CLASSIFIER, file));
  return new Float64Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
}

/** A dit-digits model (the fixture or a quantized twin) as the runtime drives it: its interface, its 10 class labels, DDIM-`steps` over its sidecar schedule. */
export function ditDigits(model: Model, steps: number): { iface: DiffusionInterface; conditioning: ConditioningSet; scheduler: Scheduler } {
  const iface = findDiffusionInterface(model, join(DIT_DIGITS, 'model.onnx'));
  const scheduler = makeScheduler(noiseScheduleFromSidecar(readSidecar(join(DIT_DIGITS, 'schedule.json'))), { kind: 'ddim', steps });
  return { iface, conditioning: classLabelConditioning(iface), scheduler };
}

/** A calibration set of a dit-digits model from its own DDIM-`steps` trajectories. */
export async function ditCalibrationSet(model: Model, steps: number, options: CalibrationOptions): Promise<CalibrationSet> {
  const { iface, conditioning, scheduler } = ditDigits(model, steps);
  const denoiser = await openDenoiser(model, iface);
  try {
    return await buildCalibrationSet(denoiser, scheduler, conditioning, options);
  } finally {
    await denoiser.release();
  }
}

/** `count` class-conditional DDIM samples (label i mod 10) from seeded noise: the same seed gives the same x_T for every model. */
export async function sampleDigits(model: Model, count: number, steps: number, seed: number, batch = 100, executor: ModelExecutor = new OrtExecutor()): Promise<{ images: Float32Array; labels: number[] }> {
  const { iface, conditioning, scheduler } = ditDigits(model, steps);
  const denoiser = await openDenoiser(model, iface, executor);
  const labels = Array.from({ length: count }, (_, i) => i % 10);
  try {
    const images = await sample(denoiser, { scheduler, conditions: labels, conditioning, seed, batch });
    return { images, labels };
  } finally {
    await denoiser.release();
  }
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

/** PSNR (dB, peak-to-peak 2 for images in [-1, 1], capped at 100) of each of the first `count` test images against its reference twin. */
export function psnrPerSample(reference: Float32Array, test: Float32Array, count: number): number[] {
  return Array.from({ length: count }, (_, s) => {
    let mse = 0;
    for (let i = s * PIXELS; i < (s + 1) * PIXELS; i++) mse += (reference[i]! - test[i]!) ** 2;
    mse /= PIXELS;
    return mse === 0 ? 100 : Math.min(100, 10 * Math.log10(4 / mse));
  });
}

/** Mean paired PSNR over the first `count` images. */
export function pairedPsnr(reference: Float32Array, test: Float32Array, count: number): number {
  return psnrPerSample(reference, test, count).reduce((a, b) => a + b, 0) / count;
}

/** Fraction of the first `count` samples where both label lists agree. */
export function agreement(a: number[], b: number[], count = a.length): number {
  let same = 0;
  for (let i = 0; i < count; i++) if (a[i] === b[i]) same++;
  return same / count;
}

/** Fréchet distance of features [N, 64] to the real digits (the fixture's stored feature mean and covariance). */
export function frechetToRealDigits(features: Float32Array): number {
  const mu = floats64('real_features_mu_f64.bin');
  return frechetDistance(featureStats(features, 64), { dim: 64, mu, cov: floats64('real_features_cov_f64.bin') });
}
