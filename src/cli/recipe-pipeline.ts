/**
 * The CLI glue between a recipe file and the pass pipeline: read and check the recipe against the model,
 * print its diagnostics, plan, and build what its steps need from the model's diffusion interface, the
 * recipe's scheduler and the conditioning (the command line's over the recipe's): the calibration batches
 * and the group-size search's sample probe.
 */
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { hasErrors, renderDiagnostic } from '../diagnostics.js';
import type { Model } from '../ir/core.js';
import { writeFileAtomic, type OutputTransaction } from '../ir/atomic-file.js';
import { layersOf } from '../quant/identity.js';
import { CALIBRATION_BATCHES } from '../passes/artifacts.js';
import { peakRssBytes } from '../passes/pass-manager.js';
import { parsePipeline, type PipelineEntry } from '../passes/pipeline.js';
import type { SampleProbe } from '../ir/executor.js';
import type { QuantPlan } from '../quant/plan.js';
import { passRegistry } from '../passes/registry.js';
import { checkRecipe, checkRecipeAgainstModel, type CheckOptions } from '../recipe/check.js';
import { parseRecipeFile } from '../recipe/parse.js';
import { planRecipe } from '../recipe/plan.js';
import type { Recipe } from '../recipe/types.js';
import { calibrationCacheFileState, conditioningSha256, decodeCalibrationCache, encodeCalibrationCache, modelFilesSha256, type CalibrationKey } from '../runtime/calibration-cache.js';
import { RunRows, cutBatches } from '../runtime/run-rows.js';
import { buildCalibrationSet, type CalibrationSet } from '../runtime/calibration.js';
import { loadConditioning, type ConditioningSet, type ConditioningSources } from '../runtime/diffusion/conditioning.js';
import type { DiffusionInterface } from '../runtime/diffusion/interface.js';
import { guidanceFor, noiseScheduleFor } from '../runtime/diffusion/schedule-source.js';
import { findDiffusionInterface } from '../runtime/diffusion/interface.js';
import { openDenoiser, sample } from '../runtime/diffusion/sampler.js';
import { makeScheduler, type SamplerSpec, type Scheduler } from '../runtime/diffusion/scheduler.js';
import type { ProgressReporter } from '../passes/pass.js';
import type { CliIO } from './command.js';
import { formatBytes } from './format.js';
import type { Progress } from './progress.js';

/** A recipe ready to run. */
export interface PlannedRecipe {
  recipe: Recipe;
  /** The recipe file (its folder anchors relative paths in it). */
  path: string;
  plan: QuantPlan;
  entries: PipelineEntry[];
  pipeline: string;
  needsCalibration: boolean;
}

/** Reads, checks (for the target and lowering options in `check`) and plans `recipePath` for `model`; prints diagnostics; undefined when there were errors. */
export function planRecipeFile(recipePath: string, model: Model, io: CliIO, strict = false, check: CheckOptions = {}): PlannedRecipe | undefined {
  const parsed = parseRecipeFile(recipePath);
  const sources = new Map([[recipePath, parsed.text]]);
  const diagnostics = [...parsed.diagnostics];
  let planned: PlannedRecipe | undefined;
  if (parsed.recipe) {
    const layers = layersOf(model);
    const checked = checkRecipeAgainstModel(parsed.recipe, layers, check);
    diagnostics.push(...checkRecipe(parsed.recipe, { ...check, modelFollows: true }), ...checked.diagnostics);
    if (!hasErrors(diagnostics)) {
      const { plan, pipeline, needsCalibration } = planRecipe(parsed.recipe, layers, checked.selection, recipePath);
      // The compile command provides the calibration batches whenever the recipe needs calibration.
      const entries = parsePipeline(pipeline, passRegistry, { provided: needsCalibration ? [CALIBRATION_BATCHES] : [] });
      planned = { recipe: parsed.recipe, path: recipePath, plan, pipeline, needsCalibration, entries };
    }
  }
  for (const d of diagnostics) io.stderr(`${renderDiagnostic(d, sources)}\n`);
  if (hasErrors(diagnostics) || (strict && diagnostics.length > 0)) return undefined;
  return planned;
}

