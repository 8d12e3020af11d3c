/** Seeded, platform-independent random weights for synthetic models: the same seed gives the same bytes. */
import { DataType } from '../ir/dtype.js';
import { Tensor, numelOf } from '../ir/tensor.js';

/** xoshiro128** over a 32-bit state; `stream` separates tensors so each is generated independently. */
export class Random {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;

  constructor(seed: number, stream: number) {
    // splitmix32 expands (seed, stream) into a full, never-all-zero state.
    let x = (Math.imul(seed | 0, 0x9e3779b9) ^ Math.imul(stream | 0, 0x85ebca6b)) >>> 0;
    const next = () => {
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.s0 = next();
    this.s1 = next();
    this.s2 = next();
    this.s3 = next() | 1;
  }

  /** A uniform 32-bit unsigned integer. */
  nextUint32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5), 7), 9) >>> 0;
    const t = this.s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    return result;
  }

  /** Uniform in (0, 1): never 0, so log() is finite. */
  nextUnit(): number {
    return (this.nextUint32() + 0.5) / 4294967296;
  }

  /** Fills `out` with N(mean, std) samples (Box–Muller, both values of each pair used). */
  fillNormal(out: Float32Array, mean: number, std: number): void {
    for (let i = 0; i < out.length; i += 2) {
      const radius = std * Math.sqrt(-2 * Math.log(this.nextUnit()));
      const angle = 2 * Math.PI * this.nextUnit();
      out[i] = mean + radius * Math.cos(angle);
      if (i + 1 < out.length) out[i + 1] = mean + radius * Math.sin(angle);
    }
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

/**
 * A float32 tensor of N(mean, std) values computed when read (Tensor.lazy): saving streams it straight to
 * disk, so a model of any size costs one tensor of memory. `stream` must be unique per tensor of a model.
 */
export function normalTensor(dims: readonly number[], seed: number, stream: number, std: number, mean = 0, onProduce?: (bytes: number) => void): Tensor {
  return Tensor.lazy(DataType.FLOAT, dims, () => {
    const values = new Float32Array(numelOf(dims));
    new Random(seed, stream).fillNormal(values, mean, std);
    onProduce?.(values.byteLength);
    return new Uint8Array(values.buffer);
  });
}
