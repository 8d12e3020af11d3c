import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DataType } from '../../../src/ir/dtype.js';
import { readNpy, writeNpy } from '../../../src/ir/npy.js';
import { loadModelSync } from '../../../src/ir/serde.js';
import { openSession } from '../../../src/runtime/ort-session.js';
import { findDiffusionInterface, type ConditioningInput } from '../../../src/runtime/diffusion/interface.js';
import { encodePrompts, loadTokenizer, readConditioningDir, readPromptsFile, tokenizerLength } from '../../../src/runtime/diffusion/text-conditioning.js';

const SD = 'test/fixtures/sd-digits';
const PIPELINE = { textEncoder: `${SD}/text_encoder/model.onnx`, tokenizer: `${SD}/tokenizer/tokenizer.json` };
const TEXT_STATES: ConditioningInput = { name: 'encoder_hidden_states', kind: 'text-states', elemType: DataType.FLOAT, shape: [8, 64] };

function bin<T extends Float32Array | BigInt64Array>(file: string, ctor: new (b: ArrayBuffer) => T): T {
  const b = readFileSync(file);
  return new ctor(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer);
}
const maxAbsDiff = (a: Float32Array, b: Float32Array) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i]!)), 0);
const tmp = () => mkdtempSync(join(tmpdir(), 'qc-text-'));

describe('prompt tokenization by tokenizer.json', () => {
  const tokenizer = loadTokenizer(PIPELINE.tokenizer);

  it('reproduces the fixture ids, truncating to max_length with <bos>/<eos> kept and padding to the Fixed length', () => {
    const manifest = JSON.parse(readFileSync(`${SD}/text_encoder/reference_manifest.json`, 'utf8')) as { prompts: string[] };
    const ids = tokenizer.encode(manifest.prompts);
    expect(ids.flatMap((e) => e.ids)).toEqual(Array.from(bin(`${SD}/text_encoder/reference_in_input_ids.bin`, BigInt64Array), Number));
    // 'an enormous purple 4 on a wall at night': 9 words cut to 6, between <bos> and <eos>; '' is [<bos>, <eos>, pad…].
    expect(ids[6]).toEqual({ ids: [1, 15, 3, 3, 8, 3, 14, 2], mask: [1, 1, 1, 1, 1, 1, 1, 1] });
    expect(ids[7]).toEqual({ ids: [1, 2, 0, 0, 0, 0, 0, 0], mask: [1, 1, 0, 0, 0, 0, 0, 0] });
    expect(tokenizer.fixedLength).toBe(8);
    expect(tokenizerLength(PIPELINE.tokenizer)).toBe(8);
    for (const split of ['train', 'test']) {
      const { prompts } = readPromptsFile(`${SD}/prompts/prompts_${split}.tsv`);
      expect(tokenizer.encode(prompts).flatMap((e) => e.ids)).toEqual(Array.from(bin(`${SD}/prompts/prompt_ids_${split}_i64.bin`, BigInt64Array), Number));
    }
  });
});

describe('encodePrompts (text encoder in ONNX Runtime)', () => {
  it('matches the PyTorch reference states of the 8 reference prompts', async () => {
    const manifest = JSON.parse(readFileSync(`${SD}/text_encoder/reference_manifest.json`, 'utf8')) as { prompts: string[] };
    expect(manifest.prompts[7]).toBe('');
    const encoded = await encodePrompts(manifest.prompts.slice(0, 7), PIPELINE);
    expect(encoded.shape).toEqual([8, 64]);
    const reference = bin(`${SD}/text_encoder/reference_out_last_hidden_state.bin`, Float32Array);
    const got = new Float32Array(8 * 512);
    [...encoded.prompts, encoded.uncond].forEach((row, i) => got.set(row, i * 512));
    expect(maxAbsDiff(got, reference)).toBeLessThan(2e-6);
  });

  it('matches the precomputed conditioning/test/*.npy of every test prompt and uncond.npy', async () => {
    const { prompts, classes } = readPromptsFile(`${SD}/prompts/prompts_test.tsv`);
    const encoded = await encodePrompts(prompts, PIPELINE, { batch: 32 });
    const precomputed = readConditioningDir(`${SD}/conditioning/test`, [TEXT_STATES]);
    expect(precomputed.count).toBe(100);
    expect(classes).toEqual(Array.from(bin(`${SD}/prompts/prompt_digits_test_i64.bin`, BigInt64Array), Number));
    const worst = Math.max(...encoded.prompts.map((row, i) => maxAbsDiff(row, precomputed.rows.encoder_hidden_states![i]!)));
    expect(worst).toBeLessThan(2e-6);
    expect(maxAbsDiff(encoded.uncond, precomputed.uncond!.encoder_hidden_states!)).toBeLessThan(2e-6);
  });

  it('conditions the sd-digits UNet through the interface it finds: the PyTorch outputs of the reference rows', async () => {
    const unet = `${SD}/unet/model.onnx`;
    const found = findDiffusionInterface(loadModelSync(unet), unet);
    const manifest = JSON.parse(readFileSync(`${SD}/unet/reference_manifest.json`, 'utf8')) as { prompts: string[] };
    expect(manifest.prompts[7]).toBe('');
    const encoded = await encodePrompts(manifest.prompts.slice(0, 7), PIPELINE);
    const states = new Float32Array(8 * 512);
    [...encoded.prompts, encoded.uncond].forEach((row, i) => states.set(row, i * 512));
    const session = await openSession(unet);
    try {
      const out = await session.run({
        [found.latent.name]: { dtype: 'float32', dims: [8, ...found.latent.shape], data: bin(`${SD}/unet/reference_in_sample.bin`, Float32Array) },
        [found.timestep.name]: { dtype: 'int64', dims: [8], data: bin(`${SD}/unet/reference_in_timestep.bin`, BigInt64Array) },
        [found.conditioning[0]!.name]: { dtype: 'float32', dims: [8, ...found.conditioning[0]!.shape], data: states },
      }, [found.output.name]);
      expect(maxAbsDiff(out[found.output.name]!.data as Float32Array, bin(`${SD}/unet/reference_out_out_sample.bin`, Float32Array))).toBeLessThan(1e-4);
    } finally {
      await session.release();
    }
  });

  it('names the tokenizer when prompts tokenize to different lengths (no Fixed padding)', async () => {
    const dir = tmp();
    const json = JSON.parse(readFileSync(PIPELINE.tokenizer, 'utf8')) as Record<string, unknown>;
    delete json.padding;
    writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(json));
    await expect(encodePrompts(['7', 'a handwritten 7'], { ...PIPELINE, tokenizer: join(dir, 'tokenizer.json') })).rejects.toThrow(/prompts tokenize to different lengths \(3 and 5\): the tokenizer needs "padding" with a Fixed length/);
  });
});

