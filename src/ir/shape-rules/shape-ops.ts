/**
 * Shape rules for data-movement ops (Reshape, Transpose, Slice, Gather, Concat, …) and for the ops of shape
 * subgraphs (Shape → Gather/Slice → Unsqueeze → Concat), whose small int values are propagated so that a
 * Reshape fed by them gets a static (or symbolic) target.
 */
import type { Dim } from '../core.js';
import { DataType } from '../dtype.js';
import type { Tensor } from '../tensor.js';
import { type ShapeContext, type ShapeResult, MAX_PROPAGATED_ELEMENTS, formatShape, normalizeAxis, product, quotient, single, smallTensorInts, typed } from './context.js';

/** Reshape: 0 copies the input dim (unless allowzero), −1 is inferred from the element count. */
export function reshape(ctx: ShapeContext): ShapeResult {
  const input = ctx.shape(0);
  const elemType = ctx.type(0)?.elemType;
  const target = ctx.ints(1);
  const values = ctx.ints(0);
  if (!target) {
    const rank = ctx.shape(1)?.[0];
    return single(typed(elemType, typeof rank === 'number' ? Array<Dim>(rank).fill(null) : undefined), values);
  }
  const allowZero = ctx.node.intAttr('allowzero', 0) === 1;
  const out: Dim[] = target.map((d, i) => {
    if (d === 0 && !allowZero) {
      if (!input) return null;
      if (i >= input.length) ctx.fail(`target ${formatShape(target)} copies dim ${i} of a rank-${input.length} input`);
      return input[i]!;
    }
    return d;
  });
  const inferred = out.indexOf(-1);
  if (inferred >= 0) {
    if (out.indexOf(-1, inferred + 1) >= 0) ctx.fail(`target ${formatShape(target)} has more than one -1`);
    out[inferred] = input ? quotient(input, out.filter((_, i) => i !== inferred)) : null;
  }
  if (input) {
    const a = product(input);
    const b = product(out);
    if (a && b && a.symbols.length === 0 && b.symbols.length === 0 && a.factor !== b.factor) {
      ctx.fail(`cannot reshape ${formatShape(input)} (${a.factor} elements) to ${formatShape(out)}`);
    }
  }
  return single(typed(elemType, out), values);
}

/** Transpose: dims permuted by `perm` (default: reversed). */
export function transpose(ctx: ShapeContext): ShapeResult {
  const x = ctx.shape(0);
  const elemType = ctx.type(0)?.elemType;
  if (!x) return single(typed(elemType, undefined));
  const perm = ctx.node.intsAttr('perm', x.map((_, i) => x.length - 1 - i));
  if (perm.length !== x.length || perm.some((p) => p < 0 || p >= x.length)) ctx.fail(`perm [${perm.join(',')}] does not fit rank ${x.length}`);
  return single(typed(elemType, perm.map((p) => x[p]!)));
}

/** Split along `axis`: sizes from the input (≥ 13), the attribute (< 13), num_outputs (≥ 18) or evenly. */
export function split(ctx: ShapeContext): ShapeResult {
  const x = ctx.shape(0);
  const elemType = ctx.type(0)?.elemType;
  const count = ctx.node.outputs.length;
  if (!x) return { types: ctx.node.outputs.map(() => typed(elemType, undefined)) };
  const axis = normalizeAxis(ctx, ctx.node.intAttr('axis', 0), x.length);
  const size = x[axis]!;
  let sizes: Dim[];
  const given = ctx.opset >= 13 ? (ctx.has(1) ? ctx.ints(1) : undefined) : ctx.node.intsAttr('split', []);
  if (given && given.length > 0) {
    sizes = given;
    if (sizes.length !== count) ctx.fail(`split has ${sizes.length} sizes for ${count} outputs`);
  } else if (ctx.opset >= 13 && ctx.has(1)) {
    sizes = Array<Dim>(count).fill(null);
  } else if (typeof size !== 'number') {
    sizes = Array<Dim>(count).fill(null);
  } else if (ctx.node.attributes.has('num_outputs')) {
    // num_outputs: every chunk ceil(size/n), the last one takes what is left.
    const chunk = Math.ceil(size / count);
    sizes = Array.from({ length: count }, (_, i) => (i < count - 1 ? chunk : size - chunk * (count - 1)));
  } else {
    if (size % count !== 0) ctx.fail(`dim ${size} does not split evenly into ${count} outputs`);
    sizes = Array<Dim>(count).fill(size / count);
  }
  return { types: sizes.map((s) => typed(elemType, x.map((d, i) => (i === axis ? s : d)))) };
}

