/**
 * Layer discovery: finds the weighted layers of a diffusion model and their roles from the graph's structure,
 * never from names (torch exports call token-linear weights `onnx::MatMul_1234`). DiT: patch embed, timestep
 * and label embedders, adaLN modulation (the linear on SiLU(c) whose output is split into 6 or 2 chunks),
 * attention qkv / q,k,v / out-projection, MLP fc1 / fc2, final layer. UNet: conv in/out, resblock convs,
 * time projections, skip convs, down/up samplers, and the attention/MLP of its transformer blocks.
 * Discovery reads a float model; what a compile's later steps know of a layer comes from the stamps
 * `identity.ts` puts on its node.
 */
import type { Model, Node, Value } from '../ir/core.js';
import { DataType } from '../ir/dtype.js';
import { Op, isOp } from '../ir/ops.js';

/** What a layer does in the model. */
export type LayerRole =
  | 'embed.patch'
  | 'embed.time'
  | 'embed.label'
  | 'adaln'
  | 'attn.qkv'
  | 'attn.q'
  | 'attn.k'
  | 'attn.v'
  | 'attn.proj'
  | 'mlp.fc1'
  | 'mlp.fc2'
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
  'embed.patch', 'embed.time', 'embed.label', 'adaln', 'attn.qkv', 'attn.q', 'attn.k', 'attn.v', 'attn.proj',
  'mlp.fc1', 'mlp.fc2', 'final', 'conv.in', 'conv.out', 'res.conv', 'res.time', 'res.skip', 'down', 'up', 'other',
];

