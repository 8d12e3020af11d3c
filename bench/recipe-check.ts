/**
 * `qcompile check RECIPE --model dit-digits` on a recipe of 20 000 rules (name globs, roles and regexes mixed,
 * the specs of the shipped recipes; most rules lose every layer to a later one, so each is a W001 warning that
 * is rendered with its source line): the CPU and wall time of the whole command, and of the phases through the
 * API. Target: under 2 s. Under tsx (as bench/run.ts runs it) esbuild's keepNames wrappers slow the parser.
 * Run: npx tsx bench/recipe-check.ts [RULES]   (prints a JSON line last, for bench/run.ts)
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkCommand } from '../src/cli/commands/check.js';
import { discoverLayers } from '../src/quant/layers.js';
import { loadModelSync } from '../src/ir/serde.js';
import { checkRecipe, checkRecipeAgainstModel } from '../src/recipe/check.js';
import { parseRecipe } from '../src/recipe/parse.js';

const MODEL = 'test/fixtures/dit-digits/model.onnx';
const rules = Number(process.argv[2] ?? 20_000);
const selectors = ['name("blocks.*.attn.*")', 'attn.qkv', 'regex("blocks\\\\.[0-3]\\\\..*")', 'name("blocks.?.mlp.fc?")', 'mlp', 'op(MatMul)'];
const specs = ['weight int8', 'weight int4 asym group 32', 'weight int8 input int8 asym static', 'weight int4 asym group auto(candidates: [32, 64], budget: mean >= 32)'];
const body = Array.from({ length: rules }, (_, i) => `  quantize ${selectors[i % selectors.length]} { ${specs[i % specs.length]} }`).join('\n');
const text = `recipe "bench" {\n${body}\n}\n`;
const path = join(mkdtempSync(join(tmpdir(), 'qcompile-bench-')), 'bench.qrecipe');
writeFileSync(path, text);
const layers = discoverLayers(loadModelSync(MODEL));

/** CPU time of this process (user + system, all threads), in ms: on a loaded machine wall time mostly measures the neighbours. */
const cpu = () => {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1000;
};
const seconds = (ms: number) => Number((ms / 1000).toFixed(3));

// The command, as users run it (its output captured, not printed).
let stderrBytes = 0;
const w0 = performance.now();
const c0 = cpu();
const code = await checkCommand.run([path, '--model', MODEL], { stdout: () => undefined, stderr: (s) => void (stderrBytes += s.length), cwd: process.cwd() });
const commandCpu = cpu() - c0;
const commandWall = performance.now() - w0;

// Its phases through the API.
const c1 = cpu();
const parsed = parseRecipe(text, 'bench.qrecipe');
const c2 = cpu();
if (!parsed.recipe) throw new Error(`the bench recipe does not parse: ${parsed.diagnostics[0]?.message}`);
checkRecipe(parsed.recipe);
const c3 = cpu();
const warnings = checkRecipeAgainstModel(parsed.recipe, layers).diagnostics.length;
const c4 = cpu();

const result = { rules, exitCode: code, warnings, stderrBytes, commandCpuSeconds: seconds(commandCpu), commandWallSeconds: seconds(commandWall), parseCpuSeconds: seconds(c2 - c1), checkCpuSeconds: seconds(c3 - c2), modelCheckCpuSeconds: seconds(c4 - c3) };
process.stderr.write(`${rules} rules: check --model ${result.commandCpuSeconds} s CPU, ${result.commandWallSeconds} s wall (target < 2 s); phases (CPU): parse ${result.parseCpuSeconds} s, check ${result.checkCpuSeconds} s, --model ${result.modelCheckCpuSeconds} s; ${warnings} warnings rendered\n`);
console.log(JSON.stringify({ ...result, summary: `${rules} rules: check --model in ${result.commandCpuSeconds} s CPU / ${result.commandWallSeconds} s wall (parse ${result.parseCpuSeconds}, --model ${result.modelCheckCpuSeconds})` }));