/** Ends at or above this count as "to the end" (exporters write INT32_MAX or INT64_MAX). */
const INT64_MAX_LIKE = 2 ** 31 - 1;

/** The length and picked indices of one sliced axis; null length when the dim is symbolic and not fully kept. */
function sliceAxis(dim: Dim, start: number, end: number, step: number): { length: Dim; indices?: number[] } {
  if (typeof dim !== 'number') {
    // Symbolic dims survive only a full forward slice.
    return { length: start === 0 && end >= INT64_MAX_LIKE && step === 1 ? dim : null };
  }
  // ONNX clamps starts to [0, dim] ([0, dim-1] for negative steps) and ends to [0, dim] ([-1, dim-1]).
  const clamp = (v: number, low: number, high: number): number => Math.min(Math.max(v < 0 ? v + dim : v, low), high);
  const s = step > 0 ? clamp(start, 0, dim) : clamp(start, 0, dim - 1);
  const e = step > 0 ? clamp(end, 0, dim) : clamp(end, -1, dim - 1);
  const indices: number[] = [];
  if (step > 0) for (let i = s; i < e; i += step) indices.push(i);
  else for (let i = s; i > e; i += step) indices.push(i);
  return { length: indices.length, indices };
}

/** Slice: starts/ends/axes/steps from inputs (≥ 10) or attributes (< 10); propagates sliced int values. */
export function slice(ctx: ShapeContext): ShapeResult {
  const x = ctx.shape(0);
  const elemType = ctx.type(0)?.elemType;
  if (!x) return single(typed(elemType, undefined));
  const fromInputs = ctx.opset >= 10;
  const starts = fromInputs ? ctx.ints(1) : ctx.node.intsAttr('starts', []);
  const ends = fromInputs ? ctx.ints(2) : ctx.node.intsAttr('ends', []);
  const axes = fromInputs ? (ctx.has(3) ? ctx.ints(3) : x.map((_, i) => i)) : ctx.node.intsAttr('axes', x.map((_, i) => i));
  const steps = fromInputs && ctx.has(4) ? ctx.ints(4) : undefined;
  const all = [starts, ends, axes, ...(fromInputs && ctx.has(4) ? [steps] : [])];
  if (all.some((v) => v === undefined || v.some((d) => typeof d !== 'number'))) {
    return single(typed(elemType, x.map((d, i) => (axes?.every((a) => typeof a === 'number' && normalizeAxis(ctx, a, x.length) !== i) ? d : null))));
  }
  const shape = [...x];
  let picked: number[] | undefined;
  (axes as number[]).forEach((a, j) => {
    const axis = normalizeAxis(ctx, a, x.length);
    const step = steps ? (steps[j] as number) : 1;
    if (step === 0) ctx.fail('slice step is 0');
    const result = sliceAxis(x[axis]!, starts![j] as number, ends![j] as number, step);
    shape[axis] = result.length;
    if (x.length === 1) picked = result.indices;
  });
  const data = ctx.ints(0);
  const values = data && picked ? picked.map((i) => data[i]!) : undefined;
  return single(typed(elemType, shape), values);
}

