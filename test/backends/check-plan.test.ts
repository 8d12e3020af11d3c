import { describe, expect, it } from 'vitest';
import { backends } from '../../src/backends/registry.js';
import { checkTensorRtPlacement } from '../../src/backends/tensorrt-placement.js';
import { discoverLayers } from '../../src/quant/layers.js';
import { Op, isOp } from '../../src/ir/ops.js';
import { loadModelSync } from '../../src/ir/serde.js';
import { Tensor } from '../../src/ir/tensor.js';
import type { ActivationQuantSpec, QuantPlan, WeightQuantSpec } from '../../src/quant/plan.js';
import { DIT_DIGITS } from '../passes/fixture.js';
import { w8a8 } from './quantized-fixtures.js';

const layers = discoverLayers(loadModelSync(`${DIT_DIGITS}/model.onnx`));
const w4: WeightQuantSpec = { bits: 4, symmetric: true, granularity: { kind: 'group', size: 128 }, range: { kind: 'minmax' }, rounding: { kind: 'nearest' } };
const w8: WeightQuantSpec = { bits: 8, symmetric: true, granularity: { kind: 'per-channel' }, range: { kind: 'minmax' }, rounding: { kind: 'nearest' } };
const act = (bits: number, symmetric: boolean, mode: ActivationQuantSpec['mode'] = { kind: 'static' }): ActivationQuantSpec => ({ bits, symmetric, mode, range: { kind: 'minmax' } });
/** The span of the recipe rule every test plan entry names. */
const RULE = { file: 'test.qrecipe', offset: 40, length: 12 };
const plan = (entries: [string, WeightQuantSpec, ActivationQuantSpec?][]): QuantPlan =>
  new Map(entries.map(([layer, weight, input]) => [layer, { layer, weight, ...(input ? { input } : {}), span: RULE }]));

describe('checkPlan: unsupported combinations are named before compiling', () => {
  it('int4 activations on webgpu: the layer and the combination', () => {
    const issues = backends.webgpu.checkPlan(plan([['blocks.2.mlp.fc1', w4, act(4, true)], ['blocks.2.attn.qkv', w4]]), layers);
    expect(issues).toEqual([{ layer: 'blocks.2.mlp.fc1', code: 'unsupported-activation', message: 'activation int4 sym static on MatMul is not supported', span: RULE }]);
  });

  it('asymmetric or runtime-scaled activations on tensorrt', () => {
    const issues = backends.tensorrt.checkPlan(plan([['blocks.0.attn.out', w8, act(8, false)], ['blocks.1.mlp.fc2', w8, act(8, true, { kind: 'per-timestep', groups: 10 })], ['blocks.1.mlp.fc1', w8, act(8, true)]]), layers);
    expect(issues.map((i) => `${i.layer}: ${i.message}`)).toEqual([
      'blocks.0.attn.out: activation uint8 asym static on MatMul is not supported; --allow-requantize would lower it as int8 sym static (requantized: scale max(|lo|, |hi|)/127 of the calibrated range)',
      'blocks.1.mlp.fc2: activation int8 sym per-timestep on MatMul is not supported',
    ]);
    // Requantization covers static ranges only: a per-timestep table has no single symmetric scale.
    const requantized = backends.tensorrt.checkPlan(plan([['blocks.0.attn.out', w8, act(8, false)], ['blocks.1.mlp.fc2', w8, act(8, true, { kind: 'per-timestep', groups: 10 })]]), layers, { requantize: true });
    expect(requantized.map((i) => i.layer)).toEqual(['blocks.1.mlp.fc2']);
  });

  it('group sizes outside MatMulNBits block sizes, and every auto candidate, are checked (webgpu; cpu keeps them as blocked DQ)', () => {
    const g96: WeightQuantSpec = { ...w4, granularity: { kind: 'group', size: 96 } };
    const auto: WeightQuantSpec = { ...w4, granularity: { kind: 'auto', candidates: [64, 100], budget: { kind: 'mean-group-size', min: 64 } } };
    const both = plan([['blocks.0.mlp.fc1', g96], ['blocks.0.mlp.fc2', auto]]);
    expect(backends.cpu.checkPlan(both, layers)).toEqual([]);
    const issues = backends.webgpu.checkPlan(both, layers);
    expect(issues.map((i) => i.layer + ': ' + i.message.replace(/ \(.*\)$/, ''))).toEqual([
      'blocks.0.mlp.fc1: weight int4 sym group 96 (partial last group) on MatMul is not supported',
      'blocks.0.mlp.fc2: weight int4 sym group 100 (partial last group) on MatMul is not supported',
    ]);
  });

  it('a partial last group (the size does not divide the input channels) runs on cpu, cuda and webgpu; tensorrt refuses it, saying why', () => {
    // fc1 given 192 input channels: groups of 128 leave a last group of 64; fc2's 512 divide.
    const g128: WeightQuantSpec = { ...w4, granularity: { kind: 'group', size: 128 } };
    const narrow = layers.map((l) => (l.name === 'blocks.0.mlp.fc1' ? { ...l, inChannels: 192 } : l));
    const planned = plan([['blocks.0.mlp.fc1', g128], ['blocks.0.mlp.fc2', g128]]);
    for (const target of ['cpu', 'cuda', 'webgpu'] as const) expect(backends[target].checkPlan(planned, narrow)).toEqual([]);
    expect(backends.tensorrt.checkPlan(planned, narrow).map((i) => `${i.layer}: ${i.message}`)).toEqual([
      "blocks.0.mlp.fc1: weight int4 sym group 128 (partial last group) on MatMul is not supported: the target needs the group size to divide the input channels (this layer's last group is partial)",
    ]);
  });

  it('the recipes that ship are accepted where they are meant to run', () => {
    const rtn = plan(layers.filter((l) => /^(attn|mlp)\.|^adaln$/.test(l.role)).map((l) => [l.name, w4] as [string, WeightQuantSpec]));
    for (const target of ['cpu', 'webgpu', 'cuda', 'tensorrt'] as const) expect(backends[target].checkPlan(rtn, layers), target).toEqual([]);
    const w8a8Plan = plan(layers.filter((l) => /^(attn|mlp)\.|^adaln$/.test(l.role)).map((l) => [l.name, { ...w8, symmetric: false }, act(8, false)] as [string, WeightQuantSpec, ActivationQuantSpec]));
    expect(backends.cpu.checkPlan(w8a8Plan, layers)).toEqual([]);
    expect(backends.webgpu.checkPlan(w8a8Plan, layers)).toEqual([]);
  });
});

