/**
 * WebGPU target: onnxruntime-web's native WebGPU EP (`onnxruntime-web/webgpu`). Int4 and int8 blocked
 * (group) weights become MatMulNBits (bits 4 / 8); per-tensor and per-channel int8 weights stay
 * DequantizeLinear (both have WebGPU kernels). QuantizeLinear has no WebGPU kernel, so a static Q/DQ would
 * move the graph to CPU: per-tensor int8 activation Q/DQ is lowered to Div/Floor/Where/Clip/Mul fake-quant
 * (Round has no WebGPU kernel either): the int8 grid, computed in float, kept on the GPU; other activation
 * forms are rejected.
 */
import type { Backend, CapabilityTable } from './backend.js';
import { checkPlanAgainst } from './backend.js';
import { lowerWithCapabilities } from './lowering.js';

/** What ORT Web's WebGPU EP runs on the GPU. */
export const webGpuCapabilities: CapabilityTable = {
  weights: [
    { ops: ['MatMul', 'Gemm'], bits: [4], granularity: ['group'], asymmetric: true, groupSizes: [16, 32, 64, 128, 256], form: 'com.microsoft.MatMulNBits (bits 4)', rewrite: 'matmul-nbits' },
    { ops: ['MatMul', 'Gemm'], bits: [8], granularity: ['group'], asymmetric: true, groupSizes: [16, 32, 64, 128, 256], form: 'com.microsoft.MatMulNBits (bits 8)', rewrite: 'matmul-nbits' },
    { ops: ['MatMul', 'Gemm', 'Conv'], bits: [8], granularity: ['per-tensor', 'per-channel'], asymmetric: true, form: 'DequantizeLinear int8 (WebGPU kernel) → float op' },
  ],
  activations: [
    { ops: ['MatMul', 'Gemm', 'Conv'], bits: [8], modes: ['static', 'dynamic'], asymmetric: true, form: 'Div/Floor/Where/Clip/Mul fake-quant, half-to-even (QuantizeLinear and Round have no WebGPU kernel)', rewrite: 'fake-quant' },
  ],
  compute: ['fp32'],
  notes: [
    'int8 group weights run as MatMulNBits bits 8 (checked on SwiftShader: every node on WebGPU, ~1e-6 relative to DequantizeLinear); per-channel int8 stays DequantizeLinear',
    'a group size need not divide the input channels: MatMulNBits takes a partial last block (ORT sizes blocks ceil(K / block_size); bits 4 and 8 at K=320, block 128 checked on SwiftShader, ~4e-7 relative to DequantizeLinear)',
    'int4 activations and per-axis activation scales are rejected', 'SwiftShader runs it for correctness only, never for timings',
  ],
};

/** The ORT Web WebGPU backend. */
export const webGpuBackend: Backend = {
  name: 'webgpu',
  summary: 'onnxruntime-web WebGPU EP: int4/int8 groups → MatMulNBits, int8 activations as fake-quant',
  runtime: 'onnxruntime-web 1.30 (WebGpuExecutionProvider, onnxruntime-web/webgpu)',
  capabilities: webGpuCapabilities,
  checkPlan: (plan, layers, options) => checkPlanAgainst(webGpuCapabilities, plan, layers, options),
  lower: (model, options) => lowerWithCapabilities('webgpu', webGpuCapabilities, model, options),
};
