/**
 * A flow-matching model end to end (issue #13): `synth sd3 --preset tiny` writes an SD3-style MMDiT pipeline
 * folder (float timestep σ·1000, text states and pooled embeddings, FlowMatchEulerDiscreteScheduler with shift 3);
 * `inspect` prints its diffusion interface, a shipped-style W8A8 recipe calibrates it along its own flow-Euler
 * trajectories from the precomputed conditioning (the recipe's DDIM is the same step on a flow schedule), and
 * `eval` samples FP and quantized with CFG from the same seeds. The SD UNet's interface comes from its folder too.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { QualityReport } from '../../src/report/report.js';
import { runCli } from './run-cli.js';

const root = mkdtempSync(join(tmpdir(), 'qcompile-flow-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const SD3 = join(root, 'sd3');
const MODEL = join(SD3, 'transformer', 'model.onnx');

const interfaceLines = (stdout: string) => stdout.slice(stdout.indexOf('diffusion interface')).split('\n\n')[0]!.split('\n').map((l) => l.replace(/\s+/g, ' ').trim());

describe('a flow-matching MMDiT (synth sd3 --preset tiny)', () => {
  it('inspect prints its diffusion interface, each fact with its source', async () => {
    expect((await runCli(['synth', 'sd3', '--preset', 'tiny', '-o', SD3])).code).toBe(0);
    const run = await runCli(['inspect', MODEL]);
    expect(run.code, run.stderr).toBe(0);
    const lines = interfaceLines(run.stdout);
    expect(lines).toContain('timestep timestep f32 [B] graph read by the sinusoidal embedding');
    expect(lines.some((l) => l.startsWith('conditioning encoder_hidden_states text-states f32 [-1, 32] graph'))).toBe(true);
    expect(lines.some((l) => l.startsWith('conditioning pooled_projections pooled-text f32 [32] graph'))).toBe(true);
    expect(lines).toContain(`prediction flow pipeline-folder ${join(SD3, 'scheduler', 'scheduler_config.json')} FlowMatchEulerDiscreteScheduler`);
    expect(run.stdout).toMatch(/attn\.context\.q/);
  });

  it('compiles W8A8 from its own flow trajectories and evaluates against FP with CFG', async () => {
    const recipe = join(root, 'w8a8.qrecipe');
    writeFileSync(recipe, `recipe "flow w8a8" {
  calibrate {
    samples 16
    batch 8
    sampler ddim(steps: 6)
  }
  quantize all except op(Gather) {
    weight int8 sym per-channel
    input  int8 asym static
  }
}
`);
    const out = join(root, 'q', 'transformer', 'model.onnx');
    const compiled = await runCli([MODEL, recipe, '--conditioning', join(SD3, 'conditioning'), '-o', out]);
    expect(compiled.code, compiled.stderr).toBe(0);
    expect(compiled.stderr).toMatch(/calibration: 16 samples \(uniform; 8 precomputed conditions from .*conditioning\) from \d+ model rows in /);
    expect(compiled.stdout + compiled.stderr).toMatch(/layers quantized: 33\b/);
    const report = join(root, 'report');
    const evaluated = await runCli(['eval', '--fp', MODEL, '--quant', out, '--conditioning', join(SD3, 'conditioning'), '--guidance', '2', '--samples', '8', '--steps', '6', '-o', report]);
    expect(evaluated.code, evaluated.stderr).toBe(0);
    const r = JSON.parse(readFileSync(join(report, 'report.json'), 'utf8')) as QualityReport;
    console.log(`flow MMDiT W8A8: PSNR ${r.metrics!.psnrDb!.mean.toFixed(2)} dB; velocity SQNR ${r.epsByTimestep!.sqnrDb.join(' ')}; guidance signal ${r.guidanceSignal!.sqnrDb.join(' ')}`);
    expect(r.settings).toMatchObject({ sampler: 'flow-euler', steps: 6, guidance: 2 });
    expect(r.metrics!.psnrDb!.mean).toBeGreaterThan(30);
    const finite = (v: number[]) => v.filter((x) => Number.isFinite(x));
    expect(finite(r.epsByTimestep!.sqnrDb).length).toBeGreaterThan(3);
    expect(Math.min(...finite(r.epsByTimestep!.sqnrDb))).toBeGreaterThan(20);
    expect(finite(r.guidanceSignal!.sqnrDb).length).toBeGreaterThan(3);
  }, 300_000);
});

describe('an SD UNet pipeline folder (synth unet --preset tiny-sd)', () => {
  it('takes its dynamic latent size from unet/config.json and its prediction from the scheduler config', async () => {
    const dir = join(root, 'tiny-sd');
    expect((await runCli(['synth', 'unet', '--preset', 'tiny-sd', '-o', dir])).code).toBe(0);
    const run = await runCli(['inspect', join(dir, 'unet', 'model.onnx')]);
    expect(run.code, run.stderr).toBe(0);
    const lines = interfaceLines(run.stdout);
    expect(lines).toContain(`latent sample [4, 16, 16] pipeline-folder ${join(dir, 'unet', 'config.json')} sample_size`);
    expect(lines).toContain(`prediction epsilon pipeline-folder ${join(dir, 'scheduler', 'scheduler_config.json')} prediction_type`);
    expect(run.stdout).toMatch(/down\.0\.attn\.0\.cross\.k\s+attn\.cross\.k/);
  });
});
