/**
 * The SIMD kernels of round-to-nearest weight quantization (weight-kernels.wat) behind typed-array calls: the
 * min-max scan of every cell and the codes as stored bytes (int8/uint8, or int4/uint4 nibbles). JS runs one
 * element at a time, ~4 ns each for either loop; these run 16 at a time, the same float64 arithmetic, the same
 * bits (test/passes/weight-kernels.test.ts). A weight is copied into the module's memory a chunk at a time (whole
 * rows, ≤ CHUNK_ELEMENTS values unless one row is longer), so its memory stays a few MiB per thread.
 *
 * The cells are passes/weight-quantizer.ts' (cell g·N + n is group g of output channel n; per-tensor has one),
 * whose types extend these. Each thread instantiates the module once, on first use. The MatMulNBits packing of
 * int4 codes (backends/matmul-nbits.ts) runs here too.
 */
import { WEIGHT_KERNELS_WASM } from './weight-kernels.wasm.js';

/** A weight as an N×K matrix over its stored values. */
export interface WeightMatrix {
  values: Float32Array;
  N: number;
  K: number;
  /** Stored [K][N] (element (n, k) at k·N + n, MatMul's W); otherwise [N][K] (at n·K + k). */
  kMajor: boolean;
  /** The weight tensor's name, for errors. */
  name?: string;
}

/** Scales and zero points of every cell, and the cell geometry. */
export interface CellParams {
  /** Values of one channel that share a cell (K for per-channel and per-tensor, the group size for groups). */
  cellLength: number;
  /** Cells per channel (ceil(K / cellLength): the last may be partial); 1 for per-tensor, where the single cell spans all channels. */
  cellsPerRow: number;
  /** Scale of cell g·N + n (length 1 for per-tensor). */
  scale: Float32Array;
  /** Zero point of cell g·N + n. */
  zeroPoint: Int32Array;
}

/** The integer range of the codes. */
export interface IntRange {
  qmin: number;
  qmax: number;
}

interface KernelFunctions {
  minmax_columns(vals: number, rows: number, n: number, min: number, max: number): number;
  minmax_groups(vals: number, rows: number, k: number, size: number, min: number, max: number): number;
  quantize_columns(vals: number, rows: number, n: number, scale: number, zp: number, out: number, qmin: number, qmax: number, nibbles: number): void;
  quantize_groups(vals: number, rows: number, k: number, size: number, scale: number, zp: number, out: number, qmin: number, qmax: number, nibbles: number): void;
  pack_nibbles_columns(raw: number, k: number, n: number, out: number, rowBytes: number, flip: number): void;
  pack_nibbles_rows(raw: number, k: number, n: number, out: number, rowBytes: number, flip: number): void;
}

/** This thread's instance: its functions, the memory they address and where the driver's own regions start. */
interface Kernels {
  fn: KernelFunctions;
  memory: WebAssembly.Memory;
  /** Bytes below this offset are the memory owner's (a worker's weight slots); the driver's regions lie above. */
  base: number;
}

/** Values copied into the module per call (4 MiB of float32). */
const CHUNK_ELEMENTS = 1 << 20;

/** Pages a kernel memory may grow to (the whole 32-bit space; a shared memory must declare its maximum). */
const MAX_PAGES = 65536;

let loaded: Kernels | undefined;

/** A shared memory for the kernels of `bytes` (rounded up to pages). */
export function kernelMemory(bytes: number): WebAssembly.Memory {
  return new WebAssembly.Memory({ initial: Math.max(1, Math.ceil(bytes / 65536)), maximum: MAX_PAGES, shared: true });
}

/**
 * Makes this thread's kernels run in `memory`, their regions from `base` up; what lies below is the caller's (a
 * weight-quantizer worker's slots, which the main thread reads weights into). Call before any kernel is used.
 */
export function bindKernelMemory(memory: WebAssembly.Memory, base: number): void {
  if (loaded) throw new Error('the weight kernels of this thread are already instantiated');
  loaded = instantiate(memory, base);
}

function instantiate(memory: WebAssembly.Memory, base: number): Kernels {
  const module = new WebAssembly.Module(Buffer.from(WEIGHT_KERNELS_WASM, 'base64'));
  return { fn: new WebAssembly.Instance(module, { env: { memory } }).exports as unknown as KernelFunctions, memory, base };
}

function kernels(): Kernels {
  loaded ??= instantiate(kernelMemory(65536), 0);
  return loaded;
}

/**
 * The byte offset of `values` in the kernels' memory when they lie there already (a weight read into a worker's
 * slot: nothing to copy), else undefined.
 */
function offsetInMemory(k: Kernels, values: Float32Array): number | undefined {
  return values.buffer === k.memory.buffer ? values.byteOffset : undefined;
}

