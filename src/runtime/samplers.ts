/**
 * DDIM (η ≥ 0) and DDPM ancestral samplers over any denoiser, batch-wise and seeded, with optional
 * classifier-free guidance. Definitions follow the dit-digits fixture (samples_manifest.json): the x0
 * prediction is clipped to [−1, 1] at every step, DDIM steps are (S−1−i)·⌊T/S⌋ with ᾱ_prev = 1 after the last,
 * DDPM runs t = T−1..0 with variance β_t(1−ᾱ_{t−1})/(1−ᾱ_t) and no noise at t = 0.
 */
import { ddimTimesteps, ddimUpdate, ddpmUpdate, toEps, type Schedule } from './diffusion.js';
import { elementCount } from './host-tensor.js';
import type { RuntimeSession } from './ort-session.js';
import { seededNormal } from '../random.js';

/** Predicts the model output (eps or v) for x [dims] at int64 steps t [B] with labels y [B]. */
export type DenoiseFn = (x: Float32Array, t: BigInt64Array, y: BigInt64Array, dims: number[]) => Promise<Float32Array>;

/** Input/output names of a diffusion model (the sidecar's `inputs`/`outputs`, in x, t, y order). */
export interface DenoiserNames {
  x: string;
  t: string;
  y?: string;
  out: string;
}

/** A DenoiseFn over an open session with the given I/O names. */
export function denoiserFromSession(session: RuntimeSession, names: DenoiserNames): DenoiseFn {
  return async (x, t, y, dims) => {
    const feeds = {
      [names.x]: { dtype: 'float32' as const, dims, data: x },
      [names.t]: { dtype: 'int64' as const, dims: [t.length], data: t },
      ...(names.y ? { [names.y]: { dtype: 'int64' as const, dims: [y.length], data: y } } : {}),
    };
    return (await session.run(feeds, [names.out]))[names.out]!.data as Float32Array;
  };
}

/** Names from a sidecar's `inputs` (x, t[, y]) and `outputs` lists; falls back to the fixture's names. */
export function denoiserNamesFromSidecar(sidecar: { inputs?: { name: string }[]; outputs?: { name: string }[] }): DenoiserNames {
  const inputs = sidecar.inputs?.map((i) => i.name) ?? ['x', 't', 'y'];
  if (inputs.length < 2) throw new Error('sidecar: expected inputs x and t (and optionally y)');
  return { x: inputs[0]!, t: inputs[1]!, ...(inputs[2] ? { y: inputs[2] } : {}), out: sidecar.outputs?.[0]?.name ?? 'eps' };
}

/** What the per-step hook sees: the exact model input x_t at step t, and the eps the update used. */
export interface StepRecord {
  stepIndex: number;
  t: number;
  /** The batch as the model saw it at this step (a live buffer: copy what you keep). */
  x_t: Float32Array;
  y: BigInt64Array;
  /** Guided eps (v converted to eps) that the update used. */
  eps: Float32Array;
  /** Index of this batch's first sample in the whole run. */
  firstSample: number;
}

/** Sampler settings. */
export interface SamplerOptions {
  sampler: 'ddim' | 'ddpm';
  /** DDIM steps (default 50); DDPM always runs all T steps. */
  steps?: number;
  /** DDIM η (default 0 = deterministic). */
  eta?: number;
  /** Seeds x_T and the per-step noise. */
  seed?: number;
  /** Classifier-free guidance scale; 1 (default) = no guidance. Needs `nullClass`. */
  guidanceScale?: number;
  /** The label the model treats as "unconditional"; null/undefined when it has none. */
  nullClass?: number | null;
  /** Samples per model call (default 64). */
  batch?: number;
  progress?: (step: number, total: number) => void;
  /** Called after each model call; returning false stops this batch's trajectory there. */
  onStep?: (record: StepRecord) => boolean | void;
}

