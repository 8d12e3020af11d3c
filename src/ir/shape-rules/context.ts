/** What a shape rule sees and returns, plus the shape arithmetic the rules share (broadcast, axes, products). */
import type { Dim, Node, ValueType } from '../core.js';
import { DataType } from '../dtype.js';
import { IrError } from '../errors.js';
import type { Tensor } from '../tensor.js';

/** A rule's view of one node: input types, constant int values where known, the opset. */
export interface ShapeContext {
  readonly node: Node;
  /** The ai.onnx opset of the model. */
  readonly opset: number;
  /** True when input slot `index` is present. */
  has(index: number): boolean;
  /** The type of input `index`, undefined when absent or not inferred. */
  type(index: number): ValueType | undefined;
  /** The shape of input `index`, undefined when absent or of unknown rank. */
  shape(index: number): Dim[] | undefined;
  /** The values of a small integer input (a shape, axes, indices), symbolic where the batch is; undefined when not constant. */
  ints(index: number): Dim[] | undefined;
  /** The values of a small constant float input (Resize scales); undefined when not an initializer or Constant. */
  floats(index: number): number[] | undefined;
  /** Throws `IrError('shape-inference')` naming the node. */
  fail(message: string): never;
}

/** Output types (undefined: not inferable) and, for small int outputs, their propagated values. */
export interface ShapeResult {
  types: (ValueType | undefined)[];
  values?: (Dim[] | undefined)[];
}

/** Infers one op's output types. */
export type ShapeRule = (ctx: ShapeContext) => ShapeResult;

/** A type with a shape, or undefined when the shape is unknown (the element type alone is still useful). */
export function typed(elemType: DataType | undefined, shape: Dim[] | undefined): ValueType | undefined {
  if (elemType === undefined) return undefined;
  return shape ? { elemType, shape } : { elemType };
}

/** Result with a single output. */
export function single(type: ValueType | undefined, value?: Dim[]): ShapeResult {
  return value ? { types: [type], values: [value] } : { types: [type] };
}

/** Normalizes a possibly negative axis for `rank`; fails when out of range. */
export function normalizeAxis(ctx: ShapeContext, axis: number, rank: number): number {
  const a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a >= rank) ctx.fail(`axis ${axis} is out of range for rank ${rank}`);
  return a;
}

/** Numpy broadcast of two shapes; symbolic dims stay symbolic, different symbols give null. */
export function broadcast(ctx: ShapeContext, a: readonly Dim[], b: readonly Dim[]): Dim[] {
  const rank = Math.max(a.length, b.length);
  const out: Dim[] = [];
  for (let i = 0; i < rank; i++) {
    const x = i - (rank - a.length) >= 0 ? a[i - (rank - a.length)]! : 1;
    const y = i - (rank - b.length) >= 0 ? b[i - (rank - b.length)]! : 1;
    out.push(broadcastDim(ctx, x, y, a, b));
  }
  return out;
}

function broadcastDim(ctx: ShapeContext, x: Dim, y: Dim, a: readonly Dim[], b: readonly Dim[]): Dim {
  if (x === y) return x;
  if (x === 1) return y;
  if (y === 1) return x;
  if (typeof x === 'number' && typeof y === 'number') ctx.fail(`shapes ${formatShape(a)} and ${formatShape(b)} do not broadcast`);
  // A static dim other than 1 decides; two different symbols (or an unknown) stay unknown.
  if (typeof x === 'number') return x;
  if (typeof y === 'number') return y;
  return null;
}

/**
 * Product of dims: static factor and the sorted multiset of symbols (null when a dim is unknown). A symbolic
 * dim may itself be a product written `3*batch` (see productDim), which is taken apart here.
 */
export function product(dims: readonly Dim[]): { factor: number; symbols: string[] } | null {
  let factor = 1;
  const symbols: string[] = [];
  for (const d of dims) {
    if (d === null) return null;
    if (typeof d === 'number') factor *= d;
    else {
      for (const part of d.split('*')) {
        if (/^\d+$/.test(part)) factor *= Number(part);
        else symbols.push(part);
      }
    }
  }
  return { factor, symbols: symbols.sort() };
}

/** The dim for factor·symbols: a number, a lone symbol, or a product symbol like `3*batch` (deterministic). */
export function productDim(factor: number, symbols: readonly string[]): Dim {
  if (symbols.length === 0) return factor;
  if (factor === 0) return 0;
  const sorted = [...symbols].sort();
  return factor === 1 ? sorted.join('*') : `${factor}*${sorted.join('*')}`;
}

/** `total / part` as a dim when it divides exactly (symbols cancel), else null. */
export function quotient(total: readonly Dim[], part: readonly Dim[]): Dim {
  const t = product(total);
  const p = product(part);
  if (!t || !p || p.factor === 0) return null;
  const symbols = [...t.symbols];
  for (const s of p.symbols) {
    const i = symbols.indexOf(s);
    if (i < 0) return null;
    symbols.splice(i, 1);
  }
  if (t.factor % p.factor !== 0) return null;
  return productDim(t.factor / p.factor, symbols);
}

/** `[a,b,c]` with `?` for unknown dims. */
export function formatShape(shape: readonly Dim[]): string {
  return `[${shape.map((d) => (d === null ? '?' : String(d))).join(',')}]`;
}

/** Throws the shape-inference error for `node`. */
export function shapeError(node: Node, message: string): never {
  throw new IrError('shape-inference', `node '${node.name}' (${node.opType}): ${message}`);
}

/** Largest integer tensor whose values are propagated; bigger ones (weights) are never read. */
export const MAX_PROPAGATED_ELEMENTS = 64;

/** The values of a small int32/int64 tensor, or undefined for other types and sizes (bytes then stay unread). */
export function smallTensorInts(tensor: Tensor): Dim[] | undefined {
  if (tensor.dtype !== DataType.INT64 && tensor.dtype !== DataType.INT32) return undefined;
  if (tensor.size > MAX_PROPAGATED_ELEMENTS) return undefined;
  return tensor.toNumbers();
}
