import { closeSync, fstatSync, linkSync, readSync, statSync, unlinkSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { DataType, byteLengthOf, dataTypeName } from './dtype.js';
import { IrError } from './errors.js';

/**
 * Where a tensor's bytes live. External data is read on demand and never cached, so a model with
 * gigabytes of weights costs only what the current pass holds.
 */
export type TensorData =
  | { kind: 'bytes'; bytes: Uint8Array }
  /** `file` is the path (for messages and sizes); the bytes are read only through `source`, opened at load. */
  | { kind: 'external'; file: string; source: ExternalFile; offset: number; length: number; location: string }
  /** Computed when read (seeded synthetic weights, a quantized weight derived from an external one). */
  | { kind: 'lazy'; length: number; produce: () => Uint8Array };

/** An immutable constant tensor (initializer or attribute value). Little-endian, C order, int4 packed low nibble first. */
export class Tensor {
  constructor(
    readonly dtype: DataType,
    readonly dims: readonly number[],
    readonly data: TensorData,
  ) {
    const expected = byteLengthOf(dtype, numelOf(dims));
    const actual = data.kind === 'bytes' ? data.bytes.byteLength : data.length;
    if (dtype !== DataType.STRING && expected !== actual) {
      throw new IrError('malformed-model', `tensor ${dataTypeName(dtype)}[${dims.join('x')}] needs ${expected} bytes, has ${actual}`);
    }
  }

  /** A tensor over bytes already in memory (not copied). */
  static fromBytes(dtype: DataType, dims: readonly number[], bytes: Uint8Array): Tensor {
    return new Tensor(dtype, dims, { kind: 'bytes', bytes });
  }

  /** A tensor whose bytes are computed by `produce` each time they are read (must be deterministic). */
  static lazy(dtype: DataType, dims: readonly number[], produce: () => Uint8Array): Tensor {
    return new Tensor(dtype, dims, { kind: 'lazy', length: byteLengthOf(dtype, numelOf(dims)), produce });
  }

  /** A float32 tensor (the array is not copied). */
  static fromFloat32(dims: readonly number[], values: Float32Array): Tensor {
    return Tensor.fromBytes(DataType.FLOAT, dims, new Uint8Array(values.buffer, values.byteOffset, values.byteLength));
  }

  /** An int64 tensor from numbers or bigints. */
  static fromInt64(dims: readonly number[], values: ArrayLike<number | bigint>): Tensor {
    const array = BigInt64Array.from(Array.from(values, (v) => BigInt(v)));
    return Tensor.fromBytes(DataType.INT64, dims, new Uint8Array(array.buffer));
  }

  /** An int32 tensor. */
  static fromInt32(dims: readonly number[], values: ArrayLike<number>): Tensor {
    const array = Int32Array.from(values);
    return Tensor.fromBytes(DataType.INT32, dims, new Uint8Array(array.buffer));
  }

  /** Element count. */
  get size(): number {
    return numelOf(this.dims);
  }

  /** Bytes of storage. */
  get byteLength(): number {
    return this.data.kind === 'bytes' ? this.data.bytes.byteLength : this.data.length;
  }

  /** True when the bytes live in an external file. */
  get isExternal(): boolean {
    return this.data.kind === 'external';
  }

  /** True when the bytes are not held in memory (external or lazy): a big model's weights. */
  get isDeferred(): boolean {
    return this.data.kind !== 'bytes';
  }

  /** The raw bytes; external and lazy data are read or computed now (each call again: callers drop them when done). */
  bytes(): Uint8Array {
    if (this.data.kind === 'bytes') return this.data.bytes;
    if (this.data.kind === 'lazy') {
      const bytes = this.data.produce();
      if (bytes.byteLength !== this.data.length) throw new IrError('invalid-argument', `lazy tensor produced ${bytes.byteLength} bytes, expected ${this.data.length}`);
      return bytes;
    }
    return this.data.source.read(this.data.offset, this.data.length);
  }

  /**
   * The values of an external FLOAT tensor read into `into` (its first byteLength bytes; a caller's reused
   * memory, a worker's weight slot), as a Float32Array over it; any other tensor gives toFloat32(), a new array.
   */
  toFloat32In(into: Uint8Array): Float32Array {
    if (this.data.kind !== 'external' || this.dtype !== DataType.FLOAT || into.byteLength < this.data.length || into.byteOffset % 4 !== 0) return this.toFloat32();
    const bytes = this.data.source.read(this.data.offset, this.data.length, into.subarray(0, this.data.length));
    return new Float32Array(bytes.buffer, bytes.byteOffset, this.size);
  }

  /** The values as float32 (converting from f16, f64 and integer types). */
  toFloat32(): Float32Array {
    const bytes = this.bytes();
    switch (this.dtype) {
      case DataType.FLOAT:
        return view(bytes, Float32Array, 4);
      case DataType.DOUBLE:
        return Float32Array.from(view(bytes, Float64Array, 8));
      case DataType.FLOAT16:
        return Float32Array.from(view(bytes, Uint16Array, 2), halfToFloat);
      default:
        return Float32Array.from(this.toNumbers());
    }
  }

  /** The values as numbers (int64 beyond 2^53 loses precision; use toBigInt64 for exactness). */
  toNumbers(): number[] {
    const bytes = this.bytes();
    switch (this.dtype) {
      case DataType.FLOAT:
        return Array.from(view(bytes, Float32Array, 4));
      case DataType.DOUBLE:
        return Array.from(view(bytes, Float64Array, 8));
      case DataType.FLOAT16:
        return Array.from(view(bytes, Uint16Array, 2), halfToFloat);
      case DataType.INT8:
        return Array.from(new Int8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength));
      case DataType.UINT8:
      case DataType.BOOL:
        return Array.from(bytes);
      case DataType.INT16:
        return Array.from(view(bytes, Int16Array, 2));
      case DataType.UINT16:
        return Array.from(view(bytes, Uint16Array, 2));
      case DataType.INT32:
        return Array.from(view(bytes, Int32Array, 4));
      case DataType.UINT32:
        return Array.from(view(bytes, Uint32Array, 4));
      case DataType.INT64:
        return Array.from(view(bytes, BigInt64Array, 8), Number);
      case DataType.UINT64:
        return Array.from(view(bytes, BigUint64Array, 8), Number);
      case DataType.INT4:
      case DataType.UINT4:
        return unpackInt4(bytes, this.size, this.dtype === DataType.INT4);
      default:
        throw new IrError('invalid-argument', `cannot read ${dataTypeName(this.dtype)} tensor as numbers`);
    }
  }

  /** The values of an int64 tensor, exactly. */
  toBigInt64(): BigInt64Array {
    if (this.dtype !== DataType.INT64) throw new IrError('invalid-argument', `expected i64 tensor, got ${dataTypeName(this.dtype)}`);
    return view(this.bytes(), BigInt64Array, 8);
  }

  /** A short deterministic summary for dumps: `f32[128x384] sha1:… min:… max:…` (never raw data). */
  summary(): string {
    const shape = `${dataTypeName(this.dtype)}[${this.dims.join('x')}]`;
    const bytes = this.bytes();
    const sha = createHash('sha1').update(bytes).digest('hex').slice(0, 12);
    if (this.dtype === DataType.STRING || this.size === 0) return `${shape} sha1:${sha}`;
    if (this.size <= 8) return `${shape} [${this.toNumbers().map(formatNumber).join(', ')}]`;
    let min = Infinity;
    let max = -Infinity;
    for (const v of this.dtype === DataType.FLOAT ? this.toFloat32() : this.toNumbers()) {
      if (v < min) min = v;
      if (v > max) max = v;
    }
    return `${shape} sha1:${sha} min:${formatNumber(min)} max:${formatNumber(max)}`;
  }
}

