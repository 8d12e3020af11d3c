import { describe, expect, it } from 'vitest';
import type { Model } from '../../src/ir/core.js';
import { discoverLayers } from '../../src/quant/layers.js';
import { loadModelSync } from '../../src/ir/serde.js';
import type { PassContext } from '../../src/passes/pass.js';
import { smoothQuant } from '../../src/passes/smooth-quant.js';
import { dilationFactors, weightDilation } from '../../src/passes/weight-dilation.js';
import { readWeight } from '../../src/passes/scale-folding.js';
import { OrtExecutor } from '../../src/runtime/ir-executor.js';
import { DIT_DIGITS, referenceInputs } from './fixture.js';
import { Artifacts, INPUT_CHANNEL_ABSMAX } from '../../src/passes/artifacts.js';
import { runPass } from '../../src/passes/pass-manager.js';

const executor = new OrtExecutor({ optimization: 'basic' });

function context(artifacts = new Artifacts()): PassContext {
  return { seed: 0, plan: new Map(), artifacts, progress: () => {}, log: () => {} };
}

async function run(model: Model, fetch: string[] = ['eps']) {
  const prepared = await executor.prepare(model, fetch);
  try {
    return await prepared.run(referenceInputs());
  } finally {
    await prepared.release();
  }
}

/** Largest |a−b| relative to max |a|. */
function relativeError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i++) {
    diff = Math.max(diff, Math.abs(a[i]! - b[i]!));
    scale = Math.max(scale, Math.abs(a[i]!));
  }
  return diff / scale;
}

function rowRanges(model: Model, name: string) {
  const layer = discoverLayers(model).find((l) => l.name === name)!;
  const { values, channelsOf } = readWeight(layer);
  const max = new Float32Array(layer.outChannels).fill(-Infinity);
  const min = new Float32Array(layer.outChannels).fill(Infinity);
  values.forEach((v, i) => {
    const { n } = channelsOf(i);
    max[n] = Math.max(max[n]!, v);
    min[n] = Math.min(min[n]!, v);
  });
  return { max, min };
}

describe('equivalent scaling on dit-digits', () => {
  const fpModel = loadModelSync(`${DIT_DIGITS}/model.onnx`);

  it('weight dilation leaves eps unchanged, folds qkv and fc1 into adaLN, keeps output-channel ranges', async () => {
    const fp = (await run(fpModel)).eps!.data as Float32Array;
    const model = loadModelSync(`${DIT_DIGITS}/model.onnx`);
    const before = rowRanges(model, 'blocks.2.attn.qkv');
    const result = await runPass(weightDilation, model, { roles: ['attn.qkv', 'mlp.fc1'], maxScale: 1e6 }, context());
    expect(result.statistics).toMatchObject({ layers: 12, foldedIntoModulation: 12, insertedMuls: 0 });
    expect(result.statistics.dilatedChannels as number).toBeGreaterThan(0);
    const after = rowRanges(model, 'blocks.2.attn.qkv');
    for (let n = 0; n < before.max.length; n++) {
      expect(after.max[n]).toBeCloseTo(before.max[n]!, 5);
      expect(after.min[n]).toBeCloseTo(before.min[n]!, 5);
    }
    const eps = (await run(model)).eps!.data as Float32Array;
    expect(relativeError(fp, eps)).toBeLessThan(1e-5);
  });

  it('weight dilation of proj and fc2 inserts a Mul per layer and stays exact', async () => {
    const fp = (await run(fpModel)).eps!.data as Float32Array;
    const model = loadModelSync(`${DIT_DIGITS}/model.onnx`);
    const result = await runPass(weightDilation, model, { roles: ['attn.out', 'mlp.fc2'], maxScale: 1e6 }, context());
    expect(result.statistics).toMatchObject({ layers: 12, insertedMuls: 12 });
    const eps = (await run(model)).eps!.data as Float32Array;
    expect(relativeError(fp, eps)).toBeLessThan(1e-5);
  });

  it('dilation factors are ≥ 1 and 1 exactly on channels holding a row extreme', () => {
    const layer = discoverLayers(fpModel).find((l) => l.name === 'blocks.0.mlp.fc1')!;
    const s = dilationFactors(layer, 1e6);
    expect(Math.min(...s)).toBe(1);
    expect(Math.max(...s)).toBeGreaterThan(1);
  });

  it('smooth quant with measured channel maxima leaves eps unchanged and shrinks the outlier ratio', async () => {
    const fp = (await run(fpModel)).eps!.data as Float32Array;
    const model = loadModelSync(`${DIT_DIGITS}/model.onnx`);
    const layers = discoverLayers(model).filter((l) => l.role === 'attn.qkv' || l.role === 'mlp.fc1');
    const inputs = layers.map((l) => l.node.input(0).name);
    const observed = await run(model, inputs);
    const stats = new Map<string, Float32Array>();
    for (const name of inputs) {
      const { data, dims } = observed[name]!;
      const C = dims[dims.length - 1]!;
      const max = new Float32Array(C);
      (data as Float32Array).forEach((v, i) => (max[i % C] = Math.max(max[i % C]!, Math.abs(v))));
      stats.set(name, max);
    }
    const spread = (m: Float32Array) => Math.max(...m) / (m.reduce((a, b) => a + b, 0) / m.length);
    const spreadBefore = spread(stats.get(inputs[0]!)!);
    const result = await runPass(smoothQuant, model, { roles: ['attn.qkv', 'mlp.fc1'], alpha: 0.5 }, context(new Artifacts().set(INPUT_CHANNEL_ABSMAX, stats)));
    expect(result.statistics).toMatchObject({ layers: 12, foldedIntoModulation: 12, insertedMuls: 0 });
    expect(spread(stats.get(inputs[0]!)!)).toBeLessThan(spreadBefore);
    const eps = (await run(model)).eps!.data as Float32Array;
    expect(relativeError(fp, eps)).toBeLessThan(1e-5);
  });
});
