/** The small hand-built graphs of the golden tests, one per case, with the pipeline each runs. */
import { Graph, Model } from '../../src/ir/core.js';
import { DataType } from '../../src/ir/dtype.js';
import { Op } from '../../src/ir/ops.js';
import { Tensor } from '../../src/ir/tensor.js';

/** One golden case. */
export interface GoldenCase {
  name: string;
  pipeline: string;
  build(): Model;
}

const f32 = DataType.FLOAT;

function model(graph: Graph, opset: number): Model {
  const m = new Model(graph);
  m.opsetImports.set('', opset);
  return m;
}

/** A deterministic ramp, so weights have readable summaries. */
function ramp(count: number, scale: number): Float32Array {
  return Float32Array.from({ length: count }, (_, i) => Math.fround(Math.sin(i * 0.7 + 0.3) * scale));
}

export const goldenCases: GoldenCase[] = [
  {
    name: 'upgrade-opset-reduce-split-squeeze',
    pipeline: 'upgrade-opset',
    build() {
      const graph = new Graph('g');
      const x = graph.addInput('x', { elemType: f32, shape: [2, 6, 1] });
      const squeeze = graph.addNode({ opType: Op.Squeeze, inputs: [x], outputs: ['squeezed'], attributes: { axes: { kind: 'ints', value: [2] } } });
      const mean = graph.addNode({ opType: Op.ReduceMean, inputs: [squeeze.outputs[0]], outputs: ['mean'], attributes: { axes: { kind: 'ints', value: [-1] }, keepdims: { kind: 'int', value: 1 } } });
      const sum = graph.addNode({ opType: Op.ReduceSum, inputs: [squeeze.outputs[0]], outputs: ['sum'], attributes: { axes: { kind: 'ints', value: [1] } } });
      const split = graph.addNode({ opType: Op.Split, inputs: [squeeze.outputs[0]], outputs: ['a', 'b', 'c'], attributes: { axis: { kind: 'int', value: 1 } } });
      const add = graph.addNode({ opType: Op.Add, inputs: [split.outputs[0], mean.outputs[0]], outputs: ['y'] });
      graph.outputs.push(add.outputs[0]!, sum.outputs[0]!, split.outputs[2]!);
      return model(graph, 11);
    },
  },
  {
    name: 'cleanup-identity-duplicates-dead',
    pipeline: 'cleanup',
    build() {
      const graph = new Graph('g');
      const x = graph.addInput('x', { elemType: f32, shape: [2, 4] });
      const one = graph.addInitializer('one', Tensor.fromFloat32([4], Float32Array.of(1, 1, 1, 1)));
      const ones = graph.addInitializer('ones', Tensor.fromFloat32([4], Float32Array.of(1, 1, 1, 1)));
      graph.addInitializer('unused', Tensor.fromFloat32([2], Float32Array.of(3, 4)));
      const identity = graph.addNode({ opType: Op.Identity, inputs: [x], outputs: ['x_copy'] });
      const a = graph.addNode({ opType: Op.Mul, inputs: [identity.outputs[0], one], outputs: ['a'] });
      const b = graph.addNode({ opType: Op.Add, inputs: [a.outputs[0], ones], outputs: ['b'] });
      graph.addNode({ opType: Op.Relu, inputs: [b.outputs[0]], outputs: ['dead'] });
      const out = graph.addNode({ opType: Op.Identity, inputs: [b.outputs[0]], outputs: ['out'] });
      graph.outputs.push(out.outputs[0]!);
      return model(graph, 17);
    },
  },
];

export { ramp };
