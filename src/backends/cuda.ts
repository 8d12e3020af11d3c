/**
 * CUDA target: onnxruntime's CUDA EP. Int4 blocked weight-only layers become MatMulNBits (the EP's 4-bit
 * GEMV/GEMM kernel); int8 Q/DQ stays for its QDQ handling. Checked structurally and numerically on
 * onnxruntime-node CPU only (same graph semantics): no NVIDIA GPU is available to this project's CI.
 */
import type { Backend, CapabilityTable } from './backend.js';
import { checkPlanAgainst } from './backend.js';
import { lowerWithCapabilities } from './lowering.js';

/** What ORT's CUDA EP runs as low-bit kernels. */
export const cudaCapabilities: CapabilityTable = {
  weights: [
    { ops: ['MatMul', 'Gemm'], bits: [4], granularity: ['group'], asymmetric: true, groupSizes: [16, 32, 64, 128, 256], form: 'com.microsoft.MatMulNBits (bits 4)', rewrite: 'matmul-nbits' },
    { ops: ['MatMul', 'Gemm', 'Conv'], bits: [8], granularity: ['per-tensor', 'per-channel'], asymmetric: false, form: 'DequantizeLinear int8' },
    { ops: ['MatMul', 'Gemm', 'Conv'], bits: [8], granularity: ['per-tensor', 'per-channel'], asymmetric: true, optIn: 'requantize', rewrite: 'requantize-symmetric', form: 'int8 sym per-channel on the output axis (requantized: scale max|w|/127)' },
  ],
  activations: [
    { ops: ['MatMul', 'Gemm', 'Conv'], bits: [8], modes: ['static', 'per-timestep', 'dynamic'], asymmetric: false, form: 'QuantizeLinear/DequantizeLinear int8' },
    { ops: ['MatMul', 'Gemm', 'Conv'], bits: [8], modes: ['static'], asymmetric: true, optIn: 'requantize', rewrite: 'requantize-symmetric', form: 'int8 sym static (requantized: scale max(|lo|, |hi|)/127 of the calibrated range)' },
  ],
  compute: ['fp32', 'fp16'],
  notes: ['a group size need not divide the input channels: MatMulNBits takes a partial last block (ORT sizes blocks ceil(K / block_size); not run on a GPU here)', 'asymmetric 8-bit weights and static activations need --allow-requantize (re-expressed symmetrically; numerics change)', 'fp16 compute: `precision fp16` (convert-float16; Q/DQ stay float32 behind Casts)', 'verified on onnxruntime-node CPU only (no NVIDIA GPU in CI)'],
};

/** The ORT CUDA EP backend. */
export const cudaBackend: Backend = {
  name: 'cuda',
  summary: 'onnxruntime CUDA EP: int4 → MatMulNBits, symmetric int8 Q/DQ',
  runtime: 'onnxruntime (CUDAExecutionProvider)',
  capabilities: cudaCapabilities,
  checkPlan: (plan, layers, options) => checkPlanAgainst(cudaCapabilities, plan, layers, options),
  lower: (model, options) => lowerWithCapabilities('cuda', cudaCapabilities, model, options),
};
