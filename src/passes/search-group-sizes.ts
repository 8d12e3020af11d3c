/**
 * search-group-sizes (Q-DiT): resolves every `group auto(…)` weight in the plan to one group size per layer,
 * under the budget on the mean group size, by evolutionary search (or the greedy baseline). Fitness is measured
 * on calibration samples spread over the timesteps: `eps-error` (the model's eps error against FP, each candidate
 * quantized and run in ONNX Runtime) or the cheaper `layer-error` proxy (Σ of each layer's output error
 * X·(W − Q_g(W)) on strided rows of its input on one calibration batch, picked in the session — additive, so
 * tabulated once per layer and size: minutes on DiT-XL/2). How well they rank allocations like the images do
 * (Spearman ρ against paired PSNR on dit-digits, 12 allocations near the budget, `npx tsx bench/proxy-ranking.ts`):
 * eps-error over 64 samples 0.72, over the first calibration batch alone 0.47, layer-error 0.27 — so layer-error
 * is for models where an end-to-end run per candidate is unaffordable. Requires calibration batches.
 */
import { Graph, Model, type Dim, type Value } from '../ir/core.js';
import { peekTypes } from '../ir/infer-shapes.js';
import { DataType } from '../ir/dtype.js';
import { Op } from '../ir/ops.js';
import { Tensor } from '../ir/tensor.js';
import { IrError } from '../ir/errors.js';
import { layersOf } from '../quant/identity.js';
import { findTimestepInput } from '../quant/diffusion-inputs.js';
import type { Layer } from '../quant/layers.js';
import { DEFAULT_ACTIVATION_LOWERING, quantizePlannedActivations } from './activation-quantization.js';
import { CALIBRATION_BATCHES, GROUP_ALLOCATION, SAMPLE_PROBE } from './artifacts.js';
import type { HostTensor, PreparedModel, SampleProbe, TensorMap } from '../ir/executor.js';
import { averageBitsBudget, evolutionarySearch, greedySearch, meanGroupSizeBudget, uniformAllocations, type Allocation, type Fitness, type SearchBudget, type SearchSpace } from './group-search.js';
import { definePass, type PassContext, type PassResult } from './pass.js';
import { backends } from '../backends/registry.js';
import { SessionNodes } from './session-nodes.js';
import type { GroupBudget, LayerQuantPlan, WeightQuantSpec } from '../quant/plan.js';
import { quantizePlannedWeights } from './weight-quantization.js';
import type { WeightMatrix } from '../quant/kernels/weight-kernels.js';
import { computeCellParams, intRange, roundToNearest } from './weight-quantizer.js';

