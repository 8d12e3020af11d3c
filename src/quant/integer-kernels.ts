/**
 * The layers onnxruntime's CPU EP runs as 8-bit integer GEMMs, and the exact re-expression of their weights.
 * ORT's QDQ fusions (graph optimization `all`) turn an 8-bit activation Q/DQ and a per-tensor or per-axis 8-bit
 * weight DequantizeLinear feeding a MatMul into MatMulIntegerToFloat (QLinearMatMul when a QuantizeLinear
 * follows), and a Conv followed by a QuantizeLinear into QLinearConv; the cpu lowering writes MatMulIntegerToFloat
 * itself for Gemms. On x86 ORT runs them with uint8 activations (it shifts int8 ones by 128). Against int8
 * weights, its kernels for CPUs without VNNI (AVX2; AVX-512 before VNNI) add each pair of products in saturating
 * int16: 2·255·127 = 64,770 clips at 32,767, so a weight code beyond ±64 can clip and one within cannot
 * (2·255·64 = 32,640). Stored as uint8 (code + 128, zero point + 128: the same products), the weights take ORT's
 * uint8×uint8 kernels, exact on every CPU. ORT's own switch for that (`session.x64quantprecision=1`) fails to
 * create sessions over int8 weight-only DequantizeLinear graphs in ORT 1.30 ("Attempt to replace the existing
 * tensor"), so the runtime re-expresses the weights itself (`widenSaturatingWeights`).
 */
import type { Model, Node, Value } from '../ir/core.js';
import { DataType } from '../ir/dtype.js';
import { Op, isOp } from '../ir/ops.js';
import { Tensor } from '../ir/tensor.js';

/** An integer kernel ORT's CPU EP runs for a layer, and where its weight codes and their zero point are read. */
export interface IntegerKernel {
  kernel: 'MatMulIntegerToFloat' | 'QLinearMatMul' | 'QLinearConv';
  /** The node reading the codes: the weight's DequantizeLinear, or the MatMulIntegerToFloat itself. */
  reader: Node;
  codesIndex: number;
  zeroPointIndex: number;
  /** The scale the zero point pairs with (its shape is the zero point's). */
  scaleIndex: number;
  /**
   * True when x86 ORT multiplies the weights by uint8 activations: always for the Q/DQ forms (it shifts int8
   * activation Q/DQ pairs to uint8), for a MatMulIntegerToFloat when its A is uint8 (int8 × int8 takes MLAS's
   * portable kernel there, exact).
   */
  uint8Activations: boolean;
}

/** The integer kernel ORT runs `node` as (a MatMul, Conv or MatMulIntegerToFloat), if it runs one. */
export function integerKernelOf(node: Node): IntegerKernel | undefined {
  if (isOp(node, Op.MatMulIntegerToFloat)) {
    const a = node.input(0);
    const aCodes = a.type?.elemType ?? (a.producer ? quantizedCodes(a.producer) : undefined);
    return { kernel: 'MatMulIntegerToFloat', reader: node, codesIndex: 1, scaleIndex: 3, zeroPointIndex: 5, uint8Activations: aCodes === DataType.UINT8 };
  }
  if (!(isOp(node, Op.MatMul) || isOp(node, Op.Conv))) return undefined;
  if (codeBits(weightCodes(node.inputs[1])) !== 8 || codeBits(activationCodes(node.input(0))) !== 8 || blockedWeight(node.inputs[1]!)) return undefined;
  const quantizedOutput = node.outputs[0]!.uses.length === 1 && isOp(node.outputs[0]!.uses[0]!.node, Op.QuantizeLinear);
  if (isOp(node, Op.Conv) && !quantizedOutput) return undefined;
  const kernel = isOp(node, Op.Conv) ? 'QLinearConv' : quantizedOutput ? 'QLinearMatMul' : 'MatMulIntegerToFloat';
  return { kernel, reader: beforeCast(node.inputs[1])!.producer!, codesIndex: 0, scaleIndex: 1, zeroPointIndex: 2, uint8Activations: true };
}

/** True when the kernel can saturate on x86 CPUs without VNNI: uint8 activations against int8 codes beyond ±64. */
export function kernelSaturatesWithoutVnni(kernel: IntegerKernel): boolean {
  const codes = kernel.reader.inputs[kernel.codesIndex]?.initializer;
  return kernel.uint8Activations && codes !== undefined && saturatesWithoutVnni(codes);
}

/**
 * True when int8 `codes` hold a value beyond ±64, which ORT's non-VNNI uint8×int8 kernels can saturate. Tensors
 * are immutable, so each is scanned once (the lowering's kernel table and every measuring session ask again; an
 * int7 weight has no such code, so its scan reads every byte).
 */
function saturatesWithoutVnni(codes: Tensor): boolean {
  if (codes.dtype !== DataType.INT8) return false;
  let beyond = scanned.get(codes);
  if (beyond === undefined) scanned.set(codes, (beyond = hasCodeBeyond64(codes.bytes())));
  return beyond;
}
const scanned = new WeakMap<Tensor, boolean>();

/**
 * True when a byte of `bytes`, read as int8, lies beyond ±64 (65..127 or -128..-65: unsigned 65..191); stops at
 * the first. Four bytes a step: c = b + 64 (mod 256, bytewise) is beyond exactly when c > 128, i.e. its top bit
 * is set and its low seven bits are not all 0.
 */
