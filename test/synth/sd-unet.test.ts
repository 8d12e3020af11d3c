/**
 * `qcompile synth unet`: the tiny-sd pipeline folder end to end in onnxruntime, its weighted layers against the
 * sd-digits fixture's real torch export, and the SD-1.5 graph's size and op counts (built in memory; its lazy
 * weights are never generated here).
 */
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, describe, expect, it } from 'vitest';
import { synthCommand } from '../../src/cli/commands/synth.js';
import type { Model } from '../../src/ir/core.js';
import { readNpy as readAnyNpy } from '../../src/ir/npy.js';
import { loadModelSync, saveModel } from '../../src/ir/serde.js';
import { verifyModel } from '../../src/ir/verify.js';
import { SD_UNET_PRESETS, buildSdUnet, sdUnetParameterCount } from '../../src/synth/sd-unet.js';

const root = mkdtempSync(join(tmpdir(), 'qcompile-synth-unet-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

async function synth(...argv: string[]) {
  let stderr = '';
  const code = await synthCommand.run(argv, { stdout: () => {}, stderr: (s) => void (stderr += s), cwd: root });
  return { code, stderr };
}

function files(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true }).filter((d) => d.isFile()).map((d) => relative(dir, join(d.parentPath, d.name))).sort();
}

/** A .npy file's shape and float32 values (format 1.0, '<f4', C order). */

/** A float32 .npy file (the conditioning the synth writes). */
function readNpy(path: string): { shape: number[]; data: Float32Array } {
  const array = readAnyNpy(path);
  if (array.dtype !== 'float32') throw new Error(`${path}: expected float32`);
  return array;
}

function weightCount(model: Model): number {
  return [...model.graph.initializers.values()].reduce((n, v) => n + v.initializer!.size, 0);
}

function opCounts(model: Model): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const node of model.graph.nodes) counts[node.opType] = (counts[node.opType] ?? 0) + 1;
  return counts;
}

/** The nodes that read a weight, in order: name (without the exporter's _N), op, weights (onnx::Op_N → onnx::Op). */
function weightedNodes(model: Model): string[] {
  return model.graph.nodes.filter((n) => n.inputs.some((v) => v?.initializer)).map((n) => {
    const weights = n.inputs.filter((v) => v?.initializer).map((v) => `${v!.name.startsWith('onnx::') ? v!.name.replace(/_\d+$/, '') : v!.name}[${v!.initializer!.dims.join(',')}]`);
    return `${n.name.replace(/_\d+$/, '')} ${n.opType} ${weights.join(' ')}`;
  });
}

