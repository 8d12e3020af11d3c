/**
 * Semantic checks of a parsed recipe, alone and against a model's layers: what the target cannot run, group
 * sizes that do not divide a selected layer's input channels, rules that select nothing. Diagnostics only.
 */
import type { Diagnostic } from '../diagnostics.js';
import type { Layer } from '../quant/layers.js';
import { isKeepName } from '../passes/convert-float16.js';
import { resolveSelection } from './select.js';
import type { Recipe, Selection, SourceRef } from './types.js';

/** Activation bit widths each target executes. */
const ACTIVATION_BITS: Record<Recipe['target'], number[]> = { cpu: [8], webgpu: [8], cuda: [8], tensorrt: [8] };
/** Float compute types each target runs (the `compute` line of each backend's capability table; a test keeps them equal). */
export const COMPUTE_TYPES: Record<Recipe['target'], string[]> = { cpu: ['fp32'], webgpu: ['fp32'], cuda: ['fp32', 'fp16'], tensorrt: ['fp32', 'fp16'] };
/** Weight bit widths each target stores (6-bit weights are stored as int8 codes on a 6-bit grid). */
const WEIGHT_BITS: Record<Recipe['target'], number[]> = { cpu: [2, 3, 4, 5, 6, 7, 8], webgpu: [4, 8], cuda: [4, 8], tensorrt: [4, 8] };

/** Checks that need no model. */
export function checkRecipe(recipe: Recipe): Diagnostic[] {
  const out: Diagnostic[] = [];
  const error = (code: string, message: string, source?: SourceRef) => out.push({ severity: 'error', code, message, ...(source ? { span: source } : {}) });
  if (!COMPUTE_TYPES[recipe.target].includes(recipe.precision)) {
    error('E040', `target ${recipe.target} does not compute in ${recipe.precision} (its compute types: ${COMPUTE_TYPES[recipe.target].join(', ')})`, recipe.float16.source);
  }
  // JSON recipes reach here unchecked; the text front end has reported (and dropped) unknown names already.
  for (const name of recipe.float16.keep) if (!isKeepName(name)) error('E015', `unknown op type or region '${name}' in the float16 keep list`, recipe.float16.source);
  for (const rule of recipe.rules) {
    if (rule.input && !ACTIVATION_BITS[recipe.target].includes(rule.input.bits)) {
      error('E040', `target ${recipe.target} cannot run ${rule.input.bits}-bit activations (supported: ${ACTIVATION_BITS[recipe.target].join(', ')})`, rule.source);
    }
    if (rule.weight && !WEIGHT_BITS[recipe.target].includes(rule.weight.bits)) {
      error('E040', `target ${recipe.target} cannot store ${rule.weight.bits}-bit weights (supported: ${WEIGHT_BITS[recipe.target].join(', ')})`, rule.source);
    }
    if (recipe.target === 'tensorrt' && rule.input && !rule.input.symmetric) {
      error('E040', 'target tensorrt needs symmetric activations (zero point 0): write `input int8 sym …`', rule.source);
    }
    if (rule.input?.mode.kind === 'dynamic' && rule.input.mode.groupSize === 'weight' && rule.weight?.granularity.kind !== 'group' && rule.weight?.granularity.kind !== 'auto') {
      error('E033', `per-token-group(size: weight) takes the weight's group size, but this rule's weight is ${rule.weight ? rule.weight.granularity.kind : 'not quantized'}: give the weight \`group N\` or \`group auto(…)\`, or the activation a size`, rule.source);
    }
    if (rule.input?.mode.kind === 'dynamic' && rule.input.mode.granularity === 'per-token-group' && rule.weight?.granularity.kind === 'per-tensor') {
      out.push({ severity: 'warning', code: 'W003', message: 'per-token-group activations with a per-tensor weight: the groups buy little', ...(rule.source ? { span: rule.source } : {}) });
    }
  }
  return out;
}

/** Checks against a model's layers; returns the selection too (for `check --model`'s table). */
export function checkRecipeAgainstModel(recipe: Recipe, layers: readonly Layer[]): { diagnostics: Diagnostic[]; selection: Selection } {
  const selection = resolveSelection(recipe, layers);
  const diagnostics = [...selection.diagnostics];
  for (const layer of layers) {
    const plan = selection.assignments.get(layer.name);
    if (plan?.action !== 'quantize' || !plan.weight) continue;
    const g = plan.weight.granularity;
    const reductionLength = layer.opType === 'Conv' ? layer.inChannels * layer.weightShape.slice(2).reduce((a, b) => a * b, 1) : layer.inChannels;
    if (g.kind === 'group' && reductionLength % g.size !== 0) {
      diagnostics.push({
        severity: 'error',
        code: 'E042',
        message: `group ${g.size} does not divide the ${reductionLength} input channels of layer '${layer.name}' (${layer.role})`,
        ...(plan.source ? { span: plan.source } : {}),
        notes: ['exclude the layer from this rule (`except …`) or give it its own rule with a divisor or per-channel'],
      });
    }
    if (g.kind === 'auto' && !g.candidates.some((c) => layer.inChannels % c === 0)) {
      diagnostics.push({ severity: 'error', code: 'E042', message: `no auto candidate divides the ${layer.inChannels} input channels of layer '${layer.name}'`, ...(plan.source ? { span: plan.source } : {}) });
    }
    if (layer.opType === 'Gather' && plan.input) {
      diagnostics.push({ severity: 'error', code: 'E044', message: `layer '${layer.name}' is an embedding lookup: its input is an index, which cannot be quantized`, ...(plan.source ? { span: plan.source } : {}) });
    }
  }
  return { diagnostics, selection };
}
