/**
 * quantize-weights: stores each planned layer's weight as an int8/int4 (or uint) initializer feeding a
 * DequantizeLinear — per-tensor, per-output-channel (axis) or blocked along the input channels (opset 21) —
 * and removes the float weight. Requires a plan (select-layers or a recipe) and the discovered layers; raises
 * the opset to 21 itself when a layer needs blocks or 4 bits. Each float weight is read once (an external one
 * from disk) and only its codes are kept; a large plan's round-to-nearest weights are quantized in worker
 * threads, one per core (weight-quantizer-pool.ts), with the same bits as in-process.
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
