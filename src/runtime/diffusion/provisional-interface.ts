/**
 * PROVISIONAL adapters until `findDiffusionInterface` (interface.ts) and the scheduler-config readers
 * (scheduler-config.ts) land: the diffusion interface from the graph's inputs (a float [B,C,H,W] latent, the
 * timestep `findTimestepInput` finds, an integer class label, float [B,L,D] text states / [B,D] pooled
 * embeddings) and the sidecar, and a sidecar's schedule as a NoiseScheduleConfig.
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Model } from '../../ir/core.js';
import { DataType } from '../../ir/dtype.js';
import { IrError } from '../../ir/errors.js';
import { labelClasses } from '../../quant/identity.js';
import { findTimestepInput } from '../../quant/layers.js';
import { readSidecar, type Sidecar } from '../diffusion.js';
import type { ConditioningInput, DiffusionInterface } from './interface.js';
import type { NoiseScheduleConfig } from './scheduler.js';

/** The interface read off the graph; `classes` from the caller (sidecar `num_classes`, recipe, label table). */
export function provisionalInterface(model: Model, options: { classes?: { count: number; nullClass?: number }; prediction?: DiffusionInterface['prediction']; resolution?: [number, number] } = {}): DiffusionInterface {
  const inputs = model.graph.inputs.filter((v) => !v.initializer);
  const latent = inputs.find((v) => v.type?.elemType === DataType.FLOAT && (v.type.shape?.length ?? 0) === 4);
  const timestep = findTimestepInput(model) ?? inputs.find((v) => v !== latent && v.type?.elemType === DataType.INT64);
  if (!latent || !timestep) throw new IrError('invalid-argument', 'cannot find the diffusion inputs: expected a float latent input [B,C,H,W] and a timestep input');
  const shape = latent.type!.shape!.slice(1).map((d, axis) => (typeof d === 'number' ? d : axis > 0 && options.resolution ? options.resolution[axis - 1]! : NaN));
  if (shape.some(Number.isNaN)) throw new IrError('invalid-argument', `latent input '${latent.name}' has dynamic dimensions: give the resolution (--resolution N or HxW, or \`diffusion { resolution N }\`)`);
  const conditioning: ConditioningInput[] = inputs.filter((v) => v !== latent && v !== timestep).map((v) => {
    const dims = (v.type?.shape ?? []).slice(1).map((d) => (typeof d === 'number' ? d : NaN));
    const elemType = v.type?.elemType ?? DataType.FLOAT;
    const kind = elemType === DataType.FLOAT ? (dims.length === 2 ? 'text-states' : 'pooled-text') : 'class-label';
    return { name: v.name, kind, elemType, shape: kind === 'class-label' ? [] : dims };
  });
  const output = model.graph.outputs[0]!;
  const outChannels = output.type?.shape?.[1];
  const channels = typeof outChannels === 'number' ? outChannels : shape[0]!;
  const rank = timestep.type?.shape?.length === 0 ? 0 : 1;
  return {
    latent: { name: latent.name, shape },
    timestep: { name: timestep.name, elemType: timestep.type?.elemType ?? DataType.INT64, rank, scale: 1 },
    conditioning,
    output: { name: output.name, channels, varianceChannels: channels - shape[0]! },
    prediction: options.prediction ?? 'epsilon',
    ...(options.classes ? { classes: options.classes } : {}),
    provenance: [{ fact: 'inputs from the graph', source: 'graph' }],
  };
}

/** A validated sidecar's schedule as a NoiseScheduleConfig (the fixtures' DDIM: clipped, ᾱ_prev = 1, leading). */
export function provisionalNoiseSchedule(sidecar: Sidecar): NoiseScheduleConfig {
  const betaSchedule = sidecar.beta_schedule === 'scaled-linear' ? 'scaled_linear' : sidecar.beta_schedule === 'cosine' ? 'squaredcos_cap_v2' : 'linear';
  return {
    origin: 'sidecar',
    kind: 'discrete',
    numTrainTimesteps: sidecar.T,
    betaSchedule,
    ...(sidecar.beta_start !== undefined ? { betaStart: sidecar.beta_start } : {}),
    ...(sidecar.beta_end !== undefined ? { betaEnd: sidecar.beta_end } : {}),
    prediction: sidecar.prediction_type,
    clipSample: true,
    clipSampleRange: 1,
    setAlphaToOne: true,
    timestepSpacing: 'leading',
    stepsOffset: 0,
    shift: 1,
  };
}

/**
 * The interface of the model at `modelPath`: the graph's inputs, the class count from `classes` (the recipe's),
 * the sidecar's `num_classes` or the label table, and a null class when the label table has a row more.
 */
export function diffusionInterfaceFor(model: Model, modelPath: string, options: { classes?: number; prediction?: DiffusionInterface['prediction']; resolution?: [number, number] } = {}): DiffusionInterface {
  const sidecarPath = join(dirname(modelPath), 'schedule.json');
  const sidecar = existsSync(sidecarPath) ? readSidecar(sidecarPath) : undefined;
  const rows = labelClasses(model);
  const count = options.classes || sidecar?.num_classes || rows;
  const stated = (sidecar as { null_class?: number | null } | undefined)?.null_class;
  const nullClass = stated === null ? undefined : (stated ?? (rows === count + 1 ? count : undefined));
  const prediction = options.prediction ?? sidecar?.prediction_type;
  return provisionalInterface(model, { ...(count > 0 ? { classes: { count, ...(nullClass !== undefined ? { nullClass } : {}) } } : {}), ...(prediction ? { prediction } : {}), ...(options.resolution ? { resolution: options.resolution } : {}) });
}
