import type { DataType } from './dtype.js';
import { IrError } from './errors.js';
import type { Tensor } from './tensor.js';

/** A dimension: a number when static, a symbolic name (`batch`) or null when unknown. */
export type Dim = number | string | null;

/** The type of a value: element type and (possibly unknown) shape. */
export interface ValueType {
  elemType: DataType;
  /** Undefined when the rank is unknown. */
  shape?: Dim[];
}

/** An attribute value; `int`/`ints` hold bigint only where an int64 does not fit a double exactly. */
export type Attribute =
  | { kind: 'int'; value: number | bigint }
  | { kind: 'float'; value: number }
  | { kind: 'string'; value: string }
  | { kind: 'tensor'; value: Tensor }
  | { kind: 'graph'; value: OpaqueGraph }
  | { kind: 'ints'; value: (number | bigint)[] }
  | { kind: 'floats'; value: number[] }
  | { kind: 'strings'; value: string[] };

/**
 * A subgraph (If/Loop/Scan body), kept as its serialized form: diffusion exports rarely have them and
 * no pass rewrites them. The names it reads from the outer scope are the node's implicit inputs.
 */
export interface OpaqueGraph {
  encoded: Uint8Array;
  /** Names from enclosing scopes that the subgraph reads. */
  freeNames: string[];
}

/** One use of a value: input slot `index` of `node` (index -1 for an implicit subgraph capture). */
export interface Use {
  node: Node;
  index: number;
}

/** An SSA value: produced once (by a node, or as graph input / initializer), used by any number of nodes. */
export class Value {
  /** Set when this value is produced by a node. */
  producer: Node | undefined;
  /** Output slot of the producer. */
  producerIndex = -1;
  /** The constant bound to this value when it is an initializer. */
  initializer: Tensor | undefined;
  readonly uses: Use[] = [];
  docString: string | undefined;

  constructor(
    readonly graph: Graph,
    public name: string,
    public type: ValueType | undefined,
  ) {}

  /** True for graph initializers (constants). */
  get isConstant(): boolean {
    return this.initializer !== undefined;
  }

  /** True for graph outputs. */
  get isGraphOutput(): boolean {
    return this.graph.outputs.includes(this);
  }

  /** Redirects every use of this value (and graph outputs) to `replacement`. */
  replaceAllUsesWith(replacement: Value): void {
    if (replacement === this) return;
    for (const use of [...this.uses]) {
      if (use.index < 0) throw new IrError('invalid-argument', `value '${this.name}' is captured by a subgraph of '${use.node.name}' and cannot be replaced`);
      use.node.setInput(use.index, replacement);
    }
    const outputs = this.graph.outputs;
    for (let i = 0; i < outputs.length; i++) if (outputs[i] === this) outputs[i] = replacement;
  }
}

/** An operator application. Inputs may be undefined for omitted optional inputs. */
export class Node {
  readonly inputs: (Value | undefined)[] = [];
  readonly outputs: Value[] = [];
  /** Outer-scope values read by subgraph attributes. */
  readonly implicitInputs: Value[] = [];
  readonly attributes = new Map<string, Attribute>();
  /**
   * Annotations that belong to what the node does rather than to its op (a layer's identity): kept across
   * save/load, and copied to the node that replaces this one (`NodeSpec.replaces`).
   */
  readonly metadata = new Map<string, string>();
  docString: string | undefined;

  constructor(
    readonly graph: Graph,
    public name: string,
    readonly opType: string,
    readonly domain: string,
  ) {}

  /** Sets input slot `index`, keeping use-lists exact. */
  setInput(index: number, value: Value | undefined): void {
    const previous = this.inputs[index];
    if (previous) removeUse(previous, this, index);
    while (this.inputs.length <= index) this.inputs.push(undefined);
    this.inputs[index] = value;
    if (value) value.uses.push({ node: this, index });
  }

  /** The input at `index`, which must be present. */
  input(index: number): Value {
    const value = this.inputs[index];
    if (!value) throw new IrError('invalid-argument', `node '${this.name}' (${this.opType}) has no input ${index}`);
    return value;
  }

  /** An int attribute, or `fallback` when absent. */
  intAttr(name: string, fallback: number): number {
    const a = this.attributes.get(name);
    return a?.kind === 'int' ? Number(a.value) : fallback;
  }

