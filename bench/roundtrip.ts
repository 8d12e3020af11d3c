/**
 * Load + save round trip of the synthetic DiT-XL/2 (2.5 GiB of external data), and `inspect` of it: wall time
 * and peak RSS of each in its own process (/usr/bin/time -v), against the weight bytes. Run:
 * `npx tsx bench/roundtrip.ts`; prints JSON as its last line. The model is generated once with
 * `qcompile synth dit --preset dit-xl-2` (or ROUNDTRIP_MODEL=path to use another).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ALLOCATOR_ENV } from '../src/cli/relaunch.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const modelPath = process.env.ROUNDTRIP_MODEL ?? join(tmpdir(), 'qcompile-xl', 'model.onnx');

interface Measured {
  seconds: number;
  peakRssBytes: number;
  status: number | null;
  stderr: string;
}

/** Runs an ES module snippet in a fresh Node (with tsx) under /usr/bin/time -v. */
function measure(script: string): Measured {
  const started = performance.now();
  const run = spawnSync('/usr/bin/time', ['-v', process.execPath, '--import', 'tsx', '--input-type=module', '-e', script], { cwd: root, encoding: 'utf8', env: { ...process.env, ...ALLOCATOR_ENV }, maxBuffer: 64 << 20 });
  const rss = /Maximum resident set size \(kbytes\): (\d+)/.exec(run.stderr);
  return { seconds: (performance.now() - started) / 1000, peakRssBytes: rss ? Number(rss[1]) * 1024 : NaN, status: run.status, stderr: run.stderr };
}

const cli = (args: string[]) => `import { main } from ${JSON.stringify(join(root, 'src/cli/main.ts'))}; process.exitCode = await main(${JSON.stringify(args)});`;

if (!existsSync(modelPath)) {
  mkdirSync(dirname(modelPath), { recursive: true });
  const synth = measure(cli(['synth', 'dit', '--preset', 'dit-xl-2', '-o', dirname(modelPath)]));
  if (synth.status !== 0) {
    console.log(JSON.stringify({ error: `could not generate ${modelPath}: ${synth.stderr.slice(-500)}` }));
    process.exit(1);
  }
}

const modelDir = dirname(modelPath);
const weightBytes = readdirSync(modelDir).reduce((n, f) => n + statSync(join(modelDir, f)).size, 0);
const outDir = join(tmpdir(), `qcompile-roundtrip-${process.pid}`);
mkdirSync(outDir, { recursive: true });
const serde = JSON.stringify(join(root, 'src/ir/serde.ts'));
const roundtrip = measure(`import { loadModelSync, saveModel } from ${serde}; saveModel(loadModelSync(${JSON.stringify(modelPath)}), ${JSON.stringify(join(outDir, 'model.onnx'))});`);
const savedBytes = readdirSync(outDir).reduce((n, f) => n + statSync(join(outDir, f)).size, 0);
rmSync(outDir, { recursive: true, force: true });
const inspect = measure(cli(['inspect', modelPath, '--json']));
if (roundtrip.status !== 0 || inspect.status !== 0) {
  console.log(JSON.stringify({ error: 'a run failed', roundtrip: roundtrip.stderr.slice(-1500), inspect: inspect.stderr.slice(-1500) }));
  process.exit(1);
}
const ratio = (m: Measured) => Number((m.peakRssBytes / weightBytes).toFixed(3));
const gib = (n: number) => (n / 2 ** 30).toFixed(2);
console.log(
  JSON.stringify({
    model: modelPath,
    weightBytes,
    savedBytes,
    roundtrip: { seconds: Number(roundtrip.seconds.toFixed(2)), peakRssBytes: roundtrip.peakRssBytes, peakRssOverWeights: ratio(roundtrip) },
    inspect: { seconds: Number(inspect.seconds.toFixed(2)), peakRssBytes: inspect.peakRssBytes, peakRssOverWeights: ratio(inspect) },
    summary: `round trip ${roundtrip.seconds.toFixed(1)} s, peak RSS ${gib(roundtrip.peakRssBytes)} GiB = ${ratio(roundtrip)}x weights; inspect ${inspect.seconds.toFixed(1)} s, ${gib(inspect.peakRssBytes)} GiB`,
  }),
);
