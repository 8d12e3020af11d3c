/**
 * Schedulers as diffusers defines them: a noise schedule (a `scheduler_config.json`, a sidecar or the
 * recipe's `diffusion { }` block, normalized into `NoiseScheduleConfig` by `scheduler-config.ts`) and a
 * sampling method with a step count give the timesteps visited, the input scaling and the update
 * (`Scheduler`): DDIM, DDPM and Euler discrete over betas, Euler over a rectified flow. The sampler driver only
 * talks to this interface, so every sampler serves calibration, `sample`, `eval` and the probe alike. The
 * arithmetic is `schedule-math.ts`'s (float64).
 */
import type { Prediction } from './interface.js';
import {
  betasOf,
  cumulativeAlphas,
  ddimStep,
  ddpmStep,
  dynamicShiftMu,
  flowSigmas,
  interpolate,
  predictedX0,
  ScheduleError,
  spacedTimesteps,
  trainingSigmas,
  type BetaSchedule,
  type DdpmVariance,
  type FlowShift,
  type TimestepSpacing,
} from './schedule-math.js';

/** diffusers' DDPM `variance_type` values. */
export type VarianceType = 'fixed_small' | 'fixed_small_log' | 'fixed_large' | 'fixed_large_log' | 'learned' | 'learned_range';

/**
 * A noise schedule, normalized from a diffusers scheduler config, a sidecar or a recipe. The sampler settings
 * (`clipSample` … `stepsOffset`) are absent when the source does not state them: the sampler then takes its own
 * diffusers class's default, as `SomeScheduler.from_config(config)` does.
 */
export interface NoiseScheduleConfig {
  /** The diffusers class it came from (`DDIMScheduler`, `FlowMatchEulerDiscreteScheduler`, …), or `recipe` / `sidecar`. */
  origin: string;
  /** Discrete (betas → ᾱ) or rectified flow (σ from 1 to 0, x_t = (1−σ)·x0 + σ·noise). */
  kind: 'discrete' | 'flow';
  numTrainTimesteps: number;
  /** Discrete: `linear`, `scaled_linear`, `squaredcos_cap_v2` (diffusers' names) with beta_start/beta_end. */
  betaSchedule?: BetaSchedule;
  betaStart?: number;
  betaEnd?: number;
  /** Discrete: the betas given outright (`trained_betas`), numTrainTimesteps of them; they override betaSchedule. */
  trainedBetas?: readonly number[];
  prediction: Prediction;
  /** Clip the x0 estimate to [−clipSampleRange, clipSampleRange] (DDPM/DDIM `clip_sample`). */
  clipSample?: boolean;
  clipSampleRange?: number;
  /** ᾱ after the last DDIM step: 1 (`set_alpha_to_one`) or ᾱ_0. */
  setAlphaToOne?: boolean;
  /** How inference timesteps are spaced (`leading`, `trailing`, `linspace`) and offset. */
  timestepSpacing?: TimestepSpacing;
  stepsOffset?: number;
  /** DDPM's noise variance (`variance_type`; absent: fixed_small). */
  varianceType?: VarianceType;
  /** Flow: σ' = shift·σ / (1 + (shift − 1)·σ) (1 for discrete schedules). */
  shift: number;
  /**
   * Flow with `use_dynamic_shifting`: the shift is e^μ (or μ, `linear`), μ linear in the image token count
   * (`SamplerSpec.imageSeqLen`) from baseShift at baseImageSeqLen to maxShift at maxImageSeqLen; `shift` is unused.
   */
  dynamicShift?: { baseShift: number; maxShift: number; baseImageSeqLen: number; maxImageSeqLen: number; timeShift: 'exponential' | 'linear' };
}

/** Which sampling method and how many steps. */
export interface SamplerSpec {
  kind: 'ddim' | 'ddpm' | 'euler' | 'flow-euler';
  steps: number;
  /** DDIM η (0 = deterministic). */
  eta?: number;
  /** Flow with dynamic shifting: the image token count the shift is computed for (Flux: (H/16)·(W/16) pixels). */
  imageSeqLen?: number;
}

/** A configured sampler over a schedule, shaped like a diffusers scheduler after `set_timesteps`. */
export interface Scheduler {
  readonly config: NoiseScheduleConfig;
  readonly spec: SamplerSpec;
  /** Timesteps visited, high to low, in scheduler units (the value a diffusers pipeline passes as `timestep`; Euler's and flow's are fractional). */
  readonly timesteps: readonly number[];
  /** Euler and flow: the σ of each step and the terminal 0 (timesteps.length + 1 values); absent for DDIM/DDPM. */
  readonly sigmas?: readonly number[];
  /** x_T = noise · initNoiseSigma. */
  readonly initNoiseSigma: number;
  /** The model input at step i (Euler divides by √(σ²+1)); returns `x` itself when unscaled. */
  scaleModelInput(x: Float32Array, stepIndex: number): Float32Array;
  /** Advances the batch `x` in place from step i, given the (guided) model output in the model's prediction space. */
  step(output: Float32Array, stepIndex: number, x: Float32Array, normal: () => number): void;
  /** Where step i lies on the training axis, as a fraction in [0, 1] (0 = clean): for timestep bins and per-timestep groups. */
  position(stepIndex: number): number;
}

