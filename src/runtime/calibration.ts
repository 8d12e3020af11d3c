/**
 * Calibration sets from the model's own FP trajectories: DDIM from seeded noise, recording the (x_t, t, y)
 * the model is actually called with (x_t and t paired by construction — the PTQ4DM reference pairs them off
 * by one step). Strategies: uniform random steps, evenly spaced steps, one random distinct step per trajectory
 * (Q-DiT), and NDTC (PTQ4DM: t ~ Normal(μT, σT), clamped, snapped to the sampler's grid).
 */
import type { Model } from '../ir/core.js';
import { findTimestepInput } from '../quant/diffusion-inputs.js';
import { IrError } from '../ir/errors.js';
import type { TensorMap } from '../ir/executor.js';
import { seededNormal, seededRandom } from '../random.js';
import { ddimTimesteps, type Schedule } from './diffusion.js';
import { OrtExecutor } from './ir-executor.js';
import { sampleImages, type DenoiseFn } from './samplers.js';

/** How calibration steps are drawn. */
export type StepStrategy =
  | { kind: 'uniform' }
  | { kind: 'evenly-spaced'; count: number }
  | { kind: 'random-distinct' }
  | { kind: 'ndtc'; mean: number; std: number };

/** Names and shape of the model's diffusion inputs. */
export interface DiffusionIO {
  image: string;
  timestep: string;
  label?: string;
  output: string;
  /** Per-sample image shape, e.g. [1, 16, 16]. */
  imageShape: number[];
  classes: number;
}

/** What a calibration set is drawn with. */
export interface CalibrationOptions {
  samples: number;
  batch: number;
  steps: number;
  strategy: StepStrategy;
  seed: number;
  progress?: (done: number, total: number) => void;
}

/** A calibration set: model feeds in batches, and every sample's timestep (for histograms and TPQ). */
export interface CalibrationSet {
  batches: TensorMap[];
  timesteps: number[];
}

/** Finds the image, timestep and label inputs from the model's structure (and the sidecar's names when given). */
export function diffusionIO(model: Model, classes: number): DiffusionIO {
  const inputs = model.graph.inputs.filter((v) => !v.initializer);
  const image = inputs.find((v) => v.type?.elemType === 1 && (v.type.shape?.length ?? 0) === 4);
  const ints = inputs.filter((v) => v !== image);
  if (!image || ints.length === 0) throw new IrError('invalid-argument', 'cannot find the diffusion inputs: expected a float image input [B,C,H,W] and an integer timestep input');
  const timestep = findTimestepInput(model) ?? ints[0]!;
  const label = ints.find((v) => v !== timestep);
  const shape = image.type!.shape!.slice(1).map((d) => (typeof d === 'number' ? d : NaN));
  if (shape.some(Number.isNaN)) throw new IrError('invalid-argument', `image input '${image.name}' needs static C, H, W dimensions`);
  return { image: image.name, timestep: timestep.name, ...(label ? { label: label.name } : {}), output: model.graph.outputs[0]!.name, imageShape: shape as number[], classes };
}

/** Opens `model` in ONNX Runtime as a DenoiseFn (its raw output: eps or v), fed and fetched by the names in `io`. */
export async function openDenoiser(model: Model, io: DiffusionIO, executor = new OrtExecutor()): Promise<{ denoise: DenoiseFn; release: () => Promise<void> }> {
  const prepared = await executor.prepare(model, [io.output]);
  const denoise: DenoiseFn = async (x, t, y, dims) => {
    const feeds: TensorMap = {
      [io.image]: { dtype: 'float32', dims, data: x },
      [io.timestep]: { dtype: 'int64', dims: [t.length], data: t },
    };
    if (io.label) feeds[io.label] = { dtype: 'int64', dims: [y.length], data: y };
    return (await prepared.run(feeds))[io.output]!.data as Float32Array;
  };
  return { denoise, release: () => prepared.release() };
}

