/**
 * Weight storage in every layout (MatMul W[K,N], Gemm transB W[N,K], Conv 1x1 and 3x3) and every format, checked
 * in ONNX Runtime: the DequantizeLinear output ORT computes must lie within half a step of the float weight
 * (a wrong axis, block layout or int4 packing breaks that), and the layer output must stay close.
 */
import { describe, expect, it } from 'vitest';
import { Graph, Model, type Node } from '../../src/ir/core.js';
import { DataType } from '../../src/ir/dtype.js';
import { Op, isOp } from '../../src/ir/ops.js';
import { Tensor } from '../../src/ir/tensor.js';
import type { WeightQuantSpec } from '../../src/quant/plan.js';
import { upgradeModelOpset } from '../../src/passes/opset-upgrade.js';
import { roundToNearest } from '../../src/passes/weight-quantizer.js';
import { installQuantizedWeight, prepareWeight, quantizeWeightTask } from '../../src/passes/weight-storage.js';
import { OrtExecutor } from '../../src/runtime/ir-executor.js';
import { join } from 'node:path';
import { loadModelSync } from '../../src/ir/serde.js';
import { discoverLayers } from '../../src/quant/layers.js';
import { quantizePlannedWeights } from '../../src/passes/weight-quantization.js';
import { DIT_DIGITS, sqnrDb } from './fixture.js';

function seededNormal(seed: number): () => number {
  let s = seed >>> 0;
  const uniform = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) + 0.5) / 2 ** 32;
  return () => Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform());
}

type LayoutName = 'matmul' | 'gemm-transB' | 'conv1x1' | 'conv3x3';

/** One linear layer in `layout` with K = 64 input channels (16·3·3 for conv3x3) and N = 24 outputs. */
function layerModel(layout: LayoutName): { model: Model; node: Node; feeds: Record<string, { dtype: 'float32'; dims: number[]; data: Float32Array }> } {
  const normal = seededNormal(11);
  const graph = new Graph('g');
  const random = (dims: number[]) => Tensor.fromFloat32(dims, Float32Array.from({ length: dims.reduce((a, b) => a * b, 1) }, () => normal() * 0.2));
  let node: Node;
  let inputDims: number[];
  if (layout === 'matmul' || layout === 'gemm-transB') {
    inputDims = [8, 64];
    const x = graph.addInput('x', { elemType: DataType.FLOAT, shape: inputDims });
    const w = graph.addInitializer('w', random(layout === 'matmul' ? [64, 24] : [24, 64]));
    node = layout === 'matmul'
      ? graph.addNode({ opType: Op.MatMul, inputs: [x, w], outputs: ['y'], name: 'layer' })
      : graph.addNode({ opType: Op.Gemm, inputs: [x, w], outputs: ['y'], name: 'layer', attributes: { transB: { kind: 'int', value: 1 } } });
  } else {
    const kernel = layout === 'conv1x1' ? 1 : 3;
    inputDims = [2, layout === 'conv1x1' ? 64 : 16, 6, 6];
    const x = graph.addInput('x', { elemType: DataType.FLOAT, shape: inputDims });
    const w = graph.addInitializer('w', random([24, inputDims[1]!, kernel, kernel]));
    node = graph.addNode({ opType: Op.Conv, inputs: [x, w], outputs: ['y'], name: 'layer', attributes: { kernel_shape: { kind: 'ints', value: [kernel, kernel] } } });
  }
  graph.outputs.push(node.outputs[0]!);
  const model = new Model(graph);
  model.opsetImports.set('', 17);
  const count = inputDims.reduce((a, b) => a * b, 1);
  return { model, node, feeds: { x: { dtype: 'float32', dims: inputDims, data: Float32Array.from({ length: count }, normal) } } };
}

const spec = (bits: number, symmetric: boolean, signed: boolean, granularity: WeightQuantSpec['granularity']): WeightQuantSpec => ({
  bits,
  symmetric,
  signed,
  granularity,
  range: { kind: 'minmax' },
  rounding: { kind: 'nearest' },
});

