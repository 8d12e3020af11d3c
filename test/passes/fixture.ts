/** The dit-digits fixture's reference inputs, and the metrics numeric pass tests use. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Model } from '../../src/ir/core.js';
import type { ModelExecutor, TensorMap } from '../../src/ir/executor.js';

/** Folder of the dit-digits fixture. */
export const DIT_DIGITS = join(import.meta.dirname, '..', 'fixtures', 'dit-digits');

function bytes(file: string): ArrayBuffer {
  const b = readFileSync(join(DIT_DIGITS, file));
  return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength);
}

/** The 8 reference inputs (x, t, y). */
export function referenceInputs(): TensorMap {
  return {
    x: { dtype: 'float32', dims: [8, 1, 16, 16], data: new Float32Array(bytes('reference_in_x.bin')) },
    t: { dtype: 'int64', dims: [8], data: new BigInt64Array(bytes('reference_in_t.bin')) },
    y: { dtype: 'int64', dims: [8], data: new BigInt64Array(bytes('reference_in_y.bin')) },
  };
}

/** The model's `eps` on the reference inputs. */
export async function referenceEps(model: Model, executor: ModelExecutor): Promise<Float32Array> {
  const prepared = await executor.prepare(model, ['eps']);
  try {
    return (await prepared.run(referenceInputs())).eps!.data as Float32Array;
  } finally {
    await prepared.release();
  }
}

export { maxAbsError as maxAbsDiff, sqnrDb } from '../../src/runtime/metrics.js';
