/** The small hand-built graphs of the golden tests, one per case, with the pipeline each runs. */
import { Graph, Model, type Value } from '../../src/ir/core.js';
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

/** A linear on tokens as PyTorch exports it: MatMul(x, W[K,N]) + bias. */
function tokenLinear(graph: Graph, x: Value, name: string, K: number, N: number, seed: number): Value {
  const w = graph.addInitializer(`${name}.weight`, Tensor.fromFloat32([K, N], ramp(K * N, 0.1 + seed * 0.01)));
  const b = graph.addInitializer(`${name}.bias`, Tensor.fromFloat32([N], ramp(N, 0.01 * seed)));
  const path = `/${name.replace(/\.(attn|mlp)\./, '/$1/')}`;
  const mm = graph.addNode({ opType: Op.MatMul, inputs: [x, w], outputs: [`${path}/MatMul_output_0`], name: `${path}/MatMul` });
  return graph.addNode({ opType: Op.Add, inputs: [mm.outputs[0], b], outputs: [`${path}/Add_output_0`], name: `${path}/Add` }).outputs[0]!;
}

/**
 * One DiT block (hidden 32, 4 tokens, MLP 64) shaped like a PyTorch export: adaLN Gemm (transB) on SiLU(c)
 * split into shift/scale/gate, LayerNorm + modulation, fused qkv, attention, proj, fc1, fc2, gated residuals.
 */
function ditBlock(): Model {
  const D = 32;
  const graph = new Graph('dit-block');
  const x = graph.addInput('x', { elemType: f32, shape: [1, 4, D] });
  const c = graph.addInput('c', { elemType: f32, shape: [1, D] });
  const sigmoid = graph.addNode({ opType: Op.Sigmoid, inputs: [c], outputs: ['/adaLN/Sigmoid_output_0'], name: '/adaLN/Sigmoid' });
  const silu = graph.addNode({ opType: Op.Mul, inputs: [c, sigmoid.outputs[0]], outputs: ['/adaLN/Mul_output_0'], name: '/adaLN/Mul' });
  const adaW = graph.addInitializer('blocks.0.adaLN_modulation.1.weight', Tensor.fromFloat32([6 * D, D], ramp(6 * D * D, 0.05)));
  const adaB = graph.addInitializer('blocks.0.adaLN_modulation.1.bias', Tensor.fromFloat32([6 * D], ramp(6 * D, 0.01)));
  const ada = graph.addNode({
    opType: Op.Gemm,
    inputs: [silu.outputs[0], adaW, adaB],
    outputs: ['/blocks.0/adaLN_modulation/adaLN_modulation.1/Gemm_output_0'],
    name: '/blocks.0/adaLN_modulation/adaLN_modulation.1/Gemm',
    attributes: { transB: { kind: 'int', value: 1 } },
  });
  const split = graph.addNode({
    opType: Op.Split,
    inputs: [ada.outputs[0]],
    outputs: ['shift_msa', 'scale_msa', 'gate_msa', 'shift_mlp', 'scale_mlp', 'gate_mlp'],
    name: '/blocks.0/Split',
    attributes: { axis: { kind: 'int', value: 1 } },
  });
  const [shiftMsa, scaleMsa, gateMsa, shiftMlp, scaleMlp, gateMlp] = split.outputs;
  const one = graph.addInitializer('one', Tensor.fromFloat32([], Float32Array.of(1)));
  const lnScale = graph.addInitializer('ln.weight', Tensor.fromFloat32([D], new Float32Array(D).fill(1)));
  const lnBias = graph.addInitializer('ln.bias', Tensor.fromFloat32([D], new Float32Array(D)));
  const modulate = (input: Value, shift: Value, scale: Value, tag: string) => {
    const ln = graph.addNode({ opType: Op.LayerNormalization, inputs: [input, lnScale, lnBias], outputs: [`/blocks.0/${tag}/LayerNorm_output_0`], name: `/blocks.0/${tag}/LayerNorm`, attributes: { axis: { kind: 'int', value: -1 } } });
    const plus = graph.addNode({ opType: Op.Add, inputs: [scale, one], outputs: [`/blocks.0/${tag}/Add_output_0`], name: `/blocks.0/${tag}/Add` });
    const mul = graph.addNode({ opType: Op.Mul, inputs: [ln.outputs[0], plus.outputs[0]], outputs: [`/blocks.0/${tag}/Mul_output_0`], name: `/blocks.0/${tag}/Mul` });
    return graph.addNode({ opType: Op.Add, inputs: [mul.outputs[0], shift], outputs: [`/blocks.0/${tag}/Add_1_output_0`], name: `/blocks.0/${tag}/Add_1` }).outputs[0]!;
  };
  const gatedResidual = (residual: Value, branch: Value, gate: Value, tag: string) => {
    const gated = graph.addNode({ opType: Op.Mul, inputs: [branch, gate], outputs: [`/blocks.0/${tag}/Mul_1_output_0`], name: `/blocks.0/${tag}/Mul_1` });
    return graph.addNode({ opType: Op.Add, inputs: [residual, gated.outputs[0]], outputs: [`/blocks.0/${tag}/Add_2_output_0`], name: `/blocks.0/${tag}/Add_2` }).outputs[0]!;
  };
  const h = modulate(x, shiftMsa!, scaleMsa!, 'norm1');
  const qkv = tokenLinear(graph, h, 'blocks.0.attn.qkv', D, 3 * D, 1);
  const qkvSplit = graph.addNode({ opType: Op.Split, inputs: [qkv], outputs: ['q', 'k', 'v'], name: '/blocks.0/attn/Split', attributes: { axis: { kind: 'int', value: -1 } } });
  const [q, k, v] = qkvSplit.outputs;
  const kt = graph.addNode({ opType: Op.Transpose, inputs: [k], outputs: ['kT'], name: '/blocks.0/attn/Transpose', attributes: { perm: { kind: 'ints', value: [0, 2, 1] } } });
  const scores = graph.addNode({ opType: Op.MatMul, inputs: [q, kt.outputs[0]], outputs: ['scores'], name: '/blocks.0/attn/MatMul' });
  const probs = graph.addNode({ opType: Op.Softmax, inputs: [scores.outputs[0]], outputs: ['probs'], name: '/blocks.0/attn/Softmax', attributes: { axis: { kind: 'int', value: -1 } } });
  const attended = graph.addNode({ opType: Op.MatMul, inputs: [probs.outputs[0], v], outputs: ['attended'], name: '/blocks.0/attn/MatMul_1' });
  const proj = tokenLinear(graph, attended.outputs[0]!, 'blocks.0.attn.proj', D, D, 2);
  const x1 = gatedResidual(x, proj, gateMsa!, 'attn');
  const h2 = modulate(x1, shiftMlp!, scaleMlp!, 'norm2');
  const fc1 = tokenLinear(graph, h2, 'blocks.0.mlp.fc1', D, 2 * D, 3);
  const act = graph.addNode({ opType: Op.Relu, inputs: [fc1], outputs: ['/blocks.0/mlp/act/Relu_output_0'], name: '/blocks.0/mlp/act/Relu' });
  const fc2 = tokenLinear(graph, act.outputs[0]!, 'blocks.0.mlp.fc2', 2 * D, D, 4);
  graph.outputs.push(gatedResidual(x1, fc2, gateMlp!, 'mlp'));
  return model(graph, 17);
}