/** What the command line says over the recipe: conditioning sources and the latent resolution of a dynamic-H/W model. */
export interface DiffusionOverrides extends ConditioningSources {
  resolution?: [number, number];
}

/** A model driven as the recipe says: its interface, the recipe's scheduler, its conditioning and the guidance. */
export interface RecipeDiffusion {
  iface: DiffusionInterface;
  scheduler: Scheduler;
  conditioning: ConditioningSet;
  guidance: number;
}

/** The recipe's calibration cache file (`calibrate { cache "FILE" }`, relative to the recipe), if it names one. */
export function recipeCachePath(recipe: Recipe, recipePath: string): string | undefined {
  return recipe.calibrate.cache ? resolve(dirname(recipePath), recipe.calibrate.cache) : undefined;
}

/**
 * The interface, scheduler, conditioning and guidance the recipe's calibration and probe drive `model` with.
 * The command line's prompts, conditioning and resolution override the recipe's (`calibrate { prompts,
 * conditioning }`, relative to the recipe; `diffusion { resolution }`).
 */
export async function recipeDiffusion(recipe: Recipe, recipePath: string, model: Model, modelPath: string, overrides: DiffusionOverrides = {}): Promise<RecipeDiffusion> {
  const d = recipe.diffusion;
  const fromRecipe = (file: string) => (file ? resolve(dirname(recipePath), file) : undefined);
  const resolution = overrides.resolution ?? (d.resolution.height > 0 ? ([d.resolution.height, d.resolution.width] as [number, number]) : undefined);
  const iface = findDiffusionInterface(model, modelPath, {
    recipe: { ...(d.prediction !== 'model' ? { prediction: d.prediction } : {}), ...(d.classes ? { classes: d.classes } : {}), ...(d.timestepScale !== 1 ? { timestepScale: d.timestepScale } : {}) },
    ...(resolution ? { resolution } : {}),
  });
  const prompts = overrides.prompts ?? fromRecipe(recipe.calibrate.prompts);
  const conditioningDir = overrides.conditioningDir ?? fromRecipe(recipe.calibrate.conditioning);
  const conditioning = await loadConditioning(iface, { ...(prompts ? { prompts } : {}), ...(conditioningDir ? { conditioningDir } : {}) }, modelPath);
  const spec: SamplerSpec = d.sampler.kind === 'ddim' ? { kind: 'ddim', steps: d.sampler.steps, eta: d.sampler.eta } : { kind: d.sampler.kind, steps: d.sampler.steps };
  return { iface, scheduler: makeScheduler(noiseScheduleFor(modelPath, iface, d), spec), conditioning, guidance: guidanceFor(modelPath, d.guidance > 0 ? d.guidance : undefined) };
}

/**
 * The calibration batches a recipe asks for, from the FP model's own trajectories — or from the recipe's
 * `cache` file when it was recorded for this model, these settings and this conditioning (and is intact); a
 * fresh set is written back to it, staged in `outputs` when given (so it appears with the run's other outputs),
 * else atomically now. Throws OutputPathError when the cache path holds anything but a calibration cache.
 */
