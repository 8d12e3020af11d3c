/**
 * The diffusion inputs of a denoiser graph, by structure first and by the names optimum exports second: the
 * latent (the float [B,C,H,W] or token [B,L,C] input whose layout the output repeats), the timestep (the input
 * a sinusoidal embedding reads — int64 DDPM index or float σ, rank 1 or a rank-0 scalar), and the conditioning
 * inputs: class labels (an integer input gathering rows of an embedding table), text states (float [B,L,D]
 * read by cross-attention k/v or a context embedder), pooled text (float [B,D] into a linear), SDXL time ids
 * (float [B,6] through a sinusoid), Flux guidance (a second timestep-like input) and the text attention mask.
 * Graph-side facts only: what the recipe, a sidecar or a pipeline folder say is merged in by the runtime's
 * `findDiffusionInterface`; passes use `findTimestepInput`.
 */
import type { Model, Node, Value } from '../ir/core.js';
import { isFloatType } from '../ir/dtype.js';
import { Op, isOp } from '../ir/ops.js';
import type { Tensor } from '../ir/tensor.js';
import { layerGeometry } from './layers.js';

/** What a conditioning input carries. */
export type ConditioningKind = 'class-label' | 'text-states' | 'pooled-text' | 'time-ids' | 'guidance' | 'text-mask';

/** Every conditioning kind, in a stable order (for messages and validation). */
export const CONDITIONING_KINDS: readonly ConditioningKind[] = ['class-label', 'text-states', 'pooled-text', 'time-ids', 'guidance', 'text-mask'];

/** How a fact about an input was found: by the graph's structure, or by the name optimum gives that input. */
export type FoundBy = 'structure' | 'name';

/** One classified graph input. */
export interface InputFact {
  value: Value;
  by: FoundBy;
  /** Why, for provenance: `reaches the sinusoidal embedding`. */
  why: string;
}

/** A conditioning input and what it carries. */
export interface ConditioningFact extends InputFact {
  kind: ConditioningKind;
  /** Class labels: the rows of the embedding table they gather (classes, plus one when there is a null class). */
  tableRows?: number;
}

/** The graph's diffusion inputs; `unexplained` lists the inputs no rule or name accounts for. */
export interface DiffusionInputs {
  latent?: InputFact;
  timestep?: InputFact & {
    /** A constant the graph multiplies the timestep by before its sinusoid (Flux: 1000, fed σ ∈ [0, 1]). */
    innerScale?: number;
  };
  conditioning: ConditioningFact[];
  /** The output the sampler reads: the first graph output. */
  output?: Value;
  /** Inputs read by Sin/Cos that feed no linear: rotary position tables (Flux `img_ids`/`txt_ids`). */
  rotaryPositions: Value[];
  unexplained: Value[];
}

/** Inputs a caller already knows by name (a sidecar's `roles`); they take precedence over every rule. */
export interface KnownInputs {
  latent?: string;
  timestep?: string;
  output?: string;
  /** Conditioning inputs whose kind the caller states. */
  conditioning?: Record<string, ConditioningKind>;
}

/** Input names diffusers/optimum exports use, per role: the fallback when structure does not decide. */
const OPTIMUM_NAMES: Record<'latent' | 'timestep' | ConditioningKind, readonly string[]> = {
  latent: ['sample', 'hidden_states', 'latent_model_input', 'x'],
  timestep: ['timestep', 'timesteps', 't'],
  'class-label': ['class_labels', 'y', 'labels'],
  'text-states': ['encoder_hidden_states'],
  'pooled-text': ['text_embeds', 'pooled_projections'],
  'time-ids': ['time_ids'],
  guidance: ['guidance'],
  'text-mask': ['encoder_attention_mask', 'attention_mask'],
};

/** Ops that move or reshape values without computing on them: what the searches below look through. */
const PLUMBING: ReadonlySet<string> = new Set([
  Op.Cast, Op.Unsqueeze, Op.Squeeze, Op.Reshape, Op.Flatten, Op.Transpose, Op.Concat, Op.Slice, Op.Split, Op.Gather,
  Op.Identity, Op.Expand, Op.Where, Op.Tile,
]);

