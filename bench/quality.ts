/**
 * End-to-end image quality of recipes on dit-digits, as a ladder: compiles each recipe with the CLI, samples FP
 * and every quantized model from the same seeds (DDIM), and reports per rung the paired PSNR and label agreement
 * against FP (first `paired` samples), class accuracy, and the Fréchet distance of the digits classifier's
 * features to the real digits (all samples). Noise is measured, not guessed: each rung is compared with the one
 * before it on the same samples (paired differences ± 2 standard errors; for the FD, 2 standard deviations of
 * the difference over paired bootstrap resamples of the samples), and each FD carries its bootstrap σ.
 *
 * Run: npx tsx bench/quality.ts [--samples 1000] [--steps 50] [--paired 200] [--out FILE] RECIPE...
 *   W8A8:   npx tsx bench/quality.ts --out bench/quality-w8a8.json recipes/minmax-w8a8.qrecipe recipes/ptq4dm-w8a8.qrecipe
 *   ladder: npx tsx bench/quality.ts --out bench/quality-w4a8.json bench/ladder/*.qrecipe
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { loadModelSync } from '../src/ir/serde.js';
import { seededRandom } from '../src/random.js';
import { agreement, classify, DIT_DIGITS, frechetToRealDigits, psnrPerSample, sampleDigits } from './digits-quality.js';

const root = join(import.meta.dirname, '..');
const { values: flags, positionals: recipes } = parseArgs({
  allowPositionals: true,
  options: { samples: { type: 'string', default: '1000' }, steps: { type: 'string', default: '50' }, paired: { type: 'string', default: '200' }, out: { type: 'string' }, bootstrap: { type: 'string', default: '200' } },
});
const samples = Number(flags.samples);
const steps = Number(flags.steps);
const paired = Math.min(samples, Number(flags.paired));
const outPath = resolve(flags.out ?? join(root, 'bench', 'quality.json'));
const seed = 2024;

interface Rung {
  name: string;
  psnrVsFp: number | null;
  labelAgreementVsFp: number;
  classAccuracy: number;
  fd: number;
  fdBootstrapStd: number;
  fdVsFp: number;
  bytes: number;
  compileSeconds: number;
  sampleSeconds: number;
  /** This rung minus the one before it, with 2 standard errors of the paired difference. */
  vsPrevious?: { psnr: { delta: number; twoSe: number }; agreement: { delta: number; twoSe: number }; fd: { delta: number; twoSe: number }; worseBeyondNoise: string[] };
}

