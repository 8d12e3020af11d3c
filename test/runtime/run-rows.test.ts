/**
 * Runs cut to the activation budget (src/runtime/run-rows.ts) on sd-digits under classifier-free guidance: the
 * sampler's [uncond; cond] calls run as runs of the rows that fit, with the outputs of the whole call, and the
 * calibration batches hold no more rows than fit.
 */
import { describe, expect, it } from 'vitest';
import { sdDigits } from './sd-digits.js';
import type { ModelExecutor, TensorMap } from '../../src/ir/executor.js';
import { buildCalibrationSet } from '../../src/runtime/calibration.js';
import { openDenoiser } from '../../src/runtime/diffusion/sampler.js';
import { OrtExecutor } from '../../src/runtime/ir-executor.js';
import { ACTIVATION_BUDGET_FLOOR_BYTES, RunRows, cutBatches } from '../../src/runtime/run-rows.js';
import { stackFeeds } from '../../src/runtime/diffusion/tensor-rows.js';

/** An ORT executor that records the rows of every run. */
function countingExecutor(runs: number[]): ModelExecutor {
  const ort = new OrtExecutor();
  return {
    prepare: async (model, fetch) => {
      const prepared = await ort.prepare(model, fetch);
      return { run: (feeds: TensorMap) => (runs.push(feeds.sample!.dims[0]!), prepared.run(feeds)), release: () => prepared.release() };
    },
  };
}

describe('runs cut to the activation budget', () => {
  it('the sampler calls of a calibration run as runs of the rows that fit, and its batches hold no more', async () => {
    const { model, iface, conditioning, scheduler } = sdDigits(4);
    const options = { samples: 8, batch: 4, strategy: { kind: 'uniform' } as const, seed: 3, guidance: 1.5 };

    // The shipped budget runs this small model's calls whole: 4 trajectories × 2 rows a call.
    const whole: number[] = [];
    const shipped = new RunRows(model);
    expect(shipped.budgetBytes).toBe(ACTIVATION_BUDGET_FLOOR_BYTES);
    const uncut = await openDenoiser(model, iface, countingExecutor(whole), shipped);
    const reference = await buildCalibrationSet(uncut, scheduler, conditioning, { ...options, runRows: shipped });
    await uncut.release();
    expect(new Set(whole)).toEqual(new Set([8]));
    expect(reference.batches.map((b) => b.sample!.dims[0])).toEqual([4, 4, 4, 4]);

    // A budget of 3 rows' activations: each 8-row call runs as 3 + 3 + 2 rows, the batches as 3, 3, … rows.
    const bytesPerRow = shipped.of(reference.batches[0]!).bytesPerRow!;
    const small = new RunRows(model, 3.5 * bytesPerRow);
    expect(small.of(reference.batches[0]!)).toEqual({ rows: 3, bytesPerRow });
    const cutRuns: number[] = [];
    const cut = await openDenoiser(model, iface, countingExecutor(cutRuns), small);
    const set = await buildCalibrationSet(cut, scheduler, conditioning, { ...options, runRows: small });
    await cut.release();
    expect(new Set(cutRuns)).toEqual(new Set([3, 2]));
    expect(cutRuns.length).toBe((whole.length * 3));
    expect(set.batches.map((b) => b.sample!.dims[0])).toEqual([3, 3, 3, 3, 3, 1]);
    // The same trajectories: every recorded row as the uncut run recorded it, to ORT's batch-size rounding.
    const rows = (batches: TensorMap[]) => batches.flatMap((b) => Array.from({ length: b.sample!.dims[0]! }, (_, i) => (b.sample!.data as Float32Array).subarray(i * 256, (i + 1) * 256)));
    const [a, b] = [rows(reference.batches), rows(set.batches)];
    expect(b.length).toBe(a.length);
    let worst = 0;
    a.forEach((row, r) => row.forEach((v, i) => (worst = Math.max(worst, Math.abs(v - b[r]![i]!)))));
    expect(worst).toBeLessThan(1e-4);
    expect(set.timesteps).toEqual(reference.timesteps);
    // Batches recorded whole (a calibration cache written before the cut) are cut when read: rows kept in order.
    const recut = cutBatches(reference.batches, small);
    expect(recut.map((b) => b.sample!.dims[0])).toEqual([3, 1, 3, 1, 3, 1, 3, 1]);
    expect(stackFeeds(recut)).toEqual(stackFeeds(reference.batches));
    expect(cutBatches(reference.batches, shipped)).toEqual(reference.batches);
  }, 120_000);
});
