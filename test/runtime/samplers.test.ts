import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeSchedule, readSidecar, scheduleFromSidecar } from '../../src/runtime/diffusion.js';
import { loadManifestTensors, type HostTensor } from '../../src/runtime/host-tensor.js';
import { maxAbsError } from '../../src/runtime/metrics.js';
import { openSession, type RuntimeSession } from '../../src/runtime/ort-session.js';
import { denoiserFromSession, denoiserNamesFromSidecar, sampleImages, type DenoiseFn, type StepRecord } from '../../src/runtime/samplers.js';

const DIR = 'test/fixtures/dit-digits';
const sidecar = readSidecar(`${DIR}/schedule.json`);
const schedule = scheduleFromSidecar(sidecar);

describe('samplers on the dit-digits fixture', () => {
  let session: RuntimeSession;
  let denoise: DenoiseFn;
  let files: Record<string, HostTensor>;
  beforeAll(async () => {
    session = await openSession(`${DIR}/model.onnx`, { intraOpNumThreads: 2 });
    denoise = denoiserFromSession(session, denoiserNamesFromSidecar(sidecar));
    files = loadManifestTensors(`${DIR}/samples_manifest.json`);
  });
  afterAll(() => session.release());

  it('DDIM-100 from the fixture noise reproduces the PyTorch samples (first 12 of 200, batch 8)', async () => {
    const n = 12;
    const xT = (files.ddim100_xT!.data as Float32Array).subarray(0, n * 256);
    const labels = (files.labels!.data as BigInt64Array).subarray(0, n);
    let lastProgress = [0, 0];
    const x = await sampleImages(denoise, schedule, labels, [1, 16, 16], { sampler: 'ddim', steps: 100, batch: 8, progress: (s, total) => (lastProgress = [s, total]) }, xT);
    expect(maxAbsError(x, (files.ddim100!.data as Float32Array).subarray(0, n * 256))).toBeLessThan(1e-4);
    expect(lastProgress).toEqual([200, 200]);
  });

  it('the per-step hook pairs x_t with t: re-running the model on a record gives the eps the sampler used', async () => {
    const records: { t: number; x: Float32Array; y: BigInt64Array; eps: Float32Array }[] = [];
    const onStep = (r: StepRecord) => {
      if (r.stepIndex === 3 || r.stepIndex === 7) records.push({ t: r.t, x: r.x_t.slice(), y: r.y.slice(), eps: r.eps.slice() });
      return r.stepIndex < 7;
    };
    await sampleImages(denoise, schedule, [0, 5, 9], [1, 16, 16], { sampler: 'ddim', steps: 10, seed: 3, onStep });
    expect(records.map((r) => r.t)).toEqual([600, 200]);
    for (const r of records) {
      const again = await denoise(r.x, new BigInt64Array(3).fill(BigInt(r.t)), r.y, [3, 1, 16, 16]);
      expect(maxAbsError(again, r.eps)).toBe(0);
      // The neighbouring step's t gives a different eps: the pairing is not off by one unnoticed.
      const shifted = await denoise(r.x, new BigInt64Array(3).fill(BigInt(r.t + 100)), r.y, [3, 1, 16, 16]);
      expect(maxAbsError(shifted, r.eps)).toBeGreaterThan(1e-3);
    }
  });

  it('seeded: same seed same samples, independent of the batch size; other seed differs', async () => {
    const labels = [1, 2, 3, 4];
    const a = await sampleImages(denoise, schedule, labels, [1, 16, 16], { sampler: 'ddim', steps: 5, seed: 9, batch: 4 });
    const b = await sampleImages(denoise, schedule, labels, [1, 16, 16], { sampler: 'ddim', steps: 5, seed: 9, batch: 3 });
    const c = await sampleImages(denoise, schedule, labels, [1, 16, 16], { sampler: 'ddim', steps: 5, seed: 10, batch: 4 });
    expect(maxAbsError(a, b)).toBeLessThan(1e-5);
    expect(maxAbsError(a, c)).toBeGreaterThan(0.1);
  });

  it('classifier-free guidance is refused on a model without a null class', async () => {
    await expect(sampleImages(denoise, schedule, [0], [1, 16, 16], { sampler: 'ddim', steps: 2, guidanceScale: 1.5, nullClass: null })).rejects.toThrow(/null class/);
  });

});

describe('sampler updates against an exact denoiser', () => {
  // Data concentrated on one image c: the ideal eps is (x − √ᾱ·c)/√(1−ᾱ), so every sampler must land on c.
  const c = Float32Array.from({ length: 16 }, (_, i) => -0.9 + 0.1 * i);
  const exact = (prediction: 'epsilon' | 'v'): DenoiseFn => {
    const s = makeSchedule('linear', 1000, 1e-4, 0.02, prediction);
    return async (x, t) => Float32Array.from(x, (xi, i) => {
      const ab = s.alphasCumprod[Number(t[0])]!;
      const eps = (xi - Math.sqrt(ab) * c[i % 16]!) / Math.sqrt(1 - ab);
      return prediction === 'epsilon' ? eps : Math.sqrt(ab) * eps - Math.sqrt(1 - ab) * c[i % 16]!;
    });
  };
  for (const [name, options, prediction] of [
    ['DDPM ancestral (1000 steps)', { sampler: 'ddpm', seed: 2 }, 'epsilon'],
    ['DDIM η=1 (25 steps)', { sampler: 'ddim', steps: 25, eta: 1, seed: 2 }, 'epsilon'],
    ['DDIM η=0, v-prediction', { sampler: 'ddim', steps: 10 }, 'v'],
  ] as const) {
    it(`${name} lands on the data point`, async () => {
      const s = makeSchedule('linear', 1000, 1e-4, 0.02, prediction);
      const x = await sampleImages(exact(prediction), s, [0, 0, 0], [1, 4, 4], options);
      expect(maxAbsError(x, new Float32Array(48).map((_, i) => c[i % 16]!))).toBeLessThan(1e-4);
    });
  }

  it('DDPM with a wrong denoiser does not land on the data point (the test can fail)', async () => {
    const s = makeSchedule('linear', 1000, 1e-4, 0.02);
    const zero: DenoiseFn = async (x) => new Float32Array(x.length);
    const x = await sampleImages(zero, s, [0], [1, 4, 4], { sampler: 'ddpm', seed: 2 });
    expect(maxAbsError(x, c)).toBeGreaterThan(0.1);
  });
});
