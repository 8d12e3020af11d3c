/**
 * Activation quantization of a plan, lowered to standard ONNX ops ONNX Runtime runs (the forms are described
 * in quantize-activations, the pass that wraps it; search-group-sizes applies it to candidate models).
 */
import type { Attribute, Model, Node, Value } from '../ir/core.js';
import { DataType } from '../ir/dtype.js';
import { IrError } from '../ir/errors.js';
import { fakeQuantize, type FakeQuantEmitter } from '../quant/fake-quant.js';
import { layersOf } from '../quant/identity.js';
import { findTimestepInput } from '../quant/diffusion-inputs.js';
import type { Layer } from '../quant/layers.js';
import { Op } from '../ir/ops.js';
import { Tensor } from '../ir/tensor.js';
import { activationRange, chooseActivationParams, type TensorStats } from './activation-ranges.js';
import type { PassResult } from './pass.js';
import { resolveInputGroup, type ActivationQuantSpec, type QuantPlan } from '../quant/plan.js';

/** The ai.onnx opset of Q/DQ with per-axis scales. */
const QDQ_OPSET = 13;

/** How per-timestep tables are lowered, and the T of the schedule they are grouped over. */
export interface ActivationLoweringOptions {
  timesteps: number;
  perTimestepLowering: 'fake-quant' | 'qdq-batch-axis';
}

/** The lowering options the quantize-activations pass defaults to. */
export const DEFAULT_ACTIVATION_LOWERING: Readonly<ActivationLoweringOptions> = { timesteps: 1000, perTimestepLowering: 'fake-quant' };

/** Quantizes the input of every layer in `quantPlan` that has an input spec; static and per-timestep inputs read their ranges from `stats`. */
export function quantizePlannedActivations(model: Model, quantPlan: QuantPlan, stats: ReadonlyMap<string, TensorStats[]> | undefined, options: Readonly<ActivationLoweringOptions>): PassResult {
  const planned = [...quantPlan.values()].filter((p) => p.input);
  if (planned.length === 0) return { modified: false, statistics: { layers: 0 } };
  if (model.opset < QDQ_OPSET) model.requireOpset('', QDQ_OPSET);
  const layers = new Map(layersOf(model).map((l) => [l.name, l]));
  const statistics: Record<string, number> = { layers: 0, static: 0, per_timestep: 0, dynamic: 0, shared_inputs: 0, table_bytes: 0 };
  // Layers reading the same value with the same spec share one quantized value (q, k, v projections).
  const done = new Map<string, Value>();
  for (const plan of planned) {
    const layer = layers.get(plan.layer);
    if (!layer) throw new IrError('invalid-argument', `quantize-activations: the plan names '${plan.layer}', which is not a layer of this model`);
    const spec = resolveInputGroup(plan)!;
    const input = layer.node.input(layer.opType === 'Gather' ? 1 : 0);
    const key = `${input.name}|${JSON.stringify(spec)}`;
    let quantized = done.get(key);
    if (quantized) statistics.shared_inputs!++;
    else {
      const lowering = { graph: model.graph, input, name: layer.name, before: layer.node, opset: model.opset };
      if (spec.mode.kind === 'dynamic') quantized = lowerDynamic(lowering, spec, rankOf(input, layer), inputChannels(input, layer), channelAxisOf(layer, rankOf(input, layer)));
      else {
        const groups = stats?.get(layer.name);
        if (!groups) throw new IrError('invalid-argument', `quantize-activations: no calibration statistics for '${layer.name}'; run calibrate first`);
        if (spec.mode.kind === 'static') quantized = lowerStatic(lowering, spec, groups[0]!);
        else {
          const timestep = findTimestepInput(model);
          if (!timestep) throw new IrError('invalid-argument', 'per-timestep activations need the model\'s timestep input');
          quantized = lowerPerTimestep(lowering, spec, groups, timestep, options.timesteps, options.perTimestepLowering === 'fake-quant' ? rankOf(input, layer) : undefined);
          statistics.table_bytes! += groups.length * 5;
        }
      }
      done.set(key, quantized);
    }
    layer.node.setInput(layer.opType === 'Gather' ? 1 : 0, quantized);
    statistics.layers!++;
    statistics[spec.mode.kind === 'per-timestep' ? 'per_timestep' : spec.mode.kind]!++;
  }
  return { modified: true, statistics };
}

