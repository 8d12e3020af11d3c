/**
 * convert-float16: rewrites float32 compute to float16, except a keep set (op types, the decomposed-norm
 * pattern, the timestep-embedding region) and ops that cannot take float16, with a Cast at every boundary
 * between the two; graph inputs and outputs stay float32, so the model's I/O contract does not change.
 * Why: half the float weight bytes and fp16 kernels on GPUs, while numerically sensitive ops keep float32.
 * Requires: nothing (value types are re-inferred); runs after quantization, so Q/DQ nodes already exist.
 *
 * Q/DQ stay float32 (scales and zero points exact; QuantizeLinear takes float16 only from opset 19): a
 * quantized layer reads `DQ(codes) → Cast(f16)`, its activation `Cast(f32) → Q → DQ → Cast(f16)`. Measured on
 * the W8A8 dit-digits model in ORT CPU 1.30: this form still fuses into 24 MatMulIntegerToFloat; with float16
 * scales (opset 21, DQ emitting float16) ORT accepts the model but fuses none and runs ~2.8× slower. Fake-quant
 * (Div/Round/Clip/Mul) runs in float16: every int8 code (|q| ≤ 128 < 2048) is exact there.
 */
import type { Attribute, Model, Node, Value } from '../ir/core.js';
import { DataType } from '../ir/dtype.js';
import { inferShapes } from '../ir/infer-shapes.js';
import { layersOf } from '../quant/identity.js';
import { findTimestepInput } from '../quant/diffusion-inputs.js';
import { MS_DOMAIN, Op, isOp, opSchema, type OpType } from '../ir/ops.js';
import { floatToHalf, Tensor } from '../ir/tensor.js';
import { definePass } from './pass.js';

/** Structural regions a keep list may name besides op types. */
export const FLOAT16_REGIONS = {
  /** ReduceMean → Sub → Pow/Mul → ReduceMean → Add(ε) → Sqrt → Div/Mul: LayerNorm/GroupNorm written out. */
  'decomposed-norm': 'normalizations written out as ReduceMean/Sub/Pow/Sqrt/Div',
  /** The sinusoidal timestep features (Sin/Cos/Exp of t) and the time MLP (`embed.time` layers). */
  'embed.time': 'the sinusoidal timestep embedding and the time MLP',
} as const;

/** A region name. */
export type Float16Region = keyof typeof FLOAT16_REGIONS;

/** The keep list of `precision fp16` when none is written. */
export const DEFAULT_FLOAT16_KEEP: readonly string[] = [Op.LayerNormalization, Op.InstanceNormalization, Op.GroupNormalization, 'decomposed-norm', Op.Softmax, 'embed.time'];

/** The keep-list word for an empty keep set (pipeline lists cannot be empty). */
export const KEEP_NONE = 'none';

/** Ops that stay float32 whatever the keep list says, and why (reported in the statistics as `fp32_<reason>`). */
const FLOAT32_ONLY: Partial<Record<OpType, string>> = {
  [Op.QuantizeLinear]: 'quantization',
  [Op.DequantizeLinear]: 'quantization',
  [Op.DynamicQuantizeLinear]: 'quantization',
  [Op.MatMulInteger]: 'quantization',
  [Op.QLinearMatMul]: 'quantization',
  [Op.QLinearConv]: 'quantization',
  [Op.MatMulIntegerToFloat]: 'quantization',
  [Op.DynamicQuantizeMatMul]: 'quantization',
  [Op.MatMulNBits]: 'quantization',
  [Op.GatherBlockQuantized]: 'quantization',
  // Subgraphs stay serialized: a body reading an outer value cannot be retyped.
  [Op.If]: 'subgraph',
  [Op.Loop]: 'subgraph',
};

/** Input slots that must be float32 even on a float16 node (ONNX types them `tensor(float)`). */
const FLOAT32_SLOTS: Partial<Record<OpType, number[]>> = { [Op.Resize]: [2] };

/** Ops that convert between types themselves: their input is never cast. */
const TYPE_CONVERTING = new Set<string>([Op.Cast, Op.Shape, Op.Size]);

const isFloat32 = (v: Value | undefined): v is Value => v?.type?.elemType === DataType.FLOAT;
const isFloat16 = (v: Value | undefined): v is Value => v?.type?.elemType === DataType.FLOAT16;

