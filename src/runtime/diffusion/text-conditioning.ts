/**
 * Text conditioning: prompts tokenized by the pipeline's `tokenizer.json` (the `@huggingface/tokenizers`
 * package, plus the `truncation` and `padding` sections it does not apply, as tokenizers documents them) and
 * encoded by its text encoder in ONNX Runtime into per-prompt [L, D] states, the empty prompt's alongside for
 * classifier-free guidance; prompt files (one per line, or a `prompt<TAB>class` TSV with a header); and
 * precomputed states from a folder of `.npy` files.
 */
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { openSession, runBatched } from '../ort-session.js';
import { ANY_LENGTH, fitsShape, type ConditioningInput } from './interface.js';
import { readNpy } from '../../ir/npy.js';
import { readJsonObject } from './pipeline-folder.js';

/** Bad prompts, tokenizer, text encoder or conditioning files: the message names the file. */
export class ConditioningError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConditioningError';
  }
}

/** The files that turn prompts into text states. */
export interface TextPipeline {
  textEncoder: string;
  tokenizer: string;
}

/** Encoded prompts: one [L, D] array per prompt (row-major), and the empty prompt's. */
export interface EncodedPrompts {
  shape: [number, number];
  prompts: Float32Array[];
  uncond: Float32Array;
}

/** `tokenizer.json`'s `truncation` and `padding` sections, as far as qcompile applies them. */
interface SequenceRules {
  truncation?: { maxLength: number; direction: 'Right' | 'Left' };
  padding?: { fixed?: number; direction: 'Right' | 'Left'; padId: number; multipleOf?: number };
}

/** A loaded tokenizer: token ids per text, truncated and padded as its file says. */
export interface PromptTokenizer {
  /** Per text, its token ids and attention mask (1 on the text's tokens and specials, 0 on padding). */
  encode(texts: readonly string[]): { ids: number[]; mask: number[] }[];
  /** The sequence length every encoding has, when the padding is Fixed. */
  fixedLength?: number;
}

/** Loads `tokenizer.json` (and `tokenizer_config.json` beside it, when there). */
export function loadTokenizer(file: string): PromptTokenizer {
  const json = readJsonObject(file);
  const configFile = join(file, '..', 'tokenizer_config.json');
  const config = existsSync(configFile) ? readJsonObject(configFile) : {};
  let tokenizer: Tokenizer;
  try {
    tokenizer = new Tokenizer(json, config);
  } catch (error) {
    throw new ConditioningError(`${file}: cannot load the tokenizer: ${(error as Error).message}`);
  }
  const rules = sequenceRules(json, file);
  const encodeOne = (text: string): number[] => {
    const full = tokenizer.encode(text).ids;
    if (!rules.truncation || full.length <= rules.truncation.maxLength) return full;
    // Truncation keeps the special tokens the post-processor adds: only the text's own tokens are cut.
    const content = tokenizer.encode(text, { add_special_tokens: false }).ids;
    const start = indexOfRun(full, content);
    if (start < 0) throw new ConditioningError(`${file}: cannot truncate '${text}': its tokens do not appear contiguously after the post-processor`);
    const keep = rules.truncation.maxLength - (full.length - content.length);
    if (keep < 0) throw new ConditioningError(`${file}: truncation.max_length ${rules.truncation.maxLength} is shorter than the special tokens added`);
    const kept = rules.truncation.direction === 'Right' ? content.slice(0, keep) : content.slice(content.length - keep);
    return [...full.slice(0, start), ...kept, ...full.slice(start + content.length)];
  };
  return {
    encode(texts) {
      const encoded = texts.map(encodeOne);
      const padding = rules.padding;
      if (!padding) return encoded.map((ids) => ({ ids, mask: ids.map(() => 1) }));
      let target = padding.fixed ?? Math.max(0, ...encoded.map((ids) => ids.length));
      if (padding.multipleOf) target = Math.ceil(target / padding.multipleOf) * padding.multipleOf;
      return encoded.map((ids) => {
        const n = Math.max(0, target - ids.length);
        const pad = new Array<number>(n).fill(padding.padId);
        const ones = ids.map(() => 1);
        const zeros = pad.map(() => 0);
        return padding.direction === 'Right' ? { ids: [...ids, ...pad], mask: [...ones, ...zeros] } : { ids: [...pad, ...ids], mask: [...zeros, ...ones] };
      });
    },
    ...(rules.padding?.fixed !== undefined ? { fixedLength: rules.padding.fixed } : {}),
  };
}

/** The text length a tokenizer file fixes (Fixed padding, else truncation's max_length); undefined when it fixes none. */
export function tokenizerLength(file: string): number | undefined {
  const rules = sequenceRules(readJsonObject(file), file);
  return rules.padding?.fixed ?? (rules.padding ? rules.truncation?.maxLength : undefined);
}