/** Byte offsets of one call's regions (the values, unless they lie in the memory already; two float64 cell arrays; the output bytes), the memory grown to hold them. */
interface Regions {
  vals: number;
  a: number;
  b: number;
  out: number;
  memory: SharedArrayBuffer;
}

function regions(k: Kernels, elements: number, cells: number, copiesValues: boolean): Regions {
  const align = (n: number) => Math.ceil(n / 16) * 16;
  const vals = align(k.base);
  const a = align(vals + (copiesValues ? 4 * elements : 0));
  const b = align(a + 8 * cells);
  const out = align(b + 8 * cells);
  const end = out + elements;
  const have = k.memory.buffer.byteLength;
  if (end > have) k.memory.grow(Math.ceil((end - have) / 65536));
  return { vals, a, b, out, memory: k.memory.buffer as unknown as SharedArrayBuffer };
}

/** One chunk of a weight: elements [start, start + count) and its cells, in the layout a kernel reads. */
interface Chunk {
  start: number;
  count: number;
  /** columns: `rows` rows of n = N values, cells slab + j; groups: `rows` rows of `k` values in groups of `size`. */
  layout: 'columns' | 'groups';
  rows: number;
  /** Values a row: N (columns) or the row's length (groups). */
  width: number;
  size: number;
  /** columns: the first cell of the slab (g·N); groups: the cell of (row r, group g) is cellOf(r, g). */
  slab: number;
  cellOf: (r: number, g: number) => number;
  groups: number;
}

/** The chunks of `weight` with cells of `cellLength` values (per-tensor: one cell), in storage order. */
function* chunksOf(weight: WeightMatrix, cellLength: number, perTensor: boolean): Generator<Chunk> {
  const { N, K } = weight;
  if (perTensor) {
    const total = N * K;
    for (let start = 0; start < total; start += CHUNK_ELEMENTS) {
      const count = Math.min(CHUNK_ELEMENTS, total - start);
      yield { start, count, layout: 'groups', rows: 1, width: count, size: count, slab: 0, cellOf: () => 0, groups: 1 };
    }
  } else if (weight.kMajor) {
    // Row k holds the N channels of group floor(k / cellLength): a chunk is rows of one group.
    const rowsPerChunk = Math.max(1, Math.floor(CHUNK_ELEMENTS / N));
    for (let first = 0; first < K; first += cellLength) {
      const last = Math.min(K, first + cellLength);
      for (let k = first; k < last; k += rowsPerChunk) {
        const rows = Math.min(rowsPerChunk, last - k);
        yield { start: k * N, count: rows * N, layout: 'columns', rows, width: N, size: 0, slab: (first / cellLength) * N, cellOf: () => 0, groups: 0 };
      }
    }
  } else {
    // Row n holds channel n's K values, cut into groups: a chunk is whole rows.
    const groups = Math.ceil(K / cellLength);
    const rowsPerChunk = Math.max(1, Math.floor(CHUNK_ELEMENTS / K));
    for (let n = 0; n < N; n += rowsPerChunk) {
      const rows = Math.min(rowsPerChunk, N - n);
      yield { start: n * K, count: rows * K, layout: 'groups', rows, width: K, size: cellLength, slab: 0, cellOf: (r, g) => g * N + n + r, groups };
    }
  }
}

/**
 * A chunk ready for a kernel: its cell count, its regions, and the address of its values — where they lie already
 * (`resident`, their byte offset), or copied to the values region.
 */
function placeChunk(k: Kernels, weight: WeightMatrix, chunk: Chunk, resident: number | undefined): { cells: number; at: Regions; vals: number } {
  const cells = chunk.layout === 'columns' ? chunk.width : chunk.rows * chunk.groups;
  const at = regions(k, chunk.count, cells, resident === undefined);
  if (resident !== undefined) return { cells, at, vals: resident + 4 * chunk.start };
  new Float32Array(at.memory, at.vals, chunk.count).set(weight.values.subarray(chunk.start, chunk.start + chunk.count));
  return { cells, at, vals: at.vals };
}

/** Visits a groups chunk's cells: `local`, its index in the chunk's cell arrays (row by row), and `cell`, the weight's. */
function forEachGroupCell(chunk: Chunk, visit: (local: number, cell: number) => void): void {
  for (let r = 0, local = 0; r < chunk.rows; r++) for (let g = 0; g < chunk.groups; g++, local++) visit(local, chunk.cellOf(r, g));
}

/**
 * Widens `min` and `max` (one entry a cell, starting at 0) by every value of `weight`, as `v < min` and `v > max`
 * compare (a NaN widens nothing); returns false when a value was NaN.
 */
