/* eslint-disable no-restricted-imports -- the CLI's own tests import it */
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { CliIO } from '../../src/cli/command.js';
import { main } from '../../src/cli/main.js';
import type { QualityReport } from '../../src/report/report.js';
import { checkPageRenders } from '../../src/runtime/browser/page-check.js';

function capture(): CliIO & { out: string[]; err: string[] } {
  const out: string[] = [];
  const err: string[] = [];
  return { out, err, cwd: process.cwd(), stdout: (t) => void out.push(t), stderr: (t) => void err.push(t) };
}

describe('qcompile eval on dit-digits (rtn-w4a16-g128)', () => {
  it('writes report.json with real metrics and a report.html that renders in Chromium without errors', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'qcompile-eval-'));
    const quant = join(dir, 'rtn.onnx');
    expect(await main(['test/fixtures/dit-digits/model.onnx', 'recipes/rtn-w4a16-g128.qrecipe', '-o', quant], capture())).toBe(0);
    const F = 'test/fixtures/digits-classifier';
    const io = capture();
    const code = await main(['eval', '--fp', 'test/fixtures/dit-digits/model.onnx', '--quant', quant, '--recipe', 'recipes/rtn-w4a16-g128.qrecipe', '--samples', '20', '--steps', '10', '--features', `${F}/classifier.onnx`, '--real-mu', `${F}/real_features_mu_f64.bin`, '--real-cov', `${F}/real_features_cov_f64.bin`, '-o', join(dir, 'report')], io);
    expect(code, io.err.join('')).toBe(0);
    const report = JSON.parse(readFileSync(join(dir, 'report', 'report.json'), 'utf8')) as QualityReport;
    expect(report.metrics!.psnrDb!.mean).toBeGreaterThan(20);
    expect(report.metrics!.labelAgreement!).toBeGreaterThanOrEqual(0.9);
    expect(Number.isFinite(report.metrics!.fd!.fp) && Number.isFinite(report.metrics!.fd!.quant)).toBe(true);
    expect(report.epsByTimestep!.sqnrDb.every(Number.isFinite)).toBe(true);
    // Every quantized attention/MLP/adaLN layer is compared, through the MatMulNBits lowering.
    expect(report.layerSqnr!.layers.length).toBe(36);
    expect(report.quant.fileBytes).toBeLessThan(report.fp.fileBytes / 4);
    const page = await checkPageRenders(join(dir, 'report', 'report.html'));
    expect(page.consoleErrors).toEqual([]);
    expect(page.svgCount).toBeGreaterThanOrEqual(2);
  });
});
