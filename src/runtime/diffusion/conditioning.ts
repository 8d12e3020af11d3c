/**
 * Conditioning for sampling and calibration: what each sample is conditioned on (a class, a prompt's encoded
 * text states, pooled embeddings, SDXL time ids), and the unconditional counterpart classifier-free guidance
 * runs alongside it. Sources: class labels; prompts encoded by the pipeline's text encoder with its
 * `tokenizer.json`; precomputed `.npy` tensors (`--conditioning DIR`).
 */
import type { TensorMap } from '../../ir/executor.js';

/** Per-sample conditioning feeds over a set of distinct conditions (prompts or classes). */
export interface ConditioningSet {
  /** Distinct conditions; sample i is conditioned on condition i % count unless a caller deals them otherwise. */
  count: number;
  /** The feeds of every conditioning input of the interface, one batch row per condition index given. */
  feeds(conditions: readonly number[]): TensorMap;
  /** The unconditional feeds (empty prompt, null class) for n rows; absent when the model has no null condition. */
  unconditional?(n: number): TensorMap;
  /** Per condition, its class (the class label, a prompt's digit), when known: label agreement and prompt adherence. */
  classOf?: readonly number[];
  /** For messages: `100 prompts from prompts/test.txt (text encoder)`. */
  describe: string;
}