interface Lowering {
  graph: Model['graph'];
  input: Value;
  name: string;
  before: Node;
  /** ai.onnx opset: reductions take axes as an input from 18 on, as an attribute before. */
  opset: number;
}

/** ReduceMax/ReduceMin over `axes`, keeping dims, in the form the model's opset wants. */
function reduce(l: Lowering, opType: string, x: Value, axes: number[], suffix: string): Value {
  const keepdims: Attribute = { kind: 'int', value: 1 };
  if (l.opset >= 18) return add(l, opType, [x, constant(l, `${suffix}_axes`, Tensor.fromInt64([axes.length], axes))], suffix, { keepdims });
  return add(l, opType, [x], suffix, { keepdims, axes: { kind: 'ints', value: axes } });
}

/** The axis of a layer input's channels: 1 for a convolution's [N, C, ...] input, the last for a linear's [..., C]. */
function channelAxisOf(layer: Layer, rank: number): number {
  return (layer.opType === 'Conv' || layer.opType === 'ConvTranspose') && rank >= 3 ? 1 : rank - 1;
}

/** The channel count of a layer's input: its declared dim, else the weight's (all groups of a grouped convolution). */
function inputChannels(value: Value, layer: Layer): number {
  const declared = value.type?.shape?.[channelAxisOf(layer, rankOf(value, layer))];
  if (typeof declared === 'number') return declared;
  if (layer.opType === 'Conv') return layer.inChannels * layer.node.intAttr('group', 1);
  if (layer.opType === 'ConvTranspose') return layer.weightShape[0]!;
  return layer.inChannels;
}

function rankOf(value: Value, layer: Layer): number {
  const rank = value.type?.shape?.length;
  if (rank !== undefined) return rank;
  return layer.opType === 'Conv' ? 4 : layer.opType === 'Gemm' ? 2 : 3;
}

function add(l: Lowering, opType: string, inputs: (Value | undefined)[], suffix: string, attributes?: Record<string, Attribute>): Value {
  const node = l.graph.addNode({ opType, inputs, outputs: [`${l.input.name}/${suffix}`], name: `${l.name}/input_quant/${suffix}`, ...(attributes ? { attributes } : {}), before: l.before });
  return node.outputs[0]!;
}

function constant(l: Lowering, suffix: string, tensor: Tensor): Value {
  return l.graph.addInitializer(`${l.name}.input_quant.${suffix}`, tensor);
}

function zeroPointTensor(values: number[], dims: number[], symmetric: boolean): Tensor {
  return symmetric ? Tensor.fromBytes(DataType.INT8, dims, new Uint8Array(Int8Array.from(values).buffer)) : Tensor.fromBytes(DataType.UINT8, dims, Uint8Array.from(values));
}

/** QuantizeLinear → DequantizeLinear with one constant scale and zero point. */
function lowerStatic(l: Lowering, spec: ActivationQuantSpec, stats: TensorStats): Value {
  if (spec.bits !== 8) throw new IrError('unsupported', `quantize-activations: '${l.name}' asks for ${spec.bits}-bit static activations; Q/DQ needs 8`);
  const params = chooseActivationParams(stats, spec.range, spec.bits, spec.symmetric);
  const scale = constant(l, 'scale', Tensor.fromFloat32([], new Float32Array([params.scale])));
  const zero = constant(l, 'zero_point', zeroPointTensor([params.zeroPoint], [], spec.symmetric));
  const q = add(l, Op.QuantizeLinear, [l.input, scale, zero], 'q');
  return add(l, Op.DequantizeLinear, [q, scale, zero], 'dq');
}

/**
 * A [G] table indexed by the timestep's group, applied per sample: by per-axis Q/DQ along the batch axis, or
 * (`fakeQuantRank` given) by Div/Round/Clip/Mul on the scale reshaped to [B, 1, …] — both exact for mixed t.
 */