/** Concat along `axis`; concatenates propagated int values. */
export function concat(ctx: ShapeContext): ShapeResult {
  const count = ctx.node.inputs.length;
  const shapes: Dim[][] = [];
  for (let i = 0; i < count; i++) {
    const s = ctx.shape(i);
    if (!s) return single(typed(ctx.type(0)?.elemType, undefined));
    shapes.push(s);
  }
  const first = shapes[0]!;
  const axis = normalizeAxis(ctx, ctx.node.intAttr('axis', 0), first.length);
  const out = [...first];
  let total: Dim = 0;
  for (const s of shapes) {
    if (s.length !== first.length) ctx.fail(`inputs of ranks ${first.length} and ${s.length} cannot be concatenated`);
    const d = s[axis]!;
    total = typeof total === 'number' && typeof d === 'number' ? total + d : null;
    s.forEach((dim, i) => {
      if (i !== axis && typeof dim === 'number' && typeof out[i] !== 'number') out[i] = dim;
      else if (i !== axis && typeof dim === 'number' && typeof out[i] === 'number' && dim !== out[i]) ctx.fail(`shapes ${formatShape(first)} and ${formatShape(s)} differ off axis ${axis}`);
    });
  }
  out[axis] = total;
  const values: Dim[] = [];
  for (let i = 0; i < count; i++) {
    const v = ctx.ints(i);
    if (!v) return single(typed(ctx.type(0)?.elemType, out));
    values.push(...v);
  }
  return single(typed(ctx.type(0)?.elemType, out), values);
}

/** Gather: data[:axis] + indices.shape + data[axis+1:]; picks propagated int values. */
export function gather(ctx: ShapeContext): ShapeResult {
  const data = ctx.shape(0);
  const indices = ctx.shape(1);
  const elemType = ctx.type(0)?.elemType;
  if (!data || !indices) return single(typed(elemType, undefined));
  const axis = normalizeAxis(ctx, ctx.node.intAttr('axis', 0), data.length);
  const shape = [...data.slice(0, axis), ...indices, ...data.slice(axis + 1)];
  const dataValues = ctx.ints(0);
  const picks = ctx.ints(1);
  if (data.length !== 1 || !dataValues || !picks || picks.some((p) => typeof p !== 'number')) return single(typed(elemType, shape));
  const values = (picks as number[]).map((p) => {
    const i = p < 0 ? p + dataValues.length : p;
    if (i < 0 || i >= dataValues.length) ctx.fail(`index ${p} is out of range for ${dataValues.length} elements`);
    return dataValues[i]!;
  });
  return single(typed(elemType, shape), values);
}

/** Axes from the attribute (< 13) or input 1 (≥ 13). */
function axesOf(ctx: ShapeContext): Dim[] | undefined {
  if (ctx.opset < 13) return ctx.node.intsAttr('axes', []);
  return ctx.has(1) ? ctx.ints(1) : [];
}

/** Unsqueeze: inserts 1s at the (output-rank) axes; values pass through. */
export function unsqueeze(ctx: ShapeContext): ShapeResult {
  const x = ctx.shape(0);
  const axes = axesOf(ctx);
  const elemType = ctx.type(0)?.elemType;
  if (!x || !axes || axes.some((a) => typeof a !== 'number')) return single(typed(elemType, undefined), ctx.ints(0));
  const rank = x.length + axes.length;
  const inserted = new Set((axes as number[]).map((a) => normalizeAxis(ctx, a, rank)));
  if (inserted.size !== axes.length) ctx.fail('repeated axes');
  const shape: Dim[] = [];
  let next = 0;
  for (let i = 0; i < rank; i++) shape.push(inserted.has(i) ? 1 : x[next++]!);
  return single(typed(elemType, shape), ctx.ints(0));
}

/** Squeeze: removes the given axes (which must be 1), or every static 1 when no axes are given. */
export function squeeze(ctx: ShapeContext): ShapeResult {
  const x = ctx.shape(0);
  const axes = axesOf(ctx);
  const elemType = ctx.type(0)?.elemType;
  if (!x || !axes || axes.some((a) => typeof a !== 'number')) return single(typed(elemType, undefined), ctx.ints(0));
  if (axes.length === 0) {
    if (x.some((d) => typeof d !== 'number')) return single(typed(elemType, undefined), ctx.ints(0));
    return single(typed(elemType, x.filter((d) => d !== 1)), ctx.ints(0));
  }
  const removed = new Set((axes as number[]).map((a) => normalizeAxis(ctx, a, x.length)));
  for (const a of removed) if (typeof x[a] === 'number' && x[a] !== 1) ctx.fail(`cannot squeeze axis ${a} of size ${String(x[a])}`);
  return single(typed(elemType, x.filter((_, i) => !removed.has(i))), ctx.ints(0));
}

