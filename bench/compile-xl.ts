/**
 * DiT-XL/2 compile of the synthetic 2.7 GB model with recipes/rtn-w4a16-g128 (int4 group 128 weights lowered to
 * MatMulNBits for cpu; XL_RECIPE=path for another recipe, or XL_PIPELINE='…' for a --passes pipeline): wall time
 * and peak RSS of `qcompile MODEL RECIPE -o OUT` in its own process (/usr/bin/time -v), against the weight bytes
 * and the I/O floor measured next to each run (one streamed read of the weights + writing the output's bytes
 * with fsync), and the same without the smoke run (the compile's one ORT forward of its output); median of
 * XL_RUNS (3) runs. The compile is the installed one, `bin/qcompile.js` over dist/ (built first: what users run,
 * without tsx compiling the sources in the process and in each worker); XL_ENTRY=sources runs src/ through tsx.
 * Each compile writes a fresh output folder, as the floor writes a fresh file (over an existing output the
 * commit also frees the old file's blocks). XL_CACHE=warm (default): the floor's read leaves the weights in the
 * page cache for the compile, so both read memory; XL_CACHE=cold drops the page cache (Linux, root) before the
 * floor's read and before the compile, so both read storage.
 * Run: `npx tsx bench/compile-xl.ts`. Prints JSON as its last line.
 * The model is generated once with `qcompile synth dit --preset dit-xl-2` (or XL_MODEL=path).
 */
import { spawnSync } from 'node:child_process';
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readSync, readdirSync, rmSync, statSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ALLOCATOR_ENV } from '../src/cli/relaunch.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const pipeline = process.env.XL_PIPELINE;
const recipe = process.env.XL_RECIPE ?? 'recipes/rtn-w4a16-g128.qrecipe'; // relative to the repository root, the CLI's cwd
const modelPath = process.env.XL_MODEL ?? join(tmpdir(), 'qcompile-xl', 'model.onnx');

const fromSources = process.env.XL_ENTRY === 'sources';
const cold = process.env.XL_CACHE === 'cold';

/** Empties the page cache (XL_CACHE=cold), so that the next read comes from storage. */
function dropPageCache(): void {
  if (!cold) return;
  const run = spawnSync('sh', ['-c', 'sync && echo 1 > /proc/sys/vm/drop_caches']);
  if (run.status !== 0) {
    console.log(JSON.stringify({ error: `XL_CACHE=cold needs root on Linux to drop the page cache: ${run.stderr}` }));
    process.exit(1);
  }
}
if (!fromSources) {
  const build = spawnSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.build.json'], { cwd: root, encoding: 'utf8' });
  if (build.status !== 0) {
    console.log(JSON.stringify({ error: `the build failed: ${build.stdout.slice(-500)}` }));
    process.exit(1);
  }
}

/** Runs the CLI in a fresh process under /usr/bin/time -v (under ALLOCATOR_ENV: no relaunch); returns wall seconds, peak RSS and output. */
function qcompile(args: string[]): { seconds: number; peakRssBytes: number; status: number | null; stdout: string; stderr: string } {
  const script = `import { main } from ${JSON.stringify(join(root, 'src/cli/main.ts'))}; process.exitCode = await main(${JSON.stringify(args)});`;
  const command = fromSources ? [process.execPath, '--import', 'tsx', '--input-type=module', '-e', script] : [process.execPath, join(root, 'bin/qcompile.js'), ...args];
  const started = performance.now();
  const run = spawnSync('/usr/bin/time', ['-v', ...command], { cwd: root, encoding: 'utf8', env: { ...process.env, ...ALLOCATOR_ENV }, maxBuffer: 64 << 20 });
  const seconds = (performance.now() - started) / 1000;
  const rss = /Maximum resident set size \(kbytes\): (\d+)/.exec(run.stderr);
  return { seconds, peakRssBytes: rss ? Number(rss[1]) * 1024 : NaN, status: run.status, stdout: run.stdout, stderr: run.stderr };
}

function filesBytes(dir: string, prefix: string): number {
  return readdirSync(dir)
    .filter((f) => f.startsWith(prefix))
    .reduce((n, f) => n + statSync(join(dir, f)).size, 0);
}

/** Seconds to write `bytes` to a fresh file and fsync it (the write floor of saving the output). */
function writeFloor(dir: string, bytes: number): number {
  const path = join(dir, 'write-floor.bin');
  const buffer = Buffer.alloc(16 << 20, 1);
  const started = performance.now();
  const fd = openSync(path, 'w');
  for (let written = 0; written < bytes; written += buffer.length) writeSync(fd, buffer, 0, Math.min(buffer.length, bytes - written));
  fsyncSync(fd);
  closeSync(fd);
  const seconds = (performance.now() - started) / 1000;
  rmSync(path);
  return seconds;
}

