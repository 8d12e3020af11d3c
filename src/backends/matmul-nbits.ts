/**
 * Rewrites a weight-only 4- or 8-bit blocked layer — `DequantizeLinear(int4/uint4/int8/uint8 codes, scale,
 * zp?, block_size)` feeding MatMul or Gemm — into ONNX Runtime's `com.microsoft.MatMulNBits`, the form its
 * CPU, CUDA and WebGPU EPs run as a low-bit kernel. Layout (PLATFORM.md): B uint8 [N, nb, bs·bits/8]; for
 * bits 4 element k=2j sits in the low nibble of byte j, for bits 8 one byte per element; a partial last block
 * (K not a multiple of block_size) is padded with its zero point; scales [N·nb] (n·nb+b); zero_points uint8 [N·ceil(nb·bits/8)] packed per row like B (omitted
 * when all equal the default 2^(bits−1)); W = (q − zp)·scale. Signed codes become unsigned by adding
 * 2^(bits−1) to both q and zp, which leaves q − zp unchanged, so the lowering is exact.
 */
import type { Node, Value } from '../ir/core.js';
import { DataType } from '../ir/dtype.js';
import { MS_DOMAIN, Op, isOp } from '../ir/ops.js';
import { Tensor } from '../ir/tensor.js';
import { packNibblesByChannel } from '../quant/kernels/weight-kernels.js';
import type { QuantizedWeight } from '../quant/quantized-forms.js';

/** Why a layer cannot become MatMulNBits, or undefined when it can. */
export function matMulNBitsObstacle(layer: QuantizedWeight): string | undefined {
  const dq = layer.dq;
  const codes = dq.input(0).initializer;
  if (!codes || nbitsOf(codes.dtype) === undefined) return 'MatMulNBits needs constant int4/uint4/int8/uint8 codes';
  const blockSize = dq.intAttr('block_size', 0);
  if (blockSize < 16 || blockSize > 256 || (blockSize & (blockSize - 1)) !== 0) return `block_size ${blockSize} is not a power of 2 in 16..256`;
  if (!dq.input(1).isConstant || (dq.inputs[2] && !dq.inputs[2].isConstant)) return 'scales and zero points must be constants';
  if (codes.dims.length !== 2) return 'the weight must be 2-D';
  const node = layer.node;
  if (isOp(node, Op.MatMul)) return dq.intAttr('axis', 1) === 0 ? undefined : 'MatMul weight blocks must run along K (axis 0)';
  if (isOp(node, Op.Gemm)) {
    if (node.intAttr('transA', 0) !== 0 || node.floatAttr('alpha', 1) !== 1 || node.floatAttr('beta', 1) !== 1) return 'Gemm with transA/alpha/beta is not a plain linear';
    const kAxis = node.intAttr('transB', 0) === 1 ? 1 : 0;
    const axis = dq.intAttr('axis', 1);
    return axis === kAxis || axis === kAxis - 2 ? undefined : 'Gemm weight blocks must run along K';
  }
  return `${node.opType} has no MatMulNBits form`;
}

/** The MatMulNBits `bits` for a code type (undefined: no MatMulNBits form). */
function nbitsOf(dtype: DataType): 4 | 8 | undefined {
  if (dtype === DataType.INT4 || dtype === DataType.UINT4) return 4;
  if (dtype === DataType.INT8 || dtype === DataType.UINT8) return 8;
  return undefined;
}

/** Packed MatMulNBits initializers for W (math layout [K, N]) from blocked DQ data. */
interface Packed {
  b: Tensor;
  scales: Tensor;
  zeroPoints: Tensor | undefined;
  bits: 4 | 8;
}

