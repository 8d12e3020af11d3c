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
import { TensorStats, type ChannelLayout } from './activation-ranges.js';
import { CALIBRATION_BATCHES } from './collect-hessians.js';
import type { TensorMap } from './executor.js';
import type { Pass, PassContext, PassOptions, PassResult } from './pass.js';
import { INPUT_CHANNEL_ABSMAX } from './smooth-quant.js';

/** Artifact key: statistics of each planned layer's input, one TensorStats per timestep group (Map<layerName, TensorStats[]>). */
export const ACTIVATION_STATS = 'activation-stats';

/** Artifact key: how many calibration samples had each timestep (Map<t, count>), as the observers saw them. */
export const CALIBRATION_TIMESTEPS = 'calibration-timesteps';

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
    // One observer set per observed tensor and grouping: layers reading the same value (q, k, v) share it.
    const observed = new Map<string, Observed>();
    for (const layer of layers) {
      const name = layer.node.input(0).name;
      const groups = groupsOf(layer);
      const key = `${name}|${groups}`;
      let entry = observed.get(key);
      if (!entry) {
        const i = observed.size;
        const layout = channelLayout(layer);
        entry = { name, groups: Array.from({ length: groups }, (_, g) => new TensorStats(SAMPLE_SIZE, context.seed * 7919 + i * 31 + g, options.ema as number, layout)) };
        observed.set(key, entry);
      }
      stats.set(layer.name, entry.groups);
    }
    const inputs = [...new Set([...observed.values()].map((o) => o.name))];
    const timestepCounts = new Map<number, number>();
    const prepared = await context.executor.prepare(model, inputs);
    let samples = 0;
    try {
      for (const [b, feeds] of batches.entries()) {
        context.progress('calibration batches', b, batches.length);
        const outputs = await prepared.run(feeds);
        const ts = timestep ? Array.from(feeds[timestep.name]!.data as BigInt64Array, Number) : [];
        for (const t of ts) timestepCounts.set(t, (timestepCounts.get(t) ?? 0) + 1);
        samples += feeds[Object.keys(feeds)[0]!]!.dims[0]!;
        for (const entry of observed.values()) {
          const x = outputs[entry.name]!;
          const data = x.data as Float32Array;
          const { channels, inner } = entry.groups[0]!.layout;
          if (data.length % (channels * inner) !== 0) throw new IrError('invalid-argument', `calibrate: '${entry.name}' has shape [${x.dims.join(',')}], not a whole number of ${channels}-channel rows`);
          if (entry.groups.length === 1) entry.groups[0]!.observe(data);
          else {
            // Each run of consecutive samples with the same timestep group goes to that group at once.
            const perSample = data.length / x.dims[0]!;
            for (let start = 0; start < x.dims[0]!; ) {
              const group = timestepGroup(ts[start]!, entry.groups.length, T);
              let end = start + 1;
              while (end < x.dims[0]! && timestepGroup(ts[end]!, entry.groups.length, T) === group) end++;
              entry.groups[group]!.observe(data.subarray(start * perSample, end * perSample));
              start = end;
            }
          }
          for (const g of entry.groups) g.endBatch();
        }
      }
    } finally {
      await prepared.release();
    }
    context.progress('calibration batches', batches.length, batches.length);
    for (const entry of observed.values()) mergeChannelAbsMax(channelMax, entry);
    context.artifacts.set(ACTIVATION_STATS, stats);
    context.artifacts.set(INPUT_CHANNEL_ABSMAX, channelMax);
    context.artifacts.set(CALIBRATION_TIMESTEPS, timestepCounts);
    return { modified: false, statistics: { layers: layers.length, tensors: inputs.length, batches: batches.length, samples } };
  },
};

/** One observed tensor: its observers, one per timestep group. */
interface Observed {
  name: string;
  groups: TensorStats[];
}

/** Channel axis of a layer's input: last for token linears (MatMul/Gemm), 1 for Conv (NCHW). */
function channelLayout(layer: Layer): ChannelLayout {
  const shape = layer.node.input(0).type?.shape ?? [];
  if (layer.opType === 'Conv' || layer.opType === 'ConvTranspose') {
    const inner = shape.slice(2).reduce<number>((a, d) => a * (typeof d === 'number' ? d : NaN), 1);
    if (!Number.isFinite(inner)) throw new IrError('invalid-argument', `calibrate: '${layer.name}' needs static spatial dimensions`);
    return { channels: typeof shape[1] === 'number' ? shape[1] : layer.inChannels, inner };
  }
  const last = shape[shape.length - 1];
  return { channels: typeof last === 'number' ? last : layer.inChannels, inner: 1 };
}

/** INPUT_CHANNEL_ABSMAX of a tensor: max |x| per input channel over all its groups, merged with what is there. */
function mergeChannelAbsMax(channelMax: Map<string, Float32Array>, entry: Observed): void {
  const channels = entry.groups[0]!.layout.channels;
  let max = channelMax.get(entry.name);
  if (!max) channelMax.set(entry.name, (max = new Float32Array(channels)));
  for (const g of entry.groups) for (let c = 0; c < channels; c++) max[c] = Math.max(max[c]!, Math.abs(g.channelMin[c]!), Math.abs(g.channelMax[c]!));
}
