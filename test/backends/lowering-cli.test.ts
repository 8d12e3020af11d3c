/**
 * The lowering as the CLI runs it: the last step of the pipeline (dumped, in pipeline.json, nameable in
 * --passes), and a plan the target refuses reported as one located diagnostic per recipe rule.
 */
import { existsSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Op, isOp } from '../../src/ir/ops.js';
import { loadModelSync } from '../../src/ir/serde.js';
import { DIT_DIGITS } from '../passes/fixture.js';
import { runCli } from '../cli/run-cli.js';

const MODEL = join(DIT_DIGITS, 'model.onnx');


/** The `file:line:col: severity[code]` heads of rendered diagnostics in `stderr`. */
function heads(stderr: string): string[] {
  return stderr.split('\n').filter((line) => /^\S+:\d+:\d+: (error|warning|note)\[/.test(line));
}

describe('lower-<target> in the pipeline', () => {
  it('--dump-dir shows the lowering step: NN-lower-cpu.ir/.diff, pipeline.json ends with it, the output is what it dumped', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'qc-lower-dump-'));
    const result = await runCli([MODEL, 'recipes/rtn-w4a16-g128.qrecipe', '-o', join(dir, 'out.onnx'), '--target', 'cpu', '--dump-dir', join(dir, 'dumps'), '--verify-each']);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stderr).toMatch(/^\[3\/3\] lower-cpu /m);
    const files = readdirSync(join(dir, 'dumps')).sort();
    expect(files).toEqual(['00-input.ir', '01-quantize-weights.diff', '01-quantize-weights.ir', '02-cleanup.diff', '02-cleanup.ir', '03-lower-cpu.diff', '03-lower-cpu.ir', 'pipeline.json', 'timings.json']);
    const pipeline = JSON.parse(readFileSync(join(dir, 'dumps', 'pipeline.json'), 'utf8')) as { pipeline: string; passes: { step: string; statistics: Record<string, number> }[] };
    expect(pipeline.pipeline).toBe('quantize-weights,cleanup,lower-cpu');
    expect(pipeline.passes.at(-1)).toMatchObject({ step: 'lower-cpu{allowFallback=false,allowRequantize=false}', statistics: { matmul_nbits: 31 } });
    expect(readFileSync(join(dir, 'dumps', '03-lower-cpu.diff'), 'utf8')).toMatch(/^\+.*= com\.microsoft\.MatMulNBits\(/m);
    const lowered = loadModelSync(join(dir, 'out.onnx'));
    expect(lowered.graph.nodes.filter((n) => n.opType === 'MatMulNBits')).toHaveLength(31);
    // The one Conv (the patch embedding, int8 per output channel) stays DequantizeLinear → float Conv.
    expect(lowered.graph.nodes.filter((n) => isOp(n, Op.DequantizeLinear)).map((n) => n.outputs[0]!.uses.map((u) => u.node.opType))).toEqual([['Conv']]);
  });

  it("--passes can name the lowering; a --target that contradicts it is a usage error; a misspelt target gets a suggestion", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'qc-lower-passes-'));
    const pipeline = 'select-layers{roles=attn|mlp|adaln,bits=4,group=128},quantize-weights,lower-webgpu';
    const result = await runCli([MODEL, '--passes', pipeline, '-o', join(dir, 'out.onnx')]);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/^lower-webgpu .* matmul_nbits=31$/m);
    const conflict = await runCli([MODEL, '--passes', pipeline, '--target', 'cpu', '-o', join(dir, 'never.onnx')]);
    expect(conflict).toMatchObject({ code: 2, stderr: "qcompile: error: --target cpu conflicts with the pipeline's lower-webgpu step\n" });
    const typo = await runCli([MODEL, '--passes', pipeline, '--target', 'tensort', '-o', join(dir, 'never.onnx')]);
    expect(typo.code).toBe(2);
    expect(typo.stderr).toMatch(/^qcompile: error: unknown target 'tensort' \(did you mean 'tensorrt'\?\) \(supported: cpu, webgpu, cuda, tensorrt\)\n/);
    expect(existsSync(join(dir, 'never.onnx'))).toBe(false);
  });
});

