import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { lowerToMatMulNBits, matMulNBitsObstacle } from '../../src/backends/matmul-nbits.js';
import { findQuantizedWeights } from '../../src/quant/quantized-forms.js';
import { backends } from '../../src/backends/registry.js';
import type { Model } from '../../src/ir/core.js';
import { DataType } from '../../src/ir/dtype.js';
import { Op, isOp } from '../../src/ir/ops.js';
import { encodeModel } from '../../src/ir/serde.js';
import { assertValid } from '../../src/ir/verify.js';
import { maxAbsDiff } from '../passes/fixture.js';
import { seededRandom } from '../../src/random.js';
import { blockedLinear as blockedLinearOf, type Codes } from './blocked-linear.js';

const M = 5;
const K = 40; // not a multiple of the block: the last block is padded with its zero point
const N = 24;
const BLOCK = 16;

function blockedLinear(kind: 'matmul' | 'gemm', codes: Codes, zeroPoints: boolean): Model {
  return blockedLinearOf({ kind, codes, zeroPoints, M, K, N, block: BLOCK, seed: kind === 'gemm' ? 7 : 3 });
}

async function run(model: Model, a: Float32Array): Promise<Float32Array> {
  const session = await ort.InferenceSession.create(encodeModel(model), { graphOptimizationLevel: 'basic' });
  const out = await session.run({ a: new ort.Tensor('float32', a, [M, K]) });
  await session.release();
  return out.y!.data as Float32Array;
}

describe('MatMulNBits lowering layout (ORT CPU)', () => {
  const next = seededRandom(11);
  const a = Float32Array.from({ length: M * K }, () => next() * 2 - 1);
  it.each([
    { kind: 'matmul', codes: DataType.UINT4, zeroPoints: true, label: 'MatMul uint4 with zero points' },
    { kind: 'matmul', codes: DataType.INT4, zeroPoints: true, label: 'MatMul int4 with zero points (shifted by 8)' },
    { kind: 'gemm', codes: DataType.INT4, zeroPoints: false, label: 'Gemm transB int4 symmetric (zero points omitted)' },
    { kind: 'gemm', codes: DataType.UINT4, zeroPoints: false, label: 'Gemm transB uint4 without zero points (explicit 0s)' },
  ] as const)('$label: equals the DequantizeLinear graph to 1e-5', async ({ kind, codes, zeroPoints }) => {
    const model = blockedLinear(kind, codes, zeroPoints);
    const reference = await run(model, a);
    const result = backends.cpu.lower(model);
    assertValid(model);
    expect(result.statistics.matmul_nbits).toBe(1);
    const [node, ...rest] = model.graph.nodes;
    expect(rest).toEqual([]); // bias folded: one node
    expect(isOp(node!, Op.MatMulNBits)).toBe(true);
    expect(node!.input(1).initializer!.dims).toEqual([N, Math.ceil(K / BLOCK), BLOCK / 2]);
    expect(node!.inputs[3] !== undefined).toBe(!(codes === DataType.INT4 && !zeroPoints));
    expect(maxAbsDiff(reference, await run(model, a))).toBeLessThan(1e-5);
  });
});

