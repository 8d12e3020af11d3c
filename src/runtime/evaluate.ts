/**
 * Evaluation of a quantized diffusion model against its FP original, everything from the same seeds: paired
 * sample PSNR, label agreement and Fréchet distance under a user-supplied feature extractor, eps SQNR by
 * timestep, per-layer output SQNR by timestep, sample grids and sizes, the compiled layers' group sizes and
 * scaling factors, and (given the compile's sidecar) pass timings — as a QualityReport.
 */
import { readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Model } from '../ir/core.js';
import { dataTypeName } from '../ir/dtype.js';
import { labelClasses, layersOf } from '../quant/identity.js';
import { loadModelSync } from '../ir/serde.js';
import type { TensorMap } from '../ir/executor.js';
import type { PassTimings } from '../report/compile-record.js';
import type { ModelFacts, QualityReport } from '../report/report.js';
import { buildCalibrationSet, diffusionIO, openDenoiser } from './calibration.js';
import { compiledLayerRows } from './compiled-layers.js';
import { readSidecar, scheduleFromSidecar, type Prediction } from './diffusion.js';
import { OrtExecutor } from './ir-executor.js';
import { FeatureExtractor, argmax, featureStats, frechetDistance, psnrDb, type FeatureStats } from './metrics.js';
import { imageGridPng } from './png-grid.js';
import { sampleImages } from './samplers.js';

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
  /** The compile's pass timings (`<quant>.passes.json`) and where they were read. */
  passTimings?: { source: string; timings: PassTimings };
  progress?: (message: string) => void;
}

const BINS = 10;

