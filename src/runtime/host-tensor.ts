/** Typed host tensors and loaders for the fixtures' raw little-endian `.bin` files described by a JSON manifest. */
import { readFileSync, realpathSync } from 'node:fs';
import { dirname, isAbsolute, relative, resolve, sep } from 'node:path';

/** Element types the runtime layer moves between files, ORT and samplers. */
export type HostDtype = 'float32' | 'float64' | 'int64' | 'int32' | 'uint8' | 'int8';

/** A dense C-order tensor in host memory. */
export interface HostTensor {
  dtype: HostDtype;
  dims: number[];
  data: Float32Array | Float64Array | BigInt64Array | Int32Array | Uint8Array | Int8Array;
}

const BYTES: Record<HostDtype, number> = { float32: 4, float64: 8, int64: 8, int32: 4, uint8: 1, int8: 1 };

/** Number of elements of a shape. */
export function elementCount(dims: readonly number[]): number {
  return dims.reduce((a, b) => a * b, 1);
}

/** Reads a raw little-endian C-order file as `dtype` with `dims`; the byte size must match exactly. */
export function readRawTensor(path: string, dtype: HostDtype, dims: number[]): HostTensor {
  const bytes = readFileSync(path);
  const expected = elementCount(dims) * BYTES[dtype];
  if (bytes.byteLength !== expected) throw new Error(`${path}: ${bytes.byteLength} bytes, expected ${expected} for ${dtype}[${dims.join(',')}]`);
  // Copy into a fresh, aligned buffer: Node's pooled Buffers may start at an offset not divisible by 8.
  const buffer = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
  return { dtype, dims, data: typedView(dtype, buffer) };
}

function typedView(dtype: HostDtype, buffer: ArrayBuffer): HostTensor['data'] {
  switch (dtype) {
    case 'float32': return new Float32Array(buffer);
    case 'float64': return new Float64Array(buffer);
    case 'int64': return new BigInt64Array(buffer);
    case 'int32': return new Int32Array(buffer);
    case 'uint8': return new Uint8Array(buffer);
    case 'int8': return new Int8Array(buffer);
  }
}

interface ManifestEntry { file: string; dtype: string; shape: number[] }

/**
 * Loads every tensor a fixture manifest lists, by key. Manifests nest entries under `files`, `inputs` or
 * `outputs`; an entry is any object with `file`, `dtype` and `shape`.
 */
export function loadManifestTensors(manifestPath: string): Record<string, HostTensor> {
  const manifest = JSON.parse(readFileSync(manifestPath, 'utf8')) as Record<string, unknown>;
  const out: Record<string, HostTensor> = {};
  for (const section of ['files', 'inputs', 'outputs']) {
    const entries = manifest[section] as Record<string, ManifestEntry> | undefined;
    for (const [key, entry] of Object.entries(entries ?? {})) {
      if (!(entry.dtype in BYTES)) throw new Error(`${manifestPath}: '${key}' has unsupported dtype ${entry.dtype}`);
      out[key] = readRawTensor(manifestFile(manifestPath, entry.file), entry.dtype as HostDtype, entry.shape);
    }
  }
  return out;
}

/**
 * The path of a file a manifest names: relative, and inside the manifest's folder once symlinks are resolved
 * (a manifest cannot make us read `/etc/passwd` or `../../secret`). Throws naming the manifest and the entry.
 */
export function manifestFile(manifestPath: string, file: string): string {
  const folder = resolve(dirname(manifestPath));
  const path = resolve(folder, file);
  const rel = relative(folder, path);
  const escape = () => new Error(`${manifestPath}: file '${file}' is outside the manifest's folder; refusing to read it`);
  if (isAbsolute(file) || file.includes('\0') || rel === '' || rel.startsWith('..') || isAbsolute(rel)) throw escape();
  let real: string;
  try {
    real = realpathSync(path);
  } catch {
    throw new Error(`${manifestPath}: file '${file}' does not exist`);
  }
  if (!real.startsWith(realpathSync(folder) + sep)) throw escape();
  return real;
}
