/**
 * Evaluation of a quantized diffusion model against its FP original, everything from the same seeds and the
 * same conditioning, with classifier-free guidance when asked: paired sample PSNR (mean ± 2 SE), label
 * agreement, label accuracy or prompt adherence and Fréchet distance (bootstrap interval) under a
 * user-supplied feature extractor, eps SQNR and per-layer output SQNR by timestep bin, the SQNR of the
 * guidance signal eps(cond) − eps(uncond), sample grids and sizes, the compiled layers' group sizes and
 * scaling factors, and (given the compile's sidecar) pass timings — as a QualityReport.
 */
import { readFileSync, statSync } from 'node:fs';
import type { Model } from '../ir/core.js';
import { dataTypeName } from '../ir/dtype.js';
import { layersOf } from '../quant/identity.js';
import { loadModelSync } from '../ir/serde.js';
import type { TensorMap } from '../ir/executor.js';
import { seededRandom } from '../random.js';
import type { PassTimings } from '../report/compile-record.js';
import type { ModelFacts, QualityReport } from '../report/report.js';
import { buildCalibrationSet } from './calibration.js';
import { compiledLayerRows } from './compiled-layers.js';
import type { Prediction } from './diffusion/interface.js';
import { loadConditioning, type ConditioningSources } from './diffusion/conditioning.js';
import type { DiffusionInterface } from './diffusion/interface.js';
import { guidanceFor, noiseScheduleFor } from './diffusion/schedule-source.js';
import { findDiffusionInterface } from './diffusion/interface.js';
import { openDenoiser, predictionOf, sample } from './diffusion/sampler.js';
import { makeScheduler } from './diffusion/scheduler.js';
import { OrtExecutor } from './ir-executor.js';
import { FeatureExtractor, argmax, featureStats, frechetDistance, psnrDb, type FeatureStats } from './metrics.js';
import { imageGridPng, previewChannels } from './png-grid.js';

/** What to evaluate and how. */
export interface EvaluateOptions {
  fp: string;
  quant: string;
  samples: number;
  steps: number;
  seed: number;
  recipe?: { name: string; text: string };
  /** Feature extractor ONNX (outputs `features`, `logits`) and the real data's feature mean/covariance (float64 files). */
  features?: { model: string; realMu: string; realCov: string };
  /** The recipe's `prediction`, checked against the FP model's sidecar (a conflict is a ScheduleError). */
  recipePrediction?: Prediction;
  /** Prompts or precomputed conditioning for a text-conditioned model. */
  conditioning?: ConditioningSources;
  /** Classifier-free guidance scale; default the sidecar's recommended scale, else 1 (the CLI passes the recipe's first). */
  guidance?: number;
  /** The compile's pass timings (`<quant>.passes.json`) and where they were read. */
  passTimings?: { source: string; timings: PassTimings };
  /** What the evaluation starts next (`sampling 100 × DDIM-20 (FP; …)`). */
  progress?: (message: string) => void;
  /** Progress within it: `done` of `total` sampling steps, or calibration trajectories. */
  stepProgress?: (label: string, done: number, total: number) => void;
}

const BINS = 10;
/** Bootstrap resamples of the FD interval. */
const BOOTSTRAP = 100;