/** Expand: bidirectional broadcast of the input with the target shape. */
export function expand(ctx: ShapeContext): ShapeResult {
  const x = ctx.shape(0);
  const target = ctx.ints(1);
  const elemType = ctx.type(0)?.elemType;
  if (!x || !target) return single(typed(elemType, undefined));
  const rank = Math.max(x.length, target.length);
  const out: Dim[] = [];
  for (let i = 0; i < rank; i++) {
    const a = i - (rank - x.length) >= 0 ? x[i - (rank - x.length)]! : 1;
    const b = i - (rank - target.length) >= 0 ? target[i - (rank - target.length)]! : 1;
    if (a === b || b === 1) out.push(a);
    else if (a === 1) out.push(b);
    else if (typeof a === 'number' && typeof b === 'number') ctx.fail(`cannot expand ${formatShape(x)} to ${formatShape(target)}`);
    else out.push(typeof a === 'number' ? a : typeof b === 'number' ? b : null);
  }
  return single(typed(elemType, out));
}

/** Shape: int64 [rank] (start/end from opset 15); its value is the (symbolic) input shape. */
export function shapeOf(ctx: ShapeContext): ShapeResult {
  const x = ctx.shape(0);
  if (!x) return single(typed(DataType.INT64, [null]));
  const clamp = (v: number): number => Math.min(Math.max(v < 0 ? v + x.length : v, 0), x.length);
  const start = clamp(ctx.node.intAttr('start', 0));
  const end = clamp(ctx.node.intAttr('end', x.length));
  const values = x.slice(start, Math.max(start, end));
  return single(typed(DataType.INT64, [values.length]), values);
}

/** Size: int64 scalar. */
export function size(ctx: ShapeContext): ShapeResult {
  const x = ctx.shape(0);
  const count = x ? quotient(x, []) : null;
  return single(typed(DataType.INT64, []), count === null ? undefined : [count]);
}

/** Flatten: [prod(dims before axis), prod(dims from axis)]. */
export function flatten(ctx: ShapeContext): ShapeResult {
  const x = ctx.shape(0);
  const elemType = ctx.type(0)?.elemType;
  if (!x) return single(typed(elemType, undefined));
  const raw = ctx.node.intAttr('axis', 1);
  const axis = raw < 0 ? raw + x.length : raw;
  if (axis < 0 || axis > x.length) ctx.fail(`axis ${raw} is out of range for rank ${x.length}`);
  return single(typed(elemType, [quotient(x.slice(0, axis), []), quotient(x.slice(axis), [])]));
}

/** Tile: each dim times its repeat. */
export function tile(ctx: ShapeContext): ShapeResult {
  const x = ctx.shape(0);
  const repeats = ctx.ints(1);
  const elemType = ctx.type(0)?.elemType;
  if (!x || !repeats) return single(typed(elemType, x?.map(() => null)));
  if (repeats.length !== x.length) ctx.fail(`${repeats.length} repeats for rank ${x.length}`);
  return single(typed(elemType, x.map((d, i) => quotient([d, repeats[i]!], []))));
}

/** Pad: pads from input 1 (≥ 11) or the attribute; optional axes (≥ 18). */
export function pad(ctx: ShapeContext): ShapeResult {
  const x = ctx.shape(0);
  const elemType = ctx.type(0)?.elemType;
  const pads = ctx.opset >= 11 ? ctx.ints(1) : ctx.node.intsAttr('pads', []);
  if (!x) return single(typed(elemType, undefined));
  const axes = ctx.has(3) ? ctx.ints(3) : x.map((_, i) => i);
  if (!pads || !axes || axes.some((a) => typeof a !== 'number')) return single(typed(elemType, x.map(() => null)));
  if (pads.length !== 2 * axes.length) ctx.fail(`${pads.length} pads for ${axes.length} axes`);
  const out = [...x];
  (axes as number[]).forEach((a, j) => {
    const axis = normalizeAxis(ctx, a, x.length);
    const begin = pads[j]!;
    const end = pads[j + axes.length]!;
    const d = x[axis]!;
    out[axis] = typeof d === 'number' && typeof begin === 'number' && typeof end === 'number' ? d + begin + end : begin === 0 && end === 0 ? d : null;
  });
  return single(typed(elemType, out));
}