describe('checkTensorRtPlacement on good and bad graphs', () => {
  it('symmetric W8A8 is clean; a weight scale on the input axis, a Q/DQ on a bias, and a nonzero zero point are each reported', async () => {
    const model = await w8a8(true);
    expect(checkTensorRtPlacement(model)).toEqual([]);
    const nodes = model.graph.nodes;
    const weightDq = nodes.find((n) => n.name === 'blocks.0.mlp.fc1/weight_dequantize')!;
    weightDq.attributes.set('axis', { kind: 'int', value: 0 });
    const gemm = nodes.find((n) => isOp(n, Op.Gemm) && n.input(1).producer?.opType === Op.DequantizeLinear)!;
    const biasDq = model.graph.addNode({ opType: Op.DequantizeLinear, name: 'bias_dq', inputs: [gemm.input(2), model.graph.addInitializer('bias_scale', Tensor.fromFloat32([], Float32Array.of(1)))], outputs: ['bias_dq'], before: gemm });
    gemm.setInput(2, biasDq.outputs[0]);
    const actQ = nodes.find((n) => n.name === 'blocks.1.attn.out/input_quant/q')!;
    actQ.setInput(2, model.graph.addInitializer('zp3', Tensor.fromBytes(actQ.input(2).initializer!.dtype, [], Uint8Array.of(3))));
    expect(checkTensorRtPlacement(model).map((i) => `${i.layer}: ${i.message}`)).toEqual([
      'bias_dq: codes must be int8 (or int4 for weight-only blocked weights)',
      `bias_dq: Q/DQ on the bias of ${gemm.name}: TensorRT quantizes biases itself`,
      'blocks.0.mlp.fc1/weight_dequantize: per-channel weight scales must run along the output axis 1 of /blocks.0/mlp/fc1/MatMul, not axis 0',
      'blocks.1.attn.out/input_quant/q: zero point must be 0 (symmetric quantization)',
    ]);
  });
});

describe('every shipped recipe', () => {
  it('is accepted by the backend of its own target on dit-digits', async () => {
    const { readdirSync } = await import('node:fs');
    const { parseRecipeFile } = await import('../../src/recipe/parse.js');
    const { checkRecipeAgainstModel } = await import('../../src/recipe/check.js');
    const { planRecipe } = await import('../../src/recipe/plan.js');
    const { loadModelSync } = await import('../../src/ir/serde.js');
    const { discoverLayers } = await import('../../src/quant/layers.js');
    const fixtureLayers = discoverLayers(loadModelSync('test/fixtures/dit-digits/model.onnx'));
    for (const file of readdirSync('recipes')) {
      const recipe = parseRecipeFile(`recipes/${file}`).recipe!;
      const { plan: recipePlan } = planRecipe(recipe, fixtureLayers, checkRecipeAgainstModel(recipe, fixtureLayers).selection, file);
      expect(backends[recipe.target].checkPlan(recipePlan, fixtureLayers), file).toEqual([]);
    }
  });
});
