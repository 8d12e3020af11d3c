/**
 * Conditioning for sampling and calibration: what each sample is conditioned on (a class, a prompt's encoded
 * text states, pooled embeddings, SDXL time ids), and the unconditional counterpart classifier-free guidance
 * runs alongside it. Sources: class labels; prompts encoded by the pipeline's text encoder with its
 * `tokenizer.json`; precomputed `.npy` tensors (`--conditioning DIR`).
 */
import { DataType } from '../../ir/dtype.js';
import type { HostTensor, TensorMap } from '../../ir/executor.js';
import type { ConditioningInput, DiffusionInterface } from './interface.js';

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

/** The conditioning of a model without conditioning inputs: one condition, no feeds, no unconditional branch. */
export const UNCONDITIONAL: ConditioningSet = { count: 1, feeds: () => ({}), describe: 'unconditional' };

function labelTensor(input: ConditioningInput, labels: readonly number[]): HostTensor {
  const dims = [labels.length];
  if (input.elemType === DataType.INT64) return { dtype: 'int64', dims, data: BigInt64Array.from(labels, (c) => BigInt(c)) };
  if (input.elemType === DataType.INT32) return { dtype: 'int32', dims, data: Int32Array.from(labels) };
  throw new Error(`class-label input '${input.name}' has element type ${input.elemType}: qcompile feeds int64 or int32 labels`);
}

/**
 * Class labels: conditions are the classes 0..count−1 (sample i gets class i % count); the unconditional rows
 * carry the null class when the model was trained with label dropout (its embedding table has a row more).
 */
export function classLabelConditioning(iface: DiffusionInterface): ConditioningSet {
  const input = iface.conditioning.find((c) => c.kind === 'class-label')!;
  const classes = iface.classes;
  if (!classes || classes.count < 1) throw new Error(`class-label input '${input.name}': the class count is unknown: say \`diffusion { classes N }\` in the recipe or 'num_classes' in schedule.json`);
  const { count, nullClass } = classes;
  return {
    count,
    feeds: (conditions) => ({ [input.name]: labelTensor(input, conditions) }),
    ...(nullClass !== undefined ? { unconditional: (n: number) => ({ [input.name]: labelTensor(input, new Array<number>(n).fill(nullClass)) }) } : {}),
    classOf: Array.from({ length: count }, (_, i) => i),
    describe: `${count} classes${nullClass !== undefined ? ` (null class ${nullClass})` : ''}`,
  };
}

/** Per conditioning input, each condition's tensor (its per-sample shape) and the unconditional one. */
export interface ConditionTensors {
  conditions: Float32Array[];
  unconditional?: Float32Array;
}

/**
 * Precomputed or encoded float conditioning (text states, pooled embeddings, time ids): per input, one tensor
 * per condition and the unconditional one (the empty prompt's); every input must have the same condition count.
 */
export function tensorConditioning(iface: DiffusionInterface, tensors: ReadonlyMap<string, ConditionTensors>, describe: string, classOf?: readonly number[]): ConditioningSet {
  const inputs = iface.conditioning.filter((c) => c.kind !== 'class-label');
  const count = tensors.get(inputs[0]?.name ?? '')?.conditions.length ?? 0;
  for (const input of inputs) {
    const given = tensors.get(input.name);
    if (!given) throw new Error(`conditioning: nothing given for input '${input.name}' (${input.kind})`);
    if (given.conditions.length !== count) throw new Error(`conditioning: input '${input.name}' has ${given.conditions.length} conditions, '${inputs[0]!.name}' has ${count}`);
    const per = input.shape.reduce((a, b) => a * b, 1);
    const bad = [...given.conditions, ...(given.unconditional ? [given.unconditional] : [])].find((t) => t.length !== per);
    if (bad) throw new Error(`conditioning: a tensor for '${input.name}' has ${bad.length} values, the model takes [${input.shape.join(', ')}] (${per}) per sample`);
  }
  if (count === 0) throw new Error(`conditioning: ${describe} has no conditions`);
  const rows = (pick: (t: ConditionTensors, row: number) => Float32Array, n: number): TensorMap =>
    Object.fromEntries(inputs.map((input) => {
      const t = tensors.get(input.name)!;
      const per = input.shape.reduce((a, b) => a * b, 1);
      const data = new Float32Array(n * per);
      for (let r = 0; r < n; r++) data.set(pick(t, r), r * per);
      return [input.name, { dtype: 'float32' as const, dims: [n, ...input.shape], data }];
    }));
  const hasUnconditional = inputs.every((input) => tensors.get(input.name)!.unconditional);
  return {
    count,
    feeds: (conditions) => rows((t, r) => t.conditions[conditions[r]!]!, conditions.length),
    ...(hasUnconditional ? { unconditional: (n: number) => rows((t) => t.unconditional!, n) } : {}),
    ...(classOf ? { classOf } : {}),
    describe,
  };
}

/** Where text conditioning comes from, as the command line or the recipe says. */
export interface ConditioningSources {
  /** A prompts file (one per line, or a `prompt<TAB>class` TSV with a header). */
  prompts?: string;
  /** A folder of precomputed `.npy` conditioning (one per prompt, `uncond.npy`). */
  conditioningDir?: string;
}

/**
 * The conditioning set of a model: class labels for a class-conditional model, nothing for an unconditional
 * one, and for a text-conditioned model the prompts encoded by its pipeline or the precomputed tensors —
 * without either, an error naming the flags and the recipe setting.
 */
export async function loadConditioning(iface: DiffusionInterface, sources: ConditioningSources): Promise<ConditioningSet> {
  if (iface.conditioning.length === 0) return UNCONDITIONAL;
  if (iface.conditioning.every((c) => c.kind === 'class-label')) return classLabelConditioning(iface);
  const names = iface.conditioning.filter((c) => c.kind !== 'class-label').map((c) => `'${c.name}' (${c.kind})`).join(', ');
  if (!sources.prompts && !sources.conditioningDir) {
    throw new Error(`the model is text-conditioned (${names}): give it prompts with --prompts FILE or \`calibrate { prompts "FILE" }\` in the recipe, or precomputed conditioning with --conditioning DIR`);
  }
  throw new Error(`text conditioning for ${names} is not available in this build`);
}