/** Packs codes/scales/zero points read in [K,N] (transposed=false) or [N,K] (transposed=true) storage. */
function pack(codes: Tensor, scales: Tensor, zeroPoints: Tensor | undefined, blockSize: number, transposed: boolean): Packed {
  const [rows, cols] = codes.dims as [number, number];
  const K = transposed ? cols : rows;
  const N = transposed ? rows : cols;
  const nb = Math.ceil(K / blockSize);
  const bits = nbitsOf(codes.dtype)!;
  const mid = 2 ** (bits - 1);
  const offset = codes.dtype === DataType.INT4 || codes.dtype === DataType.INT8 ? mid : 0;
  const mask = (1 << bits) - 1;
  const perByte = 8 / bits;
  // Index of block (b, n) in the scale/zero-point tensors (the codes' orientation).
  const blockAt = (b: number, n: number): number => (transposed ? n * nb + b : b * N + n);
  const scaleValues = scales.toFloat32();
  const zpValues = zeroPoints?.toNumbers();
  const zp = new Uint8Array(N * nb);
  for (let n = 0; n < N; n++) for (let b = 0; b < nb; b++) zp[n * nb + b] = (zpValues?.[blockAt(b, n)] ?? 0) + offset;
  const omitZeroPoints = zp.every((z) => z === mid);
  const bytesPerBlock = blockSize / perByte;
  const b = Tensor.lazy(DataType.UINT8, [N, nb, bytesPerBlock], () => packCodes(codes.bytes(), bits, offset, K, N, nb * bytesPerBlock, transposed, (n) => zp[n * nb + nb - 1]!));
  const s = new Float32Array(N * nb);
  for (let n = 0; n < N; n++) for (let blk = 0; blk < nb; blk++) s[n * nb + blk] = scaleValues[blockAt(blk, n)]!;
  let zeroPointTensor: Tensor | undefined;
  if (!omitZeroPoints) {
    const perRow = Math.ceil(nb / perByte);
    const packed = new Uint8Array(N * perRow);
    for (let n = 0; n < N; n++) for (let blk = 0; blk < nb; blk++) packed[n * perRow + Math.floor(blk / perByte)]! |= (zp[n * nb + blk]! & mask) << ((blk % perByte) * bits);
    zeroPointTensor = Tensor.fromBytes(DataType.UINT8, [N * perRow], packed);
  }
  return { b, scales: Tensor.fromFloat32([N * nb], s), zeroPoints: zeroPointTensor, bits };
}

/**
 * B's bytes: row n holds W[:, n]'s unsigned codes (q + offset) along K, two to a byte low nibble first for bits
 * 4, then a partial last block padded with that row's last zero point (`padOf(n)`), so the padding dequantizes to
 * exactly 0 whether a kernel reads K columns or whole blocks. `raw` is the stored codes (int4 packed low nibble
 * first) in [K,N] or, transposed, [N,K] order. Adding the offset 2^(bits−1) to a signed code flips its top bit.
 */
function packCodes(raw: Uint8Array, bits: 4 | 8, offset: number, K: number, N: number, rowBytes: number, transposed: boolean, padOf: (n: number) => number): Uint8Array {
  // Whole bytes (even K, and even N for [K,N] rows to start on a byte): the SIMD kernel, both nibbles at once.
  const wholeBytes = bits === 4 && K % 2 === 0 && (transposed || N % 2 === 0);
  const out = wholeBytes ? packNibblesByChannel(raw, K, N, rowBytes, transposed, offset === 0 ? 0 : 0x88) : packCodesByElement(raw, bits, offset, K, N, rowBytes, transposed);
  const perByte = 8 / bits;
  const mask = (1 << bits) - 1;
  for (let n = 0; n < N; n++) {
    const pad = padOf(n) & mask;
    for (let k = K; k < rowBytes * perByte; k++) out[n * rowBytes + Math.floor(k / perByte)]! |= pad << ((k % perByte) * bits);
  }
  return out;
}

/** packCodes' rows without padding, one code at a time: 8-bit codes, and 4-bit ones whose rows do not start on a byte. */
function packCodesByElement(raw: Uint8Array, bits: 4 | 8, offset: number, K: number, N: number, rowBytes: number, transposed: boolean): Uint8Array {
  const out = new Uint8Array(N * rowBytes);
  if (bits === 8) {
    for (let k = 0; k < K; k++) {
      for (let n = 0; n < N; n++) out[n * rowBytes + k] = raw[transposed ? n * K + k : k * N + n]! ^ offset;
    }
  } else if (transposed) {
    // Row n of the storage is row n of B: both pack element 2j in the low nibble of byte j.
    for (let n = 0; n < N; n++) {
      const row = n * rowBytes;
      for (let k = 0, i = n * K; k < K; k++, i++) {
        const code = ((i & 1 ? raw[i >> 1]! >> 4 : raw[i >> 1]!) & 0x0f) ^ offset;
        out[row + (k >> 1)]! |= k & 1 ? code << 4 : code;
      }
    }
  } else {
    for (let k = 0; k < K; k++) {
      const byte = k >> 1;
      const shift = k & 1 ? 4 : 0;
      for (let n = 0, i = k * N; n < N; n++, i++) {
        const code = ((i & 1 ? raw[i >> 1]! >> 4 : raw[i >> 1]!) & 0x0f) ^ offset;
        out[n * rowBytes + byte]! |= code << shift;
      }
    }
  }
  return out;
}

