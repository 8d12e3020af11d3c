/**
 * Layer discovery: finds the weighted layers of a diffusion model and their roles from the graph's structure,
 * never from names (torch exports call token-linear weights `onnx::MatMul_1234`, merge shared SiLUs and spell
 * GroupNorm as InstanceNormalization). Attention layers come from their attention core (attention.ts):
 * self, cross (keys/values from the text states) and joint (SD3/Flux context stream) q/k/v/out, as linears or
 * 1×1 convs. The rest from what a layer reads and feeds: patch/conv-in on the latent, timestep and condition
 * embedders (no dependency on the latent), adaLN (a linear on SiLU(c) whose output is chunked), MLPs around a
 * GELU (GEGLU included), UNet resblocks, samplers and the proj_in/proj_out around a spatial transformer, the
 * final layer. Names are structural (`Layer.name`; `DiscoveryContext.names` and `unetNames`). Discovery reads a
 * float model; what a compile's later steps know of a layer comes from the stamps `identity.ts` puts on its node.
 */
import type { Model, Node, Value } from '../ir/core.js';
import { Op, isOp } from '../ir/ops.js';
import { CONTEXT, Dataflow, IMAGE, ON_CONDITION, ON_LATENT, ON_SINUSOID, findAttentions, type AttentionCore } from './attention.js';
import { ELEMENTWISE, LAYOUT, isActivationMatMul, isGeluCore, isLayout, isNormalization, isSilu, isSpatialNormalization, isSpelledOutNorm, isWeighted, weightDims } from './graph-patterns.js';

/** What a layer does in the model. */
export type LayerRole =
  | 'embed.patch'
  | 'embed.time'
  | 'embed.label'
  | 'embed.cond'
  | 'adaln'
  | 'attn.qkv'
  | 'attn.q'
  | 'attn.k'
  | 'attn.v'
  | 'attn.out'
  | 'attn.cross.q'
  | 'attn.cross.k'
  | 'attn.cross.v'
  | 'attn.cross.out'
  | 'attn.context.qkv'
  | 'attn.context.q'
  | 'attn.context.k'
  | 'attn.context.v'
  | 'attn.context.out'
  | 'mlp.fc1'
  | 'mlp.fc2'
  | 'proj.in'
  | 'proj.out'
  | 'final'
  | 'conv.in'
  | 'conv.out'
  | 'res.conv'
  | 'res.time'
  | 'res.skip'
  | 'down'
  | 'up'
  | 'other';

/** Every role, in a stable order (for schemas and listings). */
export const LAYER_ROLES: readonly LayerRole[] = [
  'embed.patch', 'embed.time', 'embed.label', 'embed.cond', 'adaln',
  'attn.qkv', 'attn.q', 'attn.k', 'attn.v', 'attn.out',
  'attn.cross.q', 'attn.cross.k', 'attn.cross.v', 'attn.cross.out',
  'attn.context.qkv', 'attn.context.q', 'attn.context.k', 'attn.context.v', 'attn.context.out',
  'mlp.fc1', 'mlp.fc2', 'proj.in', 'proj.out', 'final', 'conv.in', 'conv.out', 'res.conv', 'res.time', 'res.skip', 'down', 'up', 'other',
];

/** Roles an earlier vocabulary spelled otherwise, for the error that names the new spelling. */
export const RENAMED_ROLES: ReadonlyMap<string, LayerRole> = new Map([['attn.proj', 'attn.out']]);

/** Role groups a selector may name: a group selects every role under it (`attn` = every `attn.*`, cross and context included). */
export const ROLE_GROUPS = ['attn', 'attn.cross', 'attn.context', 'mlp', 'embed', 'res', 'conv', 'proj'] as const;