function lowerPerTimestep(l: Lowering, spec: ActivationQuantSpec, groups: TensorStats[], timestep: Value, T: number, fakeQuantRank?: number): Value {
  if (spec.bits !== 8) throw new IrError('unsupported', `quantize-activations: '${l.name}' asks for ${spec.bits}-bit per-timestep activations; Q/DQ needs 8`);
  const params = groups.map((g) => chooseActivationParams(g, spec.range, spec.bits, spec.symmetric));
  // A group no calibration sample fell into borrows its nearest neighbour's parameters.
  for (let g = 0; g < params.length; g++) {
    if (Number.isFinite(groups[g]!.min)) continue;
    let near = -1;
    for (let d = 1; d < params.length && near < 0; d++) for (const c of [g - d, g + d]) if (near < 0 && c >= 0 && c < params.length && Number.isFinite(groups[c]!.min)) near = c;
    if (near >= 0) params[g] = params[near]!;
  }
  const G = groups.length;
  const scaleTable = constant(l, 'scale_table', Tensor.fromFloat32([G], Float32Array.from(params, (p) => p.scale)));
  const zeroTable = constant(l, 'zero_point_table', zeroPointTensor(params.map((p) => p.zeroPoint), [G], spec.symmetric));
  // group = min(G − 1, floor(t · G / T)) in int64 arithmetic.
  const factor = constant(l, 'groups', Tensor.fromInt64([], [G]));
  const period = constant(l, 'period', Tensor.fromInt64([], [T]));
  const last = constant(l, 'last_group', Tensor.fromInt64([], [G - 1]));
  const scaled = add(l, Op.Mul, [timestep, factor], 't_times_groups');
  const bucket = add(l, Op.Div, [scaled, period], 'group_unclamped');
  const group = add(l, Op.Min, [bucket, last], 'group');
  const scale = add(l, Op.Gather, [scaleTable, group], 'scale', { axis: { kind: 'int', value: 0 } });
  const zero = add(l, Op.Gather, [zeroTable, group], 'zero_point', { axis: { kind: 'int', value: 0 } });
  if (fakeQuantRank !== undefined) {
    const { qmin, qmax } = activationRange(spec.bits, spec.symmetric);
    const perSample = constant(l, 'per_sample_shape', Tensor.fromInt64([fakeQuantRank], [-1, ...Array(fakeQuantRank - 1).fill(1)]));
    const scaleB = add(l, Op.Reshape, [scale, perSample], 'scale_per_sample');
    const zeroB = add(l, Op.Reshape, [add(l, Op.Cast, [zero], 'zero_point_f', { to: { kind: 'int', value: DataType.FLOAT } }), perSample], 'zero_point_per_sample');
    return fakeQuantize(emitter(l), { x: l.input, scale: scaleB, zeroPoint: zeroB, qmin, qmax, rounding: 'round' });
  }
  const axis: Record<string, Attribute> = { axis: { kind: 'int', value: 0 } };
  const q = add(l, Op.QuantizeLinear, [l.input, scale, zero], 'q', axis);
  return add(l, Op.DequantizeLinear, [q, scale, zero], 'dq', axis);
}

/** The fake-quant builder's view of this layer's quantizer: its nodes and constants named under `<layer>/input_quant/`. */
function emitter(l: Lowering): FakeQuantEmitter {
  return { op: (opType, inputs, suffix) => add(l, opType, inputs, suffix), scalar: (suffix, value) => constant(l, suffix, Tensor.fromFloat32([], new Float32Array([value]))) };
}

/**
 * Scales from the live tensor: reduce |x| (or min and max) over each sample / token / token group, then
 * fake-quantize. A token is one position's `channels` (C), the last axis of a linear's input; a convolution's
 * [N, C, ...] input is transposed to channels-last around the quantizer (per sample needs no transpose), so its
 * tokens are pixels and its groups run along C, as its weight's do. Token groups of g along C: a g that does not
 * divide C leaves a partial last group, as a weight's blocks do — x is zero-padded to whole groups and the padding
 * sliced off after (a zero moves no group's max |x|, and an asymmetric range contains 0 already).
 */
