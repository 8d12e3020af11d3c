import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { KEYWORDS, recipeParser } from '../../grammar/qrecipe.js';
import { lineColumn, type Diagnostic } from '../../src/diagnostics.js';
import { discoverLayers } from '../../src/quant/layers.js';
import { loadModelSync } from '../../src/ir/serde.js';
import { checkRecipe, checkRecipeAgainstModel } from '../../src/recipe/check.js';
import { formatRecipe } from '../../src/recipe/format.js';
import { parseRecipe, parseRecipeFile, parseRecipeJson } from '../../src/recipe/parse.js';
import { recipeSchema } from '../../src/recipe/schema.js';
import { globMatches, matchSpecificity } from '../../src/recipe/select.js';
import { LIMITS, SETTINGS, blockSetting, SETTINGS_DOC_BEGIN, SETTINGS_DOC_END, settingsMarkdown, type NumberSetting, type Setting, type SettingId } from '../../src/recipe/settings.js';
import type { Recipe } from '../../src/recipe/types.js';

const RECIPES = 'recipes';
const BAD = 'test/recipes/bad';
const layers = discoverLayers(loadModelSync('test/fixtures/dit-digits/model.onnx'));

/** A recipe without its source spans (they differ between a file and its formatted text). */
function withoutSources(recipe: Recipe): unknown {
  return JSON.parse(JSON.stringify(recipe, (key, value) => (key === 'source' ? undefined : value)));
}

