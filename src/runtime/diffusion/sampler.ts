/**
 * The one sampler driver: calibration trajectories, `qcompile sample`, `eval` and the group-size search's
 * probe all run a denoiser through `sample`. Per step it builds the feeds the interface describes (the latent
 * as the scheduler scales it, the timestep encoded per `iface.timestep`, the conditioning of each sample),
 * runs the model once — on [unconditional; conditional] rows under classifier-free guidance, as diffusers
 * does — reads the prediction channels of the output per sample, guides it (u + s·(c − u)) and lets the
 * `Scheduler` step. x_T comes from the seed alone and every sample draws its step noise from its own stream,
 * so a sample's trajectory does not depend on the batch it ran in.
 */
import type { Model } from '../../ir/core.js';
import { DataType } from '../../ir/dtype.js';
import type { HostTensor, ModelExecutor, TensorMap } from '../../ir/executor.js';
import { floatToHalf, halfToFloat } from '../../ir/tensor.js';
import { seededNormal } from '../../random.js';
import { OrtExecutor } from '../ir-executor.js';
import type { ConditioningSet } from './conditioning.js';
import type { DiffusionInterface, TimestepInput } from './interface.js';
import type { Scheduler } from './scheduler.js';
import { RunRows, cutBatches } from '../run-rows.js';
import { stackFeeds } from './tensor-rows.js';

/** An open model driven through its diffusion interface. */
export interface Denoiser {
  readonly iface: DiffusionInterface;
  /** The raw output (every channel, every row) for complete feeds. */
  run(feeds: TensorMap): Promise<Float32Array>;
  release(): Promise<void>;
}

/**
 * Opens `model` in ONNX Runtime (or `executor`) as a Denoiser fetching the interface's output. A call with more
 * rows than fit the model's activation budget (`runRows`, by default the model's own: run-rows.ts) runs as
 * consecutive runs of as many rows as fit, their outputs concatenated.
 */
export async function openDenoiser(model: Model, iface: DiffusionInterface, executor: ModelExecutor = new OrtExecutor(), runRows: RunRows = new RunRows(model)): Promise<Denoiser> {
  const prepared = await executor.prepare(model, [iface.output.name]);
  const output = async (feeds: TensorMap) => (await prepared.run(feeds))[iface.output.name]!.data as Float32Array;
  return {
    iface,
    run: async (feeds) => {
      const runs = cutBatches([feeds], runRows);
      if (runs.length === 1) return output(feeds);
      const parts: Float32Array[] = [];
      for (const run of runs) parts.push(await output(run));
      const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
      parts.reduce((offset, p) => (out.set(p, offset), offset + p.length), 0);
      return out;
    },
    release: () => prepared.release(),
  };
}

/** The timestep feed for `rows` rows at scheduler timestep `t`: t × scale in the input's element type, [rows] or a scalar. */
export function timestepFeed(input: TimestepInput, t: number, rows: number): HostTensor {
  const value = t * input.scale;
  const dims = input.rank === 0 ? [] : [rows];
  const n = input.rank === 0 ? 1 : rows;
  switch (input.elemType) {
    case DataType.INT64:
      return { dtype: 'int64', dims, data: new BigInt64Array(n).fill(BigInt(Math.round(value))) };
    case DataType.INT32:
      return { dtype: 'int32', dims, data: new Int32Array(n).fill(Math.round(value)) };
    case DataType.FLOAT:
      return { dtype: 'float32', dims, data: new Float32Array(n).fill(value) };
    case DataType.FLOAT16:
      return { dtype: 'float16', dims, data: new Uint16Array(n).fill(floatToHalf(value)) };
    default:
      throw new Error(`timestep input '${input.name}' has element type ${input.elemType}: qcompile feeds int64, int32, float32 or float16 timesteps`);
  }
}

/** The model timestep of each row of `feeds` (a scalar timestep gives every one of `rows` rows its value). */
export function feedTimesteps(input: TimestepInput, feeds: TensorMap, rows: number): number[] {
  const data = feeds[input.name]!.data;
  const value = (i: number) => (input.elemType === DataType.FLOAT16 ? halfToFloat(data[i] as number) : Number(data[i]));
  return Array.from({ length: rows }, (_, i) => value(input.rank === 0 ? 0 : i));
}

/**
 * The prediction channels of a raw output for `rows` samples: the output as it is when it has the latent's
 * channels, else [prediction | variance] by channel per sample (learned variance); anything else is an error.
 */
export function predictionOf(iface: DiffusionInterface, output: Float32Array, rows: number): Float32Array {
  const [channels, ...spatial] = iface.latent.shape;
  const plane = spatial.reduce((a, b) => a * b, 1);
  const per = channels! * plane;
  if (output.length === rows * per) return output;
  const variance = iface.output.varianceChannels;
  const withVariance = (channels! + variance) * plane;
  if (variance === 0 || output.length !== rows * withVariance) {
    throw new Error(`model output '${iface.output.name}' has ${output.length} values for ${rows} samples: expected ${rows} × ${per} (the latent's ${channels} channels)${variance ? ` or ${rows} × ${withVariance} (with ${variance} variance channels)` : ''}`);
  }
  const out = new Float32Array(rows * per);
  for (let s = 0; s < rows; s++) out.set(output.subarray(s * withVariance, s * withVariance + per), s * per);
  return out;
}