/** The search-group-sizes pass. */
export const searchGroupSizes = definePass({
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
    samples: { type: 'int', description: 'calibration samples the fitness measures on, spread evenly over their timesteps', default: 64 },
    finalists: { type: 'int', description: 'best searched allocations judged again (with the uniform ones) on unseen data', default: 4 },
  },
  requires: [CALIBRATION_BATCHES],
  reads: [SAMPLE_PROBE],
  produces: [GROUP_ALLOCATION],
  async run(model, options, context): Promise<PassResult> {
    const auto = [...context.plan.values()].filter((p) => p.weight?.granularity.kind === 'auto');
    if (auto.length === 0) return { modified: false, statistics: { layers: 0 } };
    const batches = context.artifacts.require(CALIBRATION_BATCHES, 'search-group-sizes');
    if (batches.length === 0) throw new IrError('invalid-argument', 'search-group-sizes needs calibration batches: calibrate first');
    if (!context.executor) throw new IrError('invalid-argument', 'search-group-sizes needs an executor');

    const layersByName = new Map(layersOf(model).map((l) => [l.name, l]));
    const layers = auto.map((p) => layersByName.get(p.layer)!);
    const first = auto[0]!.weight!.granularity as Extract<WeightQuantSpec['granularity'], { kind: 'auto' }>;
    const space: SearchSpace = {
      layers: layers.map((l) => l.name),
      candidates: layers.map((l, i) => {
        const granularity = auto[i]!.weight!.granularity as typeof first;
        // A size need not divide K (the last group is partial); sizes beyond K are all one group, the smallest of them standing for it.
        const sizes = [...granularity.candidates].sort((a, b) => a - b);
        const beyond = sizes.find((g) => g >= l.inChannels);
        return [...sizes.filter((g) => g < l.inChannels), ...(beyond !== undefined ? [beyond] : [])];
      }),
    };
    const budget = searchBudget(first.budget, layers, auto);
    const timestep = findTimestepInput(model);
    if (!timestep) throw new IrError('invalid-argument', 'search-group-sizes: cannot find the timestep input (an integer input feeding Sin/Cos)');
    // Two disjoint sets spread over the timesteps: the search scores candidates on one; the other (eps-error
    // only) checks afterwards that the winner beats the uniform allocations on samples it was not chosen on.
    const [fitnessBatches, heldOutBatches] = spreadOverTimesteps(batches, options.samples, timestep.name, 2);
    const probe = context.artifacts.get(SAMPLE_PROBE);
    const judgedBy = probe ? `images (${probe.describe})` : heldOutBatches?.length ? 'held-out eps error' : undefined;
    // Distinct allocations scored at most (the search's cache skips repeats): greedy, the all-largest one, one
    // per layer and its result; evolution, the population and then each epoch's children. Then the finalists
    // and the uniform allocations are judged again.
    const evaluations = options.method === 'greedy' ? layers.length + 2 : options.population + options.epochs * (options.mutations + options.crossovers);
    const judged = judgedBy ? uniformAllocations(space).filter((a) => budget.allows(a)).length + Math.min(options.finalists, options.method === 'greedy' ? 1 : options.topK) : 0;
    const fitness =
      options.fitness === 'eps-error'
        ? loggingFirstCost(await epsErrorFitness(model, auto, fitnessBatches!, context), (seconds) => context.log(projectedCost(seconds, evaluations, judged, probe ? judgedBy : undefined)))
        : await layerErrorFitness(model, layers, auto, space, fitnessBatches![0]!, context, options.rows);

    const progress = (epoch: number, epochs: number, best: number) => {
      context.progress('search epochs', epoch, epochs);
      context.log(`search-group-sizes: epoch ${epoch}/${epochs}, best ${best.toPrecision(4)}`);
    };
    const result =
      options.method === 'greedy'
        ? await greedySearch(space, budget, fitness)
        : await evolutionarySearch(space, budget, {
            population: options.population,
            topK: options.topK,
            mutations: options.mutations,
            crossovers: options.crossovers,
            mutationRate: options.mutationRate,
            epochs: options.epochs,
            seed: context.seed,
          }, fitness, progress);

    const statistics: Record<string, number | string> = {
      layers: auto.length,
      evaluations: result.evaluations,
      best_fitness: Number(result.bestScore.toPrecision(6)),
    };
    // The winner's curse: the best of hundreds of noisy proxy scores is optimistic, and a proxy only ranks
    // allocations roughly like the images do. The finalists and every uniform allocation the budget allows
    // are judged once more on data the search never scored — by the images they sample when the caller gave a
    // sample probe, else by the eps error on held-out calibration samples. The best searched one replaces the
    // best uniform one only when it wins by more than twice the standard error of the paired difference.
    const judge = probe ? await imageErrorJudge(model, auto, probe, context) : judgedBy ? await heldOutEpsJudge(model, auto, heldOutBatches!, context) : undefined;
    let best = result.best;
    if (judge) {
      const uniform = uniformAllocations(space).filter((a) => budget.allows(a));
      const searched = result.finalists.slice(0, options.finalists).filter((a) => !uniform.some((u) => u.join(',') === a.join(',')));
      // Each judged allocation is a whole model quantized and run (minutes at real size): progress per allocation.
      const total = searched.length + uniform.length;
      const judging = (done: number) => context.progress('judging allocations', done, total);
      judging(0);
      const verdict = pairedVerdict(await scoreAll(searched, judge, judging), await scoreAll(uniform, judge, (done) => judging(searched.length + done)));
      best = verdict.kept === 'searched' ? searched[verdict.searched]! : uniform[verdict.uniform]!;
      statistics.judged_by = judgedBy!;
      statistics.judged_gain_db = Number(verdict.gainDb.toFixed(3));
      statistics.judged_noise_db = Number(verdict.twoSeDb.toFixed(3));
      statistics.kept = verdict.kept === 'searched' ? 'searched' : `uniform_${best[0]}`;
      if (verdict.kept !== 'searched') {
        context.log(`search-group-sizes: the best searched allocation gained ${verdict.gainDb.toFixed(2)} dB over uniform group ${best[0]} (noise ±${verdict.twoSeDb.toFixed(2)} dB) judged by ${statistics.judged_by}; keeping the uniform one`);
      }
    }

    const allocation = new Map<string, number>();
    best.forEach((size, i) => {
      const plan = auto[i]!;
      allocation.set(plan.layer, size);
      context.plan.set(plan.layer, { ...plan, weight: { ...plan.weight!, granularity: { kind: 'group', size } } });
    });
    context.artifacts.set(GROUP_ALLOCATION, allocation);
    statistics.mean_group_size = Number((best.reduce((a, b) => a + b, 0) / best.length).toFixed(2));
    for (const size of new Set(best)) statistics[`group_${size}`] = best.filter((g) => g === size).length;
    return { modified: false, statistics };
  },
});