describe('qcompile synth unet --preset tiny-sd', async () => {
  expect((await synth('unet', '--preset', 'tiny-sd', '--seed', '3', '-o', 'a')).code).toBe(0);
  const dir = join(root, 'a');

  it('writes an optimum pipeline folder with diffusers configs and npy conditioning', () => {
    const prompts = Array.from({ length: 8 }, (_, i) => `conditioning/prompt_00${i}.npy`);
    expect(files(dir)).toEqual([...prompts, 'conditioning/uncond.npy', 'model_index.json', 'scheduler/scheduler_config.json', 'unet/config.json', 'unet/model.onnx', 'unet/model.onnx.data'].sort());
    expect(JSON.parse(readFileSync(join(dir, 'unet/config.json'), 'utf8'))).toMatchObject({
      _class_name: 'UNet2DConditionModel', sample_size: 16, in_channels: 4, out_channels: 4, block_out_channels: [32, 64], layers_per_block: 1,
      down_block_types: ['CrossAttnDownBlock2D', 'DownBlock2D'], up_block_types: ['UpBlock2D', 'CrossAttnUpBlock2D'], attention_head_dim: 8, cross_attention_dim: 32,
      flip_sin_to_cos: true, freq_shift: 0, norm_num_groups: 32, use_linear_projection: false,
    });
    expect(JSON.parse(readFileSync(join(dir, 'scheduler/scheduler_config.json'), 'utf8'))).toMatchObject({
      _class_name: 'PNDMScheduler', beta_schedule: 'scaled_linear', beta_start: 0.00085, beta_end: 0.012, num_train_timesteps: 1000, steps_offset: 1,
      prediction_type: 'epsilon', skip_prk_steps: true, set_alpha_to_one: false,
    });
    expect(JSON.parse(readFileSync(join(dir, 'model_index.json'), 'utf8'))).toMatchObject({ unet: ['diffusers', 'UNet2DConditionModel'], scheduler: ['diffusers', 'PNDMScheduler'] });
    const uncond = readNpy(join(dir, 'conditioning/uncond.npy'));
    expect(uncond.shape).toEqual([77, 32]);
    const std = Math.sqrt(uncond.data.reduce((s, v) => s + v * v, 0) / uncond.data.length);
    expect(std).toBeGreaterThan(0.9);
    expect(std).toBeLessThan(1.1);
    expect(readNpy(join(dir, 'conditioning/prompt_000.npy')).data).not.toEqual(readNpy(join(dir, 'conditioning/prompt_001.npy')).data);
  });

  it('runs in onnxruntime: [B, 4, H, W] at another size too (H, W dynamic), finite, timestep- and prompt-dependent', async () => {
    const session = await ort.InferenceSession.create(join(dir, 'unet/model.onnx'));
    expect(session.inputNames).toEqual(['sample', 'timestep', 'encoder_hidden_states']);
    expect(session.outputNames).toEqual(['out_sample']);
    const prompt = readNpy(join(dir, 'conditioning/prompt_000.npy')).data;
    const uncond = readNpy(join(dir, 'conditioning/uncond.npy')).data;
    const run = async (side: number, timesteps: bigint[], states: Float32Array[]) => {
      const batch = states.length;
      const sample = Float32Array.from({ length: batch * 4 * side * side }, (_, i) => Math.sin(i * 0.37));
      const feeds = {
        sample: new ort.Tensor('float32', sample, [batch, 4, side, side]),
        timestep: new ort.Tensor('int64', BigInt64Array.from(timesteps), [timesteps.length]),
        encoder_hidden_states: new ort.Tensor('float32', Float32Array.from(states.flatMap((s) => [...s])), [batch, 77, 32]),
      };
      return (await session.run(feeds)).out_sample!;
    };
    // One timestep for the whole batch (optimum's `steps` axis broadcasts), then one per row.
    const shared = await run(16, [981n], [prompt, uncond, prompt]);
    expect(shared.dims).toEqual([3, 4, 16, 16]);
    const values = shared.data as Float32Array;
    expect(values.every(Number.isFinite)).toBe(true);
    const rows = [0, 1, 2].map((b) => values.subarray(b * 1024, (b + 1) * 1024));
    const rms = Math.sqrt(rows[0]!.reduce((s, v) => s + v * v, 0) / 1024);
    expect(rms).toBeGreaterThan(1e-2);
    const diff = (a: Float32Array, b: Float32Array) => Math.max(...a.map((v, i) => Math.abs(v - b[i]!)));
    const perRow = await run(16, [981n, 981n, 981n], [prompt, uncond, prompt]);
    expect(diff(perRow.data as Float32Array, values)).toBeLessThan(1e-5);
    // Same sample (batch of one): the prompt and the timestep both change the prediction.
    const one = (await run(16, [981n], [prompt])).data as Float32Array;
    expect(diff(one, values.subarray(0, 1024))).toBeLessThan(1e-5);
    expect(diff(one, (await run(16, [981n], [uncond])).data as Float32Array)).toBeGreaterThan(1e-3);
    expect(diff(one, (await run(16, [10n], [prompt])).data as Float32Array)).toBeGreaterThan(1e-3);
    // Dynamic height and width, as optimum exports them.
    const wide = await run(24, [500n], [prompt, uncond]);
    expect(wide.dims).toEqual([2, 4, 24, 24]);
    expect((wide.data as Float32Array).every(Number.isFinite)).toBe(true);
    await session.release();
  });

  it('has the parameters of the diffusers model, all as weights of the graph', () => {
    const model = loadModelSync(join(dir, 'unet/model.onnx'));
    expect(weightCount(model)).toBe(sdUnetParameterCount(SD_UNET_PRESETS['tiny-sd']!));
    expect(weightCount(model)).toBe(792_964);
  });

  it('is byte-identical for the same seed and differs for another', async () => {
    expect((await synth('unet', '--preset', 'tiny-sd', '--seed', '3', '-o', 'b')).code).toBe(0);
    expect((await synth('unet', '--preset', 'tiny-sd', '--seed', '4', '-o', 'c')).code).toBe(0);
    for (const file of files(dir)) expect(readFileSync(join(root, 'b', file)).equals(readFileSync(join(dir, file))), file).toBe(true);
    for (const file of ['unet/model.onnx.data', 'conditioning/uncond.npy']) expect(readFileSync(join(root, 'c', file)).equals(readFileSync(join(dir, file)))).toBe(false);
  });

  it('rejects bad usage with exit 2 and writes nothing', async () => {
    for (const argv of [
      ['unet', '--preset', 'sd99', '-o', 'd'],
      ['unet', '--preset', 'tiny', '-o', 'd'],
      ['unet', '--preset', 'tiny-sd', '--learn-sigma', '-o', 'd'],
      ['vae', '--preset', 'tiny-sd', '-o', 'd'],
      ['unet', 'dit', '--preset', 'tiny-sd', '-o', 'd'],
      ['unet', '--preset', 'tiny-sd'],
    ]) {
      const { code, stderr } = await synth(...argv);
      expect(code, argv.join(' ')).toBe(2);
      expect(stderr).toMatch(/^qcompile synth: error: .*\nUsage: qcompile synth dit/);
    }
    expect(readdirSync(root)).not.toContain('d');
  });
});

