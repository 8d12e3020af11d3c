import { describe, expect, it } from 'vitest';
import { layersOf } from '../../src/quant/identity.js';
import { discoverLayers } from '../../src/quant/layers.js';
import { loadModelSync } from '../../src/ir/serde.js';
import { calibrate } from '../../src/passes/calibrate.js';
import { quantizeActivations } from '../../src/passes/quantize-activations.js';
import { quantizeWeights } from '../../src/passes/quantize-weights.js';
import { OrtExecutor } from '../../src/runtime/ir-executor.js';
import { calibrationBatches } from '../../bench/calibration-batches.js';
import type { Model, Value } from '../../src/ir/core.js';
import { Op, isOp, type OpType } from '../../src/ir/ops.js';
import { Tensor } from '../../src/ir/tensor.js';
import { buildUnet } from '../../src/synth/unet.js';
import { Artifacts, CALIBRATION_BATCHES } from '../../src/passes/artifacts.js';
import { runPass } from '../../src/passes/pass-manager.js';

const FIXTURE = 'test/fixtures/dit-digits/model.onnx';

function table(source: string | Model, scramble = false) {
  const model = typeof source === 'string' ? loadModelSync(source) : source;
  if (scramble) {
    // Names carry no meaning: rename every node and initializer to opaque strings.
    let i = 0;
    for (const node of model.graph.nodes) node.name = `n${i++}`;
    for (const value of model.graph.initializers.values()) value.name = `onnx::Opaque_${i++}`;
  }
  return discoverLayers(model).map((l) => ({ name: l.name, role: l.role, op: l.opType, shape: l.weightShape.join('x'), io: `${l.inChannels}->${l.outChannels}`, block: l.block, bias: l.bias !== undefined }));
}

