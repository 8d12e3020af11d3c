import { describe, expect, it } from 'vitest';
import { BackendError } from '../../src/backends/backend.js';
import { backends } from '../../src/backends/registry.js';
import { checkTensorRtPlacement } from '../../src/backends/tensorrt-placement.js';
import type { Model } from '../../src/ir/core.js';
import { DataType } from '../../src/ir/dtype.js';
import { MS_DOMAIN, Op, isOp } from '../../src/ir/ops.js';
import { assertValid } from '../../src/ir/verify.js';
import { OrtExecutor } from '../../src/runtime/ir-executor.js';
import { maxAbsDiff, sqnrDb } from '../passes/fixture.js';
import { runEps, w4a16, w8a8, w8g128 } from './quantized-fixtures.js';

const count = (model: Model, op: string): number => model.graph.nodes.filter((n) => n.opType === op).length;

describe('rtn-w4a16-g128 on dit-digits', () => {
  const reference = w4a16().then(runEps);

  it.each(['cpu', 'cuda', 'webgpu'] as const)('%s: every int4 layer becomes MatMulNBits with its bias folded; eps within 1e-4 of the DQ graph', async (target) => {
    const model = await w4a16();
    const adds = count(model, Op.Add);
    const result = backends[target].lower(model);
    assertValid(model);
    expect(result.fallbacks).toEqual([]);
    expect(result.statistics.matmul_nbits).toBe(31);
    const nbits = model.graph.nodes.filter((n) => isOp(n, Op.MatMulNBits));
    expect(nbits).toHaveLength(31);
    expect(nbits.every((n) => n.domain === MS_DOMAIN && n.intAttr('bits', 0) === 4 && n.intAttr('block_size', 0) === 128)).toBe(true);
    expect(count(model, Op.DequantizeLinear)).toBe(0);
    // MatMul + Add(bias) pairs fold into MatMulNBits' bias input (ORT 1.30 accepts input 5).
    expect(nbits.filter((n) => n.inputs[5] !== undefined).length).toBeGreaterThan(20);
    expect(count(model, Op.Add)).toBeLessThan(adds);
    // Symmetric int4 → uint4 with zero point 8 everywhere: the zero-point input is omitted.
    expect(nbits.every((n) => n.inputs[3] === undefined)).toBe(true);
    const lowered = await runEps(model);
    expect(maxAbsDiff(await reference, lowered)).toBeLessThan(1e-4);
  });

  it('tensorrt keeps the blocked int4 DequantizeLinear (opset 21) and passes the placement check', async () => {
    const model = await w4a16();
    backends.tensorrt.lower(model);
    expect(count(model, Op.MatMulNBits)).toBe(0);
    const dqs = model.graph.nodes.filter((n) => isOp(n, Op.DequantizeLinear));
    expect(dqs.every((n) => n.input(0).initializer?.dtype === DataType.INT4 && n.intAttr('block_size', 0) === 128)).toBe(true);
    expect(model.opset).toBeGreaterThanOrEqual(21);
    expect(checkTensorRtPlacement(model)).toEqual([]);
    expect(maxAbsDiff(await reference, await runEps(model))).toBe(0);
  });
});

describe('int8 groups of 128 on dit-digits', () => {
  it('webgpu: every layer becomes MatMulNBits bits 8 with uint8 zero points [N·nb]; eps within 1e-4 of the DQ graph', async () => {
    const model = await w8g128();
    const reference = await runEps(model);
    const result = backends.webgpu.lower(model);
    assertValid(model);
    expect(result.statistics.matmul_nbits).toBe(31);
    const nbits = model.graph.nodes.filter((n) => isOp(n, Op.MatMulNBits));
    expect(nbits.every((n) => n.intAttr('bits', 0) === 8 && n.intAttr('block_size', 0) === 128)).toBe(true);
    for (const n of nbits) {
      const [N, blocks, bytes] = n.input(1).initializer!.dims;
      expect(bytes).toBe(128);
      expect(n.inputs[3]?.initializer?.dims).toEqual([N! * blocks!]); // asymmetric: one zero-point byte per block
    }
    expect(count(model, Op.DequantizeLinear)).toBe(0);
    expect(maxAbsDiff(reference, await runEps(model))).toBeLessThan(1e-4);
  });

  it('cpu: MatMulNBits bits 8 at accuracy_level 0 too (left blocked, ORT would fuse them at accuracy 4); eps within 1e-4 of the DQ graph', async () => {
    const model = await w8g128();
    const reference = await runEps(model);
    backends.cpu.lower(model);
    const nbits = model.graph.nodes.filter((n) => isOp(n, Op.MatMulNBits));
    expect(nbits).toHaveLength(31);
    expect(nbits.every((n) => n.intAttr('bits', 0) === 8 && n.intAttr('accuracy_level', -1) === 0)).toBe(true);
    expect(maxAbsDiff(reference, await runEps(model))).toBeLessThan(1e-4);
  });
});