export function hasCodeBeyond64(bytes: Uint8Array): boolean {
  const beyond = (b: number) => b > 64 && b < 192;
  const head = Math.min(bytes.length, (4 - (bytes.byteOffset % 4)) % 4);
  let i = 0;
  for (; i < head; i++) if (beyond(bytes[i]!)) return true;
  const count = Math.floor((bytes.length - head) / 4);
  const words = count > 0 ? new Uint32Array(bytes.buffer, bytes.byteOffset + head, count) : new Uint32Array(0);
  for (let w = 0; w < words.length; w++) {
    const x = words[w]!;
    const c = ((x & 0x7f7f7f7f) + 0x40404040) ^ (x & 0x80808080);
    if ((c & 0x80808080 & (((c & 0x7f7f7f7f) + 0x7f7f7f7f) & 0x80808080)) !== 0) return true;
  }
  for (i = head + count * 4; i < bytes.length; i++) if (beyond(bytes[i]!)) return true;
  return false;
}

/** True when some integer kernel of `model` can saturate on x86 CPUs without VNNI. */
export function hasSaturatingKernels(model: Model): boolean {
  return model.graph.nodes.some((node) => {
    const kernel = integerKernelOf(node);
    return kernel !== undefined && kernelSaturatesWithoutVnni(kernel);
  });
}

/**
 * Re-expresses, in place, the int8 weights of every integer kernel whose codes can saturate as uint8 (code + 128;
 * zero point + 128, 128 where there was none): the same dequantized values and products. New initializers are
 * added (shared codes are converted once), only the kernels' readers rewired, and the int8 initializers no node
 * reads any more removed. Returns how many were.
 */
export function widenSaturatingWeights(model: Model): number {
  const graph = model.graph;
  const widened = new Map<Value, Value>();
  let count = 0;
  for (const node of [...graph.nodes]) {
    const kernel = integerKernelOf(node);
    if (!kernel || !kernelSaturatesWithoutVnni(kernel)) continue;
    const { reader } = kernel;
    const codes = reader.input(kernel.codesIndex);
    let unsigned = widened.get(codes);
    if (!unsigned) {
      const source = codes.initializer!;
      unsigned = graph.addInitializer(`${codes.name}_uint8`, Tensor.lazy(DataType.UINT8, source.dims, () => int8AsUint8(source.bytes())));
      widened.set(codes, unsigned);
    }
    const zeroPoint = reader.inputs[kernel.zeroPointIndex]?.initializer;
    const scale = reader.input(kernel.scaleIndex).initializer;
    const zeroPointDims = zeroPoint?.dims ?? scale?.dims ?? [];
    const zeroPointBytes = zeroPoint ? int8AsUint8(zeroPoint.bytes()) : new Uint8Array(zeroPointDims.reduce((a, b) => a * b, 1)).fill(128);
    const unsignedZeroPoint = graph.addInitializer(`${codes.name}_uint8_zero_point`, Tensor.fromBytes(DataType.UINT8, zeroPointDims, zeroPointBytes));
    const signedZeroPoint = reader.inputs[kernel.zeroPointIndex];
    reader.setInput(kernel.codesIndex, unsigned);
    reader.setInput(kernel.zeroPointIndex, unsignedZeroPoint);
    // The int8 tensors go when nothing else reads them (ORT warns about every unused initializer).
    for (const replaced of [codes, signedZeroPoint]) if (replaced && replaced.uses.length === 0 && graph.initializers.get(replaced.name) === replaced) graph.removeInitializer(replaced);
    count++;
  }
  return count;
}

/** int8 bytes as uint8 code + 128 (the same value less a zero point that moves with it). */
export function int8AsUint8(bytes: Uint8Array): Uint8Array {
  const out = new Uint8Array(bytes.length);
  for (let i = 0; i < bytes.length; i++) out[i] = bytes[i]! ^ 0x80;
  return out;
}

/**
 * `value`, or the value a Cast producing it reads: ORT's QDQ fusions look through the Casts of a float16 graph
 * (DequantizeLinear → Cast → MatMul runs as MatMulIntegerToFloat).
 */
function beforeCast(value: Value | undefined): Value | undefined {
  const producer = value?.producer;
  return producer && isOp(producer, Op.Cast) ? producer.inputs[0] : value;
}

/** The code type of a constant weight DequantizeLinear feeding `value` (through a Cast), if that is what it is. */
export function weightCodes(value: Value | undefined): DataType | undefined {
  const dq = beforeCast(value)?.producer;
  return dq && isOp(dq, Op.DequantizeLinear) && dq.input(0).isConstant ? dq.input(0).initializer!.dtype : undefined;
}

/** The code type of an activation Q → DQ pair feeding `value` (through a Cast), if that is what it is. */
export function activationCodes(value: Value): DataType | undefined {
  const dq: Node | undefined = beforeCast(value)?.producer;
  const q = dq && isOp(dq, Op.DequantizeLinear) ? dq.input(0).producer : undefined;
  return q ? quantizedCodes(q) : undefined;
}

/** The code type a QuantizeLinear or DynamicQuantizeLinear writes, undefined for other nodes. */
function quantizedCodes(q: Node): DataType | undefined {
  if (isOp(q, Op.DynamicQuantizeLinear)) return DataType.UINT8;
  return isOp(q, Op.QuantizeLinear) ? (q.outputs[0]!.type?.elemType ?? q.inputs[2]?.initializer?.dtype ?? DataType.UINT8) : undefined;
}

/** 8 or 4 for 8- and 4-bit code types. */
export function codeBits(codes: DataType | undefined): number | undefined {
  if (codes === DataType.INT8 || codes === DataType.UINT8) return 8;
  if (codes === DataType.INT4 || codes === DataType.UINT4) return 4;
  return undefined;
}

/** True when the weight DequantizeLinear feeding `value` is blocked (ORT's QDQ MatMul/Conv fusions take per-tensor or per-axis only). */
export function blockedWeight(value: Value): boolean {
  return beforeCast(value)!.producer!.intAttr('block_size', 0) > 0;
}
