/**
 * Worker threads for weight quantization: round-to-nearest WeightTasks (weight-storage.ts) — the cells' ranges,
 * min-max or the L_p search, and the codes — computed off the main thread, one weight per task. That is the
 * CPU-bound part of quantize-weights (DiT-XL/2 rtn-w4a16: the SIMD kernels' 2.7 s of CPU, ptq4dm's L_p search:
 * a minute); with a pool it runs on every core while the main thread reads the next weights and rewires the graph. Results
 * are the same bits as in-process (the same functions on the same values); only their thread differs.
 *
 * The worker's entry is weight-quantizer.worker.js next to this module; run from the TypeScript sources (tsx,
 * vitest) it is the .ts file, loaded through tsx's loader registered in the worker.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { IrError, type IrErrorCode } from '../ir/errors.js';
import { NonFiniteError } from '../ir/numerics.js';
import type { QuantizedWeight, WeightTask } from './weight-storage.js';

/** A task posted to a worker. */
export interface WorkerRequest {
  id: number;
  task: WeightTask;
}

/** A worker's answer to request `id`: the quantized weight, or the error it threw. */
export type WorkerReply = ({ id: number } & QuantizedWeight) | { id: number; error: TransferredError };

/** An error as data across threads, so the main thread rethrows it with its class (a user error stays one). */
export type TransferredError =
  | { kind: 'non-finite'; what: string; index: number; value: number }
  | { kind: 'ir'; code: IrErrorCode; message: string; file?: string }
  | { kind: 'other'; name: string; message: string };

/** `error` as data (see TransferredError). */
export function transferredError(error: unknown): TransferredError {
  if (error instanceof NonFiniteError) return { kind: 'non-finite', what: error.what, index: error.index, value: error.value };
  if (error instanceof IrError) return { kind: 'ir', code: error.code, message: error.file ? error.message.slice(error.file.length + 2) : error.message, ...(error.file ? { file: error.file } : {}) };
  return error instanceof Error ? { kind: 'other', name: error.name, message: error.message } : { kind: 'other', name: 'Error', message: String(error) };
}

/** The error a TransferredError stands for. */
function rethrown(error: TransferredError): Error {
  if (error.kind === 'non-finite') return new NonFiniteError(error.what, error.index, error.value);
  if (error.kind === 'ir') return new IrError(error.code, error.message, error.file);
  const rebuilt = error.name === 'RangeError' ? new RangeError(error.message) : new Error(error.message);
  rebuilt.name = error.name;
  return rebuilt;
}

/**
 * Float weight elements below which a plan is quantized in-process: starting a worker costs tens of ms (hundreds
 * from the TypeScript sources), more than such a plan's whole quantization.
 */
const POOL_MIN_ELEMENTS = 1 << 24;

/** The workers a plan of `elements` float weights is quantized with: one per core, none for a small plan or a single core. */
export function poolThreadsFor(elements: number): number {
  const cores = availableParallelism();
  return elements >= POOL_MIN_ELEMENTS && cores > 1 ? cores : 0;
}

interface Job {
  resolve: (result: QuantizedWeight) => void;
  reject: (error: Error) => void;
  worker: number;
}

/** A fixed set of weight-quantizer workers; `close` ends them (every compile that opens one closes it). */
export class WeightQuantizerPool {
  private readonly jobs = new Map<number, Job>();
  private readonly outstanding: number[];
  private nextId = 0;
  private failure: Error | undefined;

  private constructor(private readonly workers: Worker[]) {
    this.outstanding = workers.map(() => 0);
    workers.forEach((worker, index) => {
      worker.on('message', (reply: WorkerReply) => this.settle(reply));
      worker.on('error', (error) => this.fail(index, error));
      worker.on('exit', (code) => this.fail(index, new Error(`a weight-quantizer worker exited (code ${code})`)));
    });
  }

  /** Starts `threads` workers. */
  static open(threads: number): WeightQuantizerPool {
    const source = import.meta.url.endsWith('.ts');
    const entry = new URL(`./weight-quantizer.worker.${source ? 'ts' : 'js'}`, import.meta.url);
    // From the sources, the worker registers tsx's loader before it imports its TypeScript entry.
    const start = (): Worker =>
      source ? new Worker(`import('tsx/esm/api').then(({ register }) => { register(); return import(${JSON.stringify(entry.href)}); });`, { eval: true }) : new Worker(entry);
    return new WeightQuantizerPool(Array.from({ length: threads }, start));
  }

  /** Worker threads in the pool. */
  get size(): number {
    return this.workers.length;
  }

  /**
   * Quantizes `task` in the least busy worker. With `transfer`, the task's values move to the worker (the caller
   * must not use them again: a freshly read external weight); otherwise they are copied.
   */
  quantize(task: WeightTask, transfer: boolean): Promise<QuantizedWeight> {
    if (this.failure) return Promise.reject(this.failure);
    const worker = this.outstanding.indexOf(Math.min(...this.outstanding));
    const id = this.nextId++;
    this.outstanding[worker]!++;
    return new Promise<QuantizedWeight>((resolve, reject) => {
      this.jobs.set(id, { resolve, reject, worker });
      const values = task.matrix.values;
      const whole = values.byteOffset === 0 && values.byteLength === values.buffer.byteLength;
      this.workers[worker]!.postMessage({ id, task } satisfies WorkerRequest, transfer && whole ? [values.buffer as ArrayBuffer] : []);
    });
  }

  /** Ends every worker; a task still running is rejected. */
  async close(): Promise<void> {
    this.failure ??= new Error('the weight-quantizer pool is closed');
    await Promise.all(this.workers.map((w) => w.terminate()));
  }

  private settle(reply: WorkerReply): void {
    const job = this.jobs.get(reply.id);
    if (!job) return;
    this.jobs.delete(reply.id);
    this.outstanding[job.worker]!--;
    if ('error' in reply) job.reject(rethrown(reply.error));
    else job.resolve({ params: reply.params, bytes: reply.bytes });
  }

  /** A worker failed or exited: its tasks, and every later one, are rejected. */
  private fail(worker: number, error: Error): void {
    this.failure ??= error;
    for (const [id, job] of this.jobs) {
      if (job.worker !== worker) continue;
      this.jobs.delete(id);
      job.reject(error);
    }
  }
}
