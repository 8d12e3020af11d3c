/**
 * The pass contract. A pass rewrites the model in place, reports whether it changed anything, and counts
 * what it did; it keeps no module state. Everything a pass needs beyond the model arrives in the context.
 */
import type { Diagnostic } from '../diagnostics.js';
import type { Model } from '../ir/core.js';
import type { QuantPlan } from '../quant/plan.js';
import type { ModelExecutor } from '../ir/executor.js';

/** A pass option's declared type, used to parse `name{key=value}` pipeline text and to list options. */
export type OptionType = 'int' | 'number' | 'string' | 'boolean' | 'string-list';

/** One declared option of a pass. */
export interface OptionSpec {
  type: OptionType;
  description: string;
  default?: number | string | boolean | string[];
  /** Allowed values for string options. */
  choices?: readonly string[];
}

/** Parsed option values, keyed by option name (defaults filled in). */
export type PassOptions = Record<string, number | string | boolean | string[]>;

/** What a pass run reports. */
export interface PassResult {
  modified: boolean;
  /** Counters and facts for `pipeline.json` and the summary (`folded: 112`). */
  statistics: Record<string, number | string>;
}

/** Progress of a long pass: `done` of `total` units of `label`. */
export type ProgressReporter = (label: string, done: number, total: number) => void;

/** Shared state a pipeline's passes read and write, created once per compilation. */
export interface PassContext {
  /** Seed for every random choice a pass makes: same model, recipe and seed give byte-identical output. */
  seed: number;
  /** The per-layer quantization plan (filled from the recipe, or by `select-layers`). */
  plan: QuantPlan;
  /** Runs models in ONNX Runtime (injected by the caller); passes that calibrate need it. */
  executor?: ModelExecutor;
  /** Calibration data and statistics produced by one pass for later ones, by artifact key. */
  artifacts: Map<string, unknown>;
  progress: ProgressReporter;
  /** Informational messages (the CLI shows them with --verbose). */
  log(message: string): void;
  /** Warnings and notes the user must see at any verbosity (a layer kept float); absent: they go to `log`. */
  report?(diagnostic: Diagnostic): void;
}

/** A registered pass. `name` is kebab-case and equals its file name. */
export interface Pass {
  name: string;
  /** One line for `qcompile passes`. */
  summary: string;
  options: Record<string, OptionSpec>;
  run(model: Model, options: PassOptions, context: PassContext): PassResult | Promise<PassResult>;
}