/** A weighted layer of the model. */
export interface Layer {
  /**
   * Structural, stable name. Transformers: `blocks.3.attn.qkv`, `blocks.3.attn.cross.k`, `blocks.3.context.mlp.fc1`
   * (a joint block's context stream), `embed.patch`, `final.linear`, `final.adaln`. UNets: `down.1.res.0.conv1`,
   * `mid.res.0.time`, `up.2.upsample`, and the spatial transformers of a level `down.0.attn.0.proj.in`,
   * `down.0.attn.0.q`, `mid.attn.0.cross.k`, `up.1.attn.1.mlp.fc2` (`down.2.attn.0.blocks.1.q` when one holds
   * several transformer blocks).
   */
  name: string;
  role: LayerRole;
  opType: string;
  /** The node that applies the weight. */
  node: Node;
  /**
   * The weight the node reads, as stored (Gemm transB=1 keeps W[N,K]): a float initializer, or — once
   * quantized — the output of a DequantizeLinear over constant codes (then `quantized` is set).
   */
  weight: Value;
  /** The DequantizeLinear that produces the weight, when the layer is already quantized. */
  quantized?: Node;
  /** The bias initializer: Gemm C, Conv B, or the Add right after a token MatMul. */
  bias?: Value;
  weightShape: number[];
  /** Input channels K and output channels N in the math sense (Conv: per-group input channels; Gather: the row width). */
  inChannels: number;
  outChannels: number;
  /** Transformer block index (self- or joint attention, its cross-attention, MLP and adaLN), when inside one. */
  block?: number;
  /** Position among the layers in topological order. */
  index: number;
}

/**
 * Finds the layers of `model` in topological order, by structure, on a float model (roles are judged on what
 * a layer reads, so activation quantization in between would hide them). Compiles call it once, through
 * `layersOf` (identity.ts), which stamps the result on the nodes for every later pass to read.
 */
export function discoverLayers(model: Model): Layer[] {
  const graph = model.graph;
  const found: LayerGeometry[] = [];
  for (const node of graph.nodes) {
    const layer = layerGeometry(node);
    if (layer) found.push(layer);
  }
  const nodes = found.map((l) => l.node);
  const context = new DiscoveryContext(model, nodes);
  const roles = new Map<Node, LayerRole>();
  for (const node of nodes) roles.set(node, context.roleOf(node, roles));
  const blocks = context.assignBlocks(nodes, roles);
  const names = context.names(nodes, roles, blocks);
  return found.map((layer, index) => ({ ...layer, role: roles.get(layer.node)!, block: blocks.get(layer.node), index, name: names.get(layer.node)! }));
}

/** A UNet resblock's weighted parts. */
interface ResBlock {
  conv1: Node;
  conv2: Node;
  time?: Node;
  skip?: Node;
}

/** Roles that occur once per model: named without an ordinal. */
const SINGLETON_ROLES = new Set<LayerRole>(['embed.patch', 'embed.label', 'conv.in', 'conv.out', 'final']);

/** What a weighted node's structure tells without its neighbourhood: the weight, bias and shapes. */
export type LayerGeometry = Omit<Layer, 'name' | 'index' | 'block' | 'role'>;

/** Recognises a node that applies a constant weight (float, or DequantizeLinear of constant codes), with its geometry. */
export function layerGeometry(node: Node): LayerGeometry | undefined {
  const constant = (v: Value | undefined) => (v && weightDims(v) ? v : undefined);
  const dimsOf = (v: Value) => weightDims(v)!;
  const quantized = (v: Value) => (v.initializer ? {} : { quantized: v.producer! });
  if (isOp(node, Op.MatMul)) {
    const weight = constant(node.inputs[1]);
    if (!weight || dimsOf(weight).length !== 2) return undefined;
    const dims = dimsOf(weight);
    return { opType: node.opType, node, weight, ...quantized(weight), bias: matmulBias(node, dims[1]!), weightShape: [...dims], inChannels: dims[0]!, outChannels: dims[1]! };
  }
  if (isOp(node, Op.Gemm)) {
    const weight = constant(node.inputs[1]);
    if (!weight || dimsOf(weight).length !== 2 || node.intAttr('transA', 0) !== 0) return undefined;
    const dims = dimsOf(weight);
    const transB = node.intAttr('transB', 0) === 1;
    return {
      opType: node.opType, node, weight, ...quantized(weight), bias: initializerOf(node.inputs[2]), weightShape: [...dims],
      inChannels: transB ? dims[1]! : dims[0]!, outChannels: transB ? dims[0]! : dims[1]!,
    };
  }
  if (isOp(node, Op.Conv) || isOp(node, Op.ConvTranspose)) {
    const weight = constant(node.inputs[1]);
    if (!weight || dimsOf(weight).length < 3) return undefined;
    const dims = dimsOf(weight);
    const transposed = isOp(node, Op.ConvTranspose);
    const group = node.intAttr('group', 1);
    return {
      opType: node.opType, node, weight, ...quantized(weight), bias: initializerOf(node.inputs[2]), weightShape: [...dims],
      inChannels: transposed ? dims[0]! / group : dims[1]!, outChannels: transposed ? dims[1]! * group : dims[0]!,
    };
  }
  if (isOp(node, Op.Gather)) {
    const weight = constant(node.inputs[0]);
    if (!weight || dimsOf(weight).length !== 2 || node.intAttr('axis', 0) !== 0 || weightDims(node.inputs[1]!)) return undefined;
    const dims = dimsOf(weight);
    return { opType: node.opType, node, weight, ...quantized(weight), weightShape: [...dims], inChannels: dims[1]!, outChannels: dims[0]! };
  }
  return undefined;
}