/** Which grid steps (indices into the DDIM timesteps) each trajectory contributes. */
export function plannedSteps(strategy: StepStrategy, samples: number, steps: number, T: number, seed: number): number[][] {
  const random = seededRandom(seed ^ 0x5eed);
  const grid = ddimTimesteps(T, steps);
  switch (strategy.kind) {
    case 'uniform':
      return Array.from({ length: samples }, () => [Math.floor(random() * steps)]);
    case 'random-distinct': {
      // Each trajectory gets one step; steps are dealt from shuffled decks, so they are distinct while they last.
      const out: number[][] = [];
      while (out.length < samples) {
        const deck = Array.from({ length: steps }, (_, i) => i);
        for (let i = deck.length - 1; i > 0; i--) {
          const j = Math.floor(random() * (i + 1));
          [deck[i], deck[j]] = [deck[j]!, deck[i]!];
        }
        for (const step of deck) if (out.length < samples) out.push([step]);
      }
      return out;
    }
    case 'evenly-spaced': {
      const count = Math.min(strategy.count, steps);
      const chosen = Array.from({ length: count }, (_, i) => Math.round((i * (steps - 1)) / Math.max(count - 1, 1)));
      const trajectories = Math.ceil(samples / count);
      const out: number[][] = [];
      for (let i = 0; i < trajectories; i++) out.push(chosen.slice(0, Math.min(count, samples - i * count)));
      return out;
    }
    case 'ndtc': {
      const normal = seededNormal(seed ^ 0x7d7c);
      return Array.from({ length: samples }, () => {
        const t = Math.min(T - 1, Math.max(0, Math.round(strategy.mean * T + strategy.std * T * normal())));
        // Snap to the nearest step of the sampler's grid (grid is descending).
        let best = 0;
        for (let i = 1; i < grid.length; i++) if (Math.abs(grid[i]! - t) < Math.abs(grid[best]! - t)) best = i;
        return [best];
      });
    }
  }
}

/** Builds a calibration set by running the FP model's DDIM trajectories and recording the planned steps. */
export async function buildCalibrationSet(denoise: DenoiseFn, schedule: Schedule, io: DiffusionIO, options: CalibrationOptions): Promise<CalibrationSet> {
  const perSample = io.imageShape.reduce((a, b) => a * b, 1);
  const steps = plannedSteps(options.strategy, options.samples, options.steps, schedule.T, options.seed);
  // Trajectories run together in chunks, each chunk only as far as its deepest step: chunking them in order
  // of that step lets the chunks that stop early (NDTC's high t) stop early together.
  const order = steps.map((_, i) => i).sort((a, b) => Math.max(...steps[a]!) - Math.max(...steps[b]!) || a - b);
  const normal = seededNormal(options.seed);
  const noise = steps.map(() => Float32Array.from({ length: perSample }, () => normal()));
  const records: { x: Float32Array; t: number; y: number }[] = [];
  const trajectoriesPerBatch = Math.max(1, options.batch);
  for (let start = 0; start < order.length; start += trajectoriesPerBatch) {
    const members = order.slice(start, start + trajectoriesPerBatch);
    const chunk = members.map((i) => steps[i]!);
    const labels = members.map((i) => (io.classes > 0 ? i % io.classes : 0));
    const xT = new Float32Array(chunk.length * perSample);
    members.forEach((i, k) => xT.set(noise[i]!, k * perSample));
    const lastStep = Math.max(...chunk.flat());
    // The chunk is one sampler batch, so a record's sample k is chunk member k.
    await sampleImages(denoise, schedule, labels, io.imageShape, {
      sampler: 'ddim',
      steps: options.steps,
      batch: trajectoriesPerBatch,
      onStep: ({ stepIndex, t, x_t }) => {
        chunk.forEach((stepsOfTrajectory, k) => {
          if (stepsOfTrajectory.includes(stepIndex)) records.push({ x: x_t.slice(k * perSample, (k + 1) * perSample), t, y: labels[k]! });
        });
        // No trajectory in this chunk needs later steps: stop before calling the model again.
        return stepIndex < lastStep;
      },
    }, xT);
    options.progress?.(Math.min(start + chunk.length, order.length), order.length);
  }
  const batches: TensorMap[] = [];
  for (let b = 0; b < records.length; b += options.batch) {
    const group = records.slice(b, b + options.batch);
    const x = new Float32Array(group.length * perSample);
    group.forEach((r, i) => x.set(r.x, i * perSample));
    const feeds: TensorMap = {
      [io.image]: { dtype: 'float32', dims: [group.length, ...io.imageShape], data: x },
      [io.timestep]: { dtype: 'int64', dims: [group.length], data: BigInt64Array.from(group, (r) => BigInt(r.t)) },
    };
    if (io.label) feeds[io.label] = { dtype: 'int64', dims: [group.length], data: BigInt64Array.from(group, (r) => BigInt(r.y)) };
    batches.push(feeds);
  }
  return { batches, timesteps: records.map((r) => r.t) };
}
