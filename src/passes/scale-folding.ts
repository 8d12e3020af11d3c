/**
 * Equivalent per-input-channel scaling: Y = (X/s)·(diag(s)W) leaves a linear layer's output unchanged. The
 * weight side multiplies the layer's input-channel rows by s; the activation side (1/s) is folded into
 * whatever produces X when that is exact — DiT's adaLN modulation LN(x)·(1+scale)+shift (fold into the adaLN
 * linear's rows), or a LayerNormalization's own affine — and otherwise becomes an inserted Mul.
 * Shared by the smooth-quant and weight-dilation passes.
 */
import type { Node, Value } from '../ir/core.js';
import { DataType } from '../ir/dtype.js';
import { IrError } from '../ir/errors.js';
import { NonFiniteError, assertFinite } from '../ir/numerics.js';
import { Op, isOp } from '../ir/ops.js';
import { Tensor } from '../ir/tensor.js';
import { INPUT_SCALING, type Artifacts } from './artifacts.js';

/** The factors s one scaling pass multiplied into a layer's weight rows (and divided out of its input). */
export interface AppliedScaling {
  pass: string;
  factors: Float32Array;
}

/** Records `s` as applied by `pass` to every layer of `layers`, in the INPUT_SCALING artifact. */
export function recordInputScaling(artifacts: Artifacts, pass: string, layers: readonly ScalableLayer[], s: Float32Array): void {
  let byLayer = artifacts.get(INPUT_SCALING);
  if (!byLayer) artifacts.set(INPUT_SCALING, (byLayer = new Map()));
  for (const layer of layers) byLayer.set(layer.name, [...(byLayer.get(layer.name) ?? []), { pass, factors: s }]);
}

/** What a scaling transform needs to know of a layer. */
export interface ScalableLayer {
  name: string;
  node: Node;
  weight: Value;
  inChannels: number;
  outChannels: number;
}

/** How the 1/s side was absorbed. */
export type Absorption = 'adaln-modulation' | 'layer-norm-affine' | 'inserted-mul';

/**
 * The weight as a [inChannels][outChannels] accessor over its stored layout (MatMul W[K,N], Gemm transB
 * W[N,K] or W[K,N], Conv W[O,I,kh,kw] with the kernel taps counted per input channel).
 */
export interface WeightView {
  values: Float32Array;
  /** Flat indices of input channel k's elements. */
  indicesOf(k: number): number[];
  /** Input channel and output channel of flat index i. */
  channelsOf(i: number): { k: number; n: number };
}

/** Reads a layer's float weight with a view by input channel. */
export function readWeight(layer: ScalableLayer): WeightView {
  const tensor = layer.weight.initializer;
  if (!tensor || tensor.dtype !== DataType.FLOAT) throw new IrError('invalid-argument', `layer '${layer.name}' has no float weight initializer`);
  const values = Float32Array.from(tensor.toFloat32());
  const dims = tensor.dims;
  const node = layer.node;
  if (isOp(node, Op.MatMul) || (isOp(node, Op.Gemm) && node.intAttr('transB', 0) === 0)) {
    const N = dims[1]!;
    return {
      values,
      indicesOf: (k) => Array.from({ length: N }, (_, n) => k * N + n),
      channelsOf: (i) => ({ k: Math.floor(i / N), n: i % N }),
    };
  }
  if (isOp(node, Op.Gemm)) {
    const [N, K] = [dims[0]!, dims[1]!];
    return {
      values,
      indicesOf: (k) => Array.from({ length: N }, (_, n) => n * K + k),
      channelsOf: (i) => ({ k: i % K, n: Math.floor(i / K) }),
    };
  }
  if (isOp(node, Op.Conv) && node.intAttr('group', 1) === 1) {
    const [O, I] = [dims[0]!, dims[1]!];
    const taps = dims.slice(2).reduce((a, b) => a * b, 1);
    return {
      values,
      indicesOf: (k) => {
        const out: number[] = [];
        for (let o = 0; o < O; o++) for (let t = 0; t < taps; t++) out.push((o * I + k) * taps + t);
        return out;
      },
      channelsOf: (i) => ({ k: Math.floor(i / taps) % I, n: Math.floor(i / (I * taps)) }),
    };
  }
  throw new IrError('invalid-argument', `layer '${layer.name}': cannot scale input channels of ${node.opType}`);
}

