/**
 * The bad-sidecar corpus: each entry patches the fixture's schedule.json into something a sampler cannot use
 * (an unbounded T allocated 4 GB, a negative beta gave all-NaN samples, 'sigmoid' ran as cosine, 'sample' ran
 * as v) and names the message the one validator (parseSidecar) gives. compile, `sample` and `eval` all refuse
 * it the same way, before any model is read; a recipe's `prediction` that the sidecar contradicts is an error.
 */
import { copyFileSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { CliIO } from '../../src/cli/command.js';
import { main } from '../../src/cli/main.js';
import { betasOf, cumulativeAlphas, MAX_TIMESTEPS, ScheduleError } from '../../src/runtime/diffusion/schedule-math.js';
import { noiseScheduleFromRecipe, noiseScheduleFromSidecar, type RecipeSchedule } from '../../src/runtime/diffusion/scheduler-config.js';
import { makeScheduler } from '../../src/runtime/diffusion/scheduler.js';
import { checkRecipePrediction, parseSidecar, readSidecar } from '../../src/runtime/diffusion/sidecar.js';

const FIXTURE = 'test/fixtures/dit-digits';
const GOOD = JSON.parse(readFileSync(`${FIXTURE}/schedule.json`, 'utf8')) as Record<string, unknown>;

/** [what is wrong, the patch onto the fixture sidecar (undefined deletes), the message]. */
const BAD_SIDECARS: [string, Record<string, unknown>, RegExp][] = [
  ['T of 1e9 (4 GB of ᾱ)', { T: 1e9 }, /'T' must be an integer in \[1, 100000\], got 1000000000/],
  ['T of 0', { T: 0 }, /'T' must be an integer in \[1, 100000\], got 0/],
  ['fractional T', { T: 999.5 }, /'T' must be an integer .*, got 999\.5/],
  ['T as a string', { T: '1000' }, /'T' must be an integer .*, got "1000"/],
  ['missing T', { T: undefined }, /'T' must be an integer .*, got undefined/],
  ['negative beta_start', { beta_start: -0.1 }, /'beta_start' must be a number in \(0, 1\), got -0\.1/],
  ['beta_end of 1', { beta_end: 1 }, /'beta_end' must be a number in \(0, 1\), got 1/],
  ['NaN-ish beta_end (null)', { beta_end: null }, /'beta_end' must be a number in \(0, 1\), got null/],
  ['unknown beta_schedule sigmoid', { beta_schedule: 'sigmoid' }, /'beta_schedule' must be one of linear, scaled-linear, cosine, got "sigmoid"/],
  ['x0 prediction (sample)', { prediction_type: 'sample' }, /'prediction_type' is 'sample' \(x0 prediction\), which qcompile's samplers do not implement/],
  ['unknown prediction_type', { prediction_type: 'eps' }, /'prediction_type' must be one of epsilon, v_prediction, v, got "eps"/],
  ['missing prediction_type', { prediction_type: undefined }, /'prediction_type' must be one of .*, got undefined/],
  ['negative num_classes', { num_classes: -1 }, /'num_classes' must be a non-negative integer, got -1/],
  ['zero-height image', { image: { channels: 1, height: 0, width: 16 } }, /'image\.height' must be an integer in \[1, 65536\], got 0/],
];

function patched(patch: Record<string, unknown>): Record<string, unknown> {
  const out = { ...GOOD, ...patch };
  for (const [k, v] of Object.entries(patch)) if (v === undefined) delete out[k];
  return out;
}

/** A folder with the fixture model and `sidecar` as its schedule.json. */
function modelFolder(sidecar: Record<string, unknown>): string {
  const dir = mkdtempSync(join(tmpdir(), 'qcompile-schedule-'));
  copyFileSync(`${FIXTURE}/model.onnx`, join(dir, 'model.onnx'));
  writeFileSync(join(dir, 'schedule.json'), JSON.stringify(sidecar));
  return dir;
}

function capture(): CliIO & { err: string[] } {
  const err: string[] = [];
  return { err, cwd: process.cwd(), stdout: () => {}, stderr: (t) => void err.push(t) };
}

describe('parseSidecar: the bad-sidecar corpus', () => {
  for (const [what, patch, message] of BAD_SIDECARS) {
    it(`refuses ${what}`, () => {
      let error: unknown;
      try {
        parseSidecar(patched(patch), 'schedule.json');
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(ScheduleError);
      expect((error as Error).message).toMatch(/^schedule\.json: /);
      expect((error as Error).message).toMatch(message);
    });
  }

  it('accepts the fixture, reads v_prediction as v, and lets cosine go without betas', () => {
    expect(readSidecar(`${FIXTURE}/schedule.json`)).toMatchObject({ T: 1000, beta_schedule: 'linear', prediction_type: 'epsilon', num_classes: 10 });
    expect(parseSidecar(patched({ prediction_type: 'v_prediction' })).prediction_type).toBe('v');
    const cosine = noiseScheduleFromSidecar(parseSidecar(patched({ beta_schedule: 'cosine', beta_start: undefined, beta_end: undefined })));
    expect(cosine).toMatchObject({ betaSchedule: 'squaredcos_cap_v2', numTrainTimesteps: 1000 });
    expect([cosine.betaStart, cosine.betaEnd]).toEqual([undefined, undefined]);
    // The betas the cosine schedule computes itself (it reads no beta_start / beta_end).
    const alphas = cumulativeAlphas(betasOf({ kind: cosine.betaSchedule!, T: cosine.numTrainTimesteps, betaStart: Number.NaN, betaEnd: Number.NaN }));
    expect(alphas.every((a) => a > 0 && a < 1)).toBe(true);
  });

  it('recipe schedules are bounded the same way: T, the betas, the beta schedule', () => {
    const recipe = (schedule: RecipeSchedule['schedule']) => noiseScheduleFromRecipe({ schedule, prediction: 'model' });
    expect(() => recipe({ kind: 'linear', betaStart: 1e-4, betaEnd: 0.02, steps: MAX_TIMESTEPS + 1 })).toThrow(ScheduleError);
    expect(() => recipe({ kind: 'scaled-linear', betaStart: 1e-4, betaEnd: 1.2, steps: 1000 })).toThrow(/beta_end must be a number in \(0, 1\), got 1\.2/);
    expect(() => betasOf({ kind: 'sigmoid' as never, T: 1000, betaStart: 1e-4, betaEnd: 0.02 })).toThrow(/unknown beta schedule 'sigmoid'/);
  });

  it('DDIM steps beyond T (which all ran at t = 0) are refused', () => {
    const schedule = noiseScheduleFromSidecar(parseSidecar(GOOD));
    expect(makeScheduler(schedule, { kind: 'ddim', steps: 1000 }).timesteps).toHaveLength(1000);
    expect(() => makeScheduler(schedule, { kind: 'ddim', steps: 1001 })).toThrow(/sampling steps must be an integer in \[1, T = 1000\], got 1001/);
  });

  it("a recipe's prediction that the sidecar contradicts is an error, either way round", () => {
    const v = parseSidecar(patched({ prediction_type: 'v_prediction' }));
    expect(() => checkRecipePrediction(v, { prediction: 'epsilon' })).toThrow(/the recipe says 'prediction epsilon' but the model's schedule\.json says prediction_type 'v_prediction'/);
    expect(() => checkRecipePrediction(parseSidecar(GOOD), { prediction: 'v' })).toThrow(/says 'prediction v' but .* prediction_type 'epsilon'/);
    expect(() => checkRecipePrediction(v, { prediction: 'v' })).not.toThrow();
  });
});

describe('the commands refuse a bad sidecar the same way, before sampling anything', () => {
  const [, patch, message] = BAD_SIDECARS.find(([what]) => what.startsWith('negative beta_start'))!;
  const dir = modelFolder(patched(patch));

  it('qcompile sample', async () => {
    const io = capture();
    const out = join(dir, 'grid.png');
    expect(await main(['sample', join(dir, 'model.onnx'), '-o', out], io)).toBe(1);
    expect(io.err.join('')).toMatch(message);
    expect(existsSync(out)).toBe(false);
  });

  it('qcompile eval', async () => {
    const io = capture();
    expect(await main(['eval', '--fp', join(dir, 'model.onnx'), '--quant', join(dir, 'model.onnx'), '--samples', '2', '-o', join(dir, 'report')], io)).toBe(1);
    expect(io.err.join('')).toMatch(message);
    expect(existsSync(join(dir, 'report'))).toBe(false);
  });

  it('qcompile compile (a calibrating recipe)', async () => {
    const io = capture();
    const out = join(dir, 'q.onnx');
    expect(await main([join(dir, 'model.onnx'), 'recipes/ptq4dm-w8a8.qrecipe', '-o', out], io)).toBe(1);
    expect(io.err.join('')).toMatch(message);
    expect(existsSync(out)).toBe(false);
  });

  it("compile: a recipe's written `prediction epsilon` against a v_prediction sidecar is an error, not ignored (unwritten, the prediction is the model's)", async () => {
    const vDir = modelFolder(patched({ prediction_type: 'v_prediction' }));
    const recipe = join(vDir, 'eps.qrecipe');
    writeFileSync(recipe, readFileSync('recipes/ptq4dm-w8a8.qrecipe', 'utf8').replace('  target cpu\n', '  target cpu\n  diffusion {\n    prediction epsilon\n  }\n'));
    const io = capture();
    const out = join(vDir, 'q.onnx');
    expect(await main([join(vDir, 'model.onnx'), recipe, '-o', out], io)).toBe(1);
    expect(io.err.join('')).toMatch(/the recipe says 'prediction epsilon' but the model's schedule\.json says prediction_type 'v_prediction'/);
    expect(existsSync(out)).toBe(false);
  });

  it("compile: a recipe's `prediction v` against the fixture's epsilon sidecar is an error", async () => {
    const recipe = join(dir, 'v.qrecipe');
    writeFileSync(recipe, readFileSync('recipes/ptq4dm-w8a8.qrecipe', 'utf8').replace('  target cpu\n', '  target cpu\n  diffusion {\n    prediction v\n  }\n'));
    const io = capture();
    const out = join(dir, 'qv.onnx');
    expect(await main([`${FIXTURE}/model.onnx`, recipe, '-o', out], io)).toBe(1);
    expect(io.err.join('')).toMatch(/says 'prediction v' but the model's schedule\.json says prediction_type 'epsilon'/);
    expect(existsSync(out)).toBe(false);
  });

  it("eval --recipe: the same recipe's `prediction v` against the epsilon sidecar is an error before sampling", async () => {
    const io = capture();
    const report = join(dir, 'report-v');
    expect(await main(['eval', '--fp', `${FIXTURE}/model.onnx`, '--quant', `${FIXTURE}/model.onnx`, '--recipe', join(dir, 'v.qrecipe'), '--samples', '2', '-o', report], io)).toBe(1);
    expect(io.err.join('')).toMatch(/says 'prediction v' but the model's schedule\.json says prediction_type 'epsilon'/);
    expect(existsSync(report)).toBe(false);
  });
});
