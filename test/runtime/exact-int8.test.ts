/**
 * Every session qcompile measures with computes int8 products exactly, on every x86 CPU: ORT's uint8×int8 kernels
 * add pairs of products in saturating int16 on CPUs without VNNI (AVX2: 64 activation codes 255 against weight
 * codes 127 gave 1,048,544, not 2,072,640), so OrtExecutor runs such weights as uint8 (widenSaturatingWeights,
 * on a clone). The graphs are the form the cpu lowering keeps (uint8 input Q/DQ, int8 per-channel weight DQ →
 * MatMul, fused by ORT into MatMulIntegerToFloat) and the form it writes for a Gemm (MatMulIntegerToFloat
 * itself). On a VNNI CPU ORT's default kernels are exact already; the ORT runs here fail on an AVX2 one without
 * the widening.
 */
import { describe, expect, it } from 'vitest';
import { Graph, Model, type Value } from '../../src/ir/core.js';
import { DataType } from '../../src/ir/dtype.js';
import { Op } from '../../src/ir/ops.js';
import { Tensor } from '../../src/ir/tensor.js';
import { hasCodeBeyond64, hasSaturatingKernels, widenSaturatingWeights } from '../../src/quant/integer-kernels.js';
import { OrtExecutor } from '../../src/runtime/ir-executor.js';

const K = 64, N = 4;
/** Input codes 255 (scale 1, zero point 0) against weight codes 127: each output is K·255·127 exactly. */
const EXACT = K * 255 * 127;

/** The model of `form` with every weight code `weightCode` (127: the saturating case). */
function saturatingModel(form: 'qdq' | 'integer-to-float', weightCode = 127): Model {
  const g = new Graph('saturating');
  const x = g.addInput('x', { elemType: DataType.FLOAT, shape: [1, K] });
  const one = g.addInitializer('one', Tensor.fromFloat32([], Float32Array.of(1)));
  const zero = g.addInitializer('zero', Tensor.fromBytes(DataType.UINT8, [], Uint8Array.of(0)));
  const codes = g.addInitializer('w_codes', Tensor.fromBytes(DataType.INT8, [K, N], new Uint8Array(K * N).fill(weightCode & 255)));
  const scales = g.addInitializer('w_scales', Tensor.fromFloat32([N], new Float32Array(N).fill(1)));
  const xq = g.addNode({ opType: Op.QuantizeLinear, inputs: [x, one, zero], outputs: ['xq'] }).outputs[0]!;
  let y: Value;
  if (form === 'qdq') {
    const xd = g.addNode({ opType: Op.DequantizeLinear, inputs: [xq, one, zero], outputs: ['xd'] }).outputs[0]!;
    const w = g.addNode({ opType: Op.DequantizeLinear, inputs: [codes, scales], outputs: ['w'], attributes: { axis: { kind: 'int', value: 1 } } }).outputs[0]!;
    y = g.addNode({ opType: Op.MatMul, inputs: [xd, w], outputs: ['y'] }).outputs[0]!;
  } else {
    y = g.addNode({ opType: Op.MatMulIntegerToFloat, domain: 'com.microsoft', inputs: [xq, codes, one, scales, zero], outputs: ['y'] }).outputs[0]!;
  }
  y.type = { elemType: DataType.FLOAT, shape: [1, N] };
  g.outputs.push(y);
  const model = new Model(g);
  model.opsetImports.set('', 21);
  model.requireOpset('com.microsoft', 1);
  return model;
}

const feeds = { x: { dtype: 'float32' as const, dims: [1, K], data: new Float32Array(K).fill(255) } };

describe('exact int8 products in every measuring session', () => {
  for (const form of ['qdq', 'integer-to-float'] as const) {
    it(`${form}: OrtExecutor (optimization all) gives K·255·127 = ${EXACT} on every output, the caller's model untouched`, async () => {
      const model = saturatingModel(form);
      const prepared = await new OrtExecutor({ optimization: 'all' }).prepare(model, ['y']);
      const y = Array.from((await prepared.run(feeds)).y!.data as Float32Array);
      await prepared.release();
      expect(y).toEqual(new Array(N).fill(EXACT));
      expect(model.graph.initializers.get('w_codes')!.initializer!.dtype).toBe(DataType.INT8);
      expect(model.graph.initializers.has('w_codes_uint8')).toBe(false);
    });
  }

  it('widenSaturatingWeights: the int8 codes become uint8 + 128 with zero point 128 per channel; codes within ±64 are left int8', () => {
    const model = saturatingModel('qdq');
    expect(hasSaturatingKernels(model)).toBe(true);
    expect(widenSaturatingWeights(model)).toBe(1);
    const dq = model.graph.nodes.find((n) => n.opType === Op.DequantizeLinear && n.input(0).isConstant)!;
    expect(dq.input(0).initializer!.dtype).toBe(DataType.UINT8);
    expect(new Set(dq.input(0).initializer!.bytes())).toEqual(new Set([255]));
    expect([...dq.input(2).initializer!.bytes()]).toEqual(new Array(N).fill(128));
    expect(hasSaturatingKernels(model)).toBe(false);
    expect(model.graph.initializers.has('w_codes')).toBe(false); // no unused initializer left for ORT to warn about

    // Codes within ±64 can never saturate (2·255·64 = 32,640): int7 weights are left as they are.
    const sevenBit = saturatingModel('qdq', -64);
    expect(hasSaturatingKernels(sevenBit)).toBe(false);
  });
});

describe('hasCodeBeyond64', () => {
  it('finds one int8 code beyond ±64 at any byte of a word and in an unaligned head or tail; ±64 itself is within', () => {
    const within = [0, 1, 63, 64, -1, -63, -64];
    const beyond = [65, 100, 127, -65, -100, -128];
    for (const offset of [0, 1, 2, 3]) {
      for (const length of [1, 5, 11, 64]) {
        const buffer = new Uint8Array(offset + length + 3);
        const codes = buffer.subarray(offset, offset + length);
        codes.set(Array.from({ length }, (_, i) => within[i % within.length]! & 255));
        expect(hasCodeBeyond64(codes)).toBe(false);
        for (let at = 0; at < length; at++) {
          for (const code of beyond) {
            const saved = codes[at]!;
            codes[at] = code & 255;
            expect(hasCodeBeyond64(codes), `code ${code} at ${at} of ${length}, offset ${offset}`).toBe(true);
            codes[at] = saved;
          }
        }
        buffer.fill(100, 0, offset); // bytes outside the view are not read
        buffer.fill(100, offset + length);
        expect(hasCodeBeyond64(codes)).toBe(false);
      }
    }
  });
});