/** The graph input carrying the diffusion timestep: the rank-0/1 input the sinusoidal embedding reads. */
export function findTimestepInput(model: Model): Value | undefined {
  return findDiffusionInputs(model).timestep?.value;
}

/** Classifies the model's graph inputs (see the file header); `known` names override the rules for their roles. */
export function findDiffusionInputs(model: Model, known: KnownInputs = {}): DiffusionInputs {
  const graph = model.graph;
  const inputs = graph.inputs.filter((v) => !v.initializer);
  const byName = (name: string | undefined) => (name === undefined ? undefined : inputs.find((v) => v.name === name));
  const output = (known.output !== undefined ? graph.outputs.find((v) => v.name === known.output) : undefined) ?? graph.outputs[0];
  const taken = new Set<Value>();
  const result: DiffusionInputs = { conditioning: [], rotaryPositions: [], unexplained: [] };
  if (output) result.output = output;
  for (const [name, kind] of Object.entries(known.conditioning ?? {})) {
    const value = byName(name);
    if (!value) continue;
    result.conditioning.push({ value, by: 'name', why: 'named by the caller', kind });
    taken.add(value);
  }

  // Timestep-like inputs: rank 0/1 values read by a sinusoidal embedding; the first is the timestep, a
  // second (Flux) is the guidance scale. Rank-2 ones are SDXL's time ids.
  // An input without a declared shape counts as timestep-like.
  const sinusoidal = inputs.filter((v) => !taken.has(v) && (rankOf(v) ?? 0) <= 2 && feedsSinusoidalEmbedding(v));
  const knownTimestep = byName(known.timestep);
  const scalarLike = sinusoidal.filter((v) => (rankOf(v) ?? 0) <= 1 && v !== knownTimestep);
  // Two of them (Flux): structure cannot tell them apart, so their names break the tie, else graph order does.
  const timestep = knownTimestep ?? nameFallback(scalarLike, 'timestep', taken) ?? scalarLike.find((v) => !OPTIMUM_NAMES.guidance.includes(v.name)) ?? scalarLike[0] ?? nameFallback(inputs, 'timestep', taken);
  if (timestep) {
    const how: FoundBy = knownTimestep ? 'name' : sinusoidal.includes(timestep) ? 'structure' : 'name';
    const innerScale = scaleBeforeSinusoid(timestep);
    result.timestep = {
      value: timestep,
      by: how,
      why: knownTimestep ? 'named by the caller' : how === 'structure' ? 'read by the sinusoidal embedding' : `named '${timestep.name}'`,
      ...(innerScale !== undefined ? { innerScale } : {}),
    };
    taken.add(timestep);
  }
  for (const v of scalarLike) {
    if (taken.has(v)) continue;
    result.conditioning.push({ value: v, by: 'structure', why: 'a second input read by a sinusoidal embedding (after the timestep)', kind: 'guidance' });
    taken.add(v);
  }
  for (const v of sinusoidal) {
    if (taken.has(v) || rankOf(v) !== 2) continue;
    result.conditioning.push({ value: v, by: 'structure', why: 'a [B, N] input read by a sinusoidal embedding', kind: 'time-ids' });
    taken.add(v);
  }

  const knownLatent = byName(known.latent);
  const structural = knownLatent ? undefined : findLatent(inputs.filter((v) => !taken.has(v)), output);
  const latent = knownLatent ?? structural ?? nameFallback(inputs, 'latent', taken);
  if (latent) {
    const why = knownLatent ? 'named by the caller' : structural ? 'the float input whose layout the output repeats' : `named '${latent.name}'`;
    result.latent = { value: latent, by: structural ? 'structure' : 'name', why };
    taken.add(latent);
  }

  for (const v of inputs) {
    if (taken.has(v) || !reachesSinusoid(v)) continue;
    result.rotaryPositions.push(v);
    taken.add(v);
  }
  for (const v of inputs) {
    if (taken.has(v)) continue;
    const fact = conditioningByStructure(v, result.latent?.value);
    if (fact) {
      result.conditioning.push(fact);
      taken.add(v);
    }
  }
  for (const v of inputs) {
    if (taken.has(v)) continue;
    const kind = (Object.keys(OPTIMUM_NAMES) as (keyof typeof OPTIMUM_NAMES)[]).find((k) => k !== 'latent' && k !== 'timestep' && OPTIMUM_NAMES[k].includes(v.name));
    if (kind) {
      result.conditioning.push({ value: v, by: 'name', why: `named '${v.name}'`, kind: kind as ConditioningKind });
      taken.add(v);
    } else result.unexplained.push(v);
  }
  result.conditioning.sort((a, b) => inputs.indexOf(a.value) - inputs.indexOf(b.value));
  return result;
}

