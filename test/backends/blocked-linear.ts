/** A one-layer blocked-weight linear (DequantizeLinear → MatMul+Add or Gemm) for MatMulNBits layout tests. */
import { Graph, Model } from '../../src/ir/core.js';
import { DataType } from '../../src/ir/dtype.js';
import { Op } from '../../src/ir/ops.js';
import { Tensor, packInt4 } from '../../src/ir/tensor.js';
import { seededRandom } from '../../src/random.js';

/** Weight code types of a blocked DequantizeLinear. */
export type Codes = DataType.UINT4 | DataType.INT4 | DataType.UINT8 | DataType.INT8;

/** Raw bytes of `values` as `codes` (int4 packed two per byte, int8 two's complement). */
function codeBytes(codes: Codes, values: number[]): Uint8Array {
  return codes === DataType.INT4 || codes === DataType.UINT4 ? packInt4(values) : Uint8Array.from(values, (v) => v & 0xff);
}

/** Shape and contents of a `blockedLinear` graph. */
export interface BlockedLinearSpec {
  kind: 'matmul' | 'gemm';
  codes: Codes;
  zeroPoints: boolean;
  M: number;
  K: number;
  N: number;
  block: number;
  seed: number;
}

/** A blocked 4/8-bit DequantizeLinear → MatMul+Add or Gemm(transB) graph with random codes, scales and zero points (input `a` [M, K], output `y` [M, N]). */
export function blockedLinear({ kind, codes, zeroPoints, M, K, N, block, seed }: BlockedLinearSpec): Model {
  const next = seededRandom(seed);
  const graph = new Graph('linear');
  const a = graph.addInput('a', { elemType: DataType.FLOAT, shape: [M, K] });
  const transposed = kind === 'gemm';
  const nb = Math.ceil(K / block);
  const wDims = transposed ? [N, K] : [K, N];
  const sDims = transposed ? [N, nb] : [nb, N];
  const levels = codes === DataType.INT4 || codes === DataType.UINT4 ? 16 : 256;
  const lo = codes === DataType.INT4 || codes === DataType.INT8 ? -levels / 2 : 0;
  const q = Array.from({ length: K * N }, () => lo + Math.floor(next() * levels));
  const w = graph.addInitializer('w_quantized', Tensor.fromBytes(codes, wDims, codeBytes(codes, q)));
  const s = graph.addInitializer('w_scale', Tensor.fromFloat32(sDims, Float32Array.from({ length: nb * N }, () => 0.01 + 0.05 * next())));
  const zp = zeroPoints ? graph.addInitializer('w_zero_point', Tensor.fromBytes(codes, sDims, codeBytes(codes, Array.from({ length: nb * N }, () => lo + Math.floor(next() * levels))))) : undefined;
  const dq = graph.addNode({ opType: Op.DequantizeLinear, name: 'fc/weight_dequantize', inputs: [w, s, zp], outputs: ['w'], attributes: { axis: { kind: 'int', value: transposed ? 1 : 0 }, block_size: { kind: 'int', value: block } } });
  const bias = graph.addInitializer('bias', Tensor.fromFloat32([N], Float32Array.from({ length: N }, () => next() - 0.5)));
  let y;
  if (transposed) {
    y = graph.addNode({ opType: Op.Gemm, name: 'fc', inputs: [a, dq.outputs[0], bias], outputs: ['y'], attributes: { transB: { kind: 'int', value: 1 } } }).outputs[0]!;
  } else {
    const mm = graph.addNode({ opType: Op.MatMul, name: 'fc', inputs: [a, dq.outputs[0]], outputs: ['mm'] }).outputs[0]!;
    y = graph.addNode({ opType: Op.Add, name: 'fc_bias', inputs: [mm, bias], outputs: ['y'] }).outputs[0]!;
  }
  y.type = { elemType: DataType.FLOAT, shape: [M, N] };
  graph.outputs.push(y);
  const model = new Model(graph);
  model.irVersion = 10;
  model.opsetImports.set('', 21);
  return model;
}