/** The convert-float16 pass. */
export const convertFloat16 = definePass({
  name: 'convert-float16',
  summary: 'float32 compute to float16 with Casts at the boundaries, keeping listed ops and regions (norms, Softmax, timestep embedding) in float32',
  options: {
    keep: {
      type: 'string-list',
      description: `op types and regions (${Object.keys(FLOAT16_REGIONS).join(', ')}) left in float32; '${KEEP_NONE}' for none`,
      default: [...DEFAULT_FLOAT16_KEEP],
    },
  },
  run(model, options) {
    const keep = options.keep.filter((k) => k !== KEEP_NONE);
    const unknown = keep.filter((k) => !isKeepName(k));
    if (unknown.length > 0) throw new Error(`convert-float16: unknown keep entries ${unknown.map((k) => `'${k}'`).join(', ')} (op types or ${Object.keys(FLOAT16_REGIONS).join(', ')})`);
    const graph = model.graph;
    inferShapes(model);
    const kept = keptNodes(model, new Set(keep));
    const statistics: Record<string, number> = { converted_nodes: 0, kept_nodes: 0, casts: 0, constants_converted: 0, outputs_cast: 0 };
    const count = (key: string, n = 1) => (statistics[key] = (statistics[key] ?? 0) + n);

    const toHalf = new Map<Value, Value>();
    const toSingle = new Map<Value, Value>();
    /** `value` (float32) as float16: a converted constant, or a Cast. */
    const asFloat16 = (value: Value): Value => {
      const cached = toHalf.get(value);
      if (cached) return cached;
      let converted: Value;
      const constant = constantTensor(value);
      if (value.initializer) {
        converted = graph.addInitializer(`${value.name}_fp16`, halfTensor(value.initializer));
        count('constants_converted');
      } else if (constant && value.producer) {
        const node = graph.addNode({ opType: Op.Constant, inputs: [], outputs: [`${value.name}_fp16`], attributes: { value: { kind: 'tensor', value: halfTensor(constant) } }, before: value.producer });
        converted = node.outputs[0]!;
        converted.type = { elemType: DataType.FLOAT16, ...(value.type?.shape ? { shape: [...value.type.shape] } : {}) };
        count('constants_converted');
      } else converted = cast(value, DataType.FLOAT16);
      toHalf.set(value, converted);
      return converted;
    };
    const asFloat32 = (value: Value): Value => {
      const cached = toSingle.get(value);
      if (cached) return cached;
      const converted = cast(value, DataType.FLOAT);
      toSingle.set(value, converted);
      return converted;
    };
    const cast = (value: Value, to: DataType): Value => {
      const first = value.producer ? undefined : graph.nodes[0];
      const node = graph.addNode({ opType: Op.Cast, name: `${value.name}_to_${to === DataType.FLOAT16 ? 'fp16' : 'fp32'}`, inputs: [value], outputs: [`${value.name}_${to === DataType.FLOAT16 ? 'fp16' : 'fp32'}`], attributes: { to: { kind: 'int', value: to } }, ...(first ? { before: first } : {}) });
      const out = node.outputs[0]!;
      out.type = { elemType: to, ...(value.type?.shape ? { shape: [...value.type.shape] } : {}) };
      count('casts');
      return out;
    };

    for (const node of [...graph.nodes]) {
      if (!node.inputs.some(isFloat32) && !node.outputs.some(isFloat32)) continue;
      const reason = kept.get(node);
      if (reason !== undefined) {
        count('kept_nodes');
        count(`fp32_${reason}`);
        node.inputs.forEach((input, i) => {
          if (isFloat16(input)) node.setInput(i, asFloat32(input));
        });
        continue;
      }
      // Constants are converted where a float16 node reads them (asFloat16), so kept readers see exact values.
      if (isOp(node, Op.Constant)) continue;
      count('converted_nodes');
      const float32Slots = FLOAT32_SLOTS[node.opType as OpType] ?? [];
      if (!TYPE_CONVERTING.has(node.opType)) {
        node.inputs.forEach((input, i) => {
          if (isFloat32(input) && !float32Slots.includes(i)) node.setInput(i, asFloat16(input));
          else if (isFloat16(input) && float32Slots.includes(i)) node.setInput(i, asFloat32(input));
        });
      }
      retypeAttributes(node);
      for (const output of node.outputs) if (isFloat32(output)) output.type = { ...output.type!, elemType: DataType.FLOAT16 };
    }

    // Graph outputs keep their names and float32: the float16 value is renamed, a Cast takes the name.
    graph.outputs.forEach((output, i) => {
      if (!isFloat16(output)) return;
      const single = asFloat32(output);
      const name = output.name;
      output.name = single.name;
      single.name = name;
      graph.outputs[i] = single;
      count('outputs_cast');
    });
    const dead = graph.removeDeadCode();
    statistics.dead_removed = dead.nodes + dead.initializers;
    inferShapes(model);
    return { modified: statistics.converted_nodes! > 0 || statistics.casts! > 0, statistics };
  },
});

