/**
 * NumPy `.npy` files, the format precomputed conditioning (`--conditioning DIR`) comes in: format versions 1
 * and 2, little-endian float32 ('<f4') and int64 ('<i8'), C order. Anything else — Fortran order, another
 * dtype, a truncated payload, a malformed header — is an NpyError naming the file and what is wrong.
 */
import { readFileSync, writeFileSync } from 'node:fs';

/** A decoded array. */
export type NpyArray = { dtype: 'float32'; shape: number[]; data: Float32Array } | { dtype: 'int64'; shape: number[]; data: BigInt64Array };

/** A file that is not an .npy array qcompile reads. */
export class NpyError extends Error {
  constructor(file: string, message: string) {
    super(`${file}: ${message}`);
    this.name = 'NpyError';
  }
}

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY
const DESCRS = { '<f4': 'float32', '<i8': 'int64' } as const;

/** Reads an .npy file. */
export function readNpy(file: string): NpyArray {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(file);
  } catch (error) {
    throw new NpyError(file, `cannot read it: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
  return decodeNpy(bytes, file);
}

/** Decodes .npy bytes; `file` names them in errors. */
export function decodeNpy(bytes: Uint8Array, file: string): NpyArray {
  if (bytes.length < 10 || MAGIC.some((b, i) => bytes[i] !== b)) throw new NpyError(file, 'not an .npy file (no \\x93NUMPY magic)');
  const major = bytes[6]!;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (major !== 1 && major !== 2) throw new NpyError(file, `.npy format version ${major}.${bytes[7]} is not supported (1 and 2 are)`);
  const headerStart = major === 1 ? 10 : 12;
  if (bytes.length < headerStart) throw new NpyError(file, 'truncated header');
  const headerLength = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  const dataStart = headerStart + headerLength;
  if (bytes.length < dataStart) throw new NpyError(file, 'truncated header');
  const header = new TextDecoder('latin1').decode(bytes.subarray(headerStart, dataStart));
  const descr = /'descr'\s*:\s*'([^']*)'/.exec(header)?.[1];
  const fortran = /'fortran_order'\s*:\s*(True|False)/.exec(header)?.[1];
  const shapeText = /'shape'\s*:\s*\(([^)]*)\)/.exec(header)?.[1];
  if (descr === undefined || fortran === undefined || shapeText === undefined) throw new NpyError(file, `malformed header ${JSON.stringify(header.trim())}`);
  const dtype = DESCRS[descr as keyof typeof DESCRS];
  if (!dtype) throw new NpyError(file, `dtype '${descr}' is not supported (${Object.keys(DESCRS).join(', ')} are)`);
  if (fortran === 'True') throw new NpyError(file, 'Fortran-order arrays are not supported: save it in C order');
  const parts = shapeText.split(',').map((s) => s.trim()).filter((s) => s.length > 0);
  if (parts.some((s) => !/^\d+$/.test(s))) throw new NpyError(file, `malformed shape (${shapeText})`);
  const shape = parts.map(Number);
  const count = shape.reduce((a, b) => a * b, 1);
  const width = dtype === 'float32' ? 4 : 8;
  if (bytes.length - dataStart !== count * width) throw new NpyError(file, `holds ${bytes.length - dataStart} data bytes, but shape (${shape.join(', ')}) of ${descr} needs ${count * width}`);
  // Copy the payload (a Buffer's slice would share its pool): typed arrays need aligned offsets, and the caller owns the result.
  const payload = new Uint8Array(bytes.subarray(dataStart)).buffer;
  return dtype === 'float32' ? { dtype, shape, data: new Float32Array(payload) } : { dtype, shape, data: new BigInt64Array(payload) };
}

/** Encodes an array as .npy (format 1.0, header padded to a multiple of 64 bytes as NumPy writes it). */
export function encodeNpy(array: NpyArray): Uint8Array {
  const count = array.shape.reduce((a, b) => a * b, 1);
  if (count !== array.data.length) throw new Error(`encodeNpy: shape (${array.shape.join(', ')}) holds ${count} values, the data ${array.data.length}`);
  const descr = array.dtype === 'float32' ? '<f4' : '<i8';
  const shape = array.shape.length === 1 ? `(${array.shape[0]},)` : `(${array.shape.join(', ')})`;
  let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${shape}, }`;
  header = header.padEnd(Math.ceil((10 + header.length + 1) / 64) * 64 - 10 - 1, ' ') + '\n';
  const out = new Uint8Array(10 + header.length + array.data.byteLength);
  out.set(MAGIC, 0);
  out[6] = 1;
  out[7] = 0;
  new DataView(out.buffer).setUint16(8, header.length, true);
  out.set(new TextEncoder().encode(header), 10);
  out.set(new Uint8Array(array.data.buffer, array.data.byteOffset, array.data.byteLength), 10 + header.length);
  return out;
}

/** Writes an array as an .npy file. */
export function writeNpy(file: string, array: NpyArray): void {
  writeFileSync(file, encodeNpy(array));
}