/** The sampler settings a step reads. */
interface SamplerSettings {
  timestepSpacing: TimestepSpacing;
  stepsOffset: number;
  clipSample: boolean;
  clipSampleRange: number;
  setAlphaToOne: boolean;
}

/** Their diffusers defaults per sampler class (DDIMScheduler, DDPMScheduler, EulerDiscreteScheduler; Euler never clips, DDPM ends at ᾱ = 1). */
const SAMPLER_DEFAULTS: Record<'ddim' | 'ddpm' | 'euler', SamplerSettings> = {
  ddim: { timestepSpacing: 'leading', stepsOffset: 0, clipSample: true, clipSampleRange: 1, setAlphaToOne: true },
  ddpm: { timestepSpacing: 'leading', stepsOffset: 0, clipSample: true, clipSampleRange: 1, setAlphaToOne: true },
  euler: { timestepSpacing: 'linspace', stepsOffset: 0, clipSample: false, clipSampleRange: 1, setAlphaToOne: true },
};

/** The settings the config states, the sampler class's defaults for the rest (as diffusers' `from_config`). */
function samplerSettings(kind: keyof typeof SAMPLER_DEFAULTS, config: NoiseScheduleConfig): SamplerSettings {
  const d = SAMPLER_DEFAULTS[kind];
  return {
    timestepSpacing: config.timestepSpacing ?? d.timestepSpacing,
    stepsOffset: config.stepsOffset ?? d.stepsOffset,
    clipSample: config.clipSample ?? d.clipSample,
    clipSampleRange: config.clipSampleRange ?? d.clipSampleRange,
    setAlphaToOne: config.setAlphaToOne ?? d.setAlphaToOne,
  };
}

/** The predictions each kind of schedule's samplers take. */
const PREDICTIONS: Record<NoiseScheduleConfig['kind'], readonly Prediction[]> = { discrete: ['epsilon', 'v', 'sample'], flow: ['flow'] };

/**
 * A sampler over a noise schedule, as the diffusers class of `spec.kind` after `set_timesteps(spec.steps)`:
 * DDIM (`DDIMScheduler`), DDPM (`DDPMScheduler`, fixed variances), Euler (`EulerDiscreteScheduler`, no churn)
 * on a discrete schedule; flow-euler (`FlowMatchEulerDiscreteScheduler`) on a flow — and deterministic DDIM on a
 * flow too, as the same step (x_σ' = (1 − σ')·x0 + σ'·noise is both DDIM's update and the velocity's Euler
 * step), so a method recipe's `ddim(steps: N)` calibrates a flow model along its own sampler's path. A
 * mismatch, a timestep off the schedule or an option qcompile does not implement is a ScheduleError.
 */