export const goldenCases: GoldenCase[] = [
  { name: 'quantize-weights-w8-per-channel', pipeline: 'select-layers{roles=attn|mlp|adaln,bits=8},quantize-weights', build: ditBlock },
  { name: 'quantize-weights-w4-group16-upgrades-opset', pipeline: 'select-layers{roles=attn.qkv|mlp.fc1,bits=4,group=16},quantize-weights,cleanup', build: ditBlock },
  {
    name: 'quantize-weights-uint8-asym-per-tensor',
    pipeline: 'select-layers{bits=8,granularity=per-tensor,roles=mlp,signed=false,symmetric=false},quantize-weights',
    build: ditBlock,
  },
  { name: 'quantize-weights-adaln-gemm-uint4-lp', pipeline: 'select-layers{bits=4,group=16,range=lp,roles=adaln,signed=false,symmetric=false},quantize-weights', build: ditBlock },
  {
    name: 'quantize-weights-conv-kernel-falls-back-per-channel',
    pipeline: 'select-layers{bits=4,group=4,roles=embed.patch},quantize-weights',
    build() {
      const graph = new Graph('patch-embed');
      const x = graph.addInput('x', { elemType: f32, shape: [1, 2, 4, 4] });
      const w = graph.addInitializer('x_embedder.weight', Tensor.fromFloat32([8, 2, 2, 2], ramp(64, 0.3)));
      const b = graph.addInitializer('x_embedder.bias', Tensor.fromFloat32([8], ramp(8, 0.01)));
      const conv = graph.addNode({
        opType: Op.Conv,
        inputs: [x, w, b],
        outputs: ['/x_embedder/Conv_output_0'],
        name: '/x_embedder/Conv',
        attributes: { kernel_shape: { kind: 'ints', value: [2, 2] }, strides: { kind: 'ints', value: [2, 2] } },
      });
      graph.outputs.push(conv.outputs[0]!);
      return model(graph, 17);
    },
  },
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

