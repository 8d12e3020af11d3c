/**
 * End-to-end W8A8 image quality on dit-digits: compiles `minmax-w8a8` and `ptq4dm-w8a8` with the CLI, samples
 * FP and quantized models from the same seeds (DDIM), and reports paired PSNR and label agreement (first
 * `paired` samples) and the Fréchet distance of the digits classifier's features to the real digits (all).
 * Run: npx tsx bench/quality-w8a8.ts [samples=1000] [steps=50] [paired=200] [out=bench/quality-w8a8.json]
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadModelSync } from '../src/ir/serde.js';
import { agreement, classify, DIT_DIGITS, frechetToRealDigits, pairedPsnr, sampleDigits } from '../test/e2e/quality.js';

const root = join(import.meta.dirname, '..');
const samples = Number(process.argv[2] ?? 1000);
const steps = Number(process.argv[3] ?? 50);
const paired = Math.min(samples, Number(process.argv[4] ?? 200));
const outPath = process.argv[5] ?? join(root, 'bench', 'quality-w8a8.json');
const seed = 2024;

const work = mkdtempSync(join(tmpdir(), 'qcompile-quality-'));
const started = performance.now();
const result: Record<string, unknown> = { samples, steps, paired, seed };
try {
  const models: [string, string][] = [['fp', join(DIT_DIGITS, 'model.onnx')]];
  for (const recipe of ['minmax-w8a8', 'ptq4dm-w8a8']) {
    const out = join(work, `${recipe}.onnx`);
    const compileStarted = performance.now();
    const run = spawnSync(process.execPath, ['--import', 'tsx', join(root, 'src/cli/main.ts'), join(DIT_DIGITS, 'model.onnx'), join(root, 'recipes', `${recipe}.qrecipe`), '-o', out], { cwd: root, encoding: 'utf8' });
    if (run.status !== 0) throw new Error(`compile ${recipe} failed: ${run.stderr}`);
    console.error(`${recipe}: compiled in ${((performance.now() - compileStarted) / 1000).toFixed(1)} s`);
    models.push([recipe, out]);
  }
  let reference: { images: Float32Array; predicted: number[] } | undefined;
  for (const [name, path] of models) {
    const sampleStarted = performance.now();
    const { images, labels } = await sampleDigits(loadModelSync(path), samples, steps, seed);
    const { features, predicted } = await classify(images);
    reference ??= { images, predicted };
    result[name] = {
      psnrVsFp: name === 'fp' ? null : +pairedPsnr(reference.images, images, paired).toFixed(2),
      labelAgreementVsFp: +agreement(reference.predicted, predicted, paired).toFixed(4),
      classAccuracy: +agreement(labels, predicted).toFixed(4),
      fd: +frechetToRealDigits(features).toFixed(2),
      bytes: readFileSync(path).length,
      sampleSeconds: +((performance.now() - sampleStarted) / 1000).toFixed(1),
    };
    console.error(name, result[name]);
  }
  const fpFd = (result.fp as { fd: number }).fd;
  for (const name of ['minmax-w8a8', 'ptq4dm-w8a8']) (result[name] as Record<string, number>).fdVsFp = +((result[name] as { fd: number }).fd / fpFd).toFixed(3);
} finally {
  rmSync(work, { recursive: true, force: true });
}
result.seconds = +((performance.now() - started) / 1000).toFixed(1);
writeFileSync(outPath, `${JSON.stringify(result, null, 2)}\n`);
console.log(JSON.stringify(result));