/** The recipe's budget over the searched layers (bits: codes + float32 scale + zero point when asymmetric, per group). */
function searchBudget(budget: GroupBudget, layers: Layer[], auto: LayerQuantPlan[]): SearchBudget {
  if (budget.kind === 'mean-group-size') return meanGroupSizeBudget(budget.min);
  const parameters = layers.map((l) => l.inChannels * l.outChannels);
  return averageBitsBudget(budget.max, parameters, (i, size) => {
    const w = auto[i]!.weight!;
    const K = layers[i]!.inChannels;
    return w.bits + (Math.ceil(K / size) * (32 + (w.symmetric ? 0 : w.bits))) / K;
  });
}

/** The plan's weight spec at a fixed group size, for fitness evaluation (round to nearest: Q-DiT scores candidates with RTN). */
function specAt(spec: WeightQuantSpec, size: number): WeightQuantSpec {
  return { ...spec, granularity: { kind: 'group', size }, rounding: { kind: 'nearest' } };
}

/** Σ over layers of the output error ‖X(W − Q_g(W))‖², from the table of every (layer, candidate) term. */
async function layerErrorFitness(model: Model, layers: Layer[], auto: LayerQuantPlan[], space: SearchSpace, feeds: TensorMap, context: PassContext, rows: number): Promise<Fitness> {
  const specs = space.candidates.map((sizes, i) => sizes.map((size) => specAt(auto[i]!.weight!, size)));
  const table = await layerErrorTable(model, layers, specs, feeds, context, rows);
  return async (allocation: Allocation) => allocation.reduce((sum, size, i) => sum + table[i]![space.candidates[i]!.indexOf(size)]!, 0);
}

/**
 * The layer-error proxy's table: for each layer and each of its weight specs, the mean over about `rows` input
 * rows x (recordLayerRows) of ‖x(W − Q(W))‖². The quantization error D = W − Q(W) is computed here; the products
 * X·D of all a layer's specs run as one batched MatMul in ONNX Runtime (one small session for every layer shape).
 */
export async function layerErrorTable(model: Model, layers: Layer[], specs: WeightQuantSpec[][], feeds: TensorMap, context: PassContext, rows: number): Promise<number[][]> {
  const inputs = await recordLayerRows(model, layers, feeds, context, rows);
  const scorer = await context.executor!.prepare(outputErrorModel(), ['error']);
  const table: number[][] = [];
  try {
    const total = specs.reduce((n, c) => n + c.length, 0);
    let done = 0;
    for (const [i, layer] of layers.entries()) {
      const x = inputs.get(layer.node.input(0).name)!;
      const out = await scorer.run({ x, d: quantizationErrors(layer, specs[i]!) });
      table.push(Array.from(out.error!.data as Float32Array, (sum) => sum / x.dims[0]!));
      context.progress('proxy table', (done += specs[i]!.length), total);
    }
  } finally {
    await scorer.release();
  }
  return table;
}

