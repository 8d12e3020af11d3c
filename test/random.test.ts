import { describe, expect, it } from 'vitest';
import { seededNormal, seededRandom } from '../src/random.js';

describe('seeded randomness', () => {
  it('is a fixed stream per seed (golden first values) and differs across seeds', () => {
    const a = seededRandom(42);
    const first = [a(), a(), a()];
    const b = seededRandom(42);
    expect([b(), b(), b()]).toEqual(first);
    expect(seededRandom(43)()).not.toBe(first[0]);
    // Pinned: a change to the generator would silently change every seeded sample, calibration set and search.
    expect(first.map((v) => Math.round(v * 2 ** 32))).toEqual(GOLDEN_UINT32);
    expect(seededNormal(0)()).toBe(GOLDEN_NORMAL);
  });

  it('uniform is flat and normal has mean 0 and variance 1', () => {
    const uniform = seededRandom(1);
    const counts = Array<number>(7).fill(0);
    for (let i = 0; i < 70_000; i++) counts[Math.floor(uniform() * 7)]!++;
    const chi2 = counts.reduce((a, c) => a + (c - 10_000) ** 2 / 10_000, 0);
    expect(chi2).toBeLessThan(22.46); // 6 degrees of freedom, p = 0.001
    const normal = seededNormal(1);
    const n = 200_000;
    let sum = 0;
    let sq = 0;
    for (let i = 0; i < n; i++) {
      const v = normal();
      sum += v;
      sq += v * v;
    }
    expect(Math.abs(sum / n)).toBeLessThan(0.01);
    expect(Math.abs(sq / n - 1)).toBeLessThan(0.015);
  });
});

const GOLDEN_UINT32 = [2581720956, 1925393290, 3661312704];
const GOLDEN_NORMAL = 0.7871846599200555;