describe('synthetic UNet against a real torch export (test/fixtures/sd-digits)', () => {
  // sd-digits: block_out_channels (64, 128), 1 layer per block, head dim 32 (2 and 4 heads), cross_attention_dim 64, 1-channel 16×16 "latents".
  const fixtureDir = join(import.meta.dirname, '../fixtures/sd-digits/unet');
  const fixture = loadModelSync(join(fixtureDir, 'model.onnx'));
  const same = buildSdUnet({ ...SD_UNET_PRESETS['tiny-sd']!, name: 'sd-digits', inChannels: 1, outChannels: 1, blockOutChannels: [64, 128], attentionHeads: [2, 4], crossAttentionDim: 64 });

  it('reads the same weights in the same order at the fixture\'s sizes', () => {
    expect(weightedNodes(same)).toEqual(weightedNodes(fixture));
    expect(weightCount(same)).toBe(3_149_185);
  });

  it('with the fixture\'s trained weights, reproduces its PyTorch outputs in onnxruntime', async () => {
    const carriers = (model: Model) => model.graph.nodes.flatMap((n) => n.inputs.filter((v) => v?.initializer));
    const from = carriers(fixture);
    carriers(same).forEach((value, i) => void (value!.initializer = from[i]!.initializer));
    const path = join(root, 'sd-digits-weights.onnx');
    saveModel(same, path);
    const session = await ort.InferenceSession.create(path);
    const bin = (name: string) => readFileSync(join(fixtureDir, name));
    const f32 = (name: string) => { const b = bin(name); return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength)); };
    const i64 = (name: string) => { const b = bin(name); return new BigInt64Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength)); };
    const out = (await session.run({
      sample: new ort.Tensor('float32', f32('reference_in_sample.bin'), [8, 1, 16, 16]),
      timestep: new ort.Tensor('int64', i64('reference_in_timestep.bin'), [8]),
      encoder_hidden_states: new ort.Tensor('float32', f32('reference_in_encoder_hidden_states.bin'), [8, 8, 64]),
    })).out_sample!;
    await session.release();
    const expected = f32('reference_out_out_sample.bin');
    const actual = out.data as Float32Array;
    const maxAbs = Math.max(...actual.map((v, i) => Math.abs(v - expected[i]!)));
    // The fixture's suggested tolerance; its own export matched to 3.6e-6.
    expect(maxAbs).toBeLessThan(1e-4);
  });
});