/**
 * Evenly strided rows (tokens) of every layer's channels-last float input on one calibration batch, as [R, K]
 * tensors: rows 0, s, 2s, … with stride s = max(1, ⌊rows in the batch / maxRows⌋) — from `maxRows` to fewer than
 * twice as many, or every row of a batch with fewer. Only they leave ONNX Runtime, not the whole activations
 * (DiT-XL/2 at batch 8: 1.8 GB). Where shape inference at the batch's dims gives an input's row count, the pick is
 * a strided Slice, and ORT runs it as soon as the input exists; otherwise the stride is computed in the session
 * (Shape → Range → Gather), a branch ORT runs after the whole model, keeping every such input alive until then
 * (DiT-XL/2, all 113 inputs that way: 4.58 GB peak; 3.15 GB with the Slices).
 */
async function recordLayerRows(model: Model, layers: Layer[], feeds: TensorMap, context: PassContext, maxRows: number): Promise<Map<string, HostTensor>> {
  const sampled = new Map<string, string>();
  const session = new SessionNodes(model.graph);
  const inputs = [...new Set(layers.map((l) => l.node.input(0)))];
  // Inputs declared with a shape take the batch's dims; one declared without leaves its rows to the session.
  const feedDims = new Map(model.graph.inputs.flatMap((v) => (feeds[v.name] && v.type?.shape?.length === feeds[v.name]!.dims.length ? [[v.name, feeds[v.name]!.dims] as const] : [])));
  const types = peekTypes(model, inputs, feedDims);
  let prepared: PreparedModel;
  try {
    for (const layer of layers) {
      const input = layer.node.input(0);
      if (!sampled.has(input.name)) sampled.set(input.name, addRowSample(session, input, layer.inChannels, maxRows, rowCount(types.get(input)?.shape, layer.inChannels)).name);
    }
    prepared = await context.executor!.prepare(model, [...sampled.values()]);
  } finally {
    session.removeAll();
  }
  try {
    const outputs = await prepared.run(feeds);
    return new Map([...sampled].map(([input, rows]) => [input, outputs[rows]!]));
  } finally {
    await prepared.release();
  }
}

/** Rows of `channels` values in a tensor of this shape, when every dim is known and the last one is `channels`. */
function rowCount(shape: readonly Dim[] | undefined, channels: number): number | undefined {
  if (!shape || shape.at(-1) !== channels || !shape.every((d) => typeof d === 'number')) return undefined;
  return (shape as number[]).slice(0, -1).reduce((a, b) => a * b, 1);
}

/** Adds X → Reshape [rows, K] → rows 0, s, 2s, … (s = max(1, ⌊rows ÷ maxRows⌋)): a Slice when `rows` is known, else Gather(Range). */
function addRowSample(session: SessionNodes, x: Value, channels: number, maxRows: number, rows: number | undefined): Value {
  const base = `${x.name}/proxy_rows`;
  const ints = (suffix: string, values: number[]) => session.constant(base, suffix, Tensor.fromInt64([values.length], values));
  const scalar = (suffix: string, value: number) => session.constant(base, suffix, Tensor.fromInt64([], [value]));
  const matrix = session.add(base, Op.Reshape, [x, ints('shape', [-1, channels])], 'rows');
  if (rows !== undefined) {
    const stride = Math.max(1, Math.floor(rows / maxRows));
    return session.add(base, Op.Slice, [matrix, ints('starts', [0]), ints('ends', [rows]), ints('axes', [0]), ints('steps', [stride])], 'sampled');
  }
  const count = session.add(base, Op.Gather, [session.add(base, Op.Shape, [matrix], 'row_shape'), scalar('first', 0)], 'count');
  const stride = session.add(base, Op.Max, [session.add(base, Op.Div, [count, scalar('max_rows', maxRows)], 'quotient'), scalar('one', 1)], 'stride');
  const indices = session.add(base, Op.Range, [scalar('start', 0), count, stride], 'indices');
  return session.add(base, Op.Gather, [matrix, indices], 'sampled', { axis: { kind: 'int', value: 0 } });
}

