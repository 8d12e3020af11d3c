/**
 * The cpu lowering's per-layer choices and its kernel prediction, checked against what ORT runs: MatMulNBits
 * takes accuracy_level 4 (int8 activations) only where the recipe quantizes the layer input to int8; the
 * kernels `cpuKernels` names are the kernels ORT's profiler reports for the lowered dit-digits models; forms
 * ORT runs slower than float are warned about (W042).
 */
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { kernelDiagnostics } from '../../src/backends/backend.js';
import { cpuBackend } from '../../src/backends/cpu.js';
import type { Model } from '../../src/ir/core.js';
import { DataType } from '../../src/ir/dtype.js';
import { Op, isOp } from '../../src/ir/ops.js';
import { encodeModel, loadModelSync } from '../../src/ir/serde.js';
import { assertValid } from '../../src/ir/verify.js';
import { DIT_DIGITS, maxAbsDiff, referenceInputs, sqnrDb } from '../passes/fixture.js';
import { OrtExecutor } from '../../src/runtime/ir-executor.js';
import { runEps, w4a16, w4a8, w4a8DynamicGroups, w8PerChannel, w8a8 } from './quantized-fixtures.js';

/** Kernel op types ORT's profiler reports for one run of `model` at optimization `all`, with their counts. */
async function profiledKernels(model: Model): Promise<Record<string, number>> {
  const dir = mkdtempSync(join(tmpdir(), 'qcompile-kernels-'));
  try {
    const session = await ort.InferenceSession.create(encodeModel(model), { graphOptimizationLevel: 'all', intraOpNumThreads: 1, enableProfiling: true, profileFilePrefix: join(dir, 'profile') });
    const feeds = Object.fromEntries(Object.entries(referenceInputs()).map(([name, t]) => [name, new ort.Tensor(t.dtype as 'float32', t.data as Float32Array, t.dims)]));
    await session.run(feeds);
    session.endProfiling();
    await session.release();
    const events = JSON.parse(readFileSync(join(dir, readdirSync(dir)[0]!), 'utf8')) as { cat: string; name: string; args?: { op_name?: string } }[];
    const counts: Record<string, number> = {};
    for (const e of events) if (e.cat === 'Node' && e.name.endsWith('_kernel_time')) counts[e.args!.op_name!] = (counts[e.args!.op_name!] ?? 0) + 1;
    return counts;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('cpu lowering choices', () => {
  it('weight-only int4: MatMulNBits at accuracy_level 0 (float activations) on all 31 layers, as ORT runs them; warned as slower than float on many rows', async () => {
    const model = await w4a16();
    const result = cpuBackend.lower(model);
    expect(result.kernels).toEqual([{ kernel: 'MatMulNBits(4b, acc 0)', layers: expect.any(Array), slowerThanFloat: expect.stringContaining('permits accuracy_level 4') }]);
    expect(result.kernels![0]!.layers).toHaveLength(31);
    expect(result.kernels![0]!.layers).toContain('blocks.0.mlp.fc1');
    expect((await profiledKernels(model)).MatMulNBits).toBe(31);
  });

  it('int4 weights with int8 static inputs: accuracy_level 4 (the recipe permits int8 activations); eps within 30 dB of the Q/DQ graph', async () => {
    const model = await w4a8();
    const exact = await runEps(model);
    const result = cpuBackend.lower(model);
    const nbits = model.graph.nodes.filter((n) => isOp(n, Op.MatMulNBits));
    expect(nbits).toHaveLength(31);
    expect(nbits.every((n) => n.intAttr('accuracy_level', -1) === 4)).toBe(true);
    expect(result.kernels!.map((k) => [k.kernel, k.layers.length])).toEqual([['MatMulNBits(4b, acc 4)', 31]]);
    expect(kernelDiagnostics('cpu', result.kernels!)).toEqual([]);
    // The int8 per-block requantization of the already int8 input costs little: far above the W4A8 error itself.
    expect(sqnrDb(exact, await runEps(model))).toBeGreaterThan(30);
    // An explicit accuracy level still applies to every layer.
    const forced = await w4a8();
    cpuBackend.lower(forced, { accuracyLevel: 0 });
    expect(forced.graph.nodes.filter((n) => isOp(n, Op.MatMulNBits)).every((n) => n.intAttr('accuracy_level', -1) === 0)).toBe(true);
  });

  it('W4A8 dynamic sym per-token-group(size: weight), adaLN\'s 2-D [B, C] input included: one MatMulNBits at accuracy_level 4 per layer, the in-graph quantizer left to the kernel; within a rounding tie of the Q/DQ graph', async () => {
    const model = await w4a8DynamicGroups();
    const quantizers = model.graph.nodes.filter((n) => isOp(n, Op.Round)).length;
    expect(quantizers).toBeGreaterThan(0);
    const exact = await runEps(model);
    const result = cpuBackend.lower(model);
    assertValid(model);
    const nbits = model.graph.nodes.filter((n) => isOp(n, Op.MatMulNBits));
    expect(nbits).toHaveLength(31);
    expect(nbits.every((n) => n.intAttr('accuracy_level', -1) === 4)).toBe(true);
    expect(result.statistics.int8_group_inputs_in_kernel).toBe(31);
    // Every quantizer fed only MatMulNBits layers: none is left in the graph.
    expect(model.graph.nodes.filter((n) => isOp(n, Op.Round) || isOp(n, Op.ReduceMax))).toEqual([]);
    expect(result.kernels!.map((k) => [k.kernel, k.layers.length])).toEqual([['MatMulNBits(4b, acc 4)', 31]]);
    const lowered = await runEps(model, new OrtExecutor({ optimization: 'all' }));
    const float = await runEps(loadModelSync(`${DIT_DIGITS}/model.onnx`));
    const peak = exact.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    console.log(`W4A8 dynamic groups: lowered vs Q/DQ graph max |Δeps| ${maxAbsDiff(exact, lowered).toExponential(2)} (max |eps| ${peak.toFixed(2)}), ${sqnrDb(exact, lowered).toFixed(1)} dB; Q/DQ graph vs FP ${sqnrDb(float, exact).toFixed(1)} dB`);
    // Rounding ties flip a code now and then; that costs far less than the W4A8 quantization itself.
    expect(sqnrDb(exact, lowered)).toBeGreaterThan(sqnrDb(float, exact) + 15);
    expect(maxAbsDiff(exact, lowered)).toBeLessThan(0.02 * peak);
    const profiled = await profiledKernels(model);
    expect(profiled.MatMulNBits).toBe(31);
    expect(profiled.Round ?? 0).toBe(0);
  });

  it('a dynamic int8 group input the kernel does not compute (other group size, asymmetric, a forced accuracy level) keeps its in-graph quantizer', async () => {
    for (const [model, options] of [[await w4a8DynamicGroups(64), {}], [await w4a8DynamicGroups('weight', false), {}], [await w4a8DynamicGroups(), { accuracyLevel: 0 }]] as const) {
      const rounds = model.graph.nodes.filter((n) => isOp(n, Op.Round)).length;
      const result = cpuBackend.lower(model, options);
      expect(result.statistics.int8_group_inputs_in_kernel).toBeUndefined();
      expect(model.graph.nodes.filter((n) => isOp(n, Op.Round))).toHaveLength(rounds);
      expect(model.graph.nodes.filter((n) => isOp(n, Op.MatMulNBits)).every((n) => n.intAttr('accuracy_level', -1) === 0)).toBe(true);
    }
  });

  it('W8A8 static per-channel: the 7 float-bias Gemms become MatMulIntegerToFloat + Add; MatMulIntegerToFloat predicted and run by ORT for all 31 layers, exact; the full-range int8 weights warned as saturating without VNNI (W043)', async () => {
    const model = await w8a8(false);
    const exact = await runEps(model);
    const result = cpuBackend.lower(model);
    assertValid(model);
    expect(result.statistics.gemm_as_matmul_integer).toBe(7);
    expect(result.kernels!.map((k) => [k.kernel, k.layers.length])).toEqual([['MatMulIntegerToFloat', 31]]);
    expect(result.kernels![0]!.layers).toContain('blocks.0.adaln');
    const warnings = kernelDiagnostics('cpu', result.kernels!);
    expect(warnings.map((w) => [w.code, w.message])).toEqual([['W043', 'target cpu runs 31 layers as MatMulIntegerToFloat, inexact on some CPUs']]);
    expect(warnings[0]!.notes![0]).toMatch(/without VNNI .* `weight int7` .* `weight uint8` .*: blocks\.0\./);
    expect(maxAbsDiff(exact, await runEps(model))).toBeLessThan(1e-5); // the Q/DQ Gemm's math, int32 accumulation (exact on every CPU: EXACT_INT8_SESSION_CONFIG)
    const profiled = await profiledKernels(model);
    expect(profiled.MatMulIntegerToFloat).toBe(31);
    expect(profiled.DequantizeLinear ?? 0).toBe(0); // every Q/DQ pair fused
  });

  it('W8A8 symmetric (int8 inputs, `input int8 sym`): the Gemms read the codes as uint8 (+128, zero point 128: x86 ORT runs an int8 A in its portable kernel), within rounding ties of the Q/DQ graph', async () => {
    const model = await w8a8(true);
    const exact = await runEps(model);
    const result = cpuBackend.lower(model);
    assertValid(model);
    const integer = model.graph.nodes.filter((n) => isOp(n, Op.MatMulIntegerToFloat));
    expect(integer).toHaveLength(7);
    for (const node of integer) {
      expect(node.input(0).producer!.opType).toBe(Op.QuantizeLinear);
      expect(node.input(0).type?.elemType).toBe(DataType.UINT8);
      expect([...node.input(4).initializer!.bytes()]).toEqual([128]);
    }
    // Every int8 QuantizeLinear left feeds the Q/DQ MatMuls; none is left unread.
    for (const q of model.graph.nodes.filter((n) => isOp(n, Op.QuantizeLinear))) expect(q.outputs[0]!.uses.length).toBeGreaterThan(0);
    expect(result.kernels!.map((k) => [k.kernel, k.layers.length])).toEqual([['MatMulIntegerToFloat', 31]]);
    // Each Gemm is the float Gemm to ~1e-7 (int32 accumulation), which moves a later activation code across a
    // rounding tie here and there: the lowered eps stays far closer to the Q/DQ graph's than that is to FP's.
    const lowered = await runEps(model);
    const float = await runEps(loadModelSync(`${DIT_DIGITS}/model.onnx`));
    console.log(`W8A8 symmetric: lowered vs Q/DQ graph ${sqnrDb(exact, lowered).toFixed(1)} dB (max |Δeps| ${maxAbsDiff(exact, lowered).toExponential(2)}); Q/DQ graph vs FP ${sqnrDb(float, exact).toFixed(1)} dB`);
    expect(sqnrDb(exact, lowered)).toBeGreaterThan(sqnrDb(float, exact) + 15);
    expect((await profiledKernels(model)).MatMulIntegerToFloat).toBe(31);
  });

  it('W7A8 (`weight int7`): codes within ±64, the same MatMulIntegerToFloat kernels without a saturation warning', async () => {
    const model = await w8a8(false, 7);
    const result = cpuBackend.lower(model);
    expect(result.kernels).toEqual([{ kernel: 'MatMulIntegerToFloat', layers: expect.any(Array) }]);
    expect(result.kernels![0]!.layers).toHaveLength(31);
    expect(kernelDiagnostics('cpu', result.kernels!)).toEqual([]);
  });

  it('int8 per-channel weight-only: ORT fuses the MatMuls into MatMulNBits itself; the Gemms stay DequantizeLinear + float Gemm, warned as slower than float (W042)', async () => {
    const model = await w8PerChannel();
    const result = cpuBackend.lower(model);
    expect(result.kernels!.map((k) => [k.kernel, k.layers.length])).toEqual([
      ['DequantizeLinear int8 + Gemm (float)', 7],
      ['MatMulNBits(8b, fused by ORT at session.qdq_matmulnbits_accuracy_level, default 4: int8 activations)', 24],
    ]);
    const warnings = kernelDiagnostics('cpu', result.kernels!);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ severity: 'warning', code: 'W042', message: 'target cpu runs 7 layers as DequantizeLinear int8 + Gemm (float), slower than float' });
    expect(warnings[0]!.notes![0]).toMatch(/^ORT dequantizes the weights on every run before the float kernel; with the session option session\.disable_quant_qdq=1 ORT folds .* at session load instead: .*: blocks\.0\.adaln, /);
    const profiled = await profiledKernels(model);
    expect(profiled.MatMulNBits).toBe(24);
    expect(profiled.DequantizeLinear).toBe(7);
  });
});
