/** Shape rules for element-wise ops: unary maps, broadcasting arithmetic and comparisons, Where, casts. */
import type { Dim } from '../core.js';
import { DataType } from '../dtype.js';
import { Op, isOp } from '../ops.js';
import { type ShapeContext, type ShapeResult, broadcast, quotient, single, typed } from './context.js';

/** Output has input 0's type (Relu, Softmax, Clip, Identity, …); int values pass through. */
export function sameAsInput(ctx: ShapeContext): ShapeResult {
  return single(ctx.type(0), ctx.ints(0));
}

/** Unary predicates (IsNaN, Not): input shape, bool elements. */
export function boolOfInput(ctx: ShapeContext): ShapeResult {
  return single(typed(ctx.type(0) ? DataType.BOOL : undefined, ctx.shape(0)));
}

/** Broadcast shape of every present input, or undefined when one is unknown. */
function broadcastAll(ctx: ShapeContext, count: number): Dim[] | undefined {
  let shape: Dim[] | undefined = [];
  for (let i = 0; i < count; i++) {
    if (!ctx.has(i)) continue;
    const s = ctx.shape(i);
    if (!s) return undefined;
    shape = broadcast(ctx, shape, s);
  }
  return shape;
}

const FOLD: Partial<Record<string, (a: number, b: number) => number>> = {
  [Op.Add]: (a, b) => a + b,
  [Op.Sub]: (a, b) => a - b,
  [Op.Mul]: (a, b) => a * b,
  [Op.Div]: (a, b) => Math.trunc(a / b),
};

/** Add/Sub/Mul/Div/Pow/Mod and variadic Max/Min/Sum/Mean: broadcast, element type of input 0; folds static int values. */
export function arithmetic(ctx: ShapeContext): ShapeResult {
  const count = ctx.node.inputs.length;
  const shape = broadcastAll(ctx, count);
  const type = typed(ctx.type(0)?.elemType, shape);
  const fold = ctx.node.domain === '' ? FOLD[ctx.node.opType] : undefined;
  const a = ctx.ints(0);
  const b = ctx.ints(1);
  if (!fold || !a || !b || !shape || count !== 2) return single(type);
  const n = Math.max(a.length, b.length);
  if ((a.length !== n && a.length !== 1) || (b.length !== n && b.length !== 1)) return single(type);
  const values: Dim[] = [];
  for (let i = 0; i < n; i++) {
    const x = a[a.length === 1 ? 0 : i]!;
    const y = b[b.length === 1 ? 0 : i]!;
    if (typeof x === 'number' && typeof y === 'number') values.push(fold(x, y));
    // Symbolic dims stay symbolic through products and exact quotients; sums of symbols are unknown.
    else if (isOp(ctx.node, Op.Mul)) values.push(quotient([x, y], []));
    else if (isOp(ctx.node, Op.Div)) values.push(quotient([x], [y]));
    else if ((isOp(ctx.node, Op.Add) || isOp(ctx.node, Op.Sub)) && y === 0) values.push(x);
    else values.push(null);
  }
  return single(type, values);
}

/** Comparisons and logical ops: broadcast, bool elements. */
export function comparison(ctx: ShapeContext): ShapeResult {
  const known = ctx.type(0) !== undefined;
  return single(typed(known ? DataType.BOOL : undefined, broadcastAll(ctx, 2)));
}

/** Where(cond, x, y): three-way broadcast, element type of x. */
export function where(ctx: ShapeContext): ShapeResult {
  return single(typed(ctx.type(1)?.elemType ?? ctx.type(2)?.elemType, broadcastAll(ctx, 3)));
}

/** Cast: shape of the input, element type from `to`; int values pass through between integer types. */
export function cast(ctx: ShapeContext): ShapeResult {
  const to = ctx.node.intAttr('to', 0) as DataType;
  const keepsInts = to === DataType.INT64 || to === DataType.INT32;
  return single(typed(to, ctx.shape(0)), keepsInts ? ctx.ints(0) : undefined);
}

/** CastLike: shape of input 0, element type of input 1. */
export function castLike(ctx: ShapeContext): ShapeResult {
  return single(typed(ctx.type(1)?.elemType, ctx.shape(0)));
}

/** Dropout: output like the input, optional bool mask of the same shape. */
export function dropout(ctx: ShapeContext): ShapeResult {
  return { types: [ctx.type(0), typed(DataType.BOOL, ctx.shape(0))] };
}

/** BiasGelu (com.microsoft): input plus bias, broadcast. */
export function biasGelu(ctx: ShapeContext): ShapeResult {
  return single(typed(ctx.type(0)?.elemType, broadcastAll(ctx, 2)));
}
