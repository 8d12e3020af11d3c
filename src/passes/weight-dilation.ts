/**
 * weight-dilation (DilateQuant): widens each input channel of a layer's weight as far as every output
 * channel's [min, max] range allows, and shrinks the matching activation channel by the same factor — an
 * exact rescaling that leaves per-output-channel weight ranges unchanged while narrowing activation ranges.
 * Needs only the weights. Requires the stamped layers (`layersOf`); folds 1/s via scale-folding.
 */
import { IrError } from '../ir/errors.js';
import { layersOf } from '../quant/identity.js';
import { INPUT_SCALING } from './artifacts.js';
import { definePass } from './pass.js';
import { applyInputScales, readWeight, recordInputScaling, type Absorption, type ScalableLayer } from './scale-folding.js';
import { groupBySharedInput, selectLayers } from './layer-selection.js';

/** Per-input-channel dilation factors s_k ≥ 1 that keep every output channel's weight range unchanged. */
export function dilationFactors(layer: ScalableLayer, maxScale: number): Float32Array {
  const { values, channelsOf } = readWeight(layer);
  const K = layer.inChannels;
  const N = layer.outChannels;
  const rowMax = new Float32Array(N).fill(-Infinity);
  const rowMin = new Float32Array(N).fill(Infinity);
  for (let i = 0; i < values.length; i++) {
    const { n } = channelsOf(i);
    const w = values[i]!;
    if (w > rowMax[n]!) rowMax[n] = w;
    if (w < rowMin[n]!) rowMin[n] = w;
  }
  const s = new Float32Array(K).fill(Infinity);
  const holdsExtreme = new Uint8Array(K);
  for (let i = 0; i < values.length; i++) {
    const { k, n } = channelsOf(i);
    const w = values[i]!;
    if (w === rowMax[n] || w === rowMin[n]) holdsExtreme[k] = 1;
    // Headroom of this element: how far it can grow before it becomes its row's new max (or min).
    if (w > 0) s[k] = Math.min(s[k]!, rowMax[n]! / w);
    else if (w < 0) s[k] = Math.min(s[k]!, rowMin[n]! / w);
  }
  for (let k = 0; k < K; k++) {
    if (holdsExtreme[k] || !Number.isFinite(s[k]!)) s[k] = 1;
    s[k] = Math.min(Math.max(s[k]!, 1), maxScale);
  }
  return s;
}

/** The weight-dilation pass. */
export const weightDilation = definePass({
  name: 'weight-dilation',
  summary: 'DilateQuant Weight Dilation: exact per-input-channel rescaling from the weights alone, folded into the producer',
  options: {
    layers: { type: 'string-list', description: 'layer names to dilate (when given, instead of roles)' },
    roles: { type: 'string-list', description: 'layer roles to dilate (a role group like `attn` matches attn.*)', default: ['attn.qkv', 'mlp.fc1'] },
    maxScale: { type: 'number', description: 'upper bound on a channel factor', default: 1e6 },
  },
  produces: [INPUT_SCALING],
  run(model, options, context) {
    const maxScale = options.maxScale;
    // A bound below 1 would shrink channels (0 made every factor 0 and every eps NaN).
    if (!(maxScale >= 1 && Number.isFinite(maxScale))) throw new IrError('invalid-argument', `weight-dilation: maxScale must be a finite number ≥ 1, got ${maxScale}`);
    const layers = selectLayers(layersOf(model), options);
    const counts: Record<Absorption, number> = { 'adaln-modulation': 0, 'layer-norm-affine': 0, 'inserted-mul': 0 };
    let dilatedChannels = 0;
    let channels = 0;
    let largest = 1;
    for (const group of groupBySharedInput(layers)) {
      const s = new Float32Array(group[0]!.inChannels).fill(Infinity);
      for (const layer of group) dilationFactors(layer, maxScale).forEach((v, k) => (s[k] = Math.min(s[k]!, v)));
      channels += s.length;
      for (const v of s) {
        if (v > 1) dilatedChannels++;
        largest = Math.max(largest, v);
      }
      counts[applyInputScales(group, s)]++;
      recordInputScaling(context.artifacts, 'weight-dilation', group, s);
    }
    return {
      modified: layers.length > 0,
      statistics: {
        layers: layers.length,
        dilatedChannels,
        channels,
        largestFactor: Number(largest.toPrecision(4)),
        foldedIntoModulation: counts['adaln-modulation'],
        foldedIntoLayerNorm: counts['layer-norm-affine'],
        insertedMuls: counts['inserted-mul'],
      },
    };
  },
});
