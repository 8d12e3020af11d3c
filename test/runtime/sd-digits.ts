/** The sd-digits UNet with its 120 precomputed train-prompt states and a DDIM scheduler, as the runtime tests sample it. */
import type { Model } from '../../src/ir/core.js';
import { loadModelSync } from '../../src/ir/serde.js';
import { tensorConditioning, type ConditioningSet } from '../../src/runtime/diffusion/conditioning.js';
import { findDiffusionInterface, type DiffusionInterface } from '../../src/runtime/diffusion/interface.js';
import { noiseScheduleFromSidecar } from '../../src/runtime/diffusion/scheduler-config.js';
import { makeScheduler, type Scheduler } from '../../src/runtime/diffusion/scheduler.js';
import { readSidecar } from '../../src/runtime/diffusion/sidecar.js';
import { readRawTensor } from '../../src/runtime/host-tensor.js';

export const SD = 'test/fixtures/sd-digits';

export function sdDigits(steps: number): { model: Model; iface: DiffusionInterface; conditioning: ConditioningSet; empty: Float32Array; scheduler: Scheduler } {
  const model = loadModelSync(`${SD}/unet/model.onnx`);
  const iface = findDiffusionInterface(model, `${SD}/unet/model.onnx`);
  const embeds = readRawTensor(`${SD}/prompts/prompt_embeds_train_f32.bin`, 'float32', [120, 8, 64]).data as Float32Array;
  const empty = readRawTensor(`${SD}/prompts/prompt_embeds_empty_f32.bin`, 'float32', [1, 8, 64]).data as Float32Array;
  const conditioning = tensorConditioning(iface, new Map([['encoder_hidden_states', { shape: [8, 64], conditions: Array.from({ length: 120 }, (_, i) => embeds.slice(i * 512, (i + 1) * 512)), unconditional: empty }]]), '120 train prompts');
  const scheduler = makeScheduler(noiseScheduleFromSidecar(readSidecar(`${SD}/schedule.json`)), { kind: 'ddim', steps });
  return { model, iface, conditioning, empty, scheduler };
}
