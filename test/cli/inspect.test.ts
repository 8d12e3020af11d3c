import { copyFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { inspectCommand, type InspectReport } from '../../src/cli/commands/inspect.js';
import type { CliIO } from '../../src/cli/command.js';
import { DataType } from '../../src/ir/dtype.js';
import { loadModelSync, saveModel } from '../../src/ir/serde.js';
import { scrambledCopy } from '../runtime/diffusion/scramble.js';

/** Runs `inspect` with captured streams. */
async function inspect(...argv: string[]) {
  let stdout = '';
  let stderr = '';
  const io: CliIO = { stdout: (s) => void (stdout += s), stderr: (s) => void (stderr += s), cwd: process.cwd() };
  const code = await inspectCommand.run(argv, io);
  return { code, stdout, stderr };
}

const FIXTURE = 'test/fixtures/dit-digits/model.onnx';

describe('qcompile inspect', () => {
  it('reports I/O, ops, parameters and layers of the fixture as JSON', async () => {
    const { code, stdout, stderr } = await inspect(FIXTURE, '--json');
    expect({ code, stderr }).toEqual({ code: 0, stderr: '' });
    const report = JSON.parse(stdout) as InspectReport;
    expect(Object.keys(report)).toEqual(['file', 'irVersion', 'opsets', 'producer', 'inputs', 'outputs', 'nodes', 'ops', 'parameters', 'externalData', 'layers', 'diffusion']);
    expect(report.opsets).toEqual([{ domain: 'ai.onnx', version: 17 }]);
    expect(report.producer).toEqual({ name: 'pytorch', version: '1.13.0' });
    expect(report.inputs).toEqual([
      { name: 'x', dtype: 'f32', shape: ['batch', 1, 16, 16] },
      { name: 't', dtype: 'i64', shape: ['batch'] },
      { name: 'y', dtype: 'i64', shape: ['batch'] },
    ]);
    expect(report.outputs).toEqual([{ name: 'eps', dtype: 'f32', shape: ['batch', 1, 16, 16] }]);
    // The README's op counts (torch 1.13 export), most frequent first.
    expect(report.ops.slice(0, 6)).toEqual([
      { op: 'Constant', count: 174 }, { op: 'Add', count: 77 }, { op: 'Unsqueeze', count: 71 },
      { op: 'Mul', count: 70 }, { op: 'Gather', count: 38 }, { op: 'MatMul', count: 37 },
    ]);
    expect(report.nodes).toBe(586);
    // 1,865,860 trainable parameters + the fixed [1,64,128] position embedding + shared LN ones/zeros.
    expect(report.parameters.total).toBe(1_865_860 + 64 * 128 + 2 * 128);
    expect(report.parameters.byDtype).toEqual([{ dtype: 'f32', count: report.parameters.total, bytes: 4 * report.parameters.total }]);
    expect(report.externalData).toEqual([]);
    expect(report.layers).toHaveLength(36);
    expect(report.layers[5]).toEqual({ index: 5, name: 'blocks.0.attn.qkv', role: 'attn.qkv', op: 'MatMul', weightShape: [128, 384], inChannels: 128, outChannels: 384, block: 0, quantized: false });
  });

  it('prints a text report with the layer table', async () => {
    const { code, stdout } = await inspect(FIXTURE);
    expect(code).toBe(0);
    expect(stdout).toContain('opsets    ai.onnx 17');
    expect(stdout).toContain('x  f32[batch, 1, 16, 16]');
    expect(stdout).toMatch(/Constant\s+174\n/);
    expect(stdout).toMatch(/ 5 {2}blocks\.0\.attn\.qkv\s+attn\.qkv\s+MatMul\s+128x384\s+128->384\s+0\n/);
    expect(stdout).toMatch(/final\.linear\s+final\s+MatMul\s+128x4\s+128->4\s+-\n/);
  });

  it('prints the diffusion interface of the DiT and of sd-digits, each fact with its source', async () => {
    const dit = await inspect(FIXTURE);
    expect(dit.stdout).toMatch(/\ndiffusion interface\n {2}latent x \[1, 16, 16\] +graph +the float input whose layout the output repeats\n {2}timestep t i64 \[B\] +graph +read by the sinusoidal embedding\n/);
    expect(dit.stdout).toMatch(/\n {2}conditioning y class-label i64 \[\] +graph +gathers rows of a 10-row embedding table\n/);
    expect(dit.stdout).toMatch(/\n {2}prediction epsilon +sidecar +schedule\.json prediction_type\n {2}classes 10, no null class +sidecar +schedule\.json num_classes\n$/);
    const sd = await inspect('test/fixtures/sd-digits/unet/model.onnx', '--json');
    expect(sd.code).toBe(0);
    const { diffusion } = JSON.parse(sd.stdout) as InspectReport;
    expect(diffusion).toMatchObject({
      latent: { name: 'sample', shape: [1, 16, 16] },
      timestep: { name: 'timestep', elemType: DataType.INT64, rank: 1, scale: 1 },
      conditioning: [{ name: 'encoder_hidden_states', kind: 'text-states', elemType: DataType.FLOAT, shape: [8, 64] }],
      output: { name: 'out_sample', channels: 1, varianceChannels: 0 },
      prediction: 'epsilon',
    });
  });

  it('prints the same interface facts for a copy with every name scrambled, by structure', async () => {
    const copy = scrambledCopy('test/fixtures/sd-digits/unet/model.onnx', 'unet/model.onnx', [{ from: 'test/fixtures/sd-digits/scheduler/scheduler_config.json', to: 'scheduler/scheduler_config.json' }]);
    const { code, stdout } = await inspect(copy.path);
    expect(code).toBe(0);
    const n = (name: string) => copy.names.get(name)!;
    const section = stdout.slice(stdout.indexOf('\ndiffusion interface\n'));
    const facts = section.split('\n').slice(2, -1).map((l) => l.trim().split(/ {2,}/).slice(0, 2).join(' | '));
    expect(facts).toEqual([
      `latent ${n('sample')} [1, 16, 16] | graph`,
      `timestep ${n('timestep')} i64 [B] | graph`,
      'timestep scale 1 | graph',
      `conditioning ${n('encoder_hidden_states')} text-states f32 [8, 64] | graph`,
      `output ${n('out_sample')} 1 channels | graph`,
      'prediction epsilon | pipeline-folder',
    ]);
  });

  it('resolves dynamic height and width from --resolution, else the sidecar\'s image', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'qc-inspect-'));
    const model = loadModelSync(FIXTURE);
    for (const v of [model.graph.inputs[0]!, model.graph.outputs[0]!]) v.type = { elemType: DataType.FLOAT, shape: ['batch', 1, 'height', 'width'] };
    saveModel(model, join(dir, 'model.onnx'));
    copyFileSync('test/fixtures/dit-digits/schedule.json', join(dir, 'schedule.json'));
    expect((await inspect(join(dir, 'model.onnx'), '--resolution', '32')).stdout).toMatch(/\n {2}latent x \[1, 32, 32\] +command-line +--resolution\n/);
    expect((await inspect(join(dir, 'model.onnx'))).stdout).toMatch(/\n {2}latent x \[1, 16, 16\] +sidecar +schedule\.json "image"\n/);
  });

  it('says why a model has no diffusion interface instead of failing', async () => {
    const { code, stdout } = await inspect('test/fixtures/digits-classifier/classifier.onnx');
    expect(code).toBe(0);
    expect(stdout).toMatch(/\ndiffusion interface: none \(cannot find the timestep input .*\)\n$/);
  });

  it('fails with one line and exit 1 on a missing or non-ONNX file', async () => {
    const missing = await inspect('no/such/model.onnx');
    expect(missing).toEqual({ code: 1, stdout: '', stderr: 'qcompile: error: no/such/model.onnx: cannot read model: ENOENT\n' });
    const text = await inspect('test/fixtures/dit-digits/README.md');
    expect(text.code).toBe(1);
    expect(text.stderr).toMatch(/^qcompile: error: test\/fixtures\/dit-digits\/README\.md: not a valid ONNX protobuf .*\n$/);
  });

  it('prints its usage for --help', async () => {
    const { code, stdout } = await inspect('--help');
    expect(code).toBe(0);
    expect(stdout).toMatch(/^Usage: qcompile inspect MODEL \[--json\] \[--resolution N\]\n/);
  });

  it('rejects bad usage with exit 2', async () => {
    expect((await inspect()).code).toBe(2);
    expect((await inspect(FIXTURE, '--frobnicate')).code).toBe(2);
    expect(await inspect(FIXTURE, '--resolution', 'big')).toMatchObject({ code: 2, stderr: expect.stringMatching(/^qcompile inspect: error: --resolution takes a positive integer, got 'big'\n/) });
  });
});
