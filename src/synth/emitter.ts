/** Builds graphs node by node in the order a torch export lists them, with its scoped node and value names. */
import { Model, Node, Value, type Attribute, type Graph } from '../ir/core.js';
import { Op, type OpType } from '../ir/ops.js';
import { Tensor } from '../ir/tensor.js';

/** Appends nodes in export order (never re-placed) with torch-style scoped names (`/blocks.3/attn/Gather_2`). */
export class Emitter {
  private readonly counts = new Map<string, number>();
  private anonymous = 0;

  constructor(private readonly graph: Graph) {}

  /** Appends one node; returns its first output (named `<node>_output_0`, or `outputName`). */
  op(scope: string, opType: OpType, inputs: (Value | undefined)[], attributes: Record<string, Attribute> = {}, outputName?: string): Value {
    return this.node(scope, opType, inputs, attributes, 1, outputName ? [outputName] : undefined).outputs[0]!;
  }

  /** A Constant node holding `tensor`. */
  constant(scope: string, tensor: Tensor): Value {
    return this.op(scope, Op.Constant, [], { value: { kind: 'tensor', value: tensor } });
  }

  /** Split along axis 1 into chunks of the given sizes (opset 13+: sizes as an input). */
  split(scope: string, input: Value, sizes: number[]): Value[] {
    return this.node(scope, Op.Split, [input, this.constant(scope, i64s(sizes))], { axis: int(1) }, sizes.length).outputs;
  }

  /** SiLU as the exporter spells it: x · Sigmoid(x). */
  silu(scope: string, input: Value): Value {
    return this.op(scope, Op.Mul, [input, this.op(scope, Op.Sigmoid, [input])]);
  }

  /** GELU, tanh approximation, spelled out as before opset 20: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))). */
  geluTanh(scope: string, x: Value): Value {
    const f = (value: number) => this.constant(scope, Tensor.fromFloat32([], Float32Array.of(value)));
    const cube = this.op(scope, Op.Mul, [x, this.op(scope, Op.Mul, [x, x])]);
    const inner = this.op(scope, Op.Add, [x, this.op(scope, Op.Mul, [f(0.044715), cube])]);
    const tanh = this.op(scope, Op.Tanh, [this.op(scope, Op.Mul, [f(Math.sqrt(2 / Math.PI)), inner])]);
    const gated = this.op(scope, Op.Mul, [x, this.op(scope, Op.Add, [f(1), tanh])]);
    return this.op(scope, Op.Mul, [f(0.5), gated]);
  }

  /** Unsqueeze(axis 0) of a scalar, with the exporter's unscoped `Constant_N` → `onnx::Unsqueeze_N` axes. */
  unsqueeze0(scalar: Value): Value {
    const id = this.anonymous++;
    const axes = this.node('', Op.Constant, [], { value: { kind: 'tensor', value: i64s([0]) } }, 1, [`onnx::Unsqueeze_${id}`], `Constant_${id}`).outputs[0]!;
    const scope = scalar.producer ? scalar.producer.name.slice(0, scalar.producer.name.lastIndexOf('/')) : '';
    return this.op(scope, Op.Unsqueeze, [scalar, axes]);
  }

  private node(scope: string, opType: OpType, inputs: (Value | undefined)[], attributes: Record<string, Attribute>, outputs: number, outputNames?: string[], fixedName?: string): Node {
    let name = fixedName;
    if (name === undefined) {
      const key = `${scope}/${opType}`;
      const n = this.counts.get(key) ?? 0;
      this.counts.set(key, n + 1);
      name = n === 0 ? key : `${key}_${n}`;
    }
    const node = new Node(this.graph, name, opType, '');
    inputs.forEach((v, i) => node.setInput(i, v));
    for (let i = 0; i < outputs; i++) {
      const valueName = outputNames?.[i] ?? `${name}_output_${i}`;
      this.graph.claimName(valueName);
      const value = new Value(this.graph, valueName, undefined);
      value.producer = node;
      value.producerIndex = i;
      node.outputs.push(value);
    }
    for (const [key, attribute] of Object.entries(attributes)) node.attributes.set(key, attribute);
    this.graph.appendNode(node);
    return node;
  }
}

/** An int attribute. */
export function int(value: number): Attribute {
  return { kind: 'int', value };
}

/** An ints attribute. */
export function ints(value: number[]): Attribute {
  return { kind: 'ints', value };
}

/** A float attribute. */
export function float(value: number): Attribute {
  return { kind: 'float', value };
}

/** A 1-D int64 tensor. */
export function i64s(values: number[]): Tensor {
  return Tensor.fromInt64([values.length], values);
}

/** The finished model as a torch exporter writes it: IR 8, opset 17, producer pytorch `producerVersion`. */
export function exportedModel(graph: Graph, producerVersion: string, docString: string): Model {
  const model = new Model(graph);
  model.irVersion = 8;
  model.producerName = 'pytorch';
  model.producerVersion = producerVersion;
  model.opsetImports.set('', 17);
  model.docString = docString;
  return model;
}
