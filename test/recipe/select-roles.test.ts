/**
 * Role selectors over the family-agnostic vocabulary on a text-conditioned UNet (test/fixtures/sd-digits): the
 * groups `attn` (cross included), `attn.cross` and `proj` select by role, an exact role outranks its group, and
 * the old `attn.proj` is an error that names `attn.out`.
 */
import { describe, expect, it } from 'vitest';
import { loadModelSync } from '../../src/ir/serde.js';
import { discoverLayers } from '../../src/quant/layers.js';
import { checkRecipeAgainstModel } from '../../src/recipe/check.js';
import { parseRecipe } from '../../src/recipe/parse.js';

const layers = discoverLayers(loadModelSync('test/fixtures/sd-digits/unet/model.onnx'));

/** The layers each action takes under `text`: `keep`, or the weight bits of the quantize rule. */
function actions(text: string): Record<string, string[]> {
  const { recipe, diagnostics } = parseRecipe(text);
  expect(diagnostics).toEqual([]);
  const { selection } = checkRecipeAgainstModel(recipe!, layers);
  const out: Record<string, string[]> = {};
  for (const [name, plan] of selection.assignments) (out[plan.action === 'keep' ? 'keep' : `int${plan.weight!.bits}`] ??= []).push(name);
  return out;
}

describe('role selectors on an SD UNet', () => {
  it('`attn` takes self- and cross-attention, `attn.cross` only cross, `proj` the transformer projections', () => {
    const taken = actions('recipe "x" {\n  quantize attn { weight int8 }\n  quantize attn.cross { weight int4 group 32 }\n  keep proj\n}\n');
    expect(taken.int8).toEqual(layers.filter((l) => /^attn\.(q|k|v|out)$/.test(l.role)).map((l) => l.name));
    expect(taken.int8).toHaveLength(16);
    expect(taken.int4).toEqual(layers.filter((l) => l.role.startsWith('attn.cross.')).map((l) => l.name));
    expect(taken.int4!.slice(0, 4)).toEqual(['down.0.attn.0.cross.q', 'down.0.attn.0.cross.k', 'down.0.attn.0.cross.v', 'down.0.attn.0.cross.out']);
    expect(taken.keep).toEqual(['down.0.attn.0.proj.in', 'down.0.attn.0.proj.out', 'mid.attn.0.proj.in', 'mid.attn.0.proj.out', 'up.1.attn.0.proj.in', 'up.1.attn.0.proj.out', 'up.1.attn.1.proj.in', 'up.1.attn.1.proj.out']);
  });

  it('an exact role outranks its group whatever the order', () => {
    const taken = actions('recipe "x" {\n  quantize attn.cross.k { weight int4 group 32 }\n  quantize attn.cross { weight int8 }\n}\n');
    expect(taken.int4).toEqual(['down.0.attn.0.cross.k', 'mid.attn.0.cross.k', 'up.1.attn.0.cross.k', 'up.1.attn.1.cross.k']);
    expect(taken.int8).toHaveLength(12);
  });

  it('rejects the old `attn.proj`, naming its new spelling (E020)', () => {
    const { diagnostics } = parseRecipe('recipe "x" {\n  quantize attn.proj { weight int8 }\n}\n');
    expect(diagnostics.map((d) => `${d.code} ${d.message}`)).toEqual(["E020 unknown layer role 'attn.proj' (renamed 'attn.out')"]);
  });
});
