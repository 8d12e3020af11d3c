/**
 * Re-expresses an int8 Q/DQ `Gemm` with a float bias (a linear on 2-D inputs, e.g. DiT's adaLN modulation and
 * timestep MLP) as ORT's `com.microsoft.MatMulIntegerToFloat` + `Add`. ORT's QDQ Gemm fusion (QGemm) needs the
 * bias quantized to int32, so a float-bias Gemm stays DequantizeLinear + float Gemm — weights dequantized on
 * every run; and a Q/DQ MatMul + Add is first fused back into a Gemm (MatMulAddFusion runs before the QDQ
 * fusions), so the portable Q/DQ MatMul form does not help either. MatMulIntegerToFloat is the kernel ORT's own
 * QDQ MatMul fusion emits: Y = (Aq − za)·sa · (Wq − zw)·sw with int32 accumulation, the Q/DQ graph's math,
 * with transB's [N, K] codes stored as [K, N] (per-channel scales and zero points keep their [N] values).
 */
import type { Node, Value } from '../ir/core.js';
import { DataType } from '../ir/dtype.js';
import { MS_DOMAIN, Op, isOp } from '../ir/ops.js';
import { Tensor } from '../ir/tensor.js';
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
  return quantize !== undefined && (isOp(quantize, Op.QuantizeLinear) || isOp(quantize, Op.DynamicQuantizeLinear));
}

/**
 * Rewrites the Gemm of `weight` (call only when `isInt8QdqGemm`) into com.microsoft.MatMulIntegerToFloat over
 * the input's int8 codes and the weight's [K, N] codes, followed by an Add of C. Returns the new node.
 */
export function rewriteGemmAsMatMulInteger(weight: QuantizedWeight): Node {
  const { node, dq } = weight;
  const graph = node.graph;
  const inputDq = node.input(0).producer!;
  const output = node.outputs[0]!;
  const codes = transposedCodes(dq, node.intAttr('transB', 0) === 1);
  const inputs = [inputDq.input(0), codes, inputDq.input(1), dq.input(1), inputDq.inputs[2], dq.inputs[2]];
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
  for (const dead of [dq, inputDq]) {
    if (dead.outputs[0]!.uses.length > 0) continue;
    const deadInputs = dead.inputs.filter((v): v is Value => v !== undefined);
    graph.removeNode(dead);
    for (const v of deadInputs) if (v.isConstant && v.uses.length === 0) graph.removeInitializer(v);
  }
  graph.sortTopologically();
  return matmul;
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