/** Closes a descriptor once nothing refers to its ExternalFile any more (the process closes the rest at exit). */
const descriptors = new FinalizationRegistry<number>((fd) => {
  try {
    closeSync(fd);
  } catch {
    // already closed: nothing to release
  }
});

/**
 * An external data file opened once, after its path was validated: every read goes through this descriptor,
 * so replacing the path later (a symlink swapped in mid-compile) cannot change what is read. Shared by every
 * tensor of the file and by clones of the model; the descriptor closes when the last of them is dropped.
 */
export class ExternalFile {
  /** Size in bytes when opened. */
  readonly size: number;

  /** Takes ownership of `fd`, an open regular file; `path` names it in messages. */
  constructor(
    readonly path: string,
    private readonly fd: number,
  ) {
    this.size = fstatSync(fd).size;
    descriptors.register(this, fd);
  }

  /**
   * Hard-links the opened file at `path` (for an ONNX Runtime session that reads external data in place); false,
   * with nothing left behind, where the file cannot be linked (another file system) or its path now names another file.
   */
  linkTo(path: string): boolean {
    try {
      linkSync(this.path, path);
    } catch {
      return false;
    }
    const opened = fstatSync(this.fd);
    const linked = statSync(path);
    if (opened.dev === linked.dev && opened.ino === linked.ino) return true;
    unlinkSync(path);
    return false;
  }

