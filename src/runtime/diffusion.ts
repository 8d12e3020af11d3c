/**
 * Diffusion schedules and the per-step sampler math (DDIM, DDPM, v → eps) as samplers.ts drives them, and the
 * `schedule.json` sidecar. The arithmetic is diffusion/schedule-math.ts's (the diffusers definitions, float64);
 * these are its fixture-semantics entry points: timesteps (S−1−i)·⌊T/S⌋, x0 clipped to [−1, 1], ᾱ_prev = 1
 * after t = 0 (what `makeScheduler` does for a sidecar schedule).
 */
import { readFileSync } from 'node:fs';
import { betasOf, cumulativeAlphas, ddimStep, ddpmStep, predictedEps, predictedX0, spacedTimesteps, ScheduleError, MAX_TIMESTEPS } from './diffusion/schedule-math.js';

export { MAX_TIMESTEPS, ScheduleError };

/** What a model predicts: the noise, or v = √ᾱ·eps − √(1−ᾱ)·x0 (diffusers' `v_prediction`). */
export type Prediction = 'epsilon' | 'v';

/** The beta schedules qcompile computes. */
export type BetaScheduleKind = 'linear' | 'scaled-linear' | 'cosine';

/** A noise schedule: ᾱ_t for t = 0..T−1 and what the model predicts. */
export interface Schedule {
  T: number;
  alphasCumprod: Float64Array;
  prediction: Prediction;
}

/**
 * Beta schedules by kind. Every schedule, from a recipe or a sidecar, is checked here: T an integer in
 * [1, MAX_TIMESTEPS], every beta in (0, 1) — so ᾱ stays in (0, 1] and every sampler coefficient is finite.
 */
export function makeSchedule(kind: BetaScheduleKind, T: number, betaStart = 1e-4, betaEnd = 0.02, prediction: Prediction = 'epsilon'): Schedule {
  const diffusersKind = DIFFUSERS_BETA_SCHEDULES[kind];
  if (!diffusersKind) throw new ScheduleError(`unknown beta schedule '${String(kind)}' (known: ${BETA_SCHEDULES.join(', ')})`, undefined, 'beta_schedule');
  return { T, alphasCumprod: cumulativeAlphas(betasOf({ kind: diffusersKind, T, betaStart, betaEnd })), prediction };
}

/** qcompile's beta schedule names and diffusers' (`beta_schedule`). */
export const DIFFUSERS_BETA_SCHEDULES = { linear: 'linear', 'scaled-linear': 'scaled_linear', cosine: 'squaredcos_cap_v2' } as const satisfies Record<BetaScheduleKind, string>;

const BETA_SCHEDULES = Object.keys(DIFFUSERS_BETA_SCHEDULES) as BetaScheduleKind[];

/** Sidecar `prediction_type` spellings and what they mean; `sample` (x0 prediction) is refused by name. */
const PREDICTION_TYPES: Record<string, Prediction> = { epsilon: 'epsilon', v_prediction: 'v', v: 'v' };

/** The model's sidecar (`schedule.json` next to it, as the fixture ships), validated by `parseSidecar`. */
export interface Sidecar {
  T: number;
  beta_schedule: BetaScheduleKind;
  /** Required for the linear kinds; cosine does not use them. */
  beta_start?: number;
  beta_end?: number;
  /** Normalized: `v_prediction` reads as `v`. */
  prediction_type: Prediction;
  inputs?: { name: string; dtype: string; shape: (string | number)[] }[];
  outputs?: { name: string }[];
  num_classes?: number;
  image?: { channels: number; height: number; width: number };
}

/** Reads and validates a sidecar file (`parseSidecar`); a missing or malformed file is a ScheduleError. */
export function readSidecar(path: string): Sidecar {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new ScheduleError(`cannot read the diffusion sidecar: ${(error as Error).message}`, path);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new ScheduleError(`the diffusion sidecar is not JSON: ${(error as Error).message}`, path);
  }
  return parseSidecar(value, path);
}

/**
 * Validates a parsed sidecar — the one check compile, `sample` and `eval` share: known fields typed and in
 * range (T bounded, betas in (0, 1), a known beta schedule and prediction type, `num_classes` and `image` whole
 * numbers), and the schedule it describes computable. Unknown fields are kept as they are.
 */
