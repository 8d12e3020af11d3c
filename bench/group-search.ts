/**
 * Q-DiT group-size search on the synthetic DiT-XL/2 (112 searched layers: 28 × qkv, proj, fc1, fc2, candidates
 * 32–288, mean ≥ 128): the whole `search-group-sizes` pass with the layer-error proxy (rows 32, population 50,
 * 10 epochs), split into its phases, and how it scales — with the calibration size (proxy rows, timed on the
 * first four blocks) and with the population (the evolutionary search over the finished table).
 * Run: `npx tsx bench/group-search.ts` (prints JSON as its last line).
 */
import { existsSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { discoverLayers } from '../src/quant/layers.js';
import { loadModelSync, saveModel } from '../src/ir/serde.js';
import { DIT_PRESETS, buildDit } from '../src/synth/dit.js';
import { evolutionarySearch, meanGroupSizeBudget, type SearchSpace } from '../src/passes/group-search.js';
import type { PassContext } from '../src/passes/pass.js';
import type { QuantPlan, WeightQuantSpec } from '../src/quant/plan.js';
import { layerErrorTable, searchGroupSizes } from '../src/passes/search-group-sizes.js';
import { seededNormal } from '../src/random.js';
import { OrtExecutor } from '../src/runtime/ir-executor.js';
import { Artifacts, CALIBRATION_BATCHES } from '../src/passes/artifacts.js';
import { runPass } from '../src/passes/pass-manager.js';

const dir = process.env.XL_DIR ?? join(tmpdir(), 'qcompile-xl');
if (!existsSync(join(dir, 'model.onnx'))) {
  mkdirSync(dir, { recursive: true });
  saveModel(buildDit(DIT_PRESETS['dit-xl-2']!, { seed: 0 }), join(dir, 'model.onnx'), { externalData: 'always', externalDataName: 'model.onnx.data' });
}
const model = loadModelSync(join(dir, 'model.onnx'));
const candidates = [32, 64, 128, 192, 288];
const spec: WeightQuantSpec = { bits: 4, symmetric: false, granularity: { kind: 'auto', candidates, budget: { kind: 'mean-group-size', min: 128 } }, range: { kind: 'minmax' }, rounding: { kind: 'nearest' } };
const layers = discoverLayers(model).filter((l) => /^(attn|mlp)\./.test(l.role));
const normal = seededNormal(0);
const feeds = {
  x: { dtype: 'float32' as const, dims: [1, 4, 32, 32], data: Float32Array.from({ length: 4096 }, normal) },
  t: { dtype: 'int64' as const, dims: [1], data: BigInt64Array.from([500n]) },
  y: { dtype: 'int64' as const, dims: [1], data: BigInt64Array.from([7n]) },
};
const executor = new OrtExecutor({ threads: 2 });
const seconds = (since: number) => +((performance.now() - since) / 1000).toFixed(2);

function context(plan: QuantPlan, phases: Record<string, number>): PassContext {
  let last = performance.now();
  return {
    seed: 0,
    plan,
    executor,
    artifacts: new Artifacts().set(CALIBRATION_BATCHES, [feeds]),
    progress: (label, done, total) => {
      if (done === total) {
        phases[label] = seconds(last);
        last = performance.now();
      }
    },
    log: () => {},
  };
}

// 1. The whole pass, as `qcompile` runs it.
const phases: Record<string, number> = {};
const plan: QuantPlan = new Map(layers.map((l) => [l.name, { layer: l.name, weight: spec }]));
let started = performance.now();
const pass = await runPass(searchGroupSizes, model, { method: 'evolution', fitness: 'layer-error', population: 50, topK: 10, mutations: 25, crossovers: 25, mutationRate: 0.1, epochs: 10, rows: 32, samples: 64 }, context(plan, phases));
const full = { rows: 32, population: 50, epochs: 10, layers: layers.length, totalSeconds: seconds(started), phaseSeconds: phases, statistics: pass.statistics };
process.stderr.write(`${JSON.stringify(full)}\n`);

// 2. Calibration size: the proxy table of the first four blocks (16 layers) at 32, 128 and 512 rows.
const firstBlocks = layers.filter((l) => (l.block ?? 99) < 4);
const specs = firstBlocks.map((l) => candidates.filter((g) => l.inChannels % g === 0).map((size): WeightQuantSpec => ({ ...spec, granularity: { kind: 'group', size } })));
const byRows: { rows: number; seconds: number }[] = [];
for (const rows of [32, 128, 512]) {
  started = performance.now();
  await layerErrorTable(model, firstBlocks, specs, feeds, context(plan, {}), rows);
  byRows.push({ rows, seconds: seconds(started) });
}

// 3. Population: the evolutionary search alone over a 112-gene table (the first four blocks' measured terms,
// repeated seven times): the search is a sum over a table, so its cost is the population × epochs it scores.
const table = await layerErrorTable(model, firstBlocks, specs, feeds, context(plan, {}), 32);
const tiled = Array.from({ length: 7 }, () => table).flat();
const space: SearchSpace = { layers: tiled.map((_, i) => `gene${i}`), candidates: Array.from({ length: 7 }, () => specs.map((s) => s.map((x) => (x.granularity as { size: number }).size))).flat() };
const fitness = async (allocation: number[]) => allocation.reduce((sum, size, i) => sum + tiled[i]![space.candidates[i]!.indexOf(size)]!, 0);
const byPopulation: { population: number; epochs: number; seconds: number; evaluations: number; bestScore: number }[] = [];
for (const population of [25, 50, 100, 200]) {
  started = performance.now();
  const result = await evolutionarySearch(space, meanGroupSizeBudget(128), { population, topK: Math.max(2, population / 5), mutations: population / 2, crossovers: population / 2, mutationRate: 0.1, epochs: 10, seed: 0 }, fitness);
  byPopulation.push({ population, epochs: 10, seconds: seconds(started), evaluations: result.evaluations, bestScore: +result.bestScore.toPrecision(6) });
}
console.log(
  JSON.stringify({
    summary: `112-layer search (rows 32, pop 50, 10 epochs): ${full.totalSeconds.toFixed(0)} s (layer inputs + proxy table ${phases['proxy table']} s, search ${phases['search epochs']} s); table of 16 layers at 32/128/512 rows: ${byRows.map((r) => r.seconds).join('/')} s`,
    full,
    byRows,
    byPopulation,
  }),
);
