import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { PNG } from 'pngjs';
import { afterAll, describe, expect, it } from 'vitest';
import { sampleCommand } from '../../src/cli/commands/sample.js';
import { readRawTensor } from '../../src/runtime/host-tensor.js';
import { saveModel } from '../../src/ir/serde.js';
import { buildDit, ditSchedule, DIT_PRESETS } from '../../src/synth/dit.js';

const MODEL = resolve('test/fixtures/dit-digits/model.onnx');

function capture(cwd: string) {
  const out = { stdout: '', stderr: '' };
  return { out, io: { stdout: (s: string) => void (out.stdout += s), stderr: (s: string) => void (out.stderr += s), cwd } };
}

describe('qcompile sample', () => {
  const dir = mkdtempSync(join(tmpdir(), 'qcompile-sample-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('writes the grid, the raw samples and a manifest; same seed gives the same bytes', async () => {
    const { out, io } = capture(dir);
    const argv = [MODEL, '--steps', '4', '--classes', '3,7', '--per-class', '2', '--seed', '5', '--scale', '2', '-o', 'grid.png'];
    expect(await sampleCommand.run(argv, io)).toBe(0);
    expect(out.stderr).toMatch(/^sampling steps 4\/4 \(100%\)  0:\d\d elapsed$/m);
    const png = PNG.sync.read(readFileSync(join(dir, 'grid.png')));
    expect([png.width, png.height]).toEqual([2 * 32 + 3, 2 * 32 + 3]);
    const manifest = JSON.parse(readFileSync(join(dir, 'grid.json'), 'utf8'));
    expect(manifest.labels).toEqual([3, 3, 7, 7]);
    expect(manifest.samples.shape).toEqual([4, 1, 16, 16]);
    const samples = readRawTensor(join(dir, 'grid.f32.bin'), 'float32', [4, 1, 16, 16]).data as Float32Array;
    expect(Math.max(...samples)).toBeLessThanOrEqual(1.0001);
    const first = readFileSync(join(dir, 'grid.f32.bin'));
    expect(await sampleCommand.run(argv, capture(dir).io)).toBe(0);
    expect(readFileSync(join(dir, 'grid.f32.bin')).equals(first)).toBe(true);
    expect(readdirSync(dir).filter((f) => f.includes('.tmp-'))).toEqual([]);
  });

  it('fails with one clear line on a model without a sidecar or pipeline folder, and on a bad class', async () => {
    writeFileSync(join(dir, 'lonely.onnx'), readFileSync(MODEL));
    const missing = capture(dir);
    expect(await sampleCommand.run(['lonely.onnx', '-o', 'x.png'], missing.io)).toBe(1);
    expect(missing.out.stderr).toMatch(/^qcompile sample: error: cannot tell what the model predicts: add `diffusion \{ prediction epsilon \}` .*schedule\.json with "prediction_type" next to the model\n$/);
    const bad = capture(dir);
    expect(await sampleCommand.run([MODEL, '--classes', '3,12', '-o', 'x.png'], bad.io)).toBe(2);
    expect(bad.out.stderr).toBe("qcompile sample: error: bad class '12' in --classes: the model has classes 0..9\n");
    expect(readdirSync(dir).some((f) => f.startsWith('x.'))).toBe(false);
  });

  it('samples a 4-channel learned-sigma DiT with CFG: the PNG shows 3 channels, the .f32.bin keeps all 4', async () => {
    const folder = join(dir, 'dit4');
    mkdirSync(folder);
    const config = { ...DIT_PRESETS.tiny!, inChannels: 4 };
    saveModel(buildDit(config), join(folder, 'model.onnx'));
    writeFileSync(join(folder, 'schedule.json'), JSON.stringify(ditSchedule(config, 0)));
    const { out, io } = capture(folder);
    expect(await sampleCommand.run(['model.onnx', '--steps', '3', '--classes', '1,2', '--per-class', '2', '--guidance', '3', '-o', 'grid.png'], io)).toBe(0);
    expect(out.stdout).toContain('the grid shows channels 0-2 of 4 (raw latents, not decoded images)');
    const manifest = JSON.parse(readFileSync(join(folder, 'grid.json'), 'utf8'));
    expect(manifest.samples.shape).toEqual([4, 4, 16, 16]);
    expect(manifest.sampler).toMatchObject({ name: 'ddim', steps: 3, guidance: 3 });
    const samples = readRawTensor(join(folder, 'grid.f32.bin'), 'float32', [4, 4, 16, 16]).data as Float32Array;
    expect(samples.every(Number.isFinite)).toBe(true);
    const png = PNG.sync.read(readFileSync(join(folder, 'grid.png')));
    expect(png.width).toBeGreaterThan(0);
  });
});