/** What the per-step hook sees. */
export interface StepRecord {
  stepIndex: number;
  /** The scheduler timestep (scheduler units) and its position on the training axis (0 = clean). */
  t: number;
  position: number;
  /** The exact feeds of this model call: under CFG rows [0, count) are unconditional, [count, 2·count) conditional. */
  feeds: TensorMap;
  /** The raw model output for every row (all channels). */
  output: Float32Array;
  /** The guided prediction the scheduler stepped with, [count, ...latent]. */
  guided: Float32Array;
  /** Whether the call ran unconditional rows too. */
  cfg: boolean;
  /** This batch's first sample in the run and its sample count. */
  firstSample: number;
  count: number;
}

/** What to sample. */
export interface SampleOptions {
  scheduler: Scheduler;
  /** Per sample, its condition index into `conditioning` (its length is the sample count). */
  conditions: readonly number[];
  /** Absent for an unconditional model. */
  conditioning?: ConditioningSet;
  /** Classifier-free guidance scale (1, the default: the conditional branch only). */
  guidance?: number;
  /** Seeds x_T (for the whole run) and each sample's step noise. */
  seed?: number;
  /** Each sample's index in the whole run, naming its step-noise stream (default: its position here). */
  sampleIndex?: readonly number[];
  /** Samples per model call (default 64; CFG calls run twice the rows). */
  batch?: number;
  /** The starting noise [n, ...latent] instead of the seed's (scaled by `initNoiseSigma`, as diffusers scales given latents). */
  xT?: Float32Array;
  /** Called after each model call; returning false stops this batch's trajectories there. */
  onStep?: (record: StepRecord) => boolean | void;
  progress?: (done: number, total: number) => void;
}

/** The seed of sample i's step-noise stream: a mix of the run's seed and the sample index, apart from x_T's stream. */
function sampleNoiseSeed(seed: number, sample: number): number {
  return (Math.imul(seed ^ 0x5bd1e995, 0x9e3779b1) + Math.imul(sample + 1, 0x85ebca6b)) >>> 0;
}

/** Samples `conditions.length` latents [n, ...iface.latent.shape] from the denoiser. */
export async function sample(denoiser: Denoiser, options: SampleOptions): Promise<Float32Array> {
  const { iface } = denoiser;
  const { scheduler, conditions, conditioning } = options;
  const n = conditions.length;
  const perSample = iface.latent.shape.reduce((a, b) => a * b, 1);
  const guidance = options.guidance ?? 1;
  const cfg = guidance !== 1;
  if (cfg && !conditioning?.unconditional) {
    throw new Error(`classifier-free guidance (scale ${guidance}) needs an unconditional input (a null class or the empty prompt), and ${conditioning ? `${conditioning.describe} has none` : 'this model is unconditional'}: use guidance 1`);
  }
  const seed = options.seed ?? 0;
  const x = options.xT ? Float32Array.from(options.xT) : Float32Array.from({ length: n * perSample }, seededNormal(seed));
  if (x.length !== n * perSample) throw new Error(`x_T has ${x.length} values, expected ${n} × ${perSample}`);
  if (scheduler.initNoiseSigma !== 1) for (let i = 0; i < x.length; i++) x[i]! *= scheduler.initNoiseSigma;
  const steps = scheduler.timesteps.length;
  const batchSize = Math.max(1, options.batch ?? 64);
  const batches = Math.ceil(n / batchSize);
  const total = steps * batches;
  let done = 0;
  for (let k = 0; k < batches; k++) {
    const first = k * batchSize;
    const count = Math.min(batchSize, n - first);
    const xb = x.subarray(first * perSample, (first + count) * perSample);
    const noise = Array.from({ length: count }, (_, s) => seededNormal(sampleNoiseSeed(seed, options.sampleIndex?.[first + s] ?? first + s)));
    const conditional = conditioning?.feeds(conditions.slice(first, first + count)) ?? {};
    const condFeeds = cfg ? stackFeeds([conditioning!.unconditional!(count), conditional]) : conditional;
    const rows = cfg ? 2 * count : count;
    const latentDims = [rows, ...iface.latent.shape];
    for (let i = 0; i < steps; i++) {
      const t = scheduler.timesteps[i]!;
      const input = scheduler.scaleModelInput(xb, i);
      let latent = input;
      if (cfg) {
        latent = new Float32Array(2 * input.length);
        latent.set(input);
        latent.set(input, input.length);
      }
      const feeds: TensorMap = { ...condFeeds, [iface.latent.name]: { dtype: 'float32', dims: latentDims, data: latent }, [iface.timestep.name]: timestepFeed(iface.timestep, t, rows) };
      const output = await denoiser.run(feeds);
      const prediction = predictionOf(iface, output, rows);
      let guided = prediction;
      if (cfg) {
        guided = new Float32Array(count * perSample);
        for (let j = 0; j < guided.length; j++) {
          const u = prediction[j]!;
          guided[j] = u + guidance * (prediction[count * perSample + j]! - u);
        }
      }
      const keepGoing = options.onStep?.({ stepIndex: i, t, position: scheduler.position(i), feeds, output, guided, cfg, firstSample: first, count }) !== false;
      // One step per sample, each with its own noise stream: the trajectory is the same in any batch.
      for (let s = 0; s < count; s++) scheduler.step(guided.subarray(s * perSample, (s + 1) * perSample), i, xb.subarray(s * perSample, (s + 1) * perSample), noise[s]!);
      options.progress?.(++done, total);
      if (!keepGoing) {
        done += steps - 1 - i;
        break;
      }
    }
  }
  return x;
}
