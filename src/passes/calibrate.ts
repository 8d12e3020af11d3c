/**
 * calibrate: runs the model on the calibration batches, exposing the inputs of the planned layers, and
 * streams their statistics (min/max with optional EMA, a value sample for percentile / L_p searches,
 * per-channel |x| maxima) — per timestep group where the plan asks for per-timestep tables. Requires the
 * CALIBRATION_BATCHES artifact and an executor; writes ACTIVATION_STATS and INPUT_CHANNEL_ABSMAX.
 */
import type { Model, Value } from '../ir/core.js';
import { IrError } from '../ir/errors.js';
import { discoverLayers, type Layer } from '../ir/layers.js';
import { Op, isOp } from '../ir/ops.js';
import { TensorStats } from './activation-ranges.js';
import { CALIBRATION_BATCHES } from './collect-hessians.js';
import type { TensorMap } from './executor.js';
import type { Pass, PassContext, PassOptions, PassResult } from './pass.js';
import { INPUT_CHANNEL_ABSMAX } from './smooth-quant.js';

/** Artifact key: statistics of each planned layer's input, one TensorStats per timestep group (Map<layerName, TensorStats[]>). */
export const ACTIVATION_STATS = 'activation-stats';

/** Values kept per tensor and group for percentile and L_p searches. */
const SAMPLE_SIZE = 1 << 15;

/** The graph input carrying the diffusion timestep: the integer input that feeds the sinusoidal embedding. */
export function findTimestepInput(model: Model): Value | undefined {
  const candidates = model.graph.inputs.filter((v) => !v.initializer && v.type && v.type.elemType !== 1);
  const reaches = (start: Value) => {
    const seen = new Set<Value>();
    let frontier = [start];
    for (let depth = 0; depth < 6 && frontier.length > 0; depth++) {
      const next: Value[] = [];
      for (const value of frontier) {
        for (const use of value.uses) {
          if (isOp(use.node, Op.Sin) || isOp(use.node, Op.Cos)) return true;
          for (const o of use.node.outputs) if (!seen.has(o)) (seen.add(o), next.push(o));
        }
      }
      frontier = next;
    }
    return false;
  };
  return candidates.find(reaches);
}

/** The timestep group of step t with `groups` equal groups over [0, T). */
export function timestepGroup(t: number, groups: number, T: number): number {
  return Math.min(groups - 1, Math.max(0, Math.floor((t * groups) / T)));
}

export const calibrate: Pass = {
  name: 'calibrate',
  summary: "collect statistics of planned layers' inputs on calibration data (min/max, samples, per channel, per timestep group)",
  options: {
    layers: { type: 'string-list', description: 'layers whose inputs to observe (default: those with an input spec in the plan)' },
    ema: { type: 'number', description: 'EMA momentum of min/max across batches (0: running extremes)', default: 0 },
    timesteps: { type: 'int', description: 'T of the diffusion schedule, for timestep groups', default: 1000 },
  },
  async run(model: Model, options: PassOptions, context: PassContext): Promise<PassResult> {
    const batches = context.artifacts.get(CALIBRATION_BATCHES) as TensorMap[] | undefined;
    if (!batches || batches.length === 0) throw new IrError('invalid-argument', 'calibrate needs calibration batches (the compile command builds them from the recipe)');
    if (!context.executor) throw new IrError('invalid-argument', 'calibrate needs an executor');
    const named = (options.layers as string[] | undefined) ?? [...context.plan.values()].filter((p) => p.input).map((p) => p.layer);
    const all = new Map(discoverLayers(model).map((l) => [l.name, l]));
    const layers = named.map((name) => {
      const layer = all.get(name);
      if (!layer) throw new IrError('invalid-argument', `calibrate: no layer named '${name}'`);
      return layer;
    });
    if (layers.length === 0) return { modified: false, statistics: { layers: 0 } };

    const T = options.timesteps as number;
    const timestep = findTimestepInput(model);
    const groupsOf = (layer: Layer) => {
      const mode = context.plan.get(layer.name)?.input?.mode;
      return mode?.kind === 'per-timestep' ? mode.groups : 1;
    };
    if (layers.some((l) => groupsOf(l) > 1) && !timestep) throw new IrError('invalid-argument', 'per-timestep activations need a timestep input (an integer input feeding a sinusoidal embedding)');

    const stats = (context.artifacts.get(ACTIVATION_STATS) as Map<string, TensorStats[]> | undefined) ?? new Map<string, TensorStats[]>();
    const channelMax = (context.artifacts.get(INPUT_CHANNEL_ABSMAX) as Map<string, Float32Array> | undefined) ?? new Map<string, Float32Array>();
    for (const [i, layer] of layers.entries()) stats.set(layer.name, Array.from({ length: groupsOf(layer) }, (_, g) => new TensorStats(SAMPLE_SIZE, context.seed * 7919 + i * 31 + g, options.ema as number)));
    const inputs = [...new Set(layers.map((l) => l.node.input(0).name))];
    const prepared = await context.executor.prepare(model, inputs);
    let samples = 0;
    try {
      for (const [b, feeds] of batches.entries()) {
        context.progress('calibration batches', b, batches.length);
        const outputs = await prepared.run(feeds);
        const ts = timestep ? Array.from(feeds[timestep.name]!.data as BigInt64Array, Number) : [];
        samples += feeds[Object.keys(feeds)[0]!]!.dims[0]!;
        for (const layer of layers) {
          const x = outputs[layer.node.input(0).name]!;
          const data = x.data as Float32Array;
          const groups = stats.get(layer.name)!;
          if (groups.length === 1) groups[0]!.add(data);
          else {
            // Split the batch by sample: each sample's values go to its timestep's group.
            const perSample = data.length / x.dims[0]!;
            for (let s = 0; s < x.dims[0]!; s++) groups[timestepGroup(ts[s]!, groups.length, T)]!.add(data.subarray(s * perSample, (s + 1) * perSample));
          }
          accumulateChannelMax(channelMax, layer, x.dims, data);
        }
      }
    } finally {
      await prepared.release();
    }
    context.progress('calibration batches', batches.length, batches.length);
    context.artifacts.set(ACTIVATION_STATS, stats);
    context.artifacts.set(INPUT_CHANNEL_ABSMAX, channelMax);
    return { modified: false, statistics: { layers: layers.length, tensors: inputs.length, batches: batches.length, samples } };
  },
};

/** Channel axis: last for token linears (MatMul/Gemm), 1 for Conv (NCHW). */
function accumulateChannelMax(channelMax: Map<string, Float32Array>, layer: Layer, dims: number[], data: Float32Array): void {
  const name = layer.node.input(0).name;
  const conv = layer.opType === 'Conv' || layer.opType === 'ConvTranspose';
  const channels = conv ? dims[1]! : dims[dims.length - 1]!;
  const inner = conv ? dims.slice(2).reduce((a, b) => a * b, 1) : 1;
  let max = channelMax.get(name);
  if (!max) channelMax.set(name, (max = new Float32Array(channels)));
  for (let i = 0; i < data.length; i++) {
    const c = conv ? Math.floor(i / inner) % channels : i % channels;
    const a = Math.abs(data[i]!);
    if (a > max[c]!) max[c] = a;
  }
}
