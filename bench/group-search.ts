/**
 * Q-DiT group-size search on the synthetic DiT-XL/2 (112 searched layers: 28 × qkv, proj, fc1, fc2): time of
 * the layer-error proxy table and of the evolutionary search, and how they scale with the proxy's rows
 * (calibration size) and the population (GS_FULL=1: three configurations). Run: `npx tsx bench/group-search.ts`
 * (prints JSON as its last line).
 */
import { existsSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { discoverLayers } from '../src/ir/layers.js';
import { loadModelSync, saveModel } from '../src/ir/serde.js';
import { DIT_PRESETS, buildDit } from '../src/synth/dit.js';
import { CALIBRATION_BATCHES } from '../src/passes/collect-hessians.js';
import type { PassContext } from '../src/passes/pass.js';
import type { QuantPlan, WeightQuantSpec } from '../src/passes/quant-plan.js';
import { searchGroupSizes } from '../src/passes/search-group-sizes.js';
import { seededNormal } from '../src/random.js';
import { OrtExecutor } from '../src/runtime/ir-executor.js';

const dir = process.env.XL_DIR ?? join(tmpdir(), 'qcompile-xl');
if (!existsSync(join(dir, 'model.onnx'))) {
  mkdirSync(dir, { recursive: true });
  saveModel(buildDit(DIT_PRESETS['dit-xl-2']!, { seed: 0 }), join(dir, 'model.onnx'), { externalData: 'always', externalDataName: 'model.onnx.data' });
}
const model = loadModelSync(join(dir, 'model.onnx'));
const spec: WeightQuantSpec = { bits: 4, symmetric: false, granularity: { kind: 'auto', candidates: [32, 64, 128, 192, 288], minMeanGroupSize: 128 }, range: { kind: 'minmax' }, rounding: { kind: 'nearest' } };
const layers = discoverLayers(model).filter((l) => /^(attn|mlp)\./.test(l.role));
const normal = seededNormal(0);
const feeds = {
  x: { dtype: 'float32' as const, dims: [1, 4, 32, 32], data: Float32Array.from({ length: 4096 }, normal) },
  t: { dtype: 'int64' as const, dims: [1], data: BigInt64Array.from([500n]) },
  y: { dtype: 'int64' as const, dims: [1], data: BigInt64Array.from([7n]) },
};
const runs: Record<string, unknown>[] = [];
for (const [rows, population, epochs] of (process.env.GS_FULL ? [[32, 50, 10], [64, 50, 10], [32, 100, 10]] : [[32, 50, 10]]) as [number, number, number][]) {
  const plan: QuantPlan = new Map(layers.map((l) => [l.name, { layer: l.name, weight: spec }]));
  const times: Record<string, number> = {};
  let last = performance.now();
  const context: PassContext = {
    seed: 0,
    plan,
    executor: new OrtExecutor({ threads: 2 }),
    artifacts: new Map([[CALIBRATION_BATCHES, [feeds]]]),
    progress: (label, done, total) => {
      if (done === total) {
        times[label] = (performance.now() - last) / 1000;
        last = performance.now();
      }
    },
    log: () => {},
  };
  const started = performance.now();
  const result = await searchGroupSizes.run(model, { method: 'evolution', fitness: 'layer-error', population, topK: 10, mutations: population / 2, crossovers: population / 2, mutationRate: 0.1, epochs, rows }, context);
  runs.push({ rows, population, epochs, layers: layers.length, totalSeconds: (performance.now() - started) / 1000, phaseSeconds: times, statistics: result.statistics });
  process.stderr.write(`${JSON.stringify(runs[runs.length - 1])}\n`);
}
const first = runs[0] as { totalSeconds: number };
console.log(JSON.stringify({ summary: `112-layer search (rows 32, pop 50, 10 epochs): ${first.totalSeconds.toFixed(1)} s`, runs }));
