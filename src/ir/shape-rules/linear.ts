/** Shape rules for contractions and windows: MatMul, Gemm, Conv, ConvTranspose, pooling, quantized matmuls. */
import type { Dim } from '../core.js';
import { DataType } from '../dtype.js';
import { Op, isOp } from '../ops.js';
import { type ShapeContext, type ShapeResult, broadcast, formatShape, single, typed } from './context.js';

/** Numpy matmul shape of `a`·`b` (1-D operands promoted and the added dim removed). */
function matmulShape(ctx: ShapeContext, a: Dim[], b: Dim[]): Dim[] {
  if (a.length === 0 || b.length === 0) ctx.fail('matmul operands must have rank ≥ 1');
  const a2 = a.length === 1 ? [1, a[0]!] : a;
  const b2 = b.length === 1 ? [b[0]!, 1] : b;
  const k1 = a2[a2.length - 1]!;
  const k2 = b2[b2.length - 2]!;
  if (typeof k1 === 'number' && typeof k2 === 'number' && k1 !== k2) ctx.fail(`inner dims differ: ${formatShape(a)} · ${formatShape(b)}`);
  const batch = broadcast(ctx, a2.slice(0, -2), b2.slice(0, -2));
  const out = [...batch];
  if (a.length > 1) out.push(a2[a2.length - 2]!);
  if (b.length > 1) out.push(b2[b2.length - 1]!);
  return out;
}

/** MatMul (and MatMulInteger, whose output is int32). */
export function matmul(ctx: ShapeContext): ShapeResult {
  const a = ctx.shape(0);
  const b = ctx.shape(1);
  const elemType = isOp(ctx.node, Op.MatMulInteger) ? DataType.INT32 : ctx.type(0)?.elemType;
  return single(typed(elemType, a && b ? matmulShape(ctx, a, b) : undefined));
}

/** MatMulIntegerToFloat (com.microsoft): integer matmul, output in the scale's float type. */
export function matmulIntegerToFloat(ctx: ShapeContext): ShapeResult {
  const a = ctx.shape(0);
  const b = ctx.shape(1);
  return single(typed(ctx.type(2)?.elemType, a && b ? matmulShape(ctx, a, b) : undefined));
}

/** MatMulNBits (com.microsoft): A[..., K] times packed W[K, N] gives [..., N]. */
export function matmulNBits(ctx: ShapeContext): ShapeResult {
  const a = ctx.shape(0);
  const k = ctx.node.intAttr('K', 0);
  const n = ctx.node.intAttr('N', 0);
  if (a) {
    if (a.length === 0) ctx.fail('input A must have rank ≥ 1');
    const last = a[a.length - 1];
    if (typeof last === 'number' && last !== k) ctx.fail(`A's last dim ${last} differs from K=${k}`);
  }
  return single(typed(ctx.type(0)?.elemType, a ? [...a.slice(0, -1), n] : undefined));
}

/** Gemm: 2-D A·B with transA/transB. */
export function gemm(ctx: ShapeContext): ShapeResult {
  const a = ctx.shape(0);
  const b = ctx.shape(1);
  const elemType = ctx.type(0)?.elemType;
  if (!a || !b) return single(typed(elemType, undefined));
  if (a.length !== 2 || b.length !== 2) ctx.fail(`Gemm needs 2-D operands, got ${formatShape(a)} and ${formatShape(b)}`);
  const [m, ka] = ctx.node.intAttr('transA', 0) ? [a[1]!, a[0]!] : [a[0]!, a[1]!];
  const [kb, n] = ctx.node.intAttr('transB', 0) ? [b[1]!, b[0]!] : [b[0]!, b[1]!];
  if (typeof ka === 'number' && typeof kb === 'number' && ka !== kb) ctx.fail(`inner dims differ: ${formatShape(a)} · ${formatShape(b)}`);
  return single(typed(elemType, [m, n]));
}

interface Window {
  kernel: Dim[];
  strides: number[];
  dilations: number[];
  pads: number[];
  autoPad: string;
}

function windowOf(ctx: ShapeContext, spatial: number, kernelFromWeight: Dim[] | undefined): Window {
  const node = ctx.node;
  const kernel: Dim[] = node.intsAttr('kernel_shape', []).length > 0 ? node.intsAttr('kernel_shape', []) : (kernelFromWeight ?? Array<Dim>(spatial).fill(null));
  if (kernel.length !== spatial) ctx.fail(`kernel has ${kernel.length} spatial dims, input has ${spatial}`);
  return {
    kernel,
    strides: node.intsAttr('strides', Array<number>(spatial).fill(1)),
    dilations: node.intsAttr('dilations', Array<number>(spatial).fill(1)),
    pads: node.intsAttr('pads', Array<number>(2 * spatial).fill(0)),
    autoPad: node.stringAttr('auto_pad', 'NOTSET'),
  };
}

