/**
 * Calibration sets from the model's own FP trajectories: the sampler driver runs the recipe's scheduler from
 * seeded noise with the conditioning the model is meant for, and the planned steps' model calls are recorded
 * exactly as the model got them — (x_t, t, conditioning), every input, and under classifier-free guidance the
 * unconditional rows beside the conditional ones (x_t and t paired by construction; the PTQ4DM reference
 * pairs them off by one step). Strategies: uniform random steps, evenly spaced steps, one random distinct step
 * per trajectory (Q-DiT), and NDTC (PTQ4DM: position ~ Normal(μ, σ), clamped, snapped to the sampler's grid).
 */
import type { TensorMap } from '../ir/executor.js';
import { seededNormal, seededRandom } from '../random.js';
import type { ConditioningSet } from './diffusion/conditioning.js';
import type { RunRows } from './run-rows.js';
import { feedTimesteps, sample, type Denoiser } from './diffusion/sampler.js';
import type { Scheduler } from './diffusion/scheduler.js';
import { sliceFeeds, stackFeeds } from './diffusion/tensor-rows.js';

/** How calibration steps are drawn. */
export type StepStrategy =
  | { kind: 'uniform' }
  | { kind: 'evenly-spaced'; count: number }
  | { kind: 'random-distinct' }
  | { kind: 'ndtc'; mean: number; std: number };

/** What a calibration set is drawn with. */
export interface CalibrationOptions {
  /** Trajectories' recorded samples (conditional rows; CFG adds as many unconditional ones). */
  samples: number;
  /** Rows per calibration batch, and trajectories per sampler call. */
  batch: number;
  strategy: StepStrategy;
  seed: number;
  /** Classifier-free guidance scale the trajectories run with (default 1). */
  guidance?: number;
  /** Cuts calibration batches to the rows one run of the model holds within its activation budget (default: `batch` rows). */
  runRows?: RunRows;
  progress?: (done: number, total: number) => void;
}

/** A calibration set: model feeds in batches, and per recorded row its model timestep and its scheduler position. */
export interface CalibrationSet {
  batches: TensorMap[];
  /** One per row, in model-timestep units (what the timestep input was fed). */
  timesteps: number[];
  /** One per row: where its step lies on the training axis, in [0, 1] (timestep bins). */
  positions: number[];
  /** Rows the model ran to build the set (every trajectory step, CFG's unconditional rows included); absent when read from a cache. */
  modelRows?: number;
}

/** Which steps of the scheduler's grid each trajectory contributes, given each step's position in [0, 1]. */
export function plannedSteps(strategy: StepStrategy, samples: number, positions: readonly number[], seed: number): number[][] {
  const random = seededRandom(seed ^ 0x5eed);
  const steps = positions.length;
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
        const target = Math.min(1, Math.max(0, strategy.mean + strategy.std * normal()));
        // Snap to the nearest step of the sampler's grid.
        let best = 0;
        for (let i = 1; i < steps; i++) if (Math.abs(positions[i]! - target) < Math.abs(positions[best]! - target)) best = i;
        return [best];
      });
    }
  }
}

interface RecordedRow {
  feeds: TensorMap;
  t: number;
  position: number;
}

/**
 * Builds a calibration set by running the FP model's trajectories (trajectory i conditioned on condition
 * i % count) and recording the planned steps' rows. A model with a scalar timestep gets batches of one
 * timestep each (the rows sorted by step); every other model keeps the recording order.
 */
export async function buildCalibrationSet(denoiser: Denoiser, scheduler: Scheduler, conditioning: ConditioningSet, options: CalibrationOptions): Promise<CalibrationSet> {
  const { iface } = denoiser;
  const perSample = iface.latent.shape.reduce((a, b) => a * b, 1);
  const positions = scheduler.timesteps.map((_, i) => scheduler.position(i));
  const steps = plannedSteps(options.strategy, options.samples, positions, options.seed);
  // Trajectories run together in chunks, each chunk only as far as its deepest step: chunking them in order
  // of that step lets the chunks that stop early (NDTC's high t) stop early together.
  const order = steps.map((_, i) => i).sort((a, b) => Math.max(...steps[a]!) - Math.max(...steps[b]!) || a - b);
  const normal = seededNormal(options.seed);
  const noise = steps.map(() => Float32Array.from({ length: perSample }, () => normal()));
  const records: RecordedRow[] = [];
  let modelRows = 0;
  const trajectoriesPerBatch = Math.max(1, options.batch);
  for (let start = 0; start < order.length; start += trajectoriesPerBatch) {
    const members = order.slice(start, start + trajectoriesPerBatch);
    const chunk = members.map((i) => steps[i]!);
    const xT = new Float32Array(chunk.length * perSample);
    members.forEach((i, k) => xT.set(noise[i]!, k * perSample));
    const lastStep = Math.max(...chunk.flat());
    // The chunk is one sampler batch, so a record's sample k is chunk member k.
    await sample(denoiser, {
      scheduler,
      conditions: members.map((i) => i % conditioning.count),
      conditioning,
      guidance: options.guidance ?? 1,
      seed: options.seed,
      sampleIndex: members,
      batch: trajectoriesPerBatch,
      xT,
      onStep: ({ stepIndex, feeds, cfg, count, position }) => {
        modelRows += cfg ? 2 * count : count;
        chunk.forEach((stepsOfTrajectory, k) => {
          if (!stepsOfTrajectory.includes(stepIndex)) return;
          // Under CFG the unconditional row the model really ran goes in first, then the conditional one.
          for (const row of cfg ? [k, count + k] : [k]) {
            const rowFeeds = sliceFeeds(feeds, row, row + 1);
            records.push({ feeds: rowFeeds, t: feedTimesteps(iface.timestep, rowFeeds, 1)[0]!, position });
          }
        });
        // No trajectory in this chunk needs later steps: stop before calling the model again.
        return stepIndex < lastStep;
      },
    });
    options.progress?.(Math.min(start + chunk.length, order.length), order.length);
  }
  const rows = iface.timestep.rank === 0 ? records.map((r, i) => [r, i] as const).sort(([a, i], [b, j]) => b.position - a.position || i - j).map(([r]) => r) : records;
  const batches: TensorMap[] = [];
  const batchRows = Math.min(options.batch, rows.length > 0 && options.runRows ? options.runRows.of(rows[0]!.feeds).rows : Infinity);
  for (let b = 0; b < rows.length; ) {
    let end = Math.min(rows.length, b + batchRows);
    if (iface.timestep.rank === 0) for (let i = b + 1; i < end; i++) if (rows[i]!.t !== rows[b]!.t) end = i;
    batches.push(stackFeeds(rows.slice(b, end).map((r) => r.feeds)));
    b = end;
  }
  return { batches, timesteps: rows.map((r) => r.t), positions: rows.map((r) => r.position), modelRows };
}