describe('synthetic SD-1.5 UNet graph (built in memory; weights are lazy and never generated here)', () => {
  const config = SD_UNET_PRESETS.sd15!;
  const model = buildSdUnet(config);

  it('has the 859,520,964 parameters of diffusers\' SD-1.5 UNet2DConditionModel', () => {
    expect(sdUnetParameterCount(config)).toBe(859_520_964);
    expect(weightCount(model)).toBe(859_520_964);
    // Well-formed, and shape inference types every node output (never reading a weight).
    expect(verifyModel(model)).toEqual([]);
  });

  it('has the op counts of 22 resnets, 16 transformers, 3 down- and 3 upsamplers', () => {
    expect(opCounts(model)).toEqual({
      Constant: 1449, Shape: 462, Unsqueeze: 446, Gather: 401, Reshape: 282, Mul: 270, Add: 265, MatMul: 224, Concat: 174, Transpose: 160,
      // Conv: conv_in/out, 2 per resnet, 14 shortcuts, proj_in/out, 6 samplers. Div: each resnet and attention's `/ 1.0`, 2 per GEGLU.
      Conv: 98, Div: 86, InstanceNormalization: 61, LayerNormalization: 48, Sigmoid: 47, Slice: 34, Softmax: 32, Gemm: 24, Erf: 16, Resize: 3,
      Expand: 1, Cast: 1, Sin: 1, Cos: 1,
    });
    const io = (values: typeof model.graph.inputs) => values.map((v) => `${v.name} ${v.type!.elemType} [${v.type!.shape!.join(',')}]`);
    expect(io(model.graph.inputs)).toEqual(['sample 1 [batch_size,4,height,width]', 'timestep 7 [steps]', 'encoder_hidden_states 1 [batch_size,sequence_length,768]']);
    expect(io(model.graph.outputs)).toEqual(['out_sample 1 [batch_size,4,height,width]']);
  });

  it('has SD-1.5\'s layer widths: 8 heads, cross-attention k/v reading the 768-wide text states, GEGLU 8C', () => {
    const weighted = weightedNodes(model);
    const at = (prefix: string) => weighted.filter((w) => w.startsWith(prefix));
    expect(at('/down_blocks.0/attentions.0/transformer_blocks.0/attn2/to_k/')).toEqual(['/down_blocks.0/attentions.0/transformer_blocks.0/attn2/to_k/MatMul MatMul onnx::MatMul[768,320]']);
    expect(at('/mid_block/attentions.0/transformer_blocks.0/ff/')).toEqual([
      '/mid_block/attentions.0/transformer_blocks.0/ff/net.0/proj/MatMul MatMul onnx::MatMul[1280,10240]', '/mid_block/attentions.0/transformer_blocks.0/ff/net.0/proj/Add Add mid_block.attentions.0.transformer_blocks.0.ff.net.0.proj.bias[10240]',
      '/mid_block/attentions.0/transformer_blocks.0/ff/net.2/MatMul MatMul onnx::MatMul[5120,1280]', '/mid_block/attentions.0/transformer_blocks.0/ff/net.2/Add Add mid_block.attentions.0.transformer_blocks.0.ff.net.2.bias[1280]',
    ]);
    expect(at('/up_blocks.3/resnets.0/')).toContain('/up_blocks.3/resnets.0/conv1/Conv Conv up_blocks.3.resnets.0.conv1.weight[320,960,3,3] up_blocks.3.resnets.0.conv1.bias[320]');
    const contextReaders = model.graph.nodes.filter((n) => n.inputs.some((v) => v?.name === 'encoder_hidden_states'));
    expect(contextReaders.length).toBe(32);
    expect(contextReaders.every((n) => n.opType === 'MatMul' && /\/attn2\/to_[kv]\/MatMul$/.test(n.name))).toBe(true);
    const headShapes = model.graph.nodes.filter((n) => n.opType === 'Reshape' && n.name.includes('/attn1/')).length;
    expect(headShapes).toBe(16 * 4);
    const skips = model.graph.nodes.filter((n) => n.opType === 'Concat' && /^\/up_blocks\.\d\/Concat/.test(n.name));
    expect(skips.length).toBe(12);
  });
});
