/**
 * The diffusion interface of a model: which graph input is the latent, which the timestep (and how a
 * scheduler timestep is encoded for it), which inputs carry conditioning, and what the output predicts.
 * Found once per run (`findDiffusionInterface`), from, in this order: the recipe's `diffusion { }` block, a
 * `schedule.json` sidecar, the diffusers/optimum pipeline-folder conventions, then the graph itself and the
 * input names optimum uses. Calibration, `sample`, `eval` and the search's probe all drive the model through it.
 */
import type { DataType } from '../../ir/dtype.js';

/** What the model output predicts: the noise, v = √ᾱ·eps − √(1−ᾱ)·x0, the flow velocity noise − x0, or x0. */
export type Prediction = 'epsilon' | 'v' | 'flow' | 'sample';

/** Where a fact about the interface came from, highest precedence first. */
export type InterfaceSource = 'recipe' | 'command-line' | 'sidecar' | 'pipeline-folder' | 'graph';

/** The input the sampler denoises. */
export interface LatentInput {
  name: string;
  /** Per-sample shape [C, H, W], resolved (dynamic H/W from the recipe, `--resolution` or the config's `sample_size`). */
  shape: number[];
}

/** The timestep input. */
export interface TimestepInput {
  name: string;
  elemType: DataType;
  /** 1: one value per sample, [B]; 0: one scalar for the whole batch (optimum ≥ 1.24 exports). */
  rank: 0 | 1;
  /** The model is fed (scheduler timestep) × scale: 1 for DDPM indices and SD3's σ·1000, 1/1000 for Flux's σ. */
  scale: number;
}

/** What a conditioning input carries. */
export type ConditioningKind = 'class-label' | 'text-states' | 'pooled-text' | 'time-ids' | 'guidance' | 'text-mask';

/** One conditioning input of the model. */
export interface ConditioningInput {
  name: string;
  kind: ConditioningKind;
  elemType: DataType;
  /** Per-sample shape, resolved: [] for a class label, [L, D] for text states, [D] for pooled embeddings. */
  shape: number[];
}

/** The output the sampler reads. */
export interface ModelOutput {
  name: string;
  /** Output channels: the latent's, plus `varianceChannels` of learned variance read as [prediction | variance] by channel. */
  channels: number;
  varianceChannels: number;
}

/** The diffusion interface of one model. */
export interface DiffusionInterface {
  latent: LatentInput;
  timestep: TimestepInput;
  conditioning: ConditioningInput[];
  output: ModelOutput;
  prediction: Prediction;
  /** Class-conditional models: the class count, and the null class CFG uses (absent when trained without label dropout). */
  classes?: { count: number; nullClass?: number };
  /** One entry per fact, for `inspect` and error messages: `{ fact: 'timestep timestep i64 [B]', source: 'graph' }`. */
  provenance: { fact: string; source: InterfaceSource; detail?: string }[];
}
