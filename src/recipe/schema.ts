/**
 * The JSON Schema of a normalized recipe, built from the settings table: `qcompile schema` prints it with the
 * table's bounds (grammar/qrecipe.schema.json is generated from it). JSON recipes are merged onto the defaults
 * and checked against its structure alone (`withBounds: false`); their values then go through
 * `validateSettings`, the same check text recipes get, so both forms report a bound alike.
 */
import { LAYER_ROLES, ROLE_GROUPS } from '../quant/layers.js';
import { LIMITS, settingSchema, SETTINGS, type SettingId } from './settings.js';

/** The JSON Schema (draft-07) of a normalized recipe; without bounds, only the shape and the types. */
export function buildRecipeSchema(withBounds: boolean): Record<string, unknown> {
  const num = (id: SettingId): Record<string, unknown> => {
    const s = SETTINGS[id];
    if (withBounds) return settingSchema(id);
    // Integer-ness is a bound too: validateSettings judges it, with the text form's message.
    return { type: s.kind === 'enum' ? 'string' : 'number' };
  };
  const range = {
    oneOf: [
      { type: 'object', required: ['kind'], additionalProperties: false, properties: { kind: { const: 'minmax' } } },
      { type: 'object', required: ['kind', 'percentile'], additionalProperties: false, properties: { kind: { const: 'percentile' }, percentile: num('percentile.p') } },
      { type: 'object', required: ['kind', 'p', 'gridSize'], additionalProperties: false, properties: { kind: { const: 'lp' }, p: num('lp.p'), gridSize: num('lp.grid') } },
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
      bits: num('weight.bits'),
      signed: { type: 'boolean' },
      symmetric: { type: 'boolean' },
      granularity: {
        oneOf: [
          { type: 'object', required: ['kind'], additionalProperties: false, properties: { kind: { enum: ['per-tensor', 'per-channel'] } } },
          { type: 'object', required: ['kind', 'size'], additionalProperties: false, properties: { kind: { const: 'group' }, size: num('group.size') } },
          {
            type: 'object',
            required: ['kind', 'candidates', 'budget'],
            additionalProperties: false,
            properties: {
              kind: { const: 'auto' },
              candidates: { type: 'array', items: num('auto.candidate'), minItems: 1, maxItems: LIMITS.list.max },
              budget: {
                oneOf: [
                  { type: 'object', required: ['kind', 'min'], additionalProperties: false, properties: { kind: { const: 'mean-group-size' }, min: num('auto.mean') } },
                  { type: 'object', required: ['kind', 'max'], additionalProperties: false, properties: { kind: { const: 'average-bits' }, max: num('auto.bits') } },
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
          { type: 'object', required: ['kind', 'blockSize', 'damp'], additionalProperties: false, properties: { kind: { const: 'gptq' }, blockSize: num('gptq.block'), damp: num('gptq.damp') } },
        ],
      },
    },
  };
  const input = {
    type: 'object',
    required: ['bits', 'symmetric', 'mode', 'range'],
    additionalProperties: false,
    properties: {
      bits: num('input.bits'),
      symmetric: { type: 'boolean' },
      mode: {
        oneOf: [
          { type: 'object', required: ['kind'], additionalProperties: false, properties: { kind: { const: 'static' } } },
          { type: 'object', required: ['kind', 'groups'], additionalProperties: false, properties: { kind: { const: 'per-timestep' }, groups: num('per-timestep.groups') } },
          { type: 'object', required: ['kind', 'granularity'], additionalProperties: false, properties: { kind: { const: 'dynamic' }, granularity: { enum: ['per-sample', 'per-token', 'per-token-group'] }, groupSize: { oneOf: [num('per-token-group.size'), { const: 'weight', description: "the layer's weight group size (searched with group auto)" }] } } },
        ],
      },
      range,
    },
  };

  return {
    $schema: 'http://json-schema.org/draft-07/schema#',
    $id: 'https://qcompile.dev/schema/qrecipe.json',
    title: 'qcompile recipe',
    type: 'object',
    required: ['name', 'target', 'precision', 'float16', 'seed', 'diffusion', 'calibrate', 'rules', 'keep', 'transforms', 'search'],
    additionalProperties: false,
    properties: {
      name: { type: 'string' },
      target: num('target'),
      precision: num('precision'),
      float16: { type: 'object', required: ['keep'], additionalProperties: false, properties: { keep: { type: 'array', items: { type: 'string', minLength: 1 }, uniqueItems: true }, source } },
      seed: num('seed'),
      diffusion: {
        type: 'object',
        required: ['schedule', 'prediction', 'sampler', 'guidance', 'classes', 'resolution', 'timestepScale'],
        additionalProperties: false,
        properties: {
          schedule: {
            oneOf: [
              { type: 'object', required: ['kind'], additionalProperties: false, properties: { kind: { enum: ['sidecar', 'config'] } } },
              { type: 'object', required: ['kind', 'betaStart', 'betaEnd', 'steps'], additionalProperties: false, properties: { kind: { enum: ['linear', 'scaled-linear'] }, betaStart: num('schedule.start'), betaEnd: num('schedule.end'), steps: num('schedule.steps') } },
              { type: 'object', required: ['kind', 'steps'], additionalProperties: false, properties: { kind: { const: 'cosine' }, steps: num('schedule.steps') } },
              { type: 'object', required: ['kind', 'shift', 'steps'], additionalProperties: false, properties: { kind: { const: 'flow' }, shift: num('schedule.shift'), steps: num('schedule.steps') } },
            ],
          },
          prediction: num('diffusion.prediction'),
          sampler: {
            oneOf: [
              { type: 'object', required: ['kind', 'steps', 'eta'], additionalProperties: false, properties: { kind: { const: 'ddim' }, steps: num('ddim.steps'), eta: num('ddim.eta') } },
              ...(['ddpm', 'euler', 'flow-euler'] as const).map((kind) => ({ type: 'object', required: ['kind', 'steps'], additionalProperties: false, properties: { kind: { const: kind }, steps: num(`${kind}.steps`) } })),
            ],
          },
          guidance: num('diffusion.guidance'),
          classes: num('diffusion.classes'),
          resolution: { type: 'object', required: ['height', 'width'], additionalProperties: false, properties: { height: num('diffusion.resolution'), width: num('diffusion.resolution') } },
          timestepScale: num('diffusion.timestep-scale'),
        },
      },
      calibrate: {
        type: 'object',
        required: ['samples', 'batch', 'timesteps', 'range', 'ema', 'cache', 'prompts', 'conditioning'],
        additionalProperties: false,
        properties: {
          samples: num('calibrate.samples'),
          batch: num('calibrate.batch'),
          timesteps: {
            oneOf: [
              { type: 'object', required: ['kind'], additionalProperties: false, properties: { kind: { enum: ['uniform', 'random-distinct'] } } },
              { type: 'object', required: ['kind', 'count'], additionalProperties: false, properties: { kind: { const: 'evenly-spaced' }, count: num('evenly-spaced.count') } },
              { type: 'object', required: ['kind', 'mean', 'std'], additionalProperties: false, properties: { kind: { const: 'ndtc' }, mean: num('ndtc.mean'), std: num('ndtc.std') } },
            ],
          },
          range,
          ema: num('calibrate.ema'),
          cache: { type: 'string' },
          prompts: { type: 'string', description: 'prompts file (one a line), relative to the recipe; empty: the model folder\'s' },
          conditioning: { type: 'string', description: 'folder of precomputed conditioning (.npy), relative to the recipe; empty: none' },
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
          properties: { kind: { enum: ['smoothquant', 'dilate'] }, alpha: num('smoothquant.alpha'), maxScale: num('dilate.max'), select: selectors, except: selectors, source },
        },
      },
      search: {
        type: 'object',
        required: ['method', 'population', 'topK', 'mutations', 'crossovers', 'mutationRate', 'epochs', 'fitness', 'judge', 'judgeSamples'],
        additionalProperties: false,
        properties: {
          method: num('search.method'),
          population: num('search.population'),
          topK: num('search.top'),
          mutations: num('search.mutations'),
          crossovers: num('search.crossovers'),
          mutationRate: num('search.mutation-rate'),
          epochs: num('search.epochs'),
          fitness: num('search.fitness'),
          judge: num('search.judge'),
          judgeSamples: num('search.judge-samples'),
        },
      },
    },
  };
}

/** The published schema (with the table's bounds). */
export const recipeSchema = buildRecipeSchema(true);