/**
 * Applies per-input-channel scales `s` to a group of layers that read the same input value: their weights
 * are multiplied by s, and the input is divided by s once (folded or as one inserted Mul). Every s and 1/s
 * must be a finite positive float32 and every scaled weight finite, else NonFiniteError names the layer
 * before the graph is touched (an s of 0 from `dilate(max: 0)` made every eps NaN).
 */
export function applyInputScales(layers: ScalableLayer[], s: Float32Array): Absorption {
  const input = sharedInput(layers);
  const inverse = Float32Array.from(s, (v) => 1 / v);
  const names = layers.map((l) => `'${l.name}'`).join(', ');
  const bad = s.findIndex((v, k) => !(v > 0 && Number.isFinite(v) && Number.isFinite(inverse[k]!)));
  if (bad >= 0) throw new NonFiniteError(`the input-channel scaling factors of ${names} (a factor must be a finite positive float32 with a finite inverse)`, bad, s[bad]!);
  const scaled = layers.map((layer) => scaledWeightRows(layer, s));
  layers.forEach((layer, i) => replaceConstant(layer.weight, layer.node, Tensor.fromFloat32(layer.weight.initializer!.dims, scaled[i]!)));
  if (foldIntoModulation(input, layers, inverse)) return 'adaln-modulation';
  if (foldIntoLayerNorm(input, layers, inverse)) return 'layer-norm-affine';
  insertMul(input, layers, inverse);
  return 'inserted-mul';
}

/** The one activation value all `layers` read as their data input. */
export function sharedInput(layers: ScalableLayer[]): Value {
  const input = layers[0]!.node.input(0);
  for (const layer of layers) {
    if (layer.node.input(0) !== input) throw new IrError('invalid-argument', `layers ${layers.map((l) => l.name).join(', ')} do not share one input`);
  }
  return input;
}

/** The layer's weight with input-channel rows multiplied by s; a product that overflows float32 throws. */
function scaledWeightRows(layer: ScalableLayer, s: Float32Array): Float32Array {
  const view = readWeight(layer);
  for (let k = 0; k < s.length; k++) for (const i of view.indicesOf(k)) view.values[i]! *= s[k]!;
  assertFinite(view.values, `the weight '${layer.weight.name}' of '${layer.name}' scaled by its input-channel factors`);
  return view.values;
}

/**
 * Gives `node` its own constant value holding `tensor` in place of `value` (in place when it is the only user,
 * so shared initializers — torch shares LayerNorm's ones/zeros across all norms — are never changed for others).
 */
export function replaceConstant(value: Value, node: Node, tensor: Tensor): void {
  const users = value.uses.filter((u) => u.node === node);
  if (value.uses.length === users.length) {
    value.initializer = tensor;
    return;
  }
  const copy = node.graph.addInitializer(value.name, tensor);
  for (const use of users) node.setInput(use.index, copy);
}

/** Uses that read a value's contents (Shape only reads its shape). */
function valueUses(value: Value) {
  return value.uses.filter((u) => !isOp(u.node, Op.Shape));
}

function onlyUsedBy(value: Value, nodes: Node[]): boolean {
  return valueUses(value).every((u) => nodes.includes(u.node)) && !value.isGraphOutput;
}

/** The constant behind a value: an initializer, or a Constant node's tensor. */
function constantOf(value: Value | undefined): Tensor | undefined {
  if (!value) return undefined;
  if (value.initializer) return value.initializer;
  const producer = value.producer;
  if (producer && isOp(producer, Op.Constant)) {
    const attribute = producer.attributes.get('value');
    if (attribute?.kind === 'tensor') return attribute.value;
  }
  return undefined;
}

