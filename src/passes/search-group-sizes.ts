/**
 * search-group-sizes (Q-DiT): resolves every `group auto(…)` weight in the plan to one group size per layer,
 * under the budget on the mean group size, by evolutionary search (or the greedy baseline). Fitness is measured
 * on calibration data: `eps-error` (the model's eps error against FP, each candidate quantized and run in ONNX
 * Runtime) or the cheaper `layer-error` proxy (Σ of each layer's output error X·(W − Q_g(W)) from one recorded
 * batch of layer inputs — additive, so cached per layer and size: minutes on DiT-XL/2). Requires calibration batches.
 */
import type { Model } from '../ir/core.js';
import { IrError } from '../ir/errors.js';
import { discoverLayers, type Layer } from '../ir/layers.js';
import { decodeModel, encodeModel } from '../ir/serde.js';
import { CALIBRATION_BATCHES } from './collect-hessians.js';
import type { TensorMap } from './executor.js';
import { evolutionarySearch, greedySearch, type Allocation, type Fitness, type SearchSpace } from './group-search.js';
import type { Pass, PassContext, PassOptions, PassResult } from './pass.js';
import type { LayerQuantPlan, WeightQuantSpec } from './quant-plan.js';
import { quantizeWeights } from './quantize-weights.js';
import { computeCellParams, intRange, roundToNearest, type WeightMatrix } from './weight-quantizer.js';

/** Artifact key: the chosen group size per layer (Map<layerName, number>), for dumps and the report. */
export const GROUP_ALLOCATION = 'group-allocation';

export const searchGroupSizes: Pass = {
  name: 'search-group-sizes',
  summary: 'Q-DiT: choose a weight group size per layer under a mean-group-size budget (evolutionary or greedy search)',
  options: {
    method: { type: 'string', description: 'search method', default: 'evolution', choices: ['evolution', 'greedy'] },
    fitness: { type: 'string', description: 'measure on calibration data: end-to-end eps error, or the per-layer proxy', default: 'eps-error', choices: ['eps-error', 'layer-error'] },
    population: { type: 'int', description: 'population size', default: 50 },
    topK: { type: 'int', description: 'parents kept per epoch', default: 10 },
    mutations: { type: 'int', description: 'children by mutation per epoch', default: 25 },
    crossovers: { type: 'int', description: 'children by crossover per epoch', default: 25 },
    mutationRate: { type: 'number', description: 'probability of mutating each gene', default: 0.1 },
    epochs: { type: 'int', description: 'generations', default: 10 },
    rows: { type: 'int', description: 'input rows (tokens) per layer for the layer-error proxy', default: 256 },
  },
  async run(model: Model, options: PassOptions, context: PassContext): Promise<PassResult> {
    const auto = [...context.plan.values()].filter((p) => p.weight?.granularity.kind === 'auto');
    if (auto.length === 0) return { modified: false, statistics: { layers: 0 } };
    const batches = context.artifacts.get(CALIBRATION_BATCHES) as TensorMap[] | undefined;
    if (!batches || batches.length === 0) throw new IrError('invalid-argument', 'search-group-sizes needs calibration batches: calibrate first');
    if (!context.executor) throw new IrError('invalid-argument', 'search-group-sizes needs an executor');

    const layersByName = new Map(discoverLayers(model).map((l) => [l.name, l]));
    const layers = auto.map((p) => layersByName.get(p.layer)!);
    const first = auto[0]!.weight!.granularity as Extract<WeightQuantSpec['granularity'], { kind: 'auto' }>;
    const space: SearchSpace = {
      layers: layers.map((l) => l.name),
      candidates: layers.map((l, i) => {
        const granularity = auto[i]!.weight!.granularity as typeof first;
        const valid = granularity.candidates.filter((g) => l.inChannels % g === 0).sort((a, b) => a - b);
        if (valid.length === 0) throw new IrError('invalid-argument', `search-group-sizes: no candidate in [${granularity.candidates.join(', ')}] divides the ${l.inChannels} input channels of '${l.name}'`);
        return valid;
      }),
    };
    const budget = { minMeanGroupSize: first.minMeanGroupSize };
    const fitness = options.fitness === 'eps-error' ? await epsErrorFitness(model, auto, batches[0]!, context) : await layerErrorFitness(model, layers, auto, space, batches[0]!, context, options.rows as number);

    const started = Date.now();
    const progress = (epoch: number, epochs: number, best: number) => {
      context.progress('search epochs', epoch, epochs);
      context.log(`search-group-sizes: epoch ${epoch}/${epochs}, best ${best.toPrecision(4)}`);
    };
    const result =
      options.method === 'greedy'
        ? await greedySearch(space, budget, fitness)
        : await evolutionarySearch(space, budget, {
            population: options.population as number,
            topK: options.topK as number,
            mutations: options.mutations as number,
            crossovers: options.crossovers as number,
            mutationRate: options.mutationRate as number,
            epochs: options.epochs as number,
            seed: context.seed,
          }, fitness, progress);

    const allocation = new Map<string, number>();
    result.best.forEach((size, i) => {
      const plan = auto[i]!;
      allocation.set(plan.layer, size);
      context.plan.set(plan.layer, { ...plan, weight: { ...plan.weight!, granularity: { kind: 'group', size } } });
    });
    context.artifacts.set(GROUP_ALLOCATION, allocation);
    const statistics: Record<string, number | string> = {
      layers: auto.length,
      evaluations: result.evaluations,
      best_fitness: Number(result.bestScore.toPrecision(6)),
      mean_group_size: Number((result.best.reduce((a, b) => a + b, 0) / result.best.length).toFixed(2)),
      search_ms: Date.now() - started,
    };
    for (const size of new Set(result.best)) statistics[`group_${size}`] = result.best.filter((g) => g === size).length;
    return { modified: false, statistics };
  },
};

