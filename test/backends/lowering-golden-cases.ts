/**
 * The small quantized graphs the lowering goldens start from, one per target form: a two-layer MLP on tokens
 * (fc1 32→64, Relu, fc2 64→32, MatMul + bias as PyTorch exports them; discovered as `other.0`, `other.1`) whose weights the real quantize-weights
 * pass quantizes and whose input activations carry constant-scale Q/DQ written the way quantize-activations
 * names them, so the lowering judges exactly the form the pipeline hands it.
 */
import { Graph, Model, type Value } from '../../src/ir/core.js';
import { DataType } from '../../src/ir/dtype.js';
import { Op } from '../../src/ir/ops.js';
import { Tensor } from '../../src/ir/tensor.js';
import { quantizeWeights } from '../../src/passes/quantize-weights.js';
import { Artifacts } from '../../src/passes/artifacts.js';
import { runPass } from '../../src/passes/pass-manager.js';
import { discoverLayers } from '../../src/quant/layers.js';
import type { Granularity } from '../../src/quant/plan.js';

/** One lowering golden: a quantized model and the pipeline (a `lower-<target>` step) it runs. */
export interface LoweringCase {
  name: string;
  pipeline: string;
  build(): Promise<Model>;
}

/** A deterministic ramp, so weights have readable summaries. */
function ramp(count: number, scale: number): Float32Array {
  return Float32Array.from({ length: count }, (_, i) => Math.fround(Math.sin(i * 0.7 + 0.3) * scale));
}

function linear(graph: Graph, x: Value, layer: string, K: number, N: number, seed: number): Value {
  const w = graph.addInitializer(`mlp.${layer}.weight`, Tensor.fromFloat32([K, N], ramp(K * N, 0.1 + seed * 0.01)));
  const b = graph.addInitializer(`mlp.${layer}.bias`, Tensor.fromFloat32([N], ramp(N, 0.01 * seed)));
  const path = `/mlp/${layer}`;
  const mm = graph.addNode({ opType: Op.MatMul, inputs: [x, w], outputs: [`${path}/MatMul_output_0`], name: `${path}/MatMul` });
  return graph.addNode({ opType: Op.Add, inputs: [mm.outputs[0], b], outputs: [`${path}/Add_output_0`], name: `${path}/Add` }).outputs[0]!;
}

function mlp(): Model {
  const graph = new Graph('mlp');
  const x = graph.addInput('x', { elemType: DataType.FLOAT, shape: [1, 4, 32] });
  const h = linear(graph, x, 'fc1', 32, 64, 1);
  const relu = graph.addNode({ opType: Op.Relu, inputs: [h], outputs: ['/mlp/act/Relu_output_0'], name: '/mlp/act/Relu' });
  graph.outputs.push(linear(graph, relu.outputs[0]!, 'fc2', 64, 32, 2));
  const model = new Model(graph);
  model.opsetImports.set('', 17);
  return model;
}

/** Input-activation Q/DQ of a case: `bits`-bit codes, zero point 0 (signed) or near mid-range (unsigned). */
interface InputQdq {
  bits: 4 | 8;
  symmetric: boolean;
}

/**
 * The MLP with both weights quantized by quantize-weights (`bits`, symmetric or not, `granularity`) and, with
 * `input`, a constant-scale Q/DQ on each layer's input named as quantize-activations names it.
 */
async function quantized(bits: number, symmetric: boolean, granularity: Granularity, input?: InputQdq): Promise<Model> {
  const model = mlp();
  const layers = discoverLayers(model);
  const weight = { bits, symmetric, granularity, range: { kind: 'minmax' as const }, rounding: { kind: 'nearest' as const } };
  const plan = new Map(layers.map((layer) => [layer.name, { layer: layer.name, weight }]));
  await runPass(quantizeWeights, model, {}, { seed: 0, plan, artifacts: new Artifacts(), progress: () => undefined, log: () => undefined });
  if (!input) return model;
  const graph = model.graph;
  const codes = input.symmetric ? (input.bits === 8 ? DataType.INT8 : DataType.INT4) : input.bits === 8 ? DataType.UINT8 : DataType.UINT4;
  for (const [index, layer] of layers.entries()) {
    const source = layer.node.input(0);
    const scale = graph.addInitializer(`${layer.name}.input_quant.scale`, Tensor.fromFloat32([], Float32Array.of(Math.fround(0.02 * (index + 1)))));
    const zeroPoint = graph.addInitializer(`${layer.name}.input_quant.zero_point`, Tensor.fromBytes(codes, [], Uint8Array.of(input.symmetric ? 0 : input.bits === 8 ? 120 : 7)));
    const q = graph.addNode({ opType: Op.QuantizeLinear, inputs: [source, scale, zeroPoint], outputs: [`${source.name}/q`], name: `${layer.name}/input_quant/q`, before: layer.node });
    const dq = graph.addNode({ opType: Op.DequantizeLinear, inputs: [q.outputs[0], scale, zeroPoint], outputs: [`${source.name}/dq`], name: `${layer.name}/input_quant/dq`, before: layer.node });
    layer.node.setInput(0, dq.outputs[0]);
  }
  if (input.bits === 4) model.opsetImports.set('', Math.max(model.opset, 21));
  return model;
}

const perChannel: Granularity = { kind: 'per-channel' };

/** Every lowering golden, one or more per target. */
export const loweringCases: LoweringCase[] = [
  { name: 'lower-cpu-w4-group16-matmul-nbits', pipeline: 'lower-cpu', build: () => quantized(4, true, { kind: 'group', size: 16 }) },
  { name: 'lower-cpu-w8a8-asym-kept-for-qdq-fusion', pipeline: 'lower-cpu', build: () => quantized(8, false, perChannel, { bits: 8, symmetric: false }) },
  { name: 'lower-webgpu-w8a8-asym-fake-quant', pipeline: 'lower-webgpu', build: () => quantized(8, false, perChannel, { bits: 8, symmetric: false }) },
  { name: 'lower-webgpu-a4-falls-back-to-float', pipeline: 'lower-webgpu{allowFallback=true}', build: () => quantized(8, true, perChannel, { bits: 4, symmetric: true }) },
  { name: 'lower-cuda-w4-group32-matmul-nbits', pipeline: 'lower-cuda', build: () => quantized(4, false, { kind: 'group', size: 32 }) },
  { name: 'lower-tensorrt-w8a8-sym-kept', pipeline: 'lower-tensorrt', build: () => quantized(8, true, perChannel, { bits: 8, symmetric: true }) },
  { name: 'lower-tensorrt-w8a8-asym-requantized', pipeline: 'lower-tensorrt{allowRequantize=true}', build: () => quantized(8, false, perChannel, { bits: 8, symmetric: false }) },
];
