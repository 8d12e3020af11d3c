import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { discoverLayers } from '../../src/quant/layers.js';
import { loadModelSync } from '../../src/ir/serde.js';
import { printModel } from '../../src/ir/printer.js';
import { activationRange, chooseActivationParams, TensorStats } from '../../src/passes/activation-ranges.js';
import { calibrate, sampledRowStart, timestepGroup } from '../../src/passes/calibrate.js';
import type { TensorMap } from '../../src/ir/executor.js';
import type { PassContext } from '../../src/passes/pass.js';
import type { ActivationQuantSpec, QuantPlan } from '../../src/quant/plan.js';
import type { StepStrategy } from '../../src/runtime/calibration.js';
import { ditCalibrationSet } from '../../bench/digits-quality.js';
import { OrtExecutor } from '../../src/runtime/ir-executor.js';
import { calibrationBatches } from '../../bench/calibration-batches.js';
import { DIT_DIGITS } from './fixture.js';
import { Artifacts, ACTIVATION_STATS, CALIBRATION_BATCHES, CALIBRATION_TIMESTEPS, INPUT_CHANNEL_ABSMAX } from '../../src/passes/artifacts.js';
import { runPass } from '../../src/passes/pass-manager.js';

const executor = new OrtExecutor();
const model = loadModelSync(`${DIT_DIGITS}/model.onnx`);
const layers = discoverLayers(model).filter((l) => l.opType !== 'Gather');

function context(input: ActivationQuantSpec, batches: TensorMap[]): PassContext {
  const plan: QuantPlan = new Map(layers.map((l) => [l.name, { layer: l.name, input }]));
  return { seed: 0, plan, executor, artifacts: new Artifacts().set(CALIBRATION_BATCHES, batches), progress: () => {}, log: () => {} };
}
const staticSpec: ActivationQuantSpec = { bits: 8, symmetric: false, mode: { kind: 'static' }, range: { kind: 'minmax' } };