/** The grid of model timesteps a sampler visits, high to low. */
export function samplerTimesteps(schedule: Schedule, options: Pick<SamplerOptions, 'sampler' | 'steps'>): number[] {
  if (options.sampler === 'ddpm') return Array.from({ length: schedule.T }, (_, i) => schedule.T - 1 - i);
  const steps = options.steps ?? 50;
  if (!(Number.isInteger(steps) && steps >= 1 && steps <= schedule.T)) throw new Error(`DDIM steps must be an integer in 1..${schedule.T}, got ${steps}`);
  return ddimTimesteps(schedule.T, steps);
}

/**
 * Samples `labels.length` images of per-sample shape `imageShape`. x_T comes from `xT` when given, else from
 * seededNormal(seed) for the whole run (so it does not depend on the batch size); per-step noise for batch k comes from
 * seededNormal(seed + 1 + k).
 */
export async function sampleImages(denoise: DenoiseFn, schedule: Schedule, labels: ArrayLike<number | bigint>, imageShape: number[], options: SamplerOptions, xT?: Float32Array): Promise<Float32Array> {
  const n = labels.length;
  const perSample = elementCount(imageShape);
  const guidance = options.guidanceScale ?? 1;
  if (guidance !== 1 && (options.nullClass === null || options.nullClass === undefined)) {
    throw new Error('classifier-free guidance needs a null class, and this model has none (trained without label dropout): use guidance scale 1');
  }
  const seed = options.seed ?? 0;
  const x = xT ? Float32Array.from(xT) : Float32Array.from({ length: n * perSample }, seededNormal(seed));
  if (x.length !== n * perSample) throw new Error(`x_T has ${x.length} values, expected ${n}×${perSample}`);
  const timesteps = samplerTimesteps(schedule, options);
  const batchSize = options.batch ?? 64;
  const batches = Math.ceil(n / batchSize);
  const total = timesteps.length * batches;
  let done = 0;
  for (let k = 0; k < batches; k++) {
    const first = k * batchSize;
    const count = Math.min(batchSize, n - first);
    const xb = x.subarray(first * perSample, (first + count) * perSample);
    const y = BigInt64Array.from({ length: count }, (_, i) => BigInt(labels[first + i]!));
    const normal = seededNormal(seed + 1 + k);
    const run = guidance === 1 ? denoise : guided(denoise, guidance, BigInt(options.nullClass!));
    const dims = [count, ...imageShape];
    const tBatch = new BigInt64Array(count);
    for (let i = 0; i < timesteps.length; i++) {
      const t = timesteps[i]!;
      tBatch.fill(BigInt(t));
      const out = await run(xb, tBatch, y, dims);
      const eps = toEps(schedule, xb, out, t);
      const keepGoing = options.onStep?.({ stepIndex: i, t, x_t: xb, y, eps, firstSample: first }) !== false;
      if (options.sampler === 'ddim') ddimUpdate(schedule, xb, eps, t, timesteps[i + 1], options.eta ?? 0, normal);
      else ddpmUpdate(schedule, xb, eps, t, normal);
      options.progress?.(++done, total);
      if (!keepGoing) {
        done += timesteps.length - 1 - i;
        break;
      }
    }
  }
  return x;
}

function guided(denoise: DenoiseFn, scale: number, nullClass: bigint): DenoiseFn {
  // One call on [x; x] with [y; null]: eps = eps_u + s·(eps_c − eps_u).
  return async (x, t, y, dims) => {
    const b = y.length;
    const x2 = new Float32Array(x.length * 2);
    x2.set(x);
    x2.set(x, x.length);
    const t2 = new BigInt64Array(b * 2);
    t2.set(t);
    t2.set(t, b);
    const y2 = new BigInt64Array(b * 2).fill(nullClass);
    y2.set(y);
    const out = await denoise(x2, t2, y2, [b * 2, ...dims.slice(1)]);
    const eps = new Float32Array(x.length);
    for (let i = 0; i < x.length; i++) {
      const uncond = out[x.length + i]!;
      eps[i] = uncond + scale * (out[i]! - uncond);
    }
    return eps;
  };
}
