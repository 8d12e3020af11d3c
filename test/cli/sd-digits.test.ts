/**
 * The text-conditioned fixture end to end through the CLI: sd-digits calibrates with its prompts (encoded by
 * its text encoder) or with its precomputed conditioning under CFG, and `eval` compares the result with FP at
 * guidance 1.5 from the same seeds — prompt adherence from the TSV's digits and the guidance-signal SQNR.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { QualityReport } from '../../src/report/report.js';
import { runCli } from './run-cli.js';

const SD = resolve('test/fixtures/sd-digits');
const UNET = join(SD, 'unet/model.onnx');
const F = resolve('test/fixtures/digits-classifier');

const recipe = (guidance: number) => `recipe "sd w8a8" {
  diffusion {
    guidance ${guidance}
  }
  calibrate {
    samples 16
    batch 8
    sampler ddim(steps: 10)
  }
  quantize all {
    weight int8 sym per-channel
    input int8 sym static
  }
}
`;

describe('sd-digits through the CLI', () => {
  const dir = mkdtempSync(join(tmpdir(), 'qcompile-sd-'));
  writeFileSync(join(dir, 'g1.qrecipe'), recipe(1));
  writeFileSync(join(dir, 'g15.qrecipe'), recipe(1.5));

  it('calibrates with its training prompts through the text encoder', async () => {
    const run = await runCli([UNET, join(dir, 'g1.qrecipe'), '-o', join(dir, 'prompts.onnx'), '--prompts', join(SD, 'prompts/train.txt')]);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toMatch(/calibration: 16 samples \(uniform; 120 prompts from train\.txt \(text encoder\)\) from \d+ model rows in /);
  }, 300_000);

  it('calibrates under CFG with the precomputed conditioning (unconditional rows recorded too), and eval reports adherence and the guidance signal', async () => {
    const quant = join(dir, 'cfg.onnx');
    const run = await runCli([UNET, join(dir, 'g15.qrecipe'), '-o', quant, '--conditioning', join(SD, 'conditioning/train')]);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toMatch(/calibration: 32 samples \(uniform; 120 precomputed conditions from .*conditioning\/train, guidance 1\.5\) from \d+ model rows in /);

    const evaluated = await runCli(['eval', '--fp', UNET, '--quant', quant, '--recipe', join(dir, 'g15.qrecipe'), '--conditioning', join(SD, 'conditioning/test'), '--prompts', join(SD, 'prompts/prompts_test.tsv'), '--samples', '20', '--steps', '10', '--features', `${F}/classifier.onnx`, '--real-mu', `${F}/real_features_mu_f64.bin`, '--real-cov', `${F}/real_features_cov_f64.bin`, '-o', join(dir, 'report')]);
    expect(evaluated.code, evaluated.stderr).toBe(0);
    const report = JSON.parse(readFileSync(join(dir, 'report', 'report.json'), 'utf8')) as QualityReport;
    const m = report.metrics!;
    console.log(`sd-digits W8A8 at guidance 1.5: ${evaluated.stdout.trim()}; eps SQNR ${report.epsByTimestep!.sqnrDb.join(' ')}; guidance signal ${report.guidanceSignal!.sqnrDb.join(' ')}`);
    expect(report.settings).toMatchObject({ guidance: 1.5, conditioning: expect.stringContaining('100 precomputed conditions') });
    expect(m.psnrDb!.mean).toBeGreaterThan(20);
    expect(m.psnrDb!.se).toBeGreaterThan(0);
    // The first 20 test prompts are digits 0 and 1 (10 templates each): FP follows them.
    expect(m.promptAdherence!.fp).toBeGreaterThanOrEqual(0.8);
    expect(m.promptAdherence!.quant).toBeGreaterThanOrEqual(0.7);
    expect(m.labelAccuracy).toBeUndefined();
    expect(m.fd!.fpCi![0]).toBeLessThanOrEqual(m.fd!.fp);
    expect(m.fd!.fpCi![1]).toBeGreaterThanOrEqual(m.fd!.fp);
    // The guidance signal is a small difference of two predictions: quantization error weighs more on it than on eps.
    const finite = (v: number[]) => v.filter(Number.isFinite);
    expect(finite(report.guidanceSignal!.sqnrDb).length).toBeGreaterThan(5);
    const mean = (v: number[]) => finite(v).reduce((a, b) => a + b, 0) / finite(v).length;
    expect(mean(report.guidanceSignal!.sqnrDb)).toBeLessThan(mean(report.epsByTimestep!.sqnrDb));
    expect(report.layerSqnr!.layers.length).toBeGreaterThan(10);
    expect(readFileSync(join(dir, 'report', 'report.html'), 'utf8')).toContain('prompt adherence');
  }, 600_000);
});