/** Output spatial dims of a forward window (Conv, pools); ceil_mode rounds up. */
function forwardSpatial(input: Dim[], w: Window, ceilMode: boolean): Dim[] {
  return input.map((size, i) => {
    const k = w.kernel[i];
    if (typeof size !== 'number' || typeof k !== 'number') return null;
    const stride = w.strides[i]!;
    const extent = w.dilations[i]! * (k - 1) + 1;
    if (w.autoPad === 'SAME_UPPER' || w.autoPad === 'SAME_LOWER') return Math.ceil(size / stride);
    const padded = w.autoPad === 'VALID' ? size : size + w.pads[i]! + w.pads[i + input.length]!;
    const round = ceilMode ? Math.ceil : Math.floor;
    let out = round((padded - extent) / stride) + 1;
    // With ceil_mode a window may not start inside the right padding.
    if (ceilMode && (out - 1) * stride >= size + w.pads[i]!) out--;
    return out;
  });
}

/** Conv: [N, M, spatial…] with M = W's first dim. */
export function conv(ctx: ShapeContext): ShapeResult {
  const x = ctx.shape(0);
  const weight = ctx.shape(1);
  const elemType = ctx.type(0)?.elemType;
  if (!x || !weight) return single(typed(elemType, undefined));
  if (x.length < 3 || weight.length !== x.length) ctx.fail(`input ${formatShape(x)} and weight ${formatShape(weight)} ranks do not fit`);
  const group = ctx.node.intAttr('group', 1);
  const channels = x[1];
  const weightChannels = weight[1];
  if (typeof channels === 'number' && typeof weightChannels === 'number' && channels !== weightChannels * group) {
    ctx.fail(`input has ${channels} channels, weight expects ${weightChannels}×group ${group}`);
  }
  const w = windowOf(ctx, x.length - 2, weight.slice(2));
  return single(typed(elemType, [x[0]!, weight[0]!, ...forwardSpatial(x.slice(2), w, false)]));
}

/** ConvTranspose: output_shape when given, else stride·(in−1) + output_padding + extent − pads. */
export function convTranspose(ctx: ShapeContext): ShapeResult {
  const x = ctx.shape(0);
  const weight = ctx.shape(1);
  const elemType = ctx.type(0)?.elemType;
  if (!x || !weight) return single(typed(elemType, undefined));
  if (x.length < 3 || weight.length !== x.length) ctx.fail(`input ${formatShape(x)} and weight ${formatShape(weight)} ranks do not fit`);
  const spatial = x.length - 2;
  const group = ctx.node.intAttr('group', 1);
  const w = windowOf(ctx, spatial, weight.slice(2));
  const outputPadding = ctx.node.intsAttr('output_padding', Array<number>(spatial).fill(0));
  const outputShape = ctx.node.intsAttr('output_shape', []);
  const channels = typeof weight[1] === 'number' ? weight[1] * group : null;
  const dims = x.slice(2).map((size, i): Dim => {
    if (outputShape.length === spatial) return outputShape[i]!;
    const k = w.kernel[i];
    if (typeof size !== 'number' || typeof k !== 'number') return null;
    if (w.autoPad === 'SAME_UPPER' || w.autoPad === 'SAME_LOWER') return size * w.strides[i]!;
    const pads = w.autoPad === 'VALID' ? 0 : w.pads[i]! + w.pads[i + spatial]!;
    return w.strides[i]! * (size - 1) + outputPadding[i]! + (k - 1) * w.dilations[i]! + 1 - pads;
  });
  return single(typed(elemType, [x[0]!, channels, ...dims]));
}

/** MaxPool / AveragePool (MaxPool's optional indices are int64). */
export function pool(ctx: ShapeContext): ShapeResult {
  const x = ctx.shape(0);
  const elemType = ctx.type(0)?.elemType;
  let shape: Dim[] | undefined;
  if (x) {
    if (x.length < 3) ctx.fail(`pooling input ${formatShape(x)} needs rank ≥ 3`);
    const w = windowOf(ctx, x.length - 2, undefined);
    shape = [x[0]!, x[1]!, ...forwardSpatial(x.slice(2), w, ctx.node.intAttr('ceil_mode', 0) === 1)];
  }
  return { types: [typed(elemType, shape), typed(DataType.INT64, shape)] };
}

/** GlobalAveragePool: spatial dims become 1. */
export function globalPool(ctx: ShapeContext): ShapeResult {
  const x = ctx.shape(0);
  return single(typed(ctx.type(0)?.elemType, x ? x.map((d, i) => (i < 2 ? d : 1)) : undefined));
}
