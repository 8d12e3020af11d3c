/**
 * The entry point of a weight-quantizer worker thread (weight-quantizer-pool.ts): computes each posted WeightTask
 * with round-to-nearest — the cells' ranges (min-max or the L_p search) and the codes — and posts the result back,
 * its arrays transferred; a task's values lie in the worker's kernel memory (a weight slot) or come with it. An error goes back as data (transferredError), never as the thread's own failure.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { bindKernelMemory } from '../quant/kernels/weight-kernels.js';
import { transferredError, type WorkerReply, type WorkerRequest, type WorkerSetup } from './weight-quantizer-pool.js';
import { quantizeWeightTask } from './weight-storage.js';
import { roundToNearest } from './weight-quantizer.js';

const { memory, kernelBase } = workerData as WorkerSetup;
bindKernelMemory(memory, kernelBase);
const port = parentPort!;
port.on('message', ({ id, task, slot }: WorkerRequest) => {
  let reply: WorkerReply;
  try {
    // A slot's weight is quantized where the main thread read it: the kernels' own memory.
    if (slot) task.matrix.values = new Float32Array(memory.buffer, slot.byteOffset, slot.length);
    const { params, bytes } = quantizeWeightTask(task, roundToNearest);
    reply = { id, params, bytes };
  } catch (error) {
    port.postMessage({ id, error: transferredError(error) } satisfies WorkerReply);
    return;
  }
  port.postMessage(reply, [reply.params.scale.buffer, reply.params.zeroPoint.buffer, reply.bytes.buffer] as ArrayBuffer[]);
});
