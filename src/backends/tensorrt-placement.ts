/**
 * The structural checker for TensorRT's explicit quantization: Q/DQ where its int8 kernels pick them up.
 * TensorRT fuses `DQ(int8 weight)` and `DQ(Q(activation))` on the inputs of Conv/MatMul/Gemm into one int8
 * kernel; it needs symmetric codes (zero point 0), constant scales, per-channel weight scales on the
 * output-channel axis, and no Q/DQ on biases (it quantizes biases itself). Anything else either fails to
 * build or silently runs in float, so each violation is reported with the node it concerns.
 */
import type { Model, Node } from '../ir/core.js';
import { DataType } from '../ir/dtype.js';
import { Op, isOp } from '../ir/ops.js';
import type { BackendIssue } from './backend.js';

/** The ops whose inputs TensorRT quantizes. */
function isQuantizableOp(node: Node): boolean {
  return isOp(node, Op.Conv) || isOp(node, Op.MatMul) || isOp(node, Op.Gemm);
}

/** The weight axis holding output channels for `consumer` (Conv O, MatMul N, Gemm N). */
export function outputAxis(consumer: Node): number {
  if (isOp(consumer, Op.Conv)) return 0;
  if (isOp(consumer, Op.Gemm)) return consumer.intAttr('transB', 0) === 1 ? 0 : 1;
  return 1;
}

/** Every placement problem TensorRT's explicit quantization would have with `model` (empty: accepted). */
export function checkTensorRtPlacement(model: Model): BackendIssue[] {
  const issues: BackendIssue[] = [];
  const issue = (node: Node, message: string): void => void issues.push({ layer: node.name, code: 'trt-placement', message });
  for (const node of model.graph.nodes) {
    const isQ = isOp(node, Op.QuantizeLinear);
    const isDq = isOp(node, Op.DequantizeLinear);
    if (isOp(node, Op.DynamicQuantizeLinear)) issue(node, 'DynamicQuantizeLinear is not part of explicit quantization (scales must be constants)');
    if (!isQ && !isDq) continue;
    const zp = node.inputs[2];
    if (zp && !(zp.initializer && zp.initializer.toNumbers().every((v) => v === 0))) issue(node, 'zero point must be 0 (symmetric quantization)');
    const codes = isDq ? (node.input(0).initializer?.dtype ?? zp?.initializer?.dtype) : (zp?.initializer?.dtype ?? DataType.UINT8);
    if (codes !== undefined && codes !== DataType.INT8 && codes !== DataType.INT4) issue(node, 'codes must be int8 (or int4 for weight-only blocked weights)');
    if (!node.input(1).isConstant) issue(node, 'scale must be a constant (TensorRT builds with fixed scales)');
    if (!isDq) continue;
    const isWeight = node.input(0).isConstant;
    for (const use of node.outputs[0]!.uses) {
      const consumer = use.node;
      if (isQuantizableOp(consumer) && use.index === 2) issue(node, `Q/DQ on the bias of ${consumer.name}: TensorRT quantizes biases itself`);
      if (!isWeight || !isQuantizableOp(consumer) || use.index !== 1) continue;
      const scale = node.input(1).initializer;
      const blockSize = node.intAttr('block_size', 0);
      const rank = node.input(0).initializer!.dims.length;
      const axis = ((node.intAttr('axis', 1) % rank) + rank) % rank;
      if (blockSize === 0 && scale && scale.size > 1 && axis !== outputAxis(consumer)) issue(node, `per-channel weight scales must run along the output axis ${outputAxis(consumer)} of ${consumer.name}, not axis ${axis}`);
      if (codes === DataType.INT8) {
        const activation = consumer.inputs[0]?.producer;
        if (!activation || !isOp(activation, Op.DequantizeLinear)) issue(node, `int8 weight of ${consumer.name} without a Q/DQ on its activation input runs in float on TensorRT`);
      }
    }
  }
  return issues;
}
