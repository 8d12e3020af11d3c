/**
 * The synthetic SD3 MMDiT: the tiny preset's pipeline folder (files, configs, per-input conditioning, seeds) and its
 * graph run in ONNX Runtime at three resolutions against the float64 diffusers transcription; SD3-medium's parameter
 * count and layer shapes without generating a weight.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, describe, expect, it } from 'vitest';
import { Op } from '../../src/ir/ops.js';
import { loadModelSync } from '../../src/ir/serde.js';
import { MMDIT_PRESETS, buildMmdit, mmditBufferCount, mmditParameterCount, writeMmditPipeline } from '../../src/synth/mmdit.js';
import { mmditReference, readNpyFloat32 } from './diffusers-reference.js';

const root = mkdtempSync(join(tmpdir(), 'qcompile-synth-mmdit-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const weightCount = (model: ReturnType<typeof buildMmdit>) => [...model.graph.initializers.values()].reduce((n, v) => n + v.initializer!.size, 0);

describe('synthetic SD3 MMDiT, tiny preset: pipeline folder in ONNX Runtime', async () => {
  const config = MMDIT_PRESETS.tiny!;
  const dir = join(root, 'a');
  const written = writeMmditPipeline(config, 5, dir);
  const read = (file: string) => readFileSync(join(dir, file));
  const npy = (input: string, file: string) => readNpyFloat32(read(`conditioning/${input}/${file}`));
  const session = await ort.InferenceSession.create(join(dir, 'transformer', 'model.onnx'));
  afterAll(() => session.release());

  it('writes the diffusers layout with one conditioning folder per input', () => {
    const prompts = (input: string) => [...Array.from({ length: 8 }, (_, i) => `conditioning/${input}/prompt_00${i}.npy`), `conditioning/${input}/uncond.npy`];
    expect(written).toEqual([
      ...prompts('encoder_hidden_states'), ...prompts('pooled_projections'),
      'model_index.json', 'scheduler/scheduler_config.json', 'transformer/config.json', 'transformer/model.onnx', 'transformer/model.onnx.data',
    ]);
    expect(JSON.parse(read('transformer/config.json').toString())).toEqual({
      _class_name: 'SD3Transformer2DModel', _diffusers_version: '0.29.0.dev0', attention_head_dim: 32, caption_projection_dim: 64, in_channels: 4,
      joint_attention_dim: 32, num_attention_heads: 2, num_layers: 2, out_channels: 4, patch_size: 2, pooled_projection_dim: 32, pos_embed_max_size: 16, sample_size: 16,
    });
    expect(JSON.parse(read('scheduler/scheduler_config.json').toString())).toEqual({ _class_name: 'FlowMatchEulerDiscreteScheduler', _diffusers_version: '0.29.0.dev0', num_train_timesteps: 1000, shift: 3.0 });
    expect(JSON.parse(read('model_index.json').toString())).toMatchObject({ _class_name: 'StableDiffusion3Pipeline', transformer: ['diffusers', 'SD3Transformer2DModel'] });
    expect(npy('encoder_hidden_states', 'prompt_000.npy').shape).toEqual([8, 32]);
    expect(npy('pooled_projections', 'uncond.npy').shape).toEqual([32]);
  });

  it('has optimum\'s sd3-transformer-2d signature (float timestep, dynamic height and width)', () => {
    const model = loadModelSync(join(dir, 'transformer', 'model.onnx'));
    expect(model.graph.inputs.map((v) => `${v.name} ${v.type?.elemType} [${v.type?.shape}]`)).toEqual([
      'hidden_states 1 [batch_size,4,height,width]', 'encoder_hidden_states 1 [batch_size,sequence_length,32]', 'pooled_projections 1 [batch_size,32]', 'timestep 1 [step]',
    ]);
    expect(model.graph.outputs.map((v) => `${v.name} [${v.type?.shape}]`)).toEqual(['out_hidden_states [batch_size,4,height,width]']);
    expect(weightCount(model)).toBe(mmditParameterCount(config) + mmditBufferCount(config));
  });

  const model = buildMmdit(config, { seed: 5 });
  const text = [npy('encoder_hidden_states', 'prompt_001.npy').values, npy('encoder_hidden_states', 'uncond.npy').values];
  const pooled = [npy('pooled_projections', 'prompt_001.npy').values, npy('pooled_projections', 'uncond.npy').values];
  // σ·1000 as the SD3 pipeline feeds it: fractional.
  const timesteps = [997.5, 41.25];
  for (const [height, width] of [[16, 16], [16, 24], [24, 12]] as const) {
    it(`computes what diffusers SD3Transformer2DModel.forward computes at ${height}×${width} (position table cropped)`, async () => {
      const size = 4 * height * width;
      const image = Float32Array.from({ length: 2 * size }, (_, i) => Math.cos(i * 0.21));
      const out = (await session.run({
        hidden_states: new ort.Tensor('float32', image, [2, 4, height, width]),
        encoder_hidden_states: new ort.Tensor('float32', Float32Array.from([...text[0]!, ...text[1]!]), [2, 8, 32]),
        pooled_projections: new ort.Tensor('float32', Float32Array.from([...pooled[0]!, ...pooled[1]!]), [2, 32]),
        timestep: new ort.Tensor('float32', Float32Array.from(timesteps), [2]),
      })).out_hidden_states!;
      expect(out.dims).toEqual([2, 4, height, width]);
      const values = out.data as Float32Array;
      const rows = [0, 1].map((b) => values.subarray(b * size, (b + 1) * size));
      for (const b of [0, 1]) {
        const expected = mmditReference(model, config, image.subarray(b * size, (b + 1) * size), height, width, timesteps[b]!, text[b]!, pooled[b]!);
        expect(Math.max(...rows[b]!.map((v, i) => Math.abs(v - expected[i]!)))).toBeLessThan(2e-5);
      }
      expect(values.every(Number.isFinite)).toBe(true);
      const std = Math.sqrt(values.reduce((s, v) => s + v * v, 0) / values.length);
      expect(std).toBeGreaterThan(0.05);
      expect(std).toBeLessThan(2);
      expect(Math.max(...rows[0]!.map((v, i) => Math.abs(v - rows[1]![i]!)))).toBeGreaterThan(1e-3);
    });
  }

  it('is byte-identical for the same seed and differs for another', () => {
    writeMmditPipeline(config, 5, join(root, 'b'));
    writeMmditPipeline(config, 6, join(root, 'c'));
    for (const file of written) expect(readFileSync(join(root, 'b', file)).equals(read(file)), file).toBe(true);
    expect(readFileSync(join(root, 'c', 'transformer/model.onnx.data')).equals(read('transformer/model.onnx.data'))).toBe(false);
    expect(readFileSync(join(root, 'c', 'conditioning/pooled_projections/prompt_000.npy')).equals(read('conditioning/pooled_projections/prompt_000.npy'))).toBe(false);
  });
});

describe('synthetic SD3-medium transformer (built in memory; weights are lazy and never generated here)', () => {
  it('has the published parameter count and the SD3-medium layer shapes', () => {
    const config = MMDIT_PRESETS['sd3-medium']!;
    const model = buildMmdit(config);
    // 2,028,328,000 trainable parameters (SD3-medium's "2 B"), plus the persistent 192² × 1536 position table
    // (in the state dict, no parameter) and the norms' ones/zeros the export carries.
    expect(mmditParameterCount(config)).toBe(2_028_328_000);
    expect(weightCount(model)).toBe(2_028_328_000 + 192 * 192 * 1536 + 2 * 1536);
    const ops = (op: string) => model.graph.nodes.filter((n) => n.opType === op).length;
    // Per block 8 attention linears + 4 FF (the last: 7 + 2); the context embedder; proj_out; 2 activation MatMuls per block.
    expect(ops(Op.MatMul)).toBe(23 * 12 + 9 + 1 + 1 + 24 * 2);
    // Time MLP (2), pooled-text MLP (2), per block norm1 + norm1_context, norm_out.
    expect(ops(Op.Gemm)).toBe(4 + 24 * 2 + 1);
    const adaLN = model.graph.nodes.filter((n) => n.opType === Op.Gemm && /norm1_context/.test(n.name)).map((n) => n.inputs[1]!.initializer!.dims[0]);
    expect(adaLN).toEqual([...Array<number>(23).fill(6 * 1536), 2 * 1536]);
  });
});
