/**
 * The sampler driver on real models in ONNX Runtime: the DiT fixture's DDIM samples, sd-digits' CFG samples
 * from its precomputed prompt states, batch-size independence with and without CFG on a learned-variance DiT
 * (the prediction read per sample), a hook that sees the exact feeds the model got, and float16 timestep feeds.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DataType } from '../../src/ir/dtype.js';
import { loadModelSync } from '../../src/ir/serde.js';
import { buildDit, DIT_PRESETS } from '../../src/synth/dit.js';
import { buildCalibrationSet } from '../../src/runtime/calibration.js';
import { classLabelConditioning, tensorConditioning, UNCONDITIONAL } from '../../src/runtime/diffusion/conditioning.js';
import type { DiffusionInterface } from '../../src/runtime/diffusion/interface.js';
import { findDiffusionInterface } from '../../src/runtime/diffusion/interface.js';
import { noiseScheduleFromSidecar } from '../../src/runtime/diffusion/scheduler-config.js';
import { feedTimesteps, openDenoiser, predictionOf, sample, timestepFeed, type Denoiser, type StepRecord } from '../../src/runtime/diffusion/sampler.js';
import { betasOf, cumulativeAlphas } from '../../src/runtime/diffusion/schedule-math.js';
import { makeScheduler } from '../../src/runtime/diffusion/scheduler.js';
import { readSidecar } from '../../src/runtime/diffusion/sidecar.js';
import { loadManifestTensors, readRawTensor } from '../../src/runtime/host-tensor.js';
import { maxAbsError } from '../../src/runtime/metrics.js';

const DIT = 'test/fixtures/dit-digits';
const SD = 'test/fixtures/sd-digits';
const ditSchedule = noiseScheduleFromSidecar(readSidecar(`${DIT}/schedule.json`));

describe('sampler driver on the DiT fixture', () => {
  let denoiser: Denoiser;
  beforeAll(async () => {
    const model = loadModelSync(`${DIT}/model.onnx`);
    denoiser = await openDenoiser(model, findDiffusionInterface(model, `${DIT}/model.onnx`));
  });
  afterAll(() => denoiser.release());

  it('DDIM-100 from the fixture noise reproduces the PyTorch samples (first 12 of 200, batch 8)', async () => {
    const files = loadManifestTensors(`${DIT}/samples_manifest.json`);
    const n = 12;
    let last = [0, 0];
    const x = await sample(denoiser, {
      scheduler: makeScheduler(ditSchedule, { kind: 'ddim', steps: 100 }),
      conditions: Array.from((files.labels!.data as BigInt64Array).subarray(0, n), Number),
      conditioning: classLabelConditioning(denoiser.iface),
      xT: (files.ddim100_xT!.data as Float32Array).subarray(0, n * 256),
      batch: 8,
      progress: (done, total) => (last = [done, total]),
    });
    expect(maxAbsError(x, (files.ddim100!.data as Float32Array).subarray(0, n * 256))).toBeLessThan(1e-4);
    expect(last).toEqual([200, 200]);
  });

  it('stochastic (DDIM η = 1) trajectories are the same at batch 1 and batch 4; another seed differs; CFG is refused without a null class', async () => {
    const conditioning = classLabelConditioning(denoiser.iface);
    const run = (batch: number, seed = 4) => sample(denoiser, { scheduler: makeScheduler(ditSchedule, { kind: 'ddim', steps: 8, eta: 1 }), conditions: [3, 1, 4, 1, 5], conditioning, seed, batch });
    const a = await run(1);
    expect(maxAbsError(a, await run(4))).toBe(0);
    expect(maxAbsError(a, await run(4, 5))).toBeGreaterThan(0.1);
    await expect(sample(denoiser, { scheduler: makeScheduler(ditSchedule, { kind: 'ddim', steps: 2 }), conditions: [0], conditioning, guidance: 1.5 })).rejects.toThrow(/unconditional input.*10 classes has none: use guidance 1/);
  });
});

describe('sampler driver on a learned-variance DiT (synth tiny: 2C outputs, null class 10)', () => {
  let denoiser: Denoiser;
  let iface: DiffusionInterface;
  beforeAll(async () => {
    const model = buildDit(DIT_PRESETS.tiny!);
    // In memory, no sidecar: the recipe's facts (prediction, 10 classes + the null class).
    iface = findDiffusionInterface(model, 'synth-tiny/model.onnx', { recipe: { prediction: 'epsilon', classes: 10, nullClass: 10 } });
    denoiser = await openDenoiser(model, iface);
  });
  afterAll(() => denoiser.release());

  it('reads the interface: 2 output channels, 1 of them variance', () => {
    expect(iface.output).toEqual({ name: 'out', channels: 2, varianceChannels: 1 });
  });

  for (const guidance of [1, 4]) {
    it(`batch 1 and batch 4 give identical trajectories (guidance ${guidance}, DDIM η = 1)`, async () => {
      const conditioning = classLabelConditioning(iface);
      const run = (batch: number) => sample(denoiser, { scheduler: makeScheduler(ditSchedule, { kind: 'ddim', steps: 6, eta: 1 }), conditions: [7, 2, 9, 0, 5], conditioning, guidance, seed: 11, batch });
      const one = await run(1);
      expect(maxAbsError(one, await run(4))).toBe(0);
      expect(one.every(Number.isFinite)).toBe(true);
    });
  }

  it('the hook sees the exact feeds: [uncond; cond] rows, and re-running them gives the output it saw; guidance combines the prediction channels per sample', async () => {
    const records: StepRecord[] = [];
    await sample(denoiser, {
      scheduler: makeScheduler(ditSchedule, { kind: 'ddim', steps: 4 }),
      conditions: [3, 8],
      conditioning: classLabelConditioning(iface),
      guidance: 2,
      onStep: (r) => void records.push({ ...r, feeds: structuredClone(r.feeds), output: r.output.slice() }),
    });
    expect(records.map((r) => r.t)).toEqual([750, 500, 250, 0]);
    const r = records[2]!;
    expect(Array.from(r.feeds.y!.data as BigInt64Array, Number)).toEqual([10, 10, 3, 8]);
    expect(Array.from(r.feeds.t!.data as BigInt64Array, Number)).toEqual([250, 250, 250, 250]);
    const again = await denoiser.run(r.feeds);
    expect(maxAbsError(again, r.output)).toBe(0);
    const prediction = predictionOf(iface, again, 4);
    expect(prediction.length).toBe(4 * 256);
    // Sample 1's prediction is the first channel of its own 2-channel row, not the flat second quarter.
    expect(maxAbsError(prediction.subarray(256, 512), again.subarray(512, 768))).toBe(0);
    const guided = Float32Array.from({ length: 512 }, (_, j) => prediction[j]! + 2 * (prediction[512 + j]! - prediction[j]!));
    expect(maxAbsError(guided, r.guided)).toBeLessThan(1e-6);
  });
});

describe('sampler driver on sd-digits (text states, CFG)', () => {
  it('guidance 1.5 from the precomputed prompt states reproduces samples_g1.5 (first 10, batch 4)', async () => {
    const model = loadModelSync(`${SD}/unet/model.onnx`);
    const iface = findDiffusionInterface(model, `${SD}/unet/model.onnx`);
    expect(iface.conditioning).toEqual([{ name: 'encoder_hidden_states', kind: 'text-states', elemType: 1, shape: [8, 64] }]);
    const embeds = readRawTensor(`${SD}/prompts/prompt_embeds_test_f32.bin`, 'float32', [100, 8, 64]).data as Float32Array;
    const empty = readRawTensor(`${SD}/prompts/prompt_embeds_empty_f32.bin`, 'float32', [1, 8, 64]).data as Float32Array;
    const conditioning = tensorConditioning(iface, new Map([['encoder_hidden_states', { shape: [8, 64], conditions: Array.from({ length: 100 }, (_, i) => embeds.slice(i * 512, (i + 1) * 512)), unconditional: empty }]]), '100 test prompts');
    const n = 10;
    const xT = readRawTensor(`${SD}/samples_xT_f32.bin`, 'float32', [500, 1, 16, 16]).data as Float32Array;
    const expected = readRawTensor(`${SD}/samples_g1.5_f32.bin`, 'float32', [500, 1, 16, 16]).data as Float32Array;
    const denoiser = await openDenoiser(model, iface);
    try {
      const x = await sample(denoiser, {
        scheduler: makeScheduler(noiseScheduleFromSidecar(readSidecar(`${SD}/schedule.json`)), { kind: 'ddim', steps: 25 }),
        conditions: Array.from({ length: n }, (_, i) => Math.floor(i / 5)),
        conditioning,
        guidance: 1.5,
        xT: xT.subarray(0, n * 256),
        batch: 4,
      });
      expect(maxAbsError(x, expected.subarray(0, n * 256))).toBeLessThan(1e-4);
    } finally {
      await denoiser.release();
    }
  });
});

describe('sampler updates against an exact denoiser', () => {
  // Data concentrated on one image c: the ideal eps is (x − √ᾱ·c)/√(1−ᾱ), so every sampler must land on c.
  const c = Float32Array.from({ length: 16 }, (_, i) => -0.9 + 0.1 * i);
  const iface = (prediction: 'epsilon' | 'v'): DiffusionInterface => ({
    latent: { name: 'x', shape: [1, 4, 4] },
    timestep: { name: 't', elemType: 7, rank: 1, scale: 1 },
    conditioning: [],
    output: { name: 'out', channels: 1, varianceChannels: 0 },
    prediction,
    provenance: [],
  });
  const config = (prediction: 'epsilon' | 'v') => ({ ...ditSchedule, prediction });
  const exact = (prediction: 'epsilon' | 'v'): Denoiser => {
    const alphasCumprod = cumulativeAlphas(betasOf({ kind: 'linear', T: 1000, betaStart: 1e-4, betaEnd: 0.02 }));
    return {
      iface: iface(prediction),
      run: async (feeds) => {
        const ab = alphasCumprod[Number(feeds.t!.data[0])]!;
        return Float32Array.from(feeds.x!.data as Float32Array, (xi, i) => {
          const eps = (xi - Math.sqrt(ab) * c[i % 16]!) / Math.sqrt(1 - ab);
          return prediction === 'epsilon' ? eps : Math.sqrt(ab) * eps - Math.sqrt(1 - ab) * c[i % 16]!;
        });
      },
      release: async () => {},
    };
  };
  for (const [name, spec, prediction] of [
    ['DDPM ancestral (1000 steps)', { kind: 'ddpm', steps: 1000 }, 'epsilon'],
    ['DDIM η=1 (25 steps)', { kind: 'ddim', steps: 25, eta: 1 }, 'epsilon'],
    ['DDIM η=0, v-prediction', { kind: 'ddim', steps: 10 }, 'v'],
  ] as const) {
    it(`${name} lands on the data point`, async () => {
      const x = await sample(exact(prediction), { scheduler: makeScheduler(config(prediction), spec), conditions: [0, 0, 0], seed: 2 });
      expect(maxAbsError(x, new Float32Array(48).map((_, i) => c[i % 16]!))).toBeLessThan(1e-4);
    });
  }

  it('DDPM with a wrong denoiser does not land on the data point (the test can fail)', async () => {
    const zero: Denoiser = { iface: iface('epsilon'), run: async (feeds) => new Float32Array(feeds.x!.data.length), release: async () => {} };
    const x = await sample(zero, { scheduler: makeScheduler(ditSchedule, { kind: 'ddpm', steps: 1000 }), conditions: [0], seed: 2 });
    expect(maxAbsError(x, c)).toBeGreaterThan(0.1);
  });

  it('an output with neither the latent\'s channels nor [prediction | variance] is an error naming both', async () => {
    const wrong: Denoiser = { iface: { ...iface('epsilon'), output: { name: 'out', channels: 2, varianceChannels: 1 } }, run: async () => new Float32Array(3 * 16), release: async () => {} };
    await expect(sample(wrong, { scheduler: makeScheduler(ditSchedule, { kind: 'ddim', steps: 2 }), conditions: [0] })).rejects.toThrow("model output 'out' has 48 values for 1 samples: expected 1 × 16 (the latent's 1 channels) or 1 × 32 (with 1 variance channels)");
  });
});

describe('a scalar (rank-0) float timestep', () => {
  it('is fed once per call as t × scale, and calibration batches hold one timestep each', async () => {
    const iface: DiffusionInterface = {
      latent: { name: 'x', shape: [1, 2, 2] },
      timestep: { name: 't', elemType: 1, rank: 0, scale: 0.001 },
      conditioning: [],
      output: { name: 'out', channels: 1, varianceChannels: 0 },
      prediction: 'epsilon',
      provenance: [],
    };
    const seen: number[][] = [];
    const denoiser: Denoiser = {
      iface,
      run: async (feeds) => {
        seen.push([...feeds.t!.dims, ...(feeds.t!.data as Float32Array)]);
        return new Float32Array(feeds.x!.data.length).fill(0.01);
      },
      release: async () => {},
    };
    const scheduler = makeScheduler(ditSchedule, { kind: 'ddim', steps: 4 });
    await sample(denoiser, { scheduler, conditions: [0, 0, 0], batch: 2 });
    expect(seen.slice(0, 4).map(([t]) => Number(t!.toFixed(4)))).toEqual([0.75, 0.5, 0.25, 0]);
    expect(seen.every((s) => s.length === 1)).toBe(true);
    const set = await buildCalibrationSet(denoiser, scheduler, UNCONDITIONAL, { samples: 9, batch: 4, strategy: { kind: 'uniform' }, seed: 3 });
    for (const batch of set.batches) expect(batch.t!.dims).toEqual([]);
    let row = 0;
    for (const batch of set.batches) {
      const rows = batch.x!.dims[0]!;
      expect(new Set(set.timesteps.slice(row, row + rows))).toEqual(new Set([batch.t!.data[0]]));
      row += rows;
    }
    expect(row).toBe(9);
  });
});

describe('a float16 timestep', () => {
  it('is fed as the half bits of t × scale (floatToHalf) and read back as the timestep', () => {
    const input = { name: 't', elemType: DataType.FLOAT16, rank: 1 as const, scale: 1 };
    const feed = timestepFeed(input, 999, 2);
    // 999 = 1.951171875 · 2^9: exponent field 24, fraction 974.
    expect([feed.dtype, feed.dims, Array.from(feed.data as Uint16Array)]).toEqual(['float16', [2], [0x63ce, 0x63ce]]);
    expect(feedTimesteps(input, { t: feed }, 2)).toEqual([999, 999]);
    // Flux-style σ = t / 1000: 0.0335 rounds to the nearest half, 0.033508300781 (steps of 2^-15 there).
    expect(feedTimesteps({ ...input, scale: 1 / 1000 }, { t: timestepFeed({ ...input, scale: 1 / 1000 }, 33.5, 1) }, 1)[0]).toBe(1098 * 2 ** -15);
  });
});
