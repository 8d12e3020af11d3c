/**
 * The diffusion interface of a model: which graph input is the latent, which the timestep (and how a
 * scheduler timestep is encoded for it), which inputs carry conditioning, and what the output predicts.
 * Found once per run (`findDiffusionInterface`), from, in this order: the recipe's `diffusion { }` block, a
 * `schedule.json` sidecar, the diffusers/optimum pipeline-folder conventions, then the graph itself and the
 * input names optimum uses. Calibration, `sample`, `eval` and the search's probe all drive the model through it.
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Model, Value } from '../../ir/core.js';
import { dataTypeName, type DataType } from '../../ir/dtype.js';
import { CONDITIONING_KINDS, findDiffusionInputs, rankOf, type ConditioningKind, type InputFact } from '../../quant/diffusion-inputs.js';
import { findPipelineFolder, type PipelineFolder } from './pipeline-folder.js';
import { readSidecar, type Sidecar } from './sidecar.js';
import { tokenizerLength } from './text-conditioning.js';

/** What the model output predicts: the noise, v = √ᾱ·eps − √(1−ᾱ)·x0, the flow velocity noise − x0, or x0. */
export type Prediction = 'epsilon' | 'v' | 'flow' | 'sample';

/** Where a fact about the interface came from, highest precedence first. */
export type InterfaceSource = 'recipe' | 'command-line' | 'sidecar' | 'pipeline-folder' | 'graph';

/** A conditioning dimension the conditioning tensors set (see ConditioningInput.shape). */
export const ANY_LENGTH = -1;

/** Whether a tensor of per-sample shape `actual` fits an input declared `declared` (ANY_LENGTH takes any size). */
export function fitsShape(actual: readonly number[], declared: readonly number[]): boolean {
  return actual.length === declared.length && actual.every((n, i) => declared[i] === ANY_LENGTH || declared[i] === n);
}

/** The input the sampler denoises. */
export interface LatentInput {
  name: string;
  /** Per-sample shape [C, H, W] (token latents: [L, C]), resolved (dynamic H/W from the recipe, `--resolution` or the config's `sample_size`). */
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

export type { ConditioningKind };

/** One conditioning input of the model. */
export interface ConditioningInput {
  name: string;
  kind: ConditioningKind;
  elemType: DataType;
  /**
   * Per-sample shape, resolved: [] for a class label, [L, D] for text states, [D] for pooled embeddings. A text
   * length L the export left dynamic, and no config or tokenizer states, is ANY_LENGTH (−1): the conditioning
   * tensors set it.
   */
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

/** The diffusion interface cannot be found: the message names the input or file and what to add. */
export class InterfaceError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InterfaceError';
  }
}

/** A latent resolution: a side, or [height, width]. */
export type Resolution = number | [number, number];

/** What the caller knows: the recipe's `diffusion { }` settings (only those written) and the command line's. */
export interface InterfaceOptions {
  recipe?: { prediction?: Prediction; classes?: number; nullClass?: number; resolution?: Resolution; timestepScale?: number };
  /** `--resolution`. */
  resolution?: Resolution;
}

/**
 * A sidecar's `roles` block (sd-digits ships one): `latent`, `timestep` and `output` name an input or output;
 * `conditioning` names conditioning inputs — a name or a list (their kinds read off the graph), or an object
 * from name to kind.
 */
interface SidecarRoles {
  latent?: string;
  timestep?: string;
  output?: string;
  /** Conditioning input names, with the kind when the sidecar states it. */
  conditioning: Map<string, ConditioningKind | undefined>;
}

const SCHEDULER_PREDICTIONS: Record<string, Prediction> = { epsilon: 'epsilon', v_prediction: 'v', sample: 'sample', flow_prediction: 'flow' };

/** The sources a fact may come from, and how to record one. */
interface Sources {
  options: InterfaceOptions;
  sidecar?: Sidecar;
  folder?: PipelineFolder;
  note(fact: string, source: InterfaceSource, detail?: string): void;
  /** Where the graph-side fact about `name` came from: a sidecar role (saying whether the structure agrees) or the graph. */
  origin(name: string, graphWhy: string, structuralName: string | undefined): [InterfaceSource, string];
}

const SIDECAR = 'schedule.json';

/**
 * The diffusion interface of `model` loaded from `modelPath`. Each fact comes from the first source that
 * states it: the recipe, the command line, the `schedule.json` sidecar next to the model, the pipeline folder
 * around it, then the graph (structure first, optimum's input names second). A fact none of them states is an
 * InterfaceError naming what to add; every fact found is recorded in `provenance`.
 */
