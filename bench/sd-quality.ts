/**
 * Text-conditioned image quality on sd-digits (issue #13): compiles each method recipe with the CLI (calibrating
 * on the training prompts through the pipeline's text encoder), samples FP and every quantized UNet from the same
 * seeds with CFG at the model's recommended guidance over the held-out test prompts, and reports per recipe:
 * prompt adherence (the digits classifier's label against the prompt's digit), the Fréchet distance of the
 * classifier's features to the real digits (all samples), paired PSNR against FP (the first `paired` samples),
 * and — from `qcompile eval` — the guidance-signal SQNR (eps(cond) − eps(uncond) against FP's) by timestep bin.
 * Noise as in the W4A8 ladder: paired differences ± 2 standard errors; for the FD, 2 standard deviations of the
 * quantized − FP difference over paired bootstrap resamples.
 *
 * Run: npx tsx bench/sd-quality.ts [--samples 1000] [--paired 200] [--steps 25] [--out bench/sd-quality.json] [RECIPE...]
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { loadModelSync } from '../src/ir/serde.js';
import { seededRandom } from '../src/random.js';
import { loadConditioning } from '../src/runtime/diffusion/conditioning.js';
import { findDiffusionInterface } from '../src/runtime/diffusion/interface.js';
import { openDenoiser, sample } from '../src/runtime/diffusion/sampler.js';
import { guidanceFor, noiseScheduleFor } from '../src/runtime/diffusion/schedule-source.js';
import { makeScheduler } from '../src/runtime/diffusion/scheduler.js';
import type { QualityReport } from '../src/report/report.js';
import { classify, frechetToRealDigits, psnrPerSample } from './digits-quality.js';

const root = join(import.meta.dirname, '..');
const SD = join(root, 'test', 'fixtures', 'sd-digits');
const UNET = join(SD, 'unet', 'model.onnx');
const TRAIN_PROMPTS = join(SD, 'prompts', 'train.txt');
const TEST_PROMPTS = join(SD, 'prompts', 'prompts_test.tsv');
const DEFAULT_RECIPES = ['ptq4dm-w8a8', 'smoothquant-w8a8', 'dilatequant-w4a8', 'rtn-w4a16-g128'].map((r) => join(root, 'recipes', `${r}.qrecipe`));

const { values: flags, positionals } = parseArgs({
  allowPositionals: true,
  options: { samples: { type: 'string', default: '1000' }, paired: { type: 'string', default: '200' }, steps: { type: 'string', default: '25' }, bootstrap: { type: 'string', default: '200' }, out: { type: 'string' } },
});
const samples = Number(flags.samples);
const paired = Math.min(samples, Number(flags.paired));
const steps = Number(flags.steps);
const recipes = positionals.length > 0 ? positionals.map((p) => resolve(p)) : DEFAULT_RECIPES;
const outPath = resolve(flags.out ?? join(root, 'bench', 'sd-quality.json'));
const seed = 2024;

/** The samples of one model: images, classifier features and labels, adherence per sample. */
interface Sampled {
  images: Float32Array;
  features: Float32Array;
  adherent: number[];
}

const iface = findDiffusionInterface(loadModelSync(UNET), UNET);
const guidance = guidanceFor(UNET);
const scheduler = makeScheduler(noiseScheduleFor(UNET, iface), { kind: 'ddim', steps });
const conditioning = await loadConditioning(iface, { prompts: TEST_PROMPTS }, UNET);
// 5 samples per test prompt, as the fixture's own figures are drawn (sample i: prompt ⌊i / 5⌋ mod 100).
const conditions = Array.from({ length: samples }, (_, i) => Math.floor(i / 5) % conditioning.count);
const digits = conditions.map((c) => conditioning.classOf![c]!);

async function sampleModel(path: string): Promise<Sampled> {
  const denoiser = await openDenoiser(loadModelSync(path), iface);
  try {
    const images = await sample(denoiser, { scheduler, conditions, conditioning, guidance, seed, batch: 100 });
    const { features, predicted } = await classify(images);
    return { images, features, adherent: predicted.map((p, i) => (p === digits[i] ? 1 : 0)) };
  } finally {
    await denoiser.release();
  }
}