describe('MatMulNBits bits 8 layout (ORT CPU)', () => {
  const next = seededRandom(13);
  const a = Float32Array.from({ length: M * K }, () => next() * 2 - 1);
  it.each([
    { kind: 'matmul', codes: DataType.UINT8, zeroPoints: true, label: 'MatMul uint8 with zero points' },
    { kind: 'matmul', codes: DataType.INT8, zeroPoints: true, label: 'MatMul int8 with zero points (shifted by 128)' },
    { kind: 'gemm', codes: DataType.INT8, zeroPoints: false, label: 'Gemm transB int8 symmetric (zero points omitted: default 128)' },
    { kind: 'gemm', codes: DataType.UINT8, zeroPoints: false, label: 'Gemm transB uint8 without zero points (explicit 0s)' },
  ] as const)('$label: B [N, nb, bs] one byte per weight, zero points [N·nb]; equals the DequantizeLinear graph to 1e-5', async ({ kind, codes, zeroPoints }) => {
    const model = blockedLinear(kind, codes, zeroPoints);
    const reference = await run(model, a);
    const [weight] = findQuantizedWeights(model);
    expect(matMulNBitsObstacle(weight!)).toBeUndefined();
    const node = lowerToMatMulNBits(weight!, { accuracyLevel: 0, foldBias: true });
    model.requireOpset('com.microsoft', 1);
    model.graph.removeDeadCode();
    assertValid(model);
    expect(model.graph.nodes).toEqual([node]);
    expect(node.intAttr('bits', 0)).toBe(8);
    const nb = Math.ceil(K / BLOCK);
    expect(node.input(1).initializer!.dims).toEqual([N, nb, BLOCK]);
    expect(node.inputs[3]?.initializer?.dims ?? null).toEqual(codes === DataType.INT8 && !zeroPoints ? null : [N * nb]);
    const error = maxAbsDiff(reference, await run(model, a));
    console.log(`MatMulNBits bits 8 ${kind} ${codes === DataType.INT8 ? 'int8' : 'uint8'} zp=${zeroPoints}: max |Δ| vs DequantizeLinear ${error.toExponential(2)}`);
    expect(error).toBeLessThan(1e-5);
  });
});

describe('MatMulNBits 4-bit B bytes', () => {
  /** B [N, nb·bs/2] element by element from the stored codes: row n holds W[:, n] + offset along K, padded with the row's last zero point. */
  function referenceB(model: Model, kind: 'matmul' | 'gemm', k: number, n: number): Uint8Array {
    const dq = model.graph.nodes.find((node) => isOp(node, Op.DequantizeLinear))!;
    const codes = dq.input(0).initializer!;
    const q = codes.toNumbers();
    const offset = codes.dtype === DataType.INT4 ? 8 : 0;
    const nb = Math.ceil(k / BLOCK);
    const zp = dq.inputs[2]?.initializer?.toNumbers();
    const rowBytes = (nb * BLOCK) / 2;
    const out = new Uint8Array(n * rowBytes);
    for (let col = 0; col < n; col++) {
      const pad = (zp ? zp[kind === 'gemm' ? col * nb + nb - 1 : (nb - 1) * n + col]! : 0) + offset;
      for (let row = 0; row < nb * BLOCK; row++) {
        const code = row < k ? q[kind === 'gemm' ? col * k + row : row * n + col]! + offset : pad;
        out[col * rowBytes + (row >> 1)]! |= (code & 0x0f) << ((row & 1) * 4);
      }
    }
    return out;
  }

  it.each([
    { kind: 'matmul', codes: DataType.INT4, k: K, n: N, label: 'MatMul int4, even K and N (SIMD kernel: its byte tail only)' },
    { kind: 'matmul', codes: DataType.UINT4, k: K, n: N, label: 'MatMul uint4, even K and N (SIMD kernel: its byte tail only)' },
    { kind: 'matmul', codes: DataType.INT4, k: 72, n: 88, label: 'MatMul int4, even K and N (SIMD kernel: 16 bytes at a time and a tail)' },
    { kind: 'gemm', codes: DataType.INT4, k: K, n: N, label: 'Gemm transB int4, even K (SIMD row copy: its tail only)' },
    { kind: 'gemm', codes: DataType.UINT4, k: 104, n: 6, label: 'Gemm transB uint4, even K (SIMD row copy, 16 bytes at a time and a tail)' },
    { kind: 'matmul', codes: DataType.INT4, k: 39, n: 23, label: 'MatMul int4, odd K and N (nibble loop)' },
    { kind: 'matmul', codes: DataType.UINT4, k: K, n: 23, label: 'MatMul uint4, odd N (nibble loop)' },
    { kind: 'gemm', codes: DataType.UINT4, k: 39, n: N, label: 'Gemm transB uint4, odd K (nibble loop)' },
  ] as const)('$label: equal the element-by-element layout', ({ kind, codes, k, n }) => {
    const model = blockedLinearOf({ kind, codes, zeroPoints: true, M, K: k, N: n, block: BLOCK, seed: 5 });
    const expected = referenceB(model, kind, k, n);
    const [weight] = findQuantizedWeights(model);
    const node = lowerToMatMulNBits(weight!, { accuracyLevel: 0, foldBias: true });
    expect(node.input(1).initializer!.bytes()).toEqual(expected);
  });
});
