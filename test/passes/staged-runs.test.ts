import { describe, expect, it } from 'vitest';
import { loadModelSync } from '../../src/ir/serde.js';
import type { TensorMap } from '../../src/ir/executor.js';
import { DataType } from '../../src/ir/dtype.js';
import { layersOf } from '../../src/quant/identity.js';
import { StagedRuns } from '../../src/passes/staged-runs.js';
import { OrtExecutor } from '../../src/runtime/ir-executor.js';
import { calibrationBatches } from '../../bench/calibration-batches.js';
import { DIT_DIGITS } from './fixture.js';

const executor = new OrtExecutor({ optimization: 'basic' });

/** Counts the nodes ORT is asked to run, by wrapping the executor. */
function countingExecutor(): { executor: OrtExecutor; nodes: number[] } {
  const nodes: number[] = [];
  const counting = new OrtExecutor({ optimization: 'basic' });
  const prepare = counting.prepare.bind(counting);
  counting.prepare = async (model, fetch) => {
    nodes.push(model.graph.nodes.length);
    return prepare(model, fetch);
  };
  return { executor: counting, nodes };
}

describe('Graph.slice', () => {
  it('computes the same values from a cut as the whole graph does, with only the nodes after it', async () => {
    const model = loadModelSync(`${DIT_DIGITS}/model.onnx`);
    const layers = layersOf(model).filter((l) => l.block !== undefined);
    const first = layers[0]!.node.input(0);
    const last = layers[layers.length - 1]!.node.input(0);
    const feeds = calibrationBatches(8, 8)[0]!;
    const whole = await executor.prepare(model, [first.name, last.name]);
    const full = await whole.run(feeds);
    await whole.release();

    const slice = model.slice(new Map([[first.name, { elemType: DataType.FLOAT }]]), [last.name]);
    expect(slice.graph.nodes.length).toBeLessThan(model.graph.nodes.length);
    expect(slice.graph.outputs.map((v) => v.name)).toEqual([last.name]);
    expect(slice.graph.initializers.size).toBeLessThan(model.graph.initializers.size);
    const part = await executor.prepare(slice, [last.name]);
    const fromCut = await part.run({ ...feeds, [first.name]: full[first.name]! });
    await part.release();
    expect(Array.from(fromCut[last.name]!.data as Float32Array)).toEqual(Array.from(full[last.name]!.data as Float32Array));
    // The model itself is untouched.
    expect(model.graph.outputs.map((v) => v.name)).not.toContain(last.name);
  });

  it('refuses an output or a cut that is not in the graph', () => {
    const model = loadModelSync(`${DIT_DIGITS}/model.onnx`);
    expect(() => model.slice(new Map(), ['nope'])).toThrow(/no such value/);
    expect(() => model.slice(new Map([['nope', { elemType: DataType.FLOAT }]]), [model.graph.outputs[0]!.name])).toThrow(/no such value/);
  });
});

describe('StagedRuns', () => {
  it('gives every stage the values a whole-model run gives, running less of the model each stage', async () => {
    const model = loadModelSync(`${DIT_DIGITS}/model.onnx`);
    const layers = layersOf(model).filter((l) => l.block !== undefined);
    const blocks = [...new Set(layers.map((l) => l.block!))];
    const batches = calibrationBatches(16, 8);
    const { executor: counting, nodes } = countingExecutor();
    const runs = new StagedRuns(batches, counting);
    for (const [index, block] of blocks.entries()) {
      const fetch = [...new Set(layers.filter((l) => l.block === block).map((l) => l.node.input(0).name))];
      const pending = layers.filter((l) => blocks.indexOf(l.block!) >= index).map((l) => l.node);
      const staged: TensorMap[] = [];
      await runs.run(model, fetch, pending, (outputs) => staged.push(outputs));
      const whole = await executor.prepare(model, fetch);
      for (const [b, feeds] of batches.entries()) {
        const full = await whole.run(feeds);
        for (const name of fetch) expect(Array.from(staged[b]![name]!.data as Float32Array), `${name}, batch ${b}`).toEqual(Array.from(full[name]!.data as Float32Array));
      }
      await whole.release();
    }
    // After the first stage each runs about one block's worth of nodes, not the model.
    expect(blocks.length).toBeGreaterThan(1);
    for (const count of nodes.slice(1)) expect(count).toBeLessThan(model.graph.nodes.length / 2);
  });
});