const work = mkdtempSync(join(tmpdir(), 'qcompile-sd-quality-'));
const started = performance.now();
const rows: Record<string, unknown>[] = [];
try {
  const fp = await sampleModel(UNET);
  const fpFd = frechetToRealDigits(fp.features);
  rows.push({ name: 'fp', adherence: round(mean(fp.adherent), 4), fd: round(fpFd) });
  console.error(JSON.stringify(rows[0]));
  for (const recipe of recipes) {
    const name = basename(recipe, '.qrecipe');
    const out = join(work, name, 'unet', 'model.onnx');
    const compileStarted = performance.now();
    const compiled = cli([UNET, recipe, '--prompts', TRAIN_PROMPTS, '-o', out]);
    const compileSeconds = (performance.now() - compileStarted) / 1000;
    const q = await sampleModel(out);
    const fd = frechetToRealDigits(q.features);
    const fdDelta = bootstrapFdDelta(fp.features, q.features, Number(flags.bootstrap));
    const adherence = pairedDelta(q.adherent, fp.adherent);
    const psnr = psnrPerSample(fp.images, q.images, paired);
    // The guidance signal from qcompile eval (it needs no more than a few samples: it is measured on held-out inputs).
    cli(['eval', '--fp', UNET, '--quant', out, '--samples', '20', '--steps', String(steps), '--prompts', TEST_PROMPTS, '-o', join(work, name, 'report')]);
    const report = JSON.parse(readFileSync(join(work, name, 'report', 'report.json'), 'utf8')) as QualityReport;
    const row = {
      name,
      adherence: round(mean(q.adherent), 4),
      adherenceVsFp: adherence,
      fd: round(fd),
      fdVsFp: round(fd / fpFd, 3),
      fdDelta: { delta: round(fd - fpFd), twoSd: round(2 * fdDelta) },
      psnrVsFp: { mean: round(mean(psnr)), twoSe: round(2 * se(psnr)) },
      guidanceSignalSqnrDb: report.guidanceSignal?.sqnrDb,
      epsSqnrDb: report.epsByTimestep?.sqnrDb,
      layersQuantized: /layers quantized: (\d+)/.exec(compiled)?.[1],
      compileSeconds: round(compileSeconds, 1),
    };
    rows.push(row);
    console.error(JSON.stringify(row));
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}
const result = { model: 'sd-digits', samples, paired, steps, guidance, seed, prompts: 'prompts_test.tsv (5 samples per prompt)', seconds: round((performance.now() - started) / 1000, 1), rows };
writeFileSync(outPath, `${JSON.stringify(result, null, 2)}\n`);
console.log(JSON.stringify({ summary: rows.map((r) => `${String(r.name)} adherence ${String(r.adherence)} FD ${String(r.fd)}`).join(', '), ...result }));

/** Runs the CLI in its own process; returns what it printed (the compile summary), throwing on failure. */
function cli(args: string[]): string {
  const run = spawnSync(process.execPath, ['--import', 'tsx', join(root, 'src/cli/main.ts'), ...args], { cwd: root, encoding: 'utf8', maxBuffer: 64 << 20 });
  if (run.status !== 0) throw new Error(`qcompile ${args.join(' ')} failed (${run.status}): ${run.stderr}`);
  return run.stdout + run.stderr;
}

/** The standard deviation of FD(quant) − FD(FP) over paired bootstrap resamples (the same sample indices for both). */
function bootstrapFdDelta(a: Float32Array, b: Float32Array, resamples: number): number {
  const n = a.length / 64;
  const random = seededRandom(seed);
  const pick = (features: Float32Array, idx: Int32Array) => {
    const out = new Float32Array(idx.length * 64);
    idx.forEach((k, i) => out.set(features.subarray(k * 64, (k + 1) * 64), i * 64));
    return out;
  };
  const deltas: number[] = [];
  for (let r = 0; r < resamples; r++) {
    const idx = Int32Array.from({ length: n }, () => Math.floor(random() * n));
    deltas.push(frechetToRealDigits(pick(b, idx)) - frechetToRealDigits(pick(a, idx)));
  }
  return std(deltas);
}

/** Mean of a − b over paired samples, and twice the standard error of that mean. */
function pairedDelta(a: number[], b: number[]): { delta: number; twoSe: number } {
  const d = a.map((v, i) => v - b[i]!);
  return { delta: round(mean(d), 4), twoSe: round(2 * se(d), 4) };
}

function mean(values: number[]): number {
  return values.reduce((s, v) => s + v, 0) / values.length;
}

function std(values: number[]): number {
  const m = mean(values);
  return Math.sqrt(values.reduce((s, v) => s + (v - m) ** 2, 0) / Math.max(1, values.length - 1));
}

function se(values: number[]): number {
  return std(values) / Math.sqrt(values.length);
}

function round(value: number, digits = 2): number {
  return Number(value.toFixed(digits));
}
