import { describe, expect, it } from 'vitest';
import { packInt4 } from '../../src/ir/tensor.js';
import { roundHalfEven } from '../../src/passes/gptq.js';
import { LpTerms, computeCellParams, intRange, roundToNearest, type QuantizerSettings } from '../../src/passes/weight-quantizer.js';
import type { WeightMatrix } from '../../src/quant/kernels/weight-kernels.js';

function seeded(seed: number): () => number {
  let s = seed;
  return () => {
    s = (s * 1664525 + 1013904223) % 2 ** 32;
    return s / 2 ** 32;
  };
}

function gaussianRows(N: number, K: number, seed: number): Float32Array {
  const random = seeded(seed);
  return Float32Array.from({ length: N * K }, () => Math.sqrt(-2 * Math.log(random() + 1e-12)) * Math.cos(2 * Math.PI * random()));
}

const nMajor = (values: Float32Array, N: number, K: number): WeightMatrix => ({ values, N, K, kMajor: false });

function dequantize(codes: Int32Array, rows: Float32Array, N: number, K: number, settings: QuantizerSettings) {
  const params = computeCellParams(nMajor(rows, N, K), settings);
  const values = new Float32Array(N * K);
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < K; k++) {
      const cell = params.scale.length === 1 ? 0 : Math.floor(k / params.cellLength) * N + n;
      values[n * K + k] = (codes[n * K + k]! - params.zeroPoint[cell]!) * params.scale[cell]!;
    }
  }
  return { params, values };
}

function quantize(rows: Float32Array, N: number, K: number, settings: QuantizerSettings) {
  const params = computeCellParams(nMajor(rows, N, K), settings);
  const codes = roundToNearest(nMajor(rows, N, K), params, intRange(settings.bits, settings.signed));
  return { codes, ...dequantize(codes, rows, N, K, settings) };
}

const base: QuantizerSettings = { bits: 8, symmetric: true, signed: true, granularity: { kind: 'per-channel' }, range: { kind: 'minmax' } };