/**
 * Encodes `prompts` and the empty prompt with the text encoder: [L, D] states per prompt. Every prompt must
 * tokenize to the same length (Fixed padding, or truncation with padding), as the denoiser's text input needs.
 */
export async function encodePrompts(prompts: readonly string[], pipeline: TextPipeline, options: { batch?: number } = {}): Promise<EncodedPrompts> {
  const tokenizer = loadTokenizer(pipeline.tokenizer);
  const encoded = tokenizer.encode([...prompts, '']);
  const ids = encoded.map((e) => e.ids);
  const length = ids[0]!.length;
  const ragged = ids.findIndex((row) => row.length !== length);
  if (ragged >= 0) {
    throw new ConditioningError(`${pipeline.tokenizer}: prompts tokenize to different lengths (${length} and ${ids[ragged]!.length}): the tokenizer needs "padding" with a Fixed length (or "truncation" and padding)`);
  }
  let session;
  try {
    session = await openSession(pipeline.textEncoder);
  } catch (error) {
    throw new ConditioningError(`${pipeline.textEncoder}: cannot open the text encoder: ${(error as Error).message.split('\n')[0]}`);
  }
  try {
    const idsName = session.inputNames.find((n) => n === 'input_ids') ?? session.inputNames[0]!;
    const feeds: Parameters<typeof runBatched>[1] = { [idsName]: { dtype: 'int64', dims: [ids.length, length], data: BigInt64Array.from(ids.flat(), BigInt) } };
    if (session.inputNames.includes('attention_mask')) {
      feeds.attention_mask = { dtype: 'int64', dims: [ids.length, length], data: BigInt64Array.from(encoded.flatMap((e) => e.mask), BigInt) };
    }
    const extra = session.inputNames.filter((n) => !(n in feeds));
    if (extra.length > 0) throw new ConditioningError(`${pipeline.textEncoder}: the text encoder has inputs qcompile cannot feed: ${extra.join(', ')} (it feeds input_ids and attention_mask)`);
    const outputName = session.outputNames.find((n) => n === 'last_hidden_state') ?? session.outputNames[0]!;
    const out = (await runBatched(session, feeds, options.batch ?? 64, [outputName]))[outputName]!;
    if (out.dims.length !== 3 || out.dtype !== 'float32') throw new ConditioningError(`${pipeline.textEncoder}: output '${outputName}' is ${out.dtype} [${out.dims.join(', ')}], expected float32 [B, L, D]`);
    const [, L, D] = out.dims as [number, number, number];
    const data = out.data as Float32Array;
    const rows = Array.from({ length: ids.length }, (_, i) => data.slice(i * L * D, (i + 1) * L * D));
    return { shape: [L, D], prompts: rows.slice(0, prompts.length), uncond: rows[prompts.length]! };
  } finally {
    await session.release();
  }
}

