import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { PNG } from 'pngjs';
import { afterAll, describe, expect, it } from 'vitest';
import { sampleCommand } from '../../src/cli/commands/sample.js';
import { readRawTensor } from '../../src/runtime/host-tensor.js';

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
    expect(out.stderr).toMatch(/step 4\/4/);
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

  it('fails with one clear line on a missing sidecar and on a bad class', async () => {
    writeFileSync(join(dir, 'lonely.onnx'), readFileSync(MODEL));
    const missing = capture(dir);
    expect(await sampleCommand.run(['lonely.onnx', '-o', 'x.png'], missing.io)).toBe(1);
    expect(missing.out.stderr).toMatch(/^qcompile sample: error: no diffusion sidecar: .*schedule\.json does not exist/);
    const bad = capture(dir);
    expect(await sampleCommand.run([MODEL, '--classes', '3,12', '-o', 'x.png'], bad.io)).toBe(2);
    expect(bad.out.stderr).toBe("qcompile sample: error: bad class '12' in --classes: the model has classes 0..9\n");
    expect(readdirSync(dir).some((f) => f.startsWith('x.'))).toBe(false);
  });
});
