import { existsSync, mkdtempSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DataType } from '../../src/ir/dtype.js';
import { Op, isOp } from '../../src/ir/ops.js';
import { discoverLayers } from '../../src/quant/layers.js';
import { loadModelSync } from '../../src/ir/serde.js';
import { selectLayersByRole } from '../../src/passes/layer-selection.js';
import { OrtExecutor } from '../../src/runtime/ir-executor.js';
import { DIT_DIGITS, referenceEps, sqnrDb } from '../passes/fixture.js';
import { runCli } from './run-cli.js';

const MODEL = join(DIT_DIGITS, 'model.onnx');


async function eps(path: string): Promise<Float32Array> {
  return referenceEps(loadModelSync(path), new OrtExecutor());
}

const fpEps = eps(MODEL);
/** The layers the pipelines below select: every attn, mlp and adaLN linear. */
const selected = selectLayersByRole(discoverLayers(loadModelSync(MODEL)), ['attn', 'mlp', 'adaln']);

describe('qcompile MODEL --passes … -o OUT (dit-digits)', () => {
  it.each([
    { label: 'W8 per-channel', pipeline: 'select-layers{roles=attn|mlp|adaln,bits=8},quantize-weights,cleanup', dtype: DataType.INT8, floor: 45 },
    { label: 'W4 group 128', pipeline: 'select-layers{roles=attn|mlp|adaln,bits=4,group=128},quantize-weights,cleanup', dtype: DataType.INT4, floor: 25 },
  ])('$label: integer weights, loads in ORT, eps SQNR above $floor dB', async ({ pipeline, dtype, floor }) => {
    const out = join(mkdtempSync(join(tmpdir(), 'qc-compile-')), 'out.onnx');
    const result = await runCli([MODEL, '--passes', pipeline, '-o', out]);
    expect(result.stderr).toMatch(/\[3\/3\] cleanup/);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain(`layers quantized: ${selected.length}\n`);
    const model = loadModelSync(out);
    expect(model.graph.nodes.filter((n) => isOp(n, Op.DequantizeLinear))).toHaveLength(selected.length);
    // Each selected layer now reads DequantizeLinear(integer initializer); the float weight is gone.
    for (const layer of selected) {
      const node = model.graph.nodes.find((n) => n.name === layer.node.name)!;
      const dq = node.inputs[1]!.producer!;
      expect(isOp(dq, Op.DequantizeLinear), layer.name).toBe(true);
      expect(dq.inputs[0]!.initializer!.dtype).toBe(dtype);
      expect(model.graph.initializers.has(layer.weight.name)).toBe(false);
    }
    expect(statSync(out).size).toBeLessThan(statSync(MODEL).size * (dtype === DataType.INT4 ? 0.3 : 0.4));
    const sqnr = sqnrDb(await fpEps, await eps(out));
    console.log(`${pipeline}: eps SQNR ${sqnr.toFixed(2)} dB, ${statSync(out).size} bytes`);
    expect(sqnr).toBeGreaterThanOrEqual(floor);
  });

  it('--dump-dir: numbered dumps, diffs and pipeline.json, byte-identical across runs (timings.json aside)', async () => {
    const runs = [];
    for (let i = 0; i < 2; i++) {
      const dir = mkdtempSync(join(tmpdir(), 'qc-dumps-'));
      const result = await runCli([MODEL, '--passes', 'select-layers{bits=4,group=64},quantize-weights,cleanup', '-o', join(dir, 'out.onnx'), '--dump-dir', join(dir, 'dumps')]);
      expect(result.code).toBe(0);
      runs.push(dir);
    }
    const files = readdirSync(join(runs[0]!, 'dumps')).sort();
    expect(files).toEqual([
      '00-input.ir',
      '01-select-layers.diff',
      '01-select-layers.ir',
      '02-quantize-weights.diff',
      '02-quantize-weights.ir',
      '03-cleanup.diff',
      '03-cleanup.ir',
      'pipeline.json',
      'timings.json',
    ]);
    for (const file of files.filter((f) => f !== 'timings.json')) {
      expect(readFileSync(join(runs[1]!, 'dumps', file)), file).toEqual(readFileSync(join(runs[0]!, 'dumps', file)));
    }
    expect(readFileSync(join(runs[1]!, 'out.onnx')).equals(readFileSync(join(runs[0]!, 'out.onnx')))).toBe(true);
    expect(readFileSync(join(runs[0]!, 'dumps', '02-quantize-weights.diff'), 'utf8')).toMatch(/^\+.*DequantizeLinear\(%.*_quantized, %.*_scale\) \{axis=0, block_size=64\}/m);
    const pipeline = JSON.parse(readFileSync(join(runs[0]!, 'dumps', 'pipeline.json'), 'utf8'));
    expect(pipeline.pipeline).toBe('select-layers{bits=4,group=64},quantize-weights,cleanup');
    expect(pipeline.passes[1].statistics.layers_quantized).toBe(selected.length);
  });

  it('reports a bad pipeline with a caret and exit code 2', async () => {
    const result = await runCli([MODEL, '--passes', 'select-layers,quantise-weights', '-o', join(tmpdir(), 'never.onnx')]);
    expect(result.code).toBe(2);
    expect(result.stderr).toBe(
      "qcompile: error: --passes: unknown pass 'quantise-weights' (did you mean 'quantize-weights'?)\n  select-layers,quantise-weights\n                ^\n",
    );
    expect(existsSync(join(tmpdir(), 'never.onnx'))).toBe(false);
  });

  it('names the cause when a pass fails, and leaves a reproducer (group 96 on 512 channels is not one: its last group is partial)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'qc-fail-'));
    const pipeline = 'select-layers{roles=mlp.fc2,bits=4,group=96},quantize-weights,weight-dilation{layers=blocks.0.mlp.fc3}';
    const result = await runCli([MODEL, '--passes', pipeline, '-o', join(dir, 'out.onnx'), '--dump-dir', dir]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('[2/3] quantize-weights');
    expect(result.stderr).toContain("qcompile: error: pass 'weight-dilation' (step 3) failed: no layer named 'blocks.0.mlp.fc3'");
    expect(readdirSync(join(dir, 'reproducer')).sort()).toEqual(['error.txt', 'input.onnx', 'pipeline.txt', 'plan.json']);
    expect(readdirSync(dir).filter((f) => f.endsWith('.failed.ir'))).toEqual(['03-weight-dilation.failed.ir']);
    expect(readFileSync(join(dir, 'reproducer', 'pipeline.txt'), 'utf8')).toMatch(/^weight-dilation\{layers=blocks\.0\.mlp\.fc3,/);
    expect(existsSync(join(dir, 'out.onnx'))).toBe(false);
  });
});

describe('loud by default: a compile that quantizes nothing', () => {
  it('is E046 and writes nothing, unless --allow-empty; a rule that selects nothing is E045 at compile too', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'qc-empty-'));
    const keepAll = join(dir, 'keep-all.qrecipe');
    writeFileSync(keepAll, 'recipe "x" {\n  quantize mlp { weight int8 }\n  keep all\n  keep mlp\n}\n');
    const empty = await runCli([MODEL, keepAll, '-o', join(dir, 'out.onnx')]);
    expect(empty.code).toBe(1);
    expect(empty.stderr).toContain('error[E046]: this compile quantizes no layer (no rule of the recipe quantizes a layer of this model); nothing written');
    expect(readdirSync(dir)).toEqual(['keep-all.qrecipe']);
    const allowed = await runCli([MODEL, keepAll, '-o', join(dir, 'out.onnx'), '--allow-empty']);
    expect(allowed.code, allowed.stderr).toBe(0);
    expect(allowed.stdout).toContain('layers quantized: 0\n');
    expect(existsSync(join(dir, 'out.onnx'))).toBe(true);

    const passes = await runCli([MODEL, '--passes', 'cleanup', '-o', join(dir, 'passes.onnx')]);
    expect(passes.code).toBe(1);
    expect(passes.stderr).toContain('error[E046]: this compile quantizes no layer (the --passes pipeline quantized no weight or activation); nothing written');
    expect(existsSync(join(dir, 'passes.onnx'))).toBe(false);

    const unmatched = join(dir, 'unmatched.qrecipe');
    writeFileSync(unmatched, 'recipe "x" {\n  quantize mlp.fc1 { weight int8 }\n  quantize res.conv { weight int8 }\n}\n');
    const refused = await runCli([MODEL, unmatched, '-o', join(dir, 'refused.onnx')]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(`${unmatched}:3:3: error[E045]: quantize rule 'res.conv' selects no layer of this model`);
    expect(existsSync(join(dir, 'refused.onnx'))).toBe(false);
    const lenient = await runCli([MODEL, unmatched, '-o', join(dir, 'lenient.onnx'), '--allow-empty']);
    expect(lenient.code, lenient.stderr).toBe(0);
    expect(lenient.stderr).toContain(`${unmatched}:3:3: warning[W001]: quantize rule 'res.conv' selects no layer of this model`);
    expect(lenient.stdout).toContain('layers quantized: 6\n');
  });
});