function initializerOf(value: Value | undefined): Value | undefined {
  return value?.initializer ? value : undefined;
}

/** The bias Add right after a token MatMul (torch exports Linear on [B,T,C] as MatMul + Add). */
function matmulBias(node: Node, outChannels: number): Value | undefined {
  const uses = node.outputs[0]!.uses;
  if (uses.length !== 1 || !isOp(uses[0]!.node, Op.Add)) return undefined;
  const add = uses[0]!.node;
  const other = add.inputs[1 - uses[0]!.index];
  const dims = other?.initializer?.dims;
  return other && dims && dims.length === 1 && dims[0] === outChannels ? other : undefined;
}

/** Nodes between fc1 and the GELU's Tanh/Erf in the spelled-out forms (bias Add, x³, ·0.0447, +x, ·√(2/π); GEGLU's chunk). */
const GELU_DEPTH = 8;
/** How far an adaLN's chunks are traced to the layers whose inputs they modulate. */
const MODULATION_DEPTH = 12;

/** The attention role of a projection and the attention it belongs to (an index into the cores). */
interface AttentionPart {
  role: LayerRole;
  core: number;
  /** A cross-attention joins the transformer block of the self-attention before it. */
  cross: boolean;
}

/** Structural queries over one graph, memoized per call of discoverLayers. */
class DiscoveryContext {
  private readonly cores: AttentionCore[];
  private readonly flow: Dataflow;
  private readonly attention: Map<Node, AttentionPart>;
  /** The proj_in / proj_out pairs around spatial transformers. */
  private readonly wrappers: Map<Node, LayerRole>;
  private modulated: Map<Node, Node[]> | undefined;

  constructor(model: Model, private readonly layers: readonly Node[]) {
    this.cores = findAttentions(model.graph);
    this.flow = new Dataflow(model.graph, this.cores);
    this.attention = this.attentionParts();
    this.wrappers = this.transformerWrappers();
  }

  /** The role of a weighted node; `earlier` holds the roles of the layers before it in topological order. */
  roleOf(node: Node, earlier: ReadonlyMap<Node, LayerRole>): LayerRole {
    if (isOp(node, Op.Gather)) return 'embed.label';
    const attention = this.attention.get(node);
    if (attention) return attention.role;
    const input = node.input(0);
    if (isOp(node, Op.Conv) || isOp(node, Op.ConvTranspose)) return this.convRole(node, input);
    if (this.readsLatent(input)) return 'embed.patch';
    const wrapper = this.wrappers.get(node);
    if (wrapper) return wrapper;
    if (isSilu(input) && this.feedsChunks(node) && !this.reaches(node.outputs[0]!, (n) => isOp(n, Op.Sigmoid), 3)) return 'adaln';
    if (isSilu(input) && this.feedsConvOutput(node)) return 'res.time';
    const flags = this.flow.flagsOf(input);
    // Nothing of the latent in it: an embedder of the timestep (a sinusoid of scalars only) or of a condition.
    if (!(flags & ON_LATENT)) return flags & ON_SINUSOID && !(flags & ON_CONDITION) ? 'embed.time' : 'embed.cond';
    if (this.fromGelu(input)) return 'mlp.fc2';
    // Any other activation (Relu, SiLU, …): fc2 reads fc1's output through elementwise ops only.
    if ([...this.elementwiseSources(input)].some((n) => earlier.get(n) === 'mlp.fc1')) return 'mlp.fc2';
    const out = node.outputs[0]!;
    if (this.normalizedInput(input) && this.reachesGraphOutputDirectly(out)) return 'final';
    if (this.reaches(out, (n) => isGeluCore(n), GELU_DEPTH)) return 'mlp.fc1';
    if (this.normalizedInput(input) && this.feedsLinearElementwise(out)) return 'mlp.fc1';
    return 'other';
  }

