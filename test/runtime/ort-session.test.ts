import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { loadManifestTensors } from '../../src/runtime/host-tensor.js';
import { maxAbsError } from '../../src/runtime/metrics.js';
import { forEachBatch, openSession, runBatched } from '../../src/runtime/ort-session.js';
import { Rng } from '../../src/runtime/rng.js';

const DIR = 'test/fixtures/dit-digits';

describe('ORT harness', () => {
  const ref = loadManifestTensors(`${DIR}/reference_manifest.json`);

  it('loads the fixture manifest tensors with their dtypes and shapes', () => {
    expect(ref.x!.dims).toEqual([8, 1, 16, 16]);
    expect(Array.from(ref.t!.data as BigInt64Array, Number)).toEqual([0, 1, 500, 999, 10, 100, 400, 800]);
  });

  it('from bytes with config entries, batched (3+3+2) equals the PyTorch reference and the unbatched run', async () => {
    const session = await openSession(new Uint8Array(readFileSync(`${DIR}/model.onnx`)), { intraOpNumThreads: 2, graphOptimizationLevel: 'all', configEntries: { 'session.qdq_matmulnbits_accuracy_level': '0' } });
    try {
      expect([...session.inputNames]).toEqual(['x', 't', 'y']);
      const inputs = { x: ref.x!, t: ref.t!, y: ref.y! };
      const whole = await session.run(inputs);
      expect(maxAbsError(whole.eps!.data as Float32Array, ref.eps!.data as Float32Array)).toBeLessThan(1e-4);
      const batched = await runBatched(session, inputs, 3);
      expect(batched.eps!.dims).toEqual([8, 1, 16, 16]);
      expect(maxAbsError(batched.eps!.data as Float32Array, whole.eps!.data as Float32Array)).toBeLessThan(1e-5);
      const firstRows: number[] = [];
      await forEachBatch(session, inputs, 3, (out, first) => void firstRows.push(first, out.eps!.dims[0]!));
      expect(firstRows).toEqual([0, 3, 3, 3, 6, 2]);
    } finally {
      await session.release();
    }
  });

  it('a bad config entry name is refused before ORT sees it', async () => {
    await expect(openSession(`${DIR}/model.onnx`, { configEntries: { noGroup: '1' } })).rejects.toThrow(/session\.name/);
  });
});

describe('Rng', () => {
  it('is a fixed stream per seed (golden first values) and differs across seeds', () => {
    const a = new Rng(42);
    const first = [a.nextUint32(), a.nextUint32(), a.nextUint32()];
    const b = new Rng(42);
    expect([b.nextUint32(), b.nextUint32(), b.nextUint32()]).toEqual(first);
    expect(new Rng(43).nextUint32()).not.toBe(first[0]);
    // Pinned: a change to seeding or the generator would silently change every seeded sample and calibration set.
    expect(first).toEqual([2837322924, 544945897, 479756282]);
    expect(new Rng(0).normal()).toBe(-0.18286387008766009);
  });

  it('normal has mean 0 and variance 1; int is in range and unbiased', () => {
    const rng = new Rng(1);
    const n = 200_000;
    let sum = 0;
    let sq = 0;
    for (let i = 0; i < n; i++) {
      const v = rng.normal();
      sum += v;
      sq += v * v;
    }
    expect(Math.abs(sum / n)).toBeLessThan(0.01);
    expect(Math.abs(sq / n - 1)).toBeLessThan(0.015);
    const counts = Array<number>(7).fill(0);
    for (let i = 0; i < 70_000; i++) counts[rng.int(7)]!++;
    const chi2 = counts.reduce((a, c) => a + (c - 10_000) ** 2 / 10_000, 0);
    expect(chi2).toBeLessThan(22.46); // 6 degrees of freedom, p = 0.001
    expect(() => rng.int(0)).toThrow();
  });
});