describe('calibrate: observers against the tensors ORT computes', () => {
  it('per-channel (with `channels`) and per-tensor min/max equal a brute-force reduction; EMA folds batch extremes; the model is left as it was', async () => {
    const batches = calibrationBatches(64, 32);
    const before = printModel(model);
    const ctx = context(staticSpec, batches);
    await runPass(calibrate, model, { ema: 0.9, timesteps: 1000, channels: true }, ctx);
    expect(printModel(model)).toBe(before);
    const stats = ctx.artifacts.get(ACTIVATION_STATS) as Map<string, TensorStats[]>;
    const absmax = ctx.artifacts.get(INPUT_CHANNEL_ABSMAX) as Map<string, Float32Array>;
    // Without `channels` the probes reduce whole rows: the same per-tensor extremes, no per-channel maxima.
    const rowsOnly = context(staticSpec, batches);
    await runPass(calibrate, model, { ema: 0.9, timesteps: 1000 }, rowsOnly);
    const rowStats = rowsOnly.artifacts.get(ACTIVATION_STATS) as Map<string, TensorStats[]>;
    for (const [name, groups] of stats) expect([rowStats.get(name)![0]!.min, rowStats.get(name)![0]!.max]).toEqual([groups[0]!.min, groups[0]!.max]);
    expect((rowsOnly.artifacts.get(INPUT_CHANNEL_ABSMAX) as Map<string, Float32Array>).size).toBe(0);
    const probed = [layers.find((l) => l.opType === 'Conv')!, layers.find((l) => l.role === 'mlp.fc2')!];
    const prepared = await executor.prepare(model, probed.map((l) => l.node.input(0).name));
    try {
      const perBatch = await Promise.all(batches.map((feeds) => prepared.run(feeds)));
      for (const layer of probed) {
        const s = stats.get(layer.name)![0]!;
        const conv = layer.opType === 'Conv';
        const extremes = perBatch.map((outputs) => {
          const x = outputs[layer.node.input(0).name]!;
          const data = x.data as Float32Array;
          const channels = conv ? x.dims[1]! : x.dims[x.dims.length - 1]!;
          const inner = conv ? x.dims[2]! * x.dims[3]! : 1;
          const lo = new Float32Array(channels).fill(Infinity);
          const hi = new Float32Array(channels).fill(-Infinity);
          for (let i = 0; i < data.length; i++) {
            const c = Math.floor(i / inner) % channels;
            lo[c] = Math.min(lo[c]!, data[i]!);
            hi[c] = Math.max(hi[c]!, data[i]!);
          }
          return { lo, hi };
        });
        const channelMin = extremes[0]!.lo.map((v, c) => Math.min(v, extremes[1]!.lo[c]!));
        const channelMax = extremes[0]!.hi.map((v, c) => Math.max(v, extremes[1]!.hi[c]!));
        expect(Array.from(s.channelMin)).toEqual(Array.from(channelMin));
        expect(Array.from(s.channelMax)).toEqual(Array.from(channelMax));
        const min = extremes.map((e) => Math.min(...e.lo));
        const max = extremes.map((e) => Math.max(...e.hi));
        expect(s.min).toBeCloseTo(0.9 * min[0]! + 0.1 * min[1]!, 5);
        expect(s.max).toBeCloseTo(0.9 * max[0]! + 0.1 * max[1]!, 5);
        expect(Array.from(absmax.get(layer.node.input(0).name)!)).toEqual(Array.from(channelMax, (v, c) => Math.max(v, -channelMin[c]!)));
        // The value sample comes from the tensor: inside its range, and a real spread of it.
        const sample = s.values();
        expect(sample.length).toBeGreaterThan(32);
        expect(Math.min(...sample)).toBeGreaterThanOrEqual(Math.min(...min));
        expect(Math.max(...sample)).toBeLessThanOrEqual(Math.max(...max));
      }
    } finally {
      await prepared.release();
    }
  });

  it('per-timestep observers split a mixed-t batch by each sample\'s timestep group (extremes and the strided value sample)', async () => {
    const batches = calibrationBatches(64, 64);
    // One batch with t spread over [0, 1000): every group gets samples from it.
    const ctx = context({ ...staticSpec, mode: { kind: 'per-timestep', groups: 4 } }, batches);
    await runPass(calibrate, model, { ema: 0, timesteps: 1000 }, ctx);
    // fc1 reads rows of 64 × 128 values (sampled whole here), fc2 rows of 64 × 512 (sampled with a stride).
    const probed = [layers.find((l) => l.role === 'mlp.fc1')!, layers.find((l) => l.role === 'mlp.fc2')!];
    const prepared = await executor.prepare(model, probed.map((l) => l.node.input(0).name));
    try {
      const outputs = await prepared.run(batches[0]!);
      const t = Array.from(batches[0]!.t!.data as BigInt64Array, Number);
      for (const layer of probed) {
        const groups = (ctx.artifacts.get(ACTIVATION_STATS) as Map<string, TensorStats[]>).get(layer.name)!;
        expect(groups).toHaveLength(4);
        const data = outputs[layer.node.input(0).name]!.data as Float32Array;
        const perSample = data.length / 64;
        for (let g = 0; g < 4; g++) {
          let lo = Infinity;
          let hi = -Infinity;
          for (let s = 0; s < 64; s++) if (timestepGroup(t[s]!, 4, 1000) === g) for (let i = s * perSample; i < (s + 1) * perSample; i++) {
            lo = Math.min(lo, data[i]!);
            hi = Math.max(hi, data[i]!);
          }
          expect([groups[g]!.min, groups[g]!.max]).toEqual([lo, hi]);
          // Values from another group's rows would fall outside this group's range sooner or later.
          const sample = groups[g]!.values();
          expect(sample.length).toBeGreaterThan(1000);
          expect(sample.every((v) => v >= lo && v <= hi)).toBe(true);
        }
      }
    } finally {
      await prepared.release();
    }
  });
});

describe('the strided value sample', () => {
  it('assigns each sampled value to the row it came from', () => {
    for (const [rowLength, stride, offset, rows] of [[100, 7, 3, 10], [32768, 61, 5, 64], [8192, 31, 0, 3]] as const) {
      const count = Math.ceil((rows * rowLength - offset) / stride);
      const start = sampledRowStart({ stride, offset, rowLength }, count, rows);
      expect([start(0), start(rows)]).toEqual([0, count]);
      for (let r = 0; r < rows; r++) for (let i = start(r); i < start(r + 1); i++) expect(Math.floor((offset + i * stride) / rowLength)).toBe(r);
    }
    // Whole rows: equal shares.
    expect(sampledRowStart({ stride: 1, offset: 0 }, 640, 64)(10)).toBe(100);
  });
});