export async function buildRecipeCalibration(recipe: Recipe, recipePath: string, model: Model, modelPath: string, seed: number, progress: Progress, outputs?: OutputTransaction, overrides: DiffusionOverrides = {}): Promise<CalibrationSet> {
  const diffusion = await recipeDiffusion(recipe, recipePath, model, modelPath, overrides);
  const { scheduler, conditioning, guidance } = diffusion;
  const cachePath = recipeCachePath(recipe, recipePath);
  const key: CalibrationKey = {
    modelSha256: cachePath ? modelFilesSha256(model, modelPath) : '',
    strategy: recipe.calibrate.timesteps,
    seed,
    schedule: scheduler.config,
    sampler: scheduler.spec,
    samples: recipe.calibrate.samples,
    batch: recipe.calibrate.batch,
    conditioning: cachePath ? conditioningSha256(conditioning) : '',
    guidance,
  };
  const described = `${recipe.calibrate.timesteps.kind}; ${conditioning.describe}${guidance !== 1 ? `, guidance ${guidance}` : ''}`;
  if (cachePath && calibrationCacheFileState(cachePath) === 'cache') {
    const cached = decodeCalibrationCache(readFileSync(cachePath), key);
    if (cached.ok) {
      progress.info(`calibration: ${cached.set.timesteps.length} samples (${described}) from ${cachePath}`);
      // A cache recorded before runs were cut to the activation budget may hold larger batches.
      return { ...cached.set, batches: cutBatches(cached.set.batches, new RunRows(model)) };
    }
    // Recomputing is always safe (the set is a function of the model and settings), so a bad cache costs time only.
    progress.print(`qcompile: warning: calibration: not using ${cachePath}: ${cached.reason}; recomputing\n`);
  }
  const runRows = new RunRows(model);
  const denoiser = await openDenoiser(model, diffusion.iface, undefined, runRows);
  const started = performance.now();
  progress.step('calibration trajectories');
  try {
    const set = await buildCalibrationSet(denoiser, scheduler, conditioning, {
      samples: recipe.calibrate.samples,
      batch: recipe.calibrate.batch,
      strategy: recipe.calibrate.timesteps,
      seed,
      guidance,
      runRows,
      progress: (done, total) => progress.update('calibration trajectories', done, total),
    });
    progress.info(`calibration: ${set.timesteps.length} samples (${described}) from ${set.modelRows} model rows in ${((performance.now() - started) / 1000).toFixed(1)} s, peak RSS ${formatBytes(peakRssBytes())}`);
    const fit = set.batches.length > 0 ? runRows.of(set.batches[0]!) : undefined;
    if (fit?.bytesPerRow !== undefined && fit.rows < recipe.calibrate.batch * (guidance !== 1 ? 2 : 1)) {
      const gb = (bytes: number) => `${(bytes / 1e9).toFixed(2)} GB`;
      progress.info(`calibration: model runs cut to ${fit.rows} row${fit.rows === 1 ? '' : 's'} (batch ${recipe.calibrate.batch}${guidance !== 1 ? ', ×2 rows under guidance' : ''}): activations ≈ ${gb(fit.bytesPerRow)} a row at these shapes, within ${gb(runRows.budgetBytes)} a run`);
    }
    if (cachePath) {
      const bytes = encodeCalibrationCache(key, set);
      if (outputs) outputs.writeFile(cachePath, bytes);
      else writeFileAtomic(cachePath, bytes);
      progress.info(`calibration: cached in ${cachePath}`);
    }
    return set;
  } finally {
    await denoiser.release();
  }
}

/** Steps and seed offset of the probe that judges group-size finalists by their images. */
const PROBE = { steps: 20, seedOffset: 0x9e37 } as const;

/**
 * The sample probe a group-size search judges its finalists with (`search { judge images }`): `judge-samples`
 * images with the recipe's sampler at PROBE.steps steps
 * (DDIM η = 0 for a DDIM recipe), its guidance and the model's conditioning dealt round-robin, from seeded
 * noise the calibration never used; the same noise and conditions for every candidate. Each candidate's
 * sampling steps go to `progress`.
 */
export async function recipeSampleProbe(recipe: Recipe, recipePath: string, model: Model, modelPath: string, seed: number, progress: ProgressReporter, overrides: DiffusionOverrides = {}): Promise<SampleProbe> {
  const { iface, scheduler, conditioning, guidance } = await recipeDiffusion(recipe, recipePath, model, modelPath, overrides);
  const probeScheduler = scheduler.spec.kind === 'ddim' ? makeScheduler(scheduler.config, { kind: 'ddim', steps: PROBE.steps, eta: 0 }) : scheduler;
  const samples = recipe.search.judgeSamples;
  const conditions = Array.from({ length: samples }, (_, i) => i % conditioning.count);
  return {
    describe: `${samples} samples, ${probeScheduler.spec.kind.toUpperCase()} ${probeScheduler.timesteps.length} steps${guidance !== 1 ? `, guidance ${guidance}` : ''}`,
    samples,
    async sample(candidate) {
      const denoiser = await openDenoiser(candidate, iface);
      try {
        return await sample(denoiser, { scheduler: probeScheduler, conditions, conditioning, guidance, seed: seed + PROBE.seedOffset, batch: samples, progress: (done, total) => progress('probe sampling steps', done, total) });
      } finally {
        await denoiser.release();
      }
    },
  };
}
