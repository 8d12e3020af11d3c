import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DataType } from '../../../src/ir/dtype.js';
import { loadModelSync, saveModel } from '../../../src/ir/serde.js';
import { findDiffusionInterface } from '../../../src/runtime/diffusion/interface.js';
import { findPipelineFolder } from '../../../src/runtime/diffusion/pipeline-folder.js';

const SD = 'test/fixtures/sd-digits';

/** A diffusers-style folder holding the DiT as `transformer/model.onnx` with dynamic H/W and output channels. */
function ditPipeline(config: Record<string, unknown>, scheduler: Record<string, unknown>): string {
  const root = mkdtempSync(join(tmpdir(), 'qc-pipeline-'));
  const model = loadModelSync('test/fixtures/dit-digits/model.onnx');
  model.graph.inputs[0]!.type = { elemType: DataType.FLOAT, shape: ['batch', 1, 'height', 'width'] };
  model.graph.outputs[0]!.type = { elemType: DataType.FLOAT, shape: ['batch', 'channels', 'height', 'width'] };
  mkdirSync(join(root, 'transformer'));
  mkdirSync(join(root, 'scheduler'));
  saveModel(model, join(root, 'transformer', 'model.onnx'));
  writeFileSync(join(root, 'model_index.json'), JSON.stringify({ _class_name: 'DiTPipeline' }));
  writeFileSync(join(root, 'transformer', 'config.json'), JSON.stringify(config));
  writeFileSync(join(root, 'scheduler', 'scheduler_config.json'), JSON.stringify(scheduler));
  return join(root, 'transformer', 'model.onnx');
}

describe('pipeline folders', () => {
  it('finds the sd-digits layout: model index, DDIM scheduler config, text encoder and tokenizer', () => {
    const folder = findPipelineFolder(`${SD}/unet/model.onnx`)!;
    expect(folder.root).toBe(SD);
    expect(folder.component).toBe('unet');
    expect(folder.modelIndex?.className).toBe('StableDiffusionPipeline');
    expect(folder.scheduler).toMatchObject({ className: 'DDIMScheduler', predictionType: 'epsilon' });
    expect(folder.config).toBeUndefined();
    expect(folder.textEncoder).toEqual({ model: `${SD}/text_encoder/model.onnx`, tokenizer: `${SD}/tokenizer/tokenizer.json` });
    expect(findPipelineFolder('test/fixtures/dit-digits/model.onnx')).toBeUndefined();
  });

  it("fills what the graph leaves open from the transformer's config.json and the scheduler (FlowMatch => flow)", () => {
    const path = ditPipeline({ sample_size: 16, in_channels: 1, out_channels: 2, learn_sigma: true, num_class_embeds: 10 }, { _class_name: 'FlowMatchEulerDiscreteScheduler', num_train_timesteps: 1000 });
    const found = findDiffusionInterface(loadModelSync(path), path);
    expect(found.latent).toEqual({ name: 'x', shape: [1, 16, 16] });
    expect(found.output).toEqual({ name: 'eps', channels: 2, varianceChannels: 1 });
    expect(found.prediction).toBe('flow');
    expect(found.classes).toEqual({ count: 10 });
    expect(found.provenance.filter((p) => p.source === 'pipeline-folder').map((p) => p.fact)).toEqual([
      'latent x [1, 16, 16]', 'output eps 2 channels (1 prediction + 1 learned variance)', 'prediction flow', 'classes 10, no null class',
    ]);
    // --resolution outranks the config's sample_size.
    expect(findDiffusionInterface(loadModelSync(path), path, { resolution: 32 }).latent.shape).toEqual([1, 32, 32]);
  });

  it('names the file when a config is malformed or the scheduler predicts something unknown', () => {
    const broken = ditPipeline({ sample_size: 'big' }, { _class_name: 'DDIMScheduler' });
    expect(() => findDiffusionInterface(loadModelSync(broken), broken)).toThrow(`${join(broken, '..', 'config.json')}: 'sample_size' must be a positive integer, got "big"`);
    const unknown = ditPipeline({ sample_size: 16, out_channels: 1 }, { _class_name: 'DDIMScheduler', prediction_type: 'mystery' });
    expect(() => findDiffusionInterface(loadModelSync(unknown), unknown)).toThrow(/scheduler_config\.json: unknown prediction_type 'mystery' \(known: epsilon, v_prediction, sample, flow_prediction\)$/);
    const notJson = ditPipeline({}, {});
    writeFileSync(join(notJson, '..', '..', 'model_index.json'), '{ nope');
    expect(() => findDiffusionInterface(loadModelSync(notJson), notJson)).toThrow(/model_index\.json: cannot read it as JSON: /);
  });
});