describe('a plan the target refuses', () => {
  it('ptq4dm-w8a8 on tensorrt: exactly one located E040 per rule, with the caret and the layers by problem', async () => {
    const out = join(mkdtempSync(join(tmpdir(), 'qc-lower-refuse-')), 'out.onnx');
    const result = await runCli([MODEL, 'recipes/ptq4dm-w8a8.qrecipe', '-o', out, '--target', 'tensorrt']);
    expect(result.code).toBe(1);
    const recipe = join(process.cwd(), 'recipes/ptq4dm-w8a8.qrecipe');
    expect(heads(result.stderr)).toEqual([`${recipe}:19:3: error[E040]: target tensorrt cannot execute what this rule plans for 35 layers`]);
    const lines = result.stderr.trimEnd().split('\n');
    expect(lines.slice(1, 3)).toEqual(['    quantize all except op(Gather) {', `    ^${'~'.repeat(31)}`]);
    // One note per distinct problem (weight and activation form, per op), never one line per layer.
    expect(lines.slice(3)).toHaveLength(6);
    expect(lines[7]).toBe(
      '  note: weight int8 asym per-channel on MatMul is not supported; --allow-requantize would lower it as int8 sym per-channel on the output axis (requantized: scale max|w|/127): 25 layers (blocks.0.attn.qkv, blocks.0.attn.out, blocks.0.mlp.fc1, blocks.0.mlp.fc2 and 21 more)',
    );
    expect(existsSync(out)).toBe(false);
  });

  it('two refused rules: two diagnostics, each at its own rule', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'qc-lower-rules-'));
    const recipe = join(dir, 'two-rules.qrecipe');
    const text = ['recipe "two rules" {', '  target tensorrt', '  quantize attn {', '    weight int8 asym per-channel', '  }', '  quantize mlp {', '    weight int8 sym per-channel', '    input  int8 sym per-timestep(groups: 10)', '  }', '}', ''].join('\n');
    writeFileSync(recipe, text);
    const result = await runCli([MODEL, recipe, '-o', join(dir, 'out.onnx')]);
    expect(result.code).toBe(1);
    expect(heads(result.stderr)).toEqual([
      `${recipe}:3:3: error[E040]: target tensorrt cannot execute what this rule plans for 12 layers`,
      `${recipe}:6:3: error[E040]: target tensorrt cannot execute what this rule plans for 12 layers`,
    ]);
    expect(result.stderr).toContain('  note: activation int8 sym per-timestep on MatMul is not supported: 12 layers (blocks.0.mlp.fc1, blocks.0.mlp.fc2, blocks.1.mlp.fc1, blocks.1.mlp.fc2 and 8 more)\n');
  });

  it('a refusal found on the graph (--passes, no plan to check first) fails the lowering pass with the same grouped diagnostic and a reproducer', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'qc-lower-graph-'));
    const result = await runCli([MODEL, '--passes', 'select-layers{roles=mlp,bits=4,group=64,symmetric=false},quantize-weights,lower-tensorrt', '-o', join(dir, 'out.onnx'), '--dump-dir', join(dir, 'dumps')]);
    expect(result.code).toBe(1);
    const report = result.stderr.slice(result.stderr.indexOf('error['));
    expect(report).toBe(
      [
        'error[E040]: target tensorrt cannot execute the quantization of 12 layers',
        '  note: weight int4 asym group 64 on MatMul is not supported: 12 layers (blocks.0.mlp.fc1, blocks.0.mlp.fc2, blocks.1.mlp.fc1, blocks.1.mlp.fc2 and 8 more)',
        `reproducer: ${join(dir, 'dumps', 'reproducer')}`,
        '',
      ].join('\n'),
    );
    expect(readFileSync(join(dir, 'dumps', 'reproducer', 'pipeline.txt'), 'utf8')).toBe('lower-tensorrt{allowFallback=false,allowRequantize=false}\n');
    expect(existsSync(join(dir, 'out.onnx'))).toBe(false);
  });
});
