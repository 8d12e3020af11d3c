/**
 * Calibration overhead: the `calibrate` pass (observers on every quantizable layer's input: min/max, value
 * samples, per-channel |x| maxima, per timestep group) vs plain ONNX Runtime inference of the same batches,
 * both including session creation. Prints a JSON line: seconds of each and their ratio.
 * Run: npx tsx bench/calibration-overhead.ts [samples=1024] [batch=64]
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { discoverLayers } from '../src/quant/layers.js';
import { loadModelSync } from '../src/ir/serde.js';
import { calibrate } from '../src/passes/calibrate.js';
import type { TensorMap } from '../src/ir/executor.js';
import type { PassContext } from '../src/passes/pass.js';
import type { ActivationQuantSpec, QuantPlan } from '../src/quant/plan.js';
import { OrtExecutor } from '../src/runtime/ir-executor.js';
import { Artifacts, CALIBRATION_BATCHES } from '../src/passes/artifacts.js';
import { runPass } from '../src/passes/pass-manager.js';

const fixture = join(import.meta.dirname, '..', 'test', 'fixtures', 'dit-digits');
const samples = Number(process.argv[2] ?? 1024);
const batch = Number(process.argv[3] ?? 64);
const repeats = 5;

/** Noised real digits at uniform random t: calibration-like inputs without running the sampler. */
function batches(): TensorMap[] {
  const raw = readFileSync(join(fixture, '..', 'digits-classifier', 'digits16_f32.bin'));
  const digits = new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength));
  let state = 7;
  const uniform = () => ((state = (Math.imul(state, 1664525) + 1013904223) >>> 0) + 0.5) / 2 ** 32;
  const out: TensorMap[] = [];
  for (let start = 0; start < samples; start += batch) {
    const n = Math.min(batch, samples - start);
    const x = new Float32Array(n * 256);
    const t = new BigInt64Array(n);
    const y = new BigInt64Array(n);
    for (let i = 0; i < n; i++) {
      const step = Math.floor(uniform() * 1000);
      const signal = Math.sqrt(Math.exp(-step / 200));
      const d = (start + i) % 1797;
      for (let p = 0; p < 256; p++) x[i * 256 + p] = signal * digits[d * 256 + p]! + Math.sqrt(1 - signal * signal) * (uniform() * 2 - 1) * 1.7;
      t[i] = BigInt(step);
      y[i] = BigInt(d % 10);
    }
    out.push({ x: { dtype: 'float32', dims: [n, 1, 16, 16], data: x }, t: { dtype: 'int64', dims: [n], data: t }, y: { dtype: 'int64', dims: [n], data: y } });
  }
  return out;
}

const model = loadModelSync(join(fixture, 'model.onnx'));
const data = batches();
const executor = new OrtExecutor();

async function plain(): Promise<number> {
  const started = performance.now();
  const prepared = await executor.prepare(model, [model.graph.outputs[0]!.name]);
  for (const feeds of data) await prepared.run(feeds);
  await prepared.release();
  return (performance.now() - started) / 1000;
}

async function observed(input: ActivationQuantSpec): Promise<number> {
  const plan: QuantPlan = new Map(discoverLayers(model).filter((l) => l.opType !== 'Gather').map((l) => [l.name, { layer: l.name, input }]));
  const context: PassContext = { seed: 0, plan, executor, artifacts: new Artifacts().set(CALIBRATION_BATCHES, data), progress: () => {}, log: () => {} };
  const started = performance.now();
  await runPass(calibrate, model, { ema: 0.9, timesteps: 1000 }, context);
  return (performance.now() - started) / 1000;
}

const lp = { kind: 'lp', p: 2.4, gridSize: 100 } as const;
// Interleaved repeats, best of each: other load on the machine hits all three alike.
let plainSeconds = Infinity;
let staticSeconds = Infinity;
let perTimestepSeconds = Infinity;
for (let r = 0; r < repeats; r++) {
  plainSeconds = Math.min(plainSeconds, await plain());
  staticSeconds = Math.min(staticSeconds, await observed({ bits: 8, symmetric: false, mode: { kind: 'static' }, range: lp }));
  perTimestepSeconds = Math.min(perTimestepSeconds, await observed({ bits: 8, symmetric: false, mode: { kind: 'per-timestep', groups: 10 }, range: lp }));
}
const result = {
  samples,
  batch,
  observedLayers: discoverLayers(model).filter((l) => l.opType !== 'Gather').length,
  plainSeconds: +plainSeconds.toFixed(3),
  calibrateStaticSeconds: +staticSeconds.toFixed(3),
  calibratePerTimestepSeconds: +perTimestepSeconds.toFixed(3),
  ratioStatic: +(staticSeconds / plainSeconds).toFixed(3),
  ratioPerTimestep: +(perTimestepSeconds / plainSeconds).toFixed(3),
};
console.log(JSON.stringify({ summary: `observers ${result.ratioStatic}x (static), ${result.ratioPerTimestep}x (per-timestep) plain inference on ${samples} samples`, ...result }));
