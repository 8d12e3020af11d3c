/**
 * `qcompile check` on a recipe of 20 000 rules (name globs, roles and regexes mixed, the specs of the shipped
 * recipes), alone and against the dit-digits fixture: the CPU time of each phase (and the wall time). Target:
 * under 2 s in all. Under tsx (as bench/run.ts runs it) esbuild's keepNames wrappers add ~2x to the parse.
 * Run: npx tsx bench/recipe-check.ts [RULES]   (prints a JSON line last, for bench/run.ts)
 */
import { discoverLayers } from '../src/quant/layers.js';
import { loadModelSync } from '../src/ir/serde.js';
import { checkRecipe, checkRecipeAgainstModel } from '../src/recipe/check.js';
import { parseRecipe } from '../src/recipe/parse.js';

const rules = Number(process.argv[2] ?? 20_000);
const selectors = ['name("blocks.*.attn.*")', 'attn.qkv', 'regex("blocks\\\\.[0-3]\\\\..*")', 'name("blocks.?.mlp.fc?")', 'mlp', 'op(MatMul)'];
const specs = ['weight int8', 'weight int4 asym group 32', 'weight int8 input int8 asym static', 'weight int4 asym group auto(candidates: [32, 64], budget: mean >= 32)'];
const body = Array.from({ length: rules }, (_, i) => `  quantize ${selectors[i % selectors.length]} { ${specs[i % specs.length]} }`).join('\n');
const text = `recipe "bench" {\n${body}\n}\n`;
const layers = discoverLayers(loadModelSync('test/fixtures/dit-digits/model.onnx'));

/** CPU time of this process (user + system), in ms: on a loaded machine wall time mostly measures the neighbours. */
const cpu = () => {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1000;
};
const w0 = performance.now();
const c0 = cpu();
const parsed = parseRecipe(text, 'bench.qrecipe');
const c1 = cpu();
if (!parsed.recipe) throw new Error(`the bench recipe does not parse: ${parsed.diagnostics[0]?.message}`);
const alone = checkRecipe(parsed.recipe);
const c2 = cpu();
const withModel = checkRecipeAgainstModel(parsed.recipe, layers);
const c3 = cpu();
const w3 = performance.now();
const errors = [...alone, ...withModel.diagnostics].filter((d) => d.severity === 'error').length;
const seconds = (ms: number) => Number((ms / 1000).toFixed(3));
const result = { rules, parseCpuSeconds: seconds(c1 - c0), checkCpuSeconds: seconds(c2 - c1), modelCheckCpuSeconds: seconds(c3 - c2), totalCpuSeconds: seconds(c3 - c0), wallSeconds: seconds(w3 - w0), errors };
process.stderr.write(`${rules} rules, CPU time: parse ${result.parseCpuSeconds} s, check ${result.checkCpuSeconds} s, check --model ${result.modelCheckCpuSeconds} s (total ${result.totalCpuSeconds} s, wall ${result.wallSeconds} s; target < 2 s)\n`);
console.log(JSON.stringify({ ...result, summary: `${rules} rules checked in ${result.totalCpuSeconds} s CPU (parse ${result.parseCpuSeconds}, --model ${result.modelCheckCpuSeconds}; wall ${result.wallSeconds})` }));