/** Runs the evaluation. */
export async function evaluate(options: EvaluateOptions): Promise<QualityReport> {
  const say = options.progress ?? (() => {});
  // The sidecar first: a bad schedule is refused before any model is read.
  const schedule = scheduleFromSidecar(readSidecar(join(dirname(options.fp), 'schedule.json')), options.recipePrediction ? { prediction: options.recipePrediction } : undefined);
  const fp = loadModelSync(options.fp);
  const quant = loadModelSync(options.quant);
  const classes = labelClasses(fp);
  const io = diffusionIO(fp, classes);
  const perSample = io.imageShape.reduce((a, b) => a * b, 1);
  const labels = Array.from({ length: options.samples }, (_, i) => (classes > 0 ? i % classes : 0));

  // Both models start from the same x_T: the sampler draws it from the seed alone.
  const sample = async (model: Model, name: string) => {
    say(`sampling ${options.samples} × DDIM-${options.steps} (${name})`);
    const { denoise, release } = await openDenoiser(model, io);
    try {
      return await sampleImages(denoise, schedule, labels, io.imageShape, { sampler: 'ddim', steps: options.steps, seed: options.seed, batch: 50 });
    } finally {
      await release();
    }
  };
  const fpImages = await sample(fp, 'FP');
  const quantImages = await sample(quant, 'quantized');
  const psnr = labels.map((_, i) => psnrDb(fpImages.subarray(i * perSample, (i + 1) * perSample), quantImages.subarray(i * perSample, (i + 1) * perSample)));
  const finite = psnr.filter(Number.isFinite);
  const report: QualityReport = {
    title: `qcompile evaluation: ${options.quant}`,
    generator: 'qcompile eval',
    fp: modelFacts(options.fp, fp),
    quant: modelFacts(options.quant, quant),
    settings: { sampler: 'ddim', steps: options.steps, samples: options.samples, seed: options.seed },
    ...(options.recipe ? { recipe: options.recipe } : {}),
    metrics: { psnrDb: { mean: finite.reduce((a, b) => a + b, 0) / Math.max(finite.length, 1), min: Math.min(...finite) } },
  };

  if (options.features) {
    say('scoring samples with the feature extractor');
    const extractor = await FeatureExtractor.open(options.features.model);
    try {
      const dims = [options.samples, ...io.imageShape];
      const a = await extractor.extract(fpImages, dims);
      const b = await extractor.extract(quantImages, dims);
      const real = readRealStats(options.features.realMu, options.features.realCov);
      const predicted = (out: typeof a) => labels.map((_, i) => argmax(out.logits, i * out.classes, out.classes));
      const pa = predicted(a);
      const pb = predicted(b);
      report.metrics!.labelAgreement = pa.filter((p, i) => p === pb[i]).length / labels.length;
      if (classes > 0) report.metrics!.labelAccuracy = { fp: pa.filter((p, i) => p === labels[i]).length / labels.length, quant: pb.filter((p, i) => p === labels[i]).length / labels.length };
      report.metrics!.fd = { fp: frechetDistance(featureStats(a.features, a.featureDim), real), quant: frechetDistance(featureStats(b.features, b.featureDim), real), samples: options.samples };
    } finally {
      await extractor.release();
    }
  }

  say('eps and layer SQNR by timestep');
  const { denoise, release } = await openDenoiser(fp, io);
  let heldOut: TensorMap[];
  try {
    heldOut = (await buildCalibrationSet(denoise, schedule, io, { samples: 8 * options.steps, batch: 64, steps: options.steps, strategy: { kind: 'evenly-spaced', count: options.steps }, seed: options.seed + 1 })).batches;
  } finally {
    await release();
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
  const layers = compared.map((c) => c.layer);
  const names = [[io.output, io.output] as const, ...compared.map((c) => [c.fpName, c.quantName] as const)];
  const sqnr = await sqnrByBin(fp, quant, names, heldOut, io.timestep, schedule.T);
  const timesteps = Array.from({ length: BINS }, (_, b) => Math.round(((b + 0.5) * schedule.T) / BINS));
  report.epsByTimestep = { timesteps, sqnrDb: sqnr[0]!.map(round) };
  report.layerSqnr = { layers: layers.map((l) => l.name), timesteps, sqnrDb: sqnr.slice(1).map((row) => row.map(round)) };
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

  const grid = (images: Float32Array) => Buffer.from(imageGridPng(images, [options.samples, ...io.imageShape], { cols: Math.max(1, classes || 10), scale: 3 })).toString('base64');
  report.grids = { fpPngBase64: grid(fpImages), quantPngBase64: grid(quantImages), caption: `DDIM-${options.steps}, seed ${options.seed}, one column per class` };
  return report;
}

/** SQNR (dB) of each named value, quantized vs FP, per timestep bin, pooling signal and noise within a bin. */
async function sqnrByBin(fp: Model, quant: Model, names: (readonly [string, string])[], inputs: TensorMap[], timestep: string, T: number): Promise<number[][]> {
  const signal = names.map(() => new Float64Array(BINS));
  const noise = names.map(() => new Float64Array(BINS));
  const executor = new OrtExecutor();
  const a = await executor.prepare(fp, [...new Set(names.map(([n]) => n))]);
  const b = await executor.prepare(quant, [...new Set(names.map(([, n]) => n))]);
  try {
    for (const feeds of inputs) {
      const ra = await a.run(feeds);
      const rb = await b.run(feeds);
      const ts = Array.from(feeds[timestep]!.data as BigInt64Array, Number);
      names.forEach(([fpName, quantName], k) => {
        const x = ra[fpName]!.data as Float32Array;
        const y = rb[quantName]!.data as Float32Array;
        const per = x.length / ts.length;
        ts.forEach((t, s) => {
          const bin = Math.min(BINS - 1, Math.floor((t * BINS) / T));
          for (let i = s * per; i < (s + 1) * per; i++) {
            signal[k]![bin]! += x[i]! ** 2;
            noise[k]![bin]! += (x[i]! - y[i]!) ** 2;
          }
        });
      });
    }
  } finally {
    await a.release();
    await b.release();
  }
  return names.map((_, k) => Array.from(signal[k]!, (v, bin) => (noise[k]![bin]! === 0 ? NaN : 10 * Math.log10(v / noise[k]![bin]!))));
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