  private convRole(node: Node, input: Value): LayerRole {
    const kernel = node.intsAttr('kernel_shape', weightDims(node.input(1))!.slice(2) as number[]);
    const strides = node.intsAttr('strides', kernel.map(() => 1));
    if (this.readsLatent(input)) return strides.every((s, i) => s === kernel[i] && s > 1) ? 'embed.patch' : 'conv.in';
    if (isOp(node, Op.ConvTranspose) || (input.producer && isOp(input.producer, Op.Resize))) return 'up';
    if (strides.some((s) => s > 1)) return 'down';
    if (this.reachesGraphOutputDirectly(node.outputs[0]!)) return 'conv.out';
    const wrapper = this.wrappers.get(node);
    if (wrapper) return wrapper;
    if (isSilu(input) || this.normalizedInput(input)) return 'res.conv';
    if (kernel.every((k) => k === 1)) return 'res.skip';
    return 'res.conv';
  }

  /**
   * The attention role of every q/k/v/out projection. Joint attention: keys from projections of both streams
   * (SD3/Flux Concat them); each projection is `attn.*` or `attn.context.*` by the stream it reads, the outputs
   * by the stream they are added into. Cross-attention: keys and values read the context, queries do not. A
   * projection feeding q, k and v at once is a fused qkv.
   */
  private attentionParts(): Map<Node, AttentionPart> {
    const parts = new Map<Node, AttentionPart>();
    this.cores.forEach((core, index) => {
      const stream = (node: Node) => this.flow.streamOf(node);
      const inputs = [...new Set([...core.q, ...core.k, ...core.v])];
      const streams = new Set(core.k.map(stream));
      const joint = streams.has(IMAGE) && streams.has(CONTEXT);
      const cross = !joint && core.k.length > 0 && [...core.k, ...core.v].every((n) => stream(n) === CONTEXT) && core.q.every((n) => stream(n) !== CONTEXT);
      const set = (node: Node, role: LayerRole) => {
        // A projection two attentions share keeps the role of the first.
        if (!parts.has(node)) parts.set(node, { role, core: index, cross });
      };
      for (const node of inputs) {
        const fused = [core.q, core.k, core.v].filter((list) => list.includes(node)).length > 1;
        const part = fused ? 'qkv' : core.q.includes(node) ? 'q' : core.k.includes(node) ? 'k' : 'v';
        if (joint && stream(node) === CONTEXT) set(node, `attn.context.${part}`);
        else if (cross && part !== 'qkv') set(node, `attn.cross.${part}`);
        else set(node, `attn.${part}`);
      }
      for (const node of core.out) set(node, joint && stream(node) === CONTEXT ? 'attn.context.out' : cross ? 'attn.cross.out' : 'attn.out');
    });
    return parts;
  }

  /**
   * proj_in / proj_out of the spatial transformers: x → GroupNorm → proj_in → tokens … → proj_out → + x, the
   * projections 1×1 convs or linears (with token reshapes in between). A resblock reads SiLU(GroupNorm(x)),
   * and an attention block's GroupNorm feeds its q/k/v, so neither matches.
   */
  private transformerWrappers(): Map<Node, LayerRole> {
    const pairs = new Map<Node, LayerRole>();
    for (const node of this.layers) {
      if (this.attention.has(node) || pairs.has(node) || isOp(node, Op.Gather)) continue;
      const x = spatialNormSource(node.input(0));
      if (!x) continue;
      for (const use of x.uses) {
        if (!isOp(use.node, Op.Add)) continue;
        const other = use.node.inputs[1 - use.index];
        const closer = other && projectionOf(other);
        if (!closer || closer === node || this.attention.has(closer)) continue;
        pairs.set(node, 'proj.in');
        pairs.set(closer, 'proj.out');
      }
    }
    return pairs;
  }

