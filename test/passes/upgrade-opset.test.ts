import { describe, expect, it } from 'vitest';
import { Graph, Model } from '../../src/ir/core.js';
import { DataType } from '../../src/ir/dtype.js';
import { Op } from '../../src/ir/ops.js';
import { loadModelSync } from '../../src/ir/serde.js';
import type { TensorMap } from '../../src/ir/executor.js';
import { upgradeModelOpset } from '../../src/passes/opset-upgrade.js';
import { OrtExecutor } from '../../src/runtime/ir-executor.js';
import { readGoldenModel } from './golden-cases.js';
import { DIT_DIGITS, maxAbsDiff, referenceInputs } from './fixture.js';
import { join } from 'node:path';

async function run(model: Model, feeds: TensorMap, fetch: string[]) {
  const prepared = await new OrtExecutor({ optimization: 'basic' }).prepare(model, fetch);
  try {
    return await prepared.run(feeds);
  } finally {
    await prepared.release();
  }
}

describe('upgrade-opset', () => {
  it('keeps the outputs of an opset-11 graph (Squeeze, Split, ReduceSum, ReduceMean) in ONNX Runtime', async () => {
    const build = () => readGoldenModel('opset-11-reduce-split-squeeze.in.ir').model;
    const feeds = { x: { dtype: 'float32' as const, dims: [2, 6, 1], data: Float32Array.from({ length: 12 }, (_, i) => i * 0.5 - 2) } };
    const before = await run(build(), feeds, ['y', 'sum', 'c']);
    const upgraded = build();
    expect(upgradeModelOpset(upgraded, 21)).toBe(4);
    expect(upgraded.opset).toBe(21);
    const after = await run(upgraded, feeds, ['y', 'sum', 'c']);
    for (const name of ['y', 'sum', 'c']) expect(Array.from(after[name]!.data as Float32Array)).toEqual(Array.from(before[name]!.data as Float32Array));
  });

  it('upgrades the DiT fixture from 17 to 21 without changing eps', async () => {
    const model = loadModelSync(join(DIT_DIGITS, 'model.onnx'));
    const before = await run(model, referenceInputs(), ['eps']);
    upgradeModelOpset(model, 21);
    const after = await run(model, referenceInputs(), ['eps']);
    expect(maxAbsDiff(before.eps!.data as Float32Array, after.eps!.data as Float32Array)).toBeLessThan(1e-5);
  });

  it('refuses what it cannot rewrite, naming the node, and leaves the model unchanged', () => {
    const graph = new Graph('g');
    const x = graph.addInput('x', { elemType: DataType.FLOAT, shape: [1, 4, 2] });
    const norm = graph.addNode({ opType: Op.GroupNormalization, inputs: [x, x, x], outputs: ['y'], name: 'gn' });
    graph.outputs.push(norm.outputs[0]!);
    const model = new Model(graph);
    model.opsetImports.set('', 18);
    expect(() => upgradeModelOpset(model, 21)).toThrow("upgrade-opset: node 'gn': GroupNormalization changed its scale/bias from per-group to per-channel at opset 21");
    expect(model.opset).toBe(18);
    model.opsetImports.set('', 9);
    expect(() => upgradeModelOpset(model, 21)).toThrow('models below opset 11 are not supported (this one is 9)');
  });
});