/** The plan's weight spec at a fixed group size, for fitness evaluation (round to nearest: Q-DiT scores candidates with RTN). */
function specAt(spec: WeightQuantSpec, size: number): WeightQuantSpec {
  return { ...spec, granularity: { kind: 'group', size }, rounding: { kind: 'nearest' } };
}

/** Σ over layers of the output error ‖X(W − Q_g(W))‖², with each (layer, size) term computed once. */
async function layerErrorFitness(model: Model, layers: Layer[], auto: LayerQuantPlan[], space: SearchSpace, feeds: TensorMap, context: PassContext, rows: number): Promise<Fitness> {
  const prepared = await context.executor!.prepare(model, [...new Set(layers.map((l) => l.node.input(0).name))]);
  let outputs: TensorMap;
  try {
    outputs = await prepared.run(feeds);
  } finally {
    await prepared.release();
  }
  const terms = layers.map(() => new Map<number, number>());
  const term = (i: number, size: number): number => {
    const cached = terms[i]!.get(size);
    if (cached !== undefined) return cached;
    const layer = layers[i]!;
    const x = outputs[layer.node.input(0).name]!;
    const value = outputError(layer, x.data as Float32Array, specAt(auto[i]!.weight!, size), rows);
    terms[i]!.set(size, value);
    return value;
  };
  // Fill the table up front so progress is visible and the search itself is cheap.
  let done = 0;
  const total = space.candidates.reduce((n, c) => n + c.length, 0);
  space.candidates.forEach((sizes, i) => sizes.forEach((size) => (term(i, size), context.progress('proxy table', ++done, total))));
  return async (allocation: Allocation) => allocation.reduce((sum, size, i) => sum + term(i, size), 0);
}

/**
 * Mean over rows of ‖x(W − Ŵ)‖² for up to `maxRows` rows x of X (channels last): the absolute output error,
 * which on the fixture ranks allocations like the eps error; a relative error (÷‖xW‖²) did not.
 */
function outputError(layer: Layer, x: Float32Array, spec: WeightQuantSpec, maxRows: number): number {
  const K = layer.inChannels;
  const N = layer.outChannels;
  const weight = layer.weight.initializer;
  if (!weight) throw new IrError('invalid-argument', `search-group-sizes: '${layer.name}' is already quantized`);
  const kMajor = !(layer.opType === 'Gemm' && layer.node.intAttr('transB', 0) === 1);
  const matrix: WeightMatrix = { values: weight.toFloat32(), N, K, kMajor };
  const settings = { bits: spec.bits, symmetric: spec.symmetric, signed: spec.signed ?? true, granularity: spec.granularity, range: spec.range };
  const params = computeCellParams(matrix, settings);
  const codes = roundToNearest(matrix, params, intRange(spec.bits, settings.signed));
  // Dequantized difference D = W − Ŵ, as [K][N].
  const diff = new Float32Array(K * N);
  for (let k = 0; k < K; k++) {
    const cellBase = Math.floor(k / params.cellLength) * N;
    for (let n = 0; n < N; n++) {
      const i = kMajor ? k * N + n : n * K + k;
      const cell = params.scale.length === 1 ? 0 : cellBase + n;
      const dequantized = (codes[i]! - params.zeroPoint[cell]!) * params.scale[cell]!;
      diff[k * N + n] = matrix.values[i]! - dequantized;
    }
  }
  const totalRows = x.length / K;
  const stride = Math.max(1, Math.floor(totalRows / maxRows));
  let error = 0;
  let rows = 0;
  const acc = new Float64Array(N);
  for (let r = 0; r < totalRows; r += stride, rows++) {
    acc.fill(0);
    for (let k = 0; k < K; k++) {
      const xv = x[r * K + k]!;
      if (xv === 0) continue;
      const row = k * N;
      for (let n = 0; n < N; n++) acc[n]! += xv * diff[row + n]!;
    }
    for (let n = 0; n < N; n++) error += acc[n]! ** 2;
  }
  return error / rows;
}

/** Mean squared eps error against FP on one calibration batch, each candidate quantized (RTN) and run in ORT. */
async function epsErrorFitness(model: Model, auto: LayerQuantPlan[], feeds: TensorMap, context: PassContext): Promise<Fitness> {
  const output = model.graph.outputs[0]!.name;
  const reference = await runOnce(model, output, feeds, context);
  const bytes = encodeModel(model);
  return async (allocation: Allocation) => {
    const candidate = decodeModel(bytes, { baseDir: model.baseDir });
    const plan = new Map(auto.map((p, i) => [p.layer, { ...p, weight: specAt(p.weight!, allocation[i]!) }]));
    await quantizeWeights.run(candidate, {}, { ...context, plan, progress: () => {} });
    const eps = await runOnce(candidate, output, feeds, context);
    let mse = 0;
    for (let i = 0; i < eps.length; i++) mse += (eps[i]! - reference[i]!) ** 2;
    return mse / eps.length;
  };
}

async function runOnce(model: Model, output: string, feeds: TensorMap, context: PassContext): Promise<Float32Array> {
  const prepared = await context.executor!.prepare(model, [output]);
  try {
    return (await prepared.run(feeds))[output]!.data as Float32Array;
  } finally {
    await prepared.release();
  }
}
