import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { CliIO } from '../../src/cli/command.js';
import { main } from '../../src/cli/main.js';
import { loadModelSync } from '../../src/ir/serde.js';
import { LAYERS_METADATA_KEY, decodeLayerChoices, decodePassTimings } from '../../src/report/compile-record.js';
import { compiledLayerRows } from '../../src/runtime/compiled-layers.js';

const MODEL = 'test/fixtures/dit-digits/model.onnx';

function capture(): CliIO & { out: string[]; err: string[] } {
  const out: string[] = [];
  const err: string[] = [];
  return { out, err, cwd: process.cwd(), stdout: (t) => void out.push(t), stderr: (t) => void err.push(t) };
}

describe('the compiled layers, as the report reads them', () => {
  it('weight-dilation factors and group sizes ride in qcompile.layers; forms come off the lowered graph', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'qc-layers-'));
    const out = join(dir, 'q.onnx');
    const io = capture();
    expect(await main([MODEL, '--passes', 'weight-dilation,select-layers{bits=4,group=64,symmetric=false},quantize-weights,cleanup', '--target', 'cpu', '-o', out], io), io.err.join('')).toBe(0);
    const quant = loadModelSync(out);
    const choices = decodeLayerChoices(quant.metadataProps.get(LAYERS_METADATA_KEY))!;
    expect(choices.get('blocks.0.attn.qkv')).toMatchObject({ bits: 4, groupSize: 64, scaling: [{ pass: 'weight-dilation', min: 1, count: 128 }] });
    expect(choices.get('blocks.0.attn.out')!.scaling).toBeUndefined();

    const rows = compiledLayerRows(loadModelSync(MODEL), quant);
    const qkv = rows.find((r) => r.name === 'blocks.0.attn.qkv')!;
    expect(qkv).toMatchObject({ role: 'attn.qkv', weight: 'int4 asym group 64 (MatMulNBits)', input: 'float', bits: 4, groupSize: 64 });
    expect(qkv.scaling![0]!.max).toBeGreaterThanOrEqual(1);
    expect(rows.find((r) => r.name === 'embed.patch')).toMatchObject({ weight: 'float', input: 'float' });
    expect(rows.filter((r) => r.groupSize === 64).length).toBe(31);

    // The choices are deterministic facts: a second compile writes the same bytes (timings live in the sidecar).
    const again = join(mkdtempSync(join(tmpdir(), 'qc-layers-')), 'q.onnx'); // same name: it is written into the model
    expect(await main([MODEL, '--passes', 'weight-dilation,select-layers{bits=4,group=64,symmetric=false},quantize-weights,cleanup', '--target', 'cpu', '-o', again], capture())).toBe(0);
    expect(readFileSync(again).equals(readFileSync(out))).toBe(true);

    const timings = decodePassTimings(readFileSync(`${out}.passes.json`, 'utf8'))!;
    expect(timings.passes.map((p) => p.pass)).toEqual(['weight-dilation', 'select-layers', 'quantize-weights', 'cleanup', 'lower-cpu']);
    expect(timings.passes[0]!.statistics.channels).toBe(1536);
  }, 60_000);

  it('reads int8 per-channel weights off the portable Q/DQ form (no target)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'qc-layers-'));
    const out = join(dir, 'q.onnx');
    const io = capture();
    expect(await main([MODEL, '--passes', 'select-layers{roles=mlp.fc1,bits=8,granularity=per-channel},quantize-weights,cleanup', '-o', out], io), io.err.join('')).toBe(0);
    const rows = compiledLayerRows(loadModelSync(MODEL), loadModelSync(out));
    expect(rows.filter((r) => r.weight !== 'float').every((r) => r.role === 'mlp.fc1' && /^u?int8 sym per-channel$/.test(r.weight) && r.groupSize === undefined)).toBe(true);
  }, 60_000);

  it('eval refuses a --passes file that is not a pass-timings sidecar', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'qc-layers-'));
    const bogus = join(dir, 'bogus.json');
    writeFileSync(bogus, '{"passes": 3}');
    const io = capture();
    expect(await main(['eval', '--fp', MODEL, '--quant', MODEL, '--passes', bogus, '-o', join(dir, 'r')], io)).toBe(2);
    expect(io.err.join('')).toContain('bogus.json: not a pass-timings file');
  });
});
