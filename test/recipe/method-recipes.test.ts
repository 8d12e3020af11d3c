/**
 * The shipped method recipes apply to any UNet or DiT: planned (no calibration) on the DiT fixture and on the
 * sd-digits UNet, each quantizes every Conv/MatMul/Gemm layer its rules name, with the counts asserted, and
 * checks clean (sd-digits: Conv 33, MatMul 40, Gemm 10 weighted layers — the README's op counts less the
 * attention score matmuls). Transforms are counted too.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadModelSync } from '../../src/ir/serde.js';
import type { Layer } from '../../src/quant/layers.js';
import { layersOf } from '../../src/quant/identity.js';
import { checkRecipe, checkRecipeAgainstModel } from '../../src/recipe/check.js';
import { parseRecipeFile } from '../../src/recipe/parse.js';
import { selectForTransform } from '../../src/recipe/select.js';
import { DIT_PRESETS, buildDit } from '../../src/synth/dit.js';
import { MMDIT_PRESETS, buildMmdit } from '../../src/synth/mmdit.js';
import { PIXART_PRESETS, buildPixart } from '../../src/synth/pixart.js';
import { SD_UNET_PRESETS, buildSdUnet } from '../../src/synth/sd-unet.js';

const dit = layersOf(loadModelSync('test/fixtures/dit-digits/model.onnx'));
const unet = layersOf(loadModelSync('test/fixtures/sd-digits/unet/model.onnx'));

/** What a recipe plans for `layers`: names per action, the diagnostics, and each transform's layers. */
function plan(recipe: string, layers: readonly Layer[]) {
  const parsed = parseRecipeFile(join('recipes', `${recipe}.qrecipe`));
  expect(parsed.diagnostics).toEqual([]);
  const r = parsed.recipe!;
  const { diagnostics, selection } = checkRecipeAgainstModel(r, layers);
  const names = (action: string) => layers.filter((l) => selection.assignments.get(l.name)?.action === action);
  return {
    diagnostics: [...checkRecipe(r, { modelFollows: true }), ...diagnostics].map((d) => `${d.code} ${d.message}`),
    quantized: names('quantize'),
    kept: names('keep'),
    transformed: r.transforms.map((t) => selectForTransform(t, layers).length),
  };
}

const ops = (layers: readonly Layer[], ...types: string[]) => layers.filter((l) => types.includes(l.opType));
const count = (layers: readonly Layer[], op: string) => ops(layers, op).length;

describe('the fixtures have the layers the counts below assume', () => {
  it('dit-digits: 1 Conv, 25 MatMul, 9 Gemm, 1 Gather; sd-digits UNet: 33 Conv, 40 MatMul, 10 Gemm', () => {
    expect([count(dit, 'Conv'), count(dit, 'MatMul'), count(dit, 'Gemm'), count(dit, 'Gather'), dit.length]).toEqual([1, 25, 9, 1, 36]);
    expect([count(unet, 'Conv'), count(unet, 'MatMul'), count(unet, 'Gemm'), unet.length]).toEqual([33, 40, 10, 83]);
  });
});