/** Runs the evaluation. */
export async function evaluate(options: EvaluateOptions): Promise<QualityReport> {
  const say = options.progress ?? (() => {});
  const fp = loadModelSync(options.fp);
  const recipe = options.recipePrediction ? { schedule: { kind: 'sidecar' as const }, prediction: options.recipePrediction } : undefined;
  const iface = findDiffusionInterface(fp, options.fp, recipe ? { recipe: { prediction: recipe.prediction } } : {});
  // The schedule before the quantized model is read: a bad or contradicted one is refused first.
  const config = noiseScheduleFor(options.fp, iface, recipe);
  const scheduler = makeScheduler(config, { kind: config.kind === 'flow' ? 'flow-euler' : 'ddim', steps: options.steps });
  const quant = loadModelSync(options.quant);
  const conditioning = await loadConditioning(iface, options.conditioning ?? {}, options.fp);
  const guidance = guidanceFor(options.fp, options.guidance);
  const perSample = iface.latent.shape.reduce((a, b) => a * b, 1);
  const conditions = Array.from({ length: options.samples }, (_, i) => i % conditioning.count);
  const sampler = `${scheduler.spec.kind.toUpperCase()}-${options.steps}${guidance !== 1 ? `, guidance ${guidance}` : ''}`;

  // Both models start from the same x_T and conditions: the sampler draws x_T from the seed alone.
  const sampleWith = async (model: Model, name: string) => {
    say(`sampling ${options.samples} × ${sampler} (${name}; ${conditioning.describe})`);
    const denoiser = await openDenoiser(model, iface);
    try {
      return await sample(denoiser, { scheduler, conditions, conditioning, guidance, seed: options.seed, batch: 50, progress: (done, total) => options.stepProgress?.('sampling steps', done, total) });
    } finally {
      await denoiser.release();
    }
  };
  const fpImages = await sampleWith(fp, 'FP');
  const quantImages = await sampleWith(quant, 'quantized');
  const psnr = conditions.map((_, i) => psnrDb(fpImages.subarray(i * perSample, (i + 1) * perSample), quantImages.subarray(i * perSample, (i + 1) * perSample)));
  const finite = psnr.filter(Number.isFinite);
  const mean = finite.reduce((a, b) => a + b, 0) / Math.max(finite.length, 1);
  const se = finite.length > 1 ? Math.sqrt(finite.reduce((a, b) => a + (b - mean) ** 2, 0) / (finite.length - 1) / finite.length) : 0;
  const report: QualityReport = {
    title: `qcompile evaluation: ${options.quant}`,
    generator: 'qcompile eval',
    fp: modelFacts(options.fp, fp),
    quant: modelFacts(options.quant, quant),
    settings: { sampler: scheduler.spec.kind, steps: options.steps, samples: options.samples, seed: options.seed, guidance, conditioning: conditioning.describe },
    ...(options.recipe ? { recipe: options.recipe } : {}),
    metrics: { psnrDb: { mean, min: Math.min(...finite), se } },
  };

  if (options.features) {
    say('scoring samples with the feature extractor');
    const extractor = await FeatureExtractor.open(options.features.model);
    try {
      const dims = [options.samples, ...iface.latent.shape];
      const a = await extractor.extract(fpImages, dims);
      const b = await extractor.extract(quantImages, dims);
      const real = readRealStats(options.features.realMu, options.features.realCov);
      const predicted = (out: typeof a) => conditions.map((_, i) => argmax(out.logits, i * out.classes, out.classes));
      const pa = predicted(a);
      const pb = predicted(b);
      const metrics = report.metrics!;
      metrics.labelAgreement = pa.filter((p, i) => p === pb[i]).length / conditions.length;
      const classOf = conditioning.classOf;
      if (classOf) {
        // The classifier's label against the condition's class: label accuracy for class labels, prompt adherence for prompts.
        const accuracy = (p: number[]) => p.filter((label, i) => label === classOf[conditions[i]!]).length / conditions.length;
        const scored = { fp: accuracy(pa), quant: accuracy(pb) };
        if (iface.conditioning.some((c) => c.kind === 'class-label')) metrics.labelAccuracy = scored;
        else metrics.promptAdherence = scored;
      }
      metrics.fd = { fp: frechetDistance(featureStats(a.features, a.featureDim), real), quant: frechetDistance(featureStats(b.features, b.featureDim), real), samples: options.samples, ...bootstrapFd(a.features, b.features, a.featureDim, real, options.seed) };
    } finally {
      await extractor.release();
    }
  }

  say('eps, guidance-signal and layer SQNR by timestep');
  const denoiser = await openDenoiser(fp, iface);
  let heldOut: { batches: TensorMap[]; positions: number[] };
  try {
    heldOut = await buildCalibrationSet(denoiser, scheduler, conditioning, { samples: 8 * options.steps, batch: 64, strategy: { kind: 'evenly-spaced', count: options.steps }, seed: options.seed + 1, guidance, progress: (done, total) => options.stepProgress?.('held-out trajectories', done, total) });
  } finally {
    await denoiser.release();
  }
  // A layer's output by name in both graphs: its node's output or that of the bias Add after it — as is, or as
  // the backends' MatMulNBits lowering renames it (`<name>_nbits`, bias folded in).
  const compared = layersOf(fp).flatMap((layer) => {
    const out = layer.node.outputs[0]!;
    const base = [out.name, ...out.uses.filter((u) => u.node.opType === 'Add').map((u) => u.node.outputs[0]!.name)];
    const pairs = base.flatMap((n) => [[n, n], [n, `${n}_nbits`]] as const);
    const pair = pairs.find(([, q]) => quant.graph.findValue(q));
    return pair ? [{ layer, fpName: pair[0], quantName: pair[1] }] : [];
  });
  const names = [[iface.output.name, iface.output.name] as const, ...compared.map((c) => [c.fpName, c.quantName] as const)];
  const sqnr = await sqnrByBin(fp, quant, iface, names, heldOut, guidance !== 1);
  const T = scheduler.config.numTrainTimesteps;
  const timesteps = Array.from({ length: BINS }, (_, b) => Math.round(((b + 0.5) * T) / BINS));
  report.epsByTimestep = { timesteps, sqnrDb: sqnr.values[0]!.map(round) };
  if (sqnr.guidance) report.guidanceSignal = { timesteps, sqnrDb: sqnr.guidance.map(round), guidance };
  report.layerSqnr = { layers: compared.map((c) => c.layer.name), timesteps, sqnrDb: sqnr.values.slice(1).map((row) => row.map(round)) };
  report.layers = compiledLayerRows(fp, quant);
  if (options.passTimings) {
    // The steps around the passes keep the names the compile summary gives them, in parentheses.
    const { calibrationMilliseconds, saveMilliseconds, passes } = options.passTimings.timings;
    report.passes = [
      ...(calibrationMilliseconds !== undefined ? [{ name: '(calibration set)', ms: calibrationMilliseconds, statistics: {} }] : []),
      ...passes.map((p) => ({ name: p.pass, ms: p.milliseconds, modified: p.modified, statistics: p.statistics })),
      ...(saveMilliseconds !== undefined ? [{ name: '(save)', ms: saveMilliseconds, statistics: {} }] : []),
    ];
    report.passesSource = options.passTimings.source;
  }

  const preview = (images: Float32Array) => previewChannels(images, [options.samples, ...iface.latent.shape]);
  const grid = (images: Float32Array) => {
    const shown = preview(images);
    return Buffer.from(imageGridPng(shown.images, shown.dims, { cols: conditioning.count > 1 ? Math.min(conditioning.count, 10) : 10, scale: 3 })).toString('base64');
  };
  const note = preview(fpImages).note;
  report.grids = { fpPngBase64: grid(fpImages), quantPngBase64: grid(quantImages), caption: `${sampler}, seed ${options.seed}, conditions dealt round-robin (${conditioning.describe})${note ? `; ${note}` : ''}` };
  return report;
}