describe('the recipes in recipes/', () => {
  const files = readdirSync(RECIPES).filter((f) => f.endsWith('.qrecipe'));

  it('are the seven methods we ship', () => {
    expect(files.sort()).toEqual(['dilatequant-w4a8', 'minmax-w8a8', 'ptq4dm-w8a8', 'qdit-w4a8', 'qdit-w6a8', 'rtn-w4a16-g128', 'smoothquant-w8a8'].map((n) => `${n}.qrecipe`));
  });

  for (const file of files) {
    it(`${file} checks clean, alone and against the dit-digits fixture, and fmt round-trips`, () => {
      const parsed = parseRecipeFile(join(RECIPES, file));
      expect(parsed.diagnostics).toEqual([]);
      const recipe = parsed.recipe!;
      expect(checkRecipe(recipe)).toEqual([]);
      expect(checkRecipeAgainstModel(recipe, layers).diagnostics).toEqual([]);
      const text = formatRecipe(recipe);
      const again = parseRecipe(text, 'formatted.qrecipe');
      expect(again.diagnostics).toEqual([]);
      expect(withoutSources(again.recipe!)).toEqual(withoutSources(recipe));
      expect(formatRecipe(again.recipe!)).toBe(text);
      // The same recipe written as JSON gives the same object.
      const json = parseRecipeJson(JSON.stringify(withoutSources(recipe)), 'recipe.json');
      expect(json.diagnostics).toEqual([]);
      expect(withoutSources(json.recipe!)).toEqual(withoutSources(recipe));
    });
  }

  it('starts with a header comment naming the method and its paper', () => {
    for (const file of files) expect(readFileSync(join(RECIPES, file), 'utf8')).toMatch(/^# .+(19|20)\d\d/m);
  });
});

describe('bad recipes', () => {
  const files = readdirSync(BAD).filter((f) => f.endsWith('.qrecipe')).sort();

  it('the corpus has at least 25 cases', () => {
    expect(files.length).toBeGreaterThanOrEqual(25);
  });

  for (const file of files) {
    it(`${file} gives its annotated diagnostic`, () => {
      const path = join(BAD, file);
      const text = readFileSync(path, 'utf8');
      const [, code, line, column, withModel] = /^# expect: (\w+) (\d+):(\d+)( model)?/.exec(text)!;
      const parsed = parseRecipeFile(path);
      const diagnostics: Diagnostic[] = [...parsed.diagnostics];
      if (parsed.recipe) diagnostics.push(...checkRecipe(parsed.recipe));
      if (parsed.recipe && withModel) diagnostics.push(...checkRecipeAgainstModel(parsed.recipe, layers).diagnostics);
      const errors = diagnostics.filter((d) => d.severity === 'error');
      expect(errors.length).toBeGreaterThan(0);
      const first = errors[0]!;
      const at = lineColumn(text, first.span!.offset);
      expect(`${first.code} ${at.line}:${at.column}`).toBe(`${code} ${line}:${column}`);
    });
  }

  it('reports several errors in one run (recovery)', () => {
    const { diagnostics } = parseRecipe('recipe "x" {\n  targt cpu\n  calibrate { sampels 3 }\n  quantize attn.qkvv { weight int8 }\n}\n');
    expect(diagnostics.map((d) => d.code)).toEqual(['E010', 'E012', 'E020']);
    expect(diagnostics.map((d) => d.message)).toEqual([
      "unknown statement 'targt' (did you mean 'target'?)",
      "unknown calibrate setting 'sampels' (did you mean 'samples'?)",
      "unknown layer role or selector 'attn.qkvv' (did you mean 'attn.qkv'?)",
    ]);
  });

  it('refuses a quantize rule that selects nothing, naming it and the roles the model has (a warning under allowEmpty)', () => {
    const { recipe } = parseRecipe('recipe "x" {\n  quantize op(Conv) { weight int8 }\n  quantize res.conv { weight int8 }\n}\n');
    const roles = "this model's layers by role: adaln 7, attn.out 6, attn.qkv 6, embed.label 1, embed.patch 1, embed.time 2, final 1, mlp.fc1 6, mlp.fc2 6";
    const strict = checkRecipeAgainstModel(recipe!, layers).diagnostics;
    expect(strict.map((d) => `${d.severity} ${d.code} ${d.message}`)).toEqual(["error E045 quantize rule 'res.conv' selects no layer of this model"]);
    expect(strict[0]!.notes).toEqual([roles, 'pass --allow-empty to compile anyway']);
    const lenient = checkRecipeAgainstModel(recipe!, layers, { allowEmpty: true }).diagnostics;
    expect(lenient.map((d) => `${d.severity} ${d.code} ${d.message}`)).toEqual(["warning W001 quantize rule 'res.conv' selects no layer of this model"]);
  });

  it('warns about a selector that matches nothing in a rule that selects other layers, and about idle keep rules and transforms', () => {
    const { recipe } = parseRecipe(
      'recipe "x" {\n  transform dilate on attn.q, attn.k\n  quantize attn, res.conv, op(Conv) { weight int8 }\n  quantize attn.qkv { weight int4 }\n  quantize attn.qkv { weight int8 }\n  keep embed.label\n  keep up, down\n}\n',
    );
    const { diagnostics } = checkRecipeAgainstModel(recipe!, layers);
    expect(diagnostics.map((d) => `${d.code} ${d.message}`)).toEqual([
      "W004 selector 'res.conv' of quantize rule 'attn, res.conv, op(Conv)' matches no layer of this model",
      "W001 quantize rule 'attn.qkv' applies to no layer (more specific rules take all its layers)",
      "W001 keep rule 'up, down' matches no layer of this model",
      "W001 transform dilate on 'attn.q, attn.k' matches no layer of this model",
    ]);
  });
});

describe('selection', () => {
  it('takes the most specific rule, later rules winning ties, keep winning over quantize at equal specificity', () => {
    const { recipe } = parseRecipe(`recipe "x" {
      quantize all { weight int8 }
      quantize attn { weight int4 group 32 }
      quantize attn.qkv { weight int4 group 64 }
      quantize name("blocks.0.*") { weight int4 group 16 }
      keep attn.out
    }`);
    const { selection } = checkRecipeAgainstModel(recipe!, layers);
    const g = (name: string) => {
      const a = selection.assignments.get(name)!;
      return a.action === 'keep' ? 'keep' : JSON.stringify(a.weight!.granularity);
    };
    expect(g('blocks.0.attn.qkv')).toBe('{"kind":"group","size":16}');
    expect(g('blocks.1.attn.qkv')).toBe('{"kind":"group","size":64}');
    expect(g('blocks.1.attn.out')).toBe('keep');
    expect(g('blocks.1.mlp.fc1')).toBe('{"kind":"per-channel"}');
  });

  it('resolves repeated rules as written: the last of identical rules wins, an except list makes a rule its own, keep wins a tie from anywhere', () => {
    const { recipe } = parseRecipe(`recipe "x" {
      keep mlp.fc1
      quantize attn.qkv { weight int8 }
      quantize mlp { weight int8 }
      quantize attn.qkv except name("blocks.0.*") { weight int4 group 32 }
      quantize attn.qkv { weight int4 group 64 }
      quantize mlp.fc1 { weight int4 group 16 }
      quantize attn.qkv except name("blocks.1.*") { weight int4 group 16 }
    }`);
    const { selection, diagnostics } = checkRecipeAgainstModel(recipe!, layers);
    const g = (name: string) => {
      const a = selection.assignments.get(name)!;
      return a.action === 'keep' ? 'keep' : `rule ${a.rule}: ${JSON.stringify(a.weight!.granularity)}`;
    };
    expect(g('blocks.0.attn.qkv')).toBe('rule 5: {"kind":"group","size":16}');
    expect(g('blocks.1.attn.qkv')).toBe('rule 3: {"kind":"group","size":64}');
    expect(g('blocks.1.mlp.fc1')).toBe('keep');
    expect(g('blocks.1.mlp.fc2')).toBe('rule 1: {"kind":"per-channel"}');
    const unused = "applies to no layer (more specific rules take all its layers)";
    expect(diagnostics.map((d) => [d.code, recipe!.rules.findIndex((r) => r.source === d.span), d.message])).toEqual([
      ['W001', 0, `quantize rule 'attn.qkv' ${unused}`],
      ['W001', 2, `quantize rule 'attn.qkv' ${unused}`],
      ['W001', 4, `quantize rule 'mlp.fc1' ${unused}`],
    ]);
  });
});

describe('the parser under random input', () => {
  const seeds = readdirSync(RECIPES).map((f) => readFileSync(join(RECIPES, f), 'utf8'));
  const alphabet = [...'{}()[],:<>=#"/ \n\t-.0123456789abcdefghijklmnopqrstuvwxyz_'];
  const mutate = (text: string, edits: { at: number; kind: number; char: string; length: number }[]) => {
    let out = text;
    for (const e of edits) {
      const at = e.at % (out.length + 1);
      if (e.kind === 0) out = out.slice(0, at) + out.slice(at + e.length);
      else if (e.kind === 1) out = out.slice(0, at) + e.char + out.slice(at);
      else {
        const other = (at * 7919) % (out.length + 1);
        const [a, b] = [Math.min(at, other), Math.max(at, other)];
        out = out.slice(0, a) + out.slice(b, b + e.length) + out.slice(a + e.length, b) + out.slice(a, a + e.length) + out.slice(b + e.length);
      }
    }
    return out;
  };

  it('always answers with diagnostics or a recipe, never throwing, in bounded time', () => {
    const started = Date.now();
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string({ unit: fc.constantFrom(...alphabet), maxLength: 200 }),
          fc.tuple(fc.constantFrom(...seeds), fc.array(fc.record({ at: fc.nat(5000), kind: fc.nat(2), char: fc.constantFrom(...alphabet), length: fc.integer({ min: 1, max: 12 }) }), { minLength: 1, maxLength: 6 })).map(([text, edits]) => mutate(text, edits)),
        ),
        (text) => {
          const t0 = Date.now();
          const result = parseRecipe(text, 'fuzz.qrecipe');
          expect(Date.now() - t0).toBeLessThan(2000);
          expect(result.recipe !== undefined || result.diagnostics.some((d) => d.severity === 'error')).toBe(true);
          for (const d of result.diagnostics) if (d.span) expect(d.span.offset).toBeLessThanOrEqual(text.length);
        },
      ),
      { numRuns: 3000, seed: 42 },
    );
    expect(Date.now() - started).toBeLessThan(60_000);
  });
});