describe('qcompile passes / diff', () => {
  it('lists the registered passes with their options', async () => {
    const result = await runCli(['passes']);
    expect(result.code).toBe(0);
    for (const name of ['select-layers', 'upgrade-opset', 'quantize-weights', 'cleanup']) expect(result.stdout).toMatch(new RegExp(`^${name}  `, 'm'));
    expect(result.stdout).toContain('    group=<int>  group size along the input channels (implies granularity=group)');
    expect(result.stdout).toMatch(/^collect-hessians  .*\n    requires: calibration-batches\n    produces: gptq-codes$/m);
  });

  it('diff reports the output and per-layer SQNR on the fixture inputs', async () => {
    const out = join(mkdtempSync(join(tmpdir(), 'qc-diff-')), 'out.onnx');
    expect((await runCli([MODEL, '--passes', 'select-layers{bits=8},quantize-weights', '-o', out])).code).toBe(0);
    const result = await runCli(['diff', MODEL, out, '--inputs', DIT_DIGITS, '--json']);
    expect(result.code).toBe(0);
    const report = JSON.parse(result.stdout) as { comparisons: { name: string; kind: string; sqnrDb: number }[] };
    const output = report.comparisons.find((c) => c.name === 'eps')!;
    expect(output.kind).toBe('output');
    expect(output.sqnrDb).toBeCloseTo(sqnrDb(await fpEps, await eps(out)), 3);
    const layers = report.comparisons.filter((c) => c.kind === 'layer');
    expect(layers).toHaveLength(selected.length);
    for (const layer of layers) expect(layer.sqnrDb).toBeGreaterThan(30);
  });
});

