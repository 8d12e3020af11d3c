/**
 * float32 ↔ float16 bits (`floatToHalf`, `halfToFloat`), the one conversion convert-float16's weights and the
 * sampler's float16 timestep inputs share: the edge values by their bits, and every half as a round trip.
 */
import { describe, expect, it } from 'vitest';
import { floatToHalf, halfToFloat } from '../../src/ir/tensor.js';

describe('floatToHalf', () => {
  it('gives the IEEE half bits of the edge values (round to nearest even, saturating, tiny values kept nonzero)', () => {
    const cases: [number, number][] = [
      [0, 0x0000],
      [-0, 0x8000],
      [1, 0x3c00],
      [-2.5, 0xc100],
      [1 / 3, 0x3555], // 0.333251953125, the nearest half below
      [2 ** -24, 0x0001], // the smallest subnormal
      [3 * 2 ** -24, 0x0003],
      [2 ** -14 - 2 ** -24, 0x03ff], // the largest subnormal
      [2 ** -14, 0x0400], // the smallest normal
      [1.5 * 2 ** -24, 0x0002], // a subnormal tie rounds to the even neighbour
      [2.5 * 2 ** -24, 0x0002],
      [2 ** -25, 0x0001], // the tie with 0: a nonzero value never becomes 0
      [1e-8, 0x0001],
      [-1e-30, 0x8001],
      [1 + 2 ** -11, 0x3c00], // a normal tie rounds to the even neighbour
      [1 + 3 * 2 ** -11, 0x3c02],
      [2047.25, 0x67ff], // all-ones significand, below the tie: no carry
      [2047.5, 0x6800], // the tie rounds to the even 2048: a carry into the exponent
      [65504, 0x7bff], // the largest half
      [65519, 0x7bff],
      [65520, 0x7bff], // IEEE rounds this up to Inf; finite values saturate
      [-1e9, 0xfbff],
      [Infinity, 0x7c00],
      [-Infinity, 0xfc00],
      [NaN, 0x7e00],
    ];
    for (const [value, bits] of cases) expect(floatToHalf(value), `${value}`).toBe(bits);
  });

  it('is the inverse of halfToFloat on every non-NaN half', () => {
    for (let bits = 0; bits < 0x10000; bits++) {
      const value = halfToFloat(bits);
      if (Number.isNaN(value)) expect(floatToHalf(value)).toBe(0x7e00);
      else if (floatToHalf(value) !== bits) expect(floatToHalf(value), `0x${bits.toString(16)}`).toBe(bits);
    }
  });
});
