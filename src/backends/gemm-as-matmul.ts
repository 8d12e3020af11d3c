/**
 * Re-expresses an int8 Q/DQ `Gemm` with a float bias (a linear on 2-D inputs, e.g. DiT's adaLN modulation and
 * timestep MLP) as ORT's `com.microsoft.MatMulIntegerToFloat` + `Add`. ORT's QDQ Gemm fusion (QGemm) needs the
 * bias quantized to int32, so a float-bias Gemm stays DequantizeLinear + float Gemm — weights dequantized on
 * every run; and a Q/DQ MatMul + Add is first fused back into a Gemm (MatMulAddFusion runs before the QDQ
 * fusions), so the portable Q/DQ MatMul form does not help either. MatMulIntegerToFloat is the kernel ORT's own
 * QDQ MatMul fusion emits: Y = (Aq − za)·sa · (Wq − zw)·sw with int32 accumulation, the Q/DQ graph's math,
 * with transB's [N, K] codes stored as [K, N] (per-channel scales and zero points keep their [N] values).
 * int8 input codes (a symmetric `input int8 sym`) are re-expressed as uint8 (code + 128, zero point + 128: the
 * same Aq − za), as ORT's QDQ transformers do for the MatMuls they fuse: x86 ORT runs an int8 A in MLAS's
 * portable kernel, 5× slower than the float Gemm at DiT's adaLN shape ([2, 1152] · [1152, 6912] on AVX2: 16.5
 * ms against 3.1; uint8 A 0.9 ms; 2.3× slower at 512 rows).
 */
import type { Node, Value } from '../ir/core.js';
import { DataType } from '../ir/dtype.js';
import { MS_DOMAIN, Op, isOp } from '../ir/ops.js';
import { Tensor } from '../ir/tensor.js';
import { int8AsUint8 } from '../quant/integer-kernels.js';
import type { QuantizedWeight } from '../quant/quantized-forms.js';

/** True when `weight` is an 8-bit per-tensor/per-channel Gemm with an int8-quantized input and plain attributes. */
export function isInt8QdqGemm(weight: QuantizedWeight): boolean {
  const { node, dq } = weight;
  if (!isOp(node, Op.Gemm) || node.intAttr('transA', 0) !== 0 || node.floatAttr('alpha', 1) !== 1 || node.floatAttr('beta', 1) !== 1) return false;
  const codes = dq.input(0).initializer;
  if (!codes || codes.dims.length !== 2 || !(codes.dtype === DataType.INT8 || codes.dtype === DataType.UINT8) || dq.intAttr('block_size', 0) > 0) return false;
  if (!dq.input(1).isConstant || (dq.inputs[2] && !dq.inputs[2].isConstant)) return false;
  const input = node.input(0).producer;
  const quantize = input && isOp(input, Op.DequantizeLinear) ? input.input(0).producer : undefined;
  if (!quantize) return false;
  if (isOp(quantize, Op.DynamicQuantizeLinear)) return true;
  // MatMulIntegerToFloat's a_scale is one scale (a 1-D one would be per column of A, not a per-row table).
  return isOp(quantize, Op.QuantizeLinear) && quantize.input(1).initializer?.size === 1;
}

/** The uint8 form of int8 input codes, one per QuantizeLinear however many Gemms read it. */
export type UnsignedInputs = Map<Node, { codes: Value; zeroPoint: Value }>;

/**
 * Rewrites the Gemm of `weight` (call only when `isInt8QdqGemm`) into com.microsoft.MatMulIntegerToFloat over
 * the input's 8-bit codes (int8 ones as uint8, kept in `unsigned`) and the weight's [K, N] codes, followed by an
 * Add of C. Returns the new node.
 */
