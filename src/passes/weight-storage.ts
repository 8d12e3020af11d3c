/**
 * Stores one layer's weight as integer codes feeding a DequantizeLinear: maps the stored layout (MatMul W[K,N],
 * Gemm W[N,K] with transB, Conv W[O,I,kh,kw]) to rows [N][K], computes scales, rounds, and rewrites the graph
 * (the float initializer is removed), in three steps: prepareWeight reads the weight into a WeightTask,
 * quantizeWeightTask computes its codes (in any thread: the task is plain data), installQuantizedWeight rewires
 * the graph. Used by weight-quantization.ts; kept apart so it can be driven without layers.ts.
 */
import type { Attribute, Node, Value } from '../ir/core.js';
import { DataType } from '../ir/dtype.js';
import { IrError } from '../ir/errors.js';
import { Op, isOp } from '../ir/ops.js';
import { Tensor, packInt4 } from '../ir/tensor.js';
import type { Granularity, WeightQuantSpec } from '../quant/plan.js';
import type { CellParams, IntRange, WeightMatrix } from '../quant/kernels/weight-kernels.js';
import { computeCellParams, intRange, type QuantizerSettings, type RoundingFunction } from './weight-quantizer.js';

/** What storing a weight needs to know of a layer (a subset of layers.ts' Layer). */
export interface WeightedLayer {
  name: string;
  node: Node;
  weight: Value;
}

/** How a layer's stored weight maps to rows [N][K] and which axes DequantizeLinear uses. */
interface WeightLayout {
  N: number;
  K: number;
  /** Axis of the output channels in the stored weight (per-channel DQ axis). */
  channelAxis: number;
  /** Axis of the input channels, when blocks along it are groups of K (blocked DQ axis; the last block may be partial). */
  blockAxis: number | undefined;
  /** True when storage is [K][N] (MatMul); otherwise [N][K…]. */
  kMajor: boolean;
}

function layoutOf(layer: WeightedLayer, dims: readonly number[]): WeightLayout {
  const node = layer.node;
  if ((isOp(node, Op.MatMul) || isOp(node, Op.Gemm)) && dims.length === 2) {
    const transB = isOp(node, Op.Gemm) && node.intAttr('transB', 0) === 1;
    return transB
      ? { N: dims[0]!, K: dims[1]!, channelAxis: 0, blockAxis: 1, kMajor: false }
      : { N: dims[1]!, K: dims[0]!, channelAxis: 1, blockAxis: 0, kMajor: true };
  }
  if (isOp(node, Op.Conv) && dims.length >= 3) {
    const taps = dims.slice(2).reduce((a, b) => a * b, 1);
    return { N: dims[0]!, K: dims[1]! * taps, channelAxis: 0, blockAxis: groupsStoredPerChannel(node.opType, dims) ? undefined : 1, kMajor: false };
  }
  throw new IrError('unsupported', `quantize-weights: layer '${layer.name}' (${node.opType} with a ${dims.length}-d weight) has no supported weight layout`);
}

/**
 * True when groups along the input channels are not one axis of the stored weight — a Conv kernel larger than
 * 1×1 (groups would run over I·kh·kw) — so a `group` weight is stored per output channel instead.
 */
export function groupsStoredPerChannel(opType: string, dims: readonly number[]): boolean {
  return opType === Op.Conv && dims.slice(2).reduce((a, b) => a * b, 1) !== 1;
}

/** The narrowest ONNX integer type holding `bits`-bit codes: 2–4 bits in int4, 5–8 bits (Q-DiT's W6) in int8. */
function storageType(bits: number, signed: boolean): DataType {
  if (bits >= 5 && bits <= 8) return signed ? DataType.INT8 : DataType.UINT8;
  if (bits >= 2 && bits <= 4) return signed ? DataType.INT4 : DataType.UINT4;
  throw new IrError('unsupported', `quantize-weights: ${bits}-bit weights are not supported (2 to 8)`);
}

