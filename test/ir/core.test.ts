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

  it('sorts stably: of the nodes ready, the earliest first, so a topological order is kept as it is', () => {
    const graph = new Graph('g');
    const x = graph.addInput('x', { elemType: DataType.FLOAT, shape: [4] });
    // Two independent chains a1→a2→a3 and b1→b2→b3 joined by an Add.
    const chain = (tag: string) => {
      const first = graph.addNode({ opType: Op.Relu, name: `${tag}1`, inputs: [x], outputs: [`${tag}1`] });
      const second = graph.addNode({ opType: Op.Neg, name: `${tag}2`, inputs: [first.outputs[0]], outputs: [`${tag}2`] });
      return graph.addNode({ opType: Op.Abs, name: `${tag}3`, inputs: [second.outputs[0]], outputs: [`${tag}3`] });
    };
    const a = chain('a');
    const b = chain('b');
    graph.addNode({ opType: Op.Add, name: 'sum', inputs: [a.outputs[0], b.outputs[0]], outputs: ['sum'] });
    const names = () => graph.nodes.map((n) => n.name).join(' ');
    const sorted = names();
    graph.sortTopologically();
    expect(names()).toBe(sorted);
    const byName = new Map(graph.nodes.map((n) => [n.name, n]));
    graph.nodes.splice(0, graph.nodes.length, ...['sum', 'b3', 'a2', 'b1', 'a3', 'b2', 'a1'].map((n) => byName.get(n)!));
    graph.sortTopologically();
    // Ready at first: b1 (position 3) and a1 (6). b1 frees b2 (5), which goes before a1; b2 frees b3 (1); then a's chain.
    expect(names()).toBe('b1 b2 b3 a1 a2 a3 sum');
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