  /** A float attribute, or `fallback` when absent. */
  floatAttr(name: string, fallback: number): number {
    const a = this.attributes.get(name);
    return a?.kind === 'float' ? a.value : fallback;
  }

  /** An ints attribute, or `fallback` when absent. */
  intsAttr(name: string, fallback: number[]): number[] {
    const a = this.attributes.get(name);
    return a?.kind === 'ints' ? a.value.map(Number) : fallback;
  }

  /** A string attribute, or `fallback` when absent. */
  stringAttr(name: string, fallback: string): string {
    const a = this.attributes.get(name);
    return a?.kind === 'string' ? a.value : fallback;
  }
}

function removeUse(value: Value, node: Node, index: number): void {
  const i = value.uses.findIndex((u) => u.node === node && u.index === index);
  if (i >= 0) value.uses.splice(i, 1);
}

/** What `Graph.addNode` takes. */
export interface NodeSpec {
  opType: string;
  domain?: string;
  inputs: (Value | undefined)[];
  /** Output names (made unique) or a count of outputs to name after the node. */
  outputs: string[] | number;
  attributes?: Record<string, Attribute>;
  /** Node name (made unique); defaults to the op type. */
  name?: string;
  /** Insert before this node; default: right after the last producer of an input (keeps topological order). */
  before?: Node;
  /** The node this one takes the place of (the caller rewires and removes it): inserted before it, with its metadata. */
  replaces?: Node;
}

/** A computation graph: ordered nodes (always kept topologically sorted), inputs, outputs, initializers. */
export class Graph {
  readonly nodes: Node[] = [];
  readonly inputs: Value[] = [];
  readonly outputs: Value[] = [];
  /** Initializers by name, in file order. */
  readonly initializers = new Map<string, Value>();
  docString: string | undefined;
  private readonly names = new Set<string>();
  private readonly nodeNames = new Set<string>();

  constructor(public name: string) {}

  /** Creates a free-standing value with a fresh unique name derived from `base`. */
  createValue(base: string, type?: ValueType): Value {
    return new Value(this, this.uniqueName(base), type);
  }

  /** Registers a value name as taken; throws on duplicates (SSA). */
  claimName(name: string): void {
    if (this.names.has(name)) throw new IrError('malformed-model', `value '${name}' is defined more than once`);
    this.names.add(name);
  }

  /** A value name not used yet in this graph, derived deterministically from `base`. */
  uniqueName(base: string): string {
    let name = base;
    for (let i = 1; this.names.has(name); i++) name = `${base}_${i}`;
    this.names.add(name);
    return name;
  }

  /** A node name not used yet, derived deterministically from `base`. */
  uniqueNodeName(base: string): string {
    let name = base;
    for (let i = 1; this.nodeNames.has(name); i++) name = `${base}_${i}`;
    this.nodeNames.add(name);
    return name;
  }

  /** Adds an initializer value holding `tensor`. */
  addInitializer(name: string, tensor: Tensor): Value {
    const value = new Value(this, this.uniqueName(name), { elemType: tensor.dtype, shape: [...tensor.dims] });
    value.initializer = tensor;
    this.initializers.set(value.name, value);
    return value;
  }

  /** Adds a graph input. */
  addInput(name: string, type: ValueType): Value {
    const value = new Value(this, this.uniqueName(name), type);
    this.inputs.push(value);
    return value;
  }

  /** Adds a node; it is placed so that the node list stays topologically sorted. */
  addNode(spec: NodeSpec): Node {
    const node = new Node(this, this.uniqueNodeName(spec.name ?? spec.opType), spec.opType, spec.domain ?? '');
    spec.inputs.forEach((v, i) => node.setInput(i, v));
    const outputNames = typeof spec.outputs === 'number' ? Array.from({ length: spec.outputs }, (_, i) => `${node.name}_out${i}`) : spec.outputs;
    outputNames.forEach((name, i) => {
      const value = new Value(this, this.uniqueName(name), undefined);
      value.producer = node;
      value.producerIndex = i;
      node.outputs.push(value);
    });
    for (const [key, attribute] of Object.entries(spec.attributes ?? {})) node.attributes.set(key, attribute);
    for (const [key, value] of spec.replaces?.metadata ?? []) node.metadata.set(key, value);
    const before = spec.before ?? spec.replaces;
    let position: number;
    if (before) {
      position = this.nodes.indexOf(before);
      if (position < 0) throw new IrError('invalid-argument', `node '${before.name}' is not in graph '${this.name}'`);
    } else {
      position = 0;
      for (const input of spec.inputs) if (input?.producer) position = Math.max(position, this.nodes.indexOf(input.producer) + 1);
    }
    this.nodes.splice(position, 0, node);
    return node;
  }