/** A row range of a linear layer's output: which adaLN output channels a Split chunk holds. */
interface ChunkSource {
  linear: Node;
  weight: Value;
  bias: Value | undefined;
  /** First output row of the chunk. */
  start: number;
}

/** Follows Unsqueeze/Split back to the adaLN Gemm (transB=1) rows that produce `value`. */
function chunkSource(value: Value, channels: number): ChunkSource | undefined {
  let v = value;
  if (v.producer && isOp(v.producer, Op.Unsqueeze)) {
    if (v.uses.length !== 1) return undefined;
    v = v.producer.input(0);
  }
  const split = v.producer;
  if (!split || !isOp(split, Op.Split) || v.uses.length !== 1) return undefined;
  const sizes = splitSizes(split, channels);
  if (!sizes) return undefined;
  const start = sizes.slice(0, v.producerIndex).reduce((a, b) => a + b, 0);
  const gemmOut = split.input(0);
  const gemm = gemmOut.producer;
  if (!gemm || !isOp(gemm, Op.Gemm) || gemm.intAttr('transB', 0) !== 1 || gemm.floatAttr('alpha', 1) !== 1 || gemm.floatAttr('beta', 1) !== 1) return undefined;
  const weight = gemm.input(1);
  const bias = gemm.inputs[2];
  if (!weight.initializer || (bias && !bias.initializer)) return undefined;
  if (split.intAttr('axis', 0) !== 1 && split.intAttr('axis', 0) !== -1) return undefined;
  return { linear: gemm, weight, bias, start };
}

function splitSizes(split: Node, channels: number): number[] | undefined {
  const sizesTensor = constantOf(split.inputs[1]);
  if (sizesTensor) return sizesTensor.toNumbers();
  const attr = split.intsAttr('split', []);
  if (attr.length > 0) return attr;
  return Array.from({ length: split.outputs.length }, () => channels);
}

/** Matches `Add(Mul(LN, Add(scale, 1)), shift)` (either operand order) and folds 1/s into the adaLN rows. */
function foldIntoModulation(input: Value, layers: ScalableLayer[], inverse: Float32Array): boolean {
  const add = input.producer;
  if (!add || !isOp(add, Op.Add) || !onlyUsedBy(input, layers.map((l) => l.node))) return false;
  for (const [mulIndex, shiftIndex] of [[0, 1], [1, 0]] as const) {
    const mulOut = add.input(mulIndex);
    const mul = mulOut.producer;
    if (!mul || !isOp(mul, Op.Mul) || mulOut.uses.length !== 1) continue;
    for (const [normIndex, gainIndex] of [[0, 1], [1, 0]] as const) {
      const norm = mul.input(normIndex).producer;
      if (!norm || !isOp(norm, Op.LayerNormalization)) continue;
      const gainOut = mul.input(gainIndex);
      const onePlus = gainOut.producer;
      if (!onePlus || !isOp(onePlus, Op.Add) || gainOut.uses.length !== 1) continue;
      const [a, b] = [onePlus.input(0), onePlus.input(1)];
      const one = [a, b].find((v) => isScalarOne(constantOf(v)));
      const scaleValue = one === a ? b : a;
      if (!one) continue;
      const scaleSource = chunkSource(scaleValue, inverse.length);
      const shiftSource = chunkSource(add.input(shiftIndex), inverse.length);
      if (!scaleSource || !shiftSource || scaleSource.linear !== shiftSource.linear) continue;
      // (1 + scale)/s = 1 + (scale/s + 1/s - 1); shift/s.
      scaleLinearRows(scaleSource, inverse, (i) => inverse[i]! - 1);
      scaleLinearRows(shiftSource, inverse, () => 0);
      return true;
    }
  }
  return false;
}