describe('method recipes on any UNet or DiT (planner only: no calibration)', () => {
  it.each(['ptq4dm-w8a8', 'minmax-w8a8'])('%s quantizes every Conv, MatMul and Gemm of both (35 of the DiT, 83 of the UNet)', (recipe) => {
    for (const [layers, expected] of [[dit, 35], [unet, 83]] as const) {
      const { diagnostics, quantized } = plan(recipe, layers);
      expect(diagnostics).toEqual([]);
      expect(quantized).toEqual(ops(layers, 'Conv', 'MatMul', 'Gemm'));
      expect(quantized).toHaveLength(expected);
    }
  });

  it('smoothquant-w8a8 and dilatequant-w4a8 quantize the UNet\'s 33 convs and 48 linears (its time embedding kept)', () => {
    for (const recipe of ['smoothquant-w8a8', 'dilatequant-w4a8']) {
      const { diagnostics, quantized, kept } = plan(recipe, unet);
      expect(diagnostics).toEqual([]);
      expect(kept.map((l) => l.role)).toEqual(['embed.time', 'embed.time']);
      expect(quantized).toEqual(ops(unet, 'Conv', 'MatMul', 'Gemm').filter((l) => l.role !== 'embed.time'));
      expect([count(quantized, 'Conv'), count(quantized, 'MatMul'), count(quantized, 'Gemm')]).toEqual([33, 40, 8]);
    }
  });

  it('smoothquant-w8a8 on the DiT: 31 layers (embeddings and final kept), qkv and fc1 smoothed (12)', () => {
    const { diagnostics, quantized, transformed } = plan('smoothquant-w8a8', dit);
    expect(diagnostics).toEqual([]);
    expect(quantized).toHaveLength(31);
    expect(quantized.every((l) => l.opType === 'MatMul' || l.opType === 'Gemm')).toBe(true);
    expect(transformed).toEqual([12]);
  });

  it('dilatequant-w4a8 on the DiT: 24 attention and feed-forward linears (adaLN kept, as the paper), qkv and fc1 dilated', () => {
    const { diagnostics, quantized, transformed } = plan('dilatequant-w4a8', dit);
    expect(diagnostics).toEqual([]);
    expect(quantized).toHaveLength(24);
    expect(transformed).toEqual([12]);
  });

  it('the UNet transforms smooth/dilate the 12 self-attention q/k/v (shared per input) and 4 fc1, not cross-attention', () => {
    for (const recipe of ['smoothquant-w8a8', 'dilatequant-w4a8']) expect(plan(recipe, unet).transformed).toEqual([16]);
  });

  it('rtn-w4a16-g128: every MatMul/Gemm but the time embedding and final layer at group 128, every Conv per-channel', () => {
    for (const [layers, linears, convs] of [[dit, 31, 1], [unet, 48, 33]] as const) {
      const { diagnostics, quantized } = plan('rtn-w4a16-g128', layers);
      expect(diagnostics).toEqual([]);
      expect(quantized).toEqual(ops(layers, 'Conv', 'MatMul', 'Gemm').filter((l) => l.role !== 'embed.time' && l.role !== 'final'));
      expect([quantized.length - count(quantized, 'Conv'), count(quantized, 'Conv')]).toEqual([linears, convs]);
    }
  });

  it.each(['qdit-w4a8', 'qdit-w6a8'])('%s quantizes the DiT\'s 31 attention, feed-forward and adaLN linears', (recipe) => {
    const { diagnostics, quantized } = plan(recipe, dit);
    expect(diagnostics).toEqual([]);
    expect(quantized).toEqual(dit.filter((l) => /^(attn|mlp|adaln)/.test(l.role)));
    expect(quantized).toHaveLength(31);
  });

  it('Q-DiT on the UNet: every one of its 40 attention and feed-forward MatMuls, W004 for `adaln`', () => {
    const { diagnostics, quantized } = plan('qdit-w4a8', unet);
    expect(diagnostics).toEqual(["W004 selector 'adaln' of quantize rule 'attn, mlp, adaln' matches no layer of this model"]);
    expect(quantized).toEqual(ops(unet, 'MatMul'));
  });
});

describe('method recipes at real size, across families (synthetic exports; weights never generated)', () => {
  const families = [
    ['SD-1.5 UNet', () => buildSdUnet(SD_UNET_PRESETS.sd15!)],
    ['DiT-XL/2', () => buildDit(DIT_PRESETS['dit-xl-2']!)],
    ['PixArt-α 512', () => buildPixart(PIXART_PRESETS['pixart-alpha-512']!)],
    ['SD3-medium (MMDiT)', () => buildMmdit(MMDIT_PRESETS['sd3-medium']!)],
  ] as const;
  it.each(families)('%s: every method recipe quantizes exactly the linear and conv layers its rules name, with no error', (_, build) => {
    const layers = layersOf(build());
    const weighted = ops(layers, 'Conv', 'MatMul', 'Gemm');
    const errors = (diagnostics: string[]) => diagnostics.filter((d) => d.startsWith('E'));
    for (const recipe of ['ptq4dm-w8a8', 'minmax-w8a8']) {
      const { diagnostics, quantized } = plan(recipe, layers);
      expect(errors(diagnostics)).toEqual([]);
      expect(quantized).toEqual(weighted);
    }
    const rtn = plan('rtn-w4a16-g128', layers);
    expect(errors(rtn.diagnostics)).toEqual([]);
    expect(rtn.quantized).toEqual(weighted.filter((l) => l.role !== 'embed.time' && l.role !== 'final'));
    // SmoothQuant keeps embeddings and the final layer; DilateQuant the adaLN too, as the paper does.
    for (const [recipe, kept] of [['smoothquant-w8a8', /^(embed|final)/], ['dilatequant-w4a8', /^(embed|final|adaln)/]] as const) {
      const { diagnostics, quantized, transformed } = plan(recipe, layers);
      expect(errors(diagnostics)).toEqual([]);
      expect(quantized).toEqual(weighted.filter((l) => !kept.test(l.role)));
      expect(transformed[0]).toBeGreaterThan(0);
    }
    const qdit = plan('qdit-w4a8', layers);
    expect(errors(qdit.diagnostics)).toEqual([]);
    expect(qdit.quantized).toEqual(layers.filter((l) => /^(attn|mlp|adaln)/.test(l.role)));
  }, 60_000);
});