describe('editor support', () => {
  it('the TextMate grammar is valid JSON and highlights exactly the lexer\'s keywords', () => {
    const grammar = JSON.parse(readFileSync('grammar/qrecipe.tmLanguage.json', 'utf8')) as { scopeName: string; repository: { keyword: { match: string } } };
    expect(grammar.scopeName).toBe('source.qrecipe');
    const words = /\(([^)]+)\)/.exec(grammar.repository.keyword.match)![1]!.split('|');
    expect(words.sort()).toEqual([...KEYWORDS].sort());
  });
});

describe('the documentation', () => {
  it('docs/recipe-syntax.html has a diagram for every rule of the parser (regenerate with grammar/gen-diagrams.ts)', () => {
    const html = readFileSync('docs/recipe-syntax.html', 'utf8');
    const headers = [...html.matchAll(/class="diagramHeader">(\w+)<\/h2>/g)].map((m) => m[1]);
    expect(headers.sort()).toEqual(Object.keys(recipeParser.getGAstProductions()).sort());
  });

  it('docs/recipes.md documents every diagnostic code the recipe front end emits', () => {
    const docs = readFileSync('docs/recipes.md', 'utf8');
    const sources = readdirSync('src/recipe').map((f) => readFileSync(join('src/recipe', f), 'utf8')).join('\n');
    const codes = [...new Set([...sources.matchAll(/'([EW]\d{3})'/g)].map((m) => m[1]!))];
    expect(codes.length).toBeGreaterThan(20);
    expect(codes.filter((code) => !docs.includes(code))).toEqual([]);
  });
});

