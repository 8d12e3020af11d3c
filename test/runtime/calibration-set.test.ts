import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildCalibrationRecords, decodeCalibrationCache, encodeCalibrationCache, modelSha256, planCalibrationSteps, type CalibrationRequest } from '../../src/runtime/calibration-set.js';
import { ddimTimesteps, readSidecar, scheduleFromSidecar } from '../../src/runtime/diffusion.js';
import { maxAbsError } from '../../src/runtime/metrics.js';
import { openSession, type RuntimeSession } from '../../src/runtime/ort-session.js';
import { denoiserFromSession, denoiserNamesFromSidecar, type DenoiseFn } from '../../src/runtime/samplers.js';

const DIR = 'test/fixtures/dit-digits';
const sidecar = readSidecar(`${DIR}/schedule.json`);
const schedule = scheduleFromSidecar(sidecar);

describe('calibration step plans: timestep histograms', () => {
  const grid = ddimTimesteps(1000, 100);
  const times = (plan: number[][]) => plan.flat().map((s) => grid[s]!);

  it('NDTC: mean and std of t match Normal(0.4 T, 0.2 T) (clamping negligible there)', () => {
    const ts = times(planCalibrationSteps({ kind: 'ndtc', mean: 0.4, std: 0.2 }, 4000, grid, 1000, 5));
    const mean = ts.reduce((a, b) => a + b, 0) / ts.length;
    const std = Math.sqrt(ts.reduce((a, b) => a + (b - mean) ** 2, 0) / (ts.length - 1));
    // Standard error of the mean is 200/√4000 ≈ 3.2; snapping to the 10-step grid adds ≤ 5.
    expect(Math.abs(mean - 400)).toBeLessThan(12);
    expect(Math.abs(std - 200)).toBeLessThan(10);
    expect(ts.every((t) => grid.includes(t))).toBe(true);
  });

  it('NDTC with the PTQ4DM script settings (0.4 T, 0.4 T) clamps at both ends', () => {
    const ts = times(planCalibrationSteps({ kind: 'ndtc', mean: 0.4, std: 0.4 }, 2000, grid, 1000, 6));
    expect(Math.min(...ts)).toBe(0);
    expect(Math.max(...ts)).toBe(990);
  });

  it('random-distinct: all distinct while the grid lasts, then every step used equally', () => {
    const plan = planCalibrationSteps({ kind: 'random-distinct' }, 100, grid, 1000, 3).flat();
    expect(new Set(plan).size).toBe(100);
    const more = planCalibrationSteps({ kind: 'random-distinct' }, 250, grid, 1000, 3).flat();
    const counts = Array<number>(100).fill(0);
    for (const s of more) counts[s]!++;
    expect(Math.min(...counts)).toBe(2);
    expect(Math.max(...counts)).toBe(3);
  });

  it('uniform random: flat histogram within the chi-square 99.9% bound; all-steps covers the grid', () => {
    const small = ddimTimesteps(1000, 10);
    const plan = planCalibrationSteps({ kind: 'uniform', mode: 'random' }, 5000, small, 1000, 7).flat();
    const counts = Array<number>(10).fill(0);
    for (const s of plan) counts[s]!++;
    const expected = plan.length / 10;
    const chi2 = counts.reduce((a, c) => a + (c - expected) ** 2 / expected, 0);
    expect(chi2).toBeLessThan(27.88); // 9 degrees of freedom, p = 0.001
    expect(planCalibrationSteps({ kind: 'uniform', mode: 'all' }, 2, small, 1000, 7)).toEqual([[0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]]);
  });

  it('evenly spaced includes both ends of the grid', () => {
    expect(planCalibrationSteps({ kind: 'evenly-spaced', count: 5 }, 1, ddimTimesteps(1000, 50), 1000, 0)).toEqual([[0, 12, 25, 37, 49]]);
  });
});

