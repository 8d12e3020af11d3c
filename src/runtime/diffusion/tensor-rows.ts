/**
 * Batch rows of model feeds: the sampler stacks [unconditional; conditional] rows for CFG, calibration cuts
 * the recorded rows out of the sampler's batches and stacks them into calibration batches, and the cache
 * stores them. Axis 0 is the batch axis; a rank-0 tensor (a scalar timestep) is one value shared by the whole
 * batch, so it is taken from the first part when stacking and kept as it is when slicing.
 */
import type { HostTensor, TensorMap } from '../../ir/executor.js';

type Data = HostTensor['data'];

function allocate(like: Data, length: number): Data {
  return new (like.constructor as new (n: number) => Data)(length);
}

/** Rows [start, end) of `tensor` (a copy); a scalar comes back as it is. */
export function sliceRows(tensor: HostTensor, start: number, end: number): HostTensor {
  if (tensor.dims.length === 0) return tensor;
  const per = tensor.data.length / tensor.dims[0]!;
  return { dtype: tensor.dtype, dims: [end - start, ...tensor.dims.slice(1)], data: tensor.data.slice(start * per, end * per) as Data };
}

/** The tensors stacked on axis 0 (same dtype and per-row shape); scalars must agree and stay one scalar. */
export function stackRows(tensors: readonly HostTensor[]): HostTensor {
  const first = tensors[0]!;
  if (first.dims.length === 0) {
    if (tensors.some((t) => t.dims.length !== 0 || t.data[0] !== first.data[0])) throw new Error('cannot stack rows with different scalar values (a rank-0 input is shared by the whole batch)');
    return first;
  }
  const rows = tensors.reduce((n, t) => n + t.dims[0]!, 0);
  const data = allocate(first.data, tensors.reduce((n, t) => n + t.data.length, 0));
  let offset = 0;
  for (const t of tensors) {
    if (t.dtype !== first.dtype || t.dims.slice(1).join() !== first.dims.slice(1).join()) throw new Error(`cannot stack ${t.dtype}[${t.dims.join(',')}] onto ${first.dtype}[${first.dims.join(',')}]`);
    (data as Float32Array).set(t.data as Float32Array, offset);
    offset += t.data.length;
  }
  return { dtype: first.dtype, dims: [rows, ...first.dims.slice(1)], data };
}

/** Rows [start, end) of every feed. */
export function sliceFeeds(feeds: TensorMap, start: number, end: number): TensorMap {
  return Object.fromEntries(Object.entries(feeds).map(([name, t]) => [name, sliceRows(t, start, end)]));
}

/** Feed maps with the same names stacked row-wise, in order. */
export function stackFeeds(parts: readonly TensorMap[]): TensorMap {
  const names = Object.keys(parts[0] ?? {});
  return Object.fromEntries(names.map((name) => [name, stackRows(parts.map((p) => p[name]!))]));
}
