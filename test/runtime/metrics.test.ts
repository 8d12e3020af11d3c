import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadManifestTensors, type HostTensor } from '../../src/runtime/host-tensor.js';
import { FeatureExtractor, featureStats, frechetDistance, jacobiEigen, labelAgreement, maxAbsError, psnrDb, sqnrDb, symmetricSqrt } from '../../src/runtime/metrics.js';
import { seededNormal, seededRandom } from '../../src/random.js';

const CLS = 'test/fixtures/digits-classifier';
const DIT = 'test/fixtures/dit-digits';

describe('elementwise metrics', () => {
  it('SQNR, max-abs and PSNR on a known perturbation', () => {
    const ref = [1, -1, 1, -1];
    const test = [1.1, -1, 1, -1];
    expect(maxAbsError(ref, test)).toBeCloseTo(0.1, 12);
    expect(sqnrDb(ref, test)).toBeCloseTo(10 * Math.log10(4 / 0.01), 9);
    expect(psnrDb(ref, test)).toBeCloseTo(10 * Math.log10(4 / (0.01 / 4)), 9);
    expect(sqnrDb(ref, ref)).toBe(Infinity);
  });

  it('Jacobi eigen and sqrt reconstruct a random SPD matrix', () => {
    const n = 12;
    const g = Float64Array.from({ length: n * n }, seededNormal(4));
    const s = new Float64Array(n * n);
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) for (let k = 0; k < n; k++) s[i * n + j]! += g[i * n + k]! * g[j * n + k]!;
    const root = symmetricSqrt(s, n);
    let err = 0;
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) {
      let v = 0;
      for (let k = 0; k < n; k++) v += root[i * n + k]! * root[k * n + j]!;
      err = Math.max(err, Math.abs(v - s[i * n + j]!));
    }
    expect(err).toBeLessThan(1e-9);
    const { values } = jacobiEigen(s, n);
    let trace = 0;
    for (let i = 0; i < n; i++) trace += s[i * n + i]!;
    expect(values.reduce((a, b) => a + b, 0)).toBeCloseTo(trace, 8);
  });

  it('FD of two Gaussians with commuting covariances matches the closed form', () => {
    const n = 3;
    const a = { dim: n, mu: Float64Array.from([0, 0, 0]), cov: Float64Array.from([4, 0, 0, 0, 1, 0, 0, 0, 9]) };
    const b = { dim: n, mu: Float64Array.from([1, 2, 0]), cov: Float64Array.from([1, 0, 0, 0, 1, 0, 0, 0, 1]) };
    // ||Δμ||² = 5; Σ (σa − σb)² = (2−1)² + 0 + (3−1)² = 5.
    expect(frechetDistance(a, b)).toBeCloseTo(10, 9);
  });
});

describe('Fréchet distance on the digits classifier', () => {
  let data: Record<string, HostTensor>;
  let extractor: FeatureExtractor;
  let real: { dim: number; mu: Float64Array; cov: Float64Array };
  beforeAll(async () => {
    data = loadManifestTensors(`${CLS}/data_manifest.json`);
    extractor = await FeatureExtractor.open(`${CLS}/classifier.onnx`, 256, { intraOpNumThreads: 2 });
    real = { dim: 64, mu: data.features_mu!.data as Float64Array, cov: data.features_cov!.data as Float64Array };
  });
  afterAll(() => extractor.release());

  it('ORT features of all real digits reproduce the stored statistics (FD ≈ 0) and labels', async () => {
    const images = data.images!;
    const out = await extractor.extract(images.data as Float32Array, images.dims);
    expect(maxAbsError(out.features, data.features!.data as Float32Array)).toBeLessThan(1e-3);
    expect(Math.abs(frechetDistance(featureStats(out.features, 64), real))).toBeLessThan(1e-6);
    const accuracy = labelAgreement(out.logits, 10, Array.from(data.labels!.data as Uint8Array));
    expect(accuracy).toBeGreaterThan(0.995);
  });

  it('200 random real digits vs all 1797 score FD within the README band (57 ± 15)', () => {
    const features = data.features!.data as Float32Array;
    const random = seededRandom(11);
    const scores: number[] = [];
    for (let draw = 0; draw < 5; draw++) {
      const order = Array.from({ length: 1797 }, (_, i) => i);
      for (let i = 0; i < 200; i++) {
        const j = i + Math.floor(random() * (1797 - i));
        [order[i], order[j]] = [order[j]!, order[i]!];
      }
      const subset = new Float32Array(200 * 64);
      for (let i = 0; i < 200; i++) subset.set(features.subarray(order[i]! * 64, order[i]! * 64 + 64), i * 64);
      scores.push(frechetDistance(featureStats(subset, 64), real));
    }
    const mean = scores.reduce((a, b) => a + b, 0) / scores.length;
    expect(mean).toBeGreaterThan(42);
    expect(mean).toBeLessThan(72);
  });

  it('the fixture FP DDIM-100 samples give FD ≈ 97.4 and 88.5% label accuracy (README table)', async () => {
    const samples = loadManifestTensors(`${DIT}/samples_manifest.json`);
    const ddim = samples.ddim100!;
    const out = await extractor.extract(ddim.data as Float32Array, ddim.dims);
    const fd = frechetDistance(featureStats(out.features, 64), real);
    expect(fd).toBeGreaterThan(97.4 - 0.5);
    expect(fd).toBeLessThan(97.4 + 0.5);
    const accuracy = labelAgreement(out.logits, 10, samples.labels!.data as BigInt64Array);
    expect(accuracy).toBeCloseTo(0.885, 3);
  });
});
