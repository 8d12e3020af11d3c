/**
 * Diffusion schedules and the per-step sampler math (DDIM, DDPM, v → eps) in float64 schedule arithmetic;
 * samplers.ts drives them. DDIM matches the fixture's definition: timesteps (S−1−i)·⌊T/S⌋, x0 clipped to
 * [−1, 1], ᾱ_prev = 1 after t = 0.
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

/** DDIM timesteps, high to low: (S−1−i)·⌊T/S⌋. */
export function ddimTimesteps(T: number, steps: number): number[] {
  const stride = Math.floor(T / steps);
  return Array.from({ length: steps }, (_, i) => (steps - 1 - i) * stride);
}

/** The model output as eps (v-prediction converted). */
export function toEps(schedule: Schedule, x: Float32Array, out: Float32Array, t: number): Float32Array {
  if (schedule.prediction === 'epsilon') return out;
  // v = √ᾱ·eps − √(1−ᾱ)·x0  ⇒  eps = √ᾱ·v + √(1−ᾱ)·x_t.
  const ab = schedule.alphasCumprod[t]!;
  const sa = Math.sqrt(ab);
  const sb = Math.sqrt(1 - ab);
  return Float32Array.from(out, (v, i) => sa * v + sb * x[i]!);
}

function clippedX0(xi: number, eps: number, sa: number, sb: number): number {
  const x0 = (xi - sb * eps) / sa;
  return x0 > 1 ? 1 : x0 < -1 ? -1 : x0;
}

/** DDIM update in place: x ← √ᾱ_prev·x0 + √(1−ᾱ_prev−σ²)·eps + σ·z, σ = η·√((1−ᾱ_prev)/(1−ᾱ))·√(1−ᾱ/ᾱ_prev). */
export function ddimUpdate(schedule: Schedule, x: Float32Array, eps: Float32Array, t: number, tPrev: number | undefined, eta: number, normal: () => number): void {
  const ab = schedule.alphasCumprod[t]!;
  const abPrev = tPrev === undefined ? 1 : schedule.alphasCumprod[tPrev]!;
  const sa = Math.sqrt(ab);
  const sb = Math.sqrt(1 - ab);
  const sigma = eta === 0 ? 0 : eta * Math.sqrt((1 - abPrev) / (1 - ab)) * Math.sqrt(1 - ab / abPrev);
  const dirCoef = Math.sqrt(Math.max(1 - abPrev - sigma * sigma, 0));
  const sPrev = Math.sqrt(abPrev);
  for (let i = 0; i < x.length; i++) {
    const e = eps[i]!;
    x[i] = sPrev * clippedX0(x[i]!, e, sa, sb) + dirCoef * e + (sigma === 0 ? 0 : sigma * normal());
  }
}

/** DDPM update in place: posterior mean from the clipped x0, plus √(β_t(1−ᾱ_{t−1})/(1−ᾱ_t))·z except at t = 0. */
export function ddpmUpdate(schedule: Schedule, x: Float32Array, eps: Float32Array, t: number, normal: () => number): void {
  const ab = schedule.alphasCumprod[t]!;
  const abPrev = t === 0 ? 1 : schedule.alphasCumprod[t - 1]!;
  const alpha = ab / abPrev;
  const beta = 1 - alpha;
  const sa = Math.sqrt(ab);
  const sb = Math.sqrt(1 - ab);
  const c0 = (beta * Math.sqrt(abPrev)) / (1 - ab);
  const ct = ((1 - abPrev) * Math.sqrt(alpha)) / (1 - ab);
  const sigma = t === 0 ? 0 : Math.sqrt((beta * (1 - abPrev)) / (1 - ab));
  for (let i = 0; i < x.length; i++) {
    const xi = x[i]!;
    x[i] = c0 * clippedX0(xi, eps[i]!, sa, sb) + ct * xi + (sigma === 0 ? 0 : sigma * normal());
  }
}