describe('calibrate sees the timestep distribution the strategy intends', () => {
  it('uniform, random-distinct and NDTC sets arrive at the observers with their own t histograms', async () => {
    // The fixture's DDIM-50 grid (S−1−i)·⌊T/S⌋ that ditCalibrationSet samples along: 980, 960, …, 0.
    const grid = new Set(Array.from({ length: 50 }, (_, i) => 980 - 20 * i));
    const seen: Record<string, Map<number, number>> = {};
    const strategies: [string, StepStrategy, number][] = [
      ['uniform', { kind: 'uniform' }, 60],
      ['random-distinct', { kind: 'random-distinct' }, 50],
      ['ndtc', { kind: 'ndtc', mean: 0.4, std: 0.4 }, 60],
    ];
    for (const [name, strategy, samples] of strategies) {
        const set = await ditCalibrationSet(model, 50, { samples, batch: 50, strategy, seed: 3 });
        const ctx = context({ ...staticSpec, mode: { kind: 'per-timestep', groups: 10 } }, set.batches);
        await runPass(calibrate, model, { ema: 0, timesteps: 1000 }, ctx);
        const counts = ctx.artifacts.get(CALIBRATION_TIMESTEPS) as Map<number, number>;
        const expected = new Map<number, number>();
        for (const t of set.timesteps) expected.set(t, (expected.get(t) ?? 0) + 1);
        expect(counts).toEqual(expected);
        for (const t of counts.keys()) expect(grid.has(t)).toBe(true);
        seen[name] = counts;
    }
    const values = (counts: Map<number, number>) => [...counts].flatMap(([t, n]) => Array<number>(n).fill(t));
    const bins = (counts: Map<number, number>) => values(counts).reduce((h, t) => (h[Math.floor(t / 100)]++, h), Array<number>(10).fill(0));
    // Uniform: every tenth of the schedule is visited, none holds more than a quarter.
    expect(Math.min(...bins(seen.uniform!))).toBeGreaterThan(0);
    expect(Math.max(...bins(seen.uniform!))).toBeLessThan(18);
    // Random-distinct: 50 trajectories, 50 steps — each step of the grid exactly once.
    expect(seen['random-distinct']!.size).toBe(50);
    expect([...seen['random-distinct']!.values()].every((n) => n === 1)).toBe(true);
    // NDTC (μ = 0.4T, σ = 0.4T, clamped to the grid's ends): median near 400, and the clamp piles samples at both ends.
    const ndtc = values(seen.ndtc!).sort((a, b) => a - b);
    expect(Math.abs(ndtc[ndtc.length >> 1]! - 400)).toBeLessThan(120);
    expect(bins(seen.ndtc!)[0]! + bins(seen.ndtc!)[9]!).toBeGreaterThan(6);
  }, 300_000);
});

describe('range choice', () => {
  it('L_p (p = 2.4) search clips an outlier and lowers the error against min/max at 4 bits; percentile clips too', () => {
    const stats = new TensorStats(4096, 1, 0);
    const values = Float32Array.from({ length: 4096 }, (_, i) => (i === 100 ? 8 : Math.sin(i * 12.9898)));
    const lo = new Float32Array([Math.min(...values)]);
    const hi = new Float32Array([Math.max(...values)]);
    stats.observeExtremes(lo, hi);
    stats.observeValues(values);
    stats.endBatch();
    const error = (scale: number, zeroPoint: number) => {
      const { qmin, qmax } = activationRange(4, false);
      let e = 0;
      for (const v of values) e += Math.abs(v - (Math.min(qmax, Math.max(qmin, Math.round(v / scale) + zeroPoint)) - zeroPoint) * scale) ** 2.4;
      return e;
    };
    const minmax = chooseActivationParams(stats, { kind: 'minmax' }, 4, false);
    const lp = chooseActivationParams(stats, { kind: 'lp', p: 2.4, gridSize: 100 }, 4, false);
    const percentile = chooseActivationParams(stats, { kind: 'percentile', percentile: 99 }, 4, false);
    expect(minmax.scale).toBeCloseTo((hi[0]! - Math.min(lo[0]!, 0)) / 15, 5);
    expect(lp.scale).toBeLessThan(minmax.scale);
    expect(error(lp.scale, lp.zeroPoint)).toBeLessThan(error(minmax.scale, minmax.zeroPoint));
    expect(percentile.scale).toBeLessThan(minmax.scale / 3);
  });
});

