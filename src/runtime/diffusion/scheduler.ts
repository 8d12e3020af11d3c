/**
 * Schedulers as diffusers defines them: a noise schedule (a `scheduler_config.json`, a sidecar or the
 * recipe's `diffusion { }` block, normalized into `NoiseScheduleConfig`) and a sampling method with a step
 * count give the timesteps visited, the input scaling and the update (`Scheduler`). The sampler driver
 * (`sampler.ts`) only talks to this interface, so every sampler serves calibration, `sample`, `eval` and the
 * probe alike.
 *
 * CONTRACT (provisional body): the types are the agreed interface; `makeScheduler` currently covers DDIM
 * and DDPM over the schedule math of `../diffusion.ts` and is to be replaced by the full set.
 */
import { ddimTimesteps, ddimUpdate, ddpmUpdate, makeSchedule, toEps, type Schedule } from '../diffusion.js';
import type { Prediction } from './interface.js';

/** A noise schedule, normalized from a diffusers scheduler config, a sidecar or a recipe. */
export interface NoiseScheduleConfig {
  /** The diffusers class it came from (`DDIMScheduler`, `FlowMatchEulerDiscreteScheduler`, …), or `recipe` / `sidecar`. */
  origin: string;
  /** Discrete (betas → ᾱ) or rectified flow (σ from 1 to 0, x_t = (1−σ)·x0 + σ·noise). */
  kind: 'discrete' | 'flow';
  numTrainTimesteps: number;
  /** Discrete: `linear`, `scaled_linear`, `squaredcos_cap_v2` (diffusers' names) with beta_start/beta_end. */
  betaSchedule?: 'linear' | 'scaled_linear' | 'squaredcos_cap_v2';
  betaStart?: number;
  betaEnd?: number;
  prediction: Prediction;
  /** Clip the x0 estimate to [−clipSampleRange, clipSampleRange] (DDPM/DDIM `clip_sample`). */
  clipSample: boolean;
  clipSampleRange: number;
  /** ᾱ after the last DDIM step: 1 (`set_alpha_to_one`) or ᾱ_0. */
  setAlphaToOne: boolean;
  /** How inference timesteps are spaced (`leading`, `trailing`, `linspace`) and offset. */
  timestepSpacing: 'leading' | 'trailing' | 'linspace';
  stepsOffset: number;
  /** Flow: σ' = shift·σ / (1 + (shift − 1)·σ). */
  shift: number;
}

/** Which sampling method and how many steps. */
export interface SamplerSpec {
  kind: 'ddim' | 'ddpm' | 'euler' | 'flow-euler';
  steps: number;
  /** DDIM η (0 = deterministic). */
  eta?: number;
}

/** A configured sampler over a schedule, shaped like a diffusers scheduler after `set_timesteps`. */
export interface Scheduler {
  readonly config: NoiseScheduleConfig;
  readonly spec: SamplerSpec;
  /** Timesteps visited, high to low, in scheduler units (the value a diffusers pipeline passes as `timestep`). */
  readonly timesteps: readonly number[];
  /** x_T = noise · initNoiseSigma. */
  readonly initNoiseSigma: number;
  /** The model input at step i (Euler divides by √(σ²+1)); returns `x` itself when unscaled. */
  scaleModelInput(x: Float32Array, stepIndex: number): Float32Array;
  /** Advances the batch `x` in place from step i, given the (guided) model output in the model's prediction space. */
  step(output: Float32Array, stepIndex: number, x: Float32Array, normal: () => number): void;
  /** Where step i lies on the training axis, as a fraction in [0, 1] (0 = clean): for timestep bins and per-timestep groups. */
  position(stepIndex: number): number;
}

/** Provisional: DDIM/DDPM over a discrete schedule (the fixture's definitions). */
export function makeScheduler(config: NoiseScheduleConfig, spec: SamplerSpec): Scheduler {
  if (config.kind !== 'discrete' || (spec.kind !== 'ddim' && spec.kind !== 'ddpm')) throw new Error(`sampler ${spec.kind} on a ${config.kind} schedule is not implemented yet`);
  const kind = config.betaSchedule === 'scaled_linear' ? 'scaled-linear' : config.betaSchedule === 'squaredcos_cap_v2' ? 'cosine' : 'linear';
  const schedule: Schedule = makeSchedule(kind, config.numTrainTimesteps, config.betaStart, config.betaEnd, config.prediction === 'v' ? 'v' : 'epsilon');
  const T = config.numTrainTimesteps;
  const timesteps = spec.kind === 'ddpm' ? Array.from({ length: T }, (_, i) => T - 1 - i) : ddimTimesteps(T, spec.steps);
  return {
    config,
    spec,
    timesteps,
    initNoiseSigma: 1,
    scaleModelInput: (x) => x,
    step(output, stepIndex, x, normal) {
      const t = timesteps[stepIndex]!;
      const eps = toEps(schedule, x, output, t);
      if (spec.kind === 'ddim') ddimUpdate(schedule, x, eps, t, timesteps[stepIndex + 1], spec.eta ?? 0, normal);
      else ddpmUpdate(schedule, x, eps, t, normal);
    },
    position: (stepIndex) => timesteps[stepIndex]! / T,
  };
}
