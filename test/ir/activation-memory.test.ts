/**
 * The activation-memory estimate runs take their row counts from (src/runtime/run-rows.ts): the live set over
 * the graph's order, on a graph small enough to count by hand and on the sd-digits UNet.
 */
import { describe, expect, it } from 'vitest';
import { peakActivationBytes } from '../../src/ir/activation-memory.js';
import { Graph, Model } from '../../src/ir/core.js';
import { DataType } from '../../src/ir/dtype.js';
import { Op } from '../../src/ir/ops.js';
import { loadModelSync } from '../../src/ir/serde.js';

describe('peakActivationBytes', () => {
  it('counts each output from its node until its last reader, graph outputs to the end', () => {
    const graph = new Graph('g');
    const x = graph.addInput('x', { elemType: DataType.FLOAT, shape: ['batch', 4] });
    const a = graph.addNode({ opType: Op.Relu, inputs: [x], outputs: ['a'] }).outputs[0]!;
    const b = graph.addNode({ opType: Op.Sigmoid, inputs: [a], outputs: ['b'] }).outputs[0]!;
    const c = graph.addNode({ opType: Op.Add, inputs: [a, b], outputs: ['c'] }).outputs[0]!;
    const d = graph.addNode({ opType: Op.Relu, inputs: [c], outputs: ['d'] }).outputs[0]!;
    graph.outputs.push(b, d);
    const model = new Model(graph);
    model.opsetImports.set('', 17);
    // 3 rows × 4 floats = 48 bytes a value. At Add a, b and c are alive (144); a goes after it, b (a graph output)
    // stays, so at the last Relu b, c and d are (144 again).
    expect(peakActivationBytes(model, new Map([['x', [3, 4]]]))).toBe(144);
    // a held as a graph output too: a, b, c and d at the last Relu.
    graph.outputs.push(a);
    expect(peakActivationBytes(model, new Map([['x', [3, 4]]]))).toBe(4 * 48);
    // With x's width unknown there is no estimate.
    expect(peakActivationBytes(model, new Map([['x', [3, 'width']]]))).toBeUndefined();
  });

  it('grows with the rows of a UNet run: sd-digits at 1 and 8 rows', () => {
    const model = loadModelSync('test/fixtures/sd-digits/unet/model.onnx');
    const at = (rows: number) => peakActivationBytes(model, new Map([['sample', [rows, 1, 16, 16]], ['timestep', [rows]], ['encoder_hidden_states', [rows, 8, 64]]]))!;
    const one = at(1);
    // One row's largest live set holds at least the self-attention scores at the 16×16 level (256 × 256 floats a
    // head); 8 rows hold it 8 times over, less the few values without a batch axis (shapes, constants).
    expect(one).toBeGreaterThan(256 * 256 * 4);
    expect(at(8) / one).toBeGreaterThan(7.9);
    expect(at(8) / one).toBeLessThanOrEqual(8);
  });
});
