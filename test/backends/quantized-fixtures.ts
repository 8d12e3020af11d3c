/** Quantized dit-digits models built with the real passes (rtn-w4a16-g128, ptq4dm-w8a8 and W4A8 style) for backend tests. */
import type { Model } from '../../src/ir/core.js';
import { discoverLayers } from '../../src/quant/layers.js';
import { loadModelSync } from '../../src/ir/serde.js';
import { calibrate } from '../../src/passes/calibrate.js';
import type { TensorMap } from '../../src/ir/executor.js';
import type { PassContext } from '../../src/passes/pass.js';
import type { ActivationQuantSpec, QuantPlan, WeightQuantSpec } from '../../src/quant/plan.js';
import { quantizeActivations } from '../../src/passes/quantize-activations.js';
import { quantizeWeights } from '../../src/passes/quantize-weights.js';
import { ditCalibrationSet } from '../../bench/digits-quality.js';
import { OrtExecutor } from '../../src/runtime/ir-executor.js';
import { DIT_DIGITS, referenceEps } from '../passes/fixture.js';
import { Artifacts, CALIBRATION_BATCHES } from '../../src/passes/artifacts.js';
import { runPass } from '../../src/passes/pass-manager.js';

/** Exact reference runs: no ORT graph rewrites of the Q/DQ form. */
export const basicExecutor = new OrtExecutor({ optimization: 'basic' });

/** The fixture's `eps` for the reference inputs under `executor`. */
export async function runEps(model: Model, executor: OrtExecutor = basicExecutor): Promise<Float32Array> {
  return referenceEps(model, executor);
}

function planFor(model: Model, roles: RegExp, weight: WeightQuantSpec, input?: ActivationQuantSpec): QuantPlan {
  return new Map(discoverLayers(model).filter((l) => roles.test(l.role)).map((l) => [l.name, { layer: l.name, weight, ...(input ? { input } : {}) }]));
}

function context(plan: QuantPlan, batches: TensorMap[] = []): PassContext {
  return { seed: 0, plan, executor: basicExecutor, artifacts: new Artifacts().set(CALIBRATION_BATCHES, batches), progress: () => {}, log: () => {} };
}

/** rtn-w4a16-g128: int4 symmetric groups of 128 on every attn, mlp and adaLN linear. */
export async function w4a16(): Promise<Model> {
  const model = loadModelSync(`${DIT_DIGITS}/model.onnx`);
  const weight: WeightQuantSpec = { bits: 4, symmetric: true, granularity: { kind: 'group', size: 128 }, range: { kind: 'minmax' }, rounding: { kind: 'nearest' } };
  await runPass(quantizeWeights, model, {}, context(planFor(model, /^(attn|mlp)\.|^adaln$/, weight)));
  return model;
}

/** W8 groups of 128 (int8 asymmetric): the weight form webgpu lowers to MatMulNBits bits 8. */
export async function w8g128(): Promise<Model> {
  const model = loadModelSync(`${DIT_DIGITS}/model.onnx`);
  const weight: WeightQuantSpec = { bits: 8, symmetric: false, granularity: { kind: 'group', size: 128 }, range: { kind: 'minmax' }, rounding: { kind: 'nearest' } };
  await runPass(quantizeWeights, model, {}, context(planFor(model, /^(attn|mlp)\.|^adaln$/, weight)));
  return model;
}

/** W8 per-channel weight-only (int8 symmetric): a form ORT's CPU EP has no int8 kernel for. */
export async function w8PerChannel(): Promise<Model> {
  const model = loadModelSync(`${DIT_DIGITS}/model.onnx`);
  const weight: WeightQuantSpec = { bits: 8, symmetric: true, granularity: { kind: 'per-channel' }, range: { kind: 'minmax' }, rounding: { kind: 'nearest' } };
  await runPass(quantizeWeights, model, {}, context(planFor(model, /^(attn|mlp)\.|^adaln$/, weight)));
  return model;
}

let calibrationSet: Promise<TensorMap[]> | undefined;

/** A small calibration set from FP DDIM-10 trajectories (shared by every W8A8 model of a test file). */
function calibration(): Promise<TensorMap[]> {
  calibrationSet ??= (async () => {
    const model = loadModelSync(`${DIT_DIGITS}/model.onnx`);
    return (await ditCalibrationSet(model, 10, { samples: 32, batch: 32, strategy: { kind: 'uniform' }, seed: 1 })).batches;
  })();
  return calibrationSet;
}

/**
 * ptq4dm-w8a8 style: int8 per-channel weights and int8 per-tensor static activations on every linear; `symmetric`
 * picks sym or asym grids, `weightBits` 7 the grid whose codes stay within ±64 (`weight int7`).
 */
export async function w8a8(symmetric: boolean, weightBits: 7 | 8 = 8): Promise<Model> {
  const weight: WeightQuantSpec = { bits: weightBits, symmetric, granularity: { kind: 'per-channel' }, range: { kind: 'minmax' }, rounding: { kind: 'nearest' } };
  return withStaticInputs(weight, symmetric);
}

/** W4A8: int4 symmetric groups of 128 with int8 asymmetric static activations on every linear. */
export async function w4a8(): Promise<Model> {
  const weight: WeightQuantSpec = { bits: 4, symmetric: true, granularity: { kind: 'group', size: 128 }, range: { kind: 'minmax' }, rounding: { kind: 'nearest' } };
  return withStaticInputs(weight, false);
}

/**
 * W4A8 dynamic: int4 symmetric groups of 128 with int8 dynamic per-token-group inputs (by default symmetric,
 * size: weight) on the attention and MLP linears (3-D inputs), computed in-graph (no calibration).
 */
export async function w4a8DynamicGroups(groupSize: number | 'weight' = 'weight', symmetric = true): Promise<Model> {
  const model = loadModelSync(`${DIT_DIGITS}/model.onnx`);
  const weight: WeightQuantSpec = { bits: 4, symmetric: true, granularity: { kind: 'group', size: 128 }, range: { kind: 'minmax' }, rounding: { kind: 'nearest' } };
  const input: ActivationQuantSpec = { bits: 8, symmetric, mode: { kind: 'dynamic', granularity: 'per-token-group', groupSize }, range: { kind: 'minmax' } };
  const ctx = context(planFor(model, /^(attn|mlp)\.|^adaln$/, weight, input));
  await runPass(quantizeWeights, model, {}, ctx);
  await runPass(quantizeActivations, model, { timesteps: 1000 }, ctx);
  return model;
}

async function withStaticInputs(weight: WeightQuantSpec, symmetric: boolean): Promise<Model> {
  const model = loadModelSync(`${DIT_DIGITS}/model.onnx`);
  const input: ActivationQuantSpec = { bits: 8, symmetric, mode: { kind: 'static' }, range: { kind: 'minmax' } };
  const ctx = context(planFor(model, /^(attn|mlp)\.|^adaln$/, weight, input), await calibration());
  await runPass(quantizeWeights, model, {}, ctx);
  await runPass(calibrate, model, { ema: 0, timesteps: 1000 }, ctx);
  await runPass(quantizeActivations, model, { timesteps: 1000 }, ctx);
  return model;
}
