/** Shared setup for the real-browser tests: one chromium per test file, fixture readers, and the skip rule. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromiumAvailable, chromiumPath } from '../../src/runtime/browser/chromium.js';

/** Skip (locally only) when chromium is missing; under CI the tests run and fail loudly instead. */
export const skipBrowser = !chromiumAvailable() && !process.env.CI;
if (skipBrowser) console.warn(`browser tests skipped: no chromium at ${chromiumPath()} (apt-get install chromium; CI fails instead)`);

/** The dit-digits fixture folder. */
export const DIT_DIGITS = join(import.meta.dirname, '..', 'fixtures', 'dit-digits');

function bytesOf(path: string): ArrayBuffer {
  const buffer = readFileSync(path);
  return buffer.buffer.slice(buffer.byteOffset, buffer.byteOffset + buffer.length) as ArrayBuffer;
}

/** A little-endian float32 file. */
export function readF32(path: string): Float32Array {
  return new Float32Array(bytesOf(path));
}

/** A little-endian int64 file. */
export function readI64(path: string): BigInt64Array {
  return new BigInt64Array(bytesOf(path));
}

/** Largest |a[i] − b[i]|. */
export function maxAbs(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} != ${b.length}`);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]! - b[i]!));
  return max;
}
