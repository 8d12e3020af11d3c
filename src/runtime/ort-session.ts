/**
 * A thin onnxruntime-node harness: a session from a path or serialized ONNX bytes, named float/int64 feeds in,
 * named outputs out as HostTensors, and a batch runner that reuses one session and preallocated feed buffers.
 */
import * as ort from 'onnxruntime-node';
import { elementCount, type HostTensor } from './host-tensor.js';

/**
 * Whether ORT's intra-op threads spin between ops (ORT's default): off when `QCOMPILE_ORT_SPINNING=0`. Where other
 * processes share the cores, spinning threads take them from each other: two dit-digits W8A8 compiles at once
 * took 24.2 s spinning and 20.7 s not, one alone 13.7 s and 15.1 s. The test suite (two workers on two cores)
 * turns it off.
 */
export function ortSpinning(): boolean {
  return process.env.QCOMPILE_ORT_SPINNING !== '0';
}

/** The `session.*` config entry that stops spinning, when `spinning` is false. */
export function spinningConfig(spinning: boolean): Record<string, string> {
  return spinning ? {} : { 'session.intra_op.allow_spinning': '0' };
}

/** `session.a.b` config entries as onnxruntime-node's nested `extra` option; a key without a dot is refused. */
export function sessionConfigExtra(entries: Readonly<Record<string, string>>): Record<string, Record<string, string>> {
  const extra: Record<string, Record<string, string>> = {};
  for (const [key, value] of Object.entries(entries)) {
    const [group, ...rest] = key.split('.');
    if (!group || rest.length === 0) throw new Error(`session config entry '${key}' must look like 'session.name'`);
    (extra[group] ??= {})[rest.join('.')] = value;
  }
  return extra;
}

/** Session settings. */
export interface SessionSettings {
  intraOpNumThreads?: number;
  graphOptimizationLevel?: 'disabled' | 'basic' | 'extended' | 'all';
  /** Extra `session.*` config entries, e.g. `{ 'session.qdq_matmulnbits_accuracy_level': '0' }`. */
  configEntries?: Record<string, string>;
}

/** An open session plus its I/O names. */
export interface RuntimeSession {
  inputNames: readonly string[];
  outputNames: readonly string[];
  /** Runs `feeds`, returns the outputs named in `fetch` (default: all graph outputs). */
  run(feeds: Record<string, HostTensor>, fetch?: string[]): Promise<Record<string, HostTensor>>;
  release(): Promise<void>;
}

/** Opens a session on a model file path or serialized ONNX bytes. */
export async function openSession(model: string | Uint8Array, settings: SessionSettings = {}): Promise<RuntimeSession> {
  const extra = sessionConfigExtra({ ...spinningConfig(ortSpinning()), ...settings.configEntries });
  const options: ort.InferenceSession.SessionOptions = {
    graphOptimizationLevel: settings.graphOptimizationLevel ?? 'all',
    ...(settings.intraOpNumThreads ? { intraOpNumThreads: settings.intraOpNumThreads, interOpNumThreads: 1 } : {}),
    ...(Object.keys(extra).length > 0 ? { extra } : {}),
  };
  const session = typeof model === 'string' ? await ort.InferenceSession.create(model, options) : await ort.InferenceSession.create(model, options);
  return {
    inputNames: session.inputNames,
    outputNames: session.outputNames,
    async run(feeds, fetch) {
      const inputs: Record<string, ort.Tensor> = {};
      for (const [name, tensor] of Object.entries(feeds)) inputs[name] = new ort.Tensor(tensor.dtype, tensor.data as never, tensor.dims);
      const names = fetch ?? [...session.outputNames];
      const results = await session.run(inputs, names);
      const out: Record<string, HostTensor> = {};
      for (const name of names) {
        const t = results[name]!;
        out[name] = { dtype: t.type as HostTensor['dtype'], dims: [...t.dims], data: t.data as HostTensor['data'] };
      }
      return out;
    },
    release: () => session.release(),
  };
}

/** Called with each batch's outputs and the index of its first row. */
export type BatchConsumer = (outputs: Record<string, HostTensor>, firstRow: number) => void | Promise<void>;

/**
 * Runs `inputs` (all sharing batch axis 0 of size N) through `session` in batches of `batchSize`, handing each
 * batch's outputs to `consume`. Feed buffers are allocated once at full batch size and reused; the last,
 * shorter batch uses views into them.
 */
export async function forEachBatch(session: RuntimeSession, inputs: Record<string, HostTensor>, batchSize: number, consume: BatchConsumer, fetch?: string[]): Promise<void> {
  const entries = Object.entries(inputs);
  if (entries.length === 0) throw new Error('forEachBatch: no inputs');
  const rows = entries[0]![1].dims[0]!;
  for (const [name, t] of entries) if (t.dims[0] !== rows) throw new Error(`forEachBatch: input '${name}' has ${t.dims[0]} rows, expected ${rows}`);
  const buffers = entries.map(([, t]) => {
    const ctor = t.data.constructor as new (n: number) => HostTensor['data'];
    return new ctor(Math.min(batchSize, rows) * (elementCount(t.dims) / Math.max(rows, 1)));
  });
  for (let start = 0; start < rows; start += batchSize) {
    const count = Math.min(batchSize, rows - start);
    const feeds: Record<string, HostTensor> = {};
    entries.forEach(([name, t], i) => {
      const perRow = elementCount(t.dims) / rows;
      const buffer = buffers[i]!.subarray(0, count * perRow) as HostTensor['data'];
      (buffer as Float32Array).set(t.data.subarray(start * perRow, (start + count) * perRow) as never);
      feeds[name] = { dtype: t.dtype, dims: [count, ...t.dims.slice(1)], data: buffer };
    });
    await consume(await session.run(feeds, fetch), start);
  }
}

/** Runs `inputs` in batches and concatenates each fetched output along axis 0. */
export async function runBatched(session: RuntimeSession, inputs: Record<string, HostTensor>, batchSize: number, fetch?: string[]): Promise<Record<string, HostTensor>> {
  const rows = Object.values(inputs)[0]?.dims[0] ?? 0;
  const out: Record<string, HostTensor> = {};
  await forEachBatch(session, inputs, batchSize, (outputs, first) => {
    for (const [name, t] of Object.entries(outputs)) {
      const count = t.dims[0]!;
      const perRow = count === 0 ? 0 : t.data.length / count;
      if (!out[name]) {
        const ctor = t.data.constructor as new (n: number) => HostTensor['data'];
        out[name] = { dtype: t.dtype, dims: [rows, ...t.dims.slice(1)], data: new ctor(rows * perRow) };
      }
      (out[name].data as Float32Array).set(t.data as never, first * perRow);
    }
  }, fetch);
  return out;
}
