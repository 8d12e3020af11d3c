/**
 * smooth-quant (Xiao et al.): migrates activation outliers into the weights with per-input-channel factors
 * s_j = max|X_j|^α / max|W_j|^(1−α), an exact rescaling folded into the producer (scale-folding). Requires
 * per-channel input statistics from `calibrate` (the INPUT_CHANNEL_ABSMAX artifact) and the discovered layers.
 */
import { IrError } from '../ir/errors.js';
import { assertFinite } from '../ir/numerics.js';
import { layersOf } from '../quant/identity.js';
import { INPUT_CHANNEL_ABSMAX, INPUT_SCALING } from './artifacts.js';
import { definePass } from './pass.js';
import { applyInputScales, readWeight, recordInputScaling, type Absorption, type ScalableLayer } from './scale-folding.js';
import { groupBySharedInput, selectLayers } from './layer-selection.js';

/** Per-input-channel max |w| over all output channels (and kernel taps). */
export function weightChannelAbsMax(layer: ScalableLayer): Float32Array {
  const { values, channelsOf } = readWeight(layer);
  const out = new Float32Array(layer.inChannels);
  for (let i = 0; i < values.length; i++) {
    const { k } = channelsOf(i);
    const a = Math.abs(values[i]!);
    if (a > out[k]!) out[k] = a;
  }
  return out;
}

/** SmoothQuant factors; channels with no signal on either side keep s = 1. */
export function smoothingFactors(activationAbsMax: Float32Array, weightAbsMax: Float32Array, alpha: number): Float32Array {
  return Float32Array.from(activationAbsMax, (x, j) => {
    const w = weightAbsMax[j]!;
    if (x <= 0 || w <= 0) return 1;
    const s = x ** alpha / w ** (1 - alpha);
    return Number.isFinite(s) && s > 0 ? s : 1;
  });
}

/** The smooth-quant pass. */
export const smoothQuant = definePass({
  name: 'smooth-quant',
  summary: 'SmoothQuant: move activation outliers into weights with s = max|X|^α / max|W|^(1−α), folded into the producer',
  options: {
    layers: { type: 'string-list', description: 'layer names to smooth (when given, instead of roles)' },
    roles: { type: 'string-list', description: 'layer roles to smooth', default: ['attn.qkv', 'mlp.fc1'] },
    alpha: { type: 'number', description: 'migration strength α in [0, 1]', default: 0.5 },
  },
  requires: [INPUT_CHANNEL_ABSMAX],
  produces: [INPUT_SCALING],
  run(model, options, context) {
    const stats = context.artifacts.require(INPUT_CHANNEL_ABSMAX, 'smooth-quant');
    const alpha = options.alpha;
    const layers = selectLayers(layersOf(model), options);
    const counts: Record<Absorption, number> = { 'adaln-modulation': 0, 'layer-norm-affine': 0, 'inserted-mul': 0 };
    for (const group of groupBySharedInput(layers)) {
      const inputName = group[0]!.node.input(0).name;
      const xMax = stats.get(inputName);
      if (!xMax) throw new IrError('invalid-argument', `smooth-quant: no calibration statistics for '${inputName}' (input of ${group[0]!.name})`);
      assertFinite(xMax, `smooth-quant: the per-channel calibration maxima of '${inputName}'`);
      const wMax = new Float32Array(group[0]!.inChannels);
      for (const layer of group) weightChannelAbsMax(layer).forEach((v, j) => (wMax[j] = Math.max(wMax[j]!, v)));
      const s = smoothingFactors(xMax, wMax, alpha);
      counts[applyInputScales(group, s)]++;
      recordInputScaling(context.artifacts, 'smooth-quant', group, s);
      // The layers now read X/s (under the same name when folded, a new one after an inserted Mul).
      stats.set(group[0]!.node.input(0).name, Float32Array.from(xMax, (v, j) => v / s[j]!));
    }
    return {
      modified: layers.length > 0,
      statistics: {
        layers: layers.length,
        foldedIntoModulation: counts['adaln-modulation'],
        foldedIntoLayerNorm: counts['layer-norm-affine'],
        insertedMuls: counts['inserted-mul'],
      },
    };
  },
});
