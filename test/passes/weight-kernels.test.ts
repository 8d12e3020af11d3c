import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { assembledModuleSource, MODULE_PATH } from '../../scripts/build-wasm.js';
import { packInt4 } from '../../src/ir/tensor.js';
import { roundHalfEven } from '../../src/passes/gptq.js';
import { computeCellParams, intRange, roundToNearest, type QuantizerSettings } from '../../src/passes/weight-quantizer.js';
import type { WeightMatrix } from '../../src/quant/kernels/weight-kernels.js';

/** Seeded values with ties: a quarter are whole multiples of 1/16 (x / s lands on halves for s = 1/8, 1/32). */
function values(length: number, seed: number): Float32Array {
  let s = seed;
  const next = () => (s = (s * 1664525 + 1013904223) % 2 ** 32) / 2 ** 32;
  return Float32Array.from({ length }, () => (next() < 0.25 ? Math.round((next() - 0.5) * 64) / 16 : (next() - 0.5) * 4 * next()));
}

/** The scalar definition: each cell's range from 0, its scale and zero point, then nearest(x / s) + z clamped. */
function reference(matrix: WeightMatrix, settings: QuantizerSettings) {
  const { N, K, kMajor } = matrix;
  const { bits, symmetric, signed } = settings;
  const size = settings.granularity.kind === 'group' ? settings.granularity.size : K;
  const perTensor = settings.granularity.kind === 'per-tensor';
  const cellOf = (n: number, k: number) => (perTensor ? 0 : Math.floor(k / size) * N + n);
  const at = (n: number, k: number) => matrix.values[kMajor ? k * N + n : n * K + k]!;
  const cells = perTensor ? 1 : Math.ceil(K / size) * N;
  const lo = new Float64Array(cells);
  const hi = new Float64Array(cells);
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < K; k++) {
      const c = cellOf(n, k);
      lo[c] = Math.min(lo[c]!, at(n, k));
      hi[c] = Math.max(hi[c]!, at(n, k));
    }
  }
  const { qmin, qmax } = intRange(bits, signed);
  const scale = Float32Array.from(lo, (l, c) => Math.fround(symmetric ? Math.max(-l, hi[c]!) / (2 ** (bits - 1) - 1) : (hi[c]! - l) / (qmax - qmin)) || 1);
  const zeroPoint = Int32Array.from(lo, (l, c) => (symmetric ? (signed ? 0 : 2 ** (bits - 1)) : Math.min(qmax, Math.max(qmin, qmin + roundHalfEven(-l / scale[c]!)))));
  const codes = new Int32Array(N * K);
  for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) codes[kMajor ? k * N + n : n * K + k] = Math.min(qmax, Math.max(qmin, roundHalfEven(at(n, k) / scale[cellOf(n, k)]!) + zeroPoint[cellOf(n, k)]!));
  return { scale, zeroPoint, codes };
}

describe('SIMD weight kernels', () => {
  it('are the module assembled from weight-kernels.wat (run `npm run build:wasm` after editing it)', async () => {
    expect(readFileSync(MODULE_PATH, 'utf8')).toBe(await assembledModuleSource());
  });

  // Shapes with whole 16-value vectors, tails, odd rows (nibbles fall back to the scalar packer) and, the last,
  // more values than one chunk of the module's memory (rows split across chunks and groups).
  const shapes: [number, number][] = [[48, 64], [35, 40], [18, 45], [1, 37], [1536, 1024]];
  const granularities: QuantizerSettings['granularity'][] = [{ kind: 'per-tensor' }, { kind: 'per-channel' }, { kind: 'group', size: 32 }, { kind: 'group', size: 24 }, { kind: 'group', size: 7 }];
  for (const [N, K] of shapes) {
    it(`give the scalar definition's ranges and codes, int4 and int8, both storage orders, ${N}x${K}`, () => {
      const rows = values(N * K, N + K);
      const columns = new Float32Array(N * K);
      for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) columns[k * N + n] = rows[n * K + k]!;
      const large = N * K > 1 << 20; // the chunked shape: fewer cases, each is seconds of scalar reference
      for (const granularity of large ? granularities.slice(1, 4) : granularities) {
        for (const [bits, symmetric, signed] of large ? ([[4, true, true], [8, false, false]] as const) : ([[4, true, true], [4, false, false], [8, true, true], [8, false, false], [6, false, true]] as const)) {
          const settings: QuantizerSettings = { bits, symmetric, signed, granularity, range: { kind: 'minmax' } };
          const range = intRange(bits, signed);
          for (const matrix of [{ values: rows, N, K, kMajor: false }, { values: columns, N, K, kMajor: true }]) {
            const want = reference(matrix, settings);
            const params = computeCellParams(matrix, settings);
            expect(params.scale).toEqual(want.scale);
            expect(params.zeroPoint).toEqual(want.zeroPoint);
            const stored = roundToNearest.stored!(matrix, params, range, bits <= 4);
            const expected = bits <= 4 ? packInt4(want.codes) : Uint8Array.from(want.codes, (c) => c & 0xff);
            expect(stored.length).toBe(expected.length);
            expect(Buffer.from(stored).equals(Buffer.from(expected))).toBe(true);
          }
        }
      }
    });
  }

  it('name the first NaN or infinity of a weight from the scan', () => {
    for (const kMajor of [false, true]) {
      for (const bad of [NaN, Infinity, -Infinity]) {
        const v = values(64 * 48, 3);
        v[1000] = bad;
        v[2000] = NaN;
        const settings: QuantizerSettings = { bits: 4, symmetric: true, signed: true, granularity: { kind: 'group', size: 16 }, range: { kind: 'minmax' } };
        expect(() => computeCellParams({ values: v, N: 64, K: 48, kMajor, name: 'w' }, settings)).toThrow(/'w'.*1000|1000.*'w'/);
      }
    }
  });
});