function isScalarOne(tensor: Tensor | undefined): boolean {
  return tensor !== undefined && tensor.size === 1 && tensor.toNumbers()[0] === 1;
}

/** Multiplies rows [start, start+K) of a transB Gemm's weight and bias by `factor`, then adds `offset(i)` to the bias. */
function scaleLinearRows(source: ChunkSource, factor: Float32Array, offset: (i: number) => number): void {
  const weight = source.weight.initializer!;
  const K = weight.dims[1]!;
  const w = Float32Array.from(weight.toFloat32());
  for (let i = 0; i < factor.length; i++) {
    const row = (source.start + i) * K;
    for (let k = 0; k < K; k++) w[row + k]! *= factor[i]!;
  }
  assertFinite(w, `the modulation weight '${source.weight.name}' with 1/s folded in`);
  replaceConstant(source.weight, source.linear, Tensor.fromFloat32(weight.dims, w));
  const extra = Float32Array.from({ length: factor.length }, (_, i) => offset(i));
  if (source.bias) {
    const bias = Float32Array.from(source.bias.initializer!.toFloat32());
    for (let i = 0; i < factor.length; i++) bias[source.start + i] = bias[source.start + i]! * factor[i]! + extra[i]!;
    assertFinite(bias, `the modulation bias '${source.bias.name}' with 1/s folded in`);
    replaceConstant(source.bias, source.linear, Tensor.fromFloat32(source.bias.initializer!.dims, bias));
  } else if (extra.some((v) => v !== 0)) {
    const rows = weight.dims[0]!;
    const bias = new Float32Array(rows);
    for (let i = 0; i < factor.length; i++) bias[source.start + i] = extra[i]!;
    source.linear.setInput(2, source.linear.graph.addInitializer(`${source.weight.name}.bias`, Tensor.fromFloat32([rows], bias)));
  }
}

/** LayerNormalization(x, gamma, beta) feeding only these layers: gamma/s, beta/s. */
function foldIntoLayerNorm(input: Value, layers: ScalableLayer[], inverse: Float32Array): boolean {
  const norm = input.producer;
  if (!norm || !isOp(norm, Op.LayerNormalization) || input.producerIndex !== 0 || !onlyUsedBy(input, layers.map((l) => l.node))) return false;
  const gamma = norm.input(1);
  if (!gamma.initializer || gamma.initializer.size !== inverse.length) return false;
  const g = Float32Array.from(gamma.initializer.toFloat32(), (v, i) => v * inverse[i]!);
  assertFinite(g, `the LayerNormalization scale '${gamma.name}' with 1/s folded in`);
  replaceConstant(gamma, norm, Tensor.fromFloat32(gamma.initializer.dims, g));
  const beta = norm.inputs[2];
  if (beta?.initializer) {
    const b = Float32Array.from(beta.initializer.toFloat32(), (v, i) => v * inverse[i]!);
    assertFinite(b, `the LayerNormalization bias '${beta.name}' with 1/s folded in`);
    replaceConstant(beta, norm, Tensor.fromFloat32(beta.initializer.dims, b));
  }
  return true;
}

function insertMul(input: Value, layers: ScalableLayer[], inverse: Float32Array): void {
  const graph = input.graph;
  const isConv = isOp(layers[0]!.node, Op.Conv);
  // Conv inputs are NCHW: the channel axis needs a [C,1,1] broadcast shape.
  const dims = isConv ? [inverse.length, 1, 1] : [inverse.length];
  const factor = graph.addInitializer(`${layers[0]!.name}.input_scale`, Tensor.fromFloat32(dims, inverse));
  const mul = graph.addNode({ opType: Op.Mul, inputs: [input, factor], outputs: [`${input.name}_scaled`], name: `${layers[0]!.name}/input_scale` });
  mul.outputs[0]!.type = input.type;
  for (const layer of layers) layer.node.setInput(0, mul.outputs[0]);
}