  /** Appends an already-built node at the end (serde uses this; callers keep order valid). */
  appendNode(node: Node): void {
    this.nodeNames.add(node.name);
    this.nodes.push(node);
  }

  /** Removes a node whose outputs are unused; drops its input uses. */
  removeNode(node: Node): void {
    for (const output of node.outputs) {
      if (output.uses.length > 0 || output.isGraphOutput) {
        throw new IrError('invalid-argument', `cannot remove '${node.name}': output '${output.name}' is still used`);
      }
      this.names.delete(output.name);
    }
    node.inputs.forEach((_, i) => node.setInput(i, undefined));
    for (const value of node.implicitInputs) {
      const i = value.uses.findIndex((u) => u.node === node && u.index === -1);
      if (i >= 0) value.uses.splice(i, 1);
    }
    const position = this.nodes.indexOf(node);
    if (position >= 0) this.nodes.splice(position, 1);
    this.nodeNames.delete(node.name);
  }

  /** Removes an initializer that nothing uses. */
  removeInitializer(value: Value): void {
    if (value.uses.length > 0 || value.isGraphOutput) throw new IrError('invalid-argument', `initializer '${value.name}' is still used`);
    this.initializers.delete(value.name);
    this.names.delete(value.name);
  }

  /** Deletes nodes and initializers that do not contribute to a graph output. Returns how many were removed. */
  removeDeadCode(): { nodes: number; initializers: number } {
    let nodes = 0;
    for (let i = this.nodes.length - 1; i >= 0; i--) {
      const node = this.nodes[i]!;
      if (node.outputs.every((o) => o.uses.length === 0 && !o.isGraphOutput)) {
        this.removeNode(node);
        nodes++;
      }
    }
    let initializers = 0;
    for (const value of [...this.initializers.values()]) {
      if (value.uses.length === 0 && !value.isGraphOutput && !this.inputs.includes(value)) {
        this.removeInitializer(value);
        initializers++;
      }
    }
    return { nodes, initializers };
  }

  /**
   * Re-sorts nodes topologically (stable: keeps the current order where dependencies allow — of the ready nodes
   * the earliest comes first, so an order that is already topological is kept as it is). O(N log N): ready
   * nodes wait in a min-heap of their current positions.
   */
  sortTopologically(): void {
    const nodes = this.nodes;
    const position = new Map<Node, number>();
    nodes.forEach((node, i) => position.set(node, i));
    const indegree = new Int32Array(nodes.length);
    const ready = new MinHeap();
    nodes.forEach((node, i) => {
      const producers = new Set<Node>();
      for (const v of node.inputs) if (v?.producer) producers.add(v.producer);
      for (const v of node.implicitInputs) if (v.producer) producers.add(v.producer);
      indegree[i] = producers.size;
      if (producers.size === 0) ready.push(i);
    });
    const order: Node[] = [];
    while (ready.size > 0) {
      const node = nodes[ready.pop()]!;
      order.push(node);
      const consumers = new Set<Node>();
      for (const output of node.outputs) for (const use of output.uses) consumers.add(use.node);
      for (const consumer of consumers) {
        const at = position.get(consumer)!;
        if (--indegree[at]! === 0) ready.push(at);
      }
    }
    if (order.length !== nodes.length) throw new IrError('verify', `graph '${this.name}' has a cycle`);
    nodes.splice(0, nodes.length, ...order);
  }

  /**
   * A copy of this graph with new values and nodes (same names, order, types, attributes and doc strings) over
   * the same tensors: tensors are immutable, so none is copied or read (deferred ones stay deferred). Uses are
   * rebuilt in node order, as decoding the serialized graph would.
   */
  clone(): Graph {
    return this.copy(this.nodes, [...this.initializers.values()], new Map(), this.outputs);
  }

