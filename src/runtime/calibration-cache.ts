/**
 * The calibration-set cache (`calibrate { cache "FILE" }`): the recorded feeds of a calibration set (every
 * model input, conditioning and CFG's unconditional rows included), keyed by the FP model's sha256, the sha256
 * of the conditioning tensors, the guidance and every setting that changes the set, so a recompile skips the
 * sampler. File: magic, u32 header length, JSON header (the key, per row its timestep and position, per batch
 * its tensors' names, dtypes, shapes and offsets), zero padding to 8, the tensors' bytes (each at a multiple of
 * 8), and last the sha256 of all the bytes before it. A stale, damaged or edited cache is refused with a
 * one-line reason (the caller recomputes it); a file at the cache path that is not a calibration cache at all
 * is never read as one nor overwritten.
 */
import { createHash } from 'node:crypto';
import { closeSync, existsSync, openSync, readSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { OutputPathError, regularFileOrNothing } from '../ir/atomic-file.js';
import type { Model } from '../ir/core.js';
import type { HostTensor, TensorMap } from '../ir/executor.js';
import type { CalibrationSet, StepStrategy } from './calibration.js';
import type { ConditioningSet } from './diffusion/conditioning.js';
import type { NoiseScheduleConfig, SamplerSpec } from './diffusion/scheduler.js';

/** Everything that determines a calibration set besides the model. */
export interface CalibrationKey {
  modelSha256: string;
  strategy: StepStrategy;
  seed: number;
  schedule: NoiseScheduleConfig;
  sampler: SamplerSpec;
  samples: number;
  batch: number;
  /** `conditioningSha256` of the set the trajectories were conditioned with. */
  conditioning: string;
  guidance: number;
}

interface StoredTensor {
  name: string;
  dtype: HostTensor['dtype'];
  dims: number[];
  offset: number;
}

interface CacheHeader extends CalibrationKey {
  format: 'qcompile-calibration-v4';
  timesteps: number[];
  positions: number[];
  batches: StoredTensor[][];
}

/** The result of reading a cache: the set, or why it cannot be used. */
export type CacheLookup = { ok: true; set: CalibrationSet } | { ok: false; reason: string };

const MAGIC = 'QCALIB4\n';
/** Every version's magic starts so: an older cache at the path may be replaced, anything else may not. */
const MAGIC_FAMILY = 'QCALIB';
const CHECKSUM_BYTES = 32;
const KEY_FIELDS = ['strategy', 'seed', 'schedule', 'sampler', 'samples', 'batch', 'conditioning', 'guidance'] as const;

const ARRAYS: Record<HostTensor['dtype'], { new (buffer: ArrayBuffer, offset: number, length: number): HostTensor['data']; BYTES_PER_ELEMENT: number }> = {
  float32: Float32Array,
  int64: BigInt64Array,
  int32: Int32Array,
  int8: Int8Array,
  uint8: Uint8Array,
  bool: Uint8Array,
  float16: Uint16Array,
};

/** sha256 (hex) of a conditioning set's tensors: every condition's feeds, then the unconditional row's, names and shapes included. */
export function conditioningSha256(set: ConditioningSet): string {
  const hash = createHash('sha256');
  const add = (feeds: TensorMap) => {
    for (const name of Object.keys(feeds).sort()) {
      const t = feeds[name]!;
      hash.update(`${name}:${t.dtype}[${t.dims.join(',')}]`);
      hash.update(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
    }
  };
  hash.update(`count ${set.count}`);
  add(set.feeds(Array.from({ length: set.count }, (_, i) => i)));
  if (set.unconditional) add(set.unconditional(1));
  return hash.digest('hex');
}

/** sha256 (hex) of a model file and, in order, every external data file it names: streamed, so any size. */
export function modelFilesSha256(model: Model, modelPath: string): string {
  const hash = createHash('sha256');
  const files = new Set<string>([modelPath]);
  for (const value of model.graph.initializers.values()) {
    const data = value.initializer?.data;
    if (data?.kind === 'external') files.add(data.file);
  }
  const chunk = Buffer.alloc(16 << 20);
  for (const file of files) {
    const fd = openSync(file, 'r');
    try {
      for (let n; (n = readSync(fd, chunk, 0, chunk.length, null)) > 0; ) hash.update(chunk.subarray(0, n));
    } finally {
      closeSync(fd);
    }
  }
  return hash.digest('hex');
}

/** Serializes a calibration set recorded with `key`. */
export function encodeCalibrationCache(key: CalibrationKey, set: CalibrationSet): Uint8Array {
  let bytes = 0;
  const batches = set.batches.map((batch) =>
    Object.entries(batch).map(([name, t]) => {
      const stored: StoredTensor = { name, dtype: t.dtype, dims: t.dims, offset: bytes };
      bytes += Math.ceil(t.data.byteLength / 8) * 8;
      return stored;
    }),
  );
  const header: CacheHeader = { format: 'qcompile-calibration-v4', ...key, timesteps: set.timesteps, positions: set.positions, batches };
  const json = Buffer.from(JSON.stringify(header));
  const dataStart = Math.ceil((MAGIC.length + 4 + json.length) / 8) * 8;
  const dataEnd = dataStart + bytes;
  const out = new Uint8Array(dataEnd + CHECKSUM_BYTES);
  out.set(Buffer.from(MAGIC, 'latin1'));
  new DataView(out.buffer).setUint32(MAGIC.length, json.length, true);
  out.set(json, MAGIC.length + 4);
  set.batches.forEach((batch, b) => {
    for (const stored of batches[b]!) {
      const data = batch[stored.name]!.data;
      out.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), dataStart + stored.offset);
    }
  });
  out.set(createHash('sha256').update(out.subarray(0, dataEnd)).digest(), dataEnd);
  return out;
}

