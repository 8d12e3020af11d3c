/**
 * The published JSON Schema of a normalized recipe (`qcompile schema` prints it; grammar/qrecipe.schema.json
 * is generated from it). JSON recipes are merged onto the defaults, then validated against it with ajv.
 */
import { LAYER_ROLES } from '../quant/layers.js';
import { ROLE_GROUPS } from './visitor.js';

const positiveInt = { type: 'integer', minimum: 1 };
const range = {
  oneOf: [
    { type: 'object', required: ['kind'], additionalProperties: false, properties: { kind: { const: 'minmax' } } },
    { type: 'object', required: ['kind', 'percentile'], additionalProperties: false, properties: { kind: { const: 'percentile' }, percentile: { type: 'number', exclusiveMinimum: 0, maximum: 100 } } },
    { type: 'object', required: ['kind', 'p', 'gridSize'], additionalProperties: false, properties: { kind: { const: 'lp' }, p: { type: 'number', exclusiveMinimum: 0 }, gridSize: positiveInt } },
  ],
};
const source = { type: 'object', required: ['file', 'offset', 'length'], properties: { file: { type: 'string' }, offset: { type: 'integer' }, length: { type: 'integer' } } };
const selector = {
  oneOf: [
    { type: 'object', required: ['kind'], additionalProperties: false, properties: { kind: { enum: ['all', 'first', 'last'] } } },
    { type: 'object', required: ['kind', 'role'], additionalProperties: false, properties: { kind: { const: 'role' }, role: { enum: [...LAYER_ROLES, ...ROLE_GROUPS] } } },
    { type: 'object', required: ['kind', 'op'], additionalProperties: false, properties: { kind: { const: 'op' }, op: { type: 'string', minLength: 1 } } },
    { type: 'object', required: ['kind', 'glob'], additionalProperties: false, properties: { kind: { const: 'name' }, glob: { type: 'string', minLength: 1 } } },
    { type: 'object', required: ['kind', 'pattern'], additionalProperties: false, properties: { kind: { const: 'regex' }, pattern: { type: 'string', minLength: 1 } } },
  ],
};
const selectors = { type: 'array', items: selector };
const weight = {
  type: 'object',
  required: ['bits', 'symmetric', 'granularity', 'range', 'rounding'],
  additionalProperties: false,
  properties: {
    bits: { type: 'integer', minimum: 2, maximum: 8 },
    signed: { type: 'boolean' },
    symmetric: { type: 'boolean' },
    granularity: {
      oneOf: [
        { type: 'object', required: ['kind'], additionalProperties: false, properties: { kind: { enum: ['per-tensor', 'per-channel'] } } },
        { type: 'object', required: ['kind', 'size'], additionalProperties: false, properties: { kind: { const: 'group' }, size: positiveInt } },
        {
          type: 'object',
          required: ['kind', 'candidates', 'budget'],
          additionalProperties: false,
          properties: {
            kind: { const: 'auto' },
            candidates: { type: 'array', items: positiveInt, minItems: 1 },
            budget: {
              oneOf: [
                { type: 'object', required: ['kind', 'min'], additionalProperties: false, properties: { kind: { const: 'mean-group-size' }, min: { type: 'number', minimum: 1 } } },
                { type: 'object', required: ['kind', 'max'], additionalProperties: false, properties: { kind: { const: 'average-bits' }, max: { type: 'number', exclusiveMinimum: 0 } } },
              ],
            },
          },
        },
      ],
    },
    range,
    rounding: {
      oneOf: [
        { type: 'object', required: ['kind'], additionalProperties: false, properties: { kind: { const: 'nearest' } } },
        { type: 'object', required: ['kind', 'blockSize', 'damp'], additionalProperties: false, properties: { kind: { const: 'gptq' }, blockSize: positiveInt, damp: { type: 'number', minimum: 0 } } },
      ],
    },
  },
};
const input = {
  type: 'object',
  required: ['bits', 'symmetric', 'mode', 'range'],
  additionalProperties: false,
  properties: {
    bits: { type: 'integer', minimum: 2, maximum: 8 },
    symmetric: { type: 'boolean' },
    mode: {
      oneOf: [
        { type: 'object', required: ['kind'], additionalProperties: false, properties: { kind: { const: 'static' } } },
        { type: 'object', required: ['kind', 'groups'], additionalProperties: false, properties: { kind: { const: 'per-timestep' }, groups: positiveInt } },
        { type: 'object', required: ['kind', 'granularity'], additionalProperties: false, properties: { kind: { const: 'dynamic' }, granularity: { enum: ['per-sample', 'per-token', 'per-token-group'] }, groupSize: { oneOf: [positiveInt, { const: 'weight', description: "the layer's weight group size (searched with group auto)" }] } } },
      ],
    },
    range,
  },
};

