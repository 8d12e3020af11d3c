/**
 * Every method recipe at real size (issue #15): compiles `synth dit --preset dit-xl-2` and `synth unet --preset
 * sd15` with each shipped method recipe, its calibration cut to a bench size (`--samples`, `--steps`, `--batch`,
 * written into a copy of the recipe), each compile in its own process under /usr/bin/time -v. Reports per
 * (model, recipe): wall, peak RSS against the weight bytes, each pass's time (search, GPTQ), and the calibration
 * wall — trajectories plus every `calibrate` pass — against the same model rows run as plain FP forwards at the
 * bench batch (the per-row cost measured before and after each compile, their mean standing for the machine
 * during it; both are reported, with the trajectories' own rate, since this machine's speed drifts by up to 1.5×
 * over minutes and a row whose before and after disagree is not a clean figure).
 *
 * Run: npx tsx bench/recipes-real-size.ts [--models dit,sd15] [--recipes ptq4dm-w8a8,…] [--samples 32] [--steps 10]
 *      [--batch 8] [--sd-resolution 32] [--search-fitness layer-error] [--search-judge held-out] [--work DIR] [--out FILE]   (prints JSON as its last line; with --out, also
 *      writes it after every compile, so a long run's finished rows survive it)
 * --search-fitness replaces the group search's fitness (Q-DiT's `eps-error` runs the model once per candidate — days
 * on DiT-XL/2 on two cores — where `layer-error` tabulates a proxy from one batch), --search-judge its second
 * judging (`images` samples 64 images per finalist, ~30 min on DiT-XL/2). The models are generated once (XL: /tmp/qcompile-xl, SD-1.5: /tmp/sd15) when missing.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { loadModelSync } from '../src/ir/serde.js';
import { OrtExecutor } from '../src/runtime/ir-executor.js';
import { ALLOCATOR_ENV } from '../src/cli/relaunch.js';
import { benchFeeds } from './model-feeds.js';

const root = join(import.meta.dirname, '..');
const { values: flags } = parseArgs({
  options: {
    models: { type: 'string', default: 'dit,sd15' },
    recipes: { type: 'string' },
    samples: { type: 'string', default: '32' },
    steps: { type: 'string', default: '10' },
    batch: { type: 'string', default: '8' },
    'sd-resolution': { type: 'string', default: '32' },
    work: { type: 'string', default: join(tmpdir(), 'qcompile-real-size') },
    out: { type: 'string' },
    'search-fitness': { type: 'string' },
    'search-judge': { type: 'string' },
  },
});
const samples = Number(flags.samples);
const steps = Number(flags.steps);
const batch = Number(flags.batch);
const work = flags.work!;
mkdirSync(work, { recursive: true });

interface BenchModel {
  /** Folder `synth` writes, and the model inside it. */
  dir: string;
  model: string;
  synth: string[];
  extraArgs: string[];
  recipes: string[];
}
const METHOD_RECIPES = ['ptq4dm-w8a8', 'smoothquant-w8a8', 'dilatequant-w4a8', 'rtn-w4a16-g128'];
const MODELS: Record<string, BenchModel> = {
  dit: { dir: join(tmpdir(), 'qcompile-xl'), model: 'model.onnx', synth: ['synth', 'dit', '--preset', 'dit-xl-2'], extraArgs: [], recipes: [...METHOD_RECIPES, 'qdit-w4a8'] },
  sd15: {
    dir: join(tmpdir(), 'sd15'),
    model: 'unet/model.onnx',
    synth: ['synth', 'unet', '--preset', 'sd15'],
    extraArgs: ['--conditioning', join(tmpdir(), 'sd15', 'conditioning'), '--resolution', flags['sd-resolution']!],
    recipes: [...METHOD_RECIPES, 'qdit-w4a8'],
  },
};

