/**
 * CPU target: onnxruntime-node with graph optimization `all`. Int4 and int8 blocked (group) layers become
 * `MatMulNBits` (ORT's low-bit kernel; accuracy_level 4 — int8 activations — where the recipe quantizes the
 * layer's input to int8, else 0, float activations: left blocked, ORT would fuse int8 groups itself at its
 * session default, accuracy 4); int8 Q/DQ stays as written, because ORT's QDQ fusion turns it into
 * MatMulIntegerToFloat / QLinearMatMul / QLinearConv — except a Gemm with a float bias, which ORT leaves
 * unfused, so it becomes MatMulIntegerToFloat + Add (gemm-as-matmul.ts). `cpuKernels` says which kernel each lowered
 * layer runs as, which forms ORT runs slower than the float layer, and which integer kernels saturate on x86
 * CPUs without VNNI (the compile summary warns).
 */
import type { Model } from '../ir/core.js';
import { Op, isOp } from '../ir/ops.js';
import type { Backend, CapabilityTable, KernelGroup } from './backend.js';
import { checkPlanAgainst } from './backend.js';
import { lowerWithCapabilities } from './lowering.js';
import { findQuantizedWeights } from '../quant/quantized-forms.js';
import { isInt8QdqGemm, rewriteGemmAsMatMulInteger, type UnsignedInputs } from './gemm-as-matmul.js';
import { activationCodes, blockedWeight, codeBits, integerKernelOf, kernelSaturatesWithoutVnni, weightCodes } from '../quant/integer-kernels.js';

/** What onnxruntime-node's CPU EP runs as low-bit kernels. */
export const cpuCapabilities: CapabilityTable = {
  weights: [
    { ops: ['MatMul', 'Gemm'], bits: [4, 8], granularity: ['group'], asymmetric: true, groupSizes: [16, 32, 64, 128, 256], form: 'com.microsoft.MatMulNBits (bits 4 or 8; accuracy_level 4 where the input is int8-quantized, else 0; a dynamic sym int8 per-token-group input of the block size is quantized by the kernel itself)', rewrite: 'matmul-nbits', int8InputAccuracyLevel: 4, quantizesInt8GroupInput: true },
    { ops: ['MatMul', 'Gemm', 'Conv'], bits: [5, 6, 7, 8], granularity: ['per-tensor', 'per-channel', 'group'], asymmetric: true, form: 'DequantizeLinear int8 (QDQ fusion: MatMulIntegerToFloat / QLinearMatMul / QLinearConv; 5–7-bit grids in int8 codes, groups as blocked DQ)' },
    { ops: ['MatMul', 'Gemm', 'Conv'], bits: [2, 3, 4], granularity: ['per-tensor', 'per-channel', 'group'], asymmetric: true, form: 'DequantizeLinear int4 (opset 21; blocks that are not a MatMulNBits size, and per-channel, stay DQ)' },
  ],
  activations: [
    { ops: ['MatMul', 'Gemm', 'Conv'], bits: [8], modes: ['static', 'per-timestep', 'dynamic'], asymmetric: true, form: 'QuantizeLinear/DequantizeLinear int8 (fused with the weight Q/DQ)' },
  ],
  compute: ['fp32'],
  notes: [
    'a group size need not divide the input channels: MatMulNBits and blocked DequantizeLinear take a partial last group (ORT sizes blocks ceil(K / block_size))',
    'runtime scales (per-timestep tables, dynamic) fuse at the same speed as constant ones',
    'per-row asymmetric runtime zero points need session.disable_quant_qdq',
    'a recipe permits int8 activations in MatMulNBits (accuracy_level 4) by quantizing the layer input to int8; weight-only layers keep float activations (accuracy_level 0)',
    'ORT fuses a Q/DQ Conv into QLinearConv only when a QuantizeLinear follows it, and has no weight-only int8 Conv or MatMul kernel: those run DequantizeLinear + float op, slower than float',
  ],
};

/** The onnxruntime-node CPU backend. */
export const cpuBackend: Backend = {
  name: 'cpu',
  summary: 'onnxruntime-node CPU EP: int4 → MatMulNBits, int8 Q/DQ for ORT QDQ fusion',
  runtime: 'onnxruntime-node (CPUExecutionProvider)',
  capabilities: cpuCapabilities,
  checkPlan: (plan, layers, options) => checkPlanAgainst(cpuCapabilities, plan, layers, options),
  lower: (model, options) => {
    // Layer names by op node, read before a rewrite (MatMulNBits is `<op>_nbits`, MatMulIntegerToFloat
    // `<op>_integer`) replaces the op and its weight DQ.
    const weights = findQuantizedWeights(model);
    const layerNames = new Map(weights.map((w) => [w.node.name, w.name]));
    const gemms = weights.filter(isInt8QdqGemm);
    const unsigned: UnsignedInputs = new Map();
    for (const gemm of gemms) rewriteGemmAsMatMulInteger(gemm, unsigned);
    const result = lowerWithCapabilities('cpu', cpuCapabilities, model, options);
    if (gemms.length > 0) {
      model.requireOpset('com.microsoft', 1);
      Object.assign(result, { modified: true, statistics: { ...result.statistics, gemm_as_matmul_integer: gemms.length } });
    }
    return { ...result, kernels: cpuKernels(model, layerNames) };
  },
};