  /**
   * Assigns transformer block indices: a block starts at each self- or joint attention (a cross-attention and
   * the MLPs after it join the block before); an adaLN belongs to the block whose layers it modulates, and to
   * none when it modulates several (PixArt's shared adaLN-single) or the final layer.
   */
  assignBlocks(nodes: Node[], roles: Map<Node, LayerRole>): Map<Node, number> {
    const blocks = new Map<Node, number>();
    const coreBlocks = new Map<number, number>();
    let block = -1;
    for (const node of nodes) {
      const part = this.attention.get(node);
      if (part) {
        if (!coreBlocks.has(part.core)) coreBlocks.set(part.core, part.cross && block >= 0 ? block : ++block);
        blocks.set(node, coreBlocks.get(part.core)!);
      } else if (roles.get(node)!.startsWith('mlp.') && block >= 0) blocks.set(node, block);
    }
    for (const [adaln, modulated] of this.modulation(nodes, roles)) {
      const owners = new Set(modulated.map((n) => blocks.get(n)));
      if (owners.size === 1 && !owners.has(undefined)) blocks.set(adaln, [...owners][0]!);
    }
    return blocks;
  }

  /** For each adaLN, the layers whose inputs its chunks modulate (LN(x)·(1 + scale) + shift); computed once. */
  private modulation(nodes: Node[], roles: Map<Node, LayerRole>): Map<Node, Node[]> {
    if (this.modulated) return this.modulated;
    const modulated = new Map<Node, Node[]>();
    for (const node of nodes) if (roles.get(node) === 'adaln') modulated.set(node, []);
    if (modulated.size > 0) {
      for (const node of nodes) {
        if (roles.get(node) === 'adaln') continue;
        for (const source of this.modulators(node.input(0))) modulated.get(source)?.push(node);
      }
    }
    this.modulated = modulated;
    return modulated;
  }

  /** Weighted nodes upstream of `value` through non-weighted nodes, not through a normalization or attention core. */
  private modulators(value: Value): Set<Node> {
    const found = new Set<Node>();
    const seen = new Set<Node>();
    const walk = (v: Value, depth: number) => {
      const p = v.producer;
      if (!p || depth > MODULATION_DEPTH || seen.has(p)) return;
      seen.add(p);
      if (isWeighted(p)) found.add(p);
      else if (!isNormalization(p) && !isSpelledOutNorm(p) && !isOp(p, Op.Softmax) && !isActivationMatMul(p)) for (const i of p.inputs) if (i && !i.initializer) walk(i, depth + 1);
    };
    walk(value, 0);
    return found;
  }

  /** Every layer's name: UNet names where the model has resblocks, transformer names otherwise, ordinals for the rest. */
  names(nodes: Node[], roles: Map<Node, LayerRole>, blocks: Map<Node, number>): Map<Node, string> {
    const names = this.unetNames(nodes, roles, blocks);
    const modulation = this.modulation(nodes, roles);
    const counters = new Map<string, number>();
    const taken = new Set(names.values());
    for (const node of nodes) {
      if (names.has(node)) continue;
      const role = roles.get(node)!;
      const block = blocks.get(node);
      const modulates = modulation.get(node);
      const context = block !== undefined && !role.startsWith('attn.') && this.flow.streamOf(modulates?.[0] ?? node) === CONTEXT ? 'context.' : '';
      const base = block !== undefined ? `blocks.${block}.${context}${role}`
        : role === 'final' ? 'final.linear'
        : role === 'adaln' ? (modulates?.some((n) => roles.get(n) === 'final') ? 'final.adaln' : 'adaln')
        : role;
      const single = block !== undefined || SINGLETON_ROLES.has(role) || role === 'adaln';
      let name = single ? base : `${base}.${counters.get(base) ?? 0}`;
      counters.set(base, (counters.get(base) ?? 0) + 1);
      for (let n = 1; taken.has(name); n++) name = `${base}.${n}`;
      taken.add(name);
      names.set(node, name);
    }
    return names;
  }

