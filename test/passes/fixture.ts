/** The dit-digits fixture's reference inputs and an SQNR helper for numeric pass tests. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TensorMap } from '../../src/passes/executor.js';

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

/** Signal-to-quantization-noise ratio in dB: 10·log10(Σ ref² / Σ (ref − test)²). */
export function sqnrDb(reference: ArrayLike<number>, test: ArrayLike<number>): number {
  let signal = 0;
  let noise = 0;
  for (let i = 0; i < reference.length; i++) {
    signal += reference[i]! ** 2;
    noise += (reference[i]! - test[i]!) ** 2;
  }
  return 10 * Math.log10(signal / noise);
}

/** Largest absolute difference. */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]! - b[i]!));
  return max;
}