/** A weighted layer of the model. */
export interface Layer {
  /** Structural, stable name: `blocks.3.attn.qkv`, `embed.patch`, `final.linear`; UNet `down.1.res.0.conv1`, `mid.res.0.time`, `up.2.upsample`. */
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
  /** Transformer/res block index, when inside one. */
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
  const context = new DiscoveryContext(graph.inputs);
  const found: LayerGeometry[] = [];
  for (const node of graph.nodes) {
    const layer = layerGeometry(node);
    if (layer) found.push(layer);
  }
  const roles = new Map<Node, LayerRole>();
  for (const layer of found) roles.set(layer.node, context.roleOf(layer.node, roles));
  const nodes = found.map((l) => l.node);
  const blocks = context.assignBlocks(nodes, roles);
  const unetNames = context.unetNames(nodes, roles, graph.nodes);
  const counters = new Map<string, number>();
  return found.map((layer, index) => {
    const role = roles.get(layer.node)!;
    const block = blocks.get(layer.node);
    return { ...layer, role, block, index, name: unetNames.get(layer.node) ?? layerName(role, block, counters) };
  });
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

/** `blocks.3.attn.qkv` inside a block; `final.adaln` for an adaLN outside blocks; `embed.time.0` for repeated roles. */
function layerName(role: LayerRole, block: number | undefined, counters: Map<string, number>): string {
  const base = block !== undefined ? `blocks.${block}.${role}` : role === 'final' ? 'final.linear' : role === 'adaln' ? 'final.adaln' : role;
  const seen = counters.get(base) ?? 0;
  counters.set(base, seen + 1);
  const single = block !== undefined || SINGLETON_ROLES.has(role) || role === 'adaln';
  return single ? (seen === 0 ? base : `${base}.${seen}`) : `${base}.${seen}`;
}

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

/** The stored shape of a constant weight: an initializer, or a DequantizeLinear of constant codes. */
function weightDims(value: Value): readonly number[] | undefined {
  if (value.initializer) return value.initializer.dims;
  const dq = value.producer;
  if (dq && isOp(dq, Op.DequantizeLinear) && dq.inputs.every((v) => v === undefined || v.initializer)) return dq.input(0).initializer!.dims;
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

/** Nodes between fc1 and the GELU's Tanh/Erf in the spelled-out forms (bias Add, x³, ·0.0447, +x, ·√(2/π)). */
const GELU_DEPTH = 8;
const ELEMENTWISE = new Set<string>([Op.Add, Op.Mul, Op.Sub, Op.Div, Op.Pow, Op.Tanh, Op.Erf, Op.Sigmoid, Op.Relu, Op.Sqrt, Op.Cast]);
const LAYOUT = new Set<string>([Op.Reshape, Op.Transpose, Op.Unsqueeze, Op.Squeeze, Op.Flatten, Op.Identity, Op.Gather, Op.Slice, Op.Split, Op.Concat]);

/** Structural queries over one graph, memoized per call of discoverLayers. */
class DiscoveryContext {
  /** Float rank-4 graph inputs: the image (or latent) the model denoises. */
  private readonly imageInputs: Set<Value>;

  constructor(graphInputs: Value[]) {
    this.imageInputs = new Set(graphInputs.filter((v) => !v.initializer && (v.type?.shape?.length ?? 0) === 4 && v.type?.elemType === DataType.FLOAT));
  }

  /** The role of a weighted node; `earlier` holds the roles of the layers before it in topological order. */
  roleOf(node: Node, earlier: ReadonlyMap<Node, LayerRole>): LayerRole {
    if (isOp(node, Op.Gather)) return 'embed.label';
    const input = node.input(0);
    if (isOp(node, Op.Conv) || isOp(node, Op.ConvTranspose)) return this.convRole(node, input);
    if (this.isSilu(input) && this.feedsSplit(node)) return 'adaln';
    if (this.isSilu(input) && this.feedsConvOutput(node)) return 'res.time';
    if (this.fromSinusoid(input)) return 'embed.time';
    if (this.fromSoftmax(input)) return 'attn.proj';
    if (this.fromGelu(input)) return 'mlp.fc2';
    // Any other activation (Relu, SiLU, …): fc2 reads fc1's output through elementwise ops only.
    if ([...this.elementwiseSources(input)].some((n) => earlier.get(n) === 'mlp.fc1')) return 'mlp.fc2';
    if (this.normalizedInput(input)) {
      if (this.feedsPatchOutput(node)) return 'final';
      const out = node.outputs[0]!;
      const K = weightDims(node.input(1))!;
      const N = isOp(node, Op.Gemm) && node.intAttr('transB', 0) === 1 ? K[0]! : K[1]!;
      const inChannels = isOp(node, Op.Gemm) && node.intAttr('transB', 0) === 1 ? K[1]! : K[0]!;
      if (N === 3 * inChannels && this.reaches(out, (n) => isOp(n, Op.Softmax), 12)) return 'attn.qkv';
      const softmax = this.attentionPosition(out);
      if (softmax) return softmax;
      if (this.reaches(out, (n) => this.isGeluCore(n), GELU_DEPTH)) return 'mlp.fc1';
      if (this.feedsLinearElementwise(out)) return 'mlp.fc1';
    }
    if (this.reaches(node.outputs[0]!, (n) => this.isGeluCore(n), GELU_DEPTH)) return 'mlp.fc1';
    return 'other';
  }

  private convRole(node: Node, input: Value): LayerRole {
    const kernel = node.intsAttr('kernel_shape', weightDims(node.input(1))!.slice(2) as number[]);
    const strides = node.intsAttr('strides', kernel.map(() => 1));
    if (this.imageInputs.has(input)) return strides.every((s, i) => s === kernel[i] && s > 1) ? 'embed.patch' : 'conv.in';
    if (isOp(node, Op.ConvTranspose) || (input.producer && isOp(input.producer, Op.Resize))) return 'up';
    if (strides.some((s) => s > 1)) return 'down';
    if (this.reachesGraphOutputDirectly(node.outputs[0]!)) return 'conv.out';
    if (this.isSilu(input) || this.normalizedInput(input)) return 'res.conv';
    if (kernel.every((k) => k === 1)) return 'res.skip';
    return 'res.conv';
  }

  /**
   * Assigns block indices: a block starts at the attention input projections (a fused qkv, or a run of q/k/v
   * in whatever order the export lists them); its adaLN is the one modulating it.
   */
  assignBlocks(nodes: Node[], roles: Map<Node, LayerRole>): Map<Node, number> {
    const blocks = new Map<Node, number>();
    let block = -1;
    const inBlock: LayerRole[] = ['attn.qkv', 'attn.q', 'attn.k', 'attn.v', 'attn.proj', 'mlp.fc1', 'mlp.fc2'];
    const attentionInputs: LayerRole[] = ['attn.qkv', 'attn.q', 'attn.k', 'attn.v'];
    let previous: LayerRole | undefined;
    for (const node of nodes) {
      const role = roles.get(node)!;
      if (attentionInputs.includes(role) && (role === 'attn.qkv' || previous === undefined || !attentionInputs.includes(previous))) block++;
      if (block >= 0 && inBlock.includes(role)) blocks.set(node, block);
      if (inBlock.includes(role)) previous = role;
    }
    // adaLN layers belong to the block whose layers their chunks modulate.
    for (const node of nodes) {
      if (roles.get(node) !== 'adaln') continue;
      const consumer = nodes.find((other) => blocks.has(other) && this.modulatedBy(other.input(0), node));
      if (consumer) blocks.set(node, blocks.get(consumer)!);
    }
    return blocks;
  }

  /**
   * Structural UNet names: `down.1.res.0.conv1`, `down.0.downsample`, `up.2.res.1.skip`, `up.0.upsample`.
   * A resblock is conv1 → (+ time projection) → norm/SiLU → conv2 → residual Add (with the input or a 1×1
   * skip conv); down levels advance at each stride-2 conv, and the up path starts at the first resblock whose
   * skip conv reads a Concat (the UNet's skip connections). Resblocks after the last activation saved for a
   * skip connection and before the up path are `mid.res.K`.
   */
  unetNames(nodes: Node[], roles: Map<Node, LayerRole>, graphNodes: readonly Node[]): Map<Node, string> {
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
    const position = new Map(graphNodes.map((n, i) => [n, i]));
    let lastSkipSource = -1;
    for (const node of graphNodes) {
      if (!isOp(node, Op.Concat) || node.intAttr('axis', 0) !== 1) continue;
      for (const v of node.inputs) if (v?.producer && v.uses.length > 1) lastSkipSource = Math.max(lastSkipSource, position.get(v.producer)!);
    }
    let stage = 'down' as 'down' | 'mid' | 'up';
    let level = 0;
    let resIndex = 0;
    const blockNames = new Map<ResBlock, string>();
    for (const node of nodes) {
      const role = roles.get(node);
      if (role === 'down') {
        names.set(node, `down.${level}.downsample`);
        level++;
        resIndex = 0;
        continue;
      }
      if (role === 'up') {
        names.set(node, `up.${level}.upsample`);
        level++;
        resIndex = 0;
        continue;
      }
      const membership = partOf.get(node);
      if (!membership) continue;
      let name = blockNames.get(membership.block);
      if (name === undefined) {
        const skipInput = membership.block.skip?.inputs[0]?.producer;
        const pastSkips = lastSkipSource >= 0 && position.get(membership.block.conv1)! > lastSkipSource;
        const next = skipInput && isOp(skipInput, Op.Concat) ? 'up' : stage === 'down' && pastSkips ? 'mid' : stage;
        if (next !== stage) {
          if (next === 'up') level = 0;
          stage = next;
          resIndex = 0;
        }
        name = stage === 'mid' ? `mid.res.${resIndex++}` : `${stage}.${level}.res.${resIndex++}`;
        blockNames.set(membership.block, name);
      }
      names.set(node, `${name}.${membership.part}`);
    }
    return names;
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

  /** True when `value` = LN(x)·(1+scale)+shift with scale/shift chunks of `adaln`'s output. */
  private modulatedBy(value: Value, adaln: Node): boolean {
    return this.ancestors(value, 6).has(adaln);
  }

  private isSilu(value: Value): boolean {
    const mul = value.producer;
    if (!mul || !isOp(mul, Op.Mul)) return false;
    const [a, b] = [mul.inputs[0], mul.inputs[1]];
    const sig = (x: Value | undefined, y: Value | undefined) => x?.producer !== undefined && isOp(x.producer, Op.Sigmoid) && x.producer.inputs[0] === y;
    return sig(a, b) || sig(b, a);
  }

  private feedsSplit(node: Node): boolean {
    return this.reaches(node.outputs[0]!, (n) => isOp(n, Op.Split) || (isOp(n, Op.Slice) && this.isChunking(n)), 3);
  }

  private isChunking(node: Node): boolean {
    return node.outputs[0]!.uses.length > 0;
  }

  private feedsConvOutput(node: Node): boolean {
    return this.reaches(node.outputs[0]!, (n) => isOp(n, Op.Add) && n.inputs.some((v) => v?.producer && isOp(v.producer, Op.Conv)), 4);
  }

  private feedsPatchOutput(node: Node): boolean {
    // The final linear's output is unpatchified straight into the graph output: only layout ops in between.
    return this.reachesGraphOutputDirectly(node.outputs[0]!);
  }

  private reachesGraphOutputDirectly(value: Value): boolean {
    const seen = new Set<Value>();
    const walk = (v: Value, depth: number): boolean => {
      if (v.isGraphOutput) return true;
      if (depth > 12 || seen.has(v)) return false;
      seen.add(v);
      return v.uses.some((u) => (LAYOUT.has(u.node.opType) || isOp(u.node, Op.Add)) && !isWeighted(u.node) && u.node.outputs.some((o) => walk(o, depth + 1)));
    };
    return walk(value, 0);
  }

  private fromSinusoid(value: Value): boolean {
    const ancestors = this.ancestors(value, 10);
    const hasTrig = [...ancestors].some((n) => isOp(n, Op.Sin) || isOp(n, Op.Cos));
    // A normalization on the way means a token path (a block), not the timestep MLP.
    return hasTrig && ![...ancestors].some((n) => isNormalization(n) || isOp(n, Op.ReduceMean) || isOp(n, Op.Softmax));
  }

  private fromSoftmax(value: Value): boolean {
    // attn @ V, then head merge: only MatMul (without weights) and layout ops in between.
    const seen = new Set<Node>();
    const walk = (v: Value, depth: number): boolean => {
      const p = v.producer;
      if (!p || depth > 8 || seen.has(p)) return false;
      seen.add(p);
      if (isOp(p, Op.Softmax)) return true;
      if (isOp(p, Op.MatMul) && !isWeighted(p)) return p.inputs.some((i) => i && walk(i, depth + 1));
      if (LAYOUT.has(p.opType)) return walk(p.input(0), depth + 1);
      return false;
    };
    return walk(value, 0);
  }

  private fromGelu(value: Value): boolean {
    return [...this.ancestors(value, 8, (n) => ELEMENTWISE.has(n.opType) || this.isGeluCore(n))].some((n) => this.isGeluCore(n));
  }

  private isGeluCore(node: Node): boolean {
    return isOp(node, Op.Tanh) || isOp(node, Op.Erf) || isOp(node, Op.Gelu) || isOp(node, Op.FastGelu) || isOp(node, Op.BiasGelu) || isOp(node, Op.QuickGelu);
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

  /** For separate q/k/v projections: which operand of the attention MatMuls this output becomes. */
  private attentionPosition(value: Value): LayerRole | undefined {
    const seen = new Set<Value>();
    const walk = (v: Value, depth: number): LayerRole | undefined => {
      if (depth > 8 || seen.has(v)) return undefined;
      seen.add(v);
      for (const use of v.uses) {
        const n = use.node;
        if (isOp(n, Op.MatMul) && !isWeighted(n)) {
          const next = n.outputs[0]!;
          const softmaxAfter = this.reaches(next, (m) => isOp(m, Op.Softmax), 3);
          if (softmaxAfter) return use.index === 0 ? 'attn.q' : 'attn.k';
          if (this.fromSoftmax(n.inputs[0]!) && use.index === 1) return 'attn.v';
        }
        if (LAYOUT.has(n.opType) || isOp(n, Op.Add) || isOp(n, Op.Mul) || isOp(n, Op.Div)) {
          for (const o of n.outputs) {
            const r = walk(o, depth + 1);
            if (r) return r;
          }
        }
      }
      return undefined;
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

  /** Producer nodes upstream of `value` within `depth` hops (optionally only through nodes `through` accepts). */
  private ancestors(value: Value, depth: number, through: (n: Node) => boolean = () => true): Set<Node> {
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

function isNormalization(node: Node): boolean {
  return isOp(node, Op.LayerNormalization) || isOp(node, Op.GroupNormalization) || isOp(node, Op.InstanceNormalization) || isOp(node, Op.SkipLayerNormalization);
}

/** (x − mean(x)) / sqrt(var + eps), as exports before opset 17 spell LayerNorm: a Div (or Mul by a Reciprocal) of Sub(x, ReduceMean(x)). */
function isSpelledOutNorm(node: Node): boolean {
  if (!isOp(node, Op.Div) && !isOp(node, Op.Mul)) return false;
  return node.inputs.some((v) => {
    const sub = v?.producer;
    return sub !== undefined && isOp(sub, Op.Sub) && sub.inputs[1]?.producer !== undefined && isOp(sub.inputs[1].producer, Op.ReduceMean) && sub.inputs[1].producer.inputs[0] === sub.inputs[0];
  });
}

function isWeighted(node: Node): boolean {
  const weight = node.inputs[1];
  return (isOp(node, Op.MatMul) || isOp(node, Op.Gemm) || isOp(node, Op.Conv)) && weight !== undefined && weightDims(weight) !== undefined;
}
