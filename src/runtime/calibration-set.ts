/**
 * Calibration sets of (x_t, t, y) triples recorded from the FP model's own sampler trajectories, with x_t the
 * exact input the model saw at step t (the PTQ4DM reference pairs them off by one step). Strategies: uniform,
 * evenly spaced, random distinct (Q-DiT) and NDTC (PTQ4DM). A cache file (JSON header + raw arrays) keyed by
 * the model's sha256 lets a recompile skip the sampler.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Schedule } from './diffusion.js';
import { elementCount } from './host-tensor.js';
import { Rng } from './rng.js';
import { samplerTimesteps, sampleImages, type DenoiseFn } from './samplers.js';

/** How the recorded steps are chosen, per trajectory. */
export type CalibrationStrategy =
  /** `all`: every step of every trajectory; `random`: one uniformly random step per trajectory. */
  | { kind: 'uniform'; mode: 'all' | 'random' }
  | { kind: 'evenly-spaced'; count: number }
  /** One random step per trajectory, distinct across trajectories while the grid lasts. */
  | { kind: 'random-distinct' }
  /** t ~ Normal(mean·T, std·T), clamped to [0, T−1], snapped to the nearest grid step. */
  | { kind: 'ndtc'; mean: number; std: number };

/** What to record. */
export interface CalibrationRequest {
  strategy: CalibrationStrategy;
  trajectories: number;
  /** DDIM steps of the FP sampler. */
  samplerSteps: number;
  seed: number;
  /** Labels are dealt 0, 1, …, classes−1, 0, … to the trajectories (0 for unconditional models). */
  classes: number;
  imageShape: number[];
  batch?: number;
}

/** Recorded triples, row-aligned. */
export interface CalibrationRecords {
  imageShape: number[];
  x: Float32Array;
  t: BigInt64Array;
  y: BigInt64Array;
}

/** Step indices (into the sampler grid, high t first) that each trajectory contributes. */
export function planCalibrationSteps(strategy: CalibrationStrategy, trajectories: number, grid: readonly number[], T: number, seed: number): number[][] {
  const rng = new Rng(seed ^ 0x9e3779b9);
  const steps = grid.length;
  switch (strategy.kind) {
    case 'uniform':
      return Array.from({ length: trajectories }, () => (strategy.mode === 'all' ? grid.map((_, i) => i) : [rng.int(steps)]));
    case 'evenly-spaced': {
      const count = Math.min(strategy.count, steps);
      const chosen = Array.from({ length: count }, (_, i) => (count === 1 ? 0 : Math.round((i * (steps - 1)) / (count - 1))));
      return Array.from({ length: trajectories }, () => chosen.slice());
    }
    case 'random-distinct': {
      // Deal from shuffled decks of the whole grid: distinct until a deck runs out, then a new deck.
      const out: number[][] = [];
      while (out.length < trajectories) {
        const deck = grid.map((_, i) => i);
        for (let i = deck.length - 1; i > 0; i--) {
          const j = rng.int(i + 1);
          [deck[i], deck[j]] = [deck[j]!, deck[i]!];
        }
        for (const step of deck) if (out.length < trajectories) out.push([step]);
      }
      return out;
    }
    case 'ndtc':
      return Array.from({ length: trajectories }, () => {
        const t = Math.min(T - 1, Math.max(0, Math.round((strategy.mean + strategy.std * rng.normal()) * T)));
        let best = 0;
        for (let i = 1; i < steps; i++) if (Math.abs(grid[i]! - t) < Math.abs(grid[best]! - t)) best = i;
        return [best];
      });
  }
}

/**
 * Runs the FP DDIM sampler from seeded x_T for each trajectory and records the planned steps. A batch stops
 * as soon as its latest planned step is recorded (NDTC: "run from x_T until t, take x_t").
 */
export async function buildCalibrationRecords(denoise: DenoiseFn, schedule: Schedule, request: CalibrationRequest, progress?: (done: number, total: number) => void): Promise<CalibrationRecords> {
  const grid = samplerTimesteps(schedule, { sampler: 'ddim', steps: request.samplerSteps });
  const plan = planCalibrationSteps(request.strategy, request.trajectories, grid, schedule.T, request.seed);
  const perSample = elementCount(request.imageShape);
  const total = plan.reduce((a, p) => a + p.length, 0);
  const x = new Float32Array(total * perSample);
  const t = new BigInt64Array(total);
  const y = new BigInt64Array(total);
  // Rows ordered by trajectory, then by step within it.
  const rowOf = new Map<string, number>();
  let row = 0;
  plan.forEach((steps, trajectory) => [...steps].sort((a, b) => a - b).forEach((s) => rowOf.set(`${trajectory}:${s}`, row++)));
  const batch = request.batch ?? 64;
  const labels = plan.map((_, i) => (request.classes > 0 ? i % request.classes : 0));
  const lastStep = (first: number) => Math.max(...plan.slice(first, first + batch).flat());
  let recorded = 0;
  await sampleImages(denoise, schedule, labels, request.imageShape, {
    sampler: 'ddim',
    steps: request.samplerSteps,
    seed: request.seed,
    batch,
    onStep: (record) => {
      const count = record.y.length;
      for (let i = 0; i < count; i++) {
        const target = rowOf.get(`${record.firstSample + i}:${record.stepIndex}`);
        if (target === undefined) continue;
        x.set(record.x_t.subarray(i * perSample, (i + 1) * perSample), target * perSample);
        t[target] = BigInt(record.t);
        y[target] = record.y[i]!;
        progress?.(++recorded, total);
      }
      return record.stepIndex < lastStep(record.firstSample);
    },
  });
  return { imageShape: request.imageShape, x, t, y };
}

