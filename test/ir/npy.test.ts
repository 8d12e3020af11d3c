import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { decodeNpy, encodeNpy, readNpy } from '../../src/ir/npy.js';

const FILE = 'test/fixtures/sd-digits/conditioning/test/prompt_000.npy';

/** A v1 or v2 .npy with the given header dict text and payload. */
function npy(header: string, payload: Uint8Array, version = 1): Uint8Array {
  const text = new TextEncoder().encode(`${header}\n`);
  const prefix = version === 1 ? 10 : 12;
  const out = new Uint8Array(prefix + text.length + payload.length);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, version, 0]);
  const view = new DataView(out.buffer);
  if (version === 1) view.setUint16(8, text.length, true);
  else view.setUint32(8, text.length, true);
  out.set(text, prefix);
  out.set(payload, prefix + text.length);
  return out;
}

describe('.npy files', () => {
  it('writes byte for byte what NumPy wrote for the fixture', () => {
    const bytes = readFileSync(FILE);
    expect(Buffer.from(encodeNpy(readNpy(FILE)))).toEqual(bytes);
  });

  it('round-trips int64 and 1-d arrays, and reads format 2.0 headers', () => {
    const ints = { dtype: 'int64' as const, shape: [3], data: BigInt64Array.of(-1n, 0n, 1n << 40n) };
    expect(decodeNpy(encodeNpy(ints), 'ints.npy')).toEqual(ints);
    const payload = new Uint8Array(Float32Array.of(1.5, -2).buffer);
    expect(decodeNpy(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2), }", payload, 2), 'v2.npy')).toEqual({ dtype: 'float32', shape: [1, 2], data: Float32Array.of(1.5, -2) });
    expect(decodeNpy(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (), }", payload.subarray(0, 4)), 'scalar.npy').shape).toEqual([]);
  });

  it('refuses what it does not read, naming the file', () => {
    const f4 = new Uint8Array(8);
    expect(() => decodeNpy(new Uint8Array(20), 'a.npy')).toThrow('a.npy: not an .npy file (no \\x93NUMPY magic)');
    expect(() => decodeNpy(npy("{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }", f4), 'b.npy')).toThrow("b.npy: dtype '>f4' is not supported (<f4, <i8 are)");
    expect(() => decodeNpy(npy("{'descr': '<f4', 'fortran_order': True, 'shape': (2,), }", f4), 'c.npy')).toThrow('c.npy: Fortran-order arrays are not supported: save it in C order');
    expect(() => decodeNpy(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", f4), 'd.npy')).toThrow('d.npy: holds 8 data bytes, but shape (3) of <f4 needs 12');
    expect(() => decodeNpy(npy("{'descr': '<f4', 'shape': (2,), }", f4), 'e.npy')).toThrow(/^e\.npy: malformed header/);
    expect(() => decodeNpy(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", f4, 3), 'f.npy')).toThrow('f.npy: .npy format version 3.0 is not supported (1 and 2 are)');
    expect(() => readNpy('no/such.npy')).toThrow('no/such.npy: cannot read it: ENOENT');
  });
});
