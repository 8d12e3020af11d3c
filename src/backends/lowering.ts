/**
 * The lowering driver every backend shares (tinygrad's split: the capability table is the matcher, the
 * rewrites are the renderer): read each layer's quantization off the graph, match it against the table,
 * fail naming every unsupported layer — or, under `allowFallback`, dequantize exactly those to float and
 * list them — then apply the matched capabilities' rewrites.
 */
import type { Model, Node, Value } from '../ir/core.js';
import { Tensor } from '../ir/tensor.js';
import {
  BackendError,
  describeActivation,
  describeWeight,
  findActivationCapability,
  findWeightCapability,
  type BackendIssue,
  type CapabilityTable,
  type LowerOptions,
  type LowerResult,
  type TargetName,
} from './backend.js';
import { lowerToMatMulNBits, matMulNBitsObstacle } from './matmul-nbits.js';
import { activationFormOf, findActivationPairs, findQuantizedWeights, weightFormOf, type ActivationPair, type QuantizedWeight } from './quantized-forms.js';
import { fakeQuantObstacle, lowerToFakeQuant } from './fake-quant.js';

/** Lowers `model` in place for `target` described by `table`. */
export function lowerWithCapabilities(target: TargetName, table: CapabilityTable, model: Model, options: LowerOptions = {}): LowerResult {
  const issues: { issue: BackendIssue; undo: () => void }[] = [];
  const weightRewrites: QuantizedWeight[] = [];
  const activationRewrites: ActivationPair[] = [];
  const statistics: Record<string, number> = {};
  const count = (key: string): void => void (statistics[key] = (statistics[key] ?? 0) + 1);

  for (const weight of findQuantizedWeights(model)) {
    const form = weightFormOf(weight);
    const capability = findWeightCapability(table, form);
    const obstacle = capability?.rewrite === 'matmul-nbits' ? matMulNBitsObstacle(weight) : undefined;
    if (!capability || obstacle) {
      const message = `${describeWeight(form)}${obstacle ? `: ${obstacle}` : ' is not supported'}`;
      issues.push({ issue: { layer: weight.name, code: capability ? 'unsupported-layout' : 'unsupported-weight', message }, undo: () => dequantizeToFloat(weight.dq) });
    } else if (capability.rewrite === 'matmul-nbits') weightRewrites.push(weight);
    else count(`weight_int${form.bits}_${form.granularity}_kept`);
  }
  for (const pair of findActivationPairs(model)) {
    const form = activationFormOf(pair);
    const capability = findActivationCapability(table, form);
    const obstacle = capability?.rewrite === 'fake-quant' ? fakeQuantObstacle(pair.quantize, pair.dequantize) : undefined;
    if (!capability || obstacle) {
      const message = `${describeActivation(form)}${obstacle ? `: ${obstacle}` : ' is not supported'}`;
      issues.push({ issue: { layer: pair.name, code: capability ? 'unsupported-layout' : 'unsupported-activation', message }, undo: () => removeQdq(pair.dequantize) });
    } else if (capability.rewrite === 'fake-quant') activationRewrites.push(pair);
    else count(`activation_int${form.bits}_${form.mode}_kept`);
  }
  if (issues.length > 0 && !options.allowFallback) throw new BackendError(target, issues.map((i) => i.issue));
  for (const { undo } of issues) undo();
  for (const weight of weightRewrites) {
    lowerToMatMulNBits(weight, { accuracyLevel: options.accuracyLevel ?? 0, foldBias: true });
    count('matmul_nbits');
  }
  for (const { quantize, dequantize } of activationRewrites) {
    lowerToFakeQuant(quantize, dequantize);
    count('activation_fake_quant');
  }
  if (issues.length > 0) statistics.fallbacks = issues.length;
  model.graph.removeDeadCode();
  if (weightRewrites.length > 0) model.requireOpset('com.microsoft', 1);
  return { statistics, fallbacks: issues.map((i) => i.issue) };
}

/** Replaces a weight DequantizeLinear by the float weight it computes (an explicit, listed fallback). */
function dequantizeToFloat(dq: Node): void {
  const graph = dq.graph;
  const output = dq.outputs[0]!;
  if (!dq.input(0).isConstant) return;
  const weight = graph.addInitializer(`${dq.input(0).name.replace(/_quantized$/, '')}_float`, dequantizeTensor(dq));
  output.replaceAllUsesWith(weight);
}

/** W = (q − zp)·scale for per-tensor, per-axis and blocked DequantizeLinear over constants. */
export function dequantizeTensor(dq: Node): Tensor {
  const codes = dq.input(0).initializer!;
  const q = codes.toNumbers();
  const scale = dq.input(1).initializer!.toFloat32();
  const zp = dq.inputs[2]?.initializer?.toNumbers();
  const dims = codes.dims;
  const rank = dims.length;
  const axis = ((dq.intAttr('axis', 1) % Math.max(rank, 1)) + rank) % Math.max(rank, 1);
  const blockSize = dq.intAttr('block_size', 0);
  const out = new Float32Array(q.length);
  const inner = dims.slice(axis + 1).reduce((a, b) => a * b, 1);
  const axisDim = dims[axis] ?? 1;
  const blocks = blockSize > 0 ? Math.ceil(axisDim / blockSize) : axisDim;
  for (let i = 0; i < q.length; i++) {
    let s = 0;
    if (scale.length > 1) {
      const outer = Math.floor(i / (inner * axisDim));
      const c = Math.floor(i / inner) % axisDim;
      const r = i % inner;
      s = blockSize > 0 ? (outer * blocks + Math.floor(c / blockSize)) * inner + r : c;
    }
    out[i] = (q[i]! - (zp?.[s] ?? 0)) * scale[s]!;
  }
  return Tensor.fromFloat32([...dims], out);
}

/** Bypasses an activation Q/DQ pair (an explicit, listed fallback): the layer reads the float input. */
function removeQdq(dequantize: Node): void {
  const quantize = dequantize.input(0).producer!;
  const source: Value = quantize.input(0);
  dequantize.outputs[0]!.replaceAllUsesWith(source);
}

