/** Every recipe default, in one place: the visitor starts from these, JSON recipes are merged onto them. */
import { DEFAULT_FLOAT16_KEEP } from '../passes/convert-float16.js';
import type { ActivationQuantSpec, WeightQuantSpec } from '../quant/plan.js';
import type { Recipe } from './types.js';

/** A recipe with every setting at its default. */
export function defaultRecipe(name: string): Recipe {
  return {
    name,
    target: 'cpu',
    precision: 'fp32',
    float16: { keep: [...DEFAULT_FLOAT16_KEEP] },
    seed: 0,
    diffusion: {
      schedule: { kind: 'sidecar' },
      prediction: 'epsilon',
      sampler: { kind: 'ddim', steps: 50, eta: 0 },
      guidance: 1,
      classes: 0,
    },
    calibrate: { samples: 256, batch: 32, timesteps: { kind: 'uniform' }, range: { kind: 'minmax' }, ema: 0, cache: '' },
    rules: [],
    keep: [],
    transforms: [],
    search: { method: 'evolution', population: 50, topK: 10, mutations: 25, crossovers: 25, mutationRate: 0.1, epochs: 10, fitness: 'eps-error' },
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

/** Defaults of the range methods' parameters. */
export const RANGE_DEFAULTS = { lpP: 2.4, mseP: 2, gridSize: 100, percentile: 99.99 } as const;

/** Defaults of GPTQ rounding. */
export const GPTQ_DEFAULTS = { blockSize: 128, damp: 0.01 } as const;
