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
import { kernelMemory } from '../quant/kernels/weight-kernels.js';
import type { QuantizedWeight, WeightTask } from './weight-storage.js';

/** A task posted to a worker; with `slot`, its values lie in that worker's memory (the task carries none). */
export interface WorkerRequest {
  id: number;
  task: WeightTask;
  slot?: { byteOffset: number; length: number };
}

/** What a worker starts with: the shared memory its kernels run in, its weight slots below `kernelBase`. */
export interface WorkerSetup {
  memory: WebAssembly.Memory;
  kernelBase: number;
}

/**
 * A region of one worker's kernel memory: the main thread reads a weight into it and the worker quantizes it in
 * place, so a weight is never copied between threads nor faulted into fresh pages (with a buffer per weight,
 * DiT-XL/2's 2.7 GB cost ~2.5 s of page faults and the transfers' GCs ~1.5 s).
 */
export interface WeightSlot {
  worker: number;
  byteOffset: number;
  bytes: number;
}

/** Weight slots a worker has: one quantized while the main thread reads the next. */
const SLOTS_PER_WORKER = 2;

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

/** Memory above a worker's slots for its kernels' own regions (a 4 MiB chunk, its cells and codes; grown if ever short). */
const KERNEL_REGION_BYTES = 32 << 20;

/** The workers a plan of `elements` float weights is quantized with: one per core, none for a small plan or a single core. */
export function poolThreadsFor(elements: number): number {
  const cores = availableParallelism();
  return elements >= POOL_MIN_ELEMENTS && cores > 1 ? cores : 0;
}

interface Job {
  resolve: (result: QuantizedWeight) => void;
  reject: (error: Error) => void;
  worker: number;
  slot?: WeightSlot;
}

/** A fixed set of weight-quantizer workers; `close` ends them (every compile that opens one closes it). */
export class WeightQuantizerPool {
  private readonly jobs = new Map<number, Job>();
  private readonly outstanding: number[];
  private nextId = 0;
  private failure: Error | undefined;
  private readonly freeSlots: WeightSlot[];
  private readonly slotWaiters: { resolve: (slot: WeightSlot) => void; reject: (error: Error) => void }[] = [];

  private constructor(
    private readonly workers: Worker[],
    private readonly memories: WebAssembly.Memory[],
    slotBytes: number,
  ) {
    this.outstanding = workers.map(() => 0);
    // Slot-major, so the first weights go to different workers.
    this.freeSlots = slotBytes > 0 ? Array.from({ length: SLOTS_PER_WORKER }, (_, i) => workers.map((_, worker) => ({ worker, byteOffset: i * slotBytes, bytes: slotBytes }))).flat() : [];
    workers.forEach((worker, index) => {
      worker.on('message', (reply: WorkerReply) => this.settle(reply));
      worker.on('error', (error) => this.fail(index, error));
      worker.on('exit', (code) => this.fail(index, new Error(`a weight-quantizer worker exited (code ${code})`)));
    });
  }

  /** Starts `threads` workers, each with SLOTS_PER_WORKER weight slots of `slotBytes` (0: none, every task's values are posted). */
  static open(threads: number, slotBytes = 0): WeightQuantizerPool {
    const source = import.meta.url.endsWith('.ts');
    const entry = new URL(`./weight-quantizer.worker.${source ? 'ts' : 'js'}`, import.meta.url);
    const kernelBase = Math.ceil((SLOTS_PER_WORKER * slotBytes) / 65536) * 65536;
    const memories = Array.from({ length: threads }, () => kernelMemory(kernelBase + KERNEL_REGION_BYTES));
    // From the sources, the worker registers tsx's loader before it imports its TypeScript entry.
    const start = (memory: WebAssembly.Memory): Worker => {
      const workerData: WorkerSetup = { memory, kernelBase };
      return source
        ? new Worker(`import('tsx/esm/api').then(({ register }) => { register(); return import(${JSON.stringify(entry.href)}); });`, { eval: true, workerData })
        : new Worker(entry, { workerData });
    };
    return new WeightQuantizerPool(memories.map(start), memories, slotBytes);
  }

  /** A free weight slot, once one is (a slot frees when its worker answers). */
  slot(): Promise<WeightSlot> {
    if (this.failure) return Promise.reject(this.failure);
    const free = this.freeSlots.shift();
    return free ? Promise.resolve(free) : new Promise((resolve, reject) => this.slotWaiters.push({ resolve, reject }));
  }

  /** `bytes` of `slot`'s memory, to read a weight into. */
  slotBytes(slot: WeightSlot, bytes: number): Uint8Array {
    if (bytes > slot.bytes) throw new RangeError(`a weight of ${bytes} bytes does not fit a slot of ${slot.bytes}`);
    return new Uint8Array(this.memories[slot.worker]!.buffer, slot.byteOffset, bytes);
  }

  /** Hands back a slot no task was posted with. */
  release(slot: WeightSlot): void {
    const waiter = this.slotWaiters.shift();
    if (waiter) waiter.resolve(slot);
    else this.freeSlots.push(slot);
  }

  /** Worker threads in the pool. */
  get size(): number {
    return this.workers.length;
  }

  /**
   * Quantizes `task`: with `slot`, in place in that slot's worker (the task's values must lie in slotBytes of it);
   * otherwise in the least busy worker, its values moved there (`transfer`: their whole buffer, which the caller
   * must not use again) or copied.
   */
  quantize(task: WeightTask, values: WeightSlot | 'transfer' | 'copy'): Promise<QuantizedWeight> {
    if (this.failure) return Promise.reject(this.failure);
    const slot = typeof values === 'object' ? values : undefined;
    const worker = slot ? slot.worker : this.outstanding.indexOf(Math.min(...this.outstanding));
    const id = this.nextId++;
    this.outstanding[worker]!++;
    return new Promise<QuantizedWeight>((resolve, reject) => {
      this.jobs.set(id, { resolve, reject, worker, slot });
      const matrix = task.matrix;
      const request: WorkerRequest = slot
        ? { id, task: { ...task, matrix: { ...matrix, values: new Float32Array(0) } }, slot: { byteOffset: matrix.values.byteOffset, length: matrix.values.length } }
        : { id, task };
      this.workers[worker]!.postMessage(request, values === 'transfer' ? [matrix.values.buffer as ArrayBuffer] : []);
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
    if (job.slot) this.release(job.slot);
    if ('error' in reply) job.reject(rethrown(reply.error));
    else job.resolve({ params: reply.params, bytes: reply.bytes });
  }

  /** A worker failed or exited: its tasks, and every later one, are rejected. */
  private fail(worker: number, error: Error): void {
    this.failure ??= error;
    for (const waiter of this.slotWaiters.splice(0)) waiter.reject(error);
    for (const [id, job] of this.jobs) {
      if (job.worker !== worker) continue;
      this.jobs.delete(id);
      job.reject(error);
    }
  }
}