/** Runs the CLI in a fresh process under /usr/bin/time -v. */
function qcompile(args: string[]): { seconds: number; peakRssBytes: number; status: number | null; stderr: string } {
  const script = `import { main } from ${JSON.stringify(join(root, 'src/cli/main.ts'))}; process.exitCode = await main(${JSON.stringify(args)});`;
  const started = performance.now();
  const run = spawnSync('/usr/bin/time', ['-v', process.execPath, '--import', 'tsx', '--input-type=module', '-e', script], { cwd: root, encoding: 'utf8', env: { ...process.env, ...ALLOCATOR_ENV }, maxBuffer: 64 << 20 });
  const rss = /Maximum resident set size \(kbytes\): (\d+)/.exec(run.stderr);
  return { seconds: (performance.now() - started) / 1000, peakRssBytes: rss ? Number(rss[1]) * 1024 : NaN, status: run.status, stderr: run.stderr };
}

/** The recipe with its calibration cut to the bench size (samples, batch, sampler steps). */
function benchRecipe(name: string): string {
  let text = readFileSync(join(root, 'recipes', `${name}.qrecipe`), 'utf8');
  if (!/calibrate\s*\{/.test(text)) return text;
  text = text.replace(/(calibrate\s*\{[^}]*?)samples\s+\d+/, `$1samples ${samples}`).replace(/(calibrate\s*\{[^}]*?)batch\s+\d+/, `$1batch ${batch}`);
  if (/sampler\s+\w+\(steps:\s*\d+/.test(text)) text = text.replace(/(sampler\s+\w+\(steps:\s*)\d+/, `$1${steps}`);
  else text = text.replace(/(calibrate\s*\{)/, `$1\n    sampler ddim(steps: ${steps})`);
  if (!new RegExp(`samples ${samples}\\b`).test(text)) text = text.replace(/(calibrate\s*\{)/, `$1\n    samples ${samples}`);
  if (flags['search-fitness']) text = text.replace(/(search\s*\{[^}]*?fitness\s+)[\w-]+/, `$1${flags['search-fitness']}`);
  if (flags['search-judge']) text = text.replace(/(search\s*\{[^}]*?)\s*\}/, `$1 judge ${flags['search-judge']} }`);
  return text;
}

function folderBytes(dir: string): number {
  return readdirSync(dir, { withFileTypes: true }).reduce((n, e) => n + (e.isDirectory() ? 0 : statSync(join(dir, e.name)).size), 0);
}

/** Seconds per model row of plain FP forwards at `rows` rows per call (median of 5 calls after a warm-up). */
async function plainSecondsPerRow(modelPath: string, rows: number, resolution?: number): Promise<number> {
  const { iface, feeds } = await benchFeeds(loadModelSync(modelPath), modelPath, rows, { resolution });
  const prepared = await new OrtExecutor().prepareFile(modelPath, [iface.output.name]);
  try {
    await prepared.run(feeds);
    const times: number[] = [];
    for (let i = 0; i < 5; i++) {
      const started = performance.now();
      await prepared.run(feeds);
      times.push((performance.now() - started) / 1000);
    }
    return times.sort((a, b) => a - b)[2]! / rows;
  } finally {
    await prepared.release();
  }
}

const rows: Record<string, unknown>[] = [];
for (const key of flags.models!.split(',')) {
  const spec = MODELS[key];
  if (!spec) throw new Error(`unknown model '${key}' (dit, sd15)`);
  const modelPath = join(spec.dir, spec.model);
  if (!existsSync(modelPath)) {
    const synth = qcompile([...spec.synth, '-o', spec.dir]);
    if (synth.status !== 0) throw new Error(`synth failed: ${synth.stderr.slice(-500)}`);
  }
  const weightBytes = folderBytes(dirname(modelPath));
  const recipes = flags.recipes ? flags.recipes.split(',') : spec.recipes;
  const resolution = key === 'sd15' ? Number(flags['sd-resolution']) : undefined;
  let perRow = await plainSecondsPerRow(modelPath, batch, resolution);
  for (const name of recipes) {
    const recipePath = join(work, `${key}-${name}.qrecipe`);
    writeFileSync(recipePath, benchRecipe(name));
    const out = join(work, `${key}-${name}`, 'model.onnx');
    const run = qcompile([modelPath, recipePath, '-o', out, ...spec.extraArgs]);
    // The plain forward rate again after the compile: the mean of before and after stands for the machine's
    // state during it (other load on a shared machine moves both).
    const perRowAfter = await plainSecondsPerRow(modelPath, batch, resolution);
    const perRowDuring = (perRow + perRowAfter) / 2;
    const perRowBefore = perRow;
    perRow = perRowAfter;
    const passes: Record<string, number> = {};
    // The process's peak RSS when each pass ended (a high-water mark: the first pass to reach the row's peak set it).
    const peakRssAfter: Record<string, number> = {};
    let calibratePasses = 0;
    for (const m of run.stderr.matchAll(/^\[\d+\/\d+\] (\S+) ([\d.]+) (ms|s)(?: \(no change\))?(?:, peak RSS ([\d.]+) ([KMGT]iB))?/gm)) {
      passes[m[1]!] = (passes[m[1]!] ?? 0) + Number(m[2]) / (m[3] === 'ms' ? 1000 : 1);
      if (m[4]) peakRssAfter[m[1]!] = round(Number(m[4]) * 1024 ** ('KMGT'.indexOf(m[5]![0]!) + 1) / 1e9, 2);
      if (m[1] === 'calibrate') calibratePasses++;
    }
    const trajectoryPeak = /model rows in [\d.]+ s, peak RSS ([\d.]+) ([KMGT]iB)/.exec(run.stderr);
    if (trajectoryPeak) peakRssAfter.trajectories = round(Number(trajectoryPeak[1]) * 1024 ** ('KMGT'.indexOf(trajectoryPeak[2]![0]!) + 1) / 1e9, 2);
    const calibration = /calibration: (\d+) samples .* from (\d+) model rows in ([\d.]+) s/.exec(run.stderr);
    const row: Record<string, unknown> = { model: key, recipe: name, status: run.status, wallSeconds: round(run.seconds), peakRssBytes: run.peakRssBytes, weightBytes, rssOverWeights: round(run.peakRssBytes / weightBytes, 3), loadAverage: round(loadavg()[1]!), passes: Object.fromEntries(Object.entries(passes).map(([k, v]) => [k, round(v)])), peakRssGbAfter: peakRssAfter };
    if (calibration) {
      // Trajectory rows, then each calibrate pass observes every calibration sample once (SmoothQuant: twice).
      const modelRows = Number(calibration[2]) + Number(calibration[1]) * calibratePasses;
      const calibrationSeconds = Number(calibration[3]) + (passes.calibrate ?? 0);
      Object.assign(row, { calibrationSamples: Number(calibration[1]), trajectoryRows: Number(calibration[2]), calibrationSeconds: round(calibrationSeconds), plainForwardSeconds: round(modelRows * perRowDuring), plainSecondsPerRow: round(perRowDuring, 3), plainSecondsPerRowBeforeAfter: [round(perRowBefore, 3), round(perRowAfter, 3)], trajectorySecondsPerRow: round(Number(calibration[3]) / Number(calibration[2]), 3), calibrationOverPlain: round(calibrationSeconds / (modelRows * perRowDuring), 3) });
    }
    if (run.status !== 0) row.error = run.stderr.split('\n').filter((l) => l.includes('error')).slice(0, 3).join(' | ');
    rows.push(row);
    console.error(JSON.stringify(row));
    if (flags.out) writeFileSync(flags.out, `${JSON.stringify(results(), null, 1)}\n`);
  }
}
console.log(JSON.stringify(results()));

function results(): Record<string, unknown> {
  const worst = Math.max(...rows.map((r) => Number(r.rssOverWeights) || 0));
  return { samples, steps, batch, rows, summary: `${rows.length} compiles, ${rows.filter((r) => r.status === 0).length} ok; peak RSS ≤ ${worst}× weights` };
}

function round(x: number, digits = 1): number {
  return Number(x.toFixed(digits));
}
