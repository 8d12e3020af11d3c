/**
 * The calibration-set cache (`calibrate { cache "FILE" }`): the recorded (x_t, t, y) of a calibration set,
 * keyed by the FP model's sha256 and every setting that changes the set, so a recompile skips the sampler.
 * File: magic, u32 header length, JSON header, zero padding to 8, then t (i64), y (i64), x (f32) — int64 first
 * so every array stays aligned — and last the sha256 of all the bytes before it. A stale, damaged or edited
 * cache is refused with a one-line reason (the caller recomputes it); a file at the cache path that is not a
 * calibration cache at all is never read as one nor overwritten.
 */
import { createHash } from 'node:crypto';
import { closeSync, existsSync, openSync, readSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { OutputPathError, regularFileOrNothing } from '../ir/atomic-file.js';
import type { Model } from '../ir/core.js';
import type { TensorMap } from '../ir/executor.js';
import type { CalibrationSet, DiffusionIO, StepStrategy } from './calibration.js';

/** Everything that determines a calibration set besides the model. */
export interface CalibrationKey {
  modelSha256: string;
  strategy: StepStrategy;
  seed: number;
  samplerSteps: number;
  samples: number;
  batch: number;
  classes: number;
}

interface CacheHeader extends CalibrationKey {
  format: 'qcompile-calibration-v3';
  count: number;
  imageShape: number[];
}

/** The result of reading a cache: the set, or why it cannot be used. */
export type CacheLookup = { ok: true; set: CalibrationSet } | { ok: false; reason: string };

const MAGIC = 'QCALIB3\n';
/** Every version's magic starts so: an older cache at the path may be replaced, anything else may not. */
const MAGIC_FAMILY = 'QCALIB';
const CHECKSUM_BYTES = 32;
const KEY_FIELDS = ['strategy', 'seed', 'samplerSteps', 'samples', 'batch', 'classes'] as const;

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
export function encodeCalibrationCache(key: CalibrationKey, set: CalibrationSet, io: DiffusionIO): Uint8Array {
  const perSample = io.imageShape.reduce((a, b) => a * b, 1);
  const count = set.timesteps.length;
  const header: CacheHeader = { format: 'qcompile-calibration-v3', ...key, count, imageShape: io.imageShape };
  const json = Buffer.from(JSON.stringify(header));
  const dataStart = Math.ceil((MAGIC.length + 4 + json.length) / 8) * 8;
  const dataEnd = dataStart + count * (16 + perSample * 4);
  const out = new Uint8Array(dataEnd + CHECKSUM_BYTES);
  out.set(Buffer.from(MAGIC, 'latin1'));
  new DataView(out.buffer).setUint32(MAGIC.length, json.length, true);
  out.set(json, MAGIC.length + 4);
  const t = new BigInt64Array(out.buffer, dataStart, count);
  const y = new BigInt64Array(out.buffer, dataStart + 8 * count, count);
  const x = new Float32Array(out.buffer, dataStart + 16 * count, count * perSample);
  let row = 0;
  for (const batch of set.batches) {
    const n = batch[io.timestep]!.dims[0]!;
    t.set(batch[io.timestep]!.data as BigInt64Array, row);
    if (io.label) y.set(batch[io.label]!.data as BigInt64Array, row);
    x.set(batch[io.image]!.data as Float32Array, row * perSample);
    row += n;
  }
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
export function decodeCalibrationCache(bytes: Uint8Array, key: CalibrationKey, io: DiffusionIO): CacheLookup {
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
    if (JSON.stringify(header[field]) !== JSON.stringify(key[field])) return { ok: false, reason: `calibration cache is stale: ${field} was ${JSON.stringify(header[field])}, now ${JSON.stringify(key[field])}` };
  }
  if (JSON.stringify(header.imageShape) !== JSON.stringify(io.imageShape)) return { ok: false, reason: `calibration cache is stale: image shape was ${JSON.stringify(header.imageShape)}` };
  const perSample = io.imageShape.reduce((a, b) => a * b, 1);
  const dataStart = Math.ceil((MAGIC.length + 4 + jsonLength) / 8) * 8;
  const need = dataStart + header.count * (16 + perSample * 4);
  if (body.length !== need) return { ok: false, reason: `calibration cache is damaged: ${body.length} data bytes, expected ${need}` };
  const data = new Uint8Array(body.subarray(dataStart)).buffer; // a fresh, aligned copy (a Buffer's slice would be a view)
  const count = header.count;
  const t = new BigInt64Array(data, 0, count);
  const y = new BigInt64Array(data, 8 * count, count);
  const x = new Float32Array(data, 16 * count, count * perSample);
  const batches: TensorMap[] = [];
  for (let start = 0; start < count; start += key.batch) {
    const end = Math.min(count, start + key.batch);
    const feeds: TensorMap = {
      [io.image]: { dtype: 'float32', dims: [end - start, ...io.imageShape], data: x.slice(start * perSample, end * perSample) },
      [io.timestep]: { dtype: 'int64', dims: [end - start], data: t.slice(start, end) },
    };
    if (io.label) feeds[io.label] = { dtype: 'int64', dims: [end - start], data: y.slice(start, end) };
    batches.push(feeds);
  }
  return { ok: true, set: { batches, timesteps: Array.from(t, Number) } };
}