/** ConstantOfShape: shape from the input's values; element type from the `value` tensor (default float 0). */
export function constantOfShape(ctx: ShapeContext): ShapeResult {
  const shape = ctx.ints(0);
  const attr = ctx.node.attributes.get('value');
  const tensor = attr?.kind === 'tensor' ? attr.value : undefined;
  const elemType = tensor?.dtype ?? DataType.FLOAT;
  const length = ctx.shape(0)?.[0];
  if (!shape) return single(typed(elemType, typeof length === 'number' ? Array<Dim>(length).fill(null) : undefined));
  const fill = tensor ? smallTensorInts(tensor)?.[0] : undefined;
  const count = quotient(shape, []);
  const values = fill !== undefined && typeof count === 'number' && count <= MAX_PROPAGATED_ELEMENTS ? Array<Dim>(count).fill(fill) : undefined;
  return single(typed(elemType, shape), values);
}

/** Constant: type and (small int) values of whichever value_* attribute it carries. */
export function constant(ctx: ShapeContext): ShapeResult {
  for (const [name, attr] of ctx.node.attributes) {
    if (name === 'value' && attr.kind === 'tensor') return constantTensor(attr.value);
    if (name === 'value_int' && attr.kind === 'int') return single({ elemType: DataType.INT64, shape: [] }, [Number(attr.value)]);
    if (name === 'value_ints' && attr.kind === 'ints') return single({ elemType: DataType.INT64, shape: [attr.value.length] }, attr.value.map(Number));
    if (name === 'value_float' && attr.kind === 'float') return single({ elemType: DataType.FLOAT, shape: [] });
    if (name === 'value_floats' && attr.kind === 'floats') return single({ elemType: DataType.FLOAT, shape: [attr.value.length] });
    if (name === 'value_string') return single({ elemType: DataType.STRING, shape: [] });
    if (name === 'value_strings' && attr.kind === 'strings') return single({ elemType: DataType.STRING, shape: [attr.value.length] });
  }
  // sparse_value (or nothing): left untyped rather than guessed.
  return { types: [undefined] };
}

function constantTensor(tensor: Tensor): ShapeResult {
  return single({ elemType: tensor.dtype, shape: [...tensor.dims] }, smallTensorInts(tensor));
}

/** Range: 1-D of ceil((limit − start) / delta) elements when the three scalars are constant. */
export function range(ctx: ShapeContext): ShapeResult {
  const elemType = ctx.type(0)?.elemType;
  const [start, limit, delta] = [ctx.ints(0)?.[0], ctx.ints(1)?.[0], ctx.ints(2)?.[0]];
  if (typeof start !== 'number' || typeof limit !== 'number' || typeof delta !== 'number') return single(typed(elemType, [null]));
  if (delta === 0) ctx.fail('Range delta is 0');
  const count = Math.max(Math.ceil((limit - start) / delta), 0);
  const values = count <= MAX_PROPAGATED_ELEMENTS ? Array.from({ length: count }, (_, i) => start + i * delta) : undefined;
  return single(typed(elemType, [count]), values);
}

