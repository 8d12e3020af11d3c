/**
 * Does a cheap fitness rank group-size allocations like image quality? On dit-digits (W4, candidates
 * 16–128, mean ≥ 32), a set of allocations — every uniform one and seeded random feasible ones — is scored by
 * each proxy (on calibration data: eps MSE; eps error as the DDIM step feels it; layer-error) and by the
 * expensive metric (paired PSNR of DDIM samples against FP, RTN weights + dynamic activations per token in the weight's groups).
 * Prints the Spearman rank correlation of each proxy with the image metric.
 * Run: npx tsx bench/proxy-ranking.ts [allocations=12] [samples=64] [steps=20]
 */
import { join } from 'node:path';
import type { Model } from '../src/ir/core.js';
import { discoverLayers } from '../src/quant/layers.js';
import { loadModelSync } from '../src/ir/serde.js';
import type { TensorMap } from '../src/ir/executor.js';
import type { PassContext } from '../src/passes/pass.js';
import type { QuantPlan, WeightQuantSpec } from '../src/quant/plan.js';
import { quantizeActivations } from '../src/passes/quantize-activations.js';
import { quantizeWeights } from '../src/passes/quantize-weights.js';
import { layerErrorTable } from '../src/passes/search-group-sizes.js';
import { seededRandom } from '../src/random.js';
import { betasOf, cumulativeAlphas } from '../src/runtime/diffusion/schedule-math.js';
import { noiseScheduleFromSidecar } from '../src/runtime/diffusion/scheduler-config.js';
import { makeScheduler } from '../src/runtime/diffusion/scheduler.js';
import { readSidecar } from '../src/runtime/diffusion/sidecar.js';
import { OrtExecutor } from '../src/runtime/ir-executor.js';
import { DIT_DIGITS, ditCalibrationSet, ditDigits, pairedPsnr, sampleDigits } from './digits-quality.js';
import { Artifacts, CALIBRATION_BATCHES } from '../src/passes/artifacts.js';
import { runPass } from '../src/passes/pass-manager.js';

const count = Number(process.argv[2] ?? 12);
const samples = Number(process.argv[3] ?? 64);
const steps = Number(process.argv[4] ?? 20);
const candidates = [16, 32, 64, 128];
const budget = 32;
const fpPath = join(DIT_DIGITS, 'model.onnx');
const fp = loadModelSync(fpPath);
const layers = discoverLayers(fp).filter((l) => /^(attn|mlp)\.|^adaln$/.test(l.role));
const schedule = noiseScheduleFromSidecar(readSidecar(join(DIT_DIGITS, 'schedule.json')));
const alphasCumprod = cumulativeAlphas(betasOf({ kind: schedule.betaSchedule!, T: schedule.numTrainTimesteps, betaStart: schedule.betaStart!, betaEnd: schedule.betaEnd! }));
const executor = new OrtExecutor();

const { output: { name: output }, timestep: { name: timestep } } = ditDigits(fp, 50).iface;
const calibration = await ditCalibrationSet(fp, 50, { samples: 64, batch: 32, strategy: { kind: 'random-distinct' }, seed: 0 });

const weightAt = (size: number): WeightQuantSpec => ({ bits: 4, symmetric: false, granularity: { kind: 'group', size }, range: { kind: 'minmax' }, rounding: { kind: 'nearest' } });
const context = (plan: QuantPlan): PassContext => ({ seed: 0, plan, executor, artifacts: new Artifacts().set(CALIBRATION_BATCHES, calibration.batches), progress: () => {}, log: () => {} });

async function quantized(allocation: number[]): Promise<Model> {
  const model = loadModelSync(fpPath);
  const plan: QuantPlan = new Map(layers.map((l, i) => [l.name, { layer: l.name, weight: weightAt(allocation[i]!), input: { bits: 8, symmetric: true, mode: { kind: 'dynamic', granularity: 'per-token-group', groupSize: 'weight' }, range: { kind: 'minmax' } } }]));
  await runPass(quantizeWeights, model, {}, context(plan));
  await runPass(quantizeActivations, model, { timesteps: 1000 }, context(plan));
  return model;
}

async function epsOf(model: Model, batches: TensorMap[]): Promise<Float32Array[]> {
  const prepared = await executor.prepare(model, [output]);
  try {
    const out: Float32Array[] = [];
    for (const feeds of batches) out.push((await prepared.run(feeds))[output]!.data as Float32Array);
    return out;
  } finally {
    await prepared.release();
  }
}

