import { describe, expect, it } from 'vitest';
import type { Model } from '../../src/ir/core.js';
import { discoverLayers } from '../../src/quant/layers.js';
import { loadModelSync } from '../../src/ir/serde.js';
import { collectHessians } from '../../src/passes/collect-hessians.js';
import type { PassContext } from '../../src/passes/pass.js';
import type { QuantPlan, WeightQuantSpec } from '../../src/quant/plan.js';
import { quantizeWeights } from '../../src/passes/quantize-weights.js';
import { OrtExecutor } from '../../src/runtime/ir-executor.js';
import { calibrationBatches } from '../../bench/calibration-batches.js';
import { DIT_DIGITS, referenceEps, sqnrDb } from './fixture.js';
import { Artifacts, CALIBRATION_BATCHES } from '../../src/passes/artifacts.js';
import { runPass } from '../../src/passes/pass-manager.js';

const executor = new OrtExecutor({ optimization: 'basic' });

async function eps(model: Model): Promise<Float32Array> {
  return referenceEps(model, executor);
}

async function quantize(rounding: WeightQuantSpec['rounding']): Promise<number> {
  const model = loadModelSync(`${DIT_DIGITS}/model.onnx`);
  const spec: WeightQuantSpec = { bits: 4, symmetric: true, granularity: { kind: 'per-channel' }, range: { kind: 'minmax' }, rounding };
  const plan: QuantPlan = new Map(
    discoverLayers(model)
      .filter((l) => l.role.startsWith('attn.') || l.role.startsWith('mlp.'))
      .map((l) => [l.name, { layer: l.name, weight: spec }]),
  );
  const context: PassContext = { seed: 0, plan, executor, artifacts: new Artifacts().set(CALIBRATION_BATCHES, calibrationBatches(64, 32)), progress: () => {}, log: () => {} };
  await runPass(collectHessians, model, {}, context);
  await runPass(quantizeWeights, model, {}, context);
  return sqnrDb(await eps(loadModelSync(`${DIT_DIGITS}/model.onnx`)), await eps(model));
}

describe('GPTQ on dit-digits (W4 per-channel, attention and MLP)', () => {
  it('beats round-to-nearest on held-out reference inputs', async () => {
    const rtn = await quantize({ kind: 'nearest' });
    const gptq = await quantize({ kind: 'gptq', blockSize: 128, damp: 0.01 });
    console.log(`W4 per-channel eps SQNR: RTN ${rtn.toFixed(2)} dB, GPTQ ${gptq.toFixed(2)} dB`);
    expect(gptq).toBeGreaterThan(rtn + 1);
  });
});