/** Resize: output from `sizes`, else floor(dim · scale); scales/sizes positions depend on the opset. */
export function resize(ctx: ShapeContext): ShapeResult {
  const x = ctx.shape(0);
  const elemType = ctx.type(0)?.elemType;
  if (!x) return single(typed(elemType, undefined));
  const scalesIndex = ctx.opset >= 11 ? 2 : 1;
  const sizes = ctx.opset >= 11 && ctx.has(3) ? ctx.ints(3) : undefined;
  const axes = ctx.node.intsAttr('axes', x.map((_, i) => i)).map((a) => normalizeAxis(ctx, a, x.length));
  const out = [...x];
  if (sizes) {
    if (sizes.length !== axes.length) ctx.fail(`${sizes.length} sizes for ${axes.length} axes`);
    axes.forEach((a, j) => (out[a] = sizes[j]!));
    return single(typed(elemType, out));
  }
  const scales = ctx.has(scalesIndex) ? ctx.floats(scalesIndex) : undefined;
  if (!scales) return single(typed(elemType, x.map(() => null)));
  if (scales.length !== axes.length) ctx.fail(`${scales.length} scales for ${axes.length} axes`);
  axes.forEach((a, j) => {
    const d = x[a]!;
    out[a] = typeof d === 'number' ? Math.floor(d * scales[j]!) : scales[j] === 1 ? d : null;
  });
  return single(typed(elemType, out));
}

/** Einsum: explicit or implicit output, letters and one ellipsis per term. */
export function einsum(ctx: ShapeContext): ShapeResult {
  const equation = ctx.node.stringAttr('equation', '').replace(/\s+/g, '');
  const elemType = ctx.type(0)?.elemType;
  const [lhs, rhs] = equation.split('->') as [string, string | undefined];
  const terms = lhs.split(',');
  if (terms.length !== ctx.node.inputs.length) ctx.fail(`equation '${equation}' has ${terms.length} operands, node has ${ctx.node.inputs.length}`);
  const letters = new Map<string, Dim>();
  const counts = new Map<string, number>();
  let ellipsis: Dim[] | undefined;
  for (let t = 0; t < terms.length; t++) {
    const shape = ctx.shape(t);
    if (!shape) return single(typed(elemType, undefined));
    const term = terms[t]!;
    const [before, after] = term.includes('...') ? term.split('...') as [string, string] : [term, undefined];
    const named = before.length + (after?.length ?? 0);
    if (after === undefined ? named !== shape.length : named > shape.length) ctx.fail(`term '${term}' does not fit shape ${formatShape(shape)}`);
    const bind = (letter: string, d: Dim): void => {
      counts.set(letter, (counts.get(letter) ?? 0) + 1);
      const prior = letters.get(letter);
      if (prior === undefined || prior === 1) letters.set(letter, d);
      else if (typeof prior === 'number' && typeof d === 'number' && d !== 1 && d !== prior) ctx.fail(`letter '${letter}' is ${prior} and ${d}`);
    };
    [...before].forEach((l, i) => bind(l, shape[i]!));
    if (after !== undefined) {
      const middle = shape.slice(before.length, shape.length - after.length);
      ellipsis = ellipsis ? broadcastLoose(ellipsis, middle) : middle;
      [...after].forEach((l, i) => bind(l, shape[shape.length - after.length + i]!));
    }
  }
  const output = rhs ?? `${ellipsis ? '...' : ''}${[...counts].filter(([, c]) => c === 1).map(([l]) => l).sort().join('')}`;
  const shape: Dim[] = [];
  const [before, after] = output.includes('...') ? output.split('...') as [string, string] : [output, undefined];
  for (const l of before) shape.push(letters.get(l) ?? ctx.fail(`output letter '${l}' is not in the inputs`));
  if (after !== undefined) {
    shape.push(...(ellipsis ?? []));
    for (const l of after) shape.push(letters.get(l) ?? ctx.fail(`output letter '${l}' is not in the inputs`));
  }
  return single(typed(elemType, shape));
}

function broadcastLoose(a: Dim[], b: Dim[]): Dim[] {
  const rank = Math.max(a.length, b.length);
  return Array.from({ length: rank }, (_, i) => {
    const x = a[i - (rank - a.length)] ?? 1;
    const y = b[i - (rank - b.length)] ?? 1;
    return x === 1 ? y : y === 1 || x === y ? x : typeof x === 'number' ? x : typeof y === 'number' ? y : null;
  });
}
