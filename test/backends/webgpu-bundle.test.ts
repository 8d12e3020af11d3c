import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { backends } from '../../src/backends/registry.js';
import { ORT_WEBGPU_FILES, writeWebGpuBundle } from '../../src/backends/webgpu/bundle.js';
import { loadModelSync } from '../../src/ir/serde.js';
import { DIT_DIGITS, maxAbsDiff } from '../passes/fixture.js';
import { runEps, w4a16 } from './quantized-fixtures.js';

describe('writeWebGpuBundle', () => {
  it('writes the lowered model with external data, the manifest, the page and the ORT webgpu files; the model reloads and runs identically', async () => {
    const model = await w4a16();
    const summary = backends.webgpu.lower(model);
    const expected = await runEps(model);
    const root = mkdtempSync(join(tmpdir(), 'qc-bundle-'));
    const pageDir = join(root, 'page');
    mkdirSync(pageDir);
    writeFileSync(join(pageDir, 'index.html'), '<!doctype html>');
    writeFileSync(join(pageDir, 'main.js'), '// page');
    const out = join(root, 'bundle');
    const schedule = JSON.parse(readFileSync(join(DIT_DIGITS, 'schedule.json'), 'utf8')) as unknown;
    const files = writeWebGpuBundle(model, out, { schedule, classes: 10, quantSummary: summary, pageDir });
    expect(files.sort()).toEqual(['index.html', 'main.js', 'manifest.json', 'model.onnx', 'model.onnx.data', ...ORT_WEBGPU_FILES.map((f) => `ort/${f}`)].sort());
    for (const file of files) expect(existsSync(join(out, file)), file).toBe(true);
    const manifest = JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8')) as Record<string, unknown>;
    expect(manifest.inputs).toEqual([
      { name: 'x', elemType: 1, shape: ['batch', 1, 16, 16] },
      { name: 't', elemType: 7, shape: ['batch'] },
      { name: 'y', elemType: 7, shape: ['batch'] },
    ]);
    expect(manifest.quantization).toEqual(JSON.parse(JSON.stringify(summary)));
    expect(manifest.ort).toBe('ort/ort.webgpu.min.mjs');
    expect(maxAbsDiff(expected, await runEps(loadModelSync(join(out, 'model.onnx'))))).toBe(0);
  });
});
