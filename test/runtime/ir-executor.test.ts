/**
 * OrtExecutor.prepare with fetched intermediate values: the branches only the fetches need run in ORT (their
 * values are right) and the caller's model comes back as it went in (outputs and node order).
 */
import { describe, expect, it } from 'vitest';
import { Graph, Model } from '../../src/ir/core.js';
import { DataType } from '../../src/ir/dtype.js';
import { Op } from '../../src/ir/ops.js';
import { OrtExecutor } from '../../src/runtime/ir-executor.js';

describe('OrtExecutor.prepare', () => {
  it('fetches values of branches off the model and leaves its node order and outputs as they were', async () => {
    const graph = new Graph('chain');
    let x = graph.addInput('x', { elemType: DataType.FLOAT, shape: [2, 3] });
    const observed: string[] = [];
    for (let i = 0; i < 4; i++) {
      x = graph.addNode({ opType: Op.Relu, inputs: [x], outputs: [`h${i}`] }).outputs[0]!;
      // A branch off the chain, as calibrate's observers are: only the fetch needs it.
      observed.push(graph.addNode({ opType: Op.Neg, inputs: [x], outputs: [`h${i}/observe`] }).outputs[0]!.name);
    }
    graph.outputs.push(x);
    const model = new Model(graph);
    model.opsetImports.set('', 17);
    const order = graph.nodes.map((n) => n.name || n.outputs[0]!.name);
    const prepared = await new OrtExecutor().prepare(model, [x.name, ...observed]);
    const input = Float32Array.of(-1, 2, -3, 4, -5, 6);
    const out = await prepared.run({ x: { dtype: 'float32', dims: [2, 3], data: input } });
    await prepared.release();
    const relu = Array.from(input, (v) => Math.max(0, v));
    for (const name of observed) expect(Array.from(out[name]!.data as Float32Array)).toEqual(relu.map((v) => -v));
    expect(graph.nodes.map((n) => n.name || n.outputs[0]!.name)).toEqual(order);
    expect(graph.outputs.map((v) => v.name)).toEqual([x.name]);
  });
});
