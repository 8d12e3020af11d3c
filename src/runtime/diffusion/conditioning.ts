/**
 * Conditioning for sampling and calibration: what each sample is conditioned on (a class, a prompt's encoded
 * text states, pooled embeddings, SDXL time ids), and the unconditional counterpart classifier-free guidance
 * runs alongside it. Sources: class labels; prompts encoded by the pipeline's text encoder with its
 * `tokenizer.json`; precomputed `.npy` tensors (`--conditioning DIR`).
 */
import { basename, dirname } from 'node:path';
import { DataType } from '../../ir/dtype.js';
import type { HostTensor, TensorMap } from '../../ir/executor.js';
import type { ConditioningInput, DiffusionInterface } from './interface.js';
import { findPipelineFolder } from './pipeline-folder.js';
import { ConditioningError, encodePrompts, readConditioningDir, readPromptsFile } from './text-conditioning.js';

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
  throw new ConditioningError(`class-label input '${input.name}' has element type ${input.elemType}: qcompile feeds int64 or int32 labels`);
}

/**
 * Class labels: conditions are the classes 0..count−1 (sample i gets class i % count); the unconditional rows
 * carry the null class when the model was trained with label dropout (its embedding table has a row more).
 */
export function classLabelConditioning(iface: DiffusionInterface): ConditioningSet {
  const input = iface.conditioning.find((c) => c.kind === 'class-label')!;
  const classes = iface.classes;
  if (!classes || classes.count < 1) throw new ConditioningError(`class-label input '${input.name}': the class count is unknown: say \`diffusion { classes N }\` in the recipe or 'num_classes' in schedule.json`);
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
    if (!given) throw new ConditioningError(`conditioning: nothing given for input '${input.name}' (${input.kind})`);
    if (given.conditions.length !== count) throw new ConditioningError(`conditioning: input '${input.name}' has ${given.conditions.length} conditions, '${inputs[0]!.name}' has ${count}`);
    const per = input.shape.reduce((a, b) => a * b, 1);
    const bad = [...given.conditions, ...(given.unconditional ? [given.unconditional] : [])].find((t) => t.length !== per);
    if (bad) throw new ConditioningError(`conditioning: a tensor for '${input.name}' has ${bad.length} values, the model takes [${input.shape.join(', ')}] (${per}) per sample`);
  }
  if (count === 0) throw new ConditioningError(`conditioning: ${describe} has no conditions`);
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
  /** A prompts file (one per line, or a `prompt<TAB>class` TSV with a header): encoded by the pipeline's text encoder, or — with `conditioningDir` — only naming the conditions' classes. */
  prompts?: string;
  /** A folder of precomputed `.npy` conditioning (one per prompt, sorted by name, and `uncond.npy`). */
  conditioningDir?: string;
}

/**
 * The conditioning set of the model at `modelPath`: class labels for a class-conditional model, nothing for an
 * unconditional one, and for a text-conditioned model the precomputed tensors of `conditioningDir` (a prompts
 * TSV beside it gives their classes) or the prompts encoded by the pipeline folder's tokenizer and text encoder
 * — without either, an error naming the flags and the recipe setting.
 */
export async function loadConditioning(iface: DiffusionInterface, sources: ConditioningSources, modelPath: string): Promise<ConditioningSet> {
  if (iface.conditioning.length === 0) return UNCONDITIONAL;
  if (iface.conditioning.every((c) => c.kind === 'class-label')) return classLabelConditioning(iface);
  const inputs = iface.conditioning.filter((c) => c.kind !== 'class-label');
  const names = inputs.map((c) => `'${c.name}' (${c.kind})`).join(', ');
  if (!sources.prompts && !sources.conditioningDir) {
    throw new ConditioningError(`the model is text-conditioned (${names}): give it prompts with --prompts FILE or \`calibrate { prompts "FILE" }\` in the recipe, or precomputed conditioning with --conditioning DIR`);
  }
  const file = sources.prompts ? readPromptsFile(sources.prompts) : undefined;
  if (sources.conditioningDir) {
    const dir = readConditioningDir(sources.conditioningDir, inputs);
    if (file?.classes && file.classes.length !== dir.count) throw new ConditioningError(`${sources.prompts}: ${file.classes.length} prompts, but ${sources.conditioningDir} holds ${dir.count} conditions: the prompts file names the classes of the precomputed conditions, one line each`);
    const tensors = new Map(inputs.map((input) => [input.name, { conditions: dir.rows[input.name]!, ...(dir.uncond ? { unconditional: dir.uncond[input.name]! } : {}) }]));
    return tensorConditioning(iface, tensors, `${dir.count} precomputed conditions from ${sources.conditioningDir}`, file?.classes);
  }
  const states = inputs[0]!;
  if (inputs.length > 1 || states.kind !== 'text-states') throw new ConditioningError(`prompts are encoded into text states only, and the model takes ${names}: give precomputed conditioning with --conditioning DIR (one subfolder per input)`);
  const encoder = findPipelineFolder(modelPath)?.textEncoder;
  if (!encoder) throw new ConditioningError(`--prompts needs the pipeline's text encoder and tokenizer (text_encoder/model.onnx and tokenizer/tokenizer.json beside the model's folder), and ${dirname(modelPath)} has none: give precomputed conditioning with --conditioning DIR`);
  const encoded = await encodePrompts(file!.prompts, { textEncoder: encoder.model, tokenizer: encoder.tokenizer });
  const tensors = new Map([[states.name, { conditions: encoded.prompts, unconditional: encoded.uncond }]]);
  return tensorConditioning(iface, tensors, `${file!.prompts.length} prompts from ${basename(sources.prompts!)} (text encoder)`, file!.classes);
}
