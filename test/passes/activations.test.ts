import { describe, expect, it } from 'vitest';
import { Graph, Model } from '../../src/ir/core.js';
import { DataType } from '../../src/ir/dtype.js';
import { Tensor } from '../../src/ir/tensor.js';
import { discoverLayers } from '../../src/quant/layers.js';
import { stampLayers } from '../../src/quant/identity.js';
import { compiledLayerRows } from '../../src/runtime/compiled-layers.js';
import { loadModelSync } from '../../src/ir/serde.js';
import { assertValid } from '../../src/ir/verify.js';
import { Op } from '../../src/ir/ops.js';
import type { TensorMap } from '../../src/ir/executor.js';
import type { PassContext } from '../../src/passes/pass.js';
import { runPipeline } from '../../src/passes/pass-manager.js';
import { parsePipeline } from '../../src/passes/pipeline.js';
import { passRegistry } from '../../src/passes/registry.js';
import type { ActivationQuantSpec, QuantPlan, WeightQuantSpec } from '../../src/quant/plan.js';
import { quantizeActivations } from '../../src/passes/quantize-activations.js';
import { ditCalibrationSet } from '../../bench/digits-quality.js';
import { OrtExecutor } from '../../src/runtime/ir-executor.js';
import { DIT_DIGITS } from './fixture.js';
import { Artifacts, CALIBRATION_BATCHES } from '../../src/passes/artifacts.js';
import { runPass } from '../../src/passes/pass-manager.js';

const executor = new OrtExecutor({ optimization: 'basic' });
const BINS = 10;

/** Eps SQNR against FP per timestep bin (bin b: t in [100b, 100b + 100)), pooling signal and noise over the bin's samples. */
async function sqnrByBin(fp: Model, quant: Model, inputs: TensorMap[]): Promise<number[]> {
  const signal = new Float64Array(BINS);
  const noise = new Float64Array(BINS);
  const a = await executor.prepare(fp, ['eps']);
  const b = await executor.prepare(quant, ['eps']);
  try {
    for (const feeds of inputs) {
      const ref = (await a.run(feeds)).eps!.data as Float32Array;
      const out = (await b.run(feeds)).eps!.data as Float32Array;
      const ts = feeds.t!.data as BigInt64Array;
      const per = ref.length / ts.length;
      for (let s = 0; s < ts.length; s++) {
        const bin = Math.min(BINS - 1, Math.floor(Number(ts[s]) / 100));
        for (let i = s * per; i < (s + 1) * per; i++) {
          signal[bin] += ref[i]! ** 2;
          noise[bin] += (ref[i]! - out[i]!) ** 2;
        }
      }
    }
  } finally {
    await a.release();
    await b.release();
  }
  return Array.from(signal, (v, i) => 10 * Math.log10(v / noise[i]!));
}

/**
 * W8 per-channel weights and `mode` activations on the attn/mlp/adaLN layers, by the steps a recipe plans for them
 * (recipe/plan.ts: `calibrate{ema=…,timesteps=T}` for calibrated modes, then `quantize-activations{timesteps=T}`),
 * every other option at the default the recipe ships.
 */
async function quantized(mode: ActivationQuantSpec['mode'], symmetric: boolean, calibrationSet: TensorMap[]): Promise<Model> {
  const model = loadModelSync(`${DIT_DIGITS}/model.onnx`);
  const weight: WeightQuantSpec = { bits: 8, symmetric: true, granularity: { kind: 'per-channel' }, range: { kind: 'minmax' }, rounding: { kind: 'nearest' } };
  const input: ActivationQuantSpec = { bits: 8, symmetric, mode, range: { kind: 'minmax' } };
  const plan: QuantPlan = new Map(discoverLayers(model).filter((l) => /^(attn|mlp)\.|^adaln$/.test(l.role)).map((l) => [l.name, { layer: l.name, weight, input }]));
  const context: PassContext = { seed: 0, plan, executor, artifacts: new Artifacts().set(CALIBRATION_BATCHES, calibrationSet), progress: () => {}, log: () => {} };
  const steps = ['quantize-weights', ...(mode.kind !== 'dynamic' ? ['calibrate{ema=0,timesteps=1000}'] : []), 'quantize-activations{timesteps=1000}'];
  await runPipeline(model, parsePipeline(steps.join(','), passRegistry, { provided: [CALIBRATION_BATCHES] }), context);
  assertValid(model);
  return model;
}