  /**
   * Structural UNet names: `down.1.res.0.conv1`, `down.0.downsample`, `up.2.res.1.skip`, `up.0.upsample`,
   * `mid.attn.0.cross.k`. A resblock is conv1 → (+ time projection) → norm/SiLU → conv2 → residual Add (with
   * the input or a 1×1 skip conv); down levels advance at each stride-2 conv, and the up path starts at the first
   * resblock whose skip conv reads a Concat (the UNet's skip connections). Resblocks after the last activation
   * saved for a skip connection and before the up path are `mid.res.K`; a decoder without a down path (the
   * VAE's) is named as an up path. The attention of a level is `<level>.attn.A`: a spatial transformer (proj.in …
   * proj.out, its blocks' layers named by role without the `attn.`: `q`, `cross.k`, `mlp.fc1`, under `blocks.J.`
   * when it holds several blocks) or an attention block without projections around it (`q`, `k`, `v`, `out`).
   */
  private unetNames(nodes: Node[], roles: Map<Node, LayerRole>, blocks: Map<Node, number>): Map<Node, string> {
    const names = new Map<Node, string>();
    const partOf = new Map<Node, { block: ResBlock; part: keyof ResBlock }>();
    for (const conv1 of nodes) {
      if (roles.get(conv1) !== 'res.conv' || partOf.has(conv1)) continue;
      const conv2 = this.nearestWeighted(conv1.outputs[0]!, 8);
      if (!conv2 || roles.get(conv2) !== 'res.conv' || partOf.has(conv2)) continue;
      const block: ResBlock = { conv1, conv2 };
      block.time = nodes.find((n) => roles.get(n) === 'res.time' && !partOf.has(n) && this.reaches(n.outputs[0]!, (m) => m.inputs.some((v) => v?.producer === conv1), 4));
      const residual = this.downstreamAdds(conv2.outputs[0]!, 2);
      block.skip = nodes.find((n) => roles.get(n) === 'res.skip' && !partOf.has(n) && [...this.downstreamAdds(n.outputs[0]!, 2)].some((add) => residual.has(add)));
      for (const part of ['conv1', 'conv2', 'time', 'skip'] as const) if (block[part]) partOf.set(block[part]!, { block, part });
    }
    if (partOf.size === 0) return names;
    // Skip connections: channel Concats whose operand is also used elsewhere (kept from the down path).
    const graphNodes = nodes[0]!.graph.nodes;
    const position = new Map(graphNodes.map((n, i) => [n, i]));
    let lastSkipSource = -1;
    for (const node of graphNodes) {
      if (!isOp(node, Op.Concat) || node.intAttr('axis', 0) !== 1) continue;
      for (const v of node.inputs) if (v?.producer && v.uses.length > 1) lastSkipSource = Math.max(lastSkipSource, position.get(v.producer)!);
    }
    // A decoder (the VAE's: up samplers, no down path) is all up path.
    type Stage = 'down' | 'mid' | 'up';
    let stage: Stage = !nodes.some((n) => roles.get(n) === 'down') && nodes.some((n) => roles.get(n) === 'up') ? 'up' : 'down';
    let level = 0;
    let resIndex = 0;
    let attnIndex = 0;
    const prefix = () => (stage === 'mid' ? 'mid' : `${stage}.${level}`);
    const nextLevel = () => {
      level++;
      resIndex = 0;
      attnIndex = 0;
    };
    const blockNames = new Map<ResBlock, string>();
    // Attention groups: a spatial transformer (from its proj.in to its proj.out) or one attention block.
    interface Group { name: string; blocks: number[]; wrapped: boolean }
    const groups = new Map<Node, Group>();
    let group: Group | undefined;
    for (const node of nodes) {
      const role = roles.get(node)!;
      const block = blocks.get(node);
      if (role === 'down' || role === 'up') {
        names.set(node, `${role}.${level}.${role}sample`);
        nextLevel();
        group = undefined;
        continue;
      }
      if (role === 'proj.in') group = { name: `${prefix()}.attn.${attnIndex++}`, blocks: [], wrapped: true };
      else if (block !== undefined && !(group && (group.wrapped || group.blocks.includes(block)))) group = { name: `${prefix()}.attn.${attnIndex++}`, blocks: [], wrapped: false };
      if (group && (role === 'proj.in' || role === 'proj.out' || block !== undefined)) {
        groups.set(node, group);
        if (block !== undefined && !group.blocks.includes(block)) group.blocks.push(block);
        if (role === 'proj.out') group = undefined;
        continue;
      }
      const membership = partOf.get(node);
      if (!membership) continue;
      group = undefined;
      let name = blockNames.get(membership.block);
      if (name === undefined) {
        const skipInput = membership.block.skip?.inputs[0]?.producer;
        const pastSkips = lastSkipSource >= 0 && position.get(membership.block.conv1)! > lastSkipSource;
        const next: Stage = skipInput && isOp(skipInput, Op.Concat) ? 'up' : stage === 'down' && pastSkips ? 'mid' : stage;
        if (next !== stage) {
          if (next === 'up') level = 0;
          stage = next;
          resIndex = 0;
          attnIndex = 0;
        }
        name = `${prefix()}.res.${resIndex++}`;
        blockNames.set(membership.block, name);
      }
      names.set(node, `${name}.${membership.part}`);
    }
    for (const [node, group] of groups) {
      const role = roles.get(node)!;
      const block = blocks.get(node);
      const inner = block !== undefined && group.blocks.length > 1 ? `blocks.${group.blocks.indexOf(block)}.` : '';
      names.set(node, `${group.name}.${inner}${role.startsWith('attn.') ? role.slice('attn.'.length) : role}`);
    }
    return names;
  }

