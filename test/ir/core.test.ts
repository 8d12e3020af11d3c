import { describe, expect, it } from 'vitest';
import { Graph, Model } from '../../src/ir/core.js';
import { DataType } from '../../src/ir/dtype.js';
import { Op } from '../../src/ir/ops.js';
import { Tensor, packInt4, unpackInt4 } from '../../src/ir/tensor.js';
import { decodeModel, encodeModel } from '../../src/ir/serde.js';
import { printModel } from '../../src/ir/printer.js';

function smallGraph() {
  const graph = new Graph('g');
  const x = graph.addInput('x', { elemType: DataType.FLOAT, shape: ['batch', 4] });
  const w = graph.addInitializer('w', Tensor.fromFloat32([4, 2], new Float32Array(8).fill(0.5)));
  const matmul = graph.addNode({ opType: Op.MatMul, inputs: [x, w], outputs: ['y'] });
  const relu = graph.addNode({ opType: Op.Relu, inputs: [matmul.outputs[0]], outputs: ['z'] });
  graph.outputs.push(relu.outputs[0]!);
  const model = new Model(graph);
  model.opsetImports.set('', 17);
  return { model, graph, x, w, matmul, relu };
}

describe('IR core', () => {
  it('keeps use-lists exact through setInput and replaceAllUsesWith', () => {
    const { graph, x, matmul, relu } = smallGraph();
    const y = matmul.outputs[0]!;
    expect(y.uses).toEqual([{ node: relu, index: 0 }]);
    const sigmoid = graph.addNode({ opType: Op.Sigmoid, inputs: [x], outputs: ['s'] });
    y.replaceAllUsesWith(sigmoid.outputs[0]!);
    expect(y.uses).toHaveLength(0);
    expect(sigmoid.outputs[0]!.uses).toEqual([{ node: relu, index: 0 }]);
    expect(x.uses.map((u) => u.node.opType).sort()).toEqual(['MatMul', 'Sigmoid']);
  });

  it('removes dead nodes and initializers, and refuses to remove a used node', () => {
    const { graph, matmul, relu } = smallGraph();
    expect(() => graph.removeNode(matmul)).toThrow(/still used/);
    const replacement = graph.addNode({ opType: Op.Identity, inputs: [graph.inputs[0]], outputs: ['id'] });
    relu.setInput(0, replacement.outputs[0]);
    expect(graph.removeDeadCode()).toEqual({ nodes: 1, initializers: 1 });
    expect(graph.nodes.map((n) => n.opType)).toEqual(['Identity', 'Relu']);
  });

  it('places added nodes after their producers and sorts topologically', () => {
    const { graph, matmul } = smallGraph();
    const added = graph.addNode({ opType: Op.Neg, inputs: [matmul.outputs[0]], outputs: ['n'] });
    expect(graph.nodes.indexOf(added)).toBe(graph.nodes.indexOf(matmul) + 1);
    graph.nodes.reverse();
    graph.sortTopologically();
    expect(graph.nodes[0]).toBe(matmul);
  });

  it('makes names unique deterministically', () => {
    const { graph } = smallGraph();
    expect(graph.uniqueName('y')).toBe('y_1');
    expect(graph.uniqueName('y')).toBe('y_2');
  });

  it('round-trips through the ONNX encoding with the same text IR', () => {
    const { model } = smallGraph();
    const again = decodeModel(encodeModel(model));
    expect(printModel(again)).toBe(printModel(model));
  });

  it('packs int4 two to a byte, low nibble first', () => {
    const values = [-8, 7, 1, -1, 3];
    const packed = packInt4(values);
    expect(Array.from(packed)).toEqual([0x78, 0xf1, 0x03]);
    expect(unpackInt4(packed, 5, true)).toEqual(values);
    expect(Tensor.fromBytes(DataType.INT4, [5], packed).toNumbers()).toEqual(values);
  });

  it('computes lazy tensors on read and checks their length', () => {
    const good = Tensor.lazy(DataType.FLOAT, [2], () => new Uint8Array(new Float32Array([1, 2]).buffer));
    expect(Array.from(good.toFloat32())).toEqual([1, 2]);
    const bad = Tensor.lazy(DataType.FLOAT, [3], () => new Uint8Array(4));
    expect(() => bad.bytes()).toThrow(/produced 4 bytes, expected 12/);
  });
});