describe('qcompile … --target webgpu --bundle DIR', () => {
  it('writes the deployable bundle next to the model: the lowered model, manifest with the sidecar schedule, page and ORT files', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'qcompile-bundle-'));
    const run = await runCli([MODEL, 'recipes/rtn-w4a16-g128.qrecipe', '-o', join(dir, 'model.onnx'), '--target', 'webgpu', '--bundle', join(dir, 'bundle')]);
    expect(run.code, run.stderr).toBe(0);
    expect(readdirSync(join(dir, 'bundle')).sort()).toEqual(['index.html', 'main.js', 'manifest.json', 'model.onnx', 'model.onnx.data', 'ort']);
    const manifest = JSON.parse(readFileSync(join(dir, 'bundle', 'manifest.json'), 'utf8')) as { schedule: { T: number; beta_schedule: string }; classes: number; quantization: Record<string, number> };
    expect(manifest.schedule).toMatchObject({ T: 1000, beta_schedule: 'linear' });
    expect(manifest.classes).toBe(10);
    expect(manifest.quantization.matmul_nbits).toBe(31);
    expect(readdirSync(dir).filter((f) => f.includes('.tmp-') || f.includes('.old-'))).toEqual([]);
  });

  it('refuses --bundle for another target before writing anything', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'qcompile-bundle-'));
    const run = await runCli([MODEL, 'recipes/rtn-w4a16-g128.qrecipe', '-o', join(dir, 'model.onnx'), '--target', 'cpu', '--bundle', join(dir, 'bundle')]);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('--bundle writes a WebGPU bundle: it needs --target webgpu');
    expect(readdirSync(dir)).toEqual([]);
  });
});
