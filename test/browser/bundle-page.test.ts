import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runBundle } from '../../src/runtime/browser/bundle-runner.js';
import { launchChromium, ortWebDistDir } from '../../src/runtime/browser/chromium.js';
import { DIT_DIGITS, maxAbs, skipBrowser } from './browser-env.js';

const PAGE_DIR = join(import.meta.dirname, '..', '..', 'src', 'backends', 'webgpu', 'page');
const CLASSIFIER = join(import.meta.dirname, '..', 'fixtures', 'digits-classifier', 'classifier.onnx');
const ORT_FILES = ['ort.webgpu.min.mjs', 'ort-wasm-simd-threaded.asyncify.mjs', 'ort-wasm-simd-threaded.asyncify.wasm'];
/** DDIM steps of the check: ~22 s per batch-10 step on SwiftShader, so 2 by default (QCOMPILE_BUNDLE_STEPS=20 runs the page default). */
const STEPS = Number(process.env.QCOMPILE_BUNDLE_STEPS ?? 2);
/** Page time budget: session + a first (shader-compiling) step + STEPS more, with room for a loaded machine. */
const PAGE_TIMEOUT_MS = 120_000 + STEPS * 45_000;

/** A bundle folder as the bundle writer lays it out: FP fixture model, manifest, page files, ORT web files. */
function assembleBundle(): string {
  const dir = mkdtempSync(join(tmpdir(), 'qcompile-bundle-'));
  copyFileSync(join(DIT_DIGITS, 'model.onnx'), join(dir, 'model.onnx'));
  for (const file of readdirSync(PAGE_DIR)) copyFileSync(join(PAGE_DIR, file), join(dir, file));
  mkdirSync(join(dir, 'ort'));
  for (const file of ORT_FILES) copyFileSync(join(ortWebDistDir(), file), join(dir, 'ort', file));
  const schedule = JSON.parse(readFileSync(join(DIT_DIGITS, 'schedule.json'), 'utf8')) as Record<string, unknown>;
  const manifest = {
    model: 'model.onnx',
    inputs: [
      { name: 'x', elemType: 1, shape: ['batch', 1, 16, 16] },
      { name: 't', elemType: 7, shape: ['batch'] },
      { name: 'y', elemType: 7, shape: ['batch'] },
    ],
    outputs: ['eps'],
    schedule,
    classes: 10,
    quantization: { note: 'FP32 fixture, not quantized' },
  };
  writeFileSync(join(dir, 'manifest.json'), JSON.stringify(manifest));
  return dir;
}

describe.skipIf(skipBrowser)('WebGPU bundle page in headless chromium', () => {
  let browser: Browser;
  let bundle: string;
  beforeAll(async () => {
    browser = await launchChromium();
    bundle = assembleBundle();
  });
  afterAll(async () => {
    await browser?.close();
    if (bundle) rmSync(bundle, { recursive: true, force: true });
  });

  it(`one step matches onnxruntime-node; DDIM-${STEPS} draws digits the classifier recognizes`, async () => {
    const result = await runBundle(bundle, { steps: STEPS, count: 10, seed: 0, browser, timeoutMs: PAGE_TIMEOUT_MS });
    expect(result.adapterInfo.architecture).toBe('swiftshader');
    const { oneStep, ddim } = result;
    const n = oneStep.classes.length;
    expect(n).toBe(10);

    const dit = await ort.InferenceSession.create(join(DIT_DIGITS, 'model.onnx'));
    const eps = (await dit.run({
      x: new ort.Tensor('float32', Float32Array.from(oneStep.x), [n, 1, 16, 16]),
      t: new ort.Tensor('int64', BigInt64Array.from(oneStep.classes, () => BigInt(oneStep.t)), [n]),
      y: new ort.Tensor('int64', BigInt64Array.from(oneStep.classes, BigInt), [n]),
    })).eps!.data as Float32Array;
    await dit.release();
    const epsError = maxAbs(Float32Array.from(oneStep.eps), eps);
    expect(epsError).toBeLessThan(1e-3);

    expect(ddim.timesteps[0]).toBe(1000 - 1000 / STEPS);
    expect(ddim.timesteps.at(-1)).toBe(0);
    expect(Math.min(...ddim.images)).toBeGreaterThanOrEqual(-1);
    expect(Math.max(...ddim.images)).toBeLessThanOrEqual(1);
    const classifier = await ort.InferenceSession.create(CLASSIFIER);
    const logits = (await classifier.run({ x: new ort.Tensor('float32', Float32Array.from(ddim.images), ddim.shape) })).logits!.data as Float32Array;
    await classifier.release();
    const labels = ddim.classes.map((_, i) => {
      const row = Array.from(logits.subarray(i * 10, i * 10 + 10));
      return row.indexOf(Math.max(...row));
    });
    const correct = labels.filter((label, i) => label === ddim.classes[i]).length;
    const mean = (values: number[]): number => values.reduce((a, b) => a + b, 0) / values.length;
    console.log(`bundle: one-step max|Δeps| vs onnxruntime-node ${epsError.toExponential(2)}; DDIM-${STEPS} labels ${labels.join('')} for ${ddim.classes.join('')} (${correct}/10); SwiftShader: create ${result.createMs.toFixed(0)} ms, one step ${oneStep.ms.toFixed(0)} ms, DDIM step mean ${mean(ddim.stepMs).toFixed(0)} ms`);
    expect(correct).toBeGreaterThanOrEqual(7);
  }, PAGE_TIMEOUT_MS + 30_000);
});
