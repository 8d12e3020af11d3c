/**
 * CPU target: onnxruntime-node with graph optimization `all`. Int4 blocked weight-only layers become
 * `MatMulNBits` (ORT's 4-bit kernel; accuracy_level chooses float or int8 activations); int8 Q/DQ stays
 * as written, because ORT's QDQ fusion turns it into MatMulIntegerToFloat / QLinearMatMul / QLinearConv.
 */
import type { Backend, CapabilityTable } from './backend.js';
import { checkPlanAgainst } from './backend.js';
import { lowerWithCapabilities } from './lowering.js';

/** What onnxruntime-node's CPU EP runs as low-bit kernels. */
export const cpuCapabilities: CapabilityTable = {
  weights: [
    { ops: ['MatMul', 'Gemm'], bits: [4], granularity: ['group'], asymmetric: true, groupSizes: [16, 32, 64, 128, 256], form: 'com.microsoft.MatMulNBits (bits 4)', rewrite: 'matmul-nbits' },
    { ops: ['MatMul', 'Gemm', 'Conv'], bits: [5, 6, 7, 8], granularity: ['per-tensor', 'per-channel', 'group'], asymmetric: true, form: 'DequantizeLinear int8 (QDQ fusion: MatMulIntegerToFloat / QLinearMatMul / QLinearConv; 5–7-bit grids in int8 codes, groups as blocked DQ)' },
    { ops: ['MatMul', 'Gemm', 'Conv'], bits: [2, 3, 4], granularity: ['per-tensor', 'per-channel', 'group'], asymmetric: true, form: 'DequantizeLinear int4 (opset 21; blocks that are not a MatMulNBits size, and per-channel, stay DQ)' },
  ],
  activations: [
    { ops: ['MatMul', 'Gemm', 'Conv'], bits: [8], modes: ['static', 'per-timestep', 'dynamic'], asymmetric: true, form: 'QuantizeLinear/DequantizeLinear int8 (fused with the weight Q/DQ)' },
  ],
  compute: ['fp32'],
  notes: ['a group size need not divide the input channels: MatMulNBits and blocked DequantizeLinear take a partial last group (ORT sizes blocks ceil(K / block_size))', 'runtime scales (per-timestep tables, dynamic) fuse at the same speed as constant ones', 'per-row asymmetric runtime zero points need session.disable_quant_qdq'],
};

/** The onnxruntime-node CPU backend. */
export const cpuBackend: Backend = {
  name: 'cpu',
  summary: 'onnxruntime-node CPU EP: int4 → MatMulNBits, int8 Q/DQ for ORT QDQ fusion',
  runtime: 'onnxruntime-node (CPUExecutionProvider)',
  capabilities: cpuCapabilities,
  checkPlan: (plan, layers, options) => checkPlanAgainst(cpuCapabilities, plan, layers, options),
  lower: (model, options) => lowerWithCapabilities('cpu', cpuCapabilities, model, options),
};