function encodeCodes(codes: ArrayLike<number>, dtype: DataType): Uint8Array {
  if (dtype === DataType.INT4 || dtype === DataType.UINT4) return packInt4(codes);
  if (dtype === DataType.INT8) {
    const out = new Int8Array(codes.length);
    out.set(codes);
    return new Uint8Array(out.buffer);
  }
  return Uint8Array.from(codes);
}

/** What storing one weight did. */
export interface LayerOutcome {
  granularity: Granularity['kind'];
  fellBackToPerChannel: boolean;
  floatBytes: number;
  quantizedBytes: number;
}

/**
 * One weight's quantization as plain data, free of the graph: its matrix, how to quantize it and the storage type
 * of its codes. What quantizeWeightTask computes from, in this thread or a worker's (weight-quantizer-pool.ts).
 */
export interface WeightTask {
  matrix: WeightMatrix;
  settings: QuantizerSettings;
  range: IntRange;
  dtype: DataType;
}

/** A WeightTask's result: the cells' scales and zero points, and the codes as stored (int4 packed). */
export interface QuantizedWeight {
  params: CellParams;
  bytes: Uint8Array;
}

/** Computes a task's cell parameters and rounds its weight with `rounding`, encoded as the task's storage type. */
export function quantizeWeightTask(task: WeightTask, rounding: RoundingFunction): QuantizedWeight {
  const { matrix, settings, range, dtype } = task;
  const params = computeCellParams(matrix, settings);
  const int4 = dtype === DataType.INT4 || dtype === DataType.UINT4;
  const bytes = rounding.stored ? rounding.stored(matrix, params, range, int4) : encodeCodes(rounding(matrix, params, range), dtype);
  return { params, bytes };
}

/** A layer's weight read and its quantization planned: the task, and what the graph rewrite needs. */
export interface PreparedWeight {
  layer: WeightedLayer;
  spec: WeightQuantSpec;
  task: WeightTask;
  layout: WeightLayout;
  /** The granularity stored (a Conv kernel > 1 stores a `group` spec per channel). */
  granularity: Granularity;
  fellBackToPerChannel: boolean;
}

/**
 * Checks `layer`'s weight and reads it (an external one from disk, once: its codes, a quarter or an eighth of its
 * bytes, are what is kept; into `into` when given, see Tensor.toFloat32In) into the task that quantizes it as
 * `spec` says.
 */
export function prepareWeight(layer: WeightedLayer, spec: WeightQuantSpec, into?: Uint8Array): PreparedWeight {
  const weight = layer.weight;
  const tensor = weight.initializer!;
  if (tensor.dtype !== DataType.FLOAT) throw new IrError('unsupported', `quantize-weights: layer '${layer.name}' has a ${DataType[tensor.dtype]} weight; only float32 weights are quantized`);
  if (weight.graph.inputs.includes(weight)) throw new IrError('unsupported', `quantize-weights: the weight of '${layer.name}' is also a graph input and could be overridden at run time`);
  const layout = layoutOf(layer, tensor.dims);
  let granularity = spec.granularity;
  let fellBackToPerChannel = false;
  if (granularity.kind === 'group' && layout.blockAxis === undefined) {
    // Conv with a kernel > 1: groups along I·kh·kw are not one axis of the stored weight.
    granularity = { kind: 'per-channel' };
    fellBackToPerChannel = true;
  }
  const signed = spec.signed ?? true;
  const settings = { bits: spec.bits, symmetric: spec.symmetric, signed, granularity, range: spec.range };
  const matrix: WeightMatrix = { values: into ? tensor.toFloat32In(into) : tensor.toFloat32(), N: layout.N, K: layout.K, kMajor: layout.kMajor, name: weight.name };
  return { layer, spec, task: { matrix, settings, range: intRange(spec.bits, signed), dtype: storageType(spec.bits, signed) }, layout, granularity, fellBackToPerChannel };
}

