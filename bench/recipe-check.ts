/**
 * `qcompile check` on a recipe of 20 000 rules (name globs, roles and regexes mixed, the specs of the shipped
 * recipes), alone and against the dit-digits fixture: the time of each phase. Target: under 2 s in all.
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

const t0 = performance.now();
const parsed = parseRecipe(text, 'bench.qrecipe');
const t1 = performance.now();
if (!parsed.recipe) throw new Error(`the bench recipe does not parse: ${parsed.diagnostics[0]?.message}`);
const alone = checkRecipe(parsed.recipe);
const t2 = performance.now();
const withModel = checkRecipeAgainstModel(parsed.recipe, layers);
const t3 = performance.now();
const errors = [...alone, ...withModel.diagnostics].filter((d) => d.severity === 'error').length;
const seconds = (ms: number) => Number((ms / 1000).toFixed(3));
const result = { rules, parseSeconds: seconds(t1 - t0), checkSeconds: seconds(t2 - t1), modelCheckSeconds: seconds(t3 - t2), totalSeconds: seconds(t3 - t0), errors };
process.stderr.write(`${rules} rules: parse ${result.parseSeconds} s, check ${result.checkSeconds} s, check --model ${result.modelCheckSeconds} s (total ${result.totalSeconds} s; target < 2 s)\n`);
console.log(JSON.stringify({ ...result, summary: `${rules} rules checked in ${result.totalSeconds} s (parse ${result.parseSeconds}, model ${result.modelCheckSeconds})` }));