/** True for a keep-list word the pass understands: a known op type or a region. */
export function isKeepName(word: string): boolean {
  return Object.prototype.hasOwnProperty.call(FLOAT16_REGIONS, word) || Object.values(Op).includes(word as OpType);
}

/** Nodes that stay float32, with the reason (the op type or region that keeps them). */
function keptNodes(model: Model, keep: Set<string>): Map<Node, string> {
  const kept = new Map<Node, string>();
  const graph = model.graph;
  // What cannot be float16 first, so the statistics give that reason rather than a region's.
  for (const node of graph.nodes) {
    const domain = node.domain === 'ai.onnx' ? '' : node.domain;
    const reason = FLOAT32_ONLY[node.opType as OpType];
    if (reason && (domain === '' || domain === MS_DOMAIN)) kept.set(node, reason);
    else if (!opSchema(node.opType, domain) || (domain !== '' && !isMsFloat16Op(node))) kept.set(node, 'unknown_op');
    else if (node.implicitInputs.length > 0) kept.set(node, 'subgraph');
  }
  if (keep.has('embed.time')) {
    // The time MLP's layers and everything they read, as far as it depends on the timestep alone: in a
    // quantized graph an adaLN behind Q/DQ can take the `embed.time` role, but it also reads the label.
    const mixed = dependsOnOtherInputs(model);
    for (const layer of layersOf(model)) {
      if (layer.role !== 'embed.time') continue;
      const roots = [layer.node];
      // A token MatMul's bias is the Add right after it.
      const bias = layer.node.outputs[0]!.uses.length === 1 ? layer.node.outputs[0]!.uses[0]!.node : undefined;
      if (bias && isOp(bias, Op.Add) && bias.inputs.some((v) => v?.initializer)) roots.push(bias);
      for (const node of [...roots, ...roots.flatMap(ancestors)]) if (!kept.has(node) && !mixed.has(node)) kept.set(node, 'embed.time');
    }
  }
  if (keep.has('decomposed-norm')) for (const node of decomposedNorms(graph.nodes)) if (!kept.has(node)) kept.set(node, 'decomposed-norm');
  for (const node of graph.nodes) if (!kept.has(node) && (node.domain === '' || node.domain === 'ai.onnx') && keep.has(node.opType)) kept.set(node, node.opType);
  return kept;
}

/** Contrib ops whose float16 form ORT implements (the rest of com.microsoft stays float32). */
function isMsFloat16Op(node: Node): boolean {
  return isOp(node, Op.FastGelu) || isOp(node, Op.BiasGelu) || isOp(node, Op.QuickGelu);
}

/** Nodes that read (directly or not) a graph input other than the timestep; all of them when none is found. */
function dependsOnOtherInputs(model: Model): Set<Node> {
  const graph = model.graph;
  const timestep = findTimestepInput(model);
  const out = new Set<Node>();
  if (!timestep) return new Set(graph.nodes);
  const others = new Set(graph.inputs.filter((v) => v !== timestep && !v.initializer));
  for (const node of graph.nodes) {
    if ([...node.inputs, ...node.implicitInputs].some((v) => v && (others.has(v) || (v.producer && out.has(v.producer))))) out.add(node);
  }
  return out;
}

/** Every node `node` depends on (its backward cone), nearest first. */
function ancestors(node: Node): Node[] {
  const seen = new Set<Node>();
  const stack = [node];
  const out: Node[] = [];
  while (stack.length > 0) {
    for (const input of stack.pop()!.inputs) {
      const producer = input?.producer;
      if (!producer || seen.has(producer)) continue;
      seen.add(producer);
      out.push(producer);
      stack.push(producer);
    }
  }
  return out;
}

