/** Shape rules for normalizations and reductions. */
import type { Dim } from '../core.js';
import { DataType } from '../dtype.js';
import { Op, isOp } from '../ops.js';
import { type ShapeContext, type ShapeResult, normalizeAxis, single, typed } from './context.js';

/** LayerNormalization: Y like X; optional Mean / InvStdDev keep dims before `axis` and 1 after (stash_type). */
export function layerNormalization(ctx: ShapeContext): ShapeResult {
  const x = ctx.shape(0);
  const y = ctx.type(0);
  let stats: Dim[] | undefined;
  if (x) {
    const axis = normalizeAxis(ctx, ctx.node.intAttr('axis', -1), x.length);
    stats = x.map((d, i) => (i < axis ? d : 1));
  }
  const stashType = ctx.node.intAttr('stash_type', DataType.FLOAT) as DataType;
  const statsType = typed(stashType, stats);
  return { types: [y, statsType, statsType] };
}

/** Group / Instance normalization: output like the input. */
export function sameShapeNormalization(ctx: ShapeContext): ShapeResult {
  return single(ctx.type(0));
}

/** BatchNormalization: Y like X; training outputs running mean / var are [C]. */
export function batchNormalization(ctx: ShapeContext): ShapeResult {
  const x = ctx.shape(0);
  const stats = typed(ctx.type(3)?.elemType ?? ctx.type(0)?.elemType, x && x.length > 1 ? [x[1]!] : undefined);
  return { types: [ctx.type(0), stats, stats] };
}

/** ReduceX: axes from the attribute (before opset 18, 13 for ReduceSum) or the input; keepdims; noop_with_empty_axes. */
export function reduce(ctx: ShapeContext): ShapeResult {
  const x = ctx.shape(0);
  const elemType = ctx.type(0)?.elemType;
  if (!x) return single(typed(elemType, undefined));
  const axesFromInput = isOp(ctx.node, Op.ReduceSum) ? ctx.opset >= 13 : ctx.opset >= 18;
  let axes: Dim[] | undefined;
  if (axesFromInput) axes = ctx.has(1) ? ctx.ints(1) : [];
  else axes = ctx.node.intsAttr('axes', []);
  if (axes === undefined || axes.some((a) => typeof a !== 'number')) return single(typed(elemType, undefined));
  const keepDims = ctx.node.intAttr('keepdims', 1) === 1;
  if (axes.length === 0 && ctx.node.intAttr('noop_with_empty_axes', 0) === 1) return single(typed(elemType, x));
  const reduced = new Set(axes.length === 0 ? x.map((_, i) => i) : axes.map((a) => normalizeAxis(ctx, a as number, x.length)));
  const shape: Dim[] = [];
  x.forEach((d, i) => {
    if (!reduced.has(i)) shape.push(d);
    else if (keepDims) shape.push(1);
  });
  return single(typed(elemType, shape));
}

/** ArgMax / ArgMin: one axis reduced, int64 indices. */
export function argReduce(ctx: ShapeContext): ShapeResult {
  const x = ctx.shape(0);
  if (!x) return single(typed(DataType.INT64, undefined));
  const axis = normalizeAxis(ctx, ctx.node.intAttr('axis', 0), x.length);
  const keepDims = ctx.node.intAttr('keepdims', 1) === 1;
  const shape = x.flatMap((d, i) => (i !== axis ? [d] : keepDims ? [1] : []));
  return single(typed(DataType.INT64, shape));
}
