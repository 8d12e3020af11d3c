/**
 * The lowering driver every backend shares (tinygrad's split: the capability table is the matcher, the
 * rewrites are the renderer): read each layer's quantization off the graph, match it against the table,
 * fail naming every unsupported layer — or, under `allowFallback`, dequantize exactly those to float and
 * list them — then apply the matched capabilities' rewrites. Capabilities that change numerics (symmetric
 * requantization) match only under their opt-in option; without it, the refusal names the option.
 */
import type { Model, Node, Value } from '../ir/core.js';
import {
  BackendError,
  describeActivation,
  describeWeight,
  findActivationCapability,
  findWeightCapability,
  lockedActivationCapability,
  optInHint,
  type BackendIssue,
  type CapabilityTable,
  type LowerOptions,
  type LowerResult,
  type TargetName,
  type WeightCapability,
  weightRefusalHint,
} from './backend.js';
import { lowerToMatMulNBits, matMulNBitsObstacle } from './matmul-nbits.js';
import { int8GroupInputSource } from './int8-group-input.js';
import { DataType } from '../ir/dtype.js';
import { Op, isOp } from '../ir/ops.js';
import { activationFormOf, dequantizeTensor, findActivationPairs, findQuantizedWeights, weightFormOf, type ActivationPair, type QuantizedWeight } from '../quant/quantized-forms.js';
import { calibratedRange, requantizeActivation, requantizeActivationObstacle, requantizeWeight, requantizeWeightObstacle } from './requantize.js';
import { fakeQuantObstacle, lowerToFakeQuant } from './fake-quant.js';

/** Lowers `model` in place for `target` described by `table`. */
export function lowerWithCapabilities(target: TargetName, table: CapabilityTable, model: Model, options: LowerOptions = {}): LowerResult {
  const issues: { issue: BackendIssue; undo: () => void }[] = [];
  const weightRewrites: { weight: QuantizedWeight; capability: WeightCapability }[] = [];
  const activationRewrites: ActivationPair[] = [];
  const weightRequantizations = new Map<Node, { weight: QuantizedWeight; note: BackendIssue }>();
  const activationRequantizations = new Map<Node, { pair: ActivationPair; note: BackendIssue }>();
  const statistics: Record<string, number> = {};
  const count = (key: string): void => void (statistics[key] = (statistics[key] ?? 0) + 1);

  for (const weight of findQuantizedWeights(model)) {
    const form = weightFormOf(weight);
    const capability = findWeightCapability(table, form, options);
    const obstacle = capability?.rewrite === 'matmul-nbits' ? matMulNBitsObstacle(weight) : capability?.rewrite === 'requantize-symmetric' ? requantizeWeightObstacle(weight) : undefined;
    if (!capability || obstacle) {
      const message = `${describeWeight(form)}${obstacle ? `: ${obstacle}` : ` is not supported${weightRefusalHint(table, form, options)}`}`;
      issues.push({ issue: { layer: weight.name, code: capability ? 'unsupported-layout' : 'unsupported-weight', message }, undo: () => dequantizeToFloat(weight.dq) });
    } else if (capability.rewrite === 'matmul-nbits') weightRewrites.push({ weight, capability });
    else if (capability.rewrite === 'requantize-symmetric') {
      const note = { layer: weight.name, code: 'requantized-weight', message: `${describeWeight(form)} requantized to ${capability.form}` };
      if (!weightRequantizations.has(weight.dq)) weightRequantizations.set(weight.dq, { weight, note });
    } else count(`weight_int${form.bits}_${form.granularity}_kept`);
  }
  for (const pair of findActivationPairs(model)) {
    const form = activationFormOf(pair);
    const capability = findActivationCapability(table, form, options);
    const obstacle = capability?.rewrite === 'fake-quant' ? fakeQuantObstacle(pair.quantize, pair.dequantize) : capability?.rewrite === 'requantize-symmetric' ? requantizeActivationObstacle(pair) : undefined;
    if (!capability || obstacle) {
      const message = `${describeActivation(form)}${obstacle ? `: ${obstacle}` : ` is not supported${optInHint(lockedActivationCapability(table, form))}`}`;
      issues.push({ issue: { layer: pair.name, code: capability ? 'unsupported-layout' : 'unsupported-activation', message }, undo: () => removeQdq(pair.dequantize) });
    } else if (capability.rewrite === 'fake-quant') activationRewrites.push(pair);
    else if (capability.rewrite === 'requantize-symmetric') {
      const [lo, hi] = calibratedRange(pair.quantize);
      const note = { layer: pair.name, code: 'requantized-activation', message: `${describeActivation(form)} requantized to ${capability.form}`, detail: `range [${lo.toPrecision(4)}, ${hi.toPrecision(4)}]` };
      if (!activationRequantizations.has(pair.quantize)) activationRequantizations.set(pair.quantize, { pair, note });
    } else count(`activation_int${form.bits}_${form.mode}_kept`);
  }
  if (issues.length > 0 && !options.allowFallback) throw new BackendError(target, issues.map((i) => i.issue));
  for (const { undo } of issues) undo();
  // After the fallbacks: a layer whose input Q/DQ was bypassed reads float activations.
  for (const { weight, capability } of weightRewrites) {
    const int8Level = capability.int8InputAccuracyLevel ?? 0;
    // The kernel's own int8 input quantization replaces an in-graph one of the same math (never under a forced other level).
    const groupInput = capability.quantizesInt8GroupInput && (options.accuracyLevel ?? int8Level) === int8Level ? int8GroupInputSource(weight.node.input(0), weight.dq.intAttr('block_size', 0)) : undefined;
    if (groupInput) {
      weight.node.setInput(0, groupInput);
      count('int8_group_inputs_in_kernel');
    }
    const accuracyLevel = options.accuracyLevel ?? (groupInput || hasInt8Input(weight.node) ? int8Level : 0);
    lowerToMatMulNBits(weight, { accuracyLevel, foldBias: true });
    count('matmul_nbits');
  }
  for (const { quantize, dequantize } of activationRewrites) {
    lowerToFakeQuant(quantize, dequantize);
    count('activation_fake_quant');
  }
  // A weight or activation that fell back to float above no longer feeds its DequantizeLinear's consumer.
  for (const { weight } of weightRequantizations.values()) if (weight.dq.outputs[0]!.uses.length > 0) requantizeWeight(weight);
  for (const { pair } of activationRequantizations.values()) if (pair.dequantize.outputs[0]!.uses.length > 0) requantizeActivation(pair);
  if (weightRequantizations.size > 0) statistics.requantized_weights = weightRequantizations.size;
  if (activationRequantizations.size > 0) statistics.requantized_activations = activationRequantizations.size;
  if (issues.length > 0) statistics.fallbacks = issues.length;
  model.graph.removeDeadCode();
  if (weightRewrites.length > 0) model.requireOpset('com.microsoft', 1);
  const requantized = [...weightRequantizations.values(), ...activationRequantizations.values()].map((r) => r.note);
  const modified = weightRewrites.length + activationRewrites.length + requantized.length + issues.length > 0;
  return { modified, statistics, fallbacks: issues.map((i) => i.issue), requantized };
}

