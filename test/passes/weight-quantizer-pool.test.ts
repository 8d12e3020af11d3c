/**
 * Weight quantization in worker threads (weight-quantizer-pool.ts) gives the bits of the in-process run: the same
 * model bytes and statistics for round-to-nearest min-max and L_p weights, inline and external (transferred) ones,
 * and the same first error, with its class, for a weight the quantizer refuses.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import type { Model } from '../../src/ir/core.js';
import { DataType } from '../../src/ir/dtype.js';
import { NonFiniteError } from '../../src/ir/numerics.js';
import { encodeModel, loadModelSync, saveModel } from '../../src/ir/serde.js';
import { Tensor } from '../../src/ir/tensor.js';
import { quantizePlannedWeights } from '../../src/passes/weight-quantization.js';
import { WeightQuantizerPool } from '../../src/passes/weight-quantizer-pool.js';
import { discoverLayers } from '../../src/quant/layers.js';
import type { QuantPlan, WeightQuantSpec } from '../../src/quant/plan.js';
import { DIT_DIGITS } from './fixture.js';

const RTN_INT4: WeightQuantSpec = { bits: 4, symmetric: false, signed: false, granularity: { kind: 'group', size: 32 }, range: { kind: 'minmax' }, rounding: { kind: 'nearest' } };
const LP_INT8: WeightQuantSpec = { bits: 8, symmetric: true, granularity: { kind: 'per-channel' }, range: { kind: 'lp', p: 2.4, gridSize: 100 }, rounding: { kind: 'nearest' } };

function planOf(model: Model, weight: WeightQuantSpec): QuantPlan {
  return new Map(discoverLayers(model).filter((l) => /^(attn|mlp|adaln)/.test(l.role)).map((l) => [l.name, { layer: l.name, weight }]));
}

async function quantized(model: Model, weight: WeightQuantSpec, threads: number): Promise<{ bytes: Uint8Array; statistics: Record<string, number | string>; slotBytes?: number }> {
  const plan = planOf(model, weight);
  expect(plan.size).toBeGreaterThan(4);
  const open = vi.spyOn(WeightQuantizerPool, 'open');
  const { statistics } = await quantizePlannedWeights(model, plan, undefined, () => {}, { threads });
  // The pool is really used (or really not): the fixture is below the size that opens one by default.
  expect(open.mock.calls.map(([t]) => t)).toEqual(threads > 0 ? [threads] : []);
  const slotBytes = open.mock.calls[0]?.[1];
  open.mockRestore();
  return { bytes: encodeModel(model), statistics, slotBytes };
}

const external = mkdtempSync(join(tmpdir(), 'qcompile-pool-'));
afterAll(() => rmSync(external, { recursive: true, force: true }));
/** The fixture saved with external data, loaded so its weights are read from disk (the workers are handed them). */
function externalFixture(): Model {
  const path = join(external, 'model.onnx');
  saveModel(loadModelSync(join(DIT_DIGITS, 'model.onnx')), path, { externalData: 'always' });
  return loadModelSync(path);
}

describe('weight quantization in worker threads', () => {
  for (const [name, weight] of [['int4 asym group 32, min-max', RTN_INT4], ['int8 sym per-channel, L_p 2.4', LP_INT8]] as const) {
    it(`${name}: two workers give the in-process model's bytes and statistics`, async () => {
      const inProcess = await quantized(loadModelSync(join(DIT_DIGITS, 'model.onnx')), weight, 0);
      const pooled = await quantized(loadModelSync(join(DIT_DIGITS, 'model.onnx')), weight, 2);
      expect(pooled.statistics).toEqual(inProcess.statistics);
      expect(pooled.statistics.layers_quantized).toBeGreaterThan(4);
      expect(Buffer.compare(pooled.bytes, inProcess.bytes)).toBe(0);
    });
  }

  it("external weights are read into the workers' slots and give the same bytes; the model still reads every tensor", async () => {
    const inProcess = await quantized(loadModelSync(join(DIT_DIGITS, 'model.onnx')), RTN_INT4, 0);
    const model = externalFixture();
    const external = [...model.graph.initializers.values()].filter((v) => v.initializer!.isExternal);
    expect(external.length).toBeGreaterThan(0);
    const layers = discoverLayers(model);
    const largest = Math.max(...[...planOf(model, RTN_INT4).keys()].map((name) => layers.find((l) => l.name === name)!.weight.initializer!.byteLength));
    const pooled = await quantized(model, RTN_INT4, 2);
    // More layers than the workers' four slots: slots are reused, each read over the last weight in it.
    expect(planOf(model, RTN_INT4).size).toBeGreaterThan(8);
    expect(pooled.slotBytes).toBe(largest);
    expect(Buffer.compare(pooled.bytes, inProcess.bytes)).toBe(0);
  });

  it('a NaN weight is the same NonFiniteError from a worker as in-process, and the first in plan order wins', async () => {
    const poisoned = (): Model => {
      const model = loadModelSync(join(DIT_DIGITS, 'model.onnx'));
      const layers = [...planOf(model, RTN_INT4).keys()];
      const byName = new Map(discoverLayers(model).map((l) => [l.name, l]));
      // A NaN in the second planned layer's weight and a float64 weight (refused on reading) in the fourth.
      for (const [index, make] of [
        [1, (t: Tensor) => Tensor.fromFloat32(t.dims, t.toFloat32().map((v, i) => (i === 5 ? NaN : v)))],
        [3, (t: Tensor) => Tensor.fromBytes(DataType.DOUBLE, t.dims, new Uint8Array(new Float64Array(t.toFloat32()).buffer))],
      ] as const) {
        const weight = byName.get(layers[index]!)!.weight;
        weight.initializer = make(weight.initializer!);
      }
      return model;
    };
    const errorOf = async (threads: number) => {
      const model = poisoned();
      return quantizePlannedWeights(model, planOf(model, RTN_INT4), undefined, () => {}, { threads }).then(
        () => undefined,
        (error: unknown) => error,
      );
    };
    const inProcess = await errorOf(0);
    const pooled = await errorOf(2);
    expect(inProcess).toBeInstanceOf(NonFiniteError);
    expect(pooled).toBeInstanceOf(NonFiniteError);
    expect((pooled as Error).message).toBe((inProcess as Error).message);
    expect((pooled as NonFiniteError).index).toBe(5);
  });
});