describe('ptq4dm-w8a8 style on dit-digits', () => {
  it('cpu keeps int8 Q/DQ for ORT QDQ fusion; fused (optimization all) eps SQNR vs the exact Q/DQ graph above 50 dB', async () => {
    const model = await w8a8(false);
    const exact = await runEps(model);
    const result = backends.cpu.lower(model);
    // One pair per distinct activation (attn.qkv reads one); the adaLN Gemms' shared input pair is read by
    // MatMulIntegerToFloat directly (gemm-as-matmul.ts), so it is no longer a Q/DQ pair.
    expect(result.statistics['activation_int8_static_kept']).toBe(24);
    expect(result.statistics.gemm_as_matmul_integer).toBe(7);
    const fused = await runEps(model, new OrtExecutor({ optimization: 'all' }));
    expect(sqnrDb(exact, fused)).toBeGreaterThan(50);
  });

  it('webgpu: activation Q/DQ becomes Div/Floor/Where/Clip/Mul (no QuantizeLinear or Round: no WebGPU kernels), identical eps', async () => {
    const model = await w8a8(false);
    const exact = await runEps(model);
    const result = backends.webgpu.lower(model);
    assertValid(model);
    expect(result.statistics.activation_fake_quant).toBe(25);
    expect(count(model, Op.QuantizeLinear)).toBe(0);
    expect(count(model, Op.Round)).toBe(0);
    expect(count(model, Op.Floor)).toBe(50); // half-to-even: Floor(v + 0.5) and the parity of the result
    expect(count(model, Op.Where)).toBe(25);
    expect(count(model, Op.DequantizeLinear)).toBe(31); // int8 weights: DQ has a WebGPU kernel
    expect(maxAbsDiff(exact, await runEps(model))).toBeLessThan(1e-5);
  });

  it('tensorrt: symmetric W8A8 passes placement unchanged; asymmetric is refused naming each layer', async () => {
    const sym = await w8a8(true);
    const exact = await runEps(sym);
    backends.tensorrt.lower(sym);
    expect(checkTensorRtPlacement(sym)).toEqual([]);
    expect(maxAbsDiff(exact, await runEps(sym))).toBe(0);

    const asym = await w8a8(false);
    let error: unknown;
    try {
      backends.tensorrt.lower(asym);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(BackendError);
    const issues = (error as BackendError).issues;
    expect(issues.some((i) => i.layer === 'blocks.0.attn.qkv' && i.message.startsWith('activation uint8 asym static on MatMul is not supported; --allow-requantize'))).toBe(true);
    expect((error as Error).message).toContain('blocks.0.mlp.fc1: weight int8 asym per-channel on MatMul is not supported; --allow-requantize');
  });

  it('allowFallback dequantizes exactly the refused layers to float and lists them', async () => {
    const model = await w8a8(false);
    const result = backends.tensorrt.lower(model, { allowFallback: true });
    expect(result.fallbacks).toHaveLength(31 + 25); // every weight and every distinct activation pair
    expect(result.statistics.fallbacks).toBe(56);
    expect(count(model, Op.QuantizeLinear) + count(model, Op.DequantizeLinear)).toBe(0);
  });
});
