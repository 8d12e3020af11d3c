/**
 * The artifacts passes hand to later passes (and callers hand to passes), each under one typed key defined
 * here and nowhere else: what a pipeline step `requires` and `produces` is checked against these keys when the
 * pipeline is parsed, and a read names the producer when the artifact is missing.
 */
import type { TensorStats } from './activation-ranges.js';
import type { SampleProbe, TensorMap } from '../ir/executor.js';
import type { AppliedScaling } from './scale-folding.js';

/** A typed artifact key: `name` as listings and errors show it, `producer` as the error for a missing one names it. */
export interface ArtifactKey<T> {
  readonly name: string;
  /** Who makes it: a pass name, or what the caller must do. */
  readonly producer: string;
  /** Never set: carries the value type. */
  readonly type?: T;
}

function artifactKey<T>(name: string, producer: string): ArtifactKey<T> {
  return { name, producer };
}

/** The calibration inputs as model feeds, one TensorMap per batch; provided by the caller (compile builds them from the recipe). */
export const CALIBRATION_BATCHES = artifactKey<TensorMap[]>('calibration-batches', 'the caller (compile builds them from the recipe)');

/** A SampleProbe the caller may provide, to judge search finalists by the images they sample. */
export const SAMPLE_PROBE = artifactKey<SampleProbe>('sample-probe', 'the caller (compile, for group searches)');

/** Statistics of each planned layer's input, one TensorStats per timestep group, by layer name. */
export const ACTIVATION_STATS = artifactKey<Map<string, TensorStats[]>>('activation-stats', 'calibrate');

/** How many calibration samples had each timestep (t → count), as the observers saw them. */
export const CALIBRATION_TIMESTEPS = artifactKey<Map<number, number>>('calibration-timesteps', 'calibrate');

/** Per-input-channel max |x| of each observed value, by value name (filled when calibrate has channels=true). */
export const INPUT_CHANNEL_ABSMAX = artifactKey<Map<string, Float32Array>>('input-channel-absmax', 'calibrate{channels=true}');

/**
 * GPTQ's integer codes per layer, by layer name, in the order of the weight's values: rounded by collect-hessians
 * stage by stage with each layer's Hessian (which is dropped once used), stored as they are by quantize-weights.
 */
export const GPTQ_CODES = artifactKey<Map<string, Int8Array | Uint8Array>>('gptq-codes', 'collect-hessians');

/** The chosen group size per searched layer, for dumps and the report. */
export const GROUP_ALLOCATION = artifactKey<Map<string, number>>('group-allocation', 'search-group-sizes');

/** The per-input-channel factors scaling passes applied, by layer name, for the report. */
export const INPUT_SCALING = artifactKey<Map<string, AppliedScaling[]>>('input-scaling', 'smooth-quant or weight-dilation');

/** An artifact that a pass reads is missing. */
export class MissingArtifactError extends Error {
  constructor(
    readonly key: ArtifactKey<unknown>,
    readonly reader: string,
  ) {
    super(`${reader} needs the '${key.name}' artifact, which ${key.producer} produces`);
    this.name = 'MissingArtifactError';
  }
}

/** The artifacts of one compilation, by key. */
export class Artifacts {
  private readonly values = new Map<ArtifactKey<unknown>, unknown>();

  /** The artifact under `key`, or undefined. */
  get<T>(key: ArtifactKey<T>): T | undefined {
    return this.values.get(key) as T | undefined;
  }

  /** The artifact under `key`; throws a MissingArtifactError naming `reader` and the producer when absent. */
  require<T>(key: ArtifactKey<T>, reader: string): T {
    if (!this.values.has(key)) throw new MissingArtifactError(key, reader);
    return this.values.get(key) as T;
  }

  /** Stores `value` under `key` (replacing what was there); returns this, for chaining. */
  set<T>(key: ArtifactKey<T>, value: T): this {
    this.values.set(key, value);
    return this;
  }

  /** True when an artifact is stored under `key`. */
  has(key: ArtifactKey<unknown>): boolean {
    return this.values.has(key);
  }
}