function lowerDynamic(l: Lowering, spec: ActivationQuantSpec, rank: number, channels: number, channelAxis: number): Value {
  const mode = spec.mode as Extract<ActivationQuantSpec['mode'], { kind: 'dynamic' }>;
  const { qmin, qmax } = activationRange(spec.bits, spec.symmetric);
  // perm moves the channel axis last; inverse brings it back.
  const perm = [...Array.from({ length: rank }, (_, i) => i).filter((i) => i !== channelAxis), channelAxis];
  const channelsLast = channelAxis !== rank - 1 && mode.granularity !== 'per-sample';
  let x = channelsLast ? add(l, Op.Transpose, [l.input], 'channels_last', { perm: { kind: 'ints', value: perm } }) : l.input;
  let axes: number[];
  let restore: Value | undefined;
  let padded = false;
  // A 2-D input ([rows, C], an adaLN linear's) has one token a row: per token is per sample, and its groups are C's.
  if (mode.granularity === 'per-sample' || rank < 2) axes = Array.from({ length: rank - 1 }, (_, i) => i + 1);
  else if (mode.granularity === 'per-token') axes = [rank - 1];
  else {
    // [..., C] → [..., C/g, g]: reduce over the last axis, then reshape back.
    const size = (mode.groupSize as number | undefined) ?? 64; // resolveInputGroup has replaced `weight`
    const padding = Math.ceil(channels / size) * size - channels;
    if (padding > 0) {
      x = add(l, Op.Pad, [x, constant(l, 'group_pads', Tensor.fromInt64([2 * rank], [...Array(2 * rank - 1).fill(0), padding]))], 'padded');
      padded = true;
    }
    restore = add(l, Op.Shape, [x], 'shape');
    const grouped = constant(l, 'group_shape', Tensor.fromInt64([rank + 1], [...Array(rank - 1).fill(0), -1, size]));
    x = add(l, Op.Reshape, [x, grouped], 'grouped');
    axes = [rank];
  }
  const eps = constant(l, 'eps', Tensor.fromFloat32([], new Float32Array([1e-8])));
  let scale: Value;
  let zero: Value | undefined;
  if (spec.symmetric) {
    const absmax = reduce(l, Op.ReduceMax, add(l, Op.Abs, [x], 'abs'), axes, 'absmax');
    scale = add(l, Op.Max, [add(l, Op.Div, [absmax, constant(l, 'qmax', Tensor.fromFloat32([], new Float32Array([qmax])))], 'scale_raw'), eps], 'scale');
  } else {
    const zeroF = constant(l, 'zero', Tensor.fromFloat32([], new Float32Array([0])));
    const hi = add(l, Op.Max, [reduce(l, Op.ReduceMax, x, axes, 'max_raw'), zeroF], 'max');
    const lo = add(l, Op.Min, [reduce(l, Op.ReduceMin, x, axes, 'min_raw'), zeroF], 'min');
    const span = constant(l, 'levels', Tensor.fromFloat32([], new Float32Array([qmax - qmin])));
    scale = add(l, Op.Max, [add(l, Op.Div, [add(l, Op.Sub, [hi, lo], 'range'), span], 'scale_raw'), eps], 'scale');
    const qminValue = constant(l, 'qmin_f', Tensor.fromFloat32([], new Float32Array([qmin])));
    zero = add(l, Op.Sub, [qminValue, add(l, Op.Round, [add(l, Op.Div, [lo, scale], 'min_over_scale')], 'round_min')], 'zero_point');
  }
  let out = fakeQuantize(emitter(l), { x, scale, ...(zero ? { zeroPoint: zero } : {}), qmin, qmax, rounding: 'round' });
  if (restore) out = add(l, Op.Reshape, [out, restore], 'ungrouped');
  if (padded) {
    const bound = (suffix: string, value: number) => constant(l, suffix, Tensor.fromInt64([1], [value]));
    out = add(l, Op.Slice, [out, bound('unpad_starts', 0), bound('unpad_ends', channels), bound('unpad_axes', -1)], 'unpadded');
  }
  if (channelsLast) out = add(l, Op.Transpose, [out], 'channels_first', { perm: { kind: 'ints', value: perm.map((_, i) => perm.indexOf(i)) } });
  out.type = l.input.type;
  return out;
}