/** Replaces the prepared layer's float weight by `quantized`'s codes feeding a DequantizeLinear, and removes the float initializer. */
export function installQuantizedWeight(prepared: PreparedWeight, quantized: QuantizedWeight): LayerOutcome {
  const { layer, spec, layout, granularity } = prepared;
  const { dtype } = prepared.task;
  const weight = layer.weight;
  const tensor = weight.initializer!;
  const dims = tensor.dims;
  const codes = Tensor.fromBytes(dtype, dims, quantized.bytes);
  const { scale, zeroPoint, attributes } = dequantizeParameters(quantized.params, granularity, layout, dims, dtype);
  const graph = weight.graph;
  const consumer = firstConsumer(weight);
  const q = graph.addInitializer(`${weight.name}_quantized`, codes);
  const s = graph.addInitializer(`${weight.name}_scale`, scale);
  const needsZeroPoint = !(spec.symmetric && prepared.task.settings.signed);
  const z = needsZeroPoint ? graph.addInitializer(`${weight.name}_zero_point`, zeroPoint) : undefined;
  const dq = graph.addNode({
    opType: Op.DequantizeLinear,
    inputs: z ? [q, s, z] : [q, s],
    outputs: [`${weight.name}_dequantized`],
    attributes,
    name: `${layer.name}/weight_dequantize`,
    before: consumer,
  });
  dq.outputs[0]!.type = { elemType: DataType.FLOAT, shape: [...dims] };
  weight.replaceAllUsesWith(dq.outputs[0]!);
  graph.removeInitializer(weight);
  return {
    granularity: granularity.kind,
    fellBackToPerChannel: prepared.fellBackToPerChannel,
    floatBytes: tensor.byteLength,
    quantizedBytes: codes.byteLength + scale.byteLength + (z ? zeroPoint.byteLength : 0),
  };
}

/** Scale and zero-point tensors in DequantizeLinear's layout, and its axis / block_size attributes. */
function dequantizeParameters(
  params: CellParams,
  granularity: Granularity,
  layout: WeightLayout,
  dims: readonly number[],
  dtype: DataType,
): { scale: Tensor; zeroPoint: Tensor; attributes: Record<string, Attribute> } {
  const { N } = layout;
  if (granularity.kind === 'per-tensor') {
    return {
      scale: Tensor.fromFloat32([], Float32Array.of(params.scale[0]!)),
      zeroPoint: Tensor.fromBytes(dtype, [], encodeCodes(params.zeroPoint, dtype)),
      attributes: {},
    };
  }
  if (granularity.kind === 'per-channel') {
    return {
      scale: Tensor.fromFloat32([N], params.scale),
      zeroPoint: Tensor.fromBytes(dtype, [N], encodeCodes(params.zeroPoint, dtype)),
      attributes: { axis: { kind: 'int', value: layout.channelAxis } },
    };
  }
  if (granularity.kind !== 'group') throw new IrError('invalid-argument', `granularity ${granularity.kind} must be resolved before storing a weight`);
  const axis = layout.blockAxis!;
  const groups = params.cellsPerRow;
  // ceil: a partial last block has its own scale (opset-21 blocked DequantizeLinear reads it so).
  const shape = dims.map((d, i) => (i === axis ? Math.ceil(d / granularity.size) : d));
  // Cells are ordered g·N + n; a block axis after the channel axis stores them n·G + g.
  const reorder = <T extends Float32Array | Int32Array>(cells: T, make: (n: number) => T): T => {
    if (axis < layout.channelAxis) return cells;
    const out = make(cells.length);
    for (let g = 0; g < groups; g++) for (let n = 0; n < N; n++) out[n * groups + g] = cells[g * N + n]!;
    return out;
  };
  return {
    scale: Tensor.fromFloat32(shape, reorder(params.scale, (n) => new Float32Array(n))),
    zeroPoint: Tensor.fromBytes(dtype, shape, encodeCodes(reorder(params.zeroPoint, (n) => new Int32Array(n)), dtype)),
    attributes: { axis: { kind: 'int', value: axis }, block_size: { kind: 'int', value: granularity.size } },
  };
}

/** The earliest node (in graph order) that reads `value`, so the DequantizeLinear lands right before it. */
function firstConsumer(value: Value): Node | undefined {
  const nodes = value.graph.nodes;
  let first: Node | undefined;
  let position = Infinity;
  for (const use of value.uses) {
    const i = nodes.indexOf(use.node);
    if (i < position) {
      position = i;
      first = use.node;
    }
  }
  return first;
}
