/**
 * The `diffusion { }` block's #13 settings — `schedule config`, `schedule flow(shift:, steps:)`, `prediction
 * flow|sample`, `sampler euler|flow-euler(steps:)`, `resolution N|HxW`, `timestep-scale X` — and calibrate's
 * `prompts` / `conditioning`: what they parse to (as text and as JSON alike), that fmt round-trips them, the
 * errors they give, and that the shipped recipes read exactly as before, the new fields at their defaults.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { checkRecipe } from '../../src/recipe/check.js';
import { formatRecipe } from '../../src/recipe/format.js';
import { parseRecipe, parseRecipeJson } from '../../src/recipe/parse.js';
import type { Recipe } from '../../src/recipe/types.js';

const errors = (text: string) => parseRecipe(`recipe "x" {\n  ${text}\n}\n`, 'b.qrecipe').diagnostics.filter((d) => d.severity === 'error').map((d) => `${d.code} ${d.message}`);
const parsed = (text: string): Recipe => {
  const result = parseRecipe(`recipe "x" {\n  ${text}\n}\n`, 'b.qrecipe');
  expect(result.diagnostics.filter((d) => d.severity === 'error')).toEqual([]);
  return result.recipe!;
};
/** Spans aside: what a recipe means. */
const meaning = (recipe: Recipe) => JSON.parse(JSON.stringify(recipe, (key, value) => (key === 'source' ? undefined : value)));