/** The cache file's JSON header. */
export interface CalibrationCacheHeader {
  format: 'qcompile-calibration-v1';
  modelSha256: string;
  strategy: CalibrationStrategy;
  seed: number;
  samplerSteps: number;
  trajectories: number;
  classes: number;
  count: number;
  imageShape: number[];
}

const MAGIC = 'QCALIB1\n';

/** sha256 (hex) of a model file's bytes or of serialized bytes. */
export function modelSha256(model: string | Uint8Array): string {
  return createHash('sha256').update(typeof model === 'string' ? readFileSync(model) : model).digest('hex');
}

/** Serializes records: magic, u32 header length, JSON header, zero padding to 8, then t (i64), y (i64), x (f32) — int64 first so every array stays aligned. */
export function encodeCalibrationCache(header: Omit<CalibrationCacheHeader, 'format' | 'count' | 'imageShape'>, records: CalibrationRecords): Uint8Array {
  const full: CalibrationCacheHeader = { format: 'qcompile-calibration-v1', ...header, count: records.t.length, imageShape: records.imageShape };
  const json = Buffer.from(JSON.stringify(full));
  const headerEnd = MAGIC.length + 4 + json.length;
  const dataStart = Math.ceil(headerEnd / 8) * 8;
  const out = new Uint8Array(dataStart + records.x.byteLength + records.t.byteLength + records.y.byteLength);
  out.set(Buffer.from(MAGIC, 'latin1'));
  new DataView(out.buffer).setUint32(MAGIC.length, json.length, true);
  out.set(json, MAGIC.length + 4);
  let offset = dataStart;
  for (const array of [records.t, records.y, records.x]) {
    out.set(new Uint8Array(array.buffer, array.byteOffset, array.byteLength), offset);
    offset += array.byteLength;
  }
  return out;
}

/** The result of reading a cache: the records, or why they cannot be used. */
export type CacheLookup = { ok: true; header: CalibrationCacheHeader; records: CalibrationRecords } | { ok: false; reason: string };

/**
 * Reads a cache and checks it matches `expected` (model hash, strategy, seed, sampler steps, trajectories,
 * classes); a stale or damaged cache is refused with a one-line reason, so the caller re-runs the sampler.
 */
export function decodeCalibrationCache(bytes: Uint8Array, expected: Omit<CalibrationCacheHeader, 'format' | 'count' | 'imageShape'>): CacheLookup {
  if (bytes.length < MAGIC.length + 4 || Buffer.from(bytes.subarray(0, MAGIC.length)).toString('latin1') !== MAGIC) return { ok: false, reason: 'not a qcompile calibration cache' };
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const jsonLength = view.getUint32(MAGIC.length, true);
  let header: CalibrationCacheHeader;
  try {
    header = JSON.parse(Buffer.from(bytes.subarray(MAGIC.length + 4, MAGIC.length + 4 + jsonLength)).toString('utf8')) as CalibrationCacheHeader;
  } catch {
    return { ok: false, reason: 'calibration cache header is damaged' };
  }
  if (header.modelSha256 !== expected.modelSha256) return { ok: false, reason: `calibration cache is stale: it was built for model sha256 ${header.modelSha256.slice(0, 12)}…, this model is ${expected.modelSha256.slice(0, 12)}…` };
  for (const key of ['strategy', 'seed', 'samplerSteps', 'trajectories', 'classes'] as const) {
    if (JSON.stringify(header[key]) !== JSON.stringify(expected[key])) return { ok: false, reason: `calibration cache is stale: ${key} was ${JSON.stringify(header[key])}, now ${JSON.stringify(expected[key])}` };
  }
  const perSample = elementCount(header.imageShape);
  const dataStart = Math.ceil((MAGIC.length + 4 + jsonLength) / 8) * 8;
  const need = dataStart + header.count * (perSample * 4 + 16);
  if (bytes.length !== need) return { ok: false, reason: `calibration cache is truncated: ${bytes.length} bytes, expected ${need}` };
  const copy = bytes.slice(dataStart).buffer; // aligned fresh buffer
  const t = new BigInt64Array(copy, 0, header.count);
  const y = new BigInt64Array(copy, t.byteLength, header.count);
  const x = new Float32Array(copy, 2 * t.byteLength, header.count * perSample);
  return { ok: true, header, records: { imageShape: header.imageShape, x, t, y } };
}