describe('layer discovery on the dit-digits fixture', () => {
  const layers = table(FIXTURE);

  it('finds the embedders, 6 blocks of adaLN/qkv/proj/fc1/fc2 and the final layer', () => {
    expect(layers).toHaveLength(4 + 6 * 5 + 2);
    expect(layers.slice(0, 4)).toEqual([
      { name: 'embed.patch', role: 'embed.patch', op: 'Conv', shape: '128x1x2x2', io: '1->128', block: undefined, bias: true },
      { name: 'embed.time.0', role: 'embed.time', op: 'Gemm', shape: '128x256', io: '256->128', block: undefined, bias: true },
      { name: 'embed.time.1', role: 'embed.time', op: 'Gemm', shape: '128x128', io: '128->128', block: undefined, bias: true },
      { name: 'embed.label', role: 'embed.label', op: 'Gather', shape: '10x128', io: '128->10', block: undefined, bias: false },
    ]);
    for (let b = 0; b < 6; b++) {
      expect(layers.slice(4 + 5 * b, 9 + 5 * b)).toEqual([
        { name: `blocks.${b}.adaln`, role: 'adaln', op: 'Gemm', shape: '768x128', io: '128->768', block: b, bias: true },
        { name: `blocks.${b}.attn.qkv`, role: 'attn.qkv', op: 'MatMul', shape: '128x384', io: '128->384', block: b, bias: true },
        { name: `blocks.${b}.attn.out`, role: 'attn.out', op: 'MatMul', shape: '128x128', io: '128->128', block: b, bias: true },
        { name: `blocks.${b}.mlp.fc1`, role: 'mlp.fc1', op: 'MatMul', shape: '128x512', io: '128->512', block: b, bias: true },
        { name: `blocks.${b}.mlp.fc2`, role: 'mlp.fc2', op: 'MatMul', shape: '512x128', io: '512->128', block: b, bias: true },
      ]);
    }
    expect(layers.slice(34)).toEqual([
      { name: 'final.adaln', role: 'adaln', op: 'Gemm', shape: '256x128', io: '128->256', block: undefined, bias: true },
      { name: 'final.linear', role: 'final', op: 'MatMul', shape: '128x4', io: '128->4', block: undefined, bias: true },
    ]);
  });

  it('gives the same table when every name is scrambled', () => {
    expect(table(FIXTURE, true)).toEqual(layers);
  });

  it('gives the same table when LayerNorm is spelled out (ReduceMean/Sub/Pow/Sqrt/Div, as before opset 17)', () => {
    const model = loadModelSync(FIXTURE);
    const graph = model.graph;
    const f32 = (name: string, value: number) => graph.addInitializer(name, Tensor.fromFloat32([], Float32Array.of(value)));
    const two = f32('ln.two', 2);
    const eps = f32('ln.eps', 1e-6);
    for (const ln of graph.nodes.filter((n) => isOp(n, Op.LayerNormalization))) {
      const [x, scale, bias] = [ln.input(0), ln.input(1), ln.input(2)];
      const add = (opType: OpType, inputs: Value[], attributes = {}) => graph.addNode({ opType, inputs, outputs: 1, attributes, before: ln }).outputs[0]!;
      const axes = { axes: { kind: 'ints', value: [-1] }, keepdims: { kind: 'int', value: 1 } } as const;
      const centered = add(Op.Sub, [x, add(Op.ReduceMean, [x], axes)]);
      const variance = add(Op.ReduceMean, [add(Op.Pow, [centered, two])], axes);
      const normed = add(Op.Div, [centered, add(Op.Sqrt, [add(Op.Add, [variance, eps])])]);
      ln.outputs[0]!.replaceAllUsesWith(add(Op.Add, [add(Op.Mul, [normed, scale]), bias]));
      graph.removeNode(ln);
    }
    expect(graph.nodes.some((n) => isOp(n, Op.LayerNormalization))).toBe(false);
    expect(table(model)).toEqual(layers);
  });

  it('gives the same table when the MLP activation is Relu instead of GELU', () => {
    const model = loadModelSync(FIXTURE);
    for (const layer of discoverLayers(model)) {
      if (layer.role !== 'mlp.fc1') continue;
      const fc1Out = layer.node.outputs[0]!.uses[0]!.node.outputs[0]!; // after the bias Add
      const fc2 = discoverLayers(model).find((l) => l.role === 'mlp.fc2' && l.block === layer.block)!.node;
      const relu = model.graph.addNode({ opType: Op.Relu, inputs: [fc1Out], outputs: 1, before: fc2 });
      fc2.setInput(0, relu.outputs[0]!);
    }
    model.graph.removeDeadCode();
    expect(model.graph.nodes.some((n) => isOp(n, Op.Tanh))).toBe(false);
    expect(table(model)).toEqual(layers);
  });

  it('still finds quantized layers (weights behind DequantizeLinear) under the same names', async () => {
    const model = loadModelSync(FIXTURE);
    const spec = { bits: 4, symmetric: true, granularity: { kind: 'group', size: 32 }, range: { kind: 'minmax' }, rounding: { kind: 'nearest' } } as const;
    const plan = new Map(discoverLayers(model).filter((l) => l.role !== 'embed.label').map((l) => [l.name, { layer: l.name, weight: spec }]));
    await runPass(quantizeWeights, model, {}, { seed: 0, plan, artifacts: new Artifacts(), progress: () => {}, log: () => {} });
    const after = discoverLayers(model);
    expect(after.map((l) => [l.name, l.role])).toEqual(layers.map((l) => [l.name, l.role]));
    expect(after.filter((l) => l.quantized).length).toBe(plan.size);
  });

  // Activation quantization sits between a layer and what it reads (adaLN reads SiLU(c) through it): roles are
  // judged once, on the float model, and read back from the stamps whichever form the quantizer takes.
  it.each([
    ['static Q/DQ', { kind: 'static' }, false],
    ['per-timestep fake-quant, asymmetric', { kind: 'per-timestep', groups: 4 }, false],
    ['dynamic per-token-group fake-quant', { kind: 'dynamic', granularity: 'per-token-group', groupSize: 32 }, true],
  ] as const)('keeps every name and role behind %s activations (from the stamps)', async (_, mode, symmetric) => {
    const model = loadModelSync(FIXTURE);
    const weight = { bits: 8, symmetric: true, granularity: { kind: 'per-channel' }, range: { kind: 'minmax' }, rounding: { kind: 'nearest' } } as const;
    const input = { bits: 8, symmetric, mode, range: { kind: 'minmax' } } as const;
    const plan = new Map(layers.filter((l) => /^(attn|mlp)\.|^adaln$/.test(l.role)).map((l) => [l.name, { layer: l.name, weight, input }]));
    const context = { seed: 0, plan, executor: new OrtExecutor(), artifacts: new Artifacts().set(CALIBRATION_BATCHES, calibrationBatches(8, 8)), progress: () => {}, log: () => {} };
    await runPass(quantizeWeights, model, {}, context);
    if (mode.kind !== 'dynamic') await runPass(calibrate, model, { ema: 0, timesteps: 1000 }, context);
    await runPass(quantizeActivations, model, { timesteps: 1000 }, context);
    const after = layersOf(model);
    expect(after.map((l) => [l.name, l.role, l.block])).toEqual(layers.map((l) => [l.name, l.role, l.block]));
    expect(after.filter((l) => l.quantized).length).toBe(plan.size);
    // Structural discovery is for float models: the quantizer hides what adaLN reads, so it would misjudge roles.
    expect(discoverLayers(model).map((l) => l.role)).not.toEqual(layers.map((l) => l.role));
  });
});