describe('weight quantizer', () => {
  it('has the integer ranges of int8, uint8, int4 and uint4', () => {
    expect(intRange(8, true)).toEqual({ qmin: -128, qmax: 127 });
    expect(intRange(8, false)).toEqual({ qmin: 0, qmax: 255 });
    expect(intRange(4, true)).toEqual({ qmin: -8, qmax: 7 });
    expect(intRange(4, false)).toEqual({ qmin: 0, qmax: 15 });
  });

  it('symmetric per-channel: s = max|w| / 127 per row, z = 0, error at most s/2', () => {
    const rows = Float32Array.of(1, -2, 0.5, 0.25, /* row 1 */ 0.1, 0.2, -0.3, 0.05);
    const { params, codes, values } = quantize(rows, 2, 4, base);
    expect(Array.from(params.scale)).toEqual([Math.fround(2 / 127), Math.fround(0.3 / 127)]);
    expect(Array.from(params.zeroPoint)).toEqual([0, 0]);
    expect(codes[1]).toBe(-127);
    for (let i = 0; i < rows.length; i++) expect(Math.abs(values[i]! - rows[i]!)).toBeLessThanOrEqual(params.scale[i < 4 ? 0 : 1]! / 2 + 1e-7);
  });

  it('asymmetric uint4: the range (widened to 0) maps onto 0..15 with z = round(-min/s)', () => {
    const rows = Float32Array.of(-1, 0, 2, 3.5);
    const settings: QuantizerSettings = { ...base, bits: 4, symmetric: false, signed: false, granularity: { kind: 'per-tensor' } };
    const { params, codes } = quantize(rows, 1, 4, settings);
    expect(params.scale[0]).toBe(Math.fround(4.5 / 15));
    expect(params.zeroPoint[0]).toBe(Math.round(1 / Math.fround(4.5 / 15)));
    expect(Math.min(...codes)).toBe(0);
    expect(Math.max(...codes)).toBe(15);
  });

  it('groups along K: cell g·N + n covers row n, columns [g·size, (g+1)·size)', () => {
    const rows = Float32Array.of(1, 1, 8, 8, /* row 1 */ 2, 2, 4, 4);
    const { params } = quantize(rows, 2, 4, { ...base, granularity: { kind: 'group', size: 2 } });
    expect(params.cellsPerRow).toBe(2);
    expect(Array.from(params.scale, (s) => s * 127)).toEqual([1, 2, 8, 4].map((v) => Math.fround(v / 127) * 127));
  });

  it('a group size that does not divide K leaves a partial last group quantized by its own range', () => {
    const rows = Float32Array.of(1, 1, 1, 8, 8, /* row 1 */ 2, 2, 2, 4, 4);
    const { params } = quantize(rows, 2, 5, { ...base, granularity: { kind: 'group', size: 3 } });
    expect(params.cellsPerRow).toBe(2);
    // Cells g·N + n: group 0 of rows 0 and 1 (3 values each), then the 2-value last groups.
    expect(Array.from(params.scale, (s) => s * 127)).toEqual([1, 2, 8, 4].map((v) => Math.fround(v / 127) * 127));
    expect(() => computeCellParams(nMajor(rows, 2, 5), { ...base, granularity: { kind: 'group', size: 0 } })).toThrow(/group size 0 is not a positive integer/);
  });

  it('L_p search clips outliers: lower L_2.4 error than min-max at 4 bits', () => {
    const N = 16;
    const K = 128;
    const rows = gaussianRows(N, K, 3);
    for (let n = 0; n < N; n++) rows[n * K] = 12; // one outlier per row
    const lpError = (values: Float32Array) => values.reduce((sum, v, i) => sum + Math.abs(v - rows[i]!) ** 2.4, 0);
    const settings = { ...base, bits: 4 };
    const minmax = quantize(rows, N, K, settings);
    const searched = quantize(rows, N, K, { ...settings, range: { kind: 'lp', p: 2.4, gridSize: 100 } });
    expect(lpError(searched.values)).toBeLessThan(0.9 * lpError(minmax.values));
    expect(searched.params.scale[0]).toBeLessThan(minmax.params.scale[0]!);
  });

  it('gives the same parameters and codes read [K][N] as read [N][K]', () => {
    const N = 12;
    const K = 64;
    const rows = gaussianRows(N, K, 5);
    const columns = new Float32Array(N * K);
    for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) columns[k * N + n] = rows[n * K + k]!;
    const granularities: QuantizerSettings['granularity'][] = [{ kind: 'per-tensor' }, { kind: 'per-channel' }, { kind: 'group', size: 16 }, { kind: 'group', size: 24 }];
    for (const granularity of granularities) {
      for (const range of [{ kind: 'minmax' as const }, { kind: 'lp' as const, p: 2.4, gridSize: 50 }]) {
        const settings = { ...base, bits: 4, symmetric: false, signed: false, granularity, range };
        const a = computeCellParams(nMajor(rows, N, K), settings);
        const b = computeCellParams({ values: columns, N, K, kMajor: true }, settings);
        expect(b).toEqual(a);
        const codesA = roundToNearest(nMajor(rows, N, K), a, intRange(4, false));
        const codesB = roundToNearest({ values: columns, N, K, kMajor: true }, b, intRange(4, false));
        for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) expect(codesB[k * N + n]).toBe(codesA[n * K + k]);
      }
    }
  });

  it('min-max parameters and rounded codes equal the element-by-element definition, in both storage orders', () => {
    const N = 10;
    const K = 50;
    const rows = gaussianRows(N, K, 9);
    const columns = new Float32Array(N * K);
    for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) columns[k * N + n] = rows[n * K + k]!;
    const granularities: QuantizerSettings['granularity'][] = [{ kind: 'per-tensor' }, { kind: 'per-channel' }, { kind: 'group', size: 16 }, { kind: 'group', size: 7 }];
    for (const granularity of granularities) {
      for (const [bits, symmetric, signed] of [[4, true, true], [4, false, false], [8, false, true]] as const) {
        const settings: QuantizerSettings = { bits, symmetric, signed, granularity, range: { kind: 'minmax' } };
        const { qmin, qmax } = intRange(bits, signed);
        const size = granularity.kind === 'group' ? granularity.size : K;
        const cellOf = (n: number, k: number) => (granularity.kind === 'per-tensor' ? 0 : Math.floor(k / size) * N + n);
        const cells = granularity.kind === 'per-tensor' ? 1 : Math.ceil(K / size) * N;
        const lo = new Array<number>(cells).fill(0);
        const hi = new Array<number>(cells).fill(0);
        for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) [lo[cellOf(n, k)], hi[cellOf(n, k)]] = [Math.min(lo[cellOf(n, k)]!, rows[n * K + k]!), Math.max(hi[cellOf(n, k)]!, rows[n * K + k]!)];
        const scale = lo.map((l, c) => Math.fround(symmetric ? Math.max(-l, hi[c]!) / (2 ** (bits - 1) - 1) : (hi[c]! - l) / (qmax - qmin)) || 1);
        const zero = lo.map((l, c) => (symmetric ? (signed ? 0 : 2 ** (bits - 1)) : Math.min(qmax, Math.max(qmin, qmin + roundHalfEven(-l / scale[c]!)))));
        for (const matrix of [nMajor(rows, N, K), { values: columns, N, K, kMajor: true }]) {
          const params = computeCellParams(matrix, settings);
          expect(Array.from(params.scale)).toEqual(scale);
          expect(Array.from(params.zeroPoint)).toEqual(zero);
          const codes = roundToNearest(matrix, params, { qmin, qmax });
          for (let n = 0; n < N; n++) {
            for (let k = 0; k < K; k++) {
              const c = cellOf(n, k);
              const want = Math.min(qmax, Math.max(qmin, roundHalfEven(rows[n * K + k]! / scale[c]!) + zero[c]!));
              expect(codes[matrix.kMajor ? k * N + n : n * K + k]).toBe(want);
            }
          }
        }
      }
    }
  });

  it('stored codes equal the int32 codes packed two to a byte, for odd and even shapes, groups and both storage orders', () => {
    for (const [N, K] of [[6, 32], [5, 21], [7, 16]] as const) {
      const rows = gaussianRows(N, K, N * K);
      const columns = new Float32Array(N * K);
      for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) columns[k * N + n] = rows[n * K + k]!;
      const granularities: QuantizerSettings['granularity'][] = [{ kind: 'per-tensor' }, { kind: 'per-channel' }, { kind: 'group', size: 8 }, { kind: 'group', size: 5 }];
      for (const granularity of granularities) {
        for (const signed of [true, false]) {
          const settings: QuantizerSettings = { bits: 4, symmetric: signed, signed, granularity, range: { kind: 'minmax' } };
          for (const matrix of [nMajor(rows, N, K), { values: columns, N, K, kMajor: true }]) {
            const params = computeCellParams(matrix, settings);
            const range = intRange(4, signed);
            expect(roundToNearest.stored!(matrix, params, range, true)).toEqual(packInt4(roundToNearest(matrix, params, range)));
          }
        }
      }
    }
    expect(() => roundToNearest.stored!(nMajor(new Float32Array(4), 1, 4), { cellLength: 4, cellsPerRow: 1, scale: Float32Array.of(1), zeroPoint: Int32Array.of(0) }, intRange(8, true), true)).toThrow(/do not fit 4 bits/);
  });

  it('prunes the L_p search without changing its pick: the first least-error candidate of the plain scan, bit for bit', () => {
    // The plain scan in index order (the definition the pruned search must match).
    const plainScan = (values: Float32Array, min: number, max: number, settings: QuantizerSettings, gridSize: number, p: number) => {
      const { qmin, qmax } = intRange(settings.bits, settings.signed);
      let best: [number, number] | undefined;
      let bestError = Infinity;
      for (let i = 0; i < gridSize && 1 - 0.01 * i > 0; i++) {
        const lo = min * (1 - 0.01 * i);
        const hi = max * (1 - 0.01 * i);
        const positive = 2 ** (settings.bits - 1) - 1;
        const scale = settings.symmetric ? Math.fround(Math.max(-lo, hi) / positive) || 1 : Math.fround((hi - lo) / (qmax - qmin)) || 1;
        const zero = settings.symmetric ? (settings.signed ? 0 : 2 ** (settings.bits - 1)) : Math.min(qmax, Math.max(qmin, qmin + roundHalfEven(-lo / scale)));
        let error = 0;
        for (const v of values) error += LpTerms.of(p).term(v, 1 / scale, scale, Math.pow(scale, p), qmin - zero, qmax - zero);
        if (error < bestError) [bestError, best] = [error, [scale, zero]];
      }
      return best!;
    };
    const N = 24;
    const K = 96;
    const rows = gaussianRows(N, K, 11);
    for (let n = 0; n < N; n += 3) rows[n * K + ((n * 7) % K)] = n % 2 ? 9 : -7; // outliers in some rows
    for (const p of [2.4, 2, 1]) {
      for (const [bits, symmetric, signed] of [[8, false, true], [4, false, false], [4, true, true], [8, true, false]] as const) {
        const settings: QuantizerSettings = { bits, symmetric, signed, granularity: { kind: 'per-channel' }, range: { kind: 'lp', p, gridSize: 100 } };
        const params = computeCellParams(nMajor(rows, N, K), settings);
        for (let n = 0; n < N; n++) {
          const row = rows.subarray(n * K, (n + 1) * K);
          const [scale, zero] = plainScan(row, Math.min(0, ...row), Math.max(0, ...row), settings, 100, p);
          expect([params.scale[n], params.zeroPoint[n]]).toEqual([scale, zero]);
        }
      }
    }
  });

  it("interpolates the L_p terms of in-range values within 1e-9 of Math.pow, and computes clipped ones exactly", () => {
    const random = seeded(7);
    for (const p of [1, 2, 2.4, 3.5]) {
      const terms = LpTerms.of(p);
      let worst = 0;
      for (let k = 0; k < 20000; k++) {
        const scale = 0.001 + random() * 0.1;
        const q = Math.floor(random() * 15) - 7;
        // An in-range value at least 1% of a step from its code (smaller terms weigh < 1e-5 of a half step's).
        const offset = (0.01 + random() * 0.49) * (random() < 0.5 ? -1 : 1);
        const v = (q + offset) * scale;
        const exact = Math.pow(Math.abs(v - Math.round(v / scale) * scale), p);
        worst = Math.max(worst, Math.abs(terms.term(v, 1 / scale, scale, Math.pow(scale, p), -8, 7) - exact) / exact);
      }
      expect(worst).toBeLessThan(1e-9);
      expect(worst).toBeGreaterThan(0); // interpolated, not Math.pow
      // Clipped: the distance to the range's end, by Math.pow.
      expect(terms.term(1, 10, 0.1, Math.pow(0.1, p), -8, 7)).toBe(Math.pow(Math.abs(1 - 7 * 0.1), p));
      expect(terms.term(-2, 10, 0.1, Math.pow(0.1, p), -8, 7)).toBe(Math.pow(Math.abs(-2 + 8 * 0.1), p));
    }
    // Below p = 1, u^p is too steep at 0 for the table: Math.pow throughout.
    expect(LpTerms.of(0.5).term(0.123, 10, 0.1, Math.pow(0.1, 0.5), -8, 7)).toBe(Math.pow(Math.abs(0.123 - 0.1), 0.5));
  });
});
