/**
 * Opset upgrades of ai.onnx: raising a model's opset and rewriting the ops whose signature changed on the way.
 * The upgrade-opset pass wraps it; quantize-weights' core uses it to reach the DequantizeLinear forms it needs.
 */
import type { Model, Node } from '../ir/core.js';
import { IrError } from '../ir/errors.js';
import { Op, isOp, type OpType } from '../ir/ops.js';
import { Tensor } from '../ir/tensor.js';

/** The oldest opset this pass upgrades from (Pad, Resize, Clip, Slice took their current inputs by 11). */
const OLDEST_SUPPORTED = 11;
/** IR version that opset 21 and the 4-bit types need. */
const IR_VERSION_FOR_OPSET_21 = 10;

const REDUCE_AXES_INPUT_SINCE_18: readonly OpType[] = [Op.ReduceMean, Op.ReduceMax, Op.ReduceMin, Op.ReduceProd, Op.ReduceL2, Op.ReduceSumSquare];

/** Raises `model` to ai.onnx opset `target` (no-op when already there); returns how many nodes were rewritten. */
export function upgradeModelOpset(model: Model, target: number): number {
  const from = model.opset;
  if (from >= target) return 0;
  if (from < OLDEST_SUPPORTED) throw new IrError('unsupported', `upgrade-opset: models below opset ${OLDEST_SUPPORTED} are not supported (this one is ${from})`);
  if (model.functions.length > 0) throw new IrError('unsupported', 'upgrade-opset: model-local functions are kept opaque and cannot be upgraded');
  const crosses = (version: number) => from < version && target >= version;
  const graph = model.graph;
  // Check everything before changing anything, so a refusal leaves the model as it was.
  for (const node of graph.nodes) {
    if (node.domain !== '') continue;
    if ([...node.attributes.values()].some((a) => a.kind === 'graph')) {
      throw new IrError('unsupported', `upgrade-opset: node '${node.name}' (${node.opType}) has a subgraph, which is kept opaque and cannot be upgraded`);
    }
    if (isOp(node, Op.GroupNormalization) && crosses(21)) {
      throw new IrError('unsupported', `upgrade-opset: node '${node.name}': GroupNormalization changed its scale/bias from per-group to per-channel at opset 21`);
    }
    if (isOp(node, Op.Dropout) && crosses(12) && node.attributes.has('ratio')) {
      throw new IrError('unsupported', `upgrade-opset: node '${node.name}': Dropout's ratio attribute became an input at opset 12`);
    }
  }
  let rewritten = 0;
  for (const node of [...graph.nodes]) {
    if (node.domain !== '') continue;
    let changed = false;
    if ((isOp(node, Op.ReduceSum) || isOp(node, Op.Squeeze) || isOp(node, Op.Unsqueeze)) && crosses(13)) changed = axesToInput(node, 'axes', 1);
    if (isOp(node, Op.Split) && crosses(13)) changed = axesToInput(node, 'split', 1);
    if (REDUCE_AXES_INPUT_SINCE_18.some((op) => isOp(node, op)) && crosses(18)) changed = axesToInput(node, 'axes', 1);
    if (isOp(node, Op.Split) && crosses(18) && !node.inputs[1] && !node.attributes.has('num_outputs')) {
      node.attributes.set('num_outputs', { kind: 'int', value: node.outputs.length });
      changed = true;
    }
    if (changed) rewritten++;
  }
  model.opsetImports.set('', target);
  if (target >= 21 && model.irVersion < IR_VERSION_FOR_OPSET_21) model.irVersion = IR_VERSION_FOR_OPSET_21;
  return rewritten;
}

/** Moves an ints attribute to an int64 initializer input at `index`; false when the attribute is absent. */
function axesToInput(node: Node, attribute: string, index: number): boolean {
  const value = node.attributes.get(attribute);
  if (!value) return false;
  if (value.kind !== 'ints') throw new IrError('malformed-model', `node '${node.name}': attribute '${attribute}' is not a list of ints`);
  const tensor = Tensor.fromInt64([value.value.length], value.value);
  const input = node.graph.addInitializer(`${node.name}_${attribute}`, tensor);
  node.attributes.delete(attribute);
  node.setInput(index, input);
  return true;
}
