/**
 * Where a `NoiseScheduleConfig` comes from: a diffusers `scheduler_config.json` (`parseSchedulerConfig`, with
 * each class's documented keys and defaults, validated as strictly as the sidecar), the older `schedule.json`
 * sidecar (`noiseScheduleFromSidecar`) or the recipe's `diffusion { schedule … prediction … }`
 * (`noiseScheduleFromRecipe`). Options that change the math and that qcompile does not implement are refused
 * by name rather than ignored.
 */
import { readFileSync } from 'node:fs';
import type { Prediction } from './interface.js';
import { BETA_SCHEDULES, betasOf, checkTimesteps, MAX_TIMESTEPS, ScheduleError, TIMESTEP_SPACINGS, type BetaSchedule } from './schedule-math.js';
import type { NoiseScheduleConfig, VarianceType } from './scheduler.js';
import { DIFFUSERS_BETA_SCHEDULES, type Sidecar } from './sidecar.js';

/** The discrete scheduler classes whose noise schedule is read (the first three are also samplers qcompile runs). */
const DISCRETE_CLASSES = ['DDPMScheduler', 'DDIMScheduler', 'EulerDiscreteScheduler', 'PNDMScheduler', 'LMSDiscreteScheduler', 'DPMSolverMultistepScheduler', 'EulerAncestralDiscreteScheduler'];
const FLOW_CLASS = 'FlowMatchEulerDiscreteScheduler';
/** Every class `parseSchedulerConfig` knows. */
export const SCHEDULER_CLASSES: readonly string[] = [...DISCRETE_CLASSES, FLOW_CLASS];

const PREDICTION_TYPES: Record<string, Prediction> = { epsilon: 'epsilon', v_prediction: 'v', sample: 'sample' };
const VARIANCE_TYPES: readonly VarianceType[] = ['fixed_small', 'fixed_small_log', 'fixed_large', 'fixed_large_log', 'learned', 'learned_range'];

/**
 * Options that change the math, qcompile does not implement, and so refuses when set off their default —
 * by the classes whose own sampler they configure (the noise schedule of the other classes is read alone).
 */
const UNIMPLEMENTED: { key: string; unset: (v: unknown) => boolean; classes: readonly string[]; what: string }[] = [
  { key: 'rescale_betas_zero_snr', unset: (v) => v === false, classes: DISCRETE_CLASSES, what: 'zero-terminal-SNR rescaling of the betas' },
  { key: 'thresholding', unset: (v) => v === false, classes: ['DDPMScheduler', 'DDIMScheduler'], what: 'dynamic thresholding of x0' },
  ...['use_karras_sigmas', 'use_exponential_sigmas', 'use_beta_sigmas'].map((key) => ({ key, unset: (v: unknown) => v === false || v === null, classes: ['EulerDiscreteScheduler', FLOW_CLASS], what: 'a respaced σ grid' })),
  { key: 'interpolation_type', unset: (v) => v === 'linear', classes: ['EulerDiscreteScheduler'], what: 'log-linear σ interpolation' },
  { key: 'timestep_type', unset: (v) => v === 'discrete', classes: ['EulerDiscreteScheduler'], what: 'continuous (EDM) timesteps' },
  { key: 'final_sigmas_type', unset: (v) => v === 'zero', classes: ['EulerDiscreteScheduler'], what: 'a final σ other than 0' },
  { key: 'invert_sigmas', unset: (v) => v === false, classes: [FLOW_CLASS], what: 'inverted σ' },
  { key: 'shift_terminal', unset: (v) => v === null || v === 0, classes: [FLOW_CLASS], what: 'σ stretched to a terminal value' },
  { key: 'stochastic_sampling', unset: (v) => v === false, classes: [FLOW_CLASS], what: 'stochastic flow sampling' },
];

/** Reads and parses a scheduler config file (`parseSchedulerConfig`); a missing or malformed file is a ScheduleError. */
export function readSchedulerConfig(path: string): NoiseScheduleConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new ScheduleError(`cannot read the scheduler config: ${(error as Error).message}`, path);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new ScheduleError(`the scheduler config is not JSON: ${(error as Error).message}`, path);
  }
  return parseSchedulerConfig(value, path);
}

/**
 * A diffusers scheduler config (`scheduler_config.json`) as a NoiseScheduleConfig. Discrete classes: the
 * betas (`num_train_timesteps`, `beta_start`, `beta_end`, `beta_schedule`, `trained_betas`),
 * `prediction_type`, and the sampler settings they state (`clip_sample`, `clip_sample_range`,
 * `set_alpha_to_one`, `timestep_spacing`, `steps_offset`, `variance_type`); `FlowMatchEulerDiscreteScheduler`:
 * `num_train_timesteps`, `shift`, `use_dynamic_shifting` with `base_shift`, `max_shift`, `base_image_seq_len`,
 * `max_image_seq_len`, `time_shift_type`. Absent keys take diffusers' defaults; unknown keys are ignored; a
 * known key of the wrong type or out of range, an unknown class or an unimplemented option is a ScheduleError.
 */