describe('prompt files', () => {
  it('reads one prompt a line, ignoring a trailing empty line; a TSV with a header gives each prompt its class', () => {
    const lines = readPromptsFile(`${SD}/prompts/test.txt`);
    const tsv = readPromptsFile(`${SD}/prompts/prompts_test.tsv`);
    expect(lines.prompts).toHaveLength(100);
    expect(lines.classes).toBeUndefined();
    expect(tsv.prompts).toEqual(lines.prompts);
    expect(tsv.classes!.slice(0, 12)).toEqual([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1]);
  });

  it('refuses a bad TSV row with its line number, and a missing file without ENOENT noise', () => {
    const dir = tmp();
    writeFileSync(join(dir, 'p.tsv'), 'prompt\tdigit\na seven\t7\na what\tseven\n');
    expect(() => readPromptsFile(join(dir, 'p.tsv'))).toThrow(`${join(dir, 'p.tsv')}:3: expected 'prompt<TAB>class' with a non-negative integer class, got "a what\\tseven"`);
    expect(() => readPromptsFile(join(dir, 'none.txt'))).toThrow(`${join(dir, 'none.txt')}: cannot read the prompts: ENOENT`);
  });
});

describe('readConditioningDir', () => {
  it('reads one subfolder per input when the model has several, and checks every shape', () => {
    const dir = tmp();
    const pooled: ConditioningInput = { name: 'text_embeds', kind: 'pooled-text', elemType: DataType.FLOAT, shape: [4] };
    for (const input of [TEXT_STATES, pooled]) {
      mkdirSync(join(dir, input.name));
      for (const name of ['a.npy', 'b.npy', 'uncond.npy']) {
        const n = input.shape.reduce((x, y) => x * y, 1);
        writeNpy(join(dir, input.name, name), { dtype: 'float32', shape: input.shape, data: Float32Array.from({ length: n }, (_, i) => i + name.charCodeAt(0)) });
      }
    }
    const read = readConditioningDir(dir, [TEXT_STATES, pooled]);
    expect(read.count).toBe(2);
    expect(Array.from(read.rows.text_embeds![1]!)).toEqual([98, 99, 100, 101]);
    expect(Array.from(read.uncond!.text_embeds!)).toEqual([117, 118, 119, 120]);
    writeNpy(join(dir, 'text_embeds', 'b.npy'), { dtype: 'float32', shape: [2, 2], data: new Float32Array(4) });
    expect(() => readConditioningDir(dir, [TEXT_STATES, pooled])).toThrow(`${join(dir, 'text_embeds', 'b.npy')}: has shape (2, 2), input 'text_embeds' takes (4) per sample`);
    expect(() => readConditioningDir(join(dir, 'text_embeds'), [TEXT_STATES, pooled])).toThrow(/no such folder \(with several conditioning inputs, .* needs one subfolder per input: encoder_hidden_states, text_embeds\)/);
  });

  it('reads the fixture folder as 100 [8, 64] float32 arrays', () => {
    const first = readNpy(`${SD}/conditioning/test/prompt_000.npy`);
    expect(first.dtype).toBe('float32');
    expect(first.shape).toEqual([8, 64]);
    const embeds = bin(`${SD}/prompts/prompt_embeds_test_f32.bin`, Float32Array);
    expect(Array.from(first.data as Float32Array)).toEqual(Array.from(embeds.subarray(0, 512)));
  });
});
