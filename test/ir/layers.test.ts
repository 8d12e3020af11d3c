import { describe, expect, it } from 'vitest';
import { discoverLayers } from '../../src/ir/layers.js';
import { loadModelSync } from '../../src/ir/serde.js';
import { quantizeWeights } from '../../src/passes/quantize-weights.js';

const FIXTURE = 'test/fixtures/dit-digits/model.onnx';

function table(path: string, scramble = false) {
  const model = loadModelSync(path);
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
        { name: `blocks.${b}.attn.proj`, role: 'attn.proj', op: 'MatMul', shape: '128x128', io: '128->128', block: b, bias: true },
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

  it('still finds quantized layers (weights behind DequantizeLinear) under the same names', () => {
    const model = loadModelSync(FIXTURE);
    const spec = { bits: 4, symmetric: true, granularity: { kind: 'group', size: 32 }, range: { kind: 'minmax' }, rounding: { kind: 'nearest' } } as const;
    const plan = new Map(discoverLayers(model).filter((l) => l.role !== 'embed.label').map((l) => [l.name, { layer: l.name, weight: spec }]));
    quantizeWeights.run(model, {}, { seed: 0, plan, artifacts: new Map(), progress: () => {}, log: () => {} });
    const after = discoverLayers(model);
    expect(after.map((l) => [l.name, l.role])).toEqual(layers.map((l) => [l.name, l.role]));
    expect(after.filter((l) => l.quantized).length).toBe(plan.size);
  });
});
