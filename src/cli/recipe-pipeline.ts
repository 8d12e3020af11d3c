/**
 * The CLI glue between a recipe file and the pass pipeline: read and check the recipe against the model,
 * print its diagnostics, plan, and build the calibration batches its steps need.
 */
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { hasErrors, renderDiagnostic } from '../diagnostics.js';
import type { Model } from '../ir/core.js';
import { writeFileAtomic, type OutputTransaction } from '../ir/atomic-file.js';
import { labelClasses, layersOf } from '../quant/identity.js';
import { CALIBRATION_BATCHES } from '../passes/artifacts.js';
import { parsePipeline, type PipelineEntry } from '../passes/pipeline.js';
import type { SampleProbe } from '../ir/executor.js';
import type { QuantPlan } from '../quant/plan.js';
import { passRegistry } from '../passes/registry.js';
import { checkRecipe, checkRecipeAgainstModel, type CheckOptions } from '../recipe/check.js';
import { parseRecipeFile } from '../recipe/parse.js';
import { planRecipe } from '../recipe/plan.js';
import type { Recipe } from '../recipe/types.js';
import { calibrationCacheFileState, decodeCalibrationCache, encodeCalibrationCache, modelFilesSha256, type CalibrationKey } from '../runtime/calibration-cache.js';
import { buildCalibrationSet, diffusionIO, openDenoiser, type CalibrationSet } from '../runtime/calibration.js';
import { makeSchedule, readSidecar, ScheduleError, scheduleFromSidecar, type Schedule } from '../runtime/diffusion.js';
import { sampleImages } from '../runtime/samplers.js';
import type { CliIO } from './command.js';

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

/** The recipe's calibration cache file (`calibrate { cache "FILE" }`, relative to the recipe), if it names one. */
export function recipeCachePath(recipe: Recipe, recipePath: string): string | undefined {
  return recipe.calibrate.cache ? resolve(dirname(recipePath), recipe.calibrate.cache) : undefined;
}

/**
 * The calibration batches a recipe asks for, from the FP model's own DDIM trajectories — or from the recipe's
 * `cache` file when it was recorded for this model and these settings (and is intact); a fresh set is written
 * back to it, staged in `outputs` when given (so it appears with the run's other outputs), else atomically now.
 * Throws OutputPathError when the cache path holds anything but a calibration cache (never read, never replaced).
 */
export async function buildRecipeCalibration(recipe: Recipe, recipePath: string, model: Model, modelPath: string, seed: number, io: CliIO, outputs?: OutputTransaction): Promise<CalibrationSet> {
  const d = recipe.diffusion;
  const schedule = recipeSchedule(recipe, modelPath);
  if (d.sampler.kind !== 'ddim' || d.sampler.eta !== 0) throw new Error('calibration trajectories use DDIM with eta 0: set `sampler ddim(steps: N)` in the recipe');
  const classes = recipeClasses(recipe, model);
  const io_ = diffusionIO(model, classes);
  const cachePath = recipeCachePath(recipe, recipePath);
  const key: CalibrationKey = { modelSha256: cachePath ? modelFilesSha256(model, modelPath) : '', strategy: recipe.calibrate.timesteps, seed, samplerSteps: d.sampler.steps, samples: recipe.calibrate.samples, batch: recipe.calibrate.batch, classes };
  if (cachePath && calibrationCacheFileState(cachePath) === 'cache') {
    const cached = decodeCalibrationCache(readFileSync(cachePath), key, io_);
    if (cached.ok) {
      io.stderr(`calibration: ${cached.set.timesteps.length} samples (${recipe.calibrate.timesteps.kind}) from ${cachePath}\n`);
      return cached.set;
    }
    // Recomputing is always safe (the set is a function of the model and settings), so a bad cache costs time only.
    io.stderr(`qcompile: warning: calibration: not using ${cachePath}: ${cached.reason}; recomputing\n`);
  }
  const { denoise, release } = await openDenoiser(model, io_);
  const started = performance.now();
  try {
    const set = await buildCalibrationSet(denoise, schedule, io_, {
      samples: recipe.calibrate.samples,
      batch: recipe.calibrate.batch,
      steps: d.sampler.steps,
      strategy: recipe.calibrate.timesteps,
      seed,
      progress: (done, total) => {
        if (io.stderrIsTTY) io.stderr(`\r\x1b[Kcalibration trajectories ${done}/${total}`);
      },
    });
    io.stderr(`${io.stderrIsTTY ? '\r\x1b[K' : ''}calibration: ${set.timesteps.length} samples (${recipe.calibrate.timesteps.kind}) in ${((performance.now() - started) / 1000).toFixed(1)} s\n`);
    if (cachePath) {
      const bytes = encodeCalibrationCache(key, set, io_);
      if (outputs) outputs.writeFile(cachePath, bytes);
      else writeFileAtomic(cachePath, bytes);
      io.stderr(`calibration: cached in ${cachePath}\n`);
    }
    return set;
  } finally {
    await release();
  }
}

/** The recipe's diffusion schedule: its own, or the `schedule.json` sidecar next to the model (whose prediction type must match the recipe's). */
function recipeSchedule(recipe: Recipe, modelPath: string): Schedule {
  const d = recipe.diffusion;
  if (d.prediction === 'flow' || d.prediction === 'sample' || d.schedule.kind === 'config' || d.schedule.kind === 'flow') {
    throw new ScheduleError(`the recipe's ${d.prediction === 'flow' || d.prediction === 'sample' ? `'prediction ${d.prediction}'` : `'schedule ${d.schedule.kind}'`} is not taken by compile's calibration sampler yet (it takes a sidecar or a linear, scaled-linear or cosine schedule, epsilon or v)`);
  }
  if (d.schedule.kind === 'sidecar') return scheduleFromSidecar(readSidecar(join(dirname(modelPath), 'schedule.json')), { prediction: d.prediction });
  if (d.schedule.kind === 'cosine') return makeSchedule('cosine', d.schedule.steps, undefined, undefined, d.prediction);
  return makeSchedule(d.schedule.kind, d.schedule.steps, d.schedule.betaStart, d.schedule.betaEnd, d.prediction);
}

function recipeClasses(recipe: Recipe, model: Model): number {
  return recipe.diffusion.classes || labelClasses(model);
}

/** Samples, steps and seed offset of the probe that judges group-size finalists by their images. */
const PROBE = { samples: 64, steps: 20, seedOffset: 0x9e37 } as const;

/**
 * The sample probe a group-size search judges its finalists with: DDIM (η = 0, the recipe's schedule) from
 * seeded noise the calibration never used, labels dealt round-robin; the same noise for every candidate.
 */
export function recipeSampleProbe(recipe: Recipe, model: Model, modelPath: string, seed: number): SampleProbe {
  const schedule = recipeSchedule(recipe, modelPath);
  const classes = recipeClasses(recipe, model);
  const labels = Array.from({ length: PROBE.samples }, (_, i) => (classes > 0 ? i % classes : 0));
  return {
    describe: `${PROBE.samples} samples, DDIM ${PROBE.steps} steps`,
    samples: PROBE.samples,
    async sample(candidate) {
      const io = diffusionIO(candidate, classes);
      const { denoise, release } = await openDenoiser(candidate, io);
      try {
        return await sampleImages(denoise, schedule, labels, io.imageShape, { sampler: 'ddim', steps: PROBE.steps, seed: seed + PROBE.seedOffset, batch: PROBE.samples });
      } finally {
        await release();
      }
    },
  };
}