describe('calibration records from the dit-digits FP trajectories', () => {
  let session: RuntimeSession;
  let denoise: DenoiseFn;
  const calls: { t: number; x: Float32Array; y: BigInt64Array; eps: Float32Array }[] = [];
  beforeAll(async () => {
    session = await openSession(`${DIR}/model.onnx`, { intraOpNumThreads: 2 });
    const inner = denoiserFromSession(session, denoiserNamesFromSidecar(sidecar));
    denoise = async (x, t, y, dims) => {
      const eps = await inner(x, t, y, dims);
      calls.push({ t: Number(t[0]), x: x.slice(), y: y.slice(), eps: eps.slice() });
      return eps;
    };
  });
  afterAll(() => session.release());

  const request: CalibrationRequest = { strategy: { kind: 'ndtc', mean: 0.4, std: 0.4 }, trajectories: 12, samplerSteps: 20, seed: 4, classes: 10, imageShape: [1, 16, 16], batch: 6 };

  it('each record is exactly a model input at its t: re-running it gives the eps the sampler used', async () => {
    calls.length = 0;
    const records = await buildCalibrationRecords(denoise, schedule, request);
    expect(records.t.length).toBe(12);
    const grid = ddimTimesteps(1000, 20);
    const planned = planCalibrationSteps(request.strategy, 12, grid, 1000, 4).map(([s]) => grid[s!]!);
    expect(Array.from(records.t, Number)).toEqual(planned);
    expect(Array.from(records.y, Number)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]);
    for (let r = 0; r < 12; r++) {
      const batchStart = Math.floor(r / 6) * 6;
      const call = calls.find((c) => c.t === Number(records.t[r]) && c.y[0] === BigInt(batchStart % 10));
      const lane = r - batchStart;
      const xr = records.x.subarray(r * 256, (r + 1) * 256);
      expect(maxAbsError(xr, call!.x.subarray(lane * 256, (lane + 1) * 256))).toBe(0);
      const again = await session.run({ x: { dtype: 'float32', dims: [1, 1, 16, 16], data: xr.slice() }, t: { dtype: 'int64', dims: [1], data: records.t.slice(r, r + 1) }, y: { dtype: 'int64', dims: [1], data: records.y.slice(r, r + 1) } }, ['eps']);
      expect(maxAbsError(again.eps!.data as Float32Array, call!.eps.subarray(lane * 256, (lane + 1) * 256))).toBeLessThan(1e-5);
    }
    // Batches stop at their latest planned step: NDTC needs fewer calls than 2 batches × 20 steps.
    expect(calls.length).toBeLessThanOrEqual(40);
  });

  it('round-trips through the cache file; a different model hash or seed is refused with a reason', async () => {
    const records = await buildCalibrationRecords(denoise, schedule, { ...request, trajectories: 3 });
    const key = { modelSha256: modelSha256(`${DIR}/model.onnx`), strategy: request.strategy, seed: 4, samplerSteps: 20, trajectories: 3, classes: 10 };
    const bytes = encodeCalibrationCache(key, records);
    const back = decodeCalibrationCache(bytes, key);
    expect(back.ok).toBe(true);
    if (back.ok) {
      expect(Array.from(back.records.t)).toEqual(Array.from(records.t));
      expect(Array.from(back.records.y)).toEqual(Array.from(records.y));
      expect(maxAbsError(back.records.x, records.x)).toBe(0);
    }
    const stale = decodeCalibrationCache(bytes, { ...key, modelSha256: 'f'.repeat(64) });
    expect(stale).toEqual({ ok: false, reason: expect.stringMatching(/^calibration cache is stale: it was built for model sha256 [0-9a-f]{12}…/) });
    expect(decodeCalibrationCache(bytes, { ...key, seed: 5 })).toEqual({ ok: false, reason: 'calibration cache is stale: seed was 4, now 5' });
    expect(decodeCalibrationCache(bytes.subarray(0, bytes.length - 1), key).ok).toBe(false);
  });
});