/** error[c] = Σ (x · d[c])² for x [R, K] and d [C, K, N]: the proxy's products, run in ONNX Runtime. */
function outputErrorModel(): Model {
  const graph = new Graph('layer_output_error');
  const x = graph.addInput('x', { elemType: DataType.FLOAT, shape: ['R', 'K'] });
  const d = graph.addInput('d', { elemType: DataType.FLOAT, shape: ['C', 'K', 'N'] });
  const product = graph.addNode({ opType: Op.MatMul, inputs: [x, d], outputs: ['product'] }).outputs[0]!;
  const axes = graph.addInitializer('axes', Tensor.fromInt64([2], [1, 2]));
  const error = graph.addNode({ opType: Op.ReduceSumSquare, inputs: [product, axes], outputs: ['error'], attributes: { keepdims: { kind: 'int', value: 0 } } }).outputs[0]!;
  error.type = { elemType: DataType.FLOAT, shape: ['C'] };
  graph.outputs.push(error);
  const model = new Model(graph);
  model.irVersion = 8;
  model.opsetImports.set('', 18);
  return model;
}

/**
 * W − Q(W) as [C, K, N] for each spec (round to nearest): the absolute output error it causes ranks
 * allocations like the eps error on the fixture; a relative error (÷‖xW‖²) did not.
 */
function quantizationErrors(layer: Layer, specs: WeightQuantSpec[]): HostTensor {
  const K = layer.inChannels;
  const N = layer.outChannels;
  const weight = layer.weight.initializer;
  if (!weight) throw new IrError('invalid-argument', `search-group-sizes: '${layer.name}' is already quantized`);
  const kMajor = !(layer.opType === 'Gemm' && layer.node.intAttr('transB', 0) === 1);
  const matrix: WeightMatrix = { values: weight.toFloat32(), N, K, kMajor, name: layer.weight.name };
  const data = new Float32Array(specs.length * K * N);
  specs.forEach((spec, c) => {
    const settings = { bits: spec.bits, symmetric: spec.symmetric, signed: spec.signed ?? true, granularity: spec.granularity, range: spec.range };
    const params = computeCellParams(matrix, settings);
    const codes = roundToNearest(matrix, params, intRange(spec.bits, settings.signed));
    const base = c * K * N;
    for (let k = 0; k < K; k++) {
      const cellBase = Math.floor(k / params.cellLength) * N;
      for (let n = 0; n < N; n++) {
        const i = kMajor ? k * N + n : n * K + k;
        const cell = params.scale.length === 1 ? 0 : cellBase + n;
        data[base + k * N + n] = matrix.values[i]! - (codes[i]! - params.zeroPoint[cell]!) * params.scale[cell]!;
      }
    }
  });
  return { dtype: 'float32', dims: [specs.length, K, N], data };
}

/**
 * The eps-error search's projected cost, for the log: `evaluations` at `seconds` each, then `judged` allocations
 * judged again — by the images of `probe` (a cost of its own), else on held-out samples (as long as an evaluation).
 */
function projectedCost(seconds: number, evaluations: number, judged: number, probe: string | undefined): string {
  const minutes = (n: number) => `${((n * seconds) / 60).toFixed(1)} min`;
  const judging = judged === 0 ? '' : probe ? `, then ≤ ${judged} judged again by ${probe}` : `, then ≤ ${judged} judged again on held-out samples ≈ ${minutes(judged)}`;
  return `search-group-sizes: eps-error fitness — ≤ ${evaluations} evaluations × ${seconds.toFixed(1)} s ≈ ${minutes(evaluations)}${judging}; fitness layer-error scores every allocation from one forward`;
}

/**
 * The fitness, reporting how long its first evaluation took (candidate quantized, session opened, batches run)
 * to `report`, for the search's projected cost: a time goes to the log only, never into the outputs.
 */
function loggingFirstCost(fitness: Fitness, report: (seconds: number) => void): Fitness {
  let timed = false;
  return async (allocation) => {
    if (timed) return fitness(allocation);
    timed = true;
    const started = performance.now();
    const score = await fitness(allocation);
    report((performance.now() - started) / 1000);
    return score;
  };
}

/** Mean squared eps error against FP over the fitness batches, each candidate as `candidateQuantizer` builds it. */
async function epsErrorFitness(model: Model, auto: LayerQuantPlan[], batches: TensorMap[], context: PassContext): Promise<Fitness> {
  const perSample = await heldOutEpsJudge(model, auto, batches, context, 'linear');
  return async (allocation: Allocation) => {
    const errors = await perSample(allocation);
    return errors.reduce((a, b) => a + b, 0) / errors.length;
  };
}