describe('the published schema', () => {
  it('grammar/qrecipe.schema.json is the generated schema', () => {
    expect(JSON.parse(readFileSync('grammar/qrecipe.schema.json', 'utf8'))).toEqual(JSON.parse(JSON.stringify(recipeSchema)));
  });

  it('rejects a JSON recipe with a misspelt field', () => {
    const { diagnostics } = parseRecipeJson('{"name": "x", "targt": "cpu"}', 'r.json');
    expect(diagnostics.map((d) => d.code)).toEqual(['E051']);
    expect(diagnostics[0]!.message).toContain('additional properties');
    expect(diagnostics[0]!.message).toContain("'targt'");
  });

  it('points a JSON schema error at the offending key', () => {
    const text = '{\n  "name": "x",\n  "calibrate": {\n    "samples": "many"\n  }\n}\n';
    const { diagnostics } = parseRecipeJson(text, 'r.json');
    expect(diagnostics.map((d) => [d.code, lineColumn(text, d.span!.offset)])).toEqual([['E051', { line: 4, column: 5 }]]);
    expect(text.slice(diagnostics[0]!.span!.offset, diagnostics[0]!.span!.offset + diagnostics[0]!.span!.length)).toBe('"samples"');
  });
});

describe('group auto budgets', () => {
  it('reads `bits <= B` as an average-bits budget and `mean >= N` as a mean-group-size one; fmt keeps each', () => {
    for (const [text, budget] of [
      ['bits <= 4.5', { kind: 'average-bits', max: 4.5 }],
      ['mean >= 64', { kind: 'mean-group-size', min: 64 }],
    ] as const) {
      const parsed = parseRecipe(`recipe "x" {\n  quantize attn { weight int4 asym group auto(candidates: [32, 64, 128], budget: ${text}) }\n}\n`, 'x.qrecipe');
      expect(parsed.diagnostics).toEqual([]);
      expect(parsed.recipe!.rules[0]!.weight!.granularity).toEqual({ kind: 'auto', candidates: [32, 64, 128], budget });
      expect(formatRecipe(parsed.recipe!)).toContain(`budget: ${text})`);
    }
  });
});