  /**
   * Reads `length` bytes at `offset` into `out` (default: a new array); a file that shrank since it was opened is
   * an error, never short data.
   */
  read(offset: number, length: number, out: Uint8Array = new Uint8Array(Buffer.allocUnsafeSlow(length).buffer, 0, length)): Uint8Array {
    // A new array is not zero-filled first (every byte is read into it, or this throws); a plain Uint8Array, not a pooled Buffer.
    let done = 0;
    while (done < length) {
      const n = readSync(this.fd, out, done, length - done, offset + done);
      if (n === 0) throw new IrError('external-data-range', `external data ends before offset ${offset + length}`, this.path);
      done += n;
    }
    return out;
  }
}

/** Element count of a static shape. */
export function numelOf(dims: readonly number[]): number {
  let n = 1;
  for (const d of dims) n *= d;
  return n;
}

/** Formats a number for dumps: stable, short, exact enough to spot changes. */
export function formatNumber(value: number): string {
  if (Number.isInteger(value)) return String(value);
  return Number(value.toPrecision(6)).toString();
}

/** Packs signed or unsigned 4-bit values two to a byte, element 2j in the low nibble (ONNX and ORT order). */
export function packInt4(values: ArrayLike<number>): Uint8Array {
  const out = new Uint8Array(Math.ceil(values.length / 2));
  const pairs = values.length >> 1;
  for (let j = 0; j < pairs; j++) out[j] = (values[2 * j]! & 0x0f) | ((values[2 * j + 1]! & 0x0f) << 4);
  if (values.length & 1) out[pairs] = values[values.length - 1]! & 0x0f;
  return out;
}

/** Inverse of packInt4. */
export function unpackInt4(bytes: Uint8Array, count: number, signed: boolean): number[] {
  const out = new Array<number>(count);
  for (let i = 0; i < count; i++) {
    const nibble = i & 1 ? bytes[i >> 1]! >> 4 : bytes[i >> 1]! & 0x0f;
    out[i] = signed && nibble >= 8 ? nibble - 16 : nibble;
  }
  return out;
}

/** IEEE half (as uint16 bits) to number. */
export function halfToFloat(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >> 10) & 0x1f;
  const fraction = bits & 0x3ff;
  if (exponent === 0) return sign * 2 ** -14 * (fraction / 1024);
  if (exponent === 31) return fraction ? NaN : sign * Infinity;
  return sign * 2 ** (exponent - 15) * (1 + fraction / 1024);
}

/** One float32 and its bits, the scratch `floatToHalf` reads a value's bits through. */
const FLOAT32 = new Float32Array(1);
const FLOAT32_BITS = new Uint32Array(FLOAT32.buffer);

/**
 * `value` (as float32) to IEEE half bits, the inverse of halfToFloat: round to nearest, ties to even, except at
 * the ends of the finite range — beyond ±65504 saturates (no Inf from a finite weight or timestep; IEEE would
 * round 65520 up to Inf) and a nonzero value below the smallest subnormal 2^-24 becomes it (an ε guard such as
 * `max(scale, 1e-8)` stays a guard instead of turning into 0). ±0 and ±Inf are kept, NaN is the quiet NaN.
 */
export function floatToHalf(value: number): number {
  FLOAT32[0] = value;
  const x = FLOAT32_BITS[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exponent = (x >>> 23) & 0xff;
  let mantissa = x & 0x7fffff;
  if (exponent === 0xff) return sign | 0x7c00 | (mantissa ? 0x200 : 0);
  const e = exponent - 112; // the half exponent field: float32 bias 127, half bias 15
  if (e >= 31) return sign | 0x7bff;
  if (e <= 0) {
    // A half subnormal: the 24-bit significand shifted right, rounded to nearest even, never to 0 from nonzero.
    if (e < -10) return (x & 0x7fffffff) === 0 ? sign : sign | 1;
    mantissa |= 0x800000;
    const shift = 14 - e;
    let half = mantissa >>> shift;
    const rest = mantissa & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (rest > halfway || (rest === halfway && half & 1)) half++;
    return sign | Math.max(half, 1);
  }
  let half = (e << 10) | (mantissa >>> 13);
  const rest = mantissa & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && half & 1)) half++; // a carry into the exponent is the right rounding
  return (half & 0x7fff) >= 0x7c00 ? sign | 0x7bff : sign | half;
}

type TypedArrayConstructor<T> = { new (buffer: ArrayBufferLike, byteOffset: number, length: number): T };

function view<T>(bytes: Uint8Array, ctor: TypedArrayConstructor<T>, width: number): T {
  const a = aligned(bytes, width);
  return new ctor(a.buffer, a.byteOffset, a.byteLength / width);
}

/** Typed-array views need aligned offsets; copies only when the source is misaligned. */
function aligned(bytes: Uint8Array, width: number): Uint8Array {
  return bytes.byteOffset % width === 0 ? bytes : new Uint8Array(bytes); // copy (Buffer.slice would not)
}
