/**
 * The pass contract. A pass rewrites the model in place, reports whether it changed anything, and counts
 * what it did; it keeps no module state. Everything a pass needs beyond the model arrives in the context:
 * options typed from its declared specs (defaults filled by the pass manager, the one caller of `run`) and
 * artifacts under the typed keys of artifacts.ts, which it declares as `requires` / `reads` / `produces`.
 */
import type { Diagnostic } from '../diagnostics.js';
import type { Model } from '../ir/core.js';
import type { QuantPlan } from '../quant/plan.js';
import type { ArtifactKey, Artifacts } from './artifacts.js';
import type { ModelExecutor } from '../ir/executor.js';
import type { LowerOptions, TargetName } from '../backends/backend.js';

/** A pass option's declared type, used to parse `name{key=value}` pipeline text and to list options. */
export type OptionType = 'int' | 'number' | 'string' | 'boolean' | 'string-list';

/** A value an option can hold. */
export type OptionValue = number | string | boolean | string[];

/** One declared option of a pass. */
export interface OptionSpec {
  type: OptionType;
  description: string;
  default?: OptionValue;
  /** Allowed values for string options. */
  choices?: readonly string[];
}

/** The declared options of a pass, by name. */
export type OptionSpecs = Record<string, OptionSpec>;

/** Parsed option values, keyed by option name, as pipeline text writes them (untyped: the parser checks them against the specs). */
export type PassOptions = Record<string, OptionValue>;

/** The value type an option spec declares: its choices for string options that list them (any value for an undeclared spec). */
type ValueOf<S extends OptionSpec> = OptionType extends S['type']
  ? OptionValue
  : S['type'] extends 'int' | 'number'
    ? number
    : S['type'] extends 'boolean'
      ? boolean
      : S['type'] extends 'string-list'
        ? string[]
        : S extends { choices: readonly (infer C)[] }
          ? C
          : string;

/** The options `run` receives: every declared option, of its declared type, undefined only where there is no default. */
export type OptionValues<O extends OptionSpecs> = { readonly [K in keyof O]: O[K] extends { default: OptionValue } ? ValueOf<O[K]> : ValueOf<O[K]> | undefined };

/** Options as a caller writes them for one step: any subset, defaults filled in by the manager. */
export type WrittenOptions<O extends OptionSpecs> = { [K in keyof O]?: ValueOf<O[K]> };

/** What a pass run reports. */
export interface PassResult {
  modified: boolean;
  /** Counters and facts for `pipeline.json` and the summary (`folded: 112`). */
  statistics: Record<string, number | string>;
}

/** Progress of a long pass: `done` of `total` units of `label`. */
export type ProgressReporter = (label: string, done: number, total: number) => void;

/**
 * Lets the event loop run: long synchronous work (a layer's range search or GPTQ rounding, seconds to a minute at
 * real size) awaits it between its units, so a Ctrl-C or SIGTERM is handled (temporaries removed, exit) after the
 * current unit instead of after the whole pass.
 */
export function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** Shared state a pipeline's passes read and write, created once per compilation. */
export interface PassContext {
  /** Seed for every random choice a pass makes: same model, recipe and seed give byte-identical output. */
  seed: number;
  /** The per-layer quantization plan (filled from the recipe, or by `select-layers`). */
  plan: QuantPlan;
  /** Runs models in ONNX Runtime (injected by the caller); passes that calibrate need it. */
  executor?: ModelExecutor;
  /** Calibration data and statistics produced by one pass (or the caller) for later ones. */
  artifacts: Artifacts;
  progress: ProgressReporter;
  /** Informational messages (the CLI shows them with --verbose). */
  log(message: string): void;
  /** Warnings and notes the user must see at any verbosity (a layer kept float); absent: they go to `log`. */
  report?(diagnostic: Diagnostic): void;
  /**
   * The target the pipeline's last step lowers for, and its options: a pass that scores candidate quantizations
   * (search-group-sizes) scores them lowered, as they will run. Absent: the portable Q/DQ form is the output.
   */
  lowering?: { target: TargetName; options: LowerOptions };
}

/** A registered pass. `name` is kebab-case and equals its file name. */
export interface Pass<O extends OptionSpecs = OptionSpecs> {
  readonly name: string;
  /** One line for `qcompile passes`. */
  readonly summary: string;
  readonly options: O;
  /** Artifacts that must exist before it runs: a pipeline where no earlier step or the caller provides one is rejected when parsed. */
  readonly requires: readonly ArtifactKey<unknown>[];
  /** Artifacts it reads when the plan asks for them (GPTQ Hessians, static ranges); missing ones fail the run, naming the producer. */
  readonly reads: readonly ArtifactKey<unknown>[];
  /** Artifacts it writes. */
  readonly produces: readonly ArtifactKey<unknown>[];
  /** Rewrites `model`; only the pass manager calls it, with the defaults filled in. */
  run(model: Model, options: OptionValues<O>, context: PassContext): PassResult | Promise<PassResult>;
}

/** What `definePass` takes: a pass with its artifact lists optional (empty when omitted). */
export type PassDefinition<O extends OptionSpecs> = Omit<Pass<O>, 'requires' | 'reads' | 'produces'> & Partial<Pick<Pass<O>, 'requires' | 'reads' | 'produces'>>;

/** Defines a pass, inferring the type of each option `run` receives from its declared spec. */
export function definePass<const O extends OptionSpecs>(definition: PassDefinition<O>): Pass<O> {
  return { requires: [], reads: [], produces: [], ...definition };
}
