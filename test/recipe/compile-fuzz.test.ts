/**
 * The recipe fuzz property on the compile path: a random recipe that `check --model` passes must compile
 * (exit 0, a model ONNX Runtime loads) or fail with a located diagnostic (`file:line:col: error[…]`) — never
 * a crash, never a refusal that `check` did not foresee. Few runs, tiny calibration (4 samples, 3 DDIM steps).
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import type { CliIO } from '../../src/cli/command.js';
import { main } from '../../src/cli/main.js';
import { loadModelSync } from '../../src/ir/serde.js';
import { discoverLayers } from '../../src/quant/layers.js';
import { checkRecipe, checkRecipeAgainstModel } from '../../src/recipe/check.js';
import { parseRecipe } from '../../src/recipe/parse.js';

const MODEL = 'test/fixtures/dit-digits/model.onnx';
const layers = discoverLayers(loadModelSync(MODEL));
const scratch = mkdtempSync(join(tmpdir(), 'qcompile-compile-fuzz-'));

const selector = fc.constantFrom('attn.qkv', 'attn.out', 'mlp.fc1', 'mlp', 'attn', 'adaln', 'all', 'op(Conv)', 'name("blocks.0.*")', 'embed.label', 'final', 'first');
const weight = fc.tuple(fc.constantFrom('int8', 'int4', 'uint8', 'int6'), fc.constantFrom('sym', 'asym'), fc.constantFrom('per-channel', 'per-tensor', 'group 32', 'group 16', 'group 100'), fc.constantFrom('', 'range mse(grid: 4)', 'rounding gptq(block: 16)')).map((parts) => `weight ${parts.join(' ')}`);
const input = fc.tuple(fc.constantFrom('sym', 'asym'), fc.constantFrom('static', 'per-timestep(groups: 2)', 'dynamic per-token', 'dynamic per-sample', 'dynamic per-token-group(size: 32)', 'dynamic per-token-group(size: 100)')).map((parts) => `input int8 ${parts.join(' ')}`);
const rule = fc.tuple(fc.array(selector, { minLength: 1, maxLength: 2 }), fc.option(weight, { nil: undefined }), fc.option(input, { nil: undefined })).filter(([, w, i]) => w !== undefined || i !== undefined).map(([sel, w, i]) => `  quantize ${[...new Set(sel)].join(', ')} { ${[w, i].filter(Boolean).join(' ')} }`);
const recipe = fc
  .record({
    target: fc.constantFrom('cpu', 'cpu', 'webgpu', 'cuda', 'tensorrt'),
    timesteps: fc.constantFrom('uniform', 'evenly-spaced(count: 2)', 'random-distinct', 'ndtc(mean: 0.5, std: 0.3)'),
    range: fc.constantFrom('minmax', 'percentile(p: 99)', 'mse(grid: 4)'),
    transforms: fc.array(fc.constantFrom('  transform smoothquant(alpha: 0.5) on attn.qkv', '  transform dilate(max: 8) on mlp.fc1'), { maxLength: 1 }),
    rules: fc.array(rule, { minLength: 1, maxLength: 3 }),
    keep: fc.constantFrom('', '  keep first'),
  })
  .map((r) => [`recipe "fuzz" {`, `  target ${r.target}`, `  diffusion { sampler ddim(steps: 3) }`, `  calibrate { samples 4 batch 2 timesteps ${r.timesteps} range ${r.range} }`, ...r.transforms, ...r.rules, r.keep, '}', ''].join('\n'));

async function compile(recipePath: string, out: string): Promise<{ code: number; stderr: string }> {
  let stderr = '';
  const io: CliIO = { stdout: () => undefined, stderr: (t) => void (stderr += t), cwd: process.cwd() };
  return { code: await main([MODEL, recipePath, '-o', out], io), stderr };
}

describe('the recipe fuzz property on the compile path', () => {
  it('a recipe check passes compiles to a model ORT loads, or fails with a located diagnostic', { timeout: 300_000 }, async () => {
    let compiled = 0;
    let n = 0;
    await fc.assert(
      fc.asyncProperty(recipe, async (text) => {
        const parsed = parseRecipe(text, 'fuzz.qrecipe');
        if (!parsed.recipe) return; // the generator writes valid syntax; a setting it combines badly is check's to refuse
        const diagnostics = [...checkRecipe(parsed.recipe), ...checkRecipeAgainstModel(parsed.recipe, layers).diagnostics];
        if (diagnostics.some((d) => d.severity === 'error')) return;
        const path = join(scratch, `r${n}.qrecipe`);
        const out = join(scratch, `r${n++}.onnx`);
        writeFileSync(path, text);
        const result = await compile(path, out);
        if (result.code === 0) {
          await ort.InferenceSession.create(out);
          compiled++;
        } else {
          expect(result.stderr, `${text}\n${result.stderr}`).toMatch(/:\d+:\d+: error\[[EW]\d{3}\]/);
        }
      }),
      { numRuns: 20, seed: 7 },
    );
    console.log(`compile fuzz: ${n} of 20 recipes passed check, ${compiled} compiled`);
    // The property is only worth something if runs reach the compiler and succeed.
    expect(compiled).toBeGreaterThanOrEqual(3);
  });
});