/** True when `node`'s input 0 is an 8-bit activation Q → DQ pair: the recipe quantizes this layer's input to int8. */
function hasInt8Input(node: Node): boolean {
  const dequantize = node.input(0).producer;
  const quantize = dequantize && isOp(dequantize, Op.DequantizeLinear) ? dequantize.input(0).producer : undefined;
  if (!quantize || !(isOp(quantize, Op.QuantizeLinear) || isOp(quantize, Op.DynamicQuantizeLinear))) return false;
  const codes = quantize.outputs[0]!.type?.elemType ?? quantize.inputs[2]?.type?.elemType;
  return isOp(quantize, Op.DynamicQuantizeLinear) || codes === DataType.INT8 || codes === DataType.UINT8;
}

/** Replaces a weight DequantizeLinear by the float weight it computes (an explicit, listed fallback). */
function dequantizeToFloat(dq: Node): void {
  const graph = dq.graph;
  const output = dq.outputs[0]!;
  if (!dq.input(0).isConstant) return;
  const weight = graph.addInitializer(`${dq.input(0).name.replace(/_quantized$/, '')}_float`, dequantizeTensor(dq));
  output.replaceAllUsesWith(weight);
}

/** Bypasses an activation Q/DQ pair (an explicit, listed fallback): the layer reads the float input. */
function removeQdq(dequantize: Node): void {
  const quantize = dequantize.input(0).producer!;
  const source: Value = quantize.input(0);
  dequantize.outputs[0]!.replaceAllUsesWith(source);
}

/** Re-exported for callers that dequantize a weight (moved to quantized-forms with the requantizer). */
export { dequantizeTensor };
