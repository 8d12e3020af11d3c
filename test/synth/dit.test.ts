import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, describe, expect, it } from 'vitest';
import { synthCommand } from '../../src/cli/commands/synth.js';
import { discoverLayers } from '../../src/quant/layers.js';
import { loadModelSync } from '../../src/ir/serde.js';
import { DIT_PRESETS, buildDit, ditParameterCount } from '../../src/synth/dit.js';

const root = mkdtempSync(join(tmpdir(), 'qcompile-synth-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

async function synth(...argv: string[]) {
  let stderr = '';
  const code = await synthCommand.run(argv, { stdout: () => {}, stderr: (s) => void (stderr += s), cwd: root });
  return { code, stderr };
}

describe('qcompile synth dit --preset tiny', async () => {
  expect((await synth('dit', '--preset', 'tiny', '--seed', '7', '-o', 'a')).code).toBe(0);
  const dir = join(root, 'a');

  it('writes the model, its external data and the schedule', () => {
    expect(readdirSync(dir).sort()).toEqual(['model.onnx', 'model.onnx.data', 'schedule.json']);
    const schedule = JSON.parse(readFileSync(join(dir, 'schedule.json'), 'utf8'));
    expect(schedule).toMatchObject({ T: 1000, beta_schedule: 'linear', prediction_type: 'epsilon', num_classes: 10, null_class: 10 });
    expect(schedule.outputs).toEqual([{ name: 'out', dtype: 'float32', shape: ['batch', 2, 16, 16] }]);
  });

  it('runs in onnxruntime: [B, 2C, H, W], finite, non-trivial, label-dependent', async () => {
    const session = await ort.InferenceSession.create(join(dir, 'model.onnx'));
    const batch = 3;
    const x = Float32Array.from({ length: batch * 256 }, (_, i) => Math.sin(i * 0.37));
    const feeds = {
      x: new ort.Tensor('float32', x, [batch, 1, 16, 16]),
      t: new ort.Tensor('int64', BigInt64Array.from([0n, 500n, 500n]), [batch]),
      y: new ort.Tensor('int64', BigInt64Array.from([3n, 3n, 10n]), [batch]),
    };
    const out = (await session.run(feeds)).out!;
    await session.release();
    expect(out.dims).toEqual([batch, 2, 16, 16]);
    const values = out.data as Float32Array;
    expect(values.every(Number.isFinite)).toBe(true);
    const rows = [0, 1, 2].map((b) => values.subarray(b * 512, (b + 1) * 512));
    const std = Math.sqrt(rows[0]!.reduce((s, v) => s + v * v, 0) / 512);
    expect(std).toBeGreaterThan(1e-3);
    // Different timesteps and different labels (10 = the null class) change the output.
    const diff = (a: Float32Array, b: Float32Array) => Math.max(...a.map((v, i) => Math.abs(v - b[i]!)));
    expect(diff(rows[0]!, rows[1]!)).toBeGreaterThan(1e-4);
    expect(diff(rows[1]!, rows[2]!)).toBeGreaterThan(1e-4);
  });

  it('has the DiT layer roles, shapes and parameter count', () => {
    const model = loadModelSync(join(dir, 'model.onnx'));
    const total = [...model.graph.initializers.values()].reduce((n, v) => n + v.initializer!.size, 0);
    expect(total).toBe(ditParameterCount(DIT_PRESETS.tiny!));
    const layers = discoverLayers(model).map((l) => `${l.name} ${l.role} ${l.opType} ${l.inChannels}->${l.outChannels} ${l.block ?? '-'}`);
    const block = (b: number) => [
      `blocks.${b}.adaln adaln Gemm 64->384 ${b}`, `blocks.${b}.attn.qkv attn.qkv MatMul 64->192 ${b}`, `blocks.${b}.attn.out attn.out MatMul 64->64 ${b}`,
      `blocks.${b}.mlp.fc1 mlp.fc1 MatMul 64->256 ${b}`, `blocks.${b}.mlp.fc2 mlp.fc2 MatMul 256->64 ${b}`,
    ];
    expect(layers).toEqual([
      'embed.patch embed.patch Conv 1->64 -', 'embed.time.0 embed.time Gemm 256->64 -', 'embed.time.1 embed.time Gemm 64->64 -', 'embed.label embed.label Gather 64->11 -',
      ...block(0), ...block(1),
      'final.adaln adaln Gemm 64->128 -', 'final.linear final MatMul 64->8 -',
    ]);
    // Token-linear weights carry the exporter's meaningless names.
    expect(discoverLayers(model).filter((l) => l.opType === 'MatMul').every((l) => /^onnx::MatMul_\d+$/.test(l.weight.name))).toBe(true);
  });

  it('is byte-identical for the same seed and differs for another', async () => {
    expect((await synth('dit', '--preset', 'tiny', '--seed', '7', '-o', 'b')).code).toBe(0);
    expect((await synth('dit', '--preset', 'tiny', '--seed', '8', '-o', 'c')).code).toBe(0);
    for (const file of ['model.onnx', 'model.onnx.data', 'schedule.json']) {
      expect(readFileSync(join(root, 'b', file)).equals(readFileSync(join(dir, file)))).toBe(true);
    }
    expect(readFileSync(join(root, 'c', 'model.onnx.data')).equals(readFileSync(join(dir, 'model.onnx.data')))).toBe(false);
  });

  it('rejects bad usage with exit 2 and writes nothing', async () => {
    expect((await synth('dit', '--preset', 'huge', '-o', 'd')).code).toBe(2);
    expect((await synth('dit', '--preset', 'tiny', '--seed', '-1', '-o', 'd')).code).toBe(2);
    expect((await synth('unet', '--preset', 'tiny', '-o', 'd')).code).toBe(2);
    expect((await synth('dit', '--preset', 'tiny')).code).toBe(2);
    expect(readdirSync(root)).not.toContain('d');
  });
});

describe('qcompile synth dit --learn-sigma / --no-learn-sigma', () => {
  it('--no-learn-sigma outputs epsilon only: C channels, described in schedule.json; --learn-sigma is the presets\' default', async () => {
    expect((await synth('dit', '--preset', 'tiny', '--no-learn-sigma', '-o', 'eps')).code).toBe(0);
    const dir = join(root, 'eps');
    const schedule = JSON.parse(readFileSync(join(dir, 'schedule.json'), 'utf8'));
    expect(schedule).toMatchObject({ learn_sigma: false, variance_type: 'fixed_small', output_channels: 'epsilon' });
    expect(schedule.outputs).toEqual([{ name: 'out', dtype: 'float32', shape: ['batch', 1, 16, 16] }]);
    const model = loadModelSync(join(dir, 'model.onnx'));
    const total = [...model.graph.initializers.values()].reduce((n, v) => n + v.initializer!.size, 0);
    // The final linear loses p·p·C outputs: 64·4 weights and 4 biases.
    expect(total).toBe(ditParameterCount({ ...DIT_PRESETS.tiny!, learnSigma: false }));
    expect(ditParameterCount(DIT_PRESETS.tiny!) - total).toBe(64 * 4 + 4);
    const session = await ort.InferenceSession.create(join(dir, 'model.onnx'));
    const out = (await session.run({
      x: new ort.Tensor('float32', Float32Array.from({ length: 2 * 256 }, (_, i) => Math.cos(i * 0.21)), [2, 1, 16, 16]),
      t: new ort.Tensor('int64', BigInt64Array.from([10n, 900n]), [2]),
      y: new ort.Tensor('int64', BigInt64Array.from([1n, 10n]), [2]),
    })).out!;
    await session.release();
    expect(out.dims).toEqual([2, 1, 16, 16]);
    expect((out.data as Float32Array).every(Number.isFinite)).toBe(true);

    expect((await synth('dit', '--preset', 'tiny', '--learn-sigma', '-o', 'sigma')).code).toBe(0);
    expect((await synth('dit', '--preset', 'tiny', '-o', 'default')).code).toBe(0);
    for (const file of ['model.onnx', 'model.onnx.data', 'schedule.json']) {
      expect(readFileSync(join(root, 'sigma', file)).equals(readFileSync(join(root, 'default', file)))).toBe(true);
    }
    expect(JSON.parse(readFileSync(join(root, 'sigma', 'schedule.json'), 'utf8'))).toMatchObject({ learn_sigma: true, variance_type: 'learned_range' });
    expect(DIT_PRESETS['dit-xl-2']!.learnSigma).toBe(true);
  });

  it('rejects both flags together with exit 2', async () => {
    expect((await synth('dit', '--preset', 'tiny', '--learn-sigma', '--no-learn-sigma', '-o', 'both')).code).toBe(2);
    expect(readdirSync(root)).not.toContain('both');
  });
});

describe('synthetic DiT-XL/2 graph (built in memory; weights are lazy and never generated here)', () => {
  it('has the published size and exactly the DiT-XL/2 layer table', () => {
    const config = DIT_PRESETS['dit-xl-2']!;
    const model = buildDit(config);
    const total = [...model.graph.initializers.values()].reduce((n, v) => n + v.initializer!.size, 0);
    expect(total).toBe(ditParameterCount(config));
    // 675.1 M weights (trainable parameters plus the fixed position embedding), 2.70 GB as float32.
    expect(total).toBe(675_131_936);
    const layers = discoverLayers(model).map((l) => `${l.name} ${l.role} ${l.opType} [${l.weightShape}] ${l.inChannels}->${l.outChannels} ${l.block ?? '-'}`);
    const blocks = Array.from({ length: 28 }, (_, b) => [
      `blocks.${b}.adaln adaln Gemm [6912,1152] 1152->6912 ${b}`,
      `blocks.${b}.attn.qkv attn.qkv MatMul [1152,3456] 1152->3456 ${b}`,
      `blocks.${b}.attn.out attn.out MatMul [1152,1152] 1152->1152 ${b}`,
      `blocks.${b}.mlp.fc1 mlp.fc1 MatMul [1152,4608] 1152->4608 ${b}`,
      `blocks.${b}.mlp.fc2 mlp.fc2 MatMul [4608,1152] 4608->1152 ${b}`,
    ]).flat();
    expect(layers).toEqual([
      'embed.patch embed.patch Conv [1152,4,2,2] 4->1152 -',
      'embed.time.0 embed.time Gemm [1152,256] 256->1152 -',
      'embed.time.1 embed.time Gemm [1152,1152] 1152->1152 -',
      'embed.label embed.label Gather [1001,1152] 1152->1001 -',
      ...blocks,
      'final.adaln adaln Gemm [2304,1152] 1152->2304 -',
      'final.linear final MatMul [1152,32] 1152->32 -',
    ]);
  });
});
