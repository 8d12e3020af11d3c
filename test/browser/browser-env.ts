/** Shared setup for the real-browser tests: one chromium per test file, fixture readers, and the skip rule. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromiumAvailable, chromiumPath } from '../../src/runtime/browser/chromium.js';

/** Set to 1 by .ci/run: a missing chromium then fails the browser tests instead of skipping them. */
export const browserRequired = process.env.QCOMPILE_REQUIRE_BROWSER === '1';

/**
 * The one skip rule of every test that launches chromium (WebGPU, the bundle page, report rendering): skip when
 * no chromium is found at QCOMPILE_CHROMIUM (default /usr/bin/chromium), unless QCOMPILE_REQUIRE_BROWSER=1.
 */
export const skipBrowser = !chromiumAvailable() && !browserRequired;
if (skipBrowser) console.warn(`browser tests skipped: no chromium at ${chromiumPath()}; to run them install chromium (apt-get install chromium) or set QCOMPILE_CHROMIUM to a chromium binary (QCOMPILE_REQUIRE_BROWSER=1 turns this skip into a failure)`);

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