const DEQUANTIZED_EVERY_RUN = 'ORT dequantizes the weights on every run before the float kernel';
/** Measured by bench/latency/conv-forms.ts and bench/latency.ts (`w4-load`). */
const FOLDED_AT_LOAD = 'with the session option session.disable_quant_qdq=1 ORT folds a weight-only DequantizeLinear into a float constant at session load instead: float speed and float memory at run time, the quantized bytes on disk';
/** Measured by bench/latency/nbits-forms.ts and bench/latency.ts (ORT 1.30, 2 threads, AVX-512 VNNI; docs/backends.md). */
const FLOAT_ACTIVATION_NBITS =
  "at accuracy_level 0 ORT dequantizes weight blocks into an fp32 GEMM, slower than the float MatMul (DiT-XL/2 fc1 at 512 rows: 0.91x; 16 rows: 0.84x); quantizing the layers' inputs to int8 (`input int8`, or `dynamic per-token-group(size: weight)`, which the kernel computes itself) permits accuracy_level 4 (1.00x at 512 rows, 14x at 16)";

/** Measured by test/runtime/exact-int8.test.ts and bench/latency/int8-saturation.ts (docs/backends.md). */
const U8S8_SATURATION =
  "on x86 CPUs without VNNI (AVX2; AVX-512 before VNNI) ORT's uint8×int8 kernels add pairs of products in saturating int16, and these int8 weights have codes beyond ±64 (dit-digits W8A8 on AVX2: eps 18 dB SQNR against FP instead of 40+); `weight int7` (codes within ±64) is exact and as fast on every CPU, `weight uint8` exact at about float speed on a VNNI CPU";

/**
 * The ORT CPU kernel each quantized layer of a lowered graph runs as, grouped by kernel in graph order: what
 * ORT's QDQ transformers (graph optimization `all`) make of each Q/DQ pattern, checked against ORT's profiler
 * by bench/latency.ts and test/backends/cpu-kernels.test.ts. Layers are named by `layerNames` (op node name →
 * layer name), else by their node; float layers are not listed.
 */
export function cpuKernels(model: Model, layerNames: ReadonlyMap<string, string> = new Map()): KernelGroup[] {
  const groups = new Map<string, KernelGroup>();
  const add = (layer: string, kernel: string, slowerThanFloat?: string, inexactOn?: string): void => {
    const key = inexactOn ? `${kernel}\n${inexactOn}` : kernel;
    let group = groups.get(key);
    if (!group) groups.set(key, (group = { kernel, layers: [], ...(slowerThanFloat ? { slowerThanFloat } : {}), ...(inexactOn ? { inexactOn } : {}) }));
    group.layers.push(layer);
  };
  for (const node of model.graph.nodes) {
    const integer = integerKernelOf(node);
    if (integer) {
      const op = node.name.replace(/_integer$/, '');
      add(layerNames.get(op) ?? op, integer.kernel, undefined, kernelSaturatesWithoutVnni(integer) ? U8S8_SATURATION : undefined);
      continue;
    }
    if (isOp(node, Op.MatMulNBits)) {
      const op = node.name.replace(/_nbits$/, '');
      const accuracyLevel = node.intAttr('accuracy_level', 0);
      add(layerNames.get(op) ?? op, `MatMulNBits(${node.intAttr('bits', 4)}b, acc ${accuracyLevel})`, accuracyLevel === 0 ? FLOAT_ACTIVATION_NBITS : undefined);
      continue;
    }
    if (!(isOp(node, Op.MatMul) || isOp(node, Op.Gemm) || isOp(node, Op.Conv))) continue;
    const weightBits = codeBits(weightCodes(node.inputs[1]));
    const inputBits = codeBits(activationCodes(node.input(0)));
    if (weightBits === undefined && inputBits === undefined) continue;
    const name = layerNames.get(node.name) ?? node.name;
    if (weightBits === 8 && inputBits === 8 && !blockedWeight(node.inputs[1]!)) {
      // Not an integer kernel (integerKernelOf): a Conv without a QuantizeLinear after it, or a Gemm.
      if (isOp(node, Op.Conv)) add(name, 'DequantizeLinear + Conv (float)', 'ORT fuses a Q/DQ Conv into QLinearConv only when a QuantizeLinear follows it; without one, weights and inputs are dequantized on every run');
      else add(name, 'DequantizeLinear + Gemm (float)', 'ORT fuses a Q/DQ Gemm into QGemm only with an int32-quantized bias and plain attributes; without, weights and inputs are dequantized on every run');
    } else if (weightBits === 8 && inputBits === undefined && isOp(node, Op.MatMul) && !blockedWeight(node.inputs[1]!)) {
      // ORT's DQMatMulToMatMulNBits fuses it, at the session's qdq_matmulnbits_accuracy_level (default 4).
      add(name, 'MatMulNBits(8b, fused by ORT at session.qdq_matmulnbits_accuracy_level, default 4: int8 activations)');
    } else if (weightBits !== undefined && inputBits === undefined) add(name, `DequantizeLinear int${weightBits} + ${node.opType} (float)`, `${DEQUANTIZED_EVERY_RUN}; ${FOLDED_AT_LOAD}`);
    else if (weightBits === undefined) add(name, `QuantizeLinear/DequantizeLinear + ${node.opType} (float weight)`, 'the input is quantized and dequantized on every run for a float kernel');
    else add(name, `DequantizeLinear int${weightBits} + QuantizeLinear/DequantizeLinear int${inputBits} + ${node.opType} (float)`, `ORT has no int${weightBits}×int${inputBits} ${node.opType} kernel for this form; ${DEQUANTIZED_EVERY_RUN}`);
  }
  return [...groups.values()];
}
