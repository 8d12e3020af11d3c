/**
 * `precision fp16(keep: […])`: parsing with spans, the canonical form, the JSON form, the target check against
 * the backends' compute tables, and its place in the planned pipeline.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { lineColumn } from '../../src/diagnostics.js';
import { discoverLayers } from '../../src/quant/layers.js';
import { loadModelSync } from '../../src/ir/serde.js';
import { DEFAULT_FLOAT16_KEEP } from '../../src/passes/convert-float16.js';
import { parsePipeline } from '../../src/passes/pipeline.js';
import { passRegistry } from '../../src/passes/registry.js';
import { checkRecipe, checkRecipeAgainstModel } from '../../src/recipe/check.js';
import { formatRecipe } from '../../src/recipe/format.js';
import { parseRecipe, parseRecipeJson } from '../../src/recipe/parse.js';
import { planRecipe } from '../../src/recipe/plan.js';
import type { Recipe } from '../../src/recipe/types.js';
import { CALIBRATION_BATCHES } from '../../src/passes/artifacts.js';

const layers = discoverLayers(loadModelSync('test/fixtures/dit-digits/model.onnx'));
const recipe = (body: string) => `recipe "x" {\n${body}\n}\n`;

function withoutSources(r: Recipe): unknown {
  return JSON.parse(JSON.stringify(r, (key, value) => (key === 'source' ? undefined : value)));
}

/** `code line:col` of each error. */
function errors(text: string): string[] {
  const parsed = parseRecipe(text, 'r.qrecipe');
  const diagnostics = [...parsed.diagnostics, ...(parsed.recipe ? checkRecipe(parsed.recipe) : [])];
  return diagnostics.filter((d) => d.severity === 'error').map((d) => `${d.code} ${lineColumn(text, d.span!.offset).line}:${lineColumn(text, d.span!.offset).column} ${d.message}`);
}

