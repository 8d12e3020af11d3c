/**
 * Calibration trajectories on the dit-digits fixture (what is recorded, paired with the timestep and label the
 * model saw) and the step plans of each calibration strategy over the fixture's DDIM grid.
 */
import { describe, expect, it } from 'vitest';
import { loadModelSync } from '../../src/ir/serde.js';
import { buildCalibrationSet, plannedSteps } from '../../src/runtime/calibration.js';
import { classLabelConditioning } from '../../src/runtime/diffusion/conditioning.js';
import { findDiffusionInterface } from '../../src/runtime/diffusion/interface.js';
import { noiseScheduleFromSidecar } from '../../src/runtime/diffusion/scheduler-config.js';
import { openDenoiser, type Denoiser } from '../../src/runtime/diffusion/sampler.js';
import { makeScheduler } from '../../src/runtime/diffusion/scheduler.js';
import { readSidecar } from '../../src/runtime/diffusion/sidecar.js';

const DIR = 'test/fixtures/dit-digits';
/** The fixture's DDIM sampler of `steps` steps over its sidecar schedule (T = 1000), as calibration drives it. */
const ddim = (steps: number) => makeScheduler(noiseScheduleFromSidecar(readSidecar(`${DIR}/schedule.json`)), { kind: 'ddim', steps });
/** Step positions of that DDIM grid. */
const positions = (steps: number) => {
  const scheduler = ddim(steps);
  return scheduler.timesteps.map((_, i) => scheduler.position(i));
};

describe('calibration trajectories on the dit-digits fixture', () => {
  const model = loadModelSync(`${DIR}/model.onnx`);
  const iface = findDiffusionInterface(model, `${DIR}/model.onnx`);

  it('finds the latent, timestep and label inputs by structure, and the sidecar\'s classes (no null class)', () => {
    expect(iface).toMatchObject({ latent: { name: 'x', shape: [1, 16, 16] }, timestep: { name: 't', rank: 1, scale: 1 }, conditioning: [{ name: 'y', kind: 'class-label' }], output: { name: 'eps', channels: 1, varianceChannels: 0 }, classes: { count: 10 } });
    expect(iface.classes!.nullClass).toBeUndefined();
  });

  it('records (x_t, t, y) exactly as the model saw them (no off-by-one pairing)', async () => {
    const inner = await openDenoiser(model, iface);
    const calls = new Map<number, { x: Float32Array; y: BigInt64Array }>();
    const logging: Denoiser = {
      iface,
      run: async (feeds) => {
        calls.set(Number(feeds.t!.data[0]), { x: (feeds.x!.data as Float32Array).slice(), y: (feeds.y!.data as BigInt64Array).slice() });
        return inner.run(feeds);
      },
      release: () => inner.release(),
    };
    try {
      const scheduler = ddim(20);
      const set = await buildCalibrationSet(logging, scheduler, classLabelConditioning(iface), { samples: 8, batch: 8, strategy: { kind: 'random-distinct' }, seed: 1 });
      expect(set.timesteps).toHaveLength(8);
      expect(new Set(set.timesteps).size).toBe(8);
      // The fixture DDIM grid (S−1−i)·⌊T/S⌋: 950, 900, …, 0.
      const grid = Array.from({ length: 20 }, (_, i) => 950 - 50 * i);
      expect(scheduler.timesteps).toEqual(grid);
      expect(set.timesteps.every((t) => grid.includes(t))).toBe(true);
      expect(set.positions).toEqual(set.timesteps.map((t) => t / 1000));
      const feeds = set.batches[0]!;
      expect(Object.keys(feeds).sort()).toEqual(['t', 'x', 'y']);
      const xs = feeds.x!.data as Float32Array;
      const ts = feeds.t!.data as BigInt64Array;
      const ys = feeds.y!.data as BigInt64Array;
      for (let i = 0; i < 8; i++) {
        // The recorded x_t is one trajectory's slice of exactly what the model was called with at that t, with its label.
        const seen = calls.get(Number(ts[i]))!;
        const recorded = xs.subarray(i * 256, (i + 1) * 256);
        const matches = Array.from({ length: seen.x.length / 256 }, (_, k) => k).filter((k) => seen.x.subarray(k * 256, (k + 1) * 256).every((v, j) => v === recorded[j]));
        expect(matches).toHaveLength(1);
        expect(seen.y[matches[0]!]).toBe(ys[i]);
      }
    } finally {
      await logging.release();
    }
  });
});

describe('calibration step plans', () => {
  it('random-distinct gives distinct steps while they last', () => {
    const plan = plannedSteps({ kind: 'random-distinct' }, 50, positions(50), 3).flat();
    expect(new Set(plan).size).toBe(50);
  });

  it('NDTC steps follow Normal(0.4 T, 0.4 T) clamped to the grid', () => {
    const grid = ddim(100).timesteps;
    const ts = plannedSteps({ kind: 'ndtc', mean: 0.4, std: 0.2 }, 4000, positions(100), 5).map(([s]) => grid[s!]!);
    const mean = ts.reduce((a, b) => a + b, 0) / ts.length;
    const std = Math.sqrt(ts.reduce((a, b) => a + (b - mean) ** 2, 0) / ts.length);
    expect(mean).toBeGreaterThan(385);
    expect(mean).toBeLessThan(415);
    expect(std).toBeGreaterThan(185);
    expect(std).toBeLessThan(215);
  });

  it('uniform steps are flat (chi-square within the 99.9% bound)', () => {
    const steps = 10;
    const plan = plannedSteps({ kind: 'uniform' }, 5000, positions(steps), 7).flat();
    const counts = Array(steps).fill(0);
    for (const s of plan) counts[s]++;
    const expected = plan.length / steps;
    const chi2 = counts.reduce((a, c) => a + (c - expected) ** 2 / expected, 0);
    expect(chi2).toBeLessThan(27.9); // 9 degrees of freedom, p = 0.001
  });

  it('evenly spaced covers the grid ends', () => {
    const plan = plannedSteps({ kind: 'evenly-spaced', count: 5 }, 10, positions(50), 0);
    expect(plan).toEqual([[0, 12, 25, 37, 49], [0, 12, 25, 37, 49]]);
  });
});