/** The 95% bootstrap interval of both FDs: the same resampled sample indices for FP and quantized. */
function bootstrapFd(a: Float32Array, b: Float32Array, dim: number, real: FeatureStats, seed: number): { fpCi: [number, number]; quantCi: [number, number] } {
  const n = a.length / dim;
  const random = seededRandom(seed ^ 0xb007);
  const fds: [number[], number[]] = [[], []];
  const ra = new Float32Array(a.length);
  const rb = new Float32Array(b.length);
  for (let r = 0; r < BOOTSTRAP; r++) {
    for (let i = 0; i < n; i++) {
      const j = Math.floor(random() * n);
      ra.set(a.subarray(j * dim, (j + 1) * dim), i * dim);
      rb.set(b.subarray(j * dim, (j + 1) * dim), i * dim);
    }
    fds[0].push(frechetDistance(featureStats(ra, dim), real));
    fds[1].push(frechetDistance(featureStats(rb, dim), real));
  }
  const interval = (values: number[]): [number, number] => {
    const sorted = values.sort((x, y) => x - y);
    return [round(sorted[Math.floor(0.025 * (BOOTSTRAP - 1))]!), round(sorted[Math.ceil(0.975 * (BOOTSTRAP - 1))]!)];
  };
  return { fpCi: interval(fds[0]), quantCi: interval(fds[1]) };
}

