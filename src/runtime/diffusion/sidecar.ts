/**
 * The `schedule.json` sidecar a model may ship next to it (as the dit-digits and sd-digits fixtures do): the
 * noise schedule in qcompile's spelling (T, beta schedule and betas, prediction type) and interface hints
 * (inputs, outputs, class count, image size). One validator (`parseSidecar`) for compile, `sample` and `eval`,
 * so a bad sidecar is refused the same way everywhere; `noiseScheduleFromSidecar` (scheduler-config.ts) turns
 * it into the schedule the samplers run.
 */
import { readFileSync } from 'node:fs';
import { MAX_TIMESTEPS, ScheduleError } from './schedule-math.js';

/** What a sidecar's model predicts: the noise, or v = √ᾱ·eps − √(1−ᾱ)·x0 (diffusers' `v_prediction`). */
export type SidecarPrediction = 'epsilon' | 'v';

/** A sidecar's beta schedule names. */
export type BetaScheduleKind = 'linear' | 'scaled-linear' | 'cosine';

/** qcompile's beta schedule names and diffusers' (`beta_schedule`). */
export const DIFFUSERS_BETA_SCHEDULES = { linear: 'linear', 'scaled-linear': 'scaled_linear', cosine: 'squaredcos_cap_v2' } as const satisfies Record<BetaScheduleKind, string>;

const BETA_SCHEDULES = Object.keys(DIFFUSERS_BETA_SCHEDULES) as BetaScheduleKind[];

/** Sidecar `prediction_type` spellings and what they mean; `sample` (x0 prediction) is refused by name. */
const PREDICTION_TYPES: Record<string, SidecarPrediction> = { epsilon: 'epsilon', v_prediction: 'v', v: 'v' };

/** The model's sidecar (`schedule.json` next to it, as the fixture ships), validated by `parseSidecar`. */
export interface Sidecar {
  T: number;
  beta_schedule: BetaScheduleKind;
  /** Required for the linear kinds; cosine does not use them. */
  beta_start?: number;
  beta_end?: number;
  /** Normalized: `v_prediction` reads as `v`. */
  prediction_type: SidecarPrediction;
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
 * numbers) — so the schedule it describes is computable. Unknown fields are kept as they are.
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
 * A recipe's `prediction` must agree with the sidecar's `prediction_type`: a conflict is a ScheduleError (the
 * recipe always has one — `epsilon` unless written — so it is never silently dropped, and a v model's recipe
 * says `prediction v`).
 */
export function checkRecipePrediction(sidecar: Sidecar, recipe: { prediction: SidecarPrediction; file?: string }): void {
  if (recipe.prediction === sidecar.prediction_type) return;
  throw new ScheduleError(
    `the recipe${recipe.file ? ` ${recipe.file}` : ''} says 'prediction ${recipe.prediction}' but the model's schedule.json says prediction_type '${sidecar.prediction_type === 'v' ? 'v_prediction' : 'epsilon'}': make them agree (the recipe's prediction is 'epsilon' when unwritten)`,
    undefined,
    'prediction_type',
  );
}