describe('activation token groups that follow the weight', () => {
  it('reads `per-token-group(size: weight)`, checks clean under `group auto` and fmt keeps it', () => {
    const parsed = parseRecipe('recipe "x" {\n  quantize attn {\n    weight int4 asym group auto(candidates: [32, 64], budget: mean >= 32)\n    input int8 sym dynamic per-token-group(size: weight)\n  }\n}\n', 'x.qrecipe');
    expect(parsed.diagnostics).toEqual([]);
    expect(parsed.recipe!.rules[0]!.input!.mode).toEqual({ kind: 'dynamic', granularity: 'per-token-group', groupSize: 'weight' });
    expect(checkRecipe(parsed.recipe!)).toEqual([]);
    expect(formatRecipe(parsed.recipe!)).toContain('dynamic per-token-group(size: weight)');
  });
});

describe('the settings table', () => {
  const weight = (granularity: unknown, rounding: unknown = { kind: 'nearest' }, range: unknown = { kind: 'minmax' }) => ({ bits: 4, signed: true, symmetric: true, granularity, range, rounding });
  const input = (mode: unknown, range: unknown = { kind: 'minmax' }) => ({ bits: 8, symmetric: false, mode, range });
  const rule = (spec: Record<string, unknown>) => ({ rules: [{ select: [{ kind: 'all' }], except: [], ...spec }] });
  const auto = (candidates: unknown[], budget: unknown) => rule({ weight: weight({ kind: 'auto', candidates, budget }) });
  /** Each numeric setting written with value `v`, as `.qrecipe` statements and as a JSON recipe. */
  const forms: Record<string, { text: (v: number) => string; json: (v: number) => Record<string, unknown> }> = {
    seed: { text: (v) => `seed ${v}`, json: (v) => ({ seed: v }) },
    'diffusion.guidance': { text: (v) => `diffusion { guidance ${v} }`, json: (v) => ({ diffusion: { guidance: v } }) },
    'diffusion.classes': { text: (v) => `diffusion { classes ${v} }`, json: (v) => ({ diffusion: { classes: v } }) },
    'schedule.steps': { text: (v) => `diffusion { schedule cosine(steps: ${v}) sampler ddim(steps: 1) }`, json: (v) => ({ diffusion: { schedule: { kind: 'cosine', steps: v }, sampler: { kind: 'ddim', steps: 1, eta: 0 } } }) },
    'schedule.start': { text: (v) => `diffusion { schedule linear(start: ${v}) }`, json: (v) => ({ diffusion: { schedule: { kind: 'linear', betaStart: v, betaEnd: 0.02, steps: 1000 } } }) },
    'schedule.end': { text: (v) => `diffusion { schedule scaled-linear(end: ${v}) }`, json: (v) => ({ diffusion: { schedule: { kind: 'scaled-linear', betaStart: 1e-4, betaEnd: v, steps: 1000 } } }) },
    'ddim.steps': { text: (v) => `diffusion { schedule cosine(steps: 10000) sampler ddim(steps: ${v}) }`, json: (v) => ({ diffusion: { schedule: { kind: 'cosine', steps: 10000 }, sampler: { kind: 'ddim', steps: v, eta: 0 } } }) },
    'ddim.eta': { text: (v) => `diffusion { sampler ddim(eta: ${v}) }`, json: (v) => ({ diffusion: { sampler: { kind: 'ddim', steps: 50, eta: v } } }) },
    'ddpm.steps': { text: (v) => `diffusion { schedule cosine(steps: 10000) sampler ddpm(steps: ${v}) }`, json: (v) => ({ diffusion: { schedule: { kind: 'cosine', steps: 10000 }, sampler: { kind: 'ddpm', steps: v } } }) },
    'euler.steps': { text: (v) => `diffusion { schedule cosine(steps: 10000) sampler euler(steps: ${v}) }`, json: (v) => ({ diffusion: { schedule: { kind: 'cosine', steps: 10000 }, sampler: { kind: 'euler', steps: v } } }) },
    'flow-euler.steps': { text: (v) => `diffusion { schedule flow(steps: 10000) prediction flow sampler flow-euler(steps: ${v}) }`, json: (v) => ({ diffusion: { schedule: { kind: 'flow', shift: 1, steps: 10000 }, prediction: 'flow', sampler: { kind: 'flow-euler', steps: v } } }) },
    'schedule.shift': { text: (v) => `diffusion { schedule flow(shift: ${v}) prediction flow sampler flow-euler }`, json: (v) => ({ diffusion: { schedule: { kind: 'flow', shift: v, steps: 1000 }, prediction: 'flow', sampler: { kind: 'flow-euler', steps: 28 } } }) },
    'diffusion.resolution': { text: (v) => `diffusion { resolution ${v} }`, json: (v) => ({ diffusion: { resolution: { height: v, width: v } } }) },
    'diffusion.timestep-scale': { text: (v) => `diffusion { timestep-scale ${v} }`, json: (v) => ({ diffusion: { timestepScale: v } }) },
    'calibrate.samples': { text: (v) => `calibrate { samples ${v} }`, json: (v) => ({ calibrate: { samples: v } }) },
    'calibrate.batch': { text: (v) => `calibrate { batch ${v} }`, json: (v) => ({ calibrate: { batch: v } }) },
    'calibrate.ema': { text: (v) => `calibrate { ema ${v} }`, json: (v) => ({ calibrate: { ema: v } }) },
    'evenly-spaced.count': { text: (v) => `calibrate { timesteps evenly-spaced(count: ${v}) }`, json: (v) => ({ calibrate: { timesteps: { kind: 'evenly-spaced', count: v } } }) },
    'ndtc.mean': { text: (v) => `calibrate { timesteps ndtc(mean: ${v}) }`, json: (v) => ({ calibrate: { timesteps: { kind: 'ndtc', mean: v, std: 0.35 } } }) },
    'ndtc.std': { text: (v) => `calibrate { timesteps ndtc(std: ${v}) }`, json: (v) => ({ calibrate: { timesteps: { kind: 'ndtc', mean: 0.5, std: v } } }) },
    'percentile.p': { text: (v) => `calibrate { range percentile(p: ${v}) }`, json: (v) => ({ calibrate: { range: { kind: 'percentile', percentile: v } } }) },
    'lp.p': { text: (v) => `calibrate { range lp(p: ${v}) }`, json: (v) => ({ calibrate: { range: { kind: 'lp', p: v, gridSize: 100 } } }) },
    'lp.grid': { text: (v) => `quantize all { weight int4 group 32 range lp(grid: ${v}) }`, json: (v) => rule({ weight: weight({ kind: 'group', size: 32 }, undefined, { kind: 'lp', p: 2.4, gridSize: v }) }) },
    'search.population': { text: (v) => `search { population ${v} }`, json: (v) => ({ search: { population: v } }) },
    'search.top': { text: (v) => `search { top ${v} }`, json: (v) => ({ search: { topK: v } }) },
    'search.mutations': { text: (v) => `search { mutations ${v} }`, json: (v) => ({ search: { mutations: v } }) },
    'search.crossovers': { text: (v) => `search { crossovers ${v} }`, json: (v) => ({ search: { crossovers: v } }) },
    'search.mutation-rate': { text: (v) => `search { mutation-rate ${v} }`, json: (v) => ({ search: { mutationRate: v } }) },
    'search.epochs': { text: (v) => `search { epochs ${v} }`, json: (v) => ({ search: { epochs: v } }) },
    'search.judge-samples': { text: (v) => `search { judge held-out judge-samples ${v} }`, json: (v) => ({ search: { judge: 'held-out', judgeSamples: v } }) },
    'weight.bits': { text: (v) => `quantize all { weight int${v} }`, json: (v) => rule({ weight: { ...weight({ kind: 'per-channel' }), bits: v } }) },
    'input.bits': { text: (v) => `quantize all { input int${v} }`, json: (v) => rule({ input: { ...input({ kind: 'static' }), bits: v } }) },
    'group.size': { text: (v) => `quantize all { weight int4 group ${v} }`, json: (v) => rule({ weight: weight({ kind: 'group', size: v }) }) },
    'auto.candidate': { text: (v) => `quantize all { weight int4 group auto(candidates: [${v}], budget: mean >= 1) }`, json: (v) => auto([v], { kind: 'mean-group-size', min: 1 }) },
    'auto.mean': { text: (v) => `quantize all { weight int4 group auto(candidates: [65536], budget: mean >= ${v}) }`, json: (v) => auto([65536], { kind: 'mean-group-size', min: v }) },
    'auto.bits': { text: (v) => `quantize all { weight int4 group auto(candidates: [32], budget: bits <= ${v}) }`, json: (v) => auto([32], { kind: 'average-bits', max: v }) },
    'gptq.block': { text: (v) => `quantize all { weight int4 group 32 rounding gptq(block: ${v}) }`, json: (v) => rule({ weight: weight({ kind: 'group', size: 32 }, { kind: 'gptq', blockSize: v, damp: 0.01 }) }) },
    'gptq.damp': { text: (v) => `quantize all { weight int4 group 32 rounding gptq(damp: ${v}) }`, json: (v) => rule({ weight: weight({ kind: 'group', size: 32 }, { kind: 'gptq', blockSize: 128, damp: v }) }) },
    'per-timestep.groups': { text: (v) => `quantize all { input int8 per-timestep(groups: ${v}) }`, json: (v) => rule({ input: input({ kind: 'per-timestep', groups: v }) }) },
    'per-token-group.size': { text: (v) => `quantize all { input int8 dynamic per-token-group(size: ${v}) }`, json: (v) => rule({ input: input({ kind: 'dynamic', granularity: 'per-token-group', groupSize: v }) }) },
    'smoothquant.alpha': { text: (v) => `transform smoothquant(alpha: ${v}) on all`, json: (v) => ({ transforms: [{ kind: 'smoothquant', alpha: v, select: [{ kind: 'all' }], except: [] }] }) },
    'dilate.max': { text: (v) => `transform dilate(max: ${v}) on all`, json: (v) => ({ transforms: [{ kind: 'dilate', maxScale: v, select: [{ kind: 'all' }], except: [] }] }) },
  };
  const numeric = (Object.entries(SETTINGS) as [SettingId, Setting][]).filter((e): e is [SettingId, NumberSetting] => e[1].kind !== 'enum');
  const first = (diagnostics: Diagnostic[]) => diagnostics.filter((d) => d.severity === 'error').map((d) => `${d.code} ${d.message}`)[0];

  it('has a text and a JSON form for every numeric setting in this test', () => {
    expect(numeric.map(([id]) => id).sort()).toEqual(Object.keys(forms).sort());
  });

  for (const [id, s] of numeric) {
    it(`${id}: each bound is accepted at its edge and rejected past it, identically as text and as JSON`, () => {
      const form = forms[id]!;
      const text = (v: number) => parseRecipe(`recipe "x" {\n  ${form.text(v)}\n}\n`, 'b.qrecipe');
      const json = (v: number) => parseRecipeJson(JSON.stringify({ name: 'x', ...form.json(v) }), 'b.json');
      const step = s.kind === 'int' ? 1 : Math.max(1e-6, (s.max - s.min) * 1e-3);
      // Storage types are words (int8): their bits cannot be fractional as text.
      const fractional = s.kind === 'int' && !id.endsWith('.bits');
      const outside = [s.minExclusive ? s.min : s.min - step, s.maxExclusive ? s.max : s.max + step, ...(fractional ? [s.min + 0.5] : [])];
      for (const v of outside) {
        const fromText = first(text(v).diagnostics);
        expect(fromText, `${id} = ${v}`).toMatch(/^E0(14|31|32) /);
        expect(first(json(v).diagnostics), `${id} = ${v} as JSON`).toBe(fromText);
      }
      const inside = [s.minExclusive ? s.min + step : s.min, s.maxExclusive ? s.max - step : s.max];
      for (const v of inside) {
        expect(first(text(v).diagnostics), `${id} = ${v}`).toBeUndefined();
        expect(first(json(v).diagnostics), `${id} = ${v} as JSON`).toBeUndefined();
      }
    });
  }

  it('fmt prints every block setting of the table under its key, and the schema publishes each bound', () => {
    const text = formatRecipe(parseRecipe('recipe "x" {\n}\n', 'x.qrecipe').recipe!);
    const blockIds = (Object.keys(SETTINGS) as SettingId[]).filter((id) => blockSetting(id));
    expect(blockIds.length).toBeGreaterThan(10);
    for (const id of blockIds) expect(text, id).toMatch(new RegExp(`[ {]${blockSetting(id)!.key} ${String((SETTINGS[id] as { default: unknown }).default)}[ \n]`));
    const schema = JSON.stringify(recipeSchema);
    for (const [id, s] of numeric) expect(schema, id).toContain(JSON.stringify(s.doc));
  });

  it('the settings section of docs/recipes.md is the generated one (regenerate with grammar/gen-settings.ts)', () => {
    const docs = readFileSync('docs/recipes.md', 'utf8');
    const section = docs.slice(docs.indexOf(SETTINGS_DOC_BEGIN) + SETTINGS_DOC_BEGIN.length, docs.indexOf(SETTINGS_DOC_END));
    expect(section.trim()).toBe(settingsMarkdown());
  });

  it('limits the statements of a recipe, text and JSON alike (checked by the JSON path here: 50 001 text rules parse slowly)', () => {
    const rules = Array.from({ length: LIMITS.statements.max + 1 }, () => ({ select: [{ kind: 'all' }], except: [] }));
    expect(first(parseRecipeJson(JSON.stringify({ name: 'x', rules }), 'big.json').diagnostics)).toBe(`E017 the recipe has ${rules.length} rules, keeps and transforms; at most ${LIMITS.statements.max}`);
  });
});

