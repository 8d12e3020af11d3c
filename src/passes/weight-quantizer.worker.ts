/**
 * The entry point of a weight-quantizer worker thread (weight-quantizer-pool.ts): computes each posted WeightTask
 * with round-to-nearest — the cells' ranges (min-max or the L_p search) and the codes — and posts the result back,
 * its arrays transferred. An error goes back as data (transferredError), never as the thread's own failure.
 */
import { parentPort } from 'node:worker_threads';
import { transferredError, type WorkerReply, type WorkerRequest } from './weight-quantizer-pool.js';
import { quantizeWeightTask } from './weight-storage.js';
import { roundToNearest } from './weight-quantizer.js';

const port = parentPort!;
port.on('message', ({ id, task }: WorkerRequest) => {
  let reply: WorkerReply;
  try {
    const { params, bytes } = quantizeWeightTask(task, roundToNearest);
    reply = { id, params, bytes };
  } catch (error) {
    port.postMessage({ id, error: transferredError(error) } satisfies WorkerReply);
    return;
  }
  port.postMessage(reply, [reply.params.scale.buffer, reply.params.zeroPoint.buffer, reply.bytes.buffer] as ArrayBuffer[]);
});
