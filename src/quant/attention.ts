/**
 * Attention and dataflow, by structure: every attention core (score MatMul → Softmax → mixing MatMul) with the
 * weighted layers that produce its queries, keys and values and the ones that project its output, and for every
 * value which graph inputs it derives from and which token stream it belongs to. The streams tell cross-attention
 * (keys and values from the text states, queries from the image) and joint attention (SD3/Flux: keys are a
 * Concat of an image-stream and a context-stream projection) from self-attention, whatever the export names.
 * Layer discovery (layers.ts) reads its answers.
 */
import type { Graph, Node, Value } from '../ir/core.js';
import { DataType } from '../ir/dtype.js';
import { Op, isOp } from '../ir/ops.js';
import { dataInputs, isActivationMatMul, isLayout, isWeighted } from './graph-patterns.js';

/** One attention: its core and the weighted layers around it, in discovery order. */
export interface AttentionCore {
  scores: Node;
  softmax: Node;
  mix: Node;
  q: Node[];
  k: Node[];
  v: Node[];
  out: Node[];
}

/** Token streams: the image (latent) tokens and the context (text-state) tokens; both for a joint sequence. */
export const IMAGE = 1;
export const CONTEXT = 2;

/** Dependency flags of a value: on the latent, on a conditioning tensor of rank ≥ 2, on a sinusoid (Sin/Cos). */
export const ON_LATENT = 1;
export const ON_CONDITION = 2;
export const ON_SINUSOID = 4;

/** Nodes between Softmax and the score MatMul (scale, mask, casts) and between Softmax and the mixing MatMul. */
const SCORE_PATH = new Set<string>([Op.Mul, Op.Div, Op.Add, Op.Sub, Op.Cast, Op.Reshape, Op.Transpose, Op.Where, Op.Squeeze, Op.Unsqueeze]);
const PROBABILITY_PATH = new Set<string>([Op.Cast, Op.Reshape, Op.Transpose, Op.Dropout, Op.Identity]);
/** How far a q/k/v operand is traced back to its projection (head split, qk-norm, rotary embedding). */
const SOURCE_DEPTH = 24;
/** How far the mixed output is traced forward to its projection (head merge, the joint split). */
const SINK_DEPTH = 10;

/** The attention cores of `graph`, in graph order, with their projections. */
export function findAttentions(graph: Graph): AttentionCore[] {
  const cores: AttentionCore[] = [];
  for (const softmax of graph.nodes) {
    if (!isOp(softmax, Op.Softmax)) continue;
    const scores = nearestProducer(softmax.input(0), SCORE_PATH, 6);
    const mixUse = nearestUse(softmax.outputs[0]!, PROBABILITY_PATH, 4);
    if (!scores || !mixUse) continue;
    const mix = mixUse.node;
    cores.push({
      scores, softmax, mix,
      q: weightedSources(scores.input(0)),
      k: weightedSources(scores.input(1)),
      v: weightedSources(mix.input(1 - mixUse.index)),
      out: weightedSinks(mix.outputs[0]!),
    });
  }
  return cores;
}

/** The nearest activation MatMul upstream of `value` through `through` ops (breadth first). */
function nearestProducer(value: Value, through: Set<string>, depth: number): Node | undefined {
  let frontier = [value];
  const seen = new Set<Node>();
  for (let d = 0; d <= depth && frontier.length > 0; d++) {
    const next: Value[] = [];
    for (const v of frontier) {
      const p = v.producer;
      if (!p || seen.has(p)) continue;
      seen.add(p);
      if (isActivationMatMul(p)) return p;
      if (through.has(p.opType)) next.push(...dataInputs(p));
    }
    frontier = next;
  }
  return undefined;
}

/** The nearest use of `value` by an activation MatMul, through `through` ops. */
function nearestUse(value: Value, through: Set<string>, depth: number): { node: Node; index: number } | undefined {
  let frontier = [value];
  for (let d = 0; d <= depth && frontier.length > 0; d++) {
    const next: Value[] = [];
    for (const v of frontier) {
      for (const use of v.uses) {
        if (isActivationMatMul(use.node)) return use;
        if (through.has(use.node.opType)) next.push(...use.node.outputs);
      }
    }
    frontier = next;
  }
  return undefined;
}

/** The weighted layers whose outputs reach `value` without passing another weighted layer or attention core. */
function weightedSources(value: Value): Node[] {
  const found: Node[] = [];
  const seen = new Set<Node>();
  const walk = (v: Value, depth: number) => {
    const p = v.producer;
    if (!p || depth > SOURCE_DEPTH || seen.has(p)) return;
    seen.add(p);
    if (isWeighted(p)) found.push(p);
    else if (!isOp(p, Op.Softmax) && !isActivationMatMul(p)) for (const input of dataInputs(p)) walk(input, depth + 1);
  };
  walk(value, 0);
  return found;
}

