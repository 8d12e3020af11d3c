/**
 * The layer-error proxy of search-group-sizes on dit-digits: its table from the strided input rows picked in the
 * ONNX Runtime session equals the table from the full inputs fetched and strided on the host (as it was before
 * the rows were picked in the session), only those rows leave the session, and the model leaves unchanged. Also
 * the eps-error search's projected-cost line after its first evaluation.
 */
import { describe, expect, it } from 'vitest';
import type { Model } from '../../src/ir/core.js';
import type { HostTensor, ModelExecutor, TensorMap } from '../../src/ir/executor.js';
import { loadModelSync } from '../../src/ir/serde.js';
import { layersOf } from '../../src/quant/identity.js';
import { discoverLayers, type Layer } from '../../src/quant/layers.js';
import type { QuantPlan, WeightQuantSpec } from '../../src/quant/plan.js';
import { Artifacts, CALIBRATION_BATCHES } from '../../src/passes/artifacts.js';
import type { PassContext } from '../../src/passes/pass.js';
import { runPass } from '../../src/passes/pass-manager.js';
import { layerErrorTable, searchGroupSizes } from '../../src/passes/search-group-sizes.js';
import { OrtExecutor } from '../../src/runtime/ir-executor.js';
import { calibrationBatches } from '../../bench/calibration-batches.js';
import { DIT_DIGITS } from './fixture.js';

const ort = new OrtExecutor({ optimization: 'basic' });
const feeds = calibrationBatches(8, 8)[0]!;

function context(executor: ModelExecutor, plan: QuantPlan = new Map(), log: (message: string) => void = () => {}): PassContext {
  return { seed: 3, plan, executor, artifacts: new Artifacts().set(CALIBRATION_BATCHES, calibrationBatches(32, 8)), progress: () => {}, log };
}

function spec(size: number): WeightQuantSpec {
  return { bits: 4, symmetric: false, granularity: { kind: 'group', size }, range: { kind: 'minmax' }, rounding: { kind: 'nearest' } };
}

/** Every layer input in full, fetched out of ORT. */
async function fullInputs(model: Model, layers: Layer[]): Promise<TensorMap> {
  const prepared = await ort.prepare(model, [...new Set(layers.map((l) => l.node.input(0).name))]);
  try {
    return await prepared.run(feeds);
  } finally {
    await prepared.release();
  }
}

/** Rows 0, s, 2s, … of a channels-last input, s = max(1, ⌊rows / maxRows⌋): the proxy's rows, on the host. */
function stridedRows(x: HostTensor, K: number, maxRows: number): HostTensor {
  const all = x.data as Float32Array;
  const total = all.length / K;
  const stride = Math.max(1, Math.floor(total / maxRows));
  const count = Math.ceil(total / stride);
  const data = new Float32Array(count * K);
  for (let r = 0; r < count; r++) data.set(all.subarray(r * stride * K, (r * stride + 1) * K), r * K);
  return { dtype: 'float32', dims: [count, K], data };
}

/**
 * ORT, recording what the sessions hand back; with `rows`, the proxy's scorer (the session fetching `error`)
 * is fed those instead of the rows the proxy picked, one per layer in order.
 */
function recordingExecutor(rows?: HostTensor[]): ModelExecutor & { fetched: HostTensor[]; scored: HostTensor[]; pickOps: Set<string> } {
  const fetched: HostTensor[] = [];
  const scored: HostTensor[] = [];
  const pickOps = new Set<string>();
  return {
    fetched,
    scored,
    pickOps,
    async prepare(model, fetch) {
      for (const node of model.graph.nodes) if (node.outputs.some((v) => fetch.includes(v.name))) pickOps.add(node.opType);
      const prepared = await ort.prepare(model, fetch);
      const scorer = fetch.length === 1 && fetch[0] === 'error';
      return {
        release: () => prepared.release(),
        async run(inputs) {
          if (scorer) scored.push(inputs.x!);
          const outputs = await prepared.run(scorer && rows ? { ...inputs, x: rows[scored.length - 1]! } : inputs);
          if (!scorer) fetched.push(...Object.values(outputs));
          return outputs;
        },
      };
    },
  };
}