  /**
   * The part of this graph that computes `outputs` when the values named in `cut` are given — for running a model
   * stage by stage on cached intermediate values: the cut values become graph inputs (typed as given, after the
   * graph's own inputs, which all stay; a cut graph input or initializer stays what it is), the nodes kept are those `outputs` need and no cut value provides, and
   * only the initializers they read are kept (shared, like clone's). The outputs are exactly `outputs`.
   */
  slice(cut: ReadonlyMap<string, ValueType>, outputs: string[]): Graph {
    const wanted = outputs.map((name) => {
      const value = this.findValue(name);
      if (!value) throw new IrError('invalid-argument', `cannot slice graph '${this.name}' to '${name}': no such value`);
      return value;
    });
    const needed = new Set<Node>();
    const stack = [...wanted];
    while (stack.length > 0) {
      const value = stack.pop()!;
      const node = value.producer;
      if (!node || cut.has(value.name) || needed.has(node)) continue;
      needed.add(node);
      for (const input of node.inputs) if (input) stack.push(input);
      stack.push(...node.implicitInputs);
    }
    const nodes = this.nodes.filter((n) => needed.has(n));
    const read = new Set(nodes.flatMap((n) => [...n.inputs, ...n.implicitInputs]));
    const initializers = [...this.initializers.values()].filter((v) => read.has(v) || wanted.includes(v));
    return this.copy(nodes, initializers, cut, wanted);
  }

  /** A new graph over `nodes` (in order) and `initializers` (tensors shared), the graph inputs plus `cut` as inputs. */
  private copy(nodes: Node[], initializers: Value[], cut: ReadonlyMap<string, ValueType>, outputs: Value[]): Graph {
    const copy = new Graph(this.name);
    copy.docString = this.docString;
    const values = new Map<Value, Value>();
    const cloneValue = (value: Value): Value => {
      const twin = new Value(copy, value.name, value.type && cloneType(value.type));
      twin.docString = value.docString;
      if (value.name !== '') copy.claimName(value.name);
      values.set(value, twin);
      return twin;
    };
    for (const value of initializers) {
      const twin = cloneValue(value);
      twin.initializer = value.initializer;
      copy.initializers.set(twin.name, twin);
    }
    for (const input of this.inputs) copy.inputs.push(values.get(input) ?? cloneValue(input));
    for (const [name, type] of cut) {
      const value = this.findValue(name);
      if (!value) throw new IrError('invalid-argument', `cannot slice graph '${this.name}' at '${name}': no such value`);
      if (!value.producer) continue; // a graph input or initializer: given already
      const twin = cloneValue(value);
      twin.type = cloneType(type);
      copy.inputs.push(twin);
    }
    const twinOf = (value: Value): Value => {
      const twin = values.get(value);
      if (!twin) throw new IrError('malformed-model', `value '${value.name}' is read before it is defined`);
      return twin;
    };
    for (const node of nodes) {
      const twin = new Node(copy, node.name, node.opType, node.domain);
      twin.docString = node.docString;
      node.inputs.forEach((input, i) => twin.setInput(i, input && twinOf(input)));
      for (const value of node.implicitInputs) {
        const captured = twinOf(value);
        twin.implicitInputs.push(captured);
        captured.uses.push({ node: twin, index: -1 });
      }
      for (const output of node.outputs) {
        if (cut.has(output.name)) throw new IrError('invalid-argument', `cannot slice graph '${this.name}' at '${output.name}': '${node.name}', which produces it, is needed for another output`);
        const value = cloneValue(output);
        value.producer = twin;
        value.producerIndex = output.producerIndex;
        twin.outputs.push(value);
      }
      for (const [key, attribute] of node.attributes) twin.attributes.set(key, cloneAttribute(attribute));
      for (const [key, value] of node.metadata) twin.metadata.set(key, value);
      copy.appendNode(twin);
    }
    for (const output of outputs) copy.outputs.push(twinOf(output));
    return copy;
  }