describe('W8A8 activation modes on dit-digits', () => {
  it('per-timestep tables beat one static range where activation ranges move with t; dynamic is best', async () => {
    const model = loadModelSync(`${DIT_DIGITS}/model.onnx`);
    const calibrationSet = (await ditCalibrationSet(model, 50, { samples: 256, batch: 64, strategy: { kind: 'uniform' }, seed: 1 })).batches;
    // Held out: other trajectories (another seed), at every step of the DDIM-50 grid.
    const heldOut = (await ditCalibrationSet(model, 50, { samples: 400, batch: 64, strategy: { kind: 'evenly-spaced', count: 50 }, seed: 99 })).batches;
    const table: Record<string, number[]> = {};
    for (const [name, mode, symmetric] of [
      ['static', { kind: 'static' }, false],
      ['per-timestep', { kind: 'per-timestep', groups: BINS }, false],
      ['dynamic per-token', { kind: 'dynamic', granularity: 'per-token' }, true],
    ] as const) {
      const quant = await quantized(mode, symmetric, calibrationSet);
      if (mode.kind === 'per-timestep') {
        // The shipped lowering: per-sample fake-quant (Div/Round/Clip/Mul on a [B,1,…] scale), not per-axis Q/DQ on the batch axis.
        expect(quant.graph.nodes.filter((n) => n.opType === Op.QuantizeLinear)).toHaveLength(0);
        expect(quant.graph.nodes.some((n) => n.opType === Op.Reshape && n.name.endsWith('scale_per_sample'))).toBe(true);
      }
      table[name] = await sqnrByBin(model, quant, heldOut);
    }
    console.log(['t bin     static  per-timestep  dynamic (eps SQNR dB)', ...Array.from({ length: BINS }, (_, b) => `${String(b * 100).padStart(3)}-${b * 100 + 99}  ${table.static![b]!.toFixed(2)}  ${table['per-timestep']![b]!.toFixed(2)}  ${table['dynamic per-token']![b]!.toFixed(2)}`)].join('\n'));
    const mean = (v: number[]) => v.reduce((a, b) => a + b, 0) / v.length;
    expect(mean(table['per-timestep']!)).toBeGreaterThan(mean(table.static!));
    // Where one static range fits worst against the per-timestep tables, the tables recover the most.
    const gains = table['per-timestep']!.map((v, b) => v - table.static![b]!);
    expect(Math.max(...gains)).toBeGreaterThan(1);
    expect(mean(table['dynamic per-token']!)).toBeGreaterThan(mean(table['per-timestep']!));
  }, 300_000);
});

describe('per-token-group(size: weight)', () => {
  const input: ActivationQuantSpec = { bits: 8, symmetric: true, mode: { kind: 'dynamic', granularity: 'per-token-group', groupSize: 'weight' }, range: { kind: 'minmax' } };
  const weightAt = (granularity: WeightQuantSpec['granularity']): WeightQuantSpec => ({ bits: 4, symmetric: false, granularity, range: { kind: 'minmax' }, rounding: { kind: 'nearest' } });

  it("groups each layer's input channels like its weight, and layers sharing an input but not a group size get one quantizer each", async () => {
    const model = loadModelSync(`${DIT_DIGITS}/model.onnx`);
    // blocks.0.attn.qkv and blocks.0.mlp.fc1 read different values; give fc1 and fc2 different sizes too. adaLN reads
    // a 2-D [B, C] input: each row is a token, grouped like any other (not one scale per sample).
    const sizes = new Map([['blocks.0.attn.qkv', 16], ['blocks.0.mlp.fc1', 64], ['blocks.0.mlp.fc2', 128], ['blocks.0.adaln', 32]]);
    const plan: QuantPlan = new Map([...sizes].map(([layer, size]) => [layer, { layer, weight: weightAt({ kind: 'group', size }), input }]));
    const context: PassContext = { seed: 0, plan, executor, artifacts: new Artifacts(), progress: () => {}, log: () => {} };
    await runPass(quantizeActivations, model, {}, context);
    for (const [layer, size] of sizes) {
      const shape = model.graph.initializers.get(`${layer}.input_quant.group_shape`)!.initializer!.toBigInt64();
      expect(Number(shape[shape.length - 1])).toBe(size);
    }
  });

  it('refuses a layer whose weight has no group size yet (group auto before the search) or none at all', async () => {
    const granularities: WeightQuantSpec['granularity'][] = [{ kind: 'auto', candidates: [32], budget: { kind: 'mean-group-size', min: 32 } }, { kind: 'per-channel' }];
    for (const granularity of granularities) {
      const model = loadModelSync(`${DIT_DIGITS}/model.onnx`);
      const plan: QuantPlan = new Map([['blocks.0.mlp.fc1', { layer: 'blocks.0.mlp.fc1', weight: weightAt(granularity), input }]]);
      const context: PassContext = { seed: 0, plan, executor, artifacts: new Artifacts(), progress: () => {}, log: () => {} };
      await expect(runPass(quantizeActivations, model, {}, context)).rejects.toThrow(/blocks\.0\.mlp\.fc1.*per-token-group\(size: weight\) needs a weight group size/);
    }
  });
});