export function parseSchedulerConfig(json: unknown, file?: string): NoiseScheduleConfig {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new ScheduleError('a scheduler config must be a JSON object', file);
  const raw = json as Record<string, unknown>;
  const fail = (field: string, message: string): never => {
    throw new ScheduleError(`'${field}' ${message}`, file, field);
  };
  const origin = raw._class_name;
  if (typeof origin !== 'string' || !SCHEDULER_CLASSES.includes(origin)) {
    fail('_class_name', `${origin === undefined ? 'is missing' : `is ${JSON.stringify(origin)}`}: qcompile reads the diffusers schedulers ${SCHEDULER_CLASSES.join(', ')}`);
  }
  const has = (key: string) => raw[key] !== undefined && raw[key] !== null;
  const number = (key: string, fallback: number, ok: (n: number) => boolean, bounds: string): number => {
    if (!has(key)) return fallback;
    const n = raw[key];
    return typeof n === 'number' && Number.isFinite(n) && ok(n) ? n : fail(key, `must be ${bounds}, got ${JSON.stringify(n)}`);
  };
  const integer = (key: string, fallback: number, min: number, max: number) => number(key, fallback, (n) => Number.isInteger(n) && n >= min && n <= max, `an integer in [${min}, ${max}]`);
  const flag = (key: string): boolean | undefined => (!has(key) ? undefined : typeof raw[key] === 'boolean' ? (raw[key] as boolean) : fail(key, `must be true or false, got ${JSON.stringify(raw[key])}`));
  const word = <W extends string>(key: string, words: readonly W[]): W | undefined => {
    if (!has(key)) return undefined;
    return words.includes(raw[key] as W) ? (raw[key] as W) : fail(key, `must be one of ${words.join(', ')}, got ${JSON.stringify(raw[key])}`);
  };
  for (const option of UNIMPLEMENTED) {
    if (option.classes.includes(origin as string) && has(option.key) && !option.unset(raw[option.key])) {
      fail(option.key, `is ${JSON.stringify(raw[option.key])}: ${option.what}, which qcompile does not implement`);
    }
  }
  const numTrainTimesteps = integer('num_train_timesteps', 1000, 1, MAX_TIMESTEPS);
  if (origin === FLOW_CLASS) return flowConfig(numTrainTimesteps, { number, integer, flag, word, fail });

  const betaSchedule = word<BetaSchedule>('beta_schedule', BETA_SCHEDULES) ?? 'linear';
  const betaStart = number('beta_start', 1e-4, (n) => n > 0 && n < 1, 'a number in (0, 1)');
  const betaEnd = number('beta_end', 0.02, (n) => n > 0 && n < 1, 'a number in (0, 1)');
  let trainedBetas: number[] | undefined;
  if (has('trained_betas')) {
    const betas = raw.trained_betas;
    if (!Array.isArray(betas) || betas.some((b) => typeof b !== 'number')) fail('trained_betas', 'must be a list of numbers or null');
    if ((betas as number[]).length !== numTrainTimesteps) fail('trained_betas', `has ${(betas as number[]).length} betas, but num_train_timesteps is ${numTrainTimesteps}`);
    trainedBetas = betas as number[];
  }
  // The schedule must be computable: every beta in (0, 1).
  betasOf(trainedBetas ? { kind: 'trained', betas: trainedBetas } : { kind: betaSchedule, T: numTrainTimesteps, betaStart, betaEnd }, file);
  const type = raw.prediction_type ?? 'epsilon';
  const prediction = typeof type === 'string' ? PREDICTION_TYPES[type] : undefined;
  if (!prediction) fail('prediction_type', `must be one of ${Object.keys(PREDICTION_TYPES).join(', ')}, got ${JSON.stringify(type)}`);
  const config: NoiseScheduleConfig = { origin: origin as string, kind: 'discrete', numTrainTimesteps, betaSchedule, betaStart, betaEnd, prediction: prediction!, shift: 1 };
  if (trainedBetas) config.trainedBetas = trainedBetas;
  const clipSample = flag('clip_sample');
  if (clipSample !== undefined) config.clipSample = clipSample;
  if (has('clip_sample_range')) config.clipSampleRange = number('clip_sample_range', 1, (n) => n > 0, 'a positive number');
  const setAlphaToOne = flag('set_alpha_to_one');
  if (setAlphaToOne !== undefined) config.setAlphaToOne = setAlphaToOne;
  const spacing = word('timestep_spacing', TIMESTEP_SPACINGS);
  if (spacing) config.timestepSpacing = spacing;
  if (has('steps_offset')) config.stepsOffset = integer('steps_offset', 0, 0, numTrainTimesteps - 1);
  const variance = word('variance_type', VARIANCE_TYPES);
  if (variance) config.varianceType = variance;
  return config;
}