/** The weighted layers the mixed output reaches through layout ops only (the output projections). */
function weightedSinks(value: Value): Node[] {
  const found: Node[] = [];
  const seen = new Set<Node>();
  const walk = (v: Value, depth: number) => {
    if (depth > SINK_DEPTH) return;
    for (const use of v.uses) {
      const n = use.node;
      if (seen.has(n)) continue;
      seen.add(n);
      if (isWeighted(n) && use.index === 0) found.push(n);
      else if (isLayout(n) || isOp(n, Op.Cast)) for (const o of n.outputs) walk(o, depth + 1);
    }
  };
  walk(value, 0);
  return found;
}

/**
 * Which graph inputs each value derives from, and its token stream. The latent is the float input shaped like
 * the output (else the float rank-4 input, else the one float rank-3 input); text states are the other float rank-3 inputs; rank-2 float inputs
 * (pooled text, time ids) are conditions too. Shapes carry no dependency (`t.expand(sample.shape[0])` does not
 * make the time embedding depend on the latent). Streams start at the latent (image) and the text states
 * (context) and flow through every node but the attention cores, so a cross-attention's output joins the image
 * stream through its residual Add.
 */
export class Dataflow {
  readonly latent: Value | undefined;
  private readonly flags = new Map<Value, number>();
  private readonly streams = new Map<Value, number>();

  constructor(graph: Graph, cores: readonly AttentionCore[]) {
    const floats = graph.inputs.filter((v) => !v.initializer && v.type?.elemType === DataType.FLOAT && v.type.shape !== undefined);
    this.latent = findLatent(floats, graph.outputs[0]);
    const blocked = new Set<Node>(cores.flatMap((c) => [c.scores, c.softmax, c.mix]));
    for (const input of floats) {
      const rank = input.type!.shape!.length;
      if (input === this.latent) {
        this.flags.set(input, ON_LATENT);
        this.streams.set(input, IMAGE);
      } else if (rank >= 2) {
        this.flags.set(input, ON_CONDITION);
        if (rank === 3 && this.latent) this.streams.set(input, CONTEXT);
      }
    }
    const shapeOnly = new Set<string>([Op.Shape, Op.Size]);
    for (const node of graph.nodes) {
      if (shapeOnly.has(node.opType)) continue;
      let flags = isOp(node, Op.Sin) || isOp(node, Op.Cos) ? ON_SINUSOID : 0;
      let stream = 0;
      for (const input of node.inputs) {
        if (!input) continue;
        flags |= this.flags.get(input) ?? 0;
        stream |= this.streams.get(input) ?? 0;
      }
      for (const output of node.outputs) {
        if (flags) this.flags.set(output, flags);
        if (stream && !blocked.has(node)) this.streams.set(output, stream);
      }
    }
  }

  /** The dependency flags of `value` (ON_LATENT | ON_CONDITION | ON_SINUSOID); all on the latent when there is none to find, so nothing passes for an embedder. */
  flagsOf(value: Value): number {
    return this.latent ? (this.flags.get(value) ?? 0) : ON_LATENT;
  }

  /** The stream a layer reads (IMAGE, CONTEXT, both, or 0 when it reads an attention output), else the stream its output is added into. */
  streamOf(node: Node): number {
    return this.streams.get(node.input(0)) || this.outputStream(node);
  }

  /** The stream of the residual a layer's output is added into (the first Add downstream with a streamed operand). */
  private outputStream(node: Node): number {
    let frontier = [...node.outputs];
    const seen = new Set<Node>();
    for (let d = 0; d < 8 && frontier.length > 0; d++) {
      const next: Value[] = [];
      for (const v of frontier) {
        for (const use of v.uses) {
          const n = use.node;
          if (seen.has(n) || isWeighted(n)) continue;
          seen.add(n);
          if (isOp(n, Op.Add)) {
            const other = n.inputs[1 - use.index];
            const stream = other ? (this.streams.get(other) ?? 0) : 0;
            if (stream === IMAGE || stream === CONTEXT) return stream;
          }
          next.push(...n.outputs);
        }
      }
      frontier = next;
    }
    return 0;
  }
}

/** The latent input: shaped like the output where shapes are declared, else the float rank-4 input. */
function findLatent(floats: Value[], output: Value | undefined): Value | undefined {
  const outShape = output?.type?.shape;
  const sameShape = (v: Value) => {
    const shape = v.type!.shape!;
    return outShape !== undefined && shape.length === outShape.length && shape.every((d, i) => typeof d !== 'number' || typeof outShape[i] !== 'number' || d === outShape[i]);
  };
  const ranked = (rank: number) => floats.filter((v) => v.type!.shape!.length === rank);
  return ranked(4).find(sameShape) ?? ranked(4)[0] ?? ranked(3).find(sameShape) ?? (ranked(3).length === 1 ? ranked(3)[0] : undefined);
}