/** x [2, 6, 5, 7] → Conv 3×3 (4 filters): a convolution whose input has more channels than one group. */
function convModel(): Model {
  const g = new Graph('conv');
  const x = g.addInput('x', { elemType: DataType.FLOAT, shape: [2, 6, 5, 7] });
  const w = g.addInitializer('w', Tensor.fromFloat32([4, 6, 3, 3], Float32Array.from({ length: 4 * 6 * 9 }, (_, i) => Math.cos(i))));
  const y = g.addNode({ opType: Op.Conv, name: 'conv', inputs: [x, w], outputs: ['y'], attributes: { pads: { kind: 'ints', value: [1, 1, 1, 1] } } }).outputs[0]!;
  y.type = { elemType: DataType.FLOAT, shape: [2, 4, 5, 7] };
  g.outputs.push(y);
  const model = new Model(g);
  model.opsetImports.set('', 17);
  return model;
}

describe('dynamic activations of a convolution', () => {
  // A token is a pixel's 6 channels, and its groups run along them (not along the last, spatial, axis).
  const [B, C, H, W] = [2, 6, 5, 7];
  const cases: [string, ActivationQuantSpec['mode'], number, string][] = [
    ['per-token', { kind: 'dynamic', granularity: 'per-token' }, C, 'dynamic per-token'],
    ['per-token-group(size: 3)', { kind: 'dynamic', granularity: 'per-token-group', groupSize: 3 }, 3, 'dynamic per-token-group 3'],
    ['per-token-group(size: 4), a partial last group', { kind: 'dynamic', granularity: 'per-token-group', groupSize: 4 }, 4, 'dynamic per-token-group 4'],
  ];
  for (const [label, mode, size, reported] of cases) {
    it(`${label}: one scale per pixel and group of channels, as ORT runs it`, async () => {
      const model = convModel();
      const conv = discoverLayers(model).find((l) => l.opType === 'Conv')!;
      stampLayers([conv]);
      const input: ActivationQuantSpec = { bits: 8, symmetric: true, mode, range: { kind: 'minmax' } };
      const context: PassContext = { seed: 0, plan: new Map([[conv.name, { layer: conv.name, input }]]), executor, artifacts: new Artifacts(), progress: () => {}, log: () => {} };
      await runPass(quantizeActivations, model, {}, context);
      assertValid(model);
      expect(compiledLayerRows(convModel(), model)[0]!.input).toBe(`int8 sym ${reported} (fake-quant)`);
      const quantizedInput = conv.node.input(0);
      model.graph.outputs.push(quantizedInput);
      const x = Float32Array.from({ length: B * C * H * W }, (_, i) => Math.sin(i * 0.37) * (1 + ((i * 7) % 13)));
      const prepared = await executor.prepare(model, [quantizedInput.name]);
      const got = (await prepared.run({ x: { dtype: 'float32', dims: [B, C, H, W], data: x } }))[quantizedInput.name]!.data as Float32Array;
      await prepared.release();
      // Reference: groups of `size` consecutive channels at each pixel (the last one partial), sym int8 at max|x|/127.
      let worst = 0;
      for (let b = 0; b < B; b++) for (let p = 0; p < H * W; p++) for (let first = 0; first < C; first += size) {
        const at = (c: number) => (b * C + c) * H * W + p;
        const channels = Array.from({ length: Math.min(size, C - first) }, (_, j) => first + j);
        const scale = Math.max(Math.max(...channels.map((c) => Math.abs(x[at(c)]!))) / 127, 1e-8);
        for (const c of channels) worst = Math.max(worst, Math.abs(got[at(c)]! - Math.max(-128, Math.min(127, Math.round(x[at(c)]! / scale))) * scale));
      }
      expect(worst).toBeLessThan(1e-5);
    });
  }
});
