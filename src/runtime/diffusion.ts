/**
 * Diffusion schedules and the DDIM sampler over any eps-predicting model, in float64 schedule arithmetic.
 * DDIM matches the fixture's definition: timesteps (S−1−i)·T/S, x0 clipped to [−1, 1], ᾱ_prev = 1 after t = 0.
 */
import { readFileSync } from 'node:fs';
import { IrError } from '../ir/errors.js';

/** A noise schedule: ᾱ_t for t = 0..T−1 and what the model predicts. */
export interface Schedule {
  T: number;
  alphasCumprod: Float64Array;
  prediction: 'epsilon' | 'v';
}

/** Beta schedules by kind. */
export function makeSchedule(kind: 'linear' | 'scaled-linear' | 'cosine', T: number, betaStart = 1e-4, betaEnd = 0.02, prediction: Schedule['prediction'] = 'epsilon'): Schedule {
  const betas = new Float64Array(T);
  for (let t = 0; t < T; t++) {
    if (kind === 'linear') betas[t] = betaStart + ((betaEnd - betaStart) * t) / Math.max(T - 1, 1);
    else if (kind === 'scaled-linear') betas[t] = (Math.sqrt(betaStart) + ((Math.sqrt(betaEnd) - Math.sqrt(betaStart)) * t) / Math.max(T - 1, 1)) ** 2;
    else {
      const f = (s: number) => Math.cos(((s / T + 0.008) / 1.008) * (Math.PI / 2)) ** 2;
      betas[t] = Math.min(1 - f(t + 1) / f(t), 0.999);
    }
  }
  const alphasCumprod = new Float64Array(T);
  let product = 1;
  for (let t = 0; t < T; t++) alphasCumprod[t] = product *= 1 - betas[t]!;
  return { T, alphasCumprod, prediction };
}

/** The model's sidecar (`schedule.json` next to it, as the fixture ships). */
export interface Sidecar {
  T: number;
  beta_schedule: 'linear' | 'scaled-linear' | 'cosine';
  beta_start: number;
  beta_end: number;
  prediction_type: 'epsilon' | 'v';
  inputs?: { name: string; dtype: string; shape: (string | number)[] }[];
}

/** Reads a sidecar file. */
export function readSidecar(path: string): Sidecar {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as Sidecar;
  } catch (error) {
    throw new IrError('io', `cannot read the diffusion sidecar: ${(error as Error).message}`, path);
  }
}

/** The schedule a sidecar describes. */
export function scheduleFromSidecar(sidecar: Sidecar): Schedule {
  return makeSchedule(sidecar.beta_schedule, sidecar.T, sidecar.beta_start, sidecar.beta_end, sidecar.prediction_type);
}

/** DDIM timesteps, high to low: (S−1−i)·(T/S). */
export function ddimTimesteps(T: number, steps: number): number[] {
  const stride = Math.floor(T / steps);
  return Array.from({ length: steps }, (_, i) => (steps - 1 - i) * stride);
}

/** Predicts eps for a batch: x [B,...] at integer steps t with labels y. */
export type EpsModel = (x: Float32Array, t: number[], y: number[]) => Promise<Float32Array>;

/** One DDIM update (η = 0) in place; returns nothing. `prediction` v is converted to eps first. */
export function ddimStep(schedule: Schedule, x: Float32Array, modelOut: Float32Array, t: number, tPrev: number | undefined, perSample: number, sample: number): void {
  const ab = schedule.alphasCumprod[t]!;
  const abPrev = tPrev === undefined ? 1 : schedule.alphasCumprod[tPrev]!;
  const sa = Math.sqrt(ab);
  const sb = Math.sqrt(1 - ab);
  const base = sample * perSample;
  for (let i = base; i < base + perSample; i++) {
    const xi = x[i]!;
    let eps = modelOut[i]!;
    if (schedule.prediction === 'v') eps = sa * eps + sb * xi;
    let x0 = (xi - sb * eps) / sa;
    if (x0 > 1) x0 = 1;
    else if (x0 < -1) x0 = -1;
    x[i] = Math.sqrt(abPrev) * x0 + Math.sqrt(1 - abPrev) * eps;
  }
}

/**
 * Runs DDIM on a batch from x_T (modified in place to x_0). `onStep(stepIndex, t, x_t)` sees each model input
 * before the update — the (x_t, t) pair the model was actually called with.
 */
export async function sampleDdim(
  model: EpsModel,
  schedule: Schedule,
  xT: Float32Array,
  labels: number[],
  steps: number,
  onStep?: (stepIndex: number, t: number, x: Float32Array) => boolean | void,
): Promise<Float32Array> {
  const x = xT;
  const batch = labels.length;
  const perSample = x.length / batch;
  const timesteps = ddimTimesteps(schedule.T, steps);
  for (let i = 0; i < timesteps.length; i++) {
    const t = timesteps[i]!;
    if (onStep?.(i, t, x) === false) break;
    const out = await model(x, Array(batch).fill(t), labels);
    for (let s = 0; s < batch; s++) ddimStep(schedule, x, out, t, timesteps[i + 1], perSample, s);
  }
  return x;
}
