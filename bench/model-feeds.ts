/**
 * Feeds of one batch of a real-size bench model: seeded normal latents, one timestep, and the conditioning
 * stored beside its pipeline folder (`<pipeline>/conditioning`, as `synth unet` writes it) or the class labels
 * a class-conditional model takes — what a calibration or plain FP batch of `rows` rows feeds.
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { TensorMap } from '../src/ir/executor.js';
import type { Model } from '../src/ir/core.js';
import { seededNormal } from '../src/random.js';
import { loadConditioning } from '../src/runtime/diffusion/conditioning.js';
import { findDiffusionInterface, type DiffusionInterface } from '../src/runtime/diffusion/interface.js';
import { timestepFeed } from '../src/runtime/diffusion/sampler.js';
import { stackFeeds } from '../src/runtime/diffusion/tensor-rows.js';

/** The model's diffusion interface and the feeds of one batch of `rows` rows at `timestep`. */
export async function benchFeeds(model: Model, modelPath: string, rows: number, options: { resolution?: number; timestep?: number; seed?: number } = {}): Promise<{ iface: DiffusionInterface; feeds: TensorMap }> {
  const iface = findDiffusionInterface(model, modelPath, options.resolution ? { resolution: options.resolution } : {});
  const perSample = iface.latent.shape.reduce((a, b) => a * b, 1);
  const normal = seededNormal(options.seed ?? 1);
  const conditioningDir = join(dirname(dirname(modelPath)), 'conditioning');
  const conditioning = await loadConditioning(iface, existsSync(conditioningDir) ? { conditioningDir } : {}, modelPath);
  const condFeeds = conditioning ? stackFeeds([conditioning.feeds(Array.from({ length: rows }, (_, i) => i % conditioning.count))]) : {};
  return {
    iface,
    feeds: {
      ...condFeeds,
      [iface.latent.name]: { dtype: 'float32', dims: [rows, ...iface.latent.shape], data: Float32Array.from({ length: rows * perSample }, normal) },
      [iface.timestep.name]: timestepFeed(iface.timestep, options.timestep ?? 500, rows),
    },
  };
}
