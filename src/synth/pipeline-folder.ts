/**
 * The diffusers/optimum pipeline folder a synthetic model is written as — DIR/unet or DIR/transformer
 * (model.onnx, model.onnx.data, config.json), DIR/scheduler/scheduler_config.json, DIR/model_index.json — plus
 * DIR/conditioning/ with seeded random precomputed conditioning (`--conditioning DIR`), so a model without a text
 * encoder calibrates and samples end to end. One writer for every synthetic family.
 */
import { join, relative, resolve, sep } from 'node:path';
import { OutputTransaction } from '../ir/atomic-file.js';
import type { Model } from '../ir/core.js';
import { encodeNpy } from '../ir/npy.js';
import { saveModel } from '../ir/serde.js';
import { numelOf } from '../ir/tensor.js';
import { Random } from './random.js';

/** One conditioning input of a pipeline folder: its .npy files are [shape] float32 N(0, 1) per prompt. */
export interface ConditioningSpec {
  input: string;
  shape: number[];
}

/** Everything a synthetic pipeline folder holds. */
export interface PipelineFolder {
  /** The denoiser's subfolder, as diffusers names it: `unet` (UNet2DConditionModel) or `transformer`. */
  denoiser: 'unet' | 'transformer';
  model: Model;
  modelIndex: Record<string, unknown>;
  /** The denoiser's diffusers `config.json`. */
  denoiserConfig: Record<string, unknown>;
  schedulerConfig: Record<string, unknown>;
  /** One spec: conditioning/prompt_NNN.npy; several: conditioning/<input>/prompt_NNN.npy. */
  conditioning: ConditioningSpec[];
}

/** Prompts whose random conditioning a pipeline folder carries (plus the unconditional one). */
export const CONDITIONING_PROMPTS = 8;

/**
 * Writes the folder, every file committed together: an interrupted write (gigabytes) leaves nothing behind.
 * Returns the written paths relative to DIR, sorted.
 */
export function writePipelineFolder(folder: PipelineFolder, seed: number, dir: string): string[] {
  const json = (value: unknown) => `${JSON.stringify(value, null, 2)}\n`;
  using outputs = new OutputTransaction();
  saveModel(folder.model, outputs.stageFile(join(dir, folder.denoiser, 'model.onnx')), { externalData: 'always', externalDataName: 'model.onnx.data' });
  outputs.writeFile(join(dir, folder.denoiser, 'config.json'), json(folder.denoiserConfig));
  outputs.writeFile(join(dir, 'scheduler', 'scheduler_config.json'), json(folder.schedulerConfig));
  outputs.writeFile(join(dir, 'model_index.json'), json(folder.modelIndex));
  const names = [...Array.from({ length: CONDITIONING_PROMPTS }, (_, i) => `prompt_${String(i).padStart(3, '0')}.npy`), 'uncond.npy'];
  // Streams far from the weights' (which count up from 0), one per input and file.
  folder.conditioning.forEach((spec, s) => {
    const sub = folder.conditioning.length === 1 ? 'conditioning' : join('conditioning', spec.input);
    names.forEach((name, n) => {
      const data = new Float32Array(numelOf(spec.shape));
      new Random(seed, 0x40000000 + s * 1024 + n).fillNormal(data, 0, 1);
      outputs.writeFile(join(dir, sub, name), encodeNpy({ dtype: 'float32', shape: spec.shape, data }));
    });
  });
  return outputs.commit().map((path) => relative(resolve(dir), path).split(sep).join('/')).sort();
}