/**
 * SQNR (dB) of each named value, quantized vs FP, per timestep bin (from each row's scheduler position),
 * pooling signal and noise within a bin; the model output is compared on its prediction channels. With `cfg`
 * the rows come in [unconditional, conditional] pairs, and the guidance signal — the difference of the two
 * predictions — is compared too.
 */
async function sqnrByBin(fp: Model, quant: Model, iface: DiffusionInterface, names: (readonly [string, string])[], set: { batches: TensorMap[]; positions: number[] }, cfg: boolean): Promise<{ values: number[][]; guidance?: number[] }> {
  const pooled = () => ({ signal: new Float64Array(BINS), noise: new Float64Array(BINS) });
  const acc = names.map(pooled);
  const signal = pooled();
  const add = (into: ReturnType<typeof pooled>, bin: number, x: ArrayLike<number>, y: ArrayLike<number>) => {
    for (let i = 0; i < x.length; i++) {
      into.signal[bin]! += x[i]! ** 2;
      into.noise[bin]! += (x[i]! - y[i]!) ** 2;
    }
  };
  const executor = new OrtExecutor();
  const a = await executor.prepare(fp, [...new Set(names.map(([n]) => n))]);
  const b = await executor.prepare(quant, [...new Set(names.map(([, n]) => n))]);
  let row0 = 0;
  try {
    for (const feeds of set.batches) {
      const ra = await a.run(feeds);
      const rb = await b.run(feeds);
      const rows = feeds[iface.latent.name]!.dims[0]!;
      const bins = set.positions.slice(row0, row0 + rows).map((p) => Math.min(BINS - 1, Math.floor(p * BINS)));
      row0 += rows;
      names.forEach(([fpName, quantName], k) => {
        let x = ra[fpName]!.data as Float32Array;
        let y = rb[quantName]!.data as Float32Array;
        if (k === 0) {
          x = predictionOf(iface, x, rows);
          y = predictionOf(iface, y, rows);
        }
        const per = x.length / rows;
        bins.forEach((bin, s) => add(acc[k]!, bin, x.subarray(s * per, (s + 1) * per), y.subarray(s * per, (s + 1) * per)));
        if (k === 0 && cfg) {
          if (rows % 2 !== 0) throw new Error('guidance-signal SQNR: a batch splits an [unconditional, conditional] pair');
          for (let s = 0; s < rows; s += 2) {
            const dx = Float32Array.from({ length: per }, (_, i) => x[(s + 1) * per + i]! - x[s * per + i]!);
            const dy = Float32Array.from({ length: per }, (_, i) => y[(s + 1) * per + i]! - y[s * per + i]!);
            add(signal, bins[s]!, dx, dy);
          }
        }
      });
    }
  } finally {
    await a.release();
    await b.release();
  }
  const db = (p: ReturnType<typeof pooled>) => Array.from(p.signal, (v, bin) => (p.noise[bin]! === 0 ? NaN : 10 * Math.log10(v / p.noise[bin]!)));
  return { values: acc.map(db), ...(cfg ? { guidance: db(signal) } : {}) };
}

function round(v: number): number {
  return Number.isFinite(v) ? Number(v.toFixed(2)) : v;
}

function readRealStats(muPath: string, covPath: string): FeatureStats {
  const read = (path: string) => {
    const bytes = readFileSync(path);
    return new Float64Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
  };
  const mu = read(muPath);
  return { dim: mu.length, mu, cov: read(covPath) };
}

function modelFacts(path: string, model: Model): ModelFacts {
  const bytesByDtype: Record<string, number> = {};
  let parameters = 0;
  const files = new Set<string>([path]);
  for (const value of model.graph.initializers.values()) {
    const tensor = value.initializer!;
    const name = dataTypeName(tensor.dtype);
    bytesByDtype[name] = (bytesByDtype[name] ?? 0) + tensor.byteLength;
    parameters += tensor.size;
    if (tensor.data.kind === 'external') files.add(tensor.data.file);
  }
  return { path, fileBytes: [...files].reduce((n, f) => n + statSync(f).size, 0), bytesByDtype, parameters };
}