/** Seconds to stream every file of the model once (the read floor of any weight pass). */
function readFloor(dir: string): number {
  const started = performance.now();
  const buffer = Buffer.alloc(16 << 20);
  for (const f of readdirSync(dir)) {
    const fd = openSync(join(dir, f), 'r');
    while (readSync(fd, buffer, 0, buffer.length, null) > 0);
    closeSync(fd);
  }
  return (performance.now() - started) / 1000;
}

if (!existsSync(modelPath)) {
  mkdirSync(dirname(modelPath), { recursive: true });
  const synth = qcompile(['synth', 'dit', '--preset', 'dit-xl-2', '-o', dirname(modelPath)]);
  if (synth.status !== 0 || !existsSync(modelPath)) {
    console.log(JSON.stringify({ error: `could not generate ${modelPath}: ${synth.stderr.slice(-500)}` }));
    process.exit(1);
  }
}

const modelDir = dirname(modelPath);
const weightBytes = filesBytes(modelDir, '');
const runs = Number(process.env.XL_RUNS ?? 3);
// Interleaved: each compile next to a fresh measurement of its I/O floor (read the weights, write the output).
const samples: { wall: number; floor: number; read: number; write: number; rss: number; smoke: number }[] = [];
let outputBytes = 0;
let passes: string[] = [];
for (let r = 0; r < runs; r++) {
  const outDir = join(tmpdir(), `qcompile-xl-out-${process.pid}-${r}`);
  mkdirSync(outDir, { recursive: true });
  const output = join(outDir, 'model-w4g128.onnx');
  dropPageCache();
  const read = readFloor(modelDir);
  dropPageCache();
  const run = qcompile([modelPath, ...(pipeline ? ['--passes', pipeline] : [recipe]), '-o', output]);
  if (run.status !== 0) {
    console.log(JSON.stringify({ error: `qcompile exited ${run.status}`, stderr: run.stderr.slice(-2000) }));
    process.exit(1);
  }
  outputBytes = filesBytes(outDir, 'model-w4g128.onnx');
  const write = writeFloor(outDir, outputBytes);
  rmSync(outDir, { recursive: true, force: true });
  // The summary's time table: each pass, (save), (smoke run) and total.
  const lines = run.stdout.trim().split('\n');
  passes = lines.slice(lines.findIndex((line) => line.startsWith('pass ')));
  const smoke = /^\(smoke run\)\s+([\d.]+) (ms|s)$/m.exec(run.stdout);
  const smokeSeconds = smoke ? Number(smoke[1]) / (smoke[2] === 'ms' ? 1000 : 1) : NaN;
  samples.push({ wall: run.seconds, floor: read + write, read, write, rss: run.peakRssBytes, smoke: smokeSeconds });
}
const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
const wallSeconds = median(samples.map((x) => x.wall));
const floorSeconds = median(samples.map((x) => x.floor));
const peakRssBytes = Math.max(...samples.map((x) => x.rss));
const result = {
  ...(pipeline ? { pipeline } : { recipe }),
  entry: fromSources ? 'src/cli/main.ts (tsx)' : 'bin/qcompile.js (dist)',
  pageCache: cold ? 'cold (dropped before the floor read and before each compile)' : 'warm (the floor read leaves the weights cached)',
  runs,
  weightBytes,
  outputBytes,
  wallSeconds: Number(wallSeconds.toFixed(2)),
  ioFloorSeconds: Number(floorSeconds.toFixed(2)),
  readFloorSeconds: Number(median(samples.map((x) => x.read)).toFixed(2)),
  writeFloorSeconds: Number(median(samples.map((x) => x.write)).toFixed(2)),
  wallOverIoFloor: Number(median(samples.map((x) => x.wall / x.floor)).toFixed(2)),
  // The smoke run (ORT loads the output and runs it once) is part of every compile; without it, what the rest costs.
  smokeRunSeconds: Number(median(samples.map((x) => x.smoke)).toFixed(2)),
  wallWithoutSmokeRunOverIoFloor: Number(median(samples.map((x) => (x.wall - x.smoke) / x.floor)).toFixed(2)),
  peakRssBytes,
  peakRssOverWeights: Number((peakRssBytes / weightBytes).toFixed(3)),
  passes,
};
console.log(
  JSON.stringify({
    ...result,
    summary: `median of ${runs}: ${result.wallSeconds} s = ${result.wallOverIoFloor}x the I/O floor (read ${result.readFloorSeconds} s + write ${result.writeFloorSeconds} s; ${result.wallWithoutSmokeRunOverIoFloor}x without the ${result.smokeRunSeconds} s smoke run), peak RSS ${(peakRssBytes / 2 ** 30).toFixed(2)} GiB = ${result.peakRssOverWeights}x weights, ${(weightBytes / 2 ** 30).toFixed(2)} -> ${(outputBytes / 2 ** 30).toFixed(2)} GiB`,
  }),
);
