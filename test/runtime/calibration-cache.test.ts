import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadModelSync } from '../../src/ir/serde.js';
import { ditCalibrationSet, ditDigits } from '../../bench/digits-quality.js';
import { conditioningSha256, decodeCalibrationCache, encodeCalibrationCache, modelFilesSha256, type CalibrationKey } from '../../src/runtime/calibration-cache.js';
import { runCli } from '../cli/run-cli.js';

const DIR = resolve('test/fixtures/dit-digits');
const MODEL = join(DIR, 'model.onnx');


describe('calibration cache', () => {
  it('round-trips a calibration set batch for batch; another model, seed, batch size, conditioning or guidance is refused with a reason', async () => {
    const model = loadModelSync(MODEL);
    const { scheduler, conditioning } = ditDigits(model, 10);
    const strategy = { kind: 'ndtc' as const, mean: 0.4, std: 0.4 };
    const set = await ditCalibrationSet(model, 10, { samples: 10, batch: 4, strategy, seed: 4 });
    const key: CalibrationKey = { modelSha256: modelFilesSha256(model, MODEL), strategy, seed: 4, schedule: scheduler.config, sampler: scheduler.spec, samples: 10, batch: 4, conditioning: conditioningSha256(conditioning), guidance: 1 };
    const bytes = encodeCalibrationCache(key, set);
    const back = decodeCalibrationCache(bytes, key);
    expect(back.ok).toBe(true);
    if (back.ok) {
      expect(back.set.timesteps).toEqual(set.timesteps);
      expect(back.set.positions).toEqual(set.positions);
      expect(back.set.batches.map((b) => b.x!.dims)).toEqual([[4, 1, 16, 16], [4, 1, 16, 16], [2, 1, 16, 16]]);
      back.set.batches.forEach((batch, i) => {
        for (const name of ['x', 't', 'y']) expect([...(batch[name]!.data as ArrayLike<number | bigint> & Iterable<number | bigint>)]).toEqual([...(set.batches[i]![name]!.data as ArrayLike<number | bigint> & Iterable<number | bigint>)]);
      });
    }
    expect(decodeCalibrationCache(bytes, { ...key, modelSha256: 'f'.repeat(64) })).toEqual({ ok: false, reason: expect.stringMatching(/^calibration cache is stale: it was built for model sha256 [0-9a-f]{12}…/) });
    expect(decodeCalibrationCache(bytes, { ...key, seed: 5 })).toEqual({ ok: false, reason: 'calibration cache is stale: seed was 4, now 5' });
    expect(decodeCalibrationCache(bytes, { ...key, batch: 8 })).toEqual({ ok: false, reason: 'calibration cache is stale: batch was 4, now 8' });
    expect(decodeCalibrationCache(bytes, { ...key, guidance: 1.5 })).toEqual({ ok: false, reason: 'calibration cache is stale: guidance was 1, now 1.5' });
    expect(decodeCalibrationCache(bytes, { ...key, conditioning: 'a'.repeat(64) })).toEqual({ ok: false, reason: expect.stringMatching(/^calibration cache is stale: conditioning was sha256 [0-9a-f]{12}…, now sha256 aaaaaaaaaaaa…$/) });
    expect(decodeCalibrationCache(bytes.subarray(0, bytes.length - 1), key).ok).toBe(false);
    // One bit anywhere (a recorded sample, the header's count) breaks the trailing sha256.
    for (const at of [bytes.length - 40, 40]) {
      const edited = bytes.slice();
      edited[at]! ^= 1;
      expect(decodeCalibrationCache(edited, key), `byte ${at}`).toEqual({ ok: false, reason: 'calibration cache checksum mismatch: the file was edited or damaged' });
    }
  });

  it('a recipe with `cache` records once, then compiles from the file to the same bytes', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'qcompile-cache-'));
    const recipe = (seed: number) => `recipe "cached" {\n  seed ${seed}\n  calibrate {\n    samples 16\n    batch 8\n    sampler ddim(steps: 10)\n    cache "calibration.bin"\n  }\n  quantize attn, mlp {\n    weight int8 sym per-channel\n    input int8 sym static\n  }\n}\n`;
    writeFileSync(join(dir, 'r.qrecipe'), recipe(0));
    const first = await runCli([MODEL, join(dir, 'r.qrecipe'), '-o', join(dir, 'a.onnx')]);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stderr).toContain(`calibration: cached in ${join(dir, 'calibration.bin')}`);
    const second = await runCli([MODEL, join(dir, 'r.qrecipe'), '-o', join(dir, 'b.onnx')]);
    expect(second.code, second.stderr).toBe(0);
    expect(second.stderr).toContain(`calibration: 16 samples (uniform; 10 classes) from ${join(dir, 'calibration.bin')}`);
    expect(readFileSync(join(dir, 'b.onnx')).equals(readFileSync(join(dir, 'a.onnx')))).toBe(true);

    writeFileSync(join(dir, 'r.qrecipe'), recipe(1));
    const reseeded = await runCli([MODEL, join(dir, 'r.qrecipe'), '-o', join(dir, 'c.onnx')]);
    expect(reseeded.code, reseeded.stderr).toBe(0);
    expect(reseeded.stderr).toContain('calibration: not using');
    expect(reseeded.stderr).toContain('seed was 0, now 1');
  });
});