/** The readers `parseSchedulerConfig` shares with `flowConfig`. */
interface Readers {
  number(key: string, fallback: number, ok: (n: number) => boolean, bounds: string): number;
  integer(key: string, fallback: number, min: number, max: number): number;
  flag(key: string): boolean | undefined;
  word<W extends string>(key: string, words: readonly W[]): W | undefined;
  fail(field: string, message: string): never;
}

/** FlowMatchEulerDiscreteScheduler's keys: a static `shift`, or dynamic shifting's μ range over image token counts. */
function flowConfig(numTrainTimesteps: number, read: Readers): NoiseScheduleConfig {
  const shift = read.number('shift', 1, (n) => n > 0 && n <= 1000, 'a number in (0, 1000]');
  const config: NoiseScheduleConfig = { origin: FLOW_CLASS, kind: 'flow', numTrainTimesteps, prediction: 'flow', shift };
  if (read.flag('use_dynamic_shifting')) {
    const finite = (n: number) => Math.abs(n) <= 100;
    const baseImageSeqLen = read.integer('base_image_seq_len', 256, 1, 2 ** 31 - 1);
    const maxImageSeqLen = read.integer('max_image_seq_len', 4096, 1, 2 ** 31 - 1);
    if (maxImageSeqLen === baseImageSeqLen) read.fail('max_image_seq_len', `equals base_image_seq_len (${baseImageSeqLen}): the shift would divide by zero`);
    config.dynamicShift = {
      baseShift: read.number('base_shift', 0.5, finite, 'a number in [-100, 100]'),
      maxShift: read.number('max_shift', 1.15, finite, 'a number in [-100, 100]'),
      baseImageSeqLen,
      maxImageSeqLen,
      timeShift: read.word('time_shift_type', ['exponential', 'linear'] as const) ?? 'exponential',
    };
  }
  return config;
}

/**
 * The schedule a sidecar (`readSidecar` / `parseSidecar`) describes, with the fixture's sampler semantics
 * stated: x0 clipped to [−1, 1], ᾱ = 1 after t = 0, `leading` spacing without offset.
 */
export function noiseScheduleFromSidecar(sidecar: Sidecar): NoiseScheduleConfig {
  return {
    origin: 'sidecar',
    kind: 'discrete',
    numTrainTimesteps: sidecar.T,
    betaSchedule: DIFFUSERS_BETA_SCHEDULES[sidecar.beta_schedule],
    ...(sidecar.beta_start !== undefined ? { betaStart: sidecar.beta_start } : {}),
    ...(sidecar.beta_end !== undefined ? { betaEnd: sidecar.beta_end } : {}),
    prediction: sidecar.prediction_type,
    clipSample: true,
    clipSampleRange: 1,
    setAlphaToOne: true,
    timestepSpacing: 'leading',
    stepsOffset: 0,
    shift: 1,
  };
}

/** The recipe's `diffusion { schedule … prediction … }`, as `recipe.diffusion` holds it (recipe/types.ts). */
export interface RecipeSchedule {
  schedule:
    | { kind: 'sidecar' }
    | { kind: 'config' }
    | { kind: 'linear' | 'scaled-linear'; betaStart: number; betaEnd: number; steps: number }
    | { kind: 'cosine'; steps: number }
    | { kind: 'flow'; shift: number; steps: number };
  /** `model`: the model's own (its sidecar or scheduler config). */
  prediction: Prediction | 'model';
}

/**
 * The schedule a recipe writes out (`linear`, `scaled-linear`, `cosine`, `flow`), or undefined when it defers to
 * the model's files (`sidecar`, `config`). The sampler settings are left to each sampler's diffusers defaults.
 */
export function noiseScheduleFromRecipe(diffusion: RecipeSchedule): NoiseScheduleConfig | undefined {
  const s = diffusion.schedule;
  if (s.kind === 'sidecar' || s.kind === 'config') return undefined;
  const prediction = diffusion.prediction === 'model' ? (s.kind === 'flow' ? 'flow' : 'epsilon') : diffusion.prediction;
  const base = { origin: 'recipe', numTrainTimesteps: s.steps, prediction };
  if (s.kind === 'flow') {
    checkTimesteps(s.steps, undefined, 'steps');
    return { ...base, kind: 'flow', shift: s.shift };
  }
  const kind = DIFFUSERS_BETA_SCHEDULES[s.kind];
  const betas = s.kind === 'cosine' ? {} : { betaStart: s.betaStart, betaEnd: s.betaEnd };
  betasOf({ kind, T: s.steps, betaStart: 1e-4, betaEnd: 0.02, ...betas });
  return { ...base, kind: 'discrete', betaSchedule: kind, ...betas, shift: 1 };
}
