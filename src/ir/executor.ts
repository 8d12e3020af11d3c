/**
 * How a model is run, as an interface of the IR, so that passes run models without depending on a runtime:
 * the caller (CLI, tests) injects an executor backed by ONNX Runtime (`runtime/ir-executor.ts`). Tensors
 * cross this boundary as plain host arrays.
 */
import type { Model } from './core.js';

/** A host tensor: element type, shape and data. */
export interface HostTensor {
  dtype: 'float32' | 'int64' | 'int32' | 'int8' | 'uint8' | 'bool' | 'float16';
  dims: number[];
  data: Float32Array | BigInt64Array | Int32Array | Int8Array | Uint8Array | Uint16Array;
}

/** Named tensors (model feeds or fetched outputs). */
export type TensorMap = Record<string, HostTensor>;

/** Runs models; implementations keep sessions for a prepared model so repeated runs are cheap. */
export interface ModelExecutor {
  /**
   * Prepares `model` so that the values named in `fetch` (graph outputs or any intermediate value) can be
   * read; returns a runner for batches of feeds.
   */
  prepare(model: Model, fetch: string[]): Promise<PreparedModel>;
}

/**
 * Samples a diffusion model end to end — a short deterministic sampling run from fixed noise and labels —
 * and returns the final images (injected by the caller, who knows the schedule and sampler). Lets a pass
 * judge a candidate by the images it makes rather than by a per-step proxy.
 */
export interface SampleProbe {
  /** What the probe runs, for messages: `64 samples, DDIM 20 steps`. */
  describe: string;
  /** How many images `sample` returns (one after another in its result). */
  samples: number;
  sample(model: Model): Promise<Float32Array>;
}

/** A model ready to run. */
export interface PreparedModel {
  run(feeds: TensorMap): Promise<TensorMap>;
  release(): Promise<void>;
}
