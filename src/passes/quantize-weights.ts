/**
 * quantize-weights: stores each planned layer's weight as an int8/int4 (or uint) initializer feeding a
 * DequantizeLinear — per-tensor, per-output-channel (axis) or blocked along the input channels (opset 21) —
 * and removes the float weight. Requires a plan (select-layers or a recipe) and the discovered layers; raises
 * the opset to 21 itself when a layer needs blocks or 4 bits. Deferred (external) weights stay deferred:
 * their codes are computed while saving, one weight at a time.
 */
import { GPTQ_CODES } from './artifacts.js';
import { definePass } from './pass.js';
import { quantizePlannedWeights } from './weight-quantization.js';

/** The quantize-weights pass. */
export const quantizeWeights = definePass({
  name: 'quantize-weights',
  summary: "store planned layers' weights as int8/int4 initializers feeding DequantizeLinear",
  options: {},
  reads: [GPTQ_CODES],
  run(model, _options, context) {
    const codes = context.artifacts.get(GPTQ_CODES);
    return quantizePlannedWeights(model, context.plan, codes && { codes }, context.progress);
  },
});
