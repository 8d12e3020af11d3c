/**
 * The non-finite corpus: each case is a NaN or ±Inf that used to become model contents with exit 0 (an Inf
 * weight gave an Inf scale, `dilate(max: 0)` gave all-NaN eps, a NaN activation slipped past min/max); now
 * each is an error that names the tensor, and the compile writes nothing.
 */
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { CliIO } from '../../src/cli/command.js';
import { main } from '../../src/cli/main.js';
import type { Model } from '../../src/ir/core.js';
import { NonFiniteError } from '../../src/ir/numerics.js';
import { printModel } from '../../src/ir/printer.js';
import { loadModelSync, saveModel } from '../../src/ir/serde.js';
import { Tensor } from '../../src/ir/tensor.js';
import { TensorStats } from '../../src/passes/activation-ranges.js';
import { calibrate } from '../../src/passes/calibrate.js';
import { Artifacts, CALIBRATION_BATCHES, INPUT_CHANNEL_ABSMAX } from '../../src/passes/artifacts.js';
import type { PassContext } from '../../src/passes/pass.js';
import { applyInputScales } from '../../src/passes/scale-folding.js';
import { runPass } from '../../src/passes/pass-manager.js';
import { smoothQuant } from '../../src/passes/smooth-quant.js';
import { computeCellParams } from '../../src/passes/weight-quantizer.js';
import { weightDilation } from '../../src/passes/weight-dilation.js';
import { discoverLayers } from '../../src/quant/layers.js';
import { OrtExecutor } from '../../src/runtime/ir-executor.js';
import { calibrationBatches } from '../../bench/calibration-batches.js';
import { DIT_DIGITS } from './fixture.js';

const MODEL = `${DIT_DIGITS}/model.onnx`;

function capture(): CliIO & { err: string[] } {
  const err: string[] = [];
  return { err, cwd: process.cwd(), stdout: () => {}, stderr: (t) => void err.push(t) };
}

function context(artifacts = new Artifacts()): PassContext {
  return { seed: 0, plan: new Map(), artifacts, executor: new OrtExecutor(), progress: () => {}, log: () => {} };
}

/** The fixture with element 7 of the first attn.qkv weight set to `value`, saved in a temp folder. */
function poisonedModel(value: number): { path: string; weight: string } {
  const model = loadModelSync(MODEL);
  const layer = discoverLayers(model).find((l) => l.role === 'attn.qkv')!;
  const values = Float32Array.from(layer.weight.initializer!.toFloat32());
  values[7] = value;
  layer.weight.initializer = Tensor.fromFloat32(layer.weight.initializer!.dims, values);
  const path = join(mkdtempSync(join(tmpdir(), 'qcompile-nonfinite-')), 'model.onnx');
  saveModel(model, path);
  return { path, weight: layer.weight.name };
}

describe('non-finite weights and scales: compile fails, names the tensor, writes nothing', () => {
  for (const [label, value] of [
    ['+Inf', Infinity],
    ['NaN', NaN],
  ] as const) {
    it(`a ${label} weight element (rtn-w4a16-g128)`, async () => {
      const { path, weight } = poisonedModel(value);
      const out = join(mkdtempSync(join(tmpdir(), 'qcompile-nonfinite-out-')), 'q.onnx');
      const io = capture();
      expect(await main([path, 'recipes/rtn-w4a16-g128.qrecipe', '-o', out], io)).toBe(1);
      const message = io.err.join('');
      expect(message).toContain(`'${weight}'`);
      expect(message).toMatch(/not finite/);
      expect(existsSync(out)).toBe(false);
    }, 60_000);
  }

  it('a scale that overflows from finite weights (1-bit symmetric: max|w| / 0) is refused, naming the weight', () => {
    const weight = { values: Float32Array.from([0.5, -0.25, 1, 2]), N: 2, K: 2, kMajor: false, name: 'w' };
    expect(() => computeCellParams(weight, { bits: 1, symmetric: true, signed: true, granularity: { kind: 'per-channel' }, range: { kind: 'minmax' } })).toThrow(/quantization scale of weight 'w' is not finite/);
  });
});

describe('non-finite scaling factors: refused before the graph changes', () => {
  it('weight-dilation with maxScale 0 (the pass behind `dilate(max: 0)`) is an error, the model unchanged', async () => {
    const model = loadModelSync(MODEL);
    const before = printModel(model);
    await expect(runPass(weightDilation, model, { roles: ['attn.qkv', 'mlp.fc1'], maxScale: 0 }, context())).rejects.toThrow(/maxScale must be a finite number ≥ 1, got 0/);
    expect(printModel(model)).toBe(before);
  });

  it('applyInputScales refuses a zero, negative, NaN or subnormal factor (1/s overflows float32), naming the layer', () => {
    for (const bad of [0, -1, NaN, 1e-45]) {
      const model: Model = loadModelSync(MODEL);
      const layer = discoverLayers(model).find((l) => l.role === 'attn.qkv')!;
      const before = printModel(model);
      const s = new Float32Array(layer.inChannels).fill(1);
      s[3] = bad;
      let error: unknown;
      try {
        applyInputScales([layer], s);
      } catch (e) {
        error = e;
      }
      expect(error, String(bad)).toBeInstanceOf(NonFiniteError);
      expect((error as NonFiniteError).index).toBe(3);
      expect((error as Error).message).toContain(`'${layer.name}'`);
      expect(printModel(model)).toBe(before);
    }
  });

  it('smooth-quant refuses NaN per-channel calibration maxima, naming the activation', async () => {
    const model = loadModelSync(MODEL);
    const layer = discoverLayers(model).find((l) => l.role === 'attn.qkv')!;
    const input = layer.node.input(0).name;
    const xMax = new Float32Array(layer.inChannels).fill(1);
    xMax[5] = NaN;
    const artifacts = new Artifacts().set(INPUT_CHANNEL_ABSMAX, new Map([[input, xMax]]));
    await expect(runPass(smoothQuant, model, { layers: [layer.name], alpha: 0.5 }, context(artifacts))).rejects.toThrow(new RegExp(`calibration maxima of '${input.replace(/[/.]/g, '\\$&')}' is not finite: element 5 is NaN`));
  });
});

describe('non-finite calibration statistics', () => {
  it('an observer refuses NaN and Inf extremes and values, naming the activation and batch', () => {
    const stats = new TensorStats(16, 1, 0, 2, 'act');
    expect(() => stats.observeExtremes(Float32Array.from([0, 1]), Float32Array.from([2, NaN]))).toThrow("the calibration maxima of activation 'act' (batch 1) is not finite: element 1 is NaN");
    expect(() => stats.observeValues(Float32Array.from([1, -Infinity]))).toThrow("the calibration sample of activation 'act' (batch 1) is not finite: element 1 is -Infinity");
  });

  it('calibrate on a batch whose x holds a NaN fails naming the first activation it reaches', async () => {
    const model = loadModelSync(MODEL);
    const layers = discoverLayers(model).filter((l) => l.role === 'attn.qkv');
    const batches = calibrationBatches(8, 4);
    (batches[1]!.x!.data as Float32Array)[10] = NaN;
    const ctx = context(new Artifacts().set(CALIBRATION_BATCHES, batches));
    await expect(runPass(calibrate, model, { layers: layers.map((l) => l.name), ema: 0, timesteps: 1000, channels: false }, ctx)).rejects.toThrow(/calibration (minima|maxima|sample) of activation '.+' \(batch 2\) is not finite/);
  });
});