/** Rewrites `layer` into MatMulNBits (call only when `matMulNBitsObstacle` is undefined). Returns the new node. */
export function lowerToMatMulNBits(layer: QuantizedWeight, options: { accuracyLevel: number; foldBias: boolean }): Node {
  const graph = layer.node.graph;
  const node = layer.node;
  const dq = layer.dq;
  const codes = dq.input(0).initializer!;
  const blockSize = dq.intAttr('block_size', 0);
  const transposed = isOp(node, Op.Gemm) && node.intAttr('transB', 0) === 1;
  const [rows, cols] = codes.dims as [number, number];
  const K = transposed ? cols : rows;
  const N = transposed ? rows : cols;
  const packed = pack(codes, dq.input(1).initializer!, dq.inputs[2]?.initializer, blockSize, transposed);
  const prefix = dq.input(0).name.replace(/_quantized$/, '');
  const b = graph.addInitializer(`${prefix}_nbits`, packed.b);
  const scales = graph.addInitializer(`${prefix}_nbits_scales`, packed.scales);
  const zeroPoints = packed.zeroPoints ? graph.addInitializer(`${prefix}_nbits_zero_points`, packed.zeroPoints) : undefined;

  // Bias: Gemm's C when it is a constant [N] vector, or the Add after a MatMul; folded into input 5.
  let bias: Value | undefined;
  let biasAdd: Node | undefined;
  if (options.foldBias) {
    if (isOp(node, Op.Gemm)) {
      const c = node.inputs[2];
      if (c?.initializer && c.initializer.dims.length === 1 && c.initializer.dims[0] === N && c.initializer.dtype === DataType.FLOAT) bias = c;
    } else if (layer.bias?.initializer && layer.bias.initializer.dims.length === 1 && layer.bias.initializer.dims[0] === N && layer.bias.initializer.dtype === DataType.FLOAT) {
      const output = node.outputs[0]!;
      const add = output.uses[0]!.node; // findQuantizedWeights sets a MatMul's bias only for a sole Add consumer
      if (!output.isGraphOutput) {
        bias = layer.bias;
        biasAdd = add;
      }
    }
  }
  const keepsGemmBias = isOp(node, Op.Gemm) && node.inputs[2] !== undefined && bias === undefined;
  const replaced = biasAdd ?? node;
  const nbits = graph.addNode({
    opType: Op.MatMulNBits,
    domain: MS_DOMAIN,
    name: `${node.name}_nbits`,
    inputs: [node.input(0), b, scales, zeroPoints, undefined, bias],
    outputs: [`${replaced.outputs[0]!.name}_nbits`],
    attributes: {
      K: { kind: 'int', value: K },
      N: { kind: 'int', value: N },
      bits: { kind: 'int', value: packed.bits },
      block_size: { kind: 'int', value: blockSize },
      accuracy_level: { kind: 'int', value: options.accuracyLevel },
    },
    replaces: node,
  });
  // Trailing omitted optional inputs are dropped so the node reads as the shortest valid form.
  while (nbits.inputs.length > 3 && nbits.inputs[nbits.inputs.length - 1] === undefined) nbits.inputs.pop();
  let result = nbits.outputs[0]!;
  result.type = replaced.outputs[0]!.type;
  if (keepsGemmBias) {
    const add = graph.addNode({ opType: Op.Add, name: `${node.name}_bias`, inputs: [result, node.input(2)], outputs: [`${node.outputs[0]!.name}_biased`], before: node });
    add.outputs[0]!.type = node.outputs[0]!.type;
    result = add.outputs[0]!;
  }
  const old = replaced.outputs[0]!;
  old.replaceAllUsesWith(result);
  // Keep the graph output's name: consumers of the file look outputs up by name.
  if (result.isGraphOutput) swapNames(old, result);
  if (biasAdd) graph.removeNode(biasAdd);
  graph.removeNode(node);
  if (dq.outputs[0]!.uses.length === 0) {
    const inputs = dq.inputs.filter((v): v is Value => v !== undefined);
    graph.removeNode(dq);
    for (const v of inputs) if (v.isConstant && v.uses.length === 0) graph.removeInitializer(v);
  }
  // No re-sort: MatMulNBits (and a kept Gemm bias Add) take the layer's place, after everything they read and
  // before everything that reads the replaced output, so the node order stays topological.
  return nbits;
}

/** Exchanges two value names (the old value is dead after the rewrite). */
function swapNames(a: Value, b: Value): void {
  const name = a.name;
  a.name = a.graph.uniqueName(`${name}_replaced`);
  b.name = name;
}