/** The rank of a value's declared shape, when known. */
export function rankOf(value: Value): number | undefined {
  return value.type?.shape?.length;
}

function nameFallback(inputs: Value[], role: keyof typeof OPTIMUM_NAMES, taken: ReadonlySet<Value>): Value | undefined {
  return inputs.find((v) => !taken.has(v) && OPTIMUM_NAMES[role].includes(v.name));
}

/**
 * The latent: among float inputs of rank 3 or 4, the one whose non-channel dims the output repeats and whose
 * channel count the output has once or twice (learned variance). Several such: the one a conv reads first
 * (conv_in, the patch embedding).
 */
function findLatent(inputs: Value[], output: Value | undefined): Value | undefined {
  const candidates = inputs.filter((v) => v.type && isFloatType(v.type.elemType) && (rankOf(v) === 4 || rankOf(v) === 3));
  const matching = output ? candidates.filter((v) => layoutMatches(v, output)) : [];
  const pool = matching.length > 0 ? matching : candidates.filter((v) => rankOf(v) === 4);
  if (pool.length <= 1) return pool[0];
  const convFed = pool.filter((v) => v.uses.some((u) => isOp(u.node, Op.Conv) && u.index === 0));
  return convFed.length === 1 ? convFed[0] : undefined;
}

/** Same rank; every dim but the channel axis equal where both are declared; output channels = C or 2C. */
function layoutMatches(latent: Value, output: Value): boolean {
  const a = latent.type?.shape;
  const b = output.type?.shape;
  if (!a || !b || a.length !== b.length) return false;
  const channelAxis = a.length === 4 ? 1 : a.length - 1;
  for (let i = 1; i < a.length; i++) {
    const x = a[i];
    const y = b[i];
    if (i === channelAxis) {
      if (typeof x === 'number' && typeof y === 'number' && y !== x && y !== 2 * x) return false;
    } else if (typeof x === 'number' && typeof y === 'number' && x !== y) return false;
  }
  return true;
}

/** The structural conditioning rules for an input that is neither a timestep-like input nor the latent. */
function conditioningByStructure(v: Value, latent: Value | undefined): ConditioningFact | undefined {
  const rank = rankOf(v);
  const float = v.type !== undefined && isFloatType(v.type.elemType);
  if (!float && rank !== undefined && rank <= 1) {
    const rows = gatheredTableRows(v);
    if (rows !== undefined) return { value: v, by: 'structure', why: `gathers rows of a ${rows}-row embedding table`, kind: 'class-label', tableRows: rows };
  }
  if (float && rank === 3 && v !== latent && readByLinear(v, 2, false)) {
    return { value: v, by: 'structure', why: 'a float [B, L, D] input read by token linears (cross-attention k/v or a context embedder)', kind: 'text-states' };
  }
  if (float && rank === 2 && readByLinear(v, 3, true)) {
    return { value: v, by: 'structure', why: 'a float [B, D] input read by a linear (pooled text into the time embedding)', kind: 'pooled-text' };
  }
  if (rank === 2 && reachesSoftmax(v)) {
    return { value: v, by: 'structure', why: 'a [B, L] input that masks attention scores', kind: 'text-mask' };
  }
  return undefined;
}

/**
 * True when `value` reaches a Sin or Cos (through anything but a weighted layer, within 8 ops) whose output
 * reaches a weighted linear through plumbing alone: a sinusoidal embedding, not a rotary position table.
 */
