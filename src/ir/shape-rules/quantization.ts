/** Shape rules for Quantize/DequantizeLinear (per-tensor, per-axis, blocked) and DynamicQuantizeLinear. */
import { DataType } from '../dtype.js';
import { type ShapeContext, type ShapeResult, single, typed } from './context.js';

/** QuantizeLinear: input shape; element type from output_dtype, else the zero point, else uint8. */
export function quantizeLinear(ctx: ShapeContext): ShapeResult {
  const outputDtype = ctx.node.intAttr('output_dtype', 0) as DataType;
  const elemType = outputDtype !== DataType.UNDEFINED ? outputDtype : ctx.has(2) ? ctx.type(2)?.elemType : DataType.UINT8;
  return single(typed(elemType, ctx.shape(0)));
}

/** DequantizeLinear: input shape; element type of the scale (output_dtype from opset 23). */
export function dequantizeLinear(ctx: ShapeContext): ShapeResult {
  const outputDtype = ctx.node.intAttr('output_dtype', 0) as DataType;
  const elemType = outputDtype !== DataType.UNDEFINED ? outputDtype : ctx.type(1)?.elemType;
  return single(typed(elemType, ctx.shape(0)));
}

/** DynamicQuantizeLinear: uint8 data like the input, scalar float scale and uint8 zero point. */
export function dynamicQuantizeLinear(ctx: ShapeContext): ShapeResult {
  return { types: [typed(DataType.UINT8, ctx.shape(0)), { elemType: DataType.FLOAT, shape: [] }, { elemType: DataType.UINT8, shape: [] }] };
}