/** Prompts from a file: one a line (a trailing empty line ignored), or a TSV `prompt<TAB>class` with a header line. */
export function readPromptsFile(file: string): { prompts: string[]; classes?: number[] } {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new ConditioningError(`${file}: cannot read the prompts: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
  const lines = text.replace(/\r\n/g, '\n').split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  if (lines.length === 0) throw new ConditioningError(`${file}: no prompts`);
  if (!lines[0]!.includes('\t')) return { prompts: lines };
  const prompts: string[] = [];
  const classes: number[] = [];
  lines.slice(1).forEach((line, i) => {
    const cells = line.split('\t');
    const cls = Number(cells[1]);
    if (cells.length !== 2 || cells[1]!.trim() === '' || !Number.isInteger(cls) || cls < 0) {
      throw new ConditioningError(`${file}:${i + 2}: expected 'prompt<TAB>class' with a non-negative integer class, got ${JSON.stringify(line)}`);
    }
    prompts.push(cells[0]!);
    classes.push(cls);
  });
  if (prompts.length === 0) throw new ConditioningError(`${file}: no prompts after the header line`);
  return { prompts, classes };
}

/** Precomputed conditioning: per condition, one row per input; and the unconditional row, when `uncond.npy` is there. */
export interface PrecomputedConditioning {
  count: number;
  /** Per input name, one array per condition (the input's per-sample shape). */
  rows: Record<string, Float32Array[]>;
  uncond?: Record<string, Float32Array>;
  /** Per input, the per-sample shape every one of its arrays has (a length the model leaves open, fixed here). */
  shapes: Record<string, number[]>;
}

/**
 * Reads a folder of `.npy` files: one float32 array per condition (sorted by file name) plus `uncond.npy`;
 * with several inputs, one subfolder per input name, each with the same file names. Every array must have its
 * input's per-sample shape (a length the model leaves open is the first array's, and the same in all).
 */
export function readConditioningDir(dir: string, inputs: readonly ConditioningInput[]): PrecomputedConditioning {
  if (inputs.length === 0) throw new ConditioningError(`${dir}: the model has no conditioning inputs to read precomputed tensors for`);
  const folders = inputs.length === 1 ? [{ input: inputs[0]!, folder: dir }] : inputs.map((input) => ({ input, folder: join(dir, input.name) }));
  const result: PrecomputedConditioning = { count: 0, rows: {}, shapes: {} };
  let names: string[] | undefined;
  for (const { input, folder } of folders) {
    if (!existsSync(folder) || !statSync(folder).isDirectory()) {
      throw new ConditioningError(`${folder}: no such folder${inputs.length > 1 ? ` (with several conditioning inputs, ${dir} needs one subfolder per input: ${inputs.map((i) => i.name).join(', ')})` : ''}`);
    }
    const files = readdirSync(folder).filter((f) => f.endsWith('.npy')).sort();
    const conditions = files.filter((f) => f !== 'uncond.npy');
    if (conditions.length === 0) throw new ConditioningError(`${folder}: no .npy files (one float32 array per prompt, and uncond.npy for the empty prompt)`);
    if (names && conditions.join('\n') !== names.join('\n')) throw new ConditioningError(`${folder}: holds other file names than ${folders[0]!.folder}: every input's subfolder needs the same names`);
    names = conditions;
    const read = (name: string) => {
      const file = join(folder, name);
      const array = readNpy(file);
      if (array.dtype !== 'float32') throw new ConditioningError(`${file}: is ${array.dtype}, input '${input.name}' takes float32`);
      if (!fitsShape(array.shape, input.shape)) throw new ConditioningError(`${file}: has shape (${array.shape.join(', ')}), input '${input.name}' takes (${input.shape.map((d) => (d === ANY_LENGTH ? 'L' : d)).join(', ')}) per sample`);
      const first = (result.shapes[input.name] ??= array.shape);
      if (array.shape.join(',') !== first.join(',')) throw new ConditioningError(`${file}: has shape (${array.shape.join(', ')}), and the other arrays for input '${input.name}' have (${first.join(', ')}): they must agree`);
      return array.data;
    };
    result.rows[input.name] = conditions.map(read);
    if (files.includes('uncond.npy')) (result.uncond ??= {})[input.name] = read('uncond.npy');
    else if (result.uncond) throw new ConditioningError(`${folder}: has no uncond.npy while ${folders[0]!.folder} has one`);
  }
  result.count = names!.length;
  if (result.uncond && Object.keys(result.uncond).length !== inputs.length) throw new ConditioningError(`${folders[0]!.folder}: has no uncond.npy while other inputs' folders have one`);
  return result;
}

function sequenceRules(json: Record<string, unknown>, file: string): SequenceRules {
  const rules: SequenceRules = {};
  const truncation = json.truncation as Record<string, unknown> | null | undefined;
  if (truncation) {
    const maxLength = truncation.max_length;
    if (!Number.isInteger(maxLength) || (maxLength as number) < 1) throw new ConditioningError(`${file}: truncation.max_length must be a positive integer, got ${JSON.stringify(maxLength)}`);
    rules.truncation = { maxLength: maxLength as number, direction: truncation.direction === 'Left' ? 'Left' : 'Right' };
  }
  const padding = json.padding as Record<string, unknown> | null | undefined;
  if (padding) {
    const strategy = padding.strategy;
    const fixed = typeof strategy === 'object' && strategy !== null ? (strategy as Record<string, unknown>).Fixed : undefined;
    if (fixed !== undefined && (!Number.isInteger(fixed) || (fixed as number) < 1)) throw new ConditioningError(`${file}: padding.strategy.Fixed must be a positive integer, got ${JSON.stringify(fixed)}`);
    if (fixed === undefined && strategy !== 'BatchLongest') throw new ConditioningError(`${file}: padding.strategy must be "BatchLongest" or { "Fixed": N }, got ${JSON.stringify(strategy)}`);
    const padId = padding.pad_id ?? 0;
    if (!Number.isInteger(padId)) throw new ConditioningError(`${file}: padding.pad_id must be an integer, got ${JSON.stringify(padId)}`);
    const multipleOf = padding.pad_to_multiple_of;
    rules.padding = {
      direction: padding.direction === 'Left' ? 'Left' : 'Right',
      padId: padId as number,
      ...(fixed !== undefined ? { fixed: fixed as number } : {}),
      ...(Number.isInteger(multipleOf) && (multipleOf as number) > 0 ? { multipleOf: multipleOf as number } : {}),
    };
  }
  return rules;
}

function indexOfRun(haystack: readonly number[], needle: readonly number[]): number {
  if (needle.length === 0) return -1;
  for (let i = 0; i + needle.length <= haystack.length; i++) if (needle.every((v, j) => haystack[i + j] === v)) return i;
  return -1;
}