describe('layer discovery on a synthetic UNet (GroupNorm as InstanceNorm, resblocks, skips, samplers, one transformer)', () => {
  // Names are structural: level by samplers, resblock parts by dataflow, up path from the skip Concats.
  const row = (name: string, role: string, op: string, io: string, block?: number) => ({ name, role, op, io, block });
  const expected = [
    row('embed.time.0', 'embed.time', 'Gemm', '64->128'),
    row('embed.time.1', 'embed.time', 'Gemm', '128->128'),
    row('conv.in', 'conv.in', 'Conv', '4->32'),
    row('down.0.res.0.conv1', 'res.conv', 'Conv', '32->32'), row('down.0.res.0.time', 'res.time', 'Gemm', '128->32'), row('down.0.res.0.conv2', 'res.conv', 'Conv', '32->32'),
    row('down.0.downsample', 'down', 'Conv', '32->32'),
    row('down.1.res.0.conv1', 'res.conv', 'Conv', '32->64'), row('down.1.res.0.time', 'res.time', 'Gemm', '128->64'), row('down.1.res.0.conv2', 'res.conv', 'Conv', '64->64'), row('down.1.res.0.skip', 'res.skip', 'Conv', '32->64'),
    row('mid.res.0.conv1', 'res.conv', 'Conv', '64->64'), row('mid.res.0.time', 'res.time', 'Gemm', '128->64'), row('mid.res.0.conv2', 'res.conv', 'Conv', '64->64'),
    row('mid.attn.0.q', 'attn.q', 'MatMul', '64->64', 0), row('mid.attn.0.k', 'attn.k', 'MatMul', '64->64', 0), row('mid.attn.0.v', 'attn.v', 'MatMul', '64->64', 0),
    row('mid.attn.0.out', 'attn.out', 'MatMul', '64->64', 0), row('mid.attn.0.mlp.fc1', 'mlp.fc1', 'MatMul', '64->256', 0), row('mid.attn.0.mlp.fc2', 'mlp.fc2', 'MatMul', '256->64', 0),
    row('mid.res.1.conv1', 'res.conv', 'Conv', '64->64'), row('mid.res.1.time', 'res.time', 'Gemm', '128->64'), row('mid.res.1.conv2', 'res.conv', 'Conv', '64->64'),
    row('up.0.res.0.conv1', 'res.conv', 'Conv', '128->64'), row('up.0.res.0.time', 'res.time', 'Gemm', '128->64'), row('up.0.res.0.conv2', 'res.conv', 'Conv', '64->64'), row('up.0.res.0.skip', 'res.skip', 'Conv', '128->64'),
    row('up.0.upsample', 'up', 'Conv', '64->64'),
    row('up.1.res.0.conv1', 'res.conv', 'Conv', '96->32'), row('up.1.res.0.time', 'res.time', 'Gemm', '128->32'), row('up.1.res.0.conv2', 'res.conv', 'Conv', '32->32'), row('up.1.res.0.skip', 'res.skip', 'Conv', '96->32'),
    row('conv.out', 'conv.out', 'Conv', '32->4'),
  ];
  const strip = (rows: ReturnType<typeof table>) => rows.map(({ name, role, op, io, block }) => ({ name, role, op, io, block }));

  it('finds every role and structural name in forward order', () => {
    expect(strip(table(buildUnet()))).toEqual(expected);
  });

  it('gives the same table when every name is scrambled', () => {
    expect(strip(table(buildUnet(), true))).toEqual(expected);
  });

  it('keeps separate q/k/v in one block whatever order the export lists them in', () => {
    const model = buildUnet();
    // Move v's MatMul before q's: still topological (both read the same LayerNorm output).
    const nodes = model.graph.nodes;
    const layers = discoverLayers(model);
    const q = layers.find((l) => l.role === 'attn.q')!.node;
    const v = layers.find((l) => l.role === 'attn.v')!.node;
    nodes.splice(nodes.indexOf(v), 1);
    nodes.splice(nodes.indexOf(q), 0, v);
    const reordered = discoverLayers(model).filter((l) => l.block !== undefined).map((l) => `${l.name} ${l.role}`);
    expect(reordered).toEqual(['mid.attn.0.v attn.v', 'mid.attn.0.q attn.q', 'mid.attn.0.k attn.k', 'mid.attn.0.out attn.out', 'mid.attn.0.mlp.fc1 mlp.fc1', 'mid.attn.0.mlp.fc2 mlp.fc2']);
  });
});