/** The variance branch of a normalization: elementwise steps from the centred value to its normaliser. */
const VARIANCE_OPS = new Set<string>([Op.Pow, Op.Mul, Op.ReduceMean, Op.Add, Op.Sqrt, Op.Reciprocal, Op.Div]);

/**
 * Nodes of decomposed normalizations: `d = x − ReduceMean(x)`, a variance branch over `d` (Pow or d·d,
 * ReduceMean, + ε, Sqrt or Reciprocal) and the node that combines `d` with it (Div, or Mul by 1/σ).
 */
function decomposedNorms(nodes: readonly Node[]): Set<Node> {
  const out = new Set<Node>();
  for (const sub of nodes) {
    if (!isOp(sub, Op.Sub)) continue;
    const [x, m] = sub.inputs;
    const mean = m?.producer;
    if (!x || !mean || !isOp(mean, Op.ReduceMean) || mean.inputs[0] !== x) continue;
    const centred = sub.outputs[0]!;
    const branch = new Set<Node>();
    const frontier: Value[] = [centred];
    let combiner: Node | undefined;
    for (let depth = 0; depth < 6 && frontier.length > 0 && !combiner; depth++) {
      const next: Value[] = [];
      for (const value of frontier) {
        for (const { node } of value.uses) {
          if (branch.has(node) || !VARIANCE_OPS.has(node.opType) || node.domain !== '') continue;
          const readsCentred = node.inputs.includes(centred);
          const readsBranch = node.inputs.some((v) => v?.producer && branch.has(v.producer));
          if (readsCentred && readsBranch && (isOp(node, Op.Div) || isOp(node, Op.Mul))) {
            combiner = node;
            break;
          }
          // From the centred value only the squaring step (Pow, or Mul of d by itself) enters the branch.
          if (value === centred && !(isOp(node, Op.Pow) || (isOp(node, Op.Mul) && node.inputs[0] === centred && node.inputs[1] === centred))) continue;
          branch.add(node);
          next.push(...node.outputs);
        }
        if (combiner) break;
      }
      frontier.splice(0, frontier.length, ...next);
    }
    if (!combiner || ![...branch].some((n) => isOp(n, Op.ReduceMean))) continue;
    for (const node of [mean, sub, ...branch, combiner]) out.add(node);
  }
  return out;
}

/** Float attributes that fix an output type (Cast `to`, ConstantOfShape `value`) become float16. */
function retypeAttributes(node: Node): void {
  if (isOp(node, Op.Cast) && node.intAttr('to', -1) === DataType.FLOAT) node.attributes.set('to', { kind: 'int', value: DataType.FLOAT16 });
  const value = node.attributes.get('value');
  if (isOp(node, Op.ConstantOfShape) && value?.kind === 'tensor' && value.value.dtype === DataType.FLOAT) {
    node.attributes.set('value', { kind: 'tensor', value: halfTensor(value.value) } satisfies Attribute);
  }
}

/** The constant tensor a value holds: an initializer or a Constant node's `value`. */
function constantTensor(value: Value): Tensor | undefined {
  if (value.initializer) return value.initializer;
  const producer = value.producer;
  if (!producer || !isOp(producer, Op.Constant)) return undefined;
  const attr = producer.attributes.get('value');
  return attr?.kind === 'tensor' && attr.value.dtype === DataType.FLOAT ? attr.value : undefined;
}

/** `tensor` (float32) as float16, computed when read: external weights are never held twice. */
function halfTensor(tensor: Tensor): Tensor {
  if (!tensor.isDeferred) return Tensor.fromBytes(DataType.FLOAT16, tensor.dims, floatToHalfBytes(tensor.toFloat32()));
  return Tensor.lazy(DataType.FLOAT16, tensor.dims, () => floatToHalfBytes(tensor.toFloat32()));
}

/** float32 values as float16 bytes (`floatToHalf`: round to nearest even, saturating, tiny guards kept nonzero). */
export function floatToHalfBytes(values: Float32Array): Uint8Array {
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = floatToHalf(values[i]!);
  return new Uint8Array(out.buffer);
}
