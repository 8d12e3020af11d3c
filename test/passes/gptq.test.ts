import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { Model } from '../../src/ir/core.js';
import { discoverLayers } from '../../src/ir/layers.js';
import { loadModelSync } from '../../src/ir/serde.js';
import { CALIBRATION_BATCHES, collectHessians } from '../../src/passes/collect-hessians.js';
import type { TensorMap } from '../../src/passes/executor.js';
import type { PassContext } from '../../src/passes/pass.js';
import type { QuantPlan, WeightQuantSpec } from '../../src/passes/quant-plan.js';
import { quantizeWeights } from '../../src/passes/quantize-weights.js';
import { OrtExecutor } from '../../src/runtime/ir-executor.js';
import { DIT_DIGITS, referenceInputs, sqnrDb } from './fixture.js';

const executor = new OrtExecutor({ optimization: 'basic' });

/** Noised real digits at spread timesteps: calibration-like inputs, x_t and t paired by q(x_t | x_0). */
function calibrationBatches(count: number, batch: number): TensorMap[] {
  const raw = readFileSync(`${DIT_DIGITS}/../digits-classifier/digits16_f32.bin`);
  const digits = new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength));
  const betas = Array.from({ length: 1000 }, (_, i) => 1e-4 + ((0.02 - 1e-4) * i) / 999);
  const alphaBar: number[] = [];
  betas.reduce((acc, b) => (alphaBar.push(acc * (1 - b)), acc * (1 - b)), 1);
  let state = 12345;
  const uniform = () => ((state = (Math.imul(state, 1664525) + 1013904223) >>> 0) + 0.5) / 2 ** 32;
  const normal = () => Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform());
  const batches: TensorMap[] = [];
  for (let b = 0; b < count / batch; b++) {
    const x = new Float32Array(batch * 256);
    const t = new BigInt64Array(batch);
    const y = new BigInt64Array(batch);
    for (let i = 0; i < batch; i++) {
      const sample = (b * batch + i) * 7;
      const step = Math.floor(uniform() * 1000);
      const ab = alphaBar[step]!;
      for (let p = 0; p < 256; p++) x[i * 256 + p] = Math.sqrt(ab) * digits[sample * 256 + p]! + Math.sqrt(1 - ab) * normal();
      t[i] = BigInt(step);
      y[i] = BigInt(sample % 10);
    }
    batches.push({ x: { dtype: 'float32', dims: [batch, 1, 16, 16], data: x }, t: { dtype: 'int64', dims: [batch], data: t }, y: { dtype: 'int64', dims: [batch], data: y } });
  }
  return batches;
}

async function eps(model: Model): Promise<Float32Array> {
  const prepared = await executor.prepare(model, ['eps']);
  try {
    return (await prepared.run(referenceInputs())).eps!.data as Float32Array;
  } finally {
    await prepared.release();
  }
}

async function quantize(rounding: WeightQuantSpec['rounding']): Promise<number> {
  const model = loadModelSync(`${DIT_DIGITS}/model.onnx`);
  const spec: WeightQuantSpec = { bits: 4, symmetric: true, granularity: { kind: 'per-channel' }, range: { kind: 'minmax' }, rounding };
  const plan: QuantPlan = new Map(
    discoverLayers(model)
      .filter((l) => l.role.startsWith('attn.') || l.role.startsWith('mlp.'))
      .map((l) => [l.name, { layer: l.name, weight: spec }]),
  );
  const context: PassContext = { seed: 0, plan, executor, artifacts: new Map([[CALIBRATION_BATCHES, calibrationBatches(64, 32)]]), progress: () => {}, log: () => {} };
  await collectHessians.run(model, {}, context);
  await quantizeWeights.run(model, {}, context);
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