export function findDiffusionInterface(model: Model, modelPath: string, options: InterfaceOptions = {}): DiffusionInterface {
  const provenance: DiffusionInterface['provenance'] = [];
  const sidecarPath = join(dirname(modelPath), SIDECAR);
  const sidecar = existsSync(sidecarPath) ? readSidecar(sidecarPath) : undefined;
  const folder = findPipelineFolder(modelPath);
  const inputNames = new Set(model.graph.inputs.filter((v) => !v.initializer).map((v) => v.name));
  for (const input of sidecar?.inputs ?? []) {
    if (!inputNames.has(input.name)) throw new InterfaceError(`${sidecarPath}: "inputs" lists '${input.name}', which the model has no input called (is the sidecar stale?)`);
  }
  const roles = sidecar ? sidecarRoles(sidecar, sidecarPath, model) : undefined;
  const statedKinds = Object.fromEntries([...(roles?.conditioning ?? [])].filter((e): e is [string, ConditioningKind] => e[1] !== undefined));
  const graph = findDiffusionInputs(model, {
    ...(roles?.latent ? { latent: roles.latent } : {}),
    ...(roles?.timestep ? { timestep: roles.timestep } : {}),
    ...(roles?.output ? { output: roles.output } : {}),
    conditioning: statedKinds,
  });
  // What the graph alone says, to tell in the provenance whether a sidecar role agrees with the structure.
  const structural = roles ? findDiffusionInputs(model) : graph;
  const roleOf = (name: string) => (!roles ? undefined : roles.conditioning.has(name) ? 'conditioning' : (['latent', 'timestep', 'output'] as const).find((role) => roles[role] === name));
  const sources: Sources = {
    options,
    ...(sidecar ? { sidecar } : {}),
    ...(folder ? { folder } : {}),
    note: (fact, source, detail) => provenance.push({ fact, source, ...(detail ? { detail } : {}) }),
    origin(name, graphWhy, structuralName) {
      const role = roleOf(name);
      if (!role) return ['graph', graphWhy];
      return ['sidecar', `${SIDECAR} roles.${role}${structuralName === name ? ' (the graph agrees)' : structuralName ? ` (the graph's structure says '${structuralName}')` : ''}`];
    },
  };
  if (graph.rotaryPositions.length > 0) {
    const names = graph.rotaryPositions.map((v) => `'${v.name}'`);
    throw new InterfaceError(`model input${names.length > 1 ? 's' : ''} ${names.join(', ')} feed${names.length > 1 ? '' : 's'} a rotary position embedding (Flux img_ids/txt_ids): qcompile does not feed position ids yet`);
  }
  if (graph.unexplained.length > 0) {
    const names = graph.unexplained.map((v) => `'${v.name}'`);
    throw new InterfaceError(`cannot tell what model input${names.length > 1 ? 's' : ''} ${names.join(', ')} carr${names.length > 1 ? 'y' : 'ies'}: state it in a ${SIDECAR} next to the model, "roles": { "conditioning": { ${JSON.stringify(graph.unexplained[0]!.name)}: KIND } } (KIND: ${CONDITIONING_KINDS.join(', ')})`);
  }
  if (!graph.latent) throw new InterfaceError(`cannot find the latent input (a float [B, C, H, W] input whose layout the output repeats): name it in ${SIDECAR}'s "roles": { "latent": "…" }`);
  if (!graph.timestep) throw new InterfaceError(`cannot find the timestep input (a rank-0 or rank-1 input read by a sinusoidal embedding): name it in ${SIDECAR}'s "roles": { "timestep": "…" }`);
  if (!graph.output) throw new InterfaceError('the model has no output');

  const latent = latentOf(graph.latent, structural.latent?.value.name, sources);
  const timestep = timestepOf(graph.timestep, structural.timestep?.value.name, sources);
  const conditioning = graph.conditioning.map((c) => {
    const input: ConditioningInput = { name: c.value.name, kind: c.kind, elemType: c.value.type!.elemType, shape: conditioningShape(c.value, c.kind, sidecar, folder) };
    sources.note(`conditioning ${input.name} ${input.kind} ${dataTypeName(input.elemType)} [${input.shape.join(', ')}]`, ...sources.origin(input.name, c.why, structural.conditioning.find((s) => s.kind === c.kind)?.value.name));
    return input;
  });
  const output = outputOf(graph.output, graph.latent.value, latent, structural.output?.name, sources);
  const result: DiffusionInterface = { latent, timestep, conditioning, output, prediction: predictionOf(sources), provenance };
  const label = graph.conditioning.find((c) => c.kind === 'class-label');
  if (label) result.classes = classesOf(label.tableRows, sources);
  return result;
}

/** The latent and its per-sample shape: declared dims; dynamic H/W from the recipe, --resolution, the sidecar's image, the config's sample_size. */
function latentOf(fact: InputFact, structuralName: string | undefined, sources: Sources): LatentInput {
  const { options, sidecar, folder } = sources;
  const value = fact.value;
  const dims = value.type?.shape;
  if (!dims || (dims.length !== 4 && dims.length !== 3)) throw new InterfaceError(`latent input '${value.name}' must be [B, C, H, W] (or token latents [B, L, C]), got ${dims ? `rank ${dims.length}` : 'no declared shape'}`);
  const declaredChannels = dims[dims.length === 4 ? 1 : 2];
  const channels = typeof declaredChannels === 'number' ? declaredChannels : sidecar?.image?.channels ?? folder?.config?.inChannels;
  if (channels === undefined) throw new InterfaceError(`latent input '${value.name}' has dynamic channels and neither ${SIDECAR} ("image": { "channels" }) nor the pipeline's config.json (in_channels) states them`);
  if (dims.length === 3) {
    const length = dims[1];
    if (typeof length !== 'number') throw new InterfaceError(`the token latent '${value.name}' has a dynamic length: qcompile needs a model exported with a static latent length`);
    sources.note(`latent ${value.name} [${length}, ${channels}]`, ...sources.origin(value.name, fact.why, structuralName));
    return { name: value.name, shape: [length, channels] };
  }
  const declared = [dims[2], dims[3]];
  const stated: { size: [number, number]; source: InterfaceSource; detail: string } | undefined =
    options.recipe?.resolution !== undefined ? { size: square(options.recipe.resolution), source: 'recipe', detail: 'diffusion { resolution }' }
    : options.resolution !== undefined ? { size: square(options.resolution), source: 'command-line', detail: '--resolution' }
    : sidecar?.image ? { size: [sidecar.image.height, sidecar.image.width], source: 'sidecar', detail: `${SIDECAR} "image"` }
    : folder?.config?.sampleSize !== undefined ? { size: square(folder.config.sampleSize), source: 'pipeline-folder', detail: `${folder.config.file} sample_size` }
    : undefined;
  let shape: number[];
  if (declared.every((d) => typeof d === 'number')) {
    // A resolution the user gave must match a static latent; a sidecar's or config's is only a default for dynamic ones.
    const userStated = stated && (stated.source === 'recipe' || stated.source === 'command-line');
    if (userStated && (stated.size[0] !== declared[0] || stated.size[1] !== declared[1])) {
      throw new InterfaceError(`the model's latent '${value.name}' is ${declared[0]}x${declared[1]}, but ${stated.detail} says ${stated.size[0]}x${stated.size[1]}`);
    }
    shape = [channels, declared[0] as number, declared[1] as number];
    sources.note(`latent ${value.name} [${shape.join(', ')}]`, ...sources.origin(value.name, fact.why, structuralName));
  } else {
    if (!stated) throw new InterfaceError(`the latent input '${value.name}' has dynamic height and width: add \`diffusion { resolution 64 }\` to the recipe or pass --resolution 64 (the latent's side, the config's sample_size)`);
    shape = [channels, ...stated.size];
    sources.note(`latent ${value.name} [${shape.join(', ')}]`, stated.source, stated.detail);
  }
  return { name: value.name, shape };
}

/** The timestep: dtype and rank from the graph; the scale from the recipe, else 1/1000 where the graph multiplies by 1000 itself. */
function timestepOf(fact: InputFact & { innerScale?: number }, structuralName: string | undefined, sources: Sources): TimestepInput {
  const t = fact.value;
  const rank = rankOf(t) ?? 1;
  if (rank > 1) throw new InterfaceError(`timestep input '${t.name}' must be [B] or a scalar, got rank ${rank}`);
  const recipeScale = sources.options.recipe?.timestepScale;
  const [scale, source, detail]: [number, InterfaceSource, string] =
    recipeScale !== undefined ? [recipeScale, 'recipe', 'diffusion { timestep-scale }']
    : fact.innerScale === 1000 ? [1 / 1000, 'graph', 'the graph multiplies it by 1000 before its sinusoid: fed σ = t/1000']
    : [1, 'graph', 'fed the scheduler timestep as is'];
  const timestep: TimestepInput = { name: t.name, elemType: t.type!.elemType, rank: rank as 0 | 1, scale };
  sources.note(`timestep ${t.name} ${dataTypeName(timestep.elemType)} ${rank === 1 ? '[B]' : 'scalar'}`, ...sources.origin(t.name, rankOf(t) === undefined ? `${fact.why}; no declared shape, taken as [B]` : fact.why, structuralName));
  sources.note(`timestep scale ${scale === 1 / 1000 ? '1/1000' : scale}`, source, detail);
  return timestep;
}

/** The output layout: C channels of prediction, or 2C with learned variance; anything else is refused. */
function outputOf(value: Value, latentValue: Value, latent: LatentInput, structuralName: string | undefined, sources: Sources): ModelOutput {
  const config = sources.folder?.config;
  const rank = rankOf(latentValue)!;
  const dims = value.type?.shape;
  const latentChannels = latent.shape[rank === 4 ? 0 : 1]!;
  const declared = dims && dims.length === rank ? dims[rank === 4 ? 1 : 2] : undefined;
  const channels = typeof declared === 'number' ? declared : config?.outChannels ?? (config?.learnSigma ? 2 * latentChannels : undefined);
  if (channels === undefined) throw new InterfaceError(`output '${value.name}' has ${dims ? 'dynamic channels' : 'no declared shape'}: export it with static channels or add the pipeline's config.json (out_channels)`);
  if (channels !== latentChannels && channels !== 2 * latentChannels) {
    throw new InterfaceError(`output '${value.name}' has ${channels} channels for a ${latentChannels}-channel latent: qcompile reads C (the prediction) or 2C (prediction | learned variance)`);
  }
  const output: ModelOutput = { name: value.name, channels, varianceChannels: channels - latentChannels };
  const fact = `output ${output.name} ${channels} channels${output.varianceChannels > 0 ? ` (${latentChannels} prediction + ${output.varianceChannels} learned variance)` : ''}`;
  if (typeof declared === 'number') sources.note(fact, ...sources.origin(value.name, 'its declared shape', structuralName));
  else sources.note(fact, 'pipeline-folder', `${config!.file} ${config!.outChannels !== undefined ? 'out_channels' : 'learn_sigma'}`);
  return output;
}

/** What the output predicts: the recipe, the sidecar's prediction_type, the scheduler config (a FlowMatch scheduler: flow). */
function predictionOf(sources: Sources): Prediction {
  const { options, sidecar, folder } = sources;
  const scheduler = folder?.scheduler;
  const flowMatch = /FlowMatch/.test(scheduler?.className ?? '');
  const fromScheduler = flowMatch ? 'flow' : scheduler?.predictionType !== undefined ? SCHEDULER_PREDICTIONS[scheduler.predictionType] : undefined;
  if (scheduler?.predictionType !== undefined && fromScheduler === undefined) throw new InterfaceError(`${scheduler.file}: unknown prediction_type '${scheduler.predictionType}' (known: ${Object.keys(SCHEDULER_PREDICTIONS).join(', ')})`);
  const predicted: [Prediction, InterfaceSource, string] | undefined =
    options.recipe?.prediction ? [options.recipe.prediction, 'recipe', 'diffusion { prediction }']
    : sidecar ? [sidecar.prediction_type, 'sidecar', `${SIDECAR} prediction_type`]
    : fromScheduler ? [fromScheduler, 'pipeline-folder', `${scheduler!.file} ${flowMatch ? scheduler!.className : 'prediction_type'}`]
    : undefined;
  if (!predicted) throw new InterfaceError(`cannot tell what the model predicts: add \`diffusion { prediction epsilon }\` (or v) to the recipe, or a ${SIDECAR} with "prediction_type" next to the model`);
  sources.note(`prediction ${predicted[0]}`, predicted[1], predicted[2]);
  return predicted[0];
}

/** Reads and checks a sidecar's `roles`: every name must be an input (or, for `output`, an output) of the model. */
function sidecarRoles(sidecar: Sidecar, file: string, model: Model): SidecarRoles | undefined {
  const raw = (sidecar as { roles?: unknown }).roles;
  if (raw === undefined) return undefined;
  const fail = (message: string): never => {
    throw new InterfaceError(`${file}: ${message}`);
  };
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) fail('"roles" must be an object');
  const entries = raw as Record<string, unknown>;
  const isInput = (name: string) => model.graph.inputs.some((v) => v.name === name && !v.initializer);
  const roles: SidecarRoles = { conditioning: new Map() };
  for (const [role, value] of Object.entries(entries)) {
    if (role === 'latent' || role === 'timestep' || role === 'output') {
      if (typeof value !== 'string') fail(`roles.${role} must be a name, got ${JSON.stringify(value)}`);
      const exists = role === 'output' ? model.graph.outputs.some((v) => v.name === value) : isInput(value as string);
      if (!exists) fail(`roles.${role} names '${String(value)}', which the model has no ${role === 'output' ? 'output' : 'input'} called`);
      roles[role] = value as string;
    } else if (role === 'conditioning') {
      const named: [string, unknown][] = typeof value === 'string' ? [[value, undefined]] : Array.isArray(value) ? value.map((n) => [n, undefined]) : typeof value === 'object' && value !== null ? Object.entries(value) : fail(`roles.conditioning must be a name, a list of names or an object from name to kind, got ${JSON.stringify(value)}`);
      for (const [name, kind] of named) {
        if (typeof name !== 'string' || !isInput(name)) fail(`roles.conditioning names '${String(name)}', which the model has no input called`);
        if (kind !== undefined && !(CONDITIONING_KINDS as readonly unknown[]).includes(kind)) fail(`roles.conditioning.${name} must be one of ${CONDITIONING_KINDS.join(', ')}, got ${JSON.stringify(kind)}`);
        roles.conditioning.set(name, kind as ConditioningKind | undefined);
      }
    } else fail(`unknown role '${role}' in "roles" (known: latent, timestep, conditioning, output)`);
  }
  return roles;
}

function square(size: Resolution): [number, number] {
  return typeof size === 'number' ? [size, size] : size;
}

/** A conditioning input's per-sample shape: declared dims, dynamic ones from the sidecar's `inputs`, the pipeline's config and tokenizer. */
function conditioningShape(value: Value, kind: ConditioningKind, sidecar: Sidecar | undefined, folder: PipelineFolder | undefined): number[] {
  const dims = value.type?.shape?.slice(1) ?? [];
  const listed = sidecar?.inputs?.find((input) => input.name === value.name)?.shape.slice(1);
  const resolved = dims.map((d, i) => {
    if (typeof d === 'number') return d;
    if (typeof listed?.[i] === 'number') return listed[i] as number;
    const last = i === dims.length - 1;
    const fromConfig = kind === 'text-states' && last ? folder?.config?.textStatesDim : kind === 'pooled-text' && last ? folder?.config?.pooledDim : undefined;
    const fromTokenizer = (kind === 'text-states' || kind === 'text-mask') && i === 0 && folder?.textEncoder ? tokenizerLength(folder.textEncoder.tokenizer) : undefined;
    const n = fromConfig ?? fromTokenizer;
    // A text length the export left dynamic is the conditioning's to set (77 CLIP tokens, 120 T5 tokens, …).
    if (n === undefined && (kind === 'text-states' || kind === 'text-mask') && i === 0) return ANY_LENGTH;
    if (n === undefined) throw new InterfaceError(`conditioning input '${value.name}' (${kind}) has a dynamic dimension ${i + 1} that neither ${SIDECAR}'s "inputs", the pipeline's config.json nor its tokenizer.json states: export it with static dimensions`);
    return n;
  });
  return resolved;
}

/** The class count: recipe, sidecar `num_classes`/`null_class`, config `num_class_embeds`, then the embedding table. */
function classesOf(rows: number | undefined, sources: Sources): { count: number; nullClass?: number } {
  const { options, sidecar, folder, note } = sources;
  const nullFromSidecar = (sidecar as { null_class?: unknown } | undefined)?.null_class;
  const stated: [number, InterfaceSource, string] | undefined =
    options.recipe?.classes ? [options.recipe.classes, 'recipe', 'diffusion { classes }']
    : sidecar?.num_classes ? [sidecar.num_classes, 'sidecar', `${SIDECAR} num_classes`]
    : folder?.config?.numClassEmbeds ? [folder.config.numClassEmbeds, 'pipeline-folder', `${folder.config.file} num_class_embeds`]
    : rows ? [rows, 'graph', `the label embedding table has ${rows} rows`]
    : undefined;
  if (!stated) throw new InterfaceError('cannot tell how many classes the class-conditional model has: add `diffusion { classes N }` to the recipe');
  const [count, source, detail] = stated;
  if (rows !== undefined && rows !== count && rows !== count + 1) throw new InterfaceError(`${detail} says ${count} classes, but the label embedding table has ${rows} rows (expected ${count}, or ${count + 1} with a null class)`);
  const nullClass = options.recipe?.nullClass ?? (Number.isInteger(nullFromSidecar) ? (nullFromSidecar as number) : rows === count + 1 ? count : undefined);
  note(`classes ${count}${nullClass !== undefined ? `, null class ${nullClass}` : ', no null class'}`, source, detail);
  return nullClass !== undefined ? { count, nullClass } : { count };
}