export function rewriteGemmAsMatMulInteger(weight: QuantizedWeight, unsigned: UnsignedInputs): Node {
  const { node, dq } = weight;
  const graph = node.graph;
  const inputDq = node.input(0).producer!;
  const output = node.outputs[0]!;
  const codes = transposedCodes(dq, node.intAttr('transB', 0) === 1);
  const input = unsignedInput(inputDq.input(0).producer!, unsigned) ?? { codes: inputDq.input(0), zeroPoint: inputDq.inputs[2] };
  const inputs = [input.codes, codes, inputDq.input(1), dq.input(1), input.zeroPoint, dq.inputs[2]];
  while (inputs.length > 4 && inputs[inputs.length - 1] === undefined) inputs.pop();
  const matmul = graph.addNode({ opType: Op.MatMulIntegerToFloat, domain: MS_DOMAIN, name: `${node.name}_integer`, inputs, outputs: [`${output.name}_integer`], replaces: node });
  matmul.outputs[0]!.type = output.type;
  let result = matmul.outputs[0]!;
  const bias = node.inputs[2];
  if (bias) {
    const add = graph.addNode({ opType: Op.Add, name: `${node.name}_bias`, inputs: [result, bias], outputs: [`${output.name}_biased`], before: node });
    add.outputs[0]!.type = output.type;
    result = add.outputs[0]!;
  }
  output.replaceAllUsesWith(result);
  if (result.isGraphOutput) swapNames(output, result);
  graph.removeNode(node);
  // The weight's and the input's DequantizeLinear, and an int8 QuantizeLinear its uint8 twin replaces, once unread.
  for (const dead of [dq, inputDq, inputDq.input(0).producer!]) {
    if (dead.outputs.some((v) => v.uses.length > 0)) continue;
    const deadInputs = dead.inputs.filter((v): v is Value => v !== undefined);
    graph.removeNode(dead);
    for (const v of deadInputs) if (v.isConstant && v.uses.length === 0) graph.removeInitializer(v);
  }
  graph.sortTopologically();
  return matmul;
}

/**
 * A uint8 QuantizeLinear beside `quantize` where it writes int8 codes with a constant zero point z: the same
 * scale and zero point z + 128, so its codes are the int8 ones + 128 (the clip range moves with them). Undefined
 * where the codes are uint8 already.
 */
function unsignedInput(quantize: Node, unsigned: UnsignedInputs): { codes: Value; zeroPoint: Value } | undefined {
  if (!isOp(quantize, Op.QuantizeLinear)) return undefined;
  const zeroPoint = quantize.inputs[2]?.initializer;
  if (!zeroPoint || zeroPoint.dtype !== DataType.INT8) return undefined;
  let shifted = unsigned.get(quantize);
  if (!shifted) {
    const graph = quantize.graph;
    const name = quantize.inputs[2]!.name;
    const zero = graph.addInitializer(`${name}_uint8`, Tensor.fromBytes(DataType.UINT8, zeroPoint.dims, int8AsUint8(zeroPoint.bytes())));
    const q = graph.addNode({ opType: Op.QuantizeLinear, name: `${quantize.name}_uint8`, inputs: [quantize.input(0), quantize.input(1), zero], outputs: [`${quantize.outputs[0]!.name}_uint8`], attributes: Object.fromEntries(quantize.attributes), before: quantize });
    q.outputs[0]!.type = { elemType: DataType.UINT8, ...(quantize.outputs[0]!.type?.shape ? { shape: quantize.outputs[0]!.type.shape } : {}) };
    unsigned.set(quantize, (shifted = { codes: q.outputs[0]!, zeroPoint: zero }));
  }
  return shifted;
}

/** The weight's int8 codes as a [K, N] constant: the stored ones, or (transB) a transposed copy. */
function transposedCodes(dq: Node, transposed: boolean): Value {
  const codes = dq.input(0).initializer!;
  if (!transposed) return dq.input(0);
  const [N, K] = codes.dims as [number, number];
  const stored = Tensor.lazy(codes.dtype, [K, N], () => {
    const source = codes.bytes();
    const out = new Uint8Array(K * N);
    for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) out[k * N + n] = source[n * K + k]!;
    return out;
  });
  return dq.graph.addInitializer(`${dq.input(0).name}_kn`, stored);
}

/** Exchanges two value names (the old value is dead after the rewrite): graph outputs keep their names. */
function swapNames(a: Value, b: Value): void {
  const name = a.name;
  a.name = a.graph.uniqueName(`${name}_replaced`);
  b.name = name;
}
