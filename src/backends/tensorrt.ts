/**
 * TensorRT target (explicit quantization, via ORT's TensorRT EP or trtexec): symmetric int8 Q/DQ on the
 * inputs of Conv/MatMul/Gemm with per-channel weights on the output axis, int4 weight-only as opset-21
 * blocked DequantizeLinear (whole groups only: TensorRT's block shape divides the weight), floats elsewhere.
 * The lowering keeps the Q/DQ form and then requires `checkTensorRtPlacement` to pass. Asymmetric int8 (TensorRT runs zero point 0 only) is re-expressed
 * symmetrically only under the `requantize` option (`--allow-requantize`). Checked on onnxruntime-node CPU only (no NVIDIA GPU in CI).
 */
import type { Backend, CapabilityTable } from './backend.js';
import { BackendError, checkPlanAgainst } from './backend.js';
import { lowerWithCapabilities } from './lowering.js';
import { checkTensorRtPlacement } from './tensorrt-placement.js';

/** What TensorRT's explicit quantization runs as int8/int4 kernels. */
export const tensorRtCapabilities: CapabilityTable = {
  weights: [
    { ops: ['MatMul', 'Gemm', 'Conv'], bits: [8], granularity: ['per-tensor', 'per-channel'], asymmetric: false, signedOnly: true, form: 'DequantizeLinear int8, zero point 0, per-channel on the output axis' },
    { ops: ['MatMul', 'Gemm'], bits: [4], granularity: ['group'], asymmetric: false, signedOnly: true, groupSizes: [16, 32, 64, 128], wholeGroupsOnly: true, form: 'DequantizeLinear int4 blocked (opset 21, weight-only)' },
    { ops: ['MatMul', 'Gemm', 'Conv'], bits: [8], granularity: ['per-tensor', 'per-channel'], asymmetric: true, optIn: 'requantize', rewrite: 'requantize-symmetric', form: 'int8 sym per-channel on the output axis (requantized: scale max|w|/127)' },
  ],
  activations: [
    { ops: ['MatMul', 'Gemm', 'Conv'], bits: [8], modes: ['static'], asymmetric: false, signedOnly: true, form: 'QuantizeLinear/DequantizeLinear int8, zero point 0, constant scale' },
    { ops: ['MatMul', 'Gemm', 'Conv'], bits: [8], modes: ['static'], asymmetric: true, optIn: 'requantize', rewrite: 'requantize-symmetric', form: 'int8 sym static (requantized: scale max(|lo|, |hi|)/127 of the calibrated range)' },
  ],
  compute: ['fp32', 'fp16'],
  notes: [
    'asymmetric 8-bit weights and static activations are rejected unless --allow-requantize re-expresses them symmetrically (numerics change; each layer is listed)',
    'runtime-scaled (dynamic, per-timestep) activations are rejected',
    'int4 blocked weights need a group size that divides the input channels: a blocked Dequantize scale has the weight\'s dims divided by the block size, so a partial last group is refused', 'fp16 compute: `precision fp16` (convert-float16; Q/DQ stay float32 behind Casts)', 'verified on onnxruntime-node CPU only (no NVIDIA GPU in CI)',
  ],
};

/** The TensorRT backend. */
export const tensorRtBackend: Backend = {
  name: 'tensorrt',
  summary: 'TensorRT explicit quantization: symmetric int8 Q/DQ, int4 blocked weight-only DQ',
  runtime: 'TensorRT 10 (or onnxruntime TensorrtExecutionProvider)',
  capabilities: tensorRtCapabilities,
  checkPlan: (plan, layers, options) => checkPlanAgainst(tensorRtCapabilities, plan, layers, options),
  lower(model, options) {
    const result = lowerWithCapabilities('tensorrt', tensorRtCapabilities, model, options);
    const placement = checkTensorRtPlacement(model);
    if (placement.length > 0) throw new BackendError('tensorrt', placement);
    return result;
  },
};
