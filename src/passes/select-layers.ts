/**
 * select-layers: fills the quantization plan from pass options, for pipelines written as text (recipes fill
 * the plan directly). Layers are matched by role (`attn` selects `attn.qkv`, `attn.out`, `attn.cross.k`, …) or by name; their
 * weight spec is set, any activation spec already planned is kept. Requires the discovered layers (layers.ts).
 */
import { IrError } from '../ir/errors.js';
import { layersOf } from '../quant/identity.js';
import { selectLayersByRole } from './layer-selection.js';
import { definePass, type OptionValues, type PassResult } from './pass.js';
import type { Granularity, RangeMethod, WeightQuantSpec } from '../quant/plan.js';

/** The select-layers pass. */
export const selectLayers = definePass({
  name: 'select-layers',
  summary: 'plan weight quantization for the layers matching roles or names (textual pipelines)',
  options: {
    roles: { type: 'string-list', description: "layer roles, or role groups ('attn' = attn.*); '*' for all", default: ['attn', 'mlp', 'adaln'] },
    layers: { type: 'string-list', description: 'layer names to select in addition to the roles' },
    bits: { type: 'int', description: 'weight bits (4 or 8)', default: 8 },
    granularity: { type: 'string', description: 'scale sharing (default per-channel, or group when group=SIZE)', choices: ['per-tensor', 'per-channel', 'group'] },
    group: { type: 'int', description: 'group size along the input channels (implies granularity=group)' },
    symmetric: { type: 'boolean', description: 'symmetric (zero point 0) or asymmetric ranges', default: true },
    signed: { type: 'boolean', description: 'int storage (true) or uint (false)', default: true },
    range: { type: 'string', description: 'range choice', default: 'minmax', choices: ['minmax', 'lp'] },
    p: { type: 'number', description: 'exponent of the L_p error for range=lp', default: 2.4 },
    grid: { type: 'int', description: 'shrink candidates 1 - 0.01 i for range=lp', default: 100 },
  },
  run(model, options, context): PassResult {
    const spec = weightSpecFrom(options);
    const layers = layersOf(model);
    const names = options.layers ?? [];
    for (const name of names) {
      if (!layers.some((l) => l.name === name)) throw new IrError('invalid-argument', `select-layers: no layer named '${name}'`);
    }
    const chosen = [...new Set([...selectLayersByRole(layers, options.roles), ...layers.filter((l) => names.includes(l.name))])];
    for (const layer of chosen) {
      const previous = context.plan.get(layer.name);
      context.plan.set(layer.name, { ...previous, layer: layer.name, weight: spec });
    }
    return { modified: false, statistics: { layers_selected: chosen.length } };
  },
});

/** The weight spec that select-layers' options describe. */
export function weightSpecFrom(options: OptionValues<typeof selectLayers.options>): WeightQuantSpec {
  const bits = options.bits;
  if (bits !== 4 && bits !== 8) throw new IrError('invalid-argument', `select-layers: bits must be 4 or 8, got ${bits}`);
  const group = options.group;
  let granularity: Granularity;
  if (group !== undefined) {
    if (options.granularity !== undefined && options.granularity !== 'group') throw new IrError('invalid-argument', `select-layers: group=${group} contradicts granularity=${options.granularity}`);
    if (group <= 0) throw new IrError('invalid-argument', `select-layers: group must be positive, got ${group}`);
    granularity = { kind: 'group', size: group };
  } else if (options.granularity === 'group') {
    throw new IrError('invalid-argument', 'select-layers: granularity=group needs group=SIZE');
  } else {
    granularity = { kind: options.granularity ?? 'per-channel' };
  }
  const range: RangeMethod = options.range === 'lp' ? { kind: 'lp', p: options.p, gridSize: options.grid } : { kind: 'minmax' };
  return { bits, symmetric: options.symmetric, signed: options.signed, granularity, range, rounding: { kind: 'nearest' } };
}