  /** Finds a value by name among inputs, initializers and node outputs. */
  findValue(name: string): Value | undefined {
    for (const v of this.inputs) if (v.name === name) return v;
    const init = this.initializers.get(name);
    if (init) return init;
    for (const node of this.nodes) for (const o of node.outputs) if (o.name === name) return o;
    return undefined;
  }
}

/** A binary min-heap of non-negative integers (node positions, for sortTopologically). */
class MinHeap {
  private readonly items: number[] = [];

  get size(): number {
    return this.items.length;
  }

  push(value: number): void {
    const items = this.items;
    let i = items.length;
    items.push(value);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (items[parent]! <= value) break;
      items[i] = items[parent]!;
      i = parent;
    }
    items[i] = value;
  }

  /** Removes and returns the smallest value (the heap must not be empty). */
  pop(): number {
    const items = this.items;
    const top = items[0]!;
    const last = items.pop()!;
    if (items.length === 0) return top;
    let i = 0;
    for (;;) {
      const left = 2 * i + 1;
      if (left >= items.length) break;
      const child = left + 1 < items.length && items[left + 1]! < items[left]! ? left + 1 : left;
      if (items[child]! >= last) break;
      items[i] = items[child]!;
      i = child;
    }
    items[i] = last;
    return top;
  }
}

function cloneType(type: ValueType): ValueType {
  return { elemType: type.elemType, ...(type.shape ? { shape: [...type.shape] } : {}) };
}

/** An attribute with its lists copied; tensors and serialized subgraphs are immutable and shared. */
function cloneAttribute(attribute: Attribute): Attribute {
  switch (attribute.kind) {
    case 'ints':
      return { kind: 'ints', value: [...attribute.value] };
    case 'floats':
      return { kind: 'floats', value: [...attribute.value] };
    case 'strings':
      return { kind: 'strings', value: [...attribute.value] };
    case 'graph':
      return { kind: 'graph', value: { encoded: attribute.value.encoded, freeNames: [...attribute.value.freeNames] } };
    default:
      return { ...attribute };
  }
}

/** A whole ONNX model: metadata, opset imports and the main graph. */
export class Model {
  irVersion = 8;
  producerName = '';
  producerVersion = '';
  domain = '';
  modelVersion = 0;
  docString: string | undefined;
  /** Opset version by domain ('' is ai.onnx). */
  readonly opsetImports = new Map<string, number>();
  readonly metadataProps = new Map<string, string>();
  /** Model-local functions, kept serialized (no pass rewrites them). */
  readonly functions: Uint8Array[] = [];
  /** Folder of the file it was loaded from: external data resolves against it. */
  baseDir: string | undefined;

  constructor(readonly graph: Graph) {}

  /** The ai.onnx opset version. */
  get opset(): number {
    return this.opsetImports.get('') ?? this.opsetImports.get('ai.onnx') ?? 0;
  }

  /**
   * A copy to rewrite independently: the graph is cloned (Graph.clone: no tensor is copied or read), metadata,
   * opset imports and functions are copied.
   */
  clone(): Model {
    return this.withGraph(this.graph.clone());
  }

  /** The model restricted to what computes `outputs` from the values in `cut` (Graph.slice), metadata as clone's. */
  slice(cut: ReadonlyMap<string, ValueType>, outputs: string[]): Model {
    return this.withGraph(this.graph.slice(cut, outputs));
  }

  private withGraph(graph: Graph): Model {
    const copy = new Model(graph);
    copy.irVersion = this.irVersion;
    copy.producerName = this.producerName;
    copy.producerVersion = this.producerVersion;
    copy.domain = this.domain;
    copy.modelVersion = this.modelVersion;
    copy.docString = this.docString;
    for (const [domain, version] of this.opsetImports) copy.opsetImports.set(domain, version);
    for (const [key, value] of this.metadataProps) copy.metadataProps.set(key, value);
    copy.functions.push(...this.functions);
    copy.baseDir = this.baseDir;
    return copy;
  }

  /** Raises the opset of `domain` to at least `version` (never lowers it). */
  requireOpset(domain: string, version: number): void {
    const key = domain === 'ai.onnx' ? '' : domain;
    if ((this.opsetImports.get(key) ?? 0) < version) this.opsetImports.set(key, version);
  }
}
