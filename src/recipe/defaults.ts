/**
 * Every recipe default, in one place: the values come from the settings table (settings.ts); this module
 * shapes them into the normalized objects the visitor starts from and JSON recipes are merged onto.
 */
import { DEFAULT_FLOAT16_KEEP } from '../passes/convert-float16.js';
import type { ActivationQuantSpec, Granularity, WeightQuantSpec } from '../quant/plan.js';
import { defaultOf } from './settings.js';
import type { Recipe } from './types.js';

/** A recipe with every setting at its default. */
export function defaultRecipe(name: string): Recipe {
  return {
    name,
    target: defaultOf('target'),
    precision: defaultOf('precision'),
    float16: { keep: [...DEFAULT_FLOAT16_KEEP] },
    seed: defaultOf('seed'),
    diffusion: {
      schedule: { kind: 'sidecar' },
      prediction: defaultOf('diffusion.prediction'),
      sampler: { kind: 'ddim', steps: defaultOf('ddim.steps'), eta: defaultOf('ddim.eta') },
      guidance: defaultOf('diffusion.guidance'),
      classes: defaultOf('diffusion.classes'),
      resolution: { height: defaultOf('diffusion.resolution'), width: defaultOf('diffusion.resolution') },
      timestepScale: defaultOf('diffusion.timestep-scale'),
    },
    calibrate: { samples: defaultOf('calibrate.samples'), batch: defaultOf('calibrate.batch'), timesteps: { kind: 'uniform' }, range: { kind: 'minmax' }, ema: defaultOf('calibrate.ema'), cache: '', prompts: '', conditioning: '' },
    rules: [],
    keep: [],
    transforms: [],
    search: {
      method: defaultOf('search.method'),
      population: defaultOf('search.population'),
      topK: defaultOf('search.top'),
      mutations: defaultOf('search.mutations'),
      crossovers: defaultOf('search.crossovers'),
      mutationRate: defaultOf('search.mutation-rate'),
      epochs: defaultOf('search.epochs'),
      fitness: defaultOf('search.fitness'),
      judge: defaultOf('search.judge'),
      judgeSamples: defaultOf('search.judge-samples'),
    },
  };
}

/** The weight spec a bare `weight int8` means. */
export function defaultWeightSpec(bits: number, signed: boolean): WeightQuantSpec {
  return { bits, signed, symmetric: true, granularity: { kind: 'per-channel' }, range: { kind: 'minmax' }, rounding: { kind: 'nearest' } };
}

/** The activation spec a bare `input int8` means (its range defaults to the calibrate section's). */
export function defaultInputSpec(bits: number, range: ActivationQuantSpec['range']): ActivationQuantSpec {
  return { bits, symmetric: false, mode: { kind: 'static' }, range };
}

/** The candidates and budget of a bare `group auto`. */
export function defaultAutoGroup(): Extract<Granularity, { kind: 'auto' }> {
  return { kind: 'auto', candidates: [32, 64, 128, 192, 288], budget: { kind: 'mean-group-size', min: defaultOf('auto.mean') } };
}