const work = mkdtempSync(join(tmpdir(), 'qcompile-quality-'));
const started = performance.now();
const rungs: Rung[] = [];
try {
  let reference: { images: Float32Array; predicted: number[] } | undefined;
  let previous: { psnr: number[]; agree: number[]; fd: number; features: Float32Array } | undefined;
  for (const recipe of [undefined, ...recipes]) {
    const name = recipe ? basename(recipe, '.qrecipe') : 'fp';
    let path = join(DIT_DIGITS, 'model.onnx');
    let compileSeconds = 0;
    if (recipe) {
      path = join(work, name, 'model.onnx');
      const compileStarted = performance.now();
      const run = spawnSync(process.execPath, ['--import', 'tsx', join(root, 'src/cli/main.ts'), join(DIT_DIGITS, 'model.onnx'), resolve(recipe), '-o', path], { cwd: root, encoding: 'utf8' });
      if (run.status !== 0) throw new Error(`compile ${recipe} failed: ${run.stderr}`);
      compileSeconds = (performance.now() - compileStarted) / 1000;
    }
    const sampleStarted = performance.now();
    const { images, labels } = await sampleDigits(loadModelSync(path), samples, steps, seed);
    const { features, predicted } = await classify(images);
    reference ??= { images, predicted };
    const psnr = psnrPerSample(reference.images, images, paired);
    const agree = Array.from({ length: paired }, (_, i) => (reference!.predicted[i] === predicted[i] ? 1 : 0));
    const fd = frechetToRealDigits(features);
    const [fds, previousFds] = bootstrapFds([features, previous?.features ?? features], Number(flags.bootstrap));
    const fdStd = std(fds!);
    const rung: Rung = {
      name,
      psnrVsFp: recipe ? round(mean(psnr)) : null,
      labelAgreementVsFp: round(mean(agree), 4),
      classAccuracy: round(agreement(labels, predicted), 4),
      fd: round(fd),
      fdBootstrapStd: round(fdStd),
      fdVsFp: rungs.length ? round(fd / rungs[0]!.fd, 3) : 1,
      bytes: modelBytes(path),
      compileSeconds: round(compileSeconds, 1),
      sampleSeconds: round((performance.now() - sampleStarted) / 1000, 1),
    };
    if (previous && rungs.length >= 2) {
      const vs = {
        psnr: pairedDelta(psnr, previous.psnr),
        agreement: pairedDelta(agree, previous.agree),
        fd: { delta: round(fd - previous.fd), twoSe: round(2 * std(fds!.map((v, i) => v - previousFds![i]!))) },
        worseBeyondNoise: [] as string[],
      };
      if (vs.psnr.delta < -vs.psnr.twoSe) vs.worseBeyondNoise.push('psnr');
      if (vs.agreement.delta < -vs.agreement.twoSe) vs.worseBeyondNoise.push('agreement');
      if (vs.fd.delta > vs.fd.twoSe) vs.worseBeyondNoise.push('fd');
      rung.vsPrevious = vs;
    }
    previous = { psnr, agree, fd, features };
    rungs.push(rung);
    console.error(JSON.stringify(rung));
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}
const result = { samples, steps, paired, seed, seconds: round((performance.now() - started) / 1000, 1), rungs };
writeFileSync(outPath, `${JSON.stringify(result, null, 2)}\n`);
console.error(table(rungs));
console.log(JSON.stringify({ summary: rungs.map((r) => `${r.name} FD ${r.fd}`).join(', '), ...result }));

/** Bytes of a model and its external data (everything in its folder but the JSON sidecars). */
function modelBytes(path: string): number {
  if (path.startsWith(DIT_DIGITS)) return statSync(path).size;
  return readdirSync(dirname(path)).filter((f) => !f.endsWith('.json')).reduce((sum, f) => sum + statSync(join(dirname(path), f)).size, 0);
}

function mean(values: number[]): number {
  return values.reduce((a, b) => a + b, 0) / values.length;
}

function round(value: number, digits = 2): number {
  return Number(value.toFixed(digits));
}

/** Mean of a − b over paired samples, and twice the standard error of that mean. */
function pairedDelta(a: number[], b: number[]): { delta: number; twoSe: number } {
  const d = a.map((v, i) => v - b[i]!);
  const m = mean(d);
  const variance = d.reduce((s, v) => s + (v - m) ** 2, 0) / Math.max(1, d.length - 1);
  return { delta: round(m, 4), twoSe: round(2 * Math.sqrt(variance / d.length), 4) };
}

function std(values: number[]): number {
  const m = mean(values);
  return Math.sqrt(values.reduce((s, v) => s + (v - m) ** 2, 0) / (values.length - 1));
}

/** FDs of bootstrap resamples (with replacement) of each feature set, the same sample indices for all sets (so differences are paired). */
function bootstrapFds(sets: Float32Array[], resamples: number): number[][] {
  const n = sets[0]!.length / 64;
  const random = seededRandom(seed);
  const fds = sets.map(() => [] as number[]);
  const resampled = new Float32Array(n * 64);
  for (let b = 0; b < resamples; b++) {
    const picks = Array.from({ length: n }, () => Math.floor(random() * n));
    sets.forEach((features, s) => {
      picks.forEach((j, i) => resampled.set(features.subarray(j * 64, (j + 1) * 64), i * 64));
      fds[s]!.push(frechetToRealDigits(resampled));
    });
  }
  return fds;
}

function table(rows: Rung[]): string {
  const lines = ['| rung | paired PSNR vs FP | label agreement vs FP | class accuracy | FD (± bootstrap σ) | vs previous (Δ ± 2SE) |', '| --- | --- | --- | --- | --- | --- |'];
  for (const r of rows) {
    const vs = r.vsPrevious ? `PSNR ${r.vsPrevious.psnr.delta} ± ${r.vsPrevious.psnr.twoSe}, agree ${r.vsPrevious.agreement.delta} ± ${r.vsPrevious.agreement.twoSe}, FD ${r.vsPrevious.fd.delta} ± ${r.vsPrevious.fd.twoSe}` : '';
    lines.push(`| ${r.name} | ${r.psnrVsFp ?? '–'} | ${(r.labelAgreementVsFp * 100).toFixed(1)}% | ${(r.classAccuracy * 100).toFixed(1)}% | ${r.fd} ± ${r.fdBootstrapStd} (${r.fdVsFp}×) | ${vs} |`);
  }
  return lines.join('\n');
}
