/**
 * upgrade-opset: raises the ai.onnx opset (default 21, what blocked and int4 DequantizeLinear need), rewriting
 * the ops whose signature changed on the way — axes/split attributes that became inputs (13, 18), Split's
 * num_outputs (18) — and refusing, by op and node, what it cannot rewrite.
 */
import { upgradeModelOpset } from './opset-upgrade.js';
import { definePass } from './pass.js';

/** The upgrade-opset pass. */
export const upgradeOpset = definePass({
  name: 'upgrade-opset',
  summary: 'raise the ai.onnx opset, rewriting ops whose signature changed (Reduce*, Split, Squeeze, …)',
  options: {
    to: { type: 'int', description: 'target ai.onnx opset', default: 21 },
  },
  run(model, options) {
    const from = model.opset;
    const rewritten = upgradeModelOpset(model, options.to);
    return { modified: from < model.opset, statistics: { from, to: model.opset, nodes_rewritten: rewritten } };
  },
});