describe('layer-error table on dit-digits', () => {
  const model = loadModelSync(`${DIT_DIGITS}/model.onnx`);
  const layers = layersOf(model).filter((l) => l.opType === 'MatMul' || l.opType === 'Gemm');
  const specs = layers.map((l) => [16, 32, 64].filter((g) => l.inChannels % g === 0).map(spec));

  // The latent declared without a shape: no row count is inferred, so the session computes each stride itself.
  const shapeless = model.clone();
  const latent = shapeless.graph.inputs.find((v) => v.type?.shape?.length === 4)!;
  latent.type = { elemType: latent.type!.elemType };

  // 256 rows of the 512 token rows (stride 2); 100 (stride 5: 103 rows); adaLN reads 8 rows (stride 1).
  it.each([
    [256, 'known row counts (a strided Slice)', model, 'Slice'],
    [100, 'known row counts (a strided Slice)', model, 'Slice'],
    [100, 'row counts the session computes (Gather of a Range)', shapeless, 'Gather'],
  ] as const)('from the rows picked in the session equals the table from the full inputs (rows %i, %s)', async (maxRows, _how, model, pick) => {
    const nodes = model.graph.nodes.length;
    const initializers = model.graph.initializers.size;
    const session = recordingExecutor();
    const table = await layerErrorTable(model, layers, specs, feeds, context(session), maxRows);
    expect([...session.pickOps].filter((op) => op !== 'MatMul' && op !== 'ReduceSumSquare')).toEqual([pick]);
    expect(model.graph.nodes.length).toBe(nodes);
    expect(model.graph.initializers.size).toBe(initializers);

    const full = await fullInputs(model, layers);
    const reference = layers.map((l) => stridedRows(full[l.node.input(0).name]!, l.inChannels, maxRows));
    // The rows scored are exactly the host's strided rows of the full inputs, and only they left the model's session.
    expect(session.scored.map((x) => x.dims)).toEqual(reference.map((x) => x.dims));
    session.scored.forEach((x, i) => expect(x.data).toEqual(reference[i]!.data));
    const distinct = new Map(layers.map((l, i) => [l.node.input(0).name, reference[i]!]));
    const shapes = (xs: HostTensor[]) => xs.map((x) => x.dims.join('x')).sort();
    expect(shapes(session.fetched)).toEqual(shapes([...distinct.values()]));

    const fromFull = await layerErrorTable(model, layers, specs, feeds, context(recordingExecutor(reference)), maxRows);
    expect(table).toEqual(fromFull);
    expect(table.map((t) => t.length)).toEqual(specs.map((s) => s.length));
    expect(table.flat().every((e) => Number.isFinite(e) && e > 0)).toBe(true);
  });
});

describe('search-group-sizes cost line', () => {
  const small = { method: 'evolution' as const, rows: 256, samples: 8, population: 2, topK: 2, mutations: 1, crossovers: 1, mutationRate: 0.2, epochs: 1, finalists: 1 };

  function autoPlan(model: Model): QuantPlan {
    const auto: WeightQuantSpec = { ...spec(64), granularity: { kind: 'auto', candidates: [64, 128], budget: { kind: 'mean-group-size', min: 96 } } };
    return new Map(discoverLayers(model).filter((l) => /^(attn|mlp)\./.test(l.role)).map((l) => [l.name, { layer: l.name, weight: auto }]));
  }

  it('eps-error logs its projected cost once, after the first evaluation', async () => {
    const model = loadModelSync(`${DIT_DIGITS}/model.onnx`);
    const lines: string[] = [];
    const result = await runPass(searchGroupSizes, model, { ...small, fitness: 'eps-error' }, context(ort, autoPlan(model), (m) => lines.push(m)));
    const cost = lines.filter((l) => l.includes('evaluations ×'));
    // Population 2 + 1 epoch × (1 mutation + 1 crossover); then uniform 128 (64 breaks the budget) and 1 finalist.
    expect(cost).toHaveLength(1);
    expect(cost[0]).toMatch(/^search-group-sizes: eps-error fitness — ≤ 4 evaluations × \d+\.\d s ≈ \d+\.\d min, then ≤ 2 judged again on held-out samples ≈ \d+\.\d min; fitness layer-error scores every allocation from one forward$/);
    expect(result.statistics.evaluations).toBeLessThanOrEqual(4);
  });

  it('layer-error resolves the groups within the budget and logs no eps-error cost', async () => {
    const model = loadModelSync(`${DIT_DIGITS}/model.onnx`);
    const lines: string[] = [];
    const ctx = context(ort, autoPlan(model), (m) => lines.push(m));
    const result = await runPass(searchGroupSizes, model, { ...small, fitness: 'layer-error' }, ctx);
    const sizes = [...ctx.plan.values()].map((p) => (p.weight!.granularity as { size: number }).size);
    expect(sizes.reduce((a, b) => a + b, 0) / sizes.length).toBeGreaterThanOrEqual(96);
    expect(result.statistics.layers).toBe(24);
    expect(lines.some((l) => l.includes('evaluations ×'))).toBe(false);
  });
});