// The squared coefficient with which an eps error at t moves the DDIM (η = 0) state to the next step t':
// x_t' = √ᾱ'·x̂0 + √(1−ᾱ')·ε̂ with x̂0 = (x_t − √(1−ᾱ)·ε̂)/√ᾱ.
const grid = makeScheduler(schedule, { kind: 'ddim', steps: 50 }).timesteps;
function stepWeight(t: number): number {
  const ab = alphasCumprod[t]!;
  const next = grid[grid.indexOf(t) + 1];
  const abNext = next === undefined ? 1 : alphasCumprod[next]!;
  return (Math.sqrt(1 - abNext) - Math.sqrt(abNext / ab) * Math.sqrt(1 - ab)) ** 2;
}

const reference = await epsOf(fp, calibration.batches);
const perSample = 256;
function proxies(eps: Float32Array[]): { epsMse: number; stepWeighted: number } {
  let mse = 0;
  let weighted = 0;
  let n = 0;
  eps.forEach((batch, b) => {
    const t = calibration.batches[b]![timestep]!.data as BigInt64Array;
    for (let s = 0; s < t.length; s++) {
      let e = 0;
      for (let i = s * perSample; i < (s + 1) * perSample; i++) e += (batch[i]! - reference[b]![i]!) ** 2;
      mse += e;
      weighted += e * stepWeight(Number(t[s]));
      n += perSample;
    }
  });
  return { epsMse: mse / n, stepWeighted: weighted / n };
}

// Allocations: every uniform one that meets the budget, then seeded random feasible ones.
const random = seededRandom(7);
const allocations: number[][] = candidates.filter((g) => g >= budget).map((g) => layers.map(() => g));
while (allocations.length < count) {
  const a = layers.map(() => candidates[Math.floor(random() * (random() < 0.7 ? 2 : candidates.length))]!);
  const mean = a.reduce((x, y) => x + y, 0) / a.length;
  if (mean >= budget && mean <= budget * 1.25) allocations.push(a); // near the budget, where a search ends up
}
const specs = layers.map(() => candidates.map(weightAt));
const table = await layerErrorTable(fp, layers, specs, calibration.batches[0]!, context(new Map()), 256);

const { images: fpImages } = await sampleDigits(fp, samples, steps, 2024);
const rows: { allocation: string; psnr: number; epsMse: number; stepWeighted: number; layerError: number; epsMseOneBatch: number }[] = [];
for (const allocation of allocations) {
  const model = await quantized(allocation);
  const eps = await epsOf(model, calibration.batches);
  const { images } = await sampleDigits(model, samples, steps, 2024);
  const layerError = allocation.reduce((sum, g, i) => sum + table[i]![candidates.indexOf(g)]!, 0);
  const oneBatch = proxies([eps[0]!]).epsMse;
  rows.push({ allocation: allocation.join(','), psnr: +pairedPsnr(fpImages, images, samples).toFixed(3), ...proxies(eps), layerError, epsMseOneBatch: oneBatch });
  console.error(JSON.stringify(rows.at(-1)));
}

function ranks(values: number[]): number[] {
  const order = values.map((v, i) => [v, i] as const).sort((a, b) => a[0] - b[0]);
  const r = new Array<number>(values.length);
  order.forEach(([, i], k) => (r[i] = k));
  return r;
}
function spearman(a: number[], b: number[]): number {
  const ra = ranks(a);
  const rb = ranks(b);
  const n = a.length;
  const d2 = ra.reduce((s, r, i) => s + (r - rb[i]!) ** 2, 0);
  return 1 - (6 * d2) / (n * (n * n - 1));
}
// Lower proxy should mean higher PSNR: correlate proxies with −PSNR.
const negPsnr = rows.map((r) => -r.psnr);
const correlation = Object.fromEntries((['epsMse', 'epsMseOneBatch', 'stepWeighted', 'layerError'] as const).map((k) => [k, +spearman(rows.map((r) => r[k]), negPsnr).toFixed(3)]));
console.log(JSON.stringify({ summary: `Spearman ρ with image PSNR: ${JSON.stringify(correlation)}`, samples, steps, correlation, rows }));
