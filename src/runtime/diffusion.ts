/**
 * Diffusion schedules and the per-step sampler math (DDIM, DDPM, v → eps) in float64 schedule arithmetic;
 * samplers.ts drives them. DDIM matches the fixture's definition: timesteps (S−1−i)·⌊T/S⌋, x0 clipped to
 * [−1, 1], ᾱ_prev = 1 after t = 0.
 */
import { readFileSync } from 'node:fs';

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

/** The largest T a schedule may have (ᾱ is T float64s; real models use 1000). */
export const MAX_TIMESTEPS = 100_000;

/** A schedule or sidecar that cannot drive a sampler: `file` and `field` say where, when known. */
export class ScheduleError extends Error {
  constructor(
    message: string,
    readonly file?: string,
    readonly field?: string,
  ) {
    super(file ? `${file}: ${message}` : message);
    this.name = 'ScheduleError';
  }
}

/**
 * Beta schedules by kind. Every schedule, from a recipe or a sidecar, is checked here: T an integer in
 * [1, MAX_TIMESTEPS], every beta in (0, 1) — so ᾱ stays in (0, 1] and every sampler coefficient is finite.
 */
export function makeSchedule(kind: BetaScheduleKind, T: number, betaStart = 1e-4, betaEnd = 0.02, prediction: Prediction = 'epsilon'): Schedule {
  if (!Number.isInteger(T) || T < 1 || T > MAX_TIMESTEPS) throw new ScheduleError(`T must be an integer in [1, ${MAX_TIMESTEPS}], got ${T}`, undefined, 'T');
  if (kind !== 'cosine') {
    for (const [field, beta] of [['beta_start', betaStart], ['beta_end', betaEnd]] as const) {
      if (!(beta > 0 && beta < 1)) throw new ScheduleError(`${field} must be a number in (0, 1), got ${beta}`, undefined, field);
    }
  }
  const betas = new Float64Array(T);
  for (let t = 0; t < T; t++) {
    if (kind === 'linear') betas[t] = betaStart + ((betaEnd - betaStart) * t) / Math.max(T - 1, 1);
    else if (kind === 'scaled-linear') betas[t] = (Math.sqrt(betaStart) + ((Math.sqrt(betaEnd) - Math.sqrt(betaStart)) * t) / Math.max(T - 1, 1)) ** 2;
    else if (kind === 'cosine') {
      const f = (s: number) => Math.cos(((s / T + 0.008) / 1.008) * (Math.PI / 2)) ** 2;
      betas[t] = Math.min(1 - f(t + 1) / f(t), 0.999);
    } else throw new ScheduleError(`unknown beta schedule '${String(kind)}' (known: ${BETA_SCHEDULES.join(', ')})`, undefined, 'beta_schedule');
    // Interpolation between two betas in (0, 1) stays inside; this guards the cosine clip and any new kind.
    if (!(betas[t]! > 0 && betas[t]! < 1)) throw new ScheduleError(`beta at t = ${t} is ${betas[t]}, outside (0, 1)`);
  }
  const alphasCumprod = new Float64Array(T);
  let product = 1;
  for (let t = 0; t < T; t++) alphasCumprod[t] = product *= 1 - betas[t]!;
  return { T, alphasCumprod, prediction };
}

const BETA_SCHEDULES: readonly BetaScheduleKind[] = ['linear', 'scaled-linear', 'cosine'];

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