/**
 * Scores a candidate allocation per judged unit (an image, or a calibration sample) as its squared error
 * against FP, on a log10 scale for judging (so a difference of scores is a PSNR difference / 10, robust to
 * the few samples whose trajectory flips to another digit) or linear for the search's mean.
 */
type Judge = (allocation: Allocation) => Promise<number[]>;

/** Per calibration sample, the mean squared eps error against FP. */
async function heldOutEpsJudge(model: Model, auto: LayerQuantPlan[], batches: TensorMap[], context: PassContext, scale: 'log' | 'linear' = 'log'): Promise<Judge> {
  const output = model.graph.outputs[0]!.name;
  const reference = await runBatches(model, output, batches, context);
  const quantize = candidateQuantizer(model, auto, context);
  return async (allocation: Allocation) => {
    const eps = await runBatches(await quantize(allocation), output, batches, context);
    return batches.flatMap((feeds, b) => perRowError(eps[b]!, reference[b]!, Object.values(feeds)[0]!.dims[0]!, scale));
  };
}

/** Per probe image, the mean squared difference between a candidate's sample and the FP model's (same noise, same label). */
async function imageErrorJudge(model: Model, auto: LayerQuantPlan[], probe: SampleProbe, context: PassContext): Promise<Judge> {
  const reference = await probe.sample(model);
  const quantize = candidateQuantizer(model, auto, context);
  return async (allocation: Allocation) => perRowError(await probe.sample(await quantize(allocation)), reference, probe.samples, 'log');
}

function perRowError(values: Float32Array, reference: Float32Array, rows: number, scale: 'log' | 'linear'): number[] {
  const size = values.length / rows;
  return Array.from({ length: rows }, (_, r) => {
    let squares = 0;
    for (let i = r * size; i < (r + 1) * size; i++) squares += (values[i]! - reference[i]!) ** 2;
    const mse = squares / size;
    return scale === 'log' ? Math.log10(mse + 1e-20) : mse;
  });
}

async function scoreAll(allocations: Allocation[], judge: Judge, progress: (done: number) => void): Promise<number[][]> {
  const scores: number[][] = [];
  for (const allocation of allocations) {
    scores.push(await judge(allocation));
    progress(scores.length);
  }
  return scores;
}

/** The outcome of judging: which side is kept, the indices of the best of each side, the gain and its noise in dB. */
export interface PairedVerdict {
  kept: 'searched' | 'uniform';
  searched: number;
  uniform: number;
  /** Mean paired improvement of the best searched over the best uniform allocation, 10·Δlog10(MSE) (dB). */
  gainDb: number;
  /** Twice the standard error of that mean (dB). */
  twoSeDb: number;
}

/**
 * Compares the best searched allocation (lowest mean log error) with the best uniform one on the same units:
 * the searched one is kept only when its mean paired gain exceeds twice the standard error of the paired
 * differences — a search must show that it beats the simple choice, not merely tie with it.
 */
export function pairedVerdict(searched: number[][], uniform: number[][]): PairedVerdict {
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const bestOf = (side: number[][]) => side.reduce((best, s, i) => (mean(s) < mean(side[best]!) ? i : best), 0);
  const u = bestOf(uniform);
  if (searched.length === 0) return { kept: 'uniform', searched: -1, uniform: u, gainDb: 0, twoSeDb: 0 };
  const s = bestOf(searched);
  if (uniform.length === 0) return { kept: 'searched', searched: s, uniform: -1, gainDb: 0, twoSeDb: 0 };
  const differences = uniform[u]!.map((x, i) => 10 * (x - searched[s]![i]!));
  const gain = mean(differences);
  const variance = differences.reduce((sum, d) => sum + (d - gain) ** 2, 0) / Math.max(1, differences.length - 1);
  const twoSe = 2 * Math.sqrt(variance / differences.length);
  return { kept: gain > twoSe ? 'searched' : 'uniform', searched: s, uniform: u, gainDb: gain, twoSeDb: twoSe };
}

/**
 * `parts` disjoint sets of up to `count` calibration samples each, every set evenly spaced over the timesteps and
 * dealt round-robin into batches of the calibration batch size so every batch spans the whole range.
 * (Calibration batches come in trajectory order: the first holds only the earliest, noisiest steps, and a fitness
 * on it alone ranked allocations unlike the images did — bench/proxy-ranking.ts.)
 */
