/**
 * Which noise schedule drives a model, in one place for calibration, `sample`, `eval` and the probe: the
 * recipe's written-out schedule, else (`schedule sidecar`, the default) the `schedule.json` next to the model
 * and then its pipeline folder's `scheduler/scheduler_config.json` (`schedule config`: that file only). What the
 * output predicts is the interface's (the recipe's, the sidecar's or the scheduler config's, in that order). And
 * the guidance scale a run samples with, chosen the same way for all of them.
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { DiffusionInterface } from './interface.js';
import { findPipelineFolder } from './pipeline-folder.js';
import { ScheduleError } from './schedule-math.js';
import { noiseScheduleFromRecipe, noiseScheduleFromSidecar, readSchedulerConfig, type RecipeSchedule } from './scheduler-config.js';
import type { NoiseScheduleConfig } from './scheduler.js';
import { checkRecipePrediction, readSidecar } from './sidecar.js';

/** The noise schedule of the model at `modelPath` (`sidecar`: an explicit schedule.json instead of the one beside it). */
export function noiseScheduleFor(modelPath: string, iface: DiffusionInterface, recipe?: RecipeSchedule, sidecar?: string): NoiseScheduleConfig {
  const written = recipe ? noiseScheduleFromRecipe(recipe) : undefined;
  const chosen = written ?? fromModelFiles(modelPath, recipe, sidecar);
  return { ...chosen, prediction: iface.prediction };
}

function fromModelFiles(modelPath: string, recipe: RecipeSchedule | undefined, sidecarPath = join(dirname(modelPath), 'schedule.json')): NoiseScheduleConfig {
  const configOnly = recipe?.schedule.kind === 'config';
  if (!configOnly && existsSync(sidecarPath)) {
    const sidecar = readSidecar(sidecarPath);
    if (recipe && (recipe.prediction === 'epsilon' || recipe.prediction === 'v')) checkRecipePrediction(sidecar, { prediction: recipe.prediction });
    return noiseScheduleFromSidecar(sidecar);
  }
  const file = findPipelineFolder(modelPath)?.scheduler?.file;
  if (file) {
    const config = readSchedulerConfig(file);
    if (recipe && recipe.prediction !== 'model' && recipe.prediction !== config.prediction) throw new ScheduleError(`the recipe says 'prediction ${recipe.prediction}' but the scheduler config says ${config.prediction}: make them agree, or leave the prediction to the model`, file, 'prediction_type');
    return config;
  }
  throw new ScheduleError(
    configOnly
      ? `the recipe says 'schedule config', and ${modelPath} sits in no pipeline folder with scheduler/scheduler_config.json`
      : `no noise schedule for ${modelPath}: put a schedule.json next to it, keep it in its pipeline folder (scheduler/scheduler_config.json), or write one in the recipe (\`diffusion { schedule linear(beta_start: 0.0001, beta_end: 0.02, steps: 1000) }\`)`,
  );
}

/**
 * The classifier-free guidance scale a run samples (and calibrates) with: the one asked for (a flag, or a recipe's
 * `guidance` other than its default 0), else the sidecar's recommended scale (`guidance.recommended_scale`, as
 * sd-digits ships it), else 1 — no guidance.
 */
export function guidanceFor(modelPath: string, asked?: number, sidecarPath = join(dirname(modelPath), 'schedule.json')): number {
  if (asked !== undefined) return asked;
  if (!existsSync(sidecarPath)) return 1;
  const g = (readSidecar(sidecarPath) as { guidance?: unknown }).guidance;
  const scale = typeof g === 'number' ? g : typeof g === 'object' && g !== null ? (g as { recommended_scale?: unknown }).recommended_scale : undefined;
  return typeof scale === 'number' && scale > 0 ? scale : 1;
}
