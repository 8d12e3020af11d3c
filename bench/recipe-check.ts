/**
 * `qcompile check RECIPE --model dit-digits` on a recipe of 20 000 rules (name globs, roles and regexes mixed,
 * the specs of the shipped recipes; most rules lose every layer to a later one, so each is a W001 warning that
 * is rendered with its source line). The figure is the shipped command, `node bin/qcompile.js` on dist/ (rebuilt
 * first when older than the sources), run 5 times: median wall and median CPU (user + system of the whole
 * process, start-up included: on a loaded machine wall time mostly measures the neighbours). Target: under 2 s.
 * The phases are timed in this process too, under tsx (esbuild's keepNames wrappers make them slower than in dist/).
 * Run: npx tsx bench/recipe-check.ts [RULES]   (prints a JSON line last, for bench/run.ts)
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { discoverLayers } from '../src/quant/layers.js';
import { loadModelSync } from '../src/ir/serde.js';
import { checkRecipe, checkRecipeAgainstModel } from '../src/recipe/check.js';
import { parseRecipe } from '../src/recipe/parse.js';

const MODEL = 'test/fixtures/dit-digits/model.onnx';
const RUNS = 5;
const rules = Number(process.argv[2] ?? 20_000);
const selectors = ['name("blocks.*.attn.*")', 'attn.qkv', 'regex("blocks\\\\.[0-3]\\\\..*")', 'name("blocks.?.mlp.fc?")', 'mlp', 'op(MatMul)'];
const specs = ['weight int8', 'weight int4 asym group 32', 'weight int8 input int8 asym static', 'weight int4 asym group auto(candidates: [32, 64], budget: mean >= 32)'];
const body = Array.from({ length: rules }, (_, i) => `  quantize ${selectors[i % selectors.length]} { ${specs[i % specs.length]} }`).join('\n');
const text = `recipe "bench" {\n${body}\n}\n`;
const path = join(mkdtempSync(join(tmpdir(), 'qcompile-bench-')), 'bench.qrecipe');
writeFileSync(path, text);

/** CPU time of this process (user + system, all threads), in ms. */
const cpu = () => {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1000;
};
const seconds = (ms: number) => Number((ms / 1000).toFixed(3));
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** The newest modification time (ms) of the .ts files under `dir`. */
function newestSource(dir: string): number {
  return Math.max(0, ...readdirSync(dir, { withFileTypes: true, recursive: true }).filter((e) => e.isFile() && e.name.endsWith('.ts')).map((e) => statSync(join(e.parentPath, e.name)).mtimeMs));
}

// The shipped command runs dist/: build it when a source is newer (worktrees and fresh edits).
const built = 'dist/src/cli/main.js';
const stale = (() => {
  try {
    return statSync(built).mtimeMs < Math.max(newestSource('src'), newestSource('grammar'));
  } catch {
    return true;
  }
})();
if (stale) {
  process.stderr.write('recipe-check: dist/ is older than the sources; building it (tsc -p tsconfig.build.json)\n');
  const build = spawnSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.build.json'], { stdio: 'inherit' });
  if (build.status !== 0) throw new Error('the build failed');
}

// Each run reports its own CPU time on fd 3 as it exits (an --import hook: the command itself is untouched).
const reportCpu = `data:text/javascript,import{writeSync}from"node:fs";process.on("exit",()=>{const u=process.cpuUsage();writeSync(3,String((u.user+u.system)/1000))})`;
const runs = Array.from({ length: RUNS }, () => {
  const w0 = performance.now();
  const run = spawnSync(process.execPath, ['--import', reportCpu, 'bin/qcompile.js', 'check', path, '--model', MODEL], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe', 'pipe'], maxBuffer: 256 << 20 });
  const wall = performance.now() - w0;
  if (run.status !== 0) throw new Error(`check exited ${run.status}: ${run.stderr.slice(-500)}`);
  return { wall, cpu: Number(run.output[3]), stderrBytes: run.stderr.length };
});

// The phases, through the API.
const layers = discoverLayers(loadModelSync(MODEL));
const c1 = cpu();
const parsed = parseRecipe(text, 'bench.qrecipe');
const c2 = cpu();
if (!parsed.recipe) throw new Error(`the bench recipe does not parse: ${parsed.diagnostics[0]?.message}`);
checkRecipe(parsed.recipe);
const c3 = cpu();
const warnings = checkRecipeAgainstModel(parsed.recipe, layers).diagnostics.length;
const c4 = cpu();

const result = {
  rules,
  runs: RUNS,
  warnings,
  stderrBytes: runs[0]!.stderrBytes,
  commandWallSeconds: seconds(median(runs.map((r) => r.wall))),
  commandCpuSeconds: seconds(median(runs.map((r) => r.cpu))),
  commandWallSecondsAll: runs.map((r) => seconds(r.wall)),
  tsxParseCpuSeconds: seconds(c2 - c1),
  tsxCheckCpuSeconds: seconds(c3 - c2),
  tsxModelCheckCpuSeconds: seconds(c4 - c3),
};
process.stderr.write(`${rules} rules: node bin/qcompile.js check --model: median of ${RUNS} ${result.commandWallSeconds} s wall, ${result.commandCpuSeconds} s CPU (target < 2 s); phases under tsx (CPU): parse ${result.tsxParseCpuSeconds} s, check ${result.tsxCheckCpuSeconds} s, --model ${result.tsxModelCheckCpuSeconds} s; ${warnings} warnings rendered\n`);
console.log(JSON.stringify({ ...result, summary: `${rules} rules: check --model in ${result.commandWallSeconds} s wall / ${result.commandCpuSeconds} s CPU (median of ${RUNS}; target < 2 s)` }));
