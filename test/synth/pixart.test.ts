/**
 * The synthetic PixArt-α: the tiny preset's pipeline folder (files, configs, conditioning, seeds) and its graph run in
 * ONNX Runtime against the float64 diffusers transcription; the 512 preset's parameter count and layer shapes
 * without generating a weight.
 */
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, describe, expect, it } from 'vitest';
import { Op } from '../../src/ir/ops.js';
import { loadModelSync } from '../../src/ir/serde.js';
import { PIXART_PRESETS, buildPixart, pixartBufferCount, pixartParameterCount, writePixartPipeline } from '../../src/synth/pixart.js';
import { pixartReference, readNpyFloat32 } from './diffusers-reference.js';

const root = mkdtempSync(join(tmpdir(), 'qcompile-synth-pixart-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const weightCount = (model: ReturnType<typeof buildPixart>) => [...model.graph.initializers.values()].reduce((n, v) => n + v.initializer!.size, 0);

describe('synthetic PixArt-α, tiny preset: pipeline folder in ONNX Runtime', async () => {
  const config = PIXART_PRESETS.tiny!;
  const dir = join(root, 'a');
  const written = writePixartPipeline(config, 7, dir);
  const read = (file: string) => readFileSync(join(dir, file));
  const prompt = (file: string) => readNpyFloat32(read(`conditioning/${file}`));

  it('writes the diffusers layout with configs and seeded conditioning', () => {
    const prompts = [...Array.from({ length: 8 }, (_, i) => `conditioning/prompt_00${i}.npy`), 'conditioning/uncond.npy'];
    expect(written).toEqual([...prompts, 'model_index.json', 'scheduler/scheduler_config.json', 'transformer/config.json', 'transformer/model.onnx', 'transformer/model.onnx.data']);
    expect(JSON.parse(read('transformer/config.json').toString())).toMatchObject({
      _class_name: 'PixArtTransformer2DModel', sample_size: 16, in_channels: 4, out_channels: 8, num_layers: 2, attention_head_dim: 32,
      num_attention_heads: 2, caption_channels: 32, cross_attention_dim: 64, norm_type: 'ada_norm_single', patch_size: 2,
    });
    expect(JSON.parse(read('scheduler/scheduler_config.json').toString())).toMatchObject({
      _class_name: 'DPMSolverMultistepScheduler', beta_schedule: 'linear', beta_start: 0.0001, beta_end: 0.02, num_train_timesteps: 1000, prediction_type: 'epsilon',
    });
    expect(JSON.parse(read('model_index.json').toString())).toMatchObject({ _class_name: 'PixArtAlphaPipeline', transformer: ['diffusers', 'PixArtTransformer2DModel'] });
    const { shape, values } = prompt('prompt_003.npy');
    expect(shape).toEqual([8, 32]);
    const std = Math.sqrt(values.reduce((s, v) => s + v * v, 0) / values.length);
    expect(std).toBeGreaterThan(0.8);
    expect(std).toBeLessThan(1.2);
    expect(Buffer.from(prompt('uncond.npy').values.buffer).equals(Buffer.from(values.buffer))).toBe(false);
  });

  it('has the optimum-style signature and the parameters plus the fixed buffers as weights', () => {
    const model = loadModelSync(join(dir, 'transformer', 'model.onnx'));
    expect(model.graph.inputs.map((v) => `${v.name} ${v.type?.elemType} [${v.type?.shape}]`)).toEqual([
      'hidden_states 1 [batch_size,4,16,16]', 'timestep 7 [batch_size]', 'encoder_hidden_states 1 [batch_size,sequence_length,32]',
    ]);
    expect(model.graph.outputs.map((v) => `${v.name} [${v.type?.shape}]`)).toEqual(['out_hidden_states [batch_size,8,16,16]']);
    expect(weightCount(model)).toBe(pixartParameterCount(config) + pixartBufferCount(config));
  });

  it('computes what diffusers PixArtTransformer2DModel.forward computes, per sample, at two timesteps and captions', async () => {
    const session = await ort.InferenceSession.create(join(dir, 'transformer', 'model.onnx'));
    const image = Float32Array.from({ length: 2 * 4 * 256 }, (_, i) => Math.sin(i * 0.37));
    const captions = [prompt('prompt_000.npy').values, prompt('uncond.npy').values];
    const timesteps = [999, 20];
    const out = (await session.run({
      hidden_states: new ort.Tensor('float32', image, [2, 4, 16, 16]),
      timestep: new ort.Tensor('int64', BigInt64Array.from(timesteps.map(BigInt)), [2]),
      encoder_hidden_states: new ort.Tensor('float32', Float32Array.from([...captions[0]!, ...captions[1]!]), [2, 8, 32]),
    })).out_hidden_states!;
    await session.release();
    expect(out.dims).toEqual([2, 8, 16, 16]);
    const values = out.data as Float32Array;
    const model = buildPixart(config, { seed: 7 });
    const rows = [0, 1].map((b) => values.subarray(b * 2048, (b + 1) * 2048));
    for (const b of [0, 1]) {
      const expected = pixartReference(model, config, image.subarray(b * 1024, (b + 1) * 1024), timesteps[b]!, captions[b]!);
      const maxDiff = Math.max(...rows[b]!.map((v, i) => Math.abs(v - expected[i]!)));
      expect(maxDiff).toBeLessThan(2e-5);
    }
    // Finite, O(0.1) and not degenerate: the sample's timestep and caption move it.
    expect(values.every(Number.isFinite)).toBe(true);
    const std = Math.sqrt(values.reduce((s, v) => s + v * v, 0) / values.length);
    expect(std).toBeGreaterThan(0.05);
    expect(std).toBeLessThan(2);
    expect(Math.max(...rows[0]!.map((v, i) => Math.abs(v - rows[1]![i]!)))).toBeGreaterThan(1e-3);
  });

  it('is byte-identical for the same seed and differs for another', () => {
    writePixartPipeline(config, 7, join(root, 'b'));
    writePixartPipeline(config, 8, join(root, 'c'));
    for (const file of written) expect(readFileSync(join(root, 'b', file)).equals(read(file)), file).toBe(true);
    expect(readFileSync(join(root, 'c', 'transformer/model.onnx.data')).equals(read('transformer/model.onnx.data'))).toBe(false);
    expect(readFileSync(join(root, 'c', 'conditioning/prompt_000.npy')).equals(read('conditioning/prompt_000.npy'))).toBe(false);
  });

  it('refuses a destination that is a file, or a folder where an output goes, and leaves nothing behind', () => {
    writeFileSync(join(root, 'file'), 'x');
    expect(() => writePixartPipeline(config, 7, join(root, 'file'))).toThrow(/is a file, not a folder/);
    mkdirSync(join(root, 'd', 'transformer'), { recursive: true });
    writeFileSync(join(root, 'd', 'model_index.json'), 'keep');
    mkdirSync(join(root, 'd', 'scheduler', 'scheduler_config.json'), { recursive: true });
    expect(() => writePixartPipeline(config, 7, join(root, 'd'))).toThrow(/scheduler_config\.json/);
    expect(readdirSync(join(root, 'd', 'transformer'))).toEqual([]);
    expect(readFileSync(join(root, 'd', 'model_index.json'), 'utf8')).toBe('keep');
  });
});

describe('synthetic PixArt-α 512 (built in memory; weights are lazy and never generated here)', () => {
  it('has the published parameter count and the PixArt-XL/2 layer shapes', () => {
    const config = PIXART_PRESETS['pixart-alpha-512']!;
    const model = buildPixart(config);
    // 610.86 M trainable parameters (PixArt-α's "0.6 B"; 611.35 M for the 1024-MS model with its size embedders),
    // plus the 1024 × 1152 position table and the norms' ones/zeros the export carries.
    expect(pixartParameterCount(config)).toBe(610_856_096);
    expect(weightCount(model)).toBe(610_856_096 + 1024 * 1152 + 2 * 1152);
    const ops = (op: string) => model.graph.nodes.filter((n) => n.opType === op).length;
    // Per block q/k/v/out of both attentions and the two FF linears; the caption projection's two; proj_out.
    expect(ops(Op.MatMul)).toBe(28 * 10 + 2 + 1 + 28 * 2 * 2);
    expect(ops(Op.Gemm)).toBe(3);
    expect(ops(Op.Softmax)).toBe(56);
    const tokenWeights = model.graph.nodes.filter((n) => n.opType === Op.MatMul && n.inputs[1]?.initializer).map((n) => n.inputs[1]!.initializer!.dims.join('x'));
    expect(new Set(tokenWeights)).toEqual(new Set(['4096x1152', '1152x1152', '1152x4608', '4608x1152', '1152x32']));
  });
});