export function scanCellRanges(weight: WeightMatrix, cellLength: number, perTensor: boolean, min: Float32Array, max: Float32Array): boolean {
  const k = kernels();
  const resident = offsetInMemory(k, weight.values);
  let sawNaN = 0;
  for (const chunk of chunksOf(weight, cellLength, perTensor)) {
    const { cells, at, vals } = placeChunk(k, weight, chunk, resident);
    const lo = new Float32Array(at.memory, at.a, cells);
    const hi = new Float32Array(at.memory, at.b, cells);
    if (chunk.layout === 'columns') {
      lo.set(min.subarray(chunk.slab, chunk.slab + cells));
      hi.set(max.subarray(chunk.slab, chunk.slab + cells));
      sawNaN |= k.fn.minmax_columns(vals, chunk.rows, chunk.width, at.a, at.b);
      min.set(lo, chunk.slab);
      max.set(hi, chunk.slab);
    } else {
      sawNaN |= k.fn.minmax_groups(vals, chunk.rows, chunk.width, chunk.size, at.a, at.b);
      // A per-tensor cell spans chunks: each chunk's range from 0 widens it.
      forEachGroupCell(chunk, (local, cell) => {
        if (lo[local]! < min[cell]!) min[cell] = lo[local]!;
        if (hi[local]! > max[cell]!) max[cell] = hi[local]!;
      });
    }
  }
  return sawNaN === 0;
}

/**
 * The codes of `weight` on `params`, as stored: one byte each (their low 8 bits, int8 or uint8), or with `nibbles`
 * two to a byte, low nibble first. Undefined when nibbles of this layout would pair values of two runs (an odd N of
 * a [K][N] weight, an odd K or group of a [N][K] one): weight-quantizer.ts' scalar loop packs those.
 */
export function storedCodes(weight: WeightMatrix, params: CellParams, range: IntRange, nibbles: boolean): Uint8Array | undefined {
  const { N, K } = weight;
  // One scale for the whole weight (per-tensor, or a single channel's single cell): one run, as forEachRun walks it.
  const perTensor = params.scale.length === 1;
  if (nibbles && !perTensor && (weight.kMajor ? N % 2 !== 0 : K % 2 !== 0 || (params.cellLength % 2 !== 0 && params.cellsPerRow > 1))) return undefined;
  const k = kernels();
  const resident = offsetInMemory(k, weight.values);
  const out = new Uint8Array(nibbles ? Math.ceil((N * K) / 2) : N * K);
  for (const chunk of chunksOf(weight, params.cellLength, perTensor)) {
    const { cells, at, vals } = placeChunk(k, weight, chunk, resident);
    const scale = new Float64Array(at.memory, at.a, cells);
    const zeroPoint = new Float64Array(at.memory, at.b, cells);
    if (chunk.layout === 'columns') {
      scale.set(params.scale.subarray(chunk.slab, chunk.slab + cells));
      zeroPoint.set(params.zeroPoint.subarray(chunk.slab, chunk.slab + cells));
      k.fn.quantize_columns(vals, chunk.rows, chunk.width, at.a, at.b, at.out, range.qmin, range.qmax, nibbles ? 1 : 0);
    } else {
      forEachGroupCell(chunk, (local, cell) => {
        scale[local] = params.scale[cell]!;
        zeroPoint[local] = params.zeroPoint[cell]!;
      });
      k.fn.quantize_groups(vals, chunk.rows, chunk.width, chunk.size, at.a, at.b, at.out, range.qmin, range.qmax, nibbles ? 1 : 0);
    }
    const bytes = nibbles ? Math.ceil(chunk.count / 2) : chunk.count;
    out.set(new Uint8Array(at.memory, at.out, bytes), nibbles ? chunk.start / 2 : chunk.start);
  }
  return out;
}

/**
 * MatMulNBits' B bytes from int4 codes `raw` (two to a byte, low nibble first) stored [K][N] or, `transposed`,
 * [N][K]: row n of the result, `rowBytes` ≥ K/2 bytes (the rest 0), holds column n's codes along k two to a
 * byte, each byte XOR-ed with `flip`. Needs K even and, for [K][N], N even; other shapes are the caller's.
 */
export function packNibblesByChannel(raw: Uint8Array, K: number, N: number, rowBytes: number, transposed: boolean, flip: number): Uint8Array {
  const k = kernels();
  const at = regions(k, N * rowBytes, Math.ceil(raw.length / 16), false);
  const memory = new Uint8Array(at.memory);
  // The raw codes in the first cell array's place (16 bytes a cell), B in the output's, zeroed for the padding.
  memory.set(raw, at.a);
  memory.fill(0, at.out, at.out + N * rowBytes);
  (transposed ? k.fn.pack_nibbles_rows : k.fn.pack_nibbles_columns)(at.a, K, N, at.out, rowBytes, flip);
  return memory.slice(at.out, at.out + N * rowBytes);
}