export function spreadOverTimesteps(batches: TensorMap[], count: number, timestepName: string, parts = 1): TensorMap[][] {
  const samples: { batch: number; row: number; t: number }[] = [];
  batches.forEach((feeds, batch) => {
    const t = feeds[timestepName]!.data as BigInt64Array;
    for (let row = 0; row < t.length; row++) samples.push({ batch, row, t: Number(t[row]) });
  });
  samples.sort((a, b) => a.t - b.t || a.batch - b.batch || a.row - b.row);
  const n = Math.min(count * parts, samples.length);
  const chosen = Array.from({ length: n }, (_, i) => samples[Math.floor((i * samples.length) / n)]!);
  const batchSize = batches[0]![timestepName]!.dims[0]!;
  return Array.from({ length: parts }, (_, part) => {
    const set = chosen.filter((_, i) => i % parts === part);
    const groups = Math.ceil(set.length / batchSize);
    return Array.from({ length: groups }, (_, g) => gatherRows(batches, set.filter((_, i) => i % groups === g)));
  });
}

function gatherRows(batches: TensorMap[], rows: { batch: number; row: number }[]): TensorMap {
  const out: TensorMap = {};
  for (const [name, first] of Object.entries(batches[0]!)) {
    const rowSize = first.dims.slice(1).reduce((a, b) => a * b, 1);
    const Ctor = first.data.constructor as new (length: number) => typeof first.data;
    const data = new Ctor(rows.length * rowSize);
    rows.forEach(({ batch, row }, i) => {
      const source = batches[batch]![name]!.data;
      (data as Float32Array).set((source as Float32Array).subarray(row * rowSize, (row + 1) * rowSize), i * rowSize);
    });
    out[name] = { dtype: first.dtype, dims: [rows.length, ...first.dims.slice(1)], data };
  }
  return out;
}

/**
 * The model as a candidate allocation deploys it, the way Q-DiT scores candidates: round-to-nearest weights at
 * the candidate's group sizes, plus the plan's dynamic activation quantization, in token groups of the
 * candidate's size where the plan says `per-token-group(size: weight)`, lowered for the pipeline's target when
 * it has one (`context.lowering`): what that target will run. (Static and per-timestep inputs need calibration
 * statistics that come later, so they are left float here.) On the cpu target a dynamic symmetric int8 input
 * in groups of a MatMulNBits block size is quantized by the kernel itself — the same codes up to a rounding tie,
 * without the eleven in-graph quantizer nodes: on dit-digits W4A8 a candidate's session opens and runs its
 * fitness batches in about half the time of the Q/DQ form.
 */
function candidateQuantizer(model: Model, auto: LayerQuantPlan[], context: PassContext): (allocation: Allocation) => Promise<Model> {
  const dynamicInputs = [...context.plan.values()].filter((p) => p.input?.mode.kind === 'dynamic');
  return async (allocation) => {
    const candidate = model.clone();
    const plan = new Map(auto.map((p, i) => [p.layer, { layer: p.layer, weight: specAt(p.weight!, allocation[i]!) }]));
    await quantizePlannedWeights(candidate, plan, undefined, () => {});
    // The weight spec rides along so that `per-token-group(size: weight)` takes the candidate's group size.
    const inputs = new Map(dynamicInputs.map((p) => [p.layer, { layer: p.layer, input: p.input, weight: plan.get(p.layer)?.weight ?? p.weight }]));
    if (dynamicInputs.length > 0) quantizePlannedActivations(candidate, inputs, undefined, DEFAULT_ACTIVATION_LOWERING);
    if (context.lowering) backends[context.lowering.target].lower(candidate, context.lowering.options);
    return candidate;
  };
}

/** `output` on each batch, from one session: at real size a session costs a staging and a load (DiT-XL/2: seconds). */
async function runBatches(model: Model, output: string, batches: TensorMap[], context: PassContext): Promise<Float32Array[]> {
  const prepared = await context.executor!.prepare(model, [output]);
  try {
    const outputs: Float32Array[] = [];
    for (const feeds of batches) outputs.push((await prepared.run(feeds))[output]!.data as Float32Array);
    return outputs;
  } finally {
    await prepared.release();
  }
}