function feedsSinusoidalEmbedding(value: Value): boolean {
  return someNodeWithin(value, 8, (node) => layerGeometry(node) === undefined, (node) => {
    if (!isOp(node, Op.Sin) && !isOp(node, Op.Cos)) return false;
    return someNodeWithin(node.outputs[0]!, 6, (n) => PLUMBING.has(n.opType), (n) => layerGeometry(n) !== undefined);
  });
}

/** True when `value` reaches a Sin or Cos within 8 ops, through anything but a weighted layer. */
function reachesSinusoid(value: Value): boolean {
  return someNodeWithin(value, 8, (node) => layerGeometry(node) === undefined, (node) => isOp(node, Op.Sin) || isOp(node, Op.Cos));
}

/** The constant a timestep is multiplied by right away (through casts and unsqueezes), when it is a scalar. */
function scaleBeforeSinusoid(timestep: Value): number | undefined {
  let value = timestep;
  for (let depth = 0; depth < 4; depth++) {
    const uses = value.uses.filter((u) => u.index >= 0);
    if (uses.length !== 1) return undefined;
    const node = uses[0]!.node;
    if (isOp(node, Op.Mul)) {
      const other = constantOf(node.inputs[1 - uses[0]!.index]);
      return other && other.size === 1 ? other.toNumbers()[0] : undefined;
    }
    if (!isOp(node, Op.Cast) && !isOp(node, Op.Unsqueeze) && !isOp(node, Op.Reshape)) return undefined;
    value = node.outputs[0]!;
  }
  return undefined;
}

/** The rows of the constant [N, D] table an integer input indexes by Gather (through casts and label-dropout Wheres). */
function gatheredTableRows(value: Value): number | undefined {
  let rows: number | undefined;
  someNodeWithin(value, 3, (node) => isOp(node, Op.Cast) || isOp(node, Op.Where) || isOp(node, Op.Unsqueeze) || isOp(node, Op.Squeeze), (node, index) => {
    const table = node.inputs[0];
    if (!isOp(node, Op.Gather) || index !== 1 || !table) return false;
    const dims = constantOf(table)?.dims;
    if (dims?.length !== 2) return false;
    rows = dims[0];
    return true;
  });
  return rows;
}

/** True when a weighted linear (MatMul/Gemm) reads `value` as its activation within `depth` plumbing ops. */
function readByLinear(value: Value, depth: number, throughConcat: boolean): boolean {
  return someNodeWithin(value, depth, (n) => PLUMBING.has(n.opType) && (throughConcat || !isOp(n, Op.Concat)), (n, index) => (isOp(n, Op.MatMul) || isOp(n, Op.Gemm)) && index === 0 && layerGeometry(n) !== undefined);
}

/** True when `value` reaches a Softmax within 10 ops without passing a weighted layer (an attention mask). */
function reachesSoftmax(value: Value): boolean {
  return someNodeWithin(value, 10, (n) => layerGeometry(n) === undefined, (n) => isOp(n, Op.Softmax));
}

/**
 * Breadth-first over the uses of `start`: true when some node within `depth` steps satisfies `target` (called
 * with the input slot it is reached by); the search continues through nodes that satisfy `through`.
 */
function someNodeWithin(start: Value, depth: number, through: (node: Node) => boolean, target: (node: Node, index: number) => boolean): boolean {
  const seen = new Set<Node>();
  let frontier = [start];
  for (let d = 0; d < depth && frontier.length > 0; d++) {
    const next: Value[] = [];
    for (const value of frontier) {
      for (const use of value.uses) {
        if (use.index < 0) continue;
        if (target(use.node, use.index)) return true;
        if (seen.has(use.node) || !through(use.node)) continue;
        seen.add(use.node);
        next.push(...use.node.outputs);
      }
    }
    frontier = next;
  }
  return false;
}

/** The tensor behind a value: an initializer or a Constant node's `value`. */
function constantOf(value: Value | undefined): Tensor | undefined {
  if (!value) return undefined;
  if (value.initializer) return value.initializer;
  const producer = value.producer;
  if (!producer || !isOp(producer, Op.Constant)) return undefined;
  const attribute = producer.attributes.get('value');
  return attribute?.kind === 'tensor' ? attribute.value : undefined;
}
