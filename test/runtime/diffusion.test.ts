import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { loadModelSync } from '../../src/ir/serde.js';
import { buildCalibrationSet, diffusionIO, openDenoiser, plannedSteps } from '../../src/runtime/calibration.js';
import { ddimTimesteps, readSidecar, scheduleFromSidecar } from '../../src/runtime/diffusion.js';
import { sampleImages, type DenoiseFn } from '../../src/runtime/samplers.js';

const DIR = 'test/fixtures/dit-digits';
const floats = (file: string) => {
  const b = readFileSync(`${DIR}/${file}`);
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
};

describe('DDIM on the dit-digits fixture', () => {
  const model = loadModelSync(`${DIR}/model.onnx`);
  const schedule = scheduleFromSidecar(readSidecar(`${DIR}/schedule.json`));
  const io = diffusionIO(model, 10);

  it('finds the image, timestep and label inputs by structure', () => {
    expect(io).toMatchObject({ image: 'x', timestep: 't', label: 'y', output: 'eps', imageShape: [1, 16, 16] });
  });

  it('reproduces the fixture DDIM-100 samples from their noise (20 samples)', async () => {
    const n = 20;
    const xT = floats('samples_ddim100_xT_f32.bin').slice(0, n * 256);
    const expected = floats('samples_ddim100_f32.bin').slice(0, n * 256);
    const labels = Array.from({ length: n }, (_, i) => Math.floor(i / 20));
    const { denoise, release } = await openDenoiser(model, io);
    try {
      const x = await sampleImages(denoise, schedule, labels, io.imageShape, { sampler: 'ddim', steps: 100, batch: n }, xT);
      let max = 0;
      for (let i = 0; i < x.length; i++) max = Math.max(max, Math.abs(x[i]! - expected[i]!));
      expect(max).toBeLessThan(1e-3);
    } finally {
      await release();
    }
  });

  it('records (x_t, t) exactly as the model saw them (no off-by-one pairing)', async () => {
    const { denoise, release } = await openDenoiser(model, io);
    const calls = new Map<number, Float32Array>();
    const logging: DenoiseFn = async (x, t, y, dims) => {
      calls.set(Number(t[0]), x.slice());
      return denoise(x, t, y, dims);
    };
    try {
      const set = await buildCalibrationSet(logging, schedule, io, { samples: 8, batch: 8, steps: 20, strategy: { kind: 'random-distinct' }, seed: 1 });
      expect(set.timesteps).toHaveLength(8);
      expect(new Set(set.timesteps).size).toBe(8);
      const grid = ddimTimesteps(1000, 20);
      expect(set.timesteps.every((t) => grid.includes(t))).toBe(true);
      const feeds = set.batches[0]!;
      const xs = feeds.x!.data as Float32Array;
      const ts = feeds.t!.data as BigInt64Array;
      for (let i = 0; i < 8; i++) {
        // The recorded x_t is one trajectory's slice of exactly what the model was called with at that t.
        const seen = calls.get(Number(ts[i]))!;
        const recorded = xs.subarray(i * 256, (i + 1) * 256);
        const matches = Array.from({ length: seen.length / 256 }, (_, k) => seen.subarray(k * 256, (k + 1) * 256)).filter((slice) => slice.every((v, j) => v === recorded[j]));
        expect(matches).toHaveLength(1);
      }
    } finally {
      await release();
    }
  });
});

describe('calibration step plans', () => {
  it('random-distinct gives distinct steps while they last', () => {
    const plan = plannedSteps({ kind: 'random-distinct' }, 50, 50, 1000, 3).flat();
    expect(new Set(plan).size).toBe(50);
  });

  it('NDTC steps follow Normal(0.4 T, 0.4 T) clamped to the grid', () => {
    const grid = ddimTimesteps(1000, 100);
    const ts = plannedSteps({ kind: 'ndtc', mean: 0.4, std: 0.2 }, 4000, 100, 1000, 5).map(([s]) => grid[s!]!);
    const mean = ts.reduce((a, b) => a + b, 0) / ts.length;
    const std = Math.sqrt(ts.reduce((a, b) => a + (b - mean) ** 2, 0) / ts.length);
    expect(mean).toBeGreaterThan(385);
    expect(mean).toBeLessThan(415);
    expect(std).toBeGreaterThan(185);
    expect(std).toBeLessThan(215);
  });

  it('uniform steps are flat (chi-square within the 99.9% bound)', () => {
    const steps = 10;
    const plan = plannedSteps({ kind: 'uniform' }, 5000, steps, 1000, 7).flat();
    const counts = Array(steps).fill(0);
    for (const s of plan) counts[s]++;
    const expected = plan.length / steps;
    const chi2 = counts.reduce((a, c) => a + (c - expected) ** 2 / expected, 0);
    expect(chi2).toBeLessThan(27.9); // 9 degrees of freedom, p = 0.001
  });

  it('evenly spaced covers the grid ends', () => {
    const plan = plannedSteps({ kind: 'evenly-spaced', count: 5 }, 10, 50, 1000, 0);
    expect(plan).toEqual([[0, 12, 25, 37, 49], [0, 12, 25, 37, 49]]);
  });
});
