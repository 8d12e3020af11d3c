/**
 * quantize-activations: quantizes each planned layer's input activation in the graph, lowered to standard ONNX
 * ops ONNX Runtime runs: static → QuantizeLinear/DequantizeLinear with constant scale and zero point;
 * per-timestep (TPQ) → a [G] table of scales/zero points gathered by the timestep's group, applied per sample
 * (exact for batches of mixed t) as Div/Round/Clip/Mul on a [B,1,…] scale — per-axis Q/DQ on the batch axis is
 * the option `qdq-batch-axis`, but ORT's `all` level fuses it into MatMulIntegerToFloat, which rejects a [B]
 * zero point (bench/tpq-lowering.ts); dynamic (per-sample, per-token,
 * per-token-group) → scales computed in-graph from the live tensor (ReduceMax of |x|, or ReduceMin/Max) and
 * applied as Div/Round/Clip/Mul. Requires the plan and, for static and per-timestep, `calibrate`'s statistics.
 */
import { ACTIVATION_STATS } from './artifacts.js';
import { DEFAULT_ACTIVATION_LOWERING, quantizePlannedActivations } from './activation-quantization.js';
import { definePass } from './pass.js';

/** The quantize-activations pass. */
export const quantizeActivations = definePass({
  name: 'quantize-activations',
  summary: "quantize planned layers' input activations: static Q/DQ, per-timestep tables, or dynamic in-graph scales",
  options: {
    timesteps: { type: 'int', description: 'T of the diffusion schedule, for timestep groups', default: DEFAULT_ACTIVATION_LOWERING.timesteps },
    perTimestepLowering: { type: 'string', description: 'per-timestep tables as per-axis Q/DQ on the batch axis, or as Div/Round/Clip/Mul on a [B,1,…] scale', default: DEFAULT_ACTIVATION_LOWERING.perTimestepLowering, choices: ['fake-quant', 'qdq-batch-axis'] },
  },
  reads: [ACTIVATION_STATS],
  run(model, options, context) {
    return quantizePlannedActivations(model, context.plan, context.artifacts.get(ACTIVATION_STATS), options);
  },
});