/** The JSON Schema (draft 2020-12 subset that ajv's default draft-07 mode reads) of a normalized recipe. */
export const recipeSchema = {
  $schema: 'http://json-schema.org/draft-07/schema#',
  $id: 'https://qcompile.dev/schema/qrecipe.json',
  title: 'qcompile recipe',
  type: 'object',
  required: ['name', 'target', 'precision', 'float16', 'seed', 'diffusion', 'calibrate', 'rules', 'keep', 'transforms', 'search'],
  additionalProperties: false,
  properties: {
    name: { type: 'string' },
    target: { enum: ['cpu', 'webgpu', 'cuda', 'tensorrt'] },
    precision: { enum: ['fp32', 'fp16'] },
    float16: { type: 'object', required: ['keep'], additionalProperties: false, properties: { keep: { type: 'array', items: { type: 'string', minLength: 1 }, uniqueItems: true }, source } },
    seed: { type: 'integer', minimum: 0 },
    diffusion: {
      type: 'object',
      required: ['schedule', 'prediction', 'sampler', 'guidance', 'classes'],
      additionalProperties: false,
      properties: {
        schedule: {
          oneOf: [
            { type: 'object', required: ['kind'], additionalProperties: false, properties: { kind: { const: 'sidecar' } } },
            { type: 'object', required: ['kind', 'betaStart', 'betaEnd', 'steps'], additionalProperties: false, properties: { kind: { enum: ['linear', 'scaled-linear'] }, betaStart: { type: 'number', exclusiveMinimum: 0 }, betaEnd: { type: 'number', exclusiveMinimum: 0 }, steps: positiveInt } },
            { type: 'object', required: ['kind', 'steps'], additionalProperties: false, properties: { kind: { const: 'cosine' }, steps: positiveInt } },
          ],
        },
        prediction: { enum: ['epsilon', 'v'] },
        sampler: {
          oneOf: [
            { type: 'object', required: ['kind', 'steps', 'eta'], additionalProperties: false, properties: { kind: { const: 'ddim' }, steps: positiveInt, eta: { type: 'number', minimum: 0 } } },
            { type: 'object', required: ['kind', 'steps'], additionalProperties: false, properties: { kind: { const: 'ddpm' }, steps: positiveInt } },
          ],
        },
        guidance: { type: 'number', exclusiveMinimum: 0 },
        classes: { type: 'integer', minimum: 0 },
      },
    },
    calibrate: {
      type: 'object',
      required: ['samples', 'batch', 'timesteps', 'range', 'ema', 'cache'],
      additionalProperties: false,
      properties: {
        samples: positiveInt,
        batch: positiveInt,
        timesteps: {
          oneOf: [
            { type: 'object', required: ['kind'], additionalProperties: false, properties: { kind: { enum: ['uniform', 'random-distinct'] } } },
            { type: 'object', required: ['kind', 'count'], additionalProperties: false, properties: { kind: { const: 'evenly-spaced' }, count: positiveInt } },
            { type: 'object', required: ['kind', 'mean', 'std'], additionalProperties: false, properties: { kind: { const: 'ndtc' }, mean: { type: 'number', minimum: 0, maximum: 1 }, std: { type: 'number', exclusiveMinimum: 0 } } },
          ],
        },
        range,
        ema: { type: 'number', minimum: 0, exclusiveMaximum: 1 },
        cache: { type: 'string' },
      },
    },
    rules: {
      type: 'array',
      items: { type: 'object', required: ['select', 'except'], additionalProperties: false, properties: { select: selectors, except: selectors, weight, input, source } },
    },
    keep: { type: 'array', items: { type: 'object', required: ['select', 'except'], additionalProperties: false, properties: { select: selectors, except: selectors, source } } },
    transforms: {
      type: 'array',
      items: {
        type: 'object',
        required: ['kind', 'select', 'except'],
        properties: { kind: { enum: ['smoothquant', 'dilate'] }, alpha: { type: 'number', minimum: 0, maximum: 1 }, maxScale: { type: 'number', minimum: 1 }, select: selectors, except: selectors, source },
      },
    },
    search: {
      type: 'object',
      required: ['method', 'population', 'topK', 'mutations', 'crossovers', 'mutationRate', 'epochs', 'fitness'],
      additionalProperties: false,
      properties: {
        method: { enum: ['evolution', 'greedy'] },
        population: { type: 'integer', minimum: 2 },
        topK: positiveInt,
        mutations: { type: 'integer', minimum: 0 },
        crossovers: { type: 'integer', minimum: 0 },
        mutationRate: { type: 'number', minimum: 0, maximum: 1 },
        epochs: { type: 'integer', minimum: 0 },
        fitness: { enum: ['eps-error', 'layer-error'] },
      },
    },
  },
} as const;