describe('precision fp16', () => {
  it('defaults its keep list to the norms, Softmax and the timestep embedding, and remembers where it was written', () => {
    const text = recipe('  target cuda\n  precision fp16');
    const { recipe: r, diagnostics } = parseRecipe(text, 'r.qrecipe');
    expect(diagnostics).toEqual([]);
    expect(r!.precision).toBe('fp16');
    expect(r!.float16.keep).toEqual([...DEFAULT_FLOAT16_KEEP]);
    expect(text.slice(r!.float16.source!.offset, r!.float16.source!.offset + r!.float16.source!.length)).toBe('precision fp16');
  });

  it.each([
    ['  precision fp16(keep: [LayerNormalization, Softmax, embed.time])', ['LayerNormalization', 'Softmax', 'embed.time']],
    ['  precision fp16(keep: [])', []],
    ['  precision fp16(keep: [decomposed-norm, Gelu])', ['decomposed-norm', 'Gelu']],
  ])('%s: fmt round-trips, and the JSON form gives the same recipe', (line, keep) => {
    const { recipe: r, diagnostics } = parseRecipe(recipe(`  target tensorrt\n${line}`), 'r.qrecipe');
    expect(diagnostics).toEqual([]);
    expect(r!.float16.keep).toEqual(keep);
    const text = formatRecipe(r!);
    expect(text).toContain(`  precision fp16(keep: [${keep.join(', ')}])\n`);
    const again = parseRecipe(text, 'formatted.qrecipe');
    expect(again.diagnostics).toEqual([]);
    expect(withoutSources(again.recipe!)).toEqual(withoutSources(r!));
    expect(formatRecipe(again.recipe!)).toBe(text);
    const json = parseRecipeJson(JSON.stringify(withoutSources(r!)), 'r.json');
    expect(json.diagnostics).toEqual([]);
    expect(withoutSources(json.recipe!)).toEqual(withoutSources(r!));
  });

  it('reports unknown op names, non-names, repeats and misplaced arguments at file:line:col', () => {
    expect(errors(recipe('  target cuda\n  precision fp16(keep: [LayerNorm, Softmax, 3, Softmax, embed.timestep])'))).toEqual([
      "E015 3:25 unknown op type or region 'LayerNorm' (did you mean 'LayerNormalization'?)",
      'E014 3:45 keep expects op types and regions, found 3',
      "E016 3:48 'Softmax' is listed twice",
      "E015 3:57 unknown op type or region 'embed.timestep' (did you mean 'embed.time'?)",
    ]);
    expect(errors(recipe('  precision fp32(keep: [Softmax])'))).toEqual(["E034 2:18 'fp32' takes no arguments"]);
    expect(errors(recipe('  target cuda\n  precision fp16(keeps: [Softmax])'))[0]).toMatch(/^E034 3:18 unknown argument of fp16 'keeps' \(did you mean 'keep'\?\)/);
    expect(errors(recipe('  target cuda\n  precision fp16(keep: Softmax)'))[0]).toMatch(/^E014 3:18 argument 'keep' expects a list/);
    expect(errors(recipe('  precision fp8'))[0]).toMatch(/^E015 2:13 unknown precision 'fp8'/);
  });

  it('is refused, naming the statement, by a target whose backend does not compute in fp16', () => {
    expect(errors(recipe('  target cpu\n  precision fp16(keep: [Softmax])'))).toEqual(['E040 3:3 target cpu does not compute in fp16 (its compute types: fp32)']);
    expect(errors(recipe('  target webgpu\n  precision fp16'))).toEqual(['E040 3:3 target webgpu does not compute in fp16 (its compute types: fp32)']);
    expect(errors(recipe('  target cuda\n  precision fp16'))).toEqual([]);
    expect(errors(recipe('  target tensorrt\n  precision fp16'))).toEqual([]);
  });

  it('rejects an unknown keep entry in a JSON recipe', () => {
    const { recipe: r } = parseRecipeJson('{"name": "x", "target": "cuda", "precision": "fp16", "float16": {"keep": ["Softmax", "LayerNorm"]}}', 'r.json');
    expect(checkRecipe(r!).map((d) => [d.code, d.message])).toEqual([['E015', "unknown op type or region 'LayerNorm' in the float16 keep list"]]);
  });

  it('plans convert-float16 after quantization and before cleanup (min-max W8A8 with fp16 compute)', () => {
    // CUDA runs symmetric activations (asymmetric ones only under --allow-requantize).
    const text = readFileSync('recipes/minmax-w8a8.qrecipe', 'utf8').replace('target cpu', 'target cuda\n  precision fp16').replace('int8 asym static', 'int8 sym static');
    const parsed = parseRecipe(text, 'minmax-fp16.qrecipe');
    expect(parsed.diagnostics).toEqual([]);
    expect(checkRecipe(parsed.recipe!)).toEqual([]);
    const checked = checkRecipeAgainstModel(parsed.recipe!, layers);
    expect(checked.diagnostics).toEqual([]);
    const { pipeline } = planRecipe(parsed.recipe!, layers, checked.selection, 'minmax-fp16.qrecipe');
    const names = parsePipeline(pipeline, passRegistry, { provided: [CALIBRATION_BATCHES] }).map((e) => e.pass.name);
    expect(names.slice(-3)).toEqual(['quantize-activations', 'convert-float16', 'cleanup']);
    expect(pipeline).toContain(`convert-float16{keep=${DEFAULT_FLOAT16_KEEP.join('|')}}`);
    const empty = parseRecipe(recipe('  target cuda\n  precision fp16(keep: [])\n  quantize attn { weight int8 }'), 'r.qrecipe').recipe!;
    const plan = planRecipe(empty, layers, checkRecipeAgainstModel(empty, layers).selection, 'r.qrecipe');
    expect(plan.pipeline).toBe('quantize-weights,convert-float16{keep=none},cleanup');
    const fp32 = parseRecipe(recipe('  quantize attn { weight int8 }'), 'r.qrecipe').recipe!;
    expect(planRecipe(fp32, layers, checkRecipeAgainstModel(fp32, layers).selection, 'r.qrecipe').pipeline).toBe('quantize-weights,cleanup');
  });
});
