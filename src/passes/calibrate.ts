/**
 * calibrate: runs the model on the calibration batches, exposing the inputs of the planned layers, and
 * streams their statistics (min/max with optional EMA, a value sample for percentile / L_p searches,
 * per-channel |x| maxima) — per timestep group where the plan asks for per-timestep tables. Requires the
 * CALIBRATION_BATCHES artifact and an executor; writes ACTIVATION_STATS and INPUT_CHANNEL_ABSMAX.
 */
import type { Attribute, Dim, Model, Value } from '../ir/core.js';
import { IrError } from '../ir/errors.js';
import { peekTypes } from '../ir/infer-shapes.js';
import { layersOf } from '../quant/identity.js';
import { findTimestepInput } from '../quant/diffusion-inputs.js';
import type { Layer } from '../quant/layers.js';
import { Op, isOp } from '../ir/ops.js';
import { Tensor } from '../ir/tensor.js';
import { TensorStats } from './activation-ranges.js';
import type { PreparedModel, TensorMap } from '../ir/executor.js';
import { ACTIVATION_STATS, CALIBRATION_BATCHES, CALIBRATION_TIMESTEPS, INPUT_CHANNEL_ABSMAX } from './artifacts.js';
import { definePass, type PassResult } from './pass.js';
import { SessionNodes } from './session-nodes.js';

/** Values kept per tensor and group for percentile and L_p searches. */
const SAMPLE_SIZE = 1 << 15;

/** The timestep group of step t with `groups` equal groups over [0, T). */
export function timestepGroup(t: number, groups: number, T: number): number {
  return Math.min(groups - 1, Math.max(0, Math.floor((t * groups) / T)));
}