export function makeScheduler(config: NoiseScheduleConfig, requested: SamplerSpec): Scheduler {
  const spec: SamplerSpec = config.kind === 'flow' && requested.kind === 'ddim' && !requested.eta ? { kind: 'flow-euler', steps: requested.steps } : requested;
  const origin = `the ${config.origin} schedule`;
  const wantKind = spec.kind === 'flow-euler' ? 'flow' : 'discrete';
  if (config.kind !== wantKind) throw new ScheduleError(`sampler ${spec.kind} needs a ${wantKind} schedule, but ${origin} is a ${config.kind} one: ${config.kind === 'flow' ? 'sample it with flow-euler (or deterministic ddim)' : 'use ddim, ddpm or euler'}`);
  if (!PREDICTIONS[config.kind].includes(config.prediction)) {
    throw new ScheduleError(`${origin} says prediction '${config.prediction}', which a ${config.kind} schedule's samplers do not take (they take ${PREDICTIONS[config.kind].join(', ')})`, undefined, 'prediction_type');
  }
  if (spec.kind === 'flow-euler') return flowEuler(config, spec);
  const settings = samplerSettings(spec.kind, config);
  const T = config.numTrainTimesteps;
  const betas = config.trainedBetas ? betasOf({ kind: 'trained', betas: config.trainedBetas }) : betasOf({ kind: config.betaSchedule ?? 'linear', T, betaStart: config.betaStart ?? 1e-4, betaEnd: config.betaEnd ?? 0.02 });
  if (betas.length !== T) throw new ScheduleError(`${origin} has ${betas.length} trained betas for ${T} training timesteps`, undefined, 'trained_betas');
  const ab = cumulativeAlphas(betas);
  const timesteps = spacedTimesteps(T, spec.steps, settings.timestepSpacing, settings.stepsOffset, spec.kind !== 'euler');
  const outside = timesteps.find((t) => !(t >= 0 && t <= T - 1));
  if (outside !== undefined) throw new ScheduleError(`${spec.kind}(steps: ${spec.steps}) with timestep_spacing '${settings.timestepSpacing}' and steps_offset ${settings.stepsOffset} visits timestep ${outside}, outside [0, ${T - 1}]`, undefined, 'steps_offset');
  const clipRange = settings.clipSample ? settings.clipSampleRange : undefined;
  const position = (i: number) => timesteps[i]! / T;
  const unscaled = { config, spec, timesteps, initNoiseSigma: 1, scaleModelInput: (x: Float32Array) => x, position };
  if (spec.kind === 'ddim') {
    const stride = Math.floor(T / spec.steps);
    const final = settings.setAlphaToOne ? 1 : ab[0]!;
    return {
      ...unscaled,
      step(output, i, x, normal) {
        const t = timesteps[i]!;
        // diffusers' DDIM steps back by ⌊T/S⌋ whatever the spacing; before t = 0 it takes the final ᾱ.
        const prev = t - stride;
        ddimStep(config.prediction, x, output, ab[t]!, prev >= 0 ? ab[prev]! : final, spec.eta ?? 0, clipRange, normal);
      },
    };
  }
  if (spec.kind === 'ddpm') {
    const variance = ddpmVariance(config.varianceType ?? 'fixed_small', origin);
    return {
      ...unscaled,
      step(output, i, x, normal) {
        const t = timesteps[i]!;
        const prev = timesteps[i + 1];
        ddpmStep(config.prediction, x, output, t, ab[t]!, prev === undefined ? 1 : ab[prev]!, variance, clipRange, normal);
      },
    };
  }
  const full = trainingSigmas(ab);
  const sigmas = [...timesteps.map((t) => interpolate(full, t)), 0];
  const sigmaMax = Math.max(...sigmas);
  return {
    config,
    spec,
    timesteps,
    sigmas,
    initNoiseSigma: settings.timestepSpacing === 'leading' ? Math.sqrt(sigmaMax * sigmaMax + 1) : sigmaMax,
    scaleModelInput(x, i) {
      const scale = Math.sqrt(sigmas[i]! ** 2 + 1);
      return Float32Array.from(x, (v) => v / scale);
    },
    step(output, i, x) {
      const sigma = sigmas[i]!;
      const dt = sigmas[i + 1]! - sigma;
      for (let j = 0; j < x.length; j++) {
        const xj = x[j]!;
        // The Euler state is x0 + σ·eps: the ODE derivative is (x − x0)/σ.
        x[j] = xj + ((xj - predictedX0(config.prediction, xj, output[j]!, 1, sigma)) / sigma) * dt;
      }
    },
    position,
  };
}

/** Euler over a rectified flow: x ← x + (σ_{i+1} − σ_i)·v, v the predicted velocity noise − x0. */
function flowEuler(config: NoiseScheduleConfig, spec: SamplerSpec): Scheduler {
  const T = config.numTrainTimesteps;
  const sigmas = flowSigmas(T, spec.steps, flowShift(config, spec));
  const timesteps = sigmas.slice(0, -1).map((s) => s * T);
  return {
    config,
    spec,
    timesteps,
    sigmas,
    initNoiseSigma: 1,
    scaleModelInput: (x) => x,
    step(output, i, x) {
      const dt = sigmas[i + 1]! - sigmas[i]!;
      for (let j = 0; j < x.length; j++) x[j] = x[j]! + dt * output[j]!;
    },
    position: (i) => sigmas[i]!,
  };
}

/** The shift of a flow schedule: static, or from the image token count under dynamic shifting. */
function flowShift(config: NoiseScheduleConfig, spec: SamplerSpec): FlowShift {
  const d = config.dynamicShift;
  if (!d) return { kind: 'static', shift: config.shift };
  const n = spec.imageSeqLen;
  if (n === undefined || !Number.isInteger(n) || n < 1) {
    throw new ScheduleError(`the ${config.origin} schedule shifts dynamically (use_dynamic_shifting), by the image size, which is not known here: give the recipe 'schedule flow(shift: S)' to fix the shift`, undefined, 'use_dynamic_shifting');
  }
  return { kind: d.timeShift, mu: dynamicShiftMu(n, d.baseImageSeqLen, d.maxImageSeqLen, d.baseShift, d.maxShift) };
}

/** The fixed variance a DDPM `variance_type` means; the others are refused by name. */
function ddpmVariance(type: VarianceType, origin: string): DdpmVariance {
  if (type === 'fixed_small' || type === 'fixed_small_log') return 'fixed_small';
  if (type === 'fixed_large') return 'fixed_large';
  const why = type === 'fixed_large_log' ? "diffusers' own step takes the root of a logarithm for it" : "it reads the model's predicted variance channels";
  throw new ScheduleError(`${origin} has variance_type '${type}', which qcompile's DDPM does not implement (${why}): sample with ddim, or use fixed_small or fixed_large`, undefined, 'variance_type');
}
