/** `qcompile synth pixart|sd3`: the CLI writes the same pipeline folder as the family's writer, and refuses what it cannot write. */
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli } from '../cli/run-cli.js';

const root = mkdtempSync(join(tmpdir(), 'qcompile-synth-cli-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('qcompile synth pixart|sd3', () => {
  it.each([
    ['pixart', ['conditioning/prompt_000.npy', 'transformer/model.onnx', 'transformer/model.onnx.data']],
    ['sd3', ['conditioning/encoder_hidden_states/prompt_000.npy', 'conditioning/pooled_projections/uncond.npy', 'transformer/model.onnx']],
  ])('%s --preset tiny writes a pipeline folder', async (family, expected) => {
    const dir = join(root, family);
    const run = await runCli(['synth', family, '--preset', 'tiny', '-o', dir]);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toMatch(new RegExp(`wrote ${family} tiny \\([\\d,]+ weights`));
    const files = readdirSync(dir, { recursive: true }).map(String);
    for (const file of [...expected, 'model_index.json', 'scheduler/scheduler_config.json', 'transformer/config.json']) expect(files).toContain(file);
  });

  it('refuses an unknown family or preset, and a DiT option, with usage (exit 2) and writes nothing', async () => {
    for (const args of [['vae', '--preset', 'tiny'], ['sd3', '--preset', 'huge'], ['pixart', '--preset', 'tiny', '--no-learn-sigma']]) {
      const dir = join(root, 'refused');
      const run = await runCli(['synth', ...args, '-o', dir]);
      expect(run.code).toBe(2);
      expect(run.stderr).toMatch(/qcompile synth: error: (expected one model family: dit, unet, pixart, sd3|unknown sd3 preset 'huge' \(one of sd3-medium, tiny\)|--learn-sigma and --no-learn-sigma are DiT options)/);
      expect(() => readdirSync(dir)).toThrow();
    }
  });
});