  /** Whether `value` is the latent graph input, possibly through layout ops (a linear patch embedding of packed tokens). */
  private readsLatent(value: Value): boolean {
    let v: Value | undefined = value;
    for (let d = 0; v && d < 4; d++) {
      if (v === this.flow.latent) return true;
      const p: Node | undefined = v.producer;
      v = p && LAYOUT.has(p.opType) && !isOp(p, Op.Concat) ? p.inputs[0] : undefined;
    }
    return false;
  }

  /** Weighted nodes whose outputs reach `value` through elementwise ops only (bias, activation). */
  private elementwiseSources(value: Value): Set<Node> {
    const sources = new Set<Node>();
    const seen = new Set<Node>();
    const walk = (v: Value, depth: number) => {
      const p = v.producer;
      if (!p || depth > GELU_DEPTH || seen.has(p)) return;
      seen.add(p);
      if (isWeighted(p)) sources.add(p);
      else if (ELEMENTWISE.has(p.opType)) for (const i of p.inputs) if (i) walk(i, depth + 1);
    };
    walk(value, 0);
    return sources;
  }

  /** True when `value` reaches a weighted MatMul/Gemm through elementwise ops only (an MLP's first linear). */
  private feedsLinearElementwise(value: Value): boolean {
    const seen = new Set<Node>();
    const walk = (v: Value, depth: number): boolean =>
      depth <= GELU_DEPTH &&
      v.uses.some((u) => {
        const n = u.node;
        if (seen.has(n)) return false;
        seen.add(n);
        if (isWeighted(n)) return (isOp(n, Op.MatMul) || isOp(n, Op.Gemm)) && u.index === 0;
        return ELEMENTWISE.has(n.opType) && n.outputs.some((o) => walk(o, depth + 1));
      });
    return walk(value, 0);
  }

  /** The nearest weighted node downstream of `value` (breadth first, not through other weighted nodes). */
  private nearestWeighted(value: Value, depth: number): Node | undefined {
    let frontier = [value];
    const seen = new Set<Node>();
    for (let d = 0; d <= depth && frontier.length > 0; d++) {
      const next: Value[] = [];
      for (const v of frontier) {
        for (const use of v.uses) {
          if (seen.has(use.node)) continue;
          seen.add(use.node);
          if (isWeighted(use.node)) return use.node;
          next.push(...use.node.outputs);
        }
      }
      frontier = next;
    }
    return undefined;
  }

  /** Add nodes within `depth` hops downstream of `value` (through non-weighted nodes). */
  private downstreamAdds(value: Value, depth: number): Set<Node> {
    const adds = new Set<Node>();
    const walk = (v: Value, d: number) => {
      if (d > depth) return;
      for (const use of v.uses) {
        if (isWeighted(use.node)) continue;
        if (isOp(use.node, Op.Add)) adds.add(use.node);
        for (const o of use.node.outputs) walk(o, d + 1);
      }
    };
    walk(value, 0);
    return adds;
  }

  /**
   * Whether the layer's output is chunked (Split, or Slices): adaLN's shift/scale/gate. A timestep embedder's
   * output can be too (PixArt adds it to the final layer's table and chunks that), but it also feeds a SiLU.
   */
  private feedsChunks(node: Node): boolean {
    return this.reaches(node.outputs[0]!, (n) => isOp(n, Op.Split) || isOp(n, Op.Slice), 3);
  }

  private feedsConvOutput(node: Node): boolean {
    return this.reaches(node.outputs[0]!, (n) => isOp(n, Op.Add) && n.inputs.some((v) => v?.producer && isOp(v.producer, Op.Conv)), 4);
  }