describe('name globs', () => {
  it('match in linear time: a 16-star glob against a 60-character near miss answers at once (a .* regex backtracks for minutes)', () => {
    const layer = { name: 'blocks.1.attn.qkv.weight.with.a.very.long.name.that.misses.y', role: 'attn.qkv', opType: 'MatMul', index: 0 };
    expect(matchSpecificity({ kind: 'name', glob: '****************z' }, layer, 1)).toBe(-1);
    expect(matchSpecificity({ kind: 'name', glob: '****************y' }, layer, 1)).toBe(4);
  });

  it('keep their meaning: * any run (dots too), ? one character, full match', () => {
    const cases: [string, string, boolean][] = [['blocks.*.attn.*', 'blocks.3.attn.qkv', true], ['blocks.?.mlp.fc?', 'blocks.1.mlp.fc2', true], ['blocks.?.mlp', 'blocks.12.mlp', false], ['*', '', true], ['a*b*c', 'abc', true], ['a*b*c', 'acb', false], ['attn', 'attn.qkv', false]];
    for (const [glob, name, expected] of cases) expect(globMatches(glob, name), `${glob} ~ ${name}`).toBe(expected);
  });
});

describe('line and column of a diagnostic', () => {
  it('agree with a scan of the text, for every offset (including past the end), text after text', () => {
    const naive = (text: string, offset: number) => {
      const before = text.slice(0, Math.max(0, offset));
      const lineStart = before.lastIndexOf('\n') + 1;
      return { line: before.split('\n').length, column: offset - lineStart + 1 };
    };
    fc.assert(
      fc.property(fc.string({ unit: fc.constantFrom('a', 'b', '\n', ' '), maxLength: 40 }), fc.nat(45), (text, offset) => {
        expect(lineColumn(text, offset)).toEqual(naive(text, offset));
      }),
      { numRuns: 500, seed: 3 },
    );
  });
});