/**
 * What is at `path`, checked before any work: nothing yet (a cache will be written), or a calibration cache of
 * some version (read, and replaced if stale). Anything else — another file (a model, the recipe), a folder, a
 * device, a FIFO, a missing folder above it — is an OutputPathError: it is never read as a cache nor overwritten.
 */
export function calibrationCacheFileState(path: string): 'absent' | 'cache' {
  const stats = regularFileOrNothing(path);
  if (!stats) {
    const folder = dirname(path);
    if (!existsSync(folder)) throw new OutputPathError(path, `the calibration cache's folder ${folder} does not exist`);
    if (!statSync(folder).isDirectory()) throw new OutputPathError(path, `${folder} is not a folder`);
    return 'absent';
  }
  const head = Buffer.alloc(MAGIC_FAMILY.length);
  const fd = openSync(path, 'r');
  try {
    readSync(fd, head, 0, head.length, 0);
  } finally {
    closeSync(fd);
  }
  if (head.toString('latin1') !== MAGIC_FAMILY) throw new OutputPathError(path, 'is not a qcompile calibration cache: refusing to read or overwrite it (point `cache` at a new file)');
  return 'cache';
}

/** Reads a cache written for `key`; the batches come back exactly as they were recorded. */
export function decodeCalibrationCache(bytes: Uint8Array, key: CalibrationKey): CacheLookup {
  if (bytes.length < MAGIC.length + 4 || Buffer.from(bytes.subarray(0, MAGIC.length)).toString('latin1') !== MAGIC) return { ok: false, reason: 'not a qcompile calibration cache (or an older format)' };
  if (bytes.length < MAGIC.length + 4 + CHECKSUM_BYTES) return { ok: false, reason: 'calibration cache is truncated' };
  const body = bytes.subarray(0, bytes.length - CHECKSUM_BYTES);
  if (!createHash('sha256').update(body).digest().equals(bytes.subarray(body.length))) return { ok: false, reason: 'calibration cache checksum mismatch: the file was edited or damaged' };
  const jsonLength = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(MAGIC.length, true);
  let header: CacheHeader;
  try {
    header = JSON.parse(Buffer.from(bytes.subarray(MAGIC.length + 4, MAGIC.length + 4 + jsonLength)).toString('utf8')) as CacheHeader;
  } catch {
    return { ok: false, reason: 'calibration cache header is damaged' };
  }
  if (header.modelSha256 !== key.modelSha256) return { ok: false, reason: `calibration cache is stale: it was built for model sha256 ${header.modelSha256.slice(0, 12)}…, this model is ${key.modelSha256.slice(0, 12)}…` };
  for (const field of KEY_FIELDS) {
    if (JSON.stringify(header[field]) !== JSON.stringify(key[field])) {
      const shown = (v: unknown) => (field === 'conditioning' ? `sha256 ${String(v).slice(0, 12)}…` : JSON.stringify(v));
      return { ok: false, reason: `calibration cache is stale: ${field} was ${shown(header[field])}, now ${shown(key[field])}` };
    }
  }
  const dataStart = Math.ceil((MAGIC.length + 4 + jsonLength) / 8) * 8;
  const data = new Uint8Array(body.subarray(dataStart)).buffer; // a fresh, aligned copy (a Buffer's slice would be a view)
  const batches: TensorMap[] = [];
  for (const stored of header.batches) {
    const feeds: TensorMap = {};
    for (const { name, dtype, dims, offset } of stored) {
      const length = dims.reduce((a, b) => a * b, 1);
      const Array_ = ARRAYS[dtype];
      if (!Array_ || offset + length * Array_.BYTES_PER_ELEMENT > data.byteLength) return { ok: false, reason: `calibration cache is damaged: tensor '${name}' lies outside the file` };
      feeds[name] = { dtype, dims, data: new Array_(data, offset, length) };
    }
    batches.push(feeds);
  }
  return { ok: true, set: { batches, timesteps: header.timesteps, positions: header.positions } };
}
