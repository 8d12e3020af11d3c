/**
 * ORT's CPU memory arena in calibration sessions: quantizes a model's weights (int8 per-channel, every
 * attention/MLP/adaLN linear), then runs the calibrate pass over it — the session a W8A8 recipe's second
 * calibration opens — with the arena on and off, each in its own process (relaunched under the CLI's
 * allocator settings). Reports per setting the RSS after each calibration batch, the peak, and the seconds per
 * batch after the first. Then the cost of running without it: plain FP forwards of the model at the same batch,
 * one session with the arena and one without, runs interleaved (`--runs` each after a warm-up), medians.
 *
 * Run: npx tsx bench/ort-arena.ts [--model /tmp/qcompile-xl/model.onnx] [--batches 3] [--batch 8] [--runs 5]
 *      (prints JSON as its last line; the default model is `qcompile synth dit --preset dit-xl-2 -o /tmp/qcompile-xl`)
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { loadModelSync } from '../src/ir/serde.js';
import { Artifacts, CALIBRATION_BATCHES } from '../src/passes/artifacts.js';
import { calibrate } from '../src/passes/calibrate.js';
import { runPass } from '../src/passes/pass-manager.js';
import { quantizeWeights } from '../src/passes/quantize-weights.js';
import type { LayerQuantPlan } from '../src/quant/plan.js';
import { discoverLayers } from '../src/quant/layers.js';
import { findDiffusionInterface } from '../src/runtime/diffusion/interface.js';
import { timestepFeed } from '../src/runtime/diffusion/sampler.js';
import { OrtExecutor } from '../src/runtime/ir-executor.js';
import type { TensorMap } from '../src/ir/executor.js';
import { ALLOCATOR_ENV } from '../src/cli/relaunch.js';
import { benchFeeds } from './model-feeds.js';

const { values: flags } = parseArgs({
  options: {
    model: { type: 'string', default: join(tmpdir(), 'qcompile-xl', 'model.onnx') },
    batches: { type: 'string', default: '3' },
    batch: { type: 'string', default: '8' },
    runs: { type: 'string', default: '5' },
    child: { type: 'string' },
  },
});
const batches = Number(flags.batches);
const batch = Number(flags.batch);

const rssBytes = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))![1]) * 1024;
const peakBytes = () => Number(/VmHWM:\s+(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))![1]) * 1024;

/** Feeds of one calibration-like batch of the model, and the output to fetch. */
async function batchFeeds(): Promise<{ feeds: TensorMap; output: string }> {
  const { iface, feeds } = await benchFeeds(loadModelSync(flags.model!), flags.model!, batch, { seed: 3 });
  return { feeds, output: iface.output.name };
}

/** Seconds per FP forward with and without the arena: two sessions, runs interleaved, medians. */
async function forwardSeconds(runs: number): Promise<Record<string, number>> {
  const { feeds, output } = await batchFeeds();
  const sessions = { on: await new OrtExecutor({ memoryArena: true }).prepareFile(flags.model!, [output]), off: await new OrtExecutor({ memoryArena: false }).prepareFile(flags.model!, [output]) };
  const times: Record<'on' | 'off', number[]> = { on: [], off: [] };
  try {
    for (let r = -1; r < runs; r++) {
      for (const key of ['on', 'off'] as const) {
        const started = performance.now();
        await sessions[key].run(feeds);
        if (r >= 0) times[key].push((performance.now() - started) / 1000);
      }
    }
  } finally {
    await sessions.on.release();
    await sessions.off.release();
  }
  const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
  return { arenaOnSeconds: Number(median(times.on).toFixed(2)), arenaOffSeconds: Number(median(times.off).toFixed(2)), offOverOn: Number((median(times.off) / median(times.on)).toFixed(3)) };
}

async function child(memoryArena: boolean): Promise<Record<string, unknown>> {
  const model = loadModelSync(flags.model!);
  const iface = findDiffusionInterface(model, flags.model!);
  const weight = { bits: 8, symmetric: true, granularity: { kind: 'per-channel' }, range: { kind: 'minmax' }, rounding: { kind: 'nearest' } } as const;
  const input = { bits: 8, symmetric: true, mode: { kind: 'static' }, range: { kind: 'minmax' } } as const;
  const plan = new Map<string, LayerQuantPlan>(discoverLayers(model).filter((l) => /^(attn|mlp)\.|^adaln$/.test(l.role)).map((l) => [l.name, { layer: l.name, weight, input }]));
  const { feeds } = await batchFeeds();
  const calibration = Array.from({ length: batches }, (_, b) => ({ ...feeds, [iface.timestep.name]: timestepFeed(iface.timestep, 100 + 300 * b, batch) }));
  const afterBatch: number[] = [];
  const batchStarts: number[] = [];
  const context = {
    seed: 0,
    plan,
    executor: new OrtExecutor({ memoryArena }),
    artifacts: new Artifacts().set(CALIBRATION_BATCHES, calibration),
    progress: (label: string, done: number) => {
      if (label !== 'calibration batches') return;
      batchStarts.push(performance.now());
      if (done > 0) afterBatch.push(rssBytes());
    },
    log: () => {},
  };
  await runPass(quantizeWeights, model, {}, context);
  const beforeSession = rssBytes();
  const peakBeforeSession = peakBytes();
  await runPass(calibrate, model, { ema: 0, timesteps: 1000 }, context);
  // batchStarts[b]: before batch b's run (the last: after every run), so batch b took batchStarts[b + 1] − batchStarts[b].
  const perBatch = batchStarts.slice(2).map((t, i) => (t - batchStarts[i + 1]!) / 1000);
  return {
    memoryArena,
    rssBeforeSessionGiB: Number((beforeSession / 2 ** 30).toFixed(2)),
    rssAfterEachBatchGiB: afterBatch.map((b) => Number((b / 2 ** 30).toFixed(2))),
    peakRssBeforeSessionGiB: Number((peakBeforeSession / 2 ** 30).toFixed(2)),
    peakRssGiB: Number((peakBytes() / 2 ** 30).toFixed(2)),
    secondsPerBatchAfterFirst: perBatch.length ? Number((perBatch.reduce((a, b) => a + b, 0) / perBatch.length).toFixed(2)) : null,
  };
}

if (flags.child === 'speed') {
  console.log(JSON.stringify(await forwardSeconds(Number(flags.runs))));
} else if (flags.child) {
  console.log(JSON.stringify(await child(flags.child === 'on')));
} else {
  const rows = [];
  for (const setting of ['on', 'off', 'speed']) {
    const run = spawnSync(process.execPath, ['--import', 'tsx', import.meta.filename, '--model', flags.model!, '--batches', String(batches), '--batch', String(batch), '--child', setting, '--runs', flags.runs!], { encoding: 'utf8', env: { ...process.env, ...ALLOCATOR_ENV }, maxBuffer: 16 << 20 });
    if (run.status !== 0) throw new Error(`child (${setting}) failed: ${run.stderr}`);
    const row = JSON.parse(run.stdout.trim().split('\n').pop()!);
    console.error(JSON.stringify(row));
    rows.push(row);
  }
  const speed = rows.pop();
  console.log(JSON.stringify({ bench: 'ort-arena', model: flags.model, batch, batches, calibration: rows, forward: speed }));
}