const SPECS: [string, WeightQuantSpec, number][] = [
  ['int8 sym per-tensor', spec(8, true, true, { kind: 'per-tensor' }), 35],
  ['uint8 asym per-channel', spec(8, false, false, { kind: 'per-channel' }), 38],
  ['int8 asym group 32', spec(8, false, true, { kind: 'group', size: 32 }), 38],
  ['int4 sym group 16', spec(4, true, true, { kind: 'group', size: 16 }), 14],
  ['uint4 asym group 32', spec(4, false, false, { kind: 'group', size: 32 }), 14],
  ['int4 sym per-channel', spec(4, true, true, { kind: 'per-channel' }), 12],
];

async function run(model: Model, feeds: ReturnType<typeof layerModel>['feeds'], fetch: string[], optimization: 'basic' | 'all') {
  const prepared = await new OrtExecutor({ optimization }).prepare(model, fetch);
  try {
    return await prepared.run(feeds);
  } finally {
    await prepared.release();
  }
}

describe('quantized weight storage in ONNX Runtime', () => {
  for (const layout of ['matmul', 'gemm-transB', 'conv1x1', 'conv3x3'] as const) {
    for (const [label, weightSpec, floor] of SPECS) {
      it(`${layout}: ${label}`, async () => {
        const { model, node, feeds } = layerModel(layout);
        const weight = node.inputs[1]!;
        const original = Float32Array.from(weight.initializer!.toFloat32());
        const reference = (await run(model, feeds, ['y'], 'basic')).y!.data as Float32Array;
        upgradeModelOpset(model, 21);
        const prepared = prepareWeight({ name: 'layer', node, weight }, weightSpec);
        const outcome = installQuantizedWeight(prepared, quantizeWeightTask(prepared.task, roundToNearest));
        const fellBack = layout === 'conv3x3' && weightSpec.granularity.kind === 'group';
        expect(outcome.fellBackToPerChannel).toBe(fellBack);
        expect(outcome.granularity).toBe(fellBack ? 'per-channel' : weightSpec.granularity.kind);
        const dq = node.inputs[1]!.producer!;
        expect(isOp(dq, Op.DequantizeLinear)).toBe(true);
        expect(model.graph.initializers.has('w')).toBe(false);
        const scale = dq.inputs[1]!.initializer!.toFloat32();
        const halfStep = Math.max(...scale) / 2 + 1e-6;
        for (const optimization of ['basic', 'all'] as const) {
          const out = await run(model, feeds, ['y', dq.outputs[0]!.name], optimization);
          const dequantized = out[dq.outputs[0]!.name]!.data as Float32Array;
          let worst = 0;
          for (let i = 0; i < original.length; i++) worst = Math.max(worst, Math.abs(dequantized[i]! - original[i]!));
          expect(worst).toBeLessThanOrEqual(halfStep);
          expect(sqnrDb(reference, out.y!.data as Float32Array)).toBeGreaterThan(floor);
        }
      });
    }
  }
});

describe('quantizePlannedWeights', () => {
  it('yields to the event loop between layers, so a signal is handled after the current layer, not the whole pass', async () => {
    const model = loadModelSync(join(DIT_DIGITS, 'model.onnx'));
    const weight: WeightQuantSpec = { bits: 8, symmetric: true, granularity: { kind: 'per-channel' }, range: { kind: 'minmax' }, rounding: { kind: 'nearest' } };
    const plan = new Map(discoverLayers(model).filter((l) => /^(attn|mlp)\./.test(l.role)).map((l) => [l.name, { layer: l.name, weight }]));
    let finished = 0;
    let finishedWhenLoopRan: number | undefined;
    setImmediate(() => (finishedWhenLoopRan = finished));
    const result = await quantizePlannedWeights(model, plan, undefined, (_, done) => (finished = done));
    expect(result.statistics.layers_quantized).toBe(plan.size);
    expect(plan.size).toBeGreaterThan(2);
    // The event loop ran right after the first layer, long before the last.
    expect(finishedWhenLoopRan).toBe(1);
  });
});
