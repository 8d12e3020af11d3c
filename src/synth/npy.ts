/** Writes NumPy `.npy` files (format 1.0, little-endian float32, C order): precomputed conditioning tensors. */

const MAGIC = [0x93, ...Array.from('NUMPY', (c) => c.charCodeAt(0)), 1, 0];

/** The bytes of a `.npy` file holding `values` with shape `dims` (header padded to 64 bytes, as numpy writes it). */
export function encodeNpyFloat32(dims: readonly number[], values: Float32Array): Uint8Array {
  const count = dims.reduce((a, b) => a * b, 1);
  if (count !== values.length) throw new Error(`npy: shape [${dims.join(', ')}] holds ${count} values, got ${values.length}`);
  const shape = dims.length === 1 ? `(${dims[0]},)` : `(${dims.join(', ')})`;
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': ${shape}, }`;
  const unpadded = MAGIC.length + 2 + header.length + 1;
  header += ' '.repeat((64 - (unpadded % 64)) % 64) + '\n';
  const out = new Uint8Array(MAGIC.length + 2 + header.length + values.byteLength);
  out.set(MAGIC, 0);
  new DataView(out.buffer).setUint16(MAGIC.length, header.length, true);
  for (let i = 0; i < header.length; i++) out[MAGIC.length + 2 + i] = header.charCodeAt(i);
  const body = new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
  out.set(body, MAGIC.length + 2 + header.length);
  return out;
}