describe('diffusion { } settings of #13', () => {
  it('the shipped recipes read as before: the new fields take their defaults', () => {
    const recipe = parseRecipe(readFileSync('recipes/ptq4dm-w8a8.qrecipe', 'utf8'), 'ptq4dm-w8a8.qrecipe').recipe!;
    expect(recipe.diffusion).toEqual({ schedule: { kind: 'sidecar' }, prediction: 'model', sampler: recipe.diffusion.sampler, guidance: 0, classes: 0, resolution: { height: 0, width: 0 }, timestepScale: 1 });
    expect([recipe.calibrate.prompts, recipe.calibrate.conditioning]).toEqual(['', '']);
  });

  it('a flow model: schedule flow, prediction flow, sampler flow-euler, resolution HxW, timestep-scale', () => {
    const recipe = parsed('diffusion { schedule flow(shift: 3.0, steps: 1000) prediction flow sampler flow-euler(steps: 20) resolution 64x96 timestep-scale 0.001 }');
    expect(recipe.diffusion).toEqual({ schedule: { kind: 'flow', shift: 3, steps: 1000 }, prediction: 'flow', sampler: { kind: 'flow-euler', steps: 20 }, guidance: 0, classes: 0, resolution: { height: 64, width: 96 }, timestepScale: 0.001 });
    expect(checkRecipe(recipe)).toEqual([]);
  });

  it('defaults of the new calls: flow(shift: 1, steps: 1000), euler(steps: 50), flow-euler(steps: 28); resolution N is square', () => {
    expect(parsed('diffusion { schedule flow prediction flow sampler flow-euler }').diffusion).toMatchObject({ schedule: { kind: 'flow', shift: 1, steps: 1000 }, sampler: { kind: 'flow-euler', steps: 28 } });
    expect(parsed('diffusion { schedule config sampler euler prediction v resolution 128 }').diffusion).toMatchObject({ schedule: { kind: 'config' }, sampler: { kind: 'euler', steps: 50 }, prediction: 'v', resolution: { height: 128, width: 128 } });
    expect(parsed('diffusion { prediction sample }').diffusion.prediction).toBe('sample');
  });

  it("calibrate { prompts \"FILE\" conditioning \"DIR\" } are kept as written (relative to the recipe)", () => {
    expect(parsed('calibrate { prompts "prompts/train.txt" conditioning "conditioning/train" }').calibrate).toMatchObject({ prompts: 'prompts/train.txt', conditioning: 'conditioning/train' });
    expect(errors('calibrate { prompts prompts.txt }')).toEqual(['E014 prompts expects a file name in quotes']);
    expect(errors('calibrate { conditioning 3 }')).toEqual(['E014 conditioning expects a folder name in quotes']);
  });

  it('text and JSON mean the same, and fmt round-trips', () => {
    const text = parsed('diffusion { schedule flow(shift: 3, steps: 500) prediction flow sampler flow-euler(steps: 12) resolution 32x48 timestep-scale 0.001 }\n  calibrate { prompts "p.txt" conditioning "c" }');
    const json = parseRecipeJson(
      JSON.stringify({ name: 'x', diffusion: { schedule: { kind: 'flow', shift: 3, steps: 500 }, prediction: 'flow', sampler: { kind: 'flow-euler', steps: 12 }, resolution: { height: 32, width: 48 }, timestepScale: 0.001 }, calibrate: { prompts: 'p.txt', conditioning: 'c' } }),
      'b.json',
    );
    expect(json.diagnostics).toEqual([]);
    expect(meaning(json.recipe!)).toEqual(meaning(text));
    for (const recipe of [text, parsed('diffusion { schedule config sampler euler(steps: 30) resolution 64 }')]) {
      const again = parseRecipe(formatRecipe(recipe), 'fmt.qrecipe');
      expect(again.diagnostics).toEqual([]);
      expect(meaning(again.recipe!)).toEqual(meaning(recipe));
    }
  });

  it('refuses, with the span of what was written', () => {
    expect(errors('diffusion { resolution 64 x96 }')).toEqual(["E014 resolution expects a size like 64 or a height x width like 64x96, found the number 64 'x96'"]);
    expect(errors('diffusion { resolution "64" }')).toEqual(['E014 resolution expects a size like 64 or a height x width like 64x96, found the string "64"']);
    expect(errors('diffusion { resolution 0x64 }')).toEqual(["E014 resolution 0x64: give both sides, or neither (0 = the model's)"]);
    expect(errors('diffusion { resolution 70000 }')).toEqual(['E014 diffusion { resolution N | HxW }: must be an integer in [0, 65536], got 70000']);
    expect(errors('diffusion { schedule flow(shift: 0) }')).toEqual(['E014 schedule flow(shift: S): must be a number in (0, 1000], got 0']);
    expect(errors('diffusion { sampler heun }')).toEqual(["E015 unknown sampler 'heun'"]);
    expect(errors('diffusion { prediction flows }')).toEqual(["E015 unknown prediction 'flows' (did you mean 'flow'?)"]);
    expect(errors('diffusion { timestep-scale 0 }')).toEqual(['E014 diffusion { timestep-scale X }: must be a number in (0, 1000000], got 0']);
    const span = parseRecipe('recipe "x" { diffusion { resolution 64xa } }', 'b.qrecipe').diagnostics[0]!.span!;
    expect([span.offset, span.length]).toEqual([36, 2]);
  });

  it('check: a flow schedule takes flow-euler and prediction flow; a beta schedule the other samplers', () => {
    const problems = (text: string) => checkRecipe(parsed(text)).map((d) => d.message);
    expect(problems('diffusion { schedule linear sampler flow-euler }')).toEqual(['sampler flow-euler does not run on a linear schedule: flow-euler needs schedule flow(…)']);
    expect(problems('diffusion { schedule flow prediction epsilon }')).toEqual(['sampler ddim does not run on a flow schedule: use flow-euler', "prediction epsilon does not go with a flow schedule: a flow model predicts 'flow' (the velocity)"]);
    expect(problems('diffusion { schedule cosine(steps: 100) sampler euler(steps: 200) }')).toEqual(["the sampler's 200 steps exceed the schedule's 100 timesteps"]);
    // The schedule from the model's files is judged when it is read.
    expect(problems('diffusion { schedule config sampler flow-euler prediction flow }')).toEqual([]);
  });
});
