/**
 * `npm run bench`: runs every benchmark script in its own process (so peak RSS is its own), collects the JSON
 * each prints as its last stdout line, and writes bench/results.json plus a short table. Never part of npm test.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { availableParallelism, cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeFileAtomic } from '../src/ir/atomic-file.js';

const here = dirname(fileURLToPath(import.meta.url));

/** The benchmarks, in run order; `only` on the command line picks some by name. */
const BENCHMARKS = [
  { name: 'runtime-formats', script: 'runtime-formats.ts', about: 'ORT CPU latency and size of FP32 vs quantized formats' },
  { name: 'calibration-overhead', script: 'calibration-overhead.ts', about: 'observer collection vs plain inference' },
  { name: 'tpq-lowering', script: 'tpq-lowering.ts', about: 'per-timestep activation tables: lowering forms side by side' },
  { name: 'roundtrip', script: 'roundtrip.ts', about: 'DiT-XL/2 load + save and inspect: time and peak RSS' },
  { name: 'compile-xl', script: 'compile-xl.ts', about: 'DiT-XL/2 load + weight quantization + save vs the I/O floor' },
  { name: 'group-search', script: 'group-search.ts', about: 'auto group-size search time on DiT-XL/2 (112 layers)' },
  { name: 'latency', script: 'latency.ts', about: 'DiT-XL/2 and SD-1.5 UNet end to end on ORT CPU at batch 2: FP32 vs W8A8 and W4 (interleaved medians, bytes, session creation)' },
  { name: 'sd-quality', script: 'sd-quality.ts', about: 'sd-digits method recipes: prompt adherence, FD, paired PSNR, guidance-signal SQNR at CFG 1.5 (1000 samples)' },
  { name: 'recipe-check', script: 'recipe-check.ts', about: '`node bin/qcompile.js check` of a 20 000-rule recipe against dit-digits (median of 5)' },
];

const only = process.argv.slice(2);
const results: Record<string, unknown> = {};
for (const bench of BENCHMARKS) {
  if (only.length > 0 && !only.includes(bench.name)) continue;
  const script = join(here, bench.script);
  if (!existsSync(script)) {
    results[bench.name] = { error: `missing ${bench.script}` };
    continue;
  }
  process.stderr.write(`bench: ${bench.name} — ${bench.about}\n`);
  const started = Date.now();
  const run = spawnSync(process.execPath, ['--import', 'tsx', script], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 64 << 20 });
  const lastLine = run.stdout.trim().split('\n').pop() ?? '';
  try {
    results[bench.name] = { ...JSON.parse(lastLine), wallSeconds: (Date.now() - started) / 1000 };
  } catch {
    results[bench.name] = { error: `exit ${run.status}; no JSON result`, output: run.stdout.slice(-2000) };
  }
}

const out = join(here, 'results.json');
writeFileAtomic(out, `${JSON.stringify({ machine: machineFacts(), results }, null, 2)}\n`);
for (const [name, result] of Object.entries(results)) {
  const summary = (result as { summary?: string }).summary ?? (result as { error?: string }).error ?? JSON.stringify(result).slice(0, 160);
  process.stdout.write(`${name.padEnd(22)} ${summary}\n`);
}
process.stdout.write(`wrote ${out}\n`);

function machineFacts() {
  return { node: process.version, platform: `${process.platform}-${process.arch}`, cpus: availableParallelism(), cpuModel: cpus()[0]?.model ?? '' };
}