  /** The final linear's output is unpatchified straight into the graph output: only layout ops (and a residual Add) in between. */
  private reachesGraphOutputDirectly(value: Value): boolean {
    const seen = new Set<Value>();
    const walk = (v: Value, depth: number): boolean => {
      if (v.isGraphOutput) return true;
      if (depth > 12 || seen.has(v)) return false;
      seen.add(v);
      return v.uses.some((u) => (isLayout(u.node) || isOp(u.node, Op.Add)) && !isWeighted(u.node) && u.node.outputs.some((o) => walk(o, depth + 1)));
    };
    return walk(value, 0);
  }

  private fromGelu(value: Value): boolean {
    return [...this.ancestors(value, 8, (n) => ELEMENTWISE.has(n.opType) || isGeluCore(n))].some((n) => isGeluCore(n));
  }

  /** Whether `value` is a normalized activation: LayerNorm/GroupNorm output, possibly modulated (·(1+scale)+shift). */
  private normalizedInput(value: Value): boolean {
    const seen = new Set<Node>();
    const walk = (v: Value, depth: number): boolean => {
      const p = v.producer;
      if (!p || depth > 6 || seen.has(p)) return false;
      seen.add(p);
      if (isNormalization(p) || isSpelledOutNorm(p)) return true;
      if (isOp(p, Op.Add) || isOp(p, Op.Mul) || isOp(p, Op.Reshape) || isOp(p, Op.Transpose)) return p.inputs.some((i) => i && walk(i, depth + 1));
      return false;
    };
    return walk(value, 0);
  }

  /** Whether a node satisfying `predicate` is reachable downstream of `value` within `depth` nodes (not past a weighted layer). */
  private reaches(value: Value, predicate: (n: Node) => boolean, depth: number): boolean {
    const seen = new Set<Node>();
    const walk = (v: Value, d: number): boolean =>
      v.uses.some((u) => {
        const n = u.node;
        if (seen.has(n) || d > depth) return false;
        seen.add(n);
        if (predicate(n)) return true;
        if (isWeighted(n)) return false;
        return n.outputs.some((o) => walk(o, d + 1));
      });
    return walk(value, 0);
  }

  /** Producer nodes upstream of `value` within `depth` hops (only through nodes `through` accepts). */
  private ancestors(value: Value, depth: number, through: (n: Node) => boolean): Set<Node> {
    const out = new Set<Node>();
    const walk = (v: Value, d: number) => {
      const p = v.producer;
      if (!p || d > depth || out.has(p) || !through(p)) return;
      out.add(p);
      for (const i of p.inputs) if (i) walk(i, d + 1);
    };
    walk(value, 0);
    return out;
  }
}

/** x for a value GroupNorm(x) (affine, token reshapes after it allowed; InstanceNormalization's group Reshape undone). */
function spatialNormSource(value: Value): Value | undefined {
  let v: Value | undefined = value;
  for (let d = 0; v && d < 8; d++) {
    const p: Node | undefined = v.producer;
    if (!p) return undefined;
    if (isSpatialNormalization(p)) {
      const grouped = p.input(0).producer;
      return isOp(p, Op.InstanceNormalization) && grouped && isOp(grouped, Op.Reshape) ? grouped.input(0) : p.input(0);
    }
    v = isOp(p, Op.Reshape) || isOp(p, Op.Transpose) ? p.inputs[0] : isAffine(p) ? p.inputs.find((i) => i && !i.initializer) : undefined;
  }
  return undefined;
}

/** The weighted node producing `value` through layout ops and constant affine ops (bias, output rescale). */
function projectionOf(value: Value): Node | undefined {
  let v: Value | undefined = value;
  for (let d = 0; v && d < 8; d++) {
    const p: Node | undefined = v.producer;
    if (!p) return undefined;
    if (isWeighted(p)) return p;
    v = isOp(p, Op.Reshape) || isOp(p, Op.Transpose) ? p.inputs[0] : isAffine(p) ? p.inputs.find((i) => i && !i.initializer) : undefined;
  }
  return undefined;
}

/** An Add, Mul or Div with one constant operand. */
function isAffine(node: Node): boolean {
  return (isOp(node, Op.Add) || isOp(node, Op.Mul) || isOp(node, Op.Div)) && node.inputs.length === 2 && node.inputs.filter((i) => i?.initializer).length === 1;
}