describe('the reservoir value sample', () => {
  const n = 200_000;
  const values = Float32Array.from({ length: n }, (_, i) => i);

  it('is uniform over everything offered: mean and deciles of 0..n−1 within 4 standard errors', () => {
    const stats = new TensorStats(2000, 5, 0);
    stats.observeValues(values);
    const sample = stats.values();
    expect(sample.length).toBe(2000);
    const mean = sample.reduce((a, b) => a + b, 0) / sample.length;
    expect(Math.abs(mean - (n - 1) / 2)).toBeLessThan(4 * (n / Math.sqrt(12 * 2000)));
    const deciles = new Array(10).fill(0);
    for (const v of sample) deciles[Math.floor((v * 10) / n)]++;
    // Binomial(2000, 0.1): σ ≈ 13.4.
    for (const count of deciles) expect(Math.abs(count - 200)).toBeLessThan(4 * 13.4);
  });

  it('does not depend on how the values are split into calls', () => {
    const whole = new TensorStats(2000, 5, 0);
    whole.observeValues(values);
    const chunked = new TensorStats(2000, 5, 0);
    for (let start = 0, size = 7; start < n; start += size, size = (size * 3) % 4999) chunked.observeValues(values.subarray(start, Math.min(n, start + size)));
    expect(chunked.values()).toEqual(whole.values());
  });
});

describe('calibrate on a model with dynamic height and width', () => {
  it('samples rows with the stride of the fed resolution, as on the same model with fixed dims', async () => {
    // The sd-digits UNet declares sample [batch, 1, 16, 16]; diffusers exports declare [batch, 4, height, width].
    const load = (dynamic: boolean) => {
      const unet = loadModelSync(join(import.meta.dirname, '..', 'fixtures', 'sd-digits', 'unet', 'model.onnx'));
      const sample = unet.graph.inputs.find((v) => v.name === 'sample')!;
      if (dynamic) sample.type = { elemType: sample.type!.elemType, shape: ['batch', 1, 'height', 'width'] };
      return unet;
    };
    const rows = 64;
    let seed = 1;
    const noise = (n: number) => Float32Array.from({ length: n }, () => ((seed = (seed * 16807) % 2147483647) / 2147483647) * 2 - 1);
    const batches: TensorMap[] = [
      {
        sample: { dtype: 'float32', dims: [rows, 1, 16, 16], data: noise(rows * 256) },
        timestep: { dtype: 'int64', dims: [rows], data: BigInt64Array.from({ length: rows }, (_, i) => BigInt(100 * i)) },
        encoder_hidden_states: { dtype: 'float32', dims: [rows, 8, 64], data: noise(rows * 512) },
      },
    ];
    const run = async (dynamic: boolean) => {
      const unet = load(dynamic);
      const unetLayers = discoverLayers(unet).filter((l) => l.opType !== 'Gather');
      const plan: QuantPlan = new Map(unetLayers.map((l) => [l.name, { layer: l.name, input: staticSpec }]));
      const ctx: PassContext = { seed: 0, plan, executor, artifacts: new Artifacts().set(CALIBRATION_BATCHES, batches), progress: () => {}, log: () => {} };
      const { statistics } = await runPass(calibrate, unet, { ema: 0, timesteps: 1000 }, ctx);
      const stats = ctx.artifacts.get(ACTIVATION_STATS) as Map<string, TensorStats[]>;
      return { statistics, samples: [...stats].map(([name, [s]]) => [name, s!.min, s!.max, Array.from(s!.values())]) };
    };
    const fixed = await run(false);
    const dynamic = await run(true);
    // Whole rows are only the rows too short to stride (5 of 61 here); with the dims unknown they were all 61, and
    // ORT held each observed activation whole to the end of the run (SD-1.5 at 32×32: 1.5 GB a batch of 8 rows).
    expect(Number(fixed.statistics.whole_row_samples)).toBeLessThan(Number(fixed.statistics.tensors) / 2);
    expect(dynamic.statistics).toEqual(fixed.statistics);
    expect(dynamic.samples).toEqual(fixed.samples);
  });
});