/** The calibrate pass. */
export const calibrate = definePass({
  name: 'calibrate',
  summary: "collect statistics of planned layers' inputs on calibration data (min/max, samples, per channel, per timestep group)",
  options: {
    layers: { type: 'string-list', description: 'layers whose inputs to observe (default: those with an input spec in the plan)' },
    ema: { type: 'number', description: 'EMA momentum of min/max across batches (0: running extremes)', default: 0 },
    timesteps: { type: 'int', description: 'T of the diffusion schedule, for timestep groups', default: 1000 },
    channels: { type: 'boolean', description: 'also collect per-channel |x| maxima (INPUT_CHANNEL_ABSMAX, for SmoothQuant)', default: false },
  },
  requires: [CALIBRATION_BATCHES],
  produces: [ACTIVATION_STATS, INPUT_CHANNEL_ABSMAX, CALIBRATION_TIMESTEPS],
  async run(model, options, context): Promise<PassResult> {
    const batches = context.artifacts.require(CALIBRATION_BATCHES, 'calibrate');
    if (batches.length === 0) throw new IrError('invalid-argument', 'calibrate needs calibration batches (the compile command builds them from the recipe)');
    if (!context.executor) throw new IrError('invalid-argument', 'calibrate needs an executor');
    const named = options.layers ?? [...context.plan.values()].filter((p) => p.input).map((p) => p.layer);
    const all = new Map(layersOf(model).map((l) => [l.name, l]));
    const layers = named.map((name) => {
      const layer = all.get(name);
      if (!layer) throw new IrError('invalid-argument', `calibrate: no layer named '${name}'`);
      return layer;
    });
    if (layers.length === 0) return { modified: false, statistics: { layers: 0 } };

    const T = options.timesteps;
    const timestep = findTimestepInput(model);
    const groupsOf = (layer: Layer) => {
      const mode = context.plan.get(layer.name)?.input?.mode;
      return mode?.kind === 'per-timestep' ? mode.groups : 1;
    };
    if (layers.some((l) => groupsOf(l) > 1) && !timestep) throw new IrError('invalid-argument', 'per-timestep activations need a timestep input (an integer input feeding a sinusoidal embedding)');

    const stats = context.artifacts.get(ACTIVATION_STATS) ?? new Map<string, TensorStats[]>();
    const channelMax = context.artifacts.get(INPUT_CHANNEL_ABSMAX) ?? new Map<string, Float32Array>();
    // One observer set per observed tensor and grouping: layers reading the same value (q, k, v) share it.
    const observed = new Map<string, Observed>();
    const probes = new Map<string, Probe>();
    const session = new SessionNodes(model.graph);
    // Row lengths (values per sample) set each value sample's stride; intermediate values rarely carry types, and
    // a dynamic height/width only has one once the batches' dims are put in.
    const types = peekTypes(model, layers.map((l) => l.node.input(0)), sharedFeedDims(model, batches));
    // Each row offers enough values for every timestep group's reservoir to be offered OFFERED_PER_KEPT× its size.
    const totalRows = batches.reduce((n, feeds) => n + Object.values(feeds)[0]!.dims[0]!, 0);
    const valuesPerRow = (groups: number) => Math.ceil((OFFERED_PER_KEPT * SAMPLE_SIZE * groups) / totalRows);
    let prepared: PreparedModel;
    try {
      for (const layer of layers) {
        const input = layer.node.input(0);
        const groups = groupsOf(layer);
        const key = `${input.name}|${groups}`;
        let entry = observed.get(key);
        if (!entry) {
          const conv = isOp(layer.node, Op.Conv) || isOp(layer.node, Op.ConvTranspose);
          const shape = types.get(input)?.shape;
          const channels = channelCount(layer, shape, conv);
          let probe = probes.get(input.name);
          if (!probe) probes.set(input.name, (probe = addProbe(model, input, rowLength(shape), valuesPerRow(groups), channels, options.channels, conv, isOp(layer.node, Op.Gemm), probes.size, session)));
          const i = observed.size;
          entry = { probe, groups: Array.from({ length: groups }, (_, g) => new TensorStats(SAMPLE_SIZE, context.seed * 7919 + i * 31 + g, options.ema, options.channels ? channels : 1, input.name)) };
          observed.set(key, entry);
        }
        stats.set(layer.name, entry.groups);
      }
      prepared = await context.executor.prepare(model, [...probes.values()].flatMap((p) => [p.min, p.max, p.sample]));
    } finally {
      // The probes only live in the session: the model leaves this pass as it came.
      session.removeAll();
    }
    const timestepCounts = new Map<number, number>();
    let samples = 0;
    try {
      for (const [b, feeds] of batches.entries()) {
        context.progress('calibration batches', b, batches.length);
        const outputs = await prepared.run(feeds);
        const ts = timestep ? Array.from(feeds[timestep.name]!.data as BigInt64Array, Number) : [];
        for (const t of ts) timestepCounts.set(t, (timestepCounts.get(t) ?? 0) + 1);
        const batch = feeds[Object.keys(feeds)[0]!]!.dims[0]!;
        samples += batch;
        for (const entry of observed.values()) {
          const lo = outputs[entry.probe.min]!.data as Float32Array;
          const hi = outputs[entry.probe.max]!.data as Float32Array;
          const values = outputs[entry.probe.sample]!.data as Float32Array;
          if (entry.groups.length === 1) {
            entry.groups[0]!.observeExtremes(lo, hi);
            entry.groups[0]!.observeValues(values);
          } else {
            // Each run of consecutive samples with the same timestep group goes to that group at once
            // (rows are sample-major: a [B·N, C] input gives N rows per sample).
            const extremesPerSample = lo.length / batch;
            const firstValueOf = sampledRowStart(entry.probe, values.length, batch);
            for (let start = 0; start < batch; ) {
              const group = timestepGroup(ts[start]!, entry.groups.length, T);
              let end = start + 1;
              while (end < batch && timestepGroup(ts[end]!, entry.groups.length, T) === group) end++;
              entry.groups[group]!.observeExtremes(lo.subarray(start * extremesPerSample, end * extremesPerSample), hi.subarray(start * extremesPerSample, end * extremesPerSample));
              entry.groups[group]!.observeValues(values.subarray(firstValueOf(start), firstValueOf(end)));
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
    if (options.channels) for (const entry of observed.values()) mergeChannelAbsMax(channelMax, entry);
    context.artifacts.set(ACTIVATION_STATS, stats);
    context.artifacts.set(INPUT_CHANNEL_ABSMAX, channelMax);
    context.artifacts.set(CALIBRATION_TIMESTEPS, timestepCounts);
    return { modified: false, statistics: { layers: layers.length, tensors: probes.size, whole_row_samples: [...probes.values()].filter((p) => p.stride === 1).length, batches: batches.length, samples } };
  },
});

/** How many values each reservoir is offered, in multiples of its size: enough for a uniform sample, no more. */
const OFFERED_PER_KEPT = 2;

/**
 * The stride of the value sample taken in-graph over the flattened batch: the largest prime not dividing the
 * row length (so it divides no channel count either) that still leaves max(channels, `valuesPerRow`) values
 * per row, so the sample walks through every channel of every row and starts each row at another phase; 1
 * (whole rows) for short rows and rows of unknown length. (A fixed stride on a [B, 128] adaLN input saw 2 of
 * its 128 channels and gave a range 3× too narrow; whole rows everywhere made calibration cost 2.3× plain
 * inference.)
 */
function valueSampleStride(rowLength: number | undefined, channels: number, valuesPerRow: number): number {
  if (rowLength === undefined) return 1;
  const limit = Math.floor(rowLength / Math.max(channels, valuesPerRow));
  for (let p = limit; p >= 2; p--) if (isPrime(p) && rowLength % p !== 0) return p;
  return 1;
}

function isPrime(n: number): boolean {
  for (let d = 2; d * d <= n; d++) if (n % d === 0) return false;
  return n >= 2;
}

/** The in-graph observers of one tensor: names of its per-row min and max ([R, C] per channel, else [R, 1]) and of its strided value sample. */
interface Probe {
  tensor: string;
  min: string;
  max: string;
  sample: string;
  /** The value sample: every `stride`-th value of the flattened batch from `offset`, over rows of `rowLength` (stride 1: whole rows). */
  stride: number;
  offset: number;
  rowLength?: number;
}

/** Index into a probe's value sample where row r's values begin (r = rows: the end). */
export function sampledRowStart(probe: Pick<Probe, 'stride' | 'offset' | 'rowLength'>, sampled: number, rows: number): (r: number) => number {
  if (probe.stride === 1) return (r) => (r * sampled) / rows;
  const { stride, offset, rowLength } = probe;
  return (r) => Math.min(sampled, Math.max(0, Math.ceil((r * rowLength! - offset) / stride)));
}

/** One observed tensor and grouping: its probe and its observers, one per timestep group. */
interface Observed {
  probe: Probe;
  groups: TensorStats[];
}

/**
 * Each fed graph input's dims as every batch has them: the batch axis, and any axis the batches do not agree on,
 * stay as declared (a row length inferred from them then holds for every batch).
 */
function sharedFeedDims(model: Model, batches: readonly TensorMap[]): Map<string, Dim[]> {
  const dims = new Map<string, Dim[]>();
  for (const input of model.graph.inputs) {
    const declared = input.type?.shape;
    const fed = batches.map((feeds) => feeds[input.name]?.dims);
    if (!declared || fed.some((d) => !d || d.length !== declared.length)) continue;
    dims.set(input.name, declared.map((d, axis) => (axis > 0 && fed.every((f) => f![axis] === fed[0]![axis]) ? fed[0]![axis]! : d)));
  }
  return dims;
}

/** Values per sample of a tensor of this shape (all but the batch axis), when every dim is known. */
function rowLength(shape: readonly Dim[] | undefined): number | undefined {
  const dims = shape?.slice(1);
  return dims && dims.every((d) => typeof d === 'number') ? (dims as number[]).reduce((a, b) => a * b, 1) : undefined;
}

/** Input channels as the layer reads them: axis 1 for Conv (NCHW), the last axis for token linears. */
function channelCount(layer: Layer, shape: readonly Dim[] | undefined, conv: boolean): number {
  const dim = shape ? (conv ? shape[1] : shape[shape.length - 1]) : undefined;
  return typeof dim === 'number' ? dim : conv ? layer.inChannels * layer.node.intAttr('group', 1) : layer.inChannels;
}

/**
 * Adds reductions that ORT computes next to the model: per-row (per-sample) extremes — per channel when
 * `perChannel`, x viewed as [R, M, C] (tokens) or [R, C, M] (Conv) and reduced over M, else over the whole
 * contiguous row, which costs ORT less — and a strided sample of each row (`valueSampleStride`). Fetching
 * these instead of x keeps the copy out of ORT and the JS loops small.
 */
function addProbe(model: Model, x: Value, rowLength: number | undefined, valuesPerRow: number, channels: number, perChannel: boolean, conv: boolean, matrixInput: boolean, index: number, session: SessionNodes): Probe {
  const base = `${x.name}/observe`;
  const node = (opType: string, inputs: Value[], suffix: string, attributes?: Record<string, Attribute>) => session.add(base, opType, inputs, suffix, attributes);
  const constant = (suffix: string, values: number[]) => session.constant(base, suffix, Tensor.fromInt64([values.length], values));
  const rows = node(Op.Reshape, [x, constant('rows', [0, -1])], 'rows');
  const viewed = perChannel ? node(Op.Reshape, [x, constant('view', conv ? [0, channels, -1] : [0, -1, channels])], 'view') : rows;
  const axis = perChannel && conv ? 2 : 1;
  const keepdims: Attribute = { kind: 'int', value: perChannel ? 0 : 1 };
  const reduce = (opType: string, suffix: string) =>
    model.opset >= 18 ? node(opType, [viewed, constant(`${suffix}_axes`, [axis])], suffix, { keepdims }) : node(opType, [viewed], suffix, { keepdims, axes: { kind: 'ints', value: [axis] } });
  const min = reduce(Op.ReduceMin, 'min');
  const max = reduce(Op.ReduceMax, 'max');
  const step = matrixInput ? 1 : valueSampleStride(rowLength, channels, valuesPerRow);
  // Strided over the flattened batch, not per row: as the row length is not a multiple of the stride, each row
  // starts at another phase, so over the rows every (token, channel) position is sampled alike.
  const offset = step === 1 ? 0 : (index * 3) % step;
  const flat = step === 1 ? rows : node(Op.Reshape, [x, constant('flat', [-1])], 'flat');
  const sample = step === 1 ? rows : node(Op.Slice, [flat, constant('starts', [offset]), constant('ends', [Number.MAX_SAFE_INTEGER]), constant('axes', [0]), constant('steps', [step])], 'sample');
  return { tensor: x.name, min: min.name, max: max.name, sample: sample.name, stride: step, offset, ...(rowLength !== undefined ? { rowLength } : {}) };
}

/** INPUT_CHANNEL_ABSMAX of a tensor: max |x| per input channel over all its groups, merged with what is there. */
function mergeChannelAbsMax(channelMax: Map<string, Float32Array>, entry: Observed): void {
  const name = entry.probe.tensor;
  const channels = entry.groups[0]!.channels;
  let max = channelMax.get(name);
  if (!max) channelMax.set(name, (max = new Float32Array(channels)));
  for (const g of entry.groups) for (let c = 0; c < channels; c++) max[c] = Math.max(max[c]!, Math.abs(g.channelMin[c]!), Math.abs(g.channelMax[c]!));
}
