/**
 * The recipe object: what a `.qrecipe` (or its JSON form) means, fully normalized — every field present, every
 * default filled in by `withDefaults` (defaults.ts) — so downstream code never guesses. Plain JSON data.
 */
import type { Span } from '../diagnostics.js';
import type { ActivationQuantSpec, WeightQuantSpec } from '../quant/plan.js';

/** Runtimes a recipe can target. */
export type Target = 'cpu' | 'webgpu' | 'cuda' | 'tensorrt';

/**
 * Where the diffusion schedule comes from: the model's files (`sidecar`: its schedule.json, else its pipeline
 * folder's scheduler config; `config`: the pipeline folder's scheduler/scheduler_config.json), or written out.
 */
export type ScheduleSpec =
  | { kind: 'sidecar' }
  | { kind: 'config' }
  | { kind: 'linear' | 'scaled-linear'; betaStart: number; betaEnd: number; steps: number }
  | { kind: 'cosine'; steps: number }
  /** Rectified flow over `steps` training timesteps, σ shifted by `shift` (SD3: 3). */
  | { kind: 'flow'; shift: number; steps: number };

/** The sampler that generates calibration trajectories (and evaluation samples). */
export type SamplerSpec = { kind: 'ddim'; steps: number; eta: number } | { kind: 'ddpm' | 'euler' | 'flow-euler'; steps: number };

/** How calibration timesteps are drawn from the FP sampler's trajectories. */
export type TimestepStrategy =
  | { kind: 'uniform' }
  | { kind: 'evenly-spaced'; count: number }
  | { kind: 'random-distinct' }
  /** PTQ4DM NDTC: t ~ Normal(mean·T, std·T), clamped to [0, T−1]. */
  | { kind: 'ndtc'; mean: number; std: number };

/** One layer selector, as written. */
export type Selector =
  | { kind: 'all' }
  | { kind: 'role'; role: string }
  | { kind: 'op'; op: string }
  | { kind: 'name'; glob: string }
  | { kind: 'regex'; pattern: string }
  | { kind: 'first' }
  | { kind: 'last' };

/** Where in the recipe text something was written (absent for JSON recipes): the one span type of diagnostics. */
export type SourceRef = Span;

/** `quantize SELECTORS [except SELECTORS] { weight … input … }` */
export interface QuantizeRule {
  select: Selector[];
  except: Selector[];
  weight?: WeightQuantSpec;
  input?: ActivationQuantSpec;
  source?: SourceRef;
}

/** `keep SELECTORS [except SELECTORS]`: layers left in float. */
export interface KeepRule {
  select: Selector[];
  except: Selector[];
  source?: SourceRef;
}

/** `transform smoothquant(alpha: 0.5) on …` / `transform dilate on …`, applied in order. */
export type Transform = ({ kind: 'smoothquant'; alpha: number } | { kind: 'dilate'; maxScale: number }) & {
  select: Selector[];
  except: Selector[];
  source?: SourceRef;
};

/** Settings of the group-size search for `group auto(…)`. */
export interface SearchSettings {
  method: 'evolution' | 'greedy';
  population: number;
  topK: number;
  mutations: number;
  crossovers: number;
  mutationRate: number;
  epochs: number;
  fitness: 'eps-error' | 'layer-error';
  judge: 'images' | 'held-out';
  judgeSamples: number;
}

/** A complete, normalized recipe. */
export interface Recipe {
  name: string;
  target: Target;
  /** Precision of what stays unquantized. */
  precision: 'fp32' | 'fp16';
  /** With `precision fp16`: the op types and regions (`decomposed-norm`, `embed.time`) left in float32, and where the statement was written. */
  float16: { keep: string[]; source?: SourceRef };
  seed: number;
  diffusion: {
    schedule: ScheduleSpec;
    /** What the model output is: the noise, v, the flow velocity (noise − x0) or x0 (`sample`). */
    /** `model`: what the model's sidecar or scheduler config says (epsilon when neither says). */
    prediction: 'model' | 'epsilon' | 'v' | 'flow' | 'sample';
    sampler: SamplerSpec;
    guidance: number;
    /** Class count of a class-conditional model (0: take it from the model / unconditional). */
    classes: number;
    /** Height and width of the latent input, for models whose H/W are dynamic (0 × 0: the model's or its config's). */
    resolution: { height: number; width: number };
    /** The model is fed scheduler timestep × timestepScale (1; Flux-style models 0.001). */
    timestepScale: number;
  };
  calibrate: {
    samples: number;
    batch: number;
    timesteps: TimestepStrategy;
    /** Range method for activations (weights have their own in each rule). */
    range: ActivationQuantSpec['range'];
    /** EMA momentum across batches (0: plain running min/max). */
    ema: number;
    /** Calibration-set cache file (empty: no cache). */
    cache: string;
    /** Prompts to calibrate a text-conditioned model on, one a line, relative to the recipe (empty: the model folder's). */
    prompts: string;
    /** Folder of precomputed conditioning (`prompt_NNN.npy`, `uncond.npy`), relative to the recipe (empty: none). */
    conditioning: string;
  };
  rules: QuantizeRule[];
  keep: KeepRule[];
  transforms: Transform[];
  search: SearchSettings;
}

/** The layer facts selection needs (a subset of quant/layers' Layer). */
export interface SelectableLayer {
  name: string;
  role: string;
  opType: string;
  index: number;
}

/** What the recipe decided for one layer: the applied rule's weight/input settings, or `keep` (stays float); `rule` indexes `recipe.rules` or `recipe.keep` by action. */
export type ResolvedLayerPlan =
  | { action: 'quantize'; weight?: WeightQuantSpec; input?: ActivationQuantSpec; rule: number; source?: SourceRef }
  | { action: 'keep'; rule: number; source?: SourceRef };

/** What `resolveSelection` answers: a plan per selected layer (layers no rule selects are absent and stay float). */
export interface Selection {
  assignments: Map<string, ResolvedLayerPlan>;
}
