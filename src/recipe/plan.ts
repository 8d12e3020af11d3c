/**
 * Planning: a checked recipe and a model's layers become the quantization plan (per layer) and the pass
 * pipeline that carries it out, in the order the methods need: equivalent scaling first (it changes the
 * weights that later steps quantize), then group-size search, GPTQ Hessians, weights, activations, the
 * float16 conversion (`precision fp16`), clean-up.
 */
import type { Layer } from '../quant/layers.js';
import { KEEP_NONE } from '../passes/convert-float16.js';
import type { QuantPlan } from '../quant/plan.js';
import { selectForTransform } from './select.js';
import type { Recipe, Selection } from './types.js';

/** What compiling a recipe involves. */
export interface RecipePlan {
  plan: QuantPlan;
  /** The pipeline as text (parseable by `--passes`, shown in dumps). */
  pipeline: string;
  /** True when a step needs calibration data (activation statistics, SmoothQuant, GPTQ, group search). */
  needsCalibration: boolean;
}

/** The training timesteps T the recipe's schedule has (a schedule from the model's files is read at compile time; 1000 is what planning assumes). */
export function scheduleSteps(recipe: Recipe): number {
  const schedule = recipe.diffusion.schedule;
  return 'steps' in schedule ? schedule.steps : 1000;
}

/** Plans `recipe` for a model whose layers and selection are given. */
export function planRecipe(recipe: Recipe, layers: readonly Layer[], selection: Selection, sourceName: string): RecipePlan {
  const plan: QuantPlan = new Map();
  for (const layer of layers) {
    const assigned = selection.assignments.get(layer.name);
    if (assigned?.action !== 'quantize') continue;
    const span = assigned.source ? { span: { ...assigned.source, file: sourceName } } : {};
    plan.set(layer.name, { layer: layer.name, ...(assigned.weight ? { weight: assigned.weight } : {}), ...(assigned.input ? { input: assigned.input } : {}), ...span });
  }
  const steps: string[] = [];
  let needsCalibration = false;
  const hasInputs = [...plan.values()].some((p) => p.input);
  if (recipe.transforms.some((t) => t.kind === 'smoothquant') || [...plan.values()].some((p) => p.input && p.input.mode.kind !== 'dynamic')) needsCalibration = true;
  for (const transform of recipe.transforms) {
    const names = selectForTransform(transform, layers).map((l) => l.name);
    if (names.length === 0) continue;
    if (transform.kind === 'dilate') steps.push(`weight-dilation{layers=${names.join('|')},maxScale=${transform.maxScale}}`);
    else {
      steps.push(`calibrate{layers=${names.join('|')},channels=true}`);
      steps.push(`smooth-quant{layers=${names.join('|')},alpha=${transform.alpha}}`);
    }
  }
  const weights = [...plan.values()].filter((p) => p.weight);
  if (weights.some((p) => p.weight!.granularity.kind === 'auto')) {
    needsCalibration = true;
    const s = recipe.search;
    steps.push(`search-group-sizes{method=${s.method},fitness=${s.fitness},population=${s.population},topK=${s.topK},mutations=${s.mutations},crossovers=${s.crossovers},mutationRate=${s.mutationRate},epochs=${s.epochs}}`);
  }
  if (weights.some((p) => p.weight!.rounding.kind === 'gptq')) {
    needsCalibration = true;
    steps.push('collect-hessians');
  }
  if (weights.length > 0) steps.push('quantize-weights');
  if (hasInputs) {
    // Statistics are taken after the weights are quantized: the ranges then describe what the layers will see.
    const T = scheduleSteps(recipe);
    const needsStatistics = [...plan.values()].some((p) => p.input && p.input.mode.kind !== 'dynamic');
    if (needsStatistics) steps.push(`calibrate{ema=${recipe.calibrate.ema},timesteps=${T}}`);
    steps.push(`quantize-activations{timesteps=${T}}`);
  }
  // After quantization (its Q/DQ stay float32, with Casts to the float16 compute around them), before clean-up.
  if (recipe.precision === 'fp16') steps.push(`convert-float16{keep=${recipe.float16.keep.length > 0 ? recipe.float16.keep.join('|') : KEEP_NONE}}`);
  steps.push('cleanup');
  return { plan, pipeline: steps.join(','), needsCalibration };
}