export function parseSidecar(value: unknown, file?: string): Sidecar {
  const fail = (field: string, message: string): never => {
    throw new ScheduleError(`'${field}' ${message}`, file, field);
  };
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new ScheduleError('the diffusion sidecar must be a JSON object', file);
  const raw = value as Record<string, unknown>;
  const T = raw.T;
  if (typeof T !== 'number' || !Number.isInteger(T) || T < 1 || T > MAX_TIMESTEPS) fail('T', `must be an integer in [1, ${MAX_TIMESTEPS}], got ${JSON.stringify(T)}`);
  const kind = raw.beta_schedule;
  if (typeof kind !== 'string' || !(BETA_SCHEDULES as readonly string[]).includes(kind)) fail('beta_schedule', `must be one of ${BETA_SCHEDULES.join(', ')}, got ${JSON.stringify(kind)}`);
  for (const field of ['beta_start', 'beta_end'] as const) {
    const beta = raw[field];
    if (beta === undefined && kind === 'cosine') continue;
    if (typeof beta !== 'number' || !(beta > 0 && beta < 1)) fail(field, `must be a number in (0, 1), got ${JSON.stringify(beta)}`);
  }
  const type = raw.prediction_type;
  if (type === 'sample') fail('prediction_type', "is 'sample' (x0 prediction), which qcompile's samplers do not implement: they take epsilon or v_prediction");
  const prediction = typeof type === 'string' ? PREDICTION_TYPES[type] : undefined;
  if (!prediction) fail('prediction_type', `must be one of ${Object.keys(PREDICTION_TYPES).join(', ')}, got ${JSON.stringify(type)}`);
  if (raw.num_classes !== undefined && raw.num_classes !== null && !(Number.isInteger(raw.num_classes) && (raw.num_classes as number) >= 0)) fail('num_classes', `must be a non-negative integer, got ${JSON.stringify(raw.num_classes)}`);
  if (raw.image !== undefined) {
    const image = raw.image as Record<string, unknown> | null;
    for (const axis of ['channels', 'height', 'width']) {
      const n = image?.[axis];
      if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > 65536) fail(`image.${axis}`, `must be an integer in [1, 65536], got ${JSON.stringify(n)}`);
    }
  }
  const sidecar = { ...raw, prediction_type: prediction } as Sidecar;
  if (sidecar.num_classes === null) delete sidecar.num_classes;
  return sidecar;
}

/**
 * The schedule a sidecar describes. With `recipe`, the recipe's `prediction` must agree with the sidecar's
 * `prediction_type`: a conflict is a ScheduleError (the recipe always has one — `epsilon` unless written — so
 * it is never silently dropped, and a v model's recipe says `prediction v`).
 */
export function scheduleFromSidecar(sidecar: Sidecar, recipe?: { prediction: Prediction; file?: string }): Schedule {
  if (recipe && recipe.prediction !== sidecar.prediction_type) {
    throw new ScheduleError(
      `the recipe${recipe.file ? ` ${recipe.file}` : ''} says 'prediction ${recipe.prediction}' but the model's schedule.json says prediction_type '${sidecar.prediction_type === 'v' ? 'v_prediction' : 'epsilon'}': make them agree (the recipe's prediction is 'epsilon' when unwritten)`,
      undefined,
      'prediction_type',
    );
  }
  return makeSchedule(sidecar.beta_schedule, sidecar.T, sidecar.beta_start, sidecar.beta_end, sidecar.prediction_type);
}

/** DDIM timesteps, high to low: (S−1−i)·⌊T/S⌋; S must be an integer in [1, T] (more steps than T would all be t = 0). */
export function ddimTimesteps(T: number, steps: number): number[] {
  if (!Number.isInteger(steps) || steps < 1 || steps > T) throw new ScheduleError(`DDIM steps must be an integer in [1, T = ${T}], got ${steps}`);
  return spacedTimesteps(T, steps, 'leading', 0);
}

/** The model output as eps (v-prediction converted). */
export function toEps(schedule: Schedule, x: Float32Array, out: Float32Array, t: number): Float32Array {
  if (schedule.prediction === 'epsilon') return out;
  const ab = schedule.alphasCumprod[t]!;
  const sa = Math.sqrt(ab);
  const sb = Math.sqrt(1 - ab);
  return Float32Array.from(out, (v, i) => predictedEps('v', x[i]!, v, sa, sb, predictedX0('v', x[i]!, v, sa, sb)));
}

/** DDIM update in place from eps: x ← √ᾱ_prev·x0 + √(1−ᾱ_prev−σ²)·eps + σ·z, σ = η·√((1−ᾱ_prev)/(1−ᾱ))·√(1−ᾱ/ᾱ_prev), x0 clipped to [−1, 1]. */
export function ddimUpdate(schedule: Schedule, x: Float32Array, eps: Float32Array, t: number, tPrev: number | undefined, eta: number, normal: () => number): void {
  ddimStep('epsilon', x, eps, schedule.alphasCumprod[t]!, tPrev === undefined ? 1 : schedule.alphasCumprod[tPrev]!, eta, 1, normal);
}

/** DDPM update in place from eps: posterior mean from the clipped x0, plus √(β_t(1−ᾱ_{t−1})/(1−ᾱ_t))·z except at t = 0. */
export function ddpmUpdate(schedule: Schedule, x: Float32Array, eps: Float32Array, t: number, normal: () => number): void {
  ddpmStep('epsilon', x, eps, t, schedule.alphasCumprod[t]!, t === 0 ? 1 : schedule.alphasCumprod[t - 1]!, 'fixed_small', 1, normal);
}
