/**
 * Textual pass pipelines, `select-layers{roles=attn.qkv|mlp.fc1,bits=4,group=128},quantize-weights,cleanup`:
 * parsed against the registry (pass names and option types checked, with offsets in errors) and printed in a
 * canonical form, so that parse → print → parse gives the same pipeline.
 */
import { didYouMeanHint } from '../diagnostics.js';
import type { ArtifactKey } from './artifacts.js';
import type { OptionSpec, OptionValue, Pass, PassOptions } from './pass.js';

/** One pipeline step: a registered pass and the options written for it (defaults not filled in). */
export interface PipelineEntry {
  pass: Pass;
  options: PassOptions;
}

/** A malformed pipeline text: `offset` is the character where the problem is. */
export class PipelineError extends Error {
  constructor(
    message: string,
    readonly offset: number,
  ) {
    super(message);
    this.name = 'PipelineError';
  }
}

const NAME = /^[a-z][a-z0-9-]*$/;
const VALUE_CHARS = /^[^,{}=|\s]+$/;

/** What the caller of a pipeline supplies besides the passes. */
export interface PipelineEnvironment {
  /** Artifacts the caller puts in the context before the first pass (calibration batches, a sample probe). */
  provided?: readonly ArtifactKey<unknown>[];
}

/**
 * Parses pipeline text against `registry`. Whitespace around names, keys and values is ignored. A step that
 * requires an artifact which neither an earlier step produces nor the caller provides is rejected at its offset.
 */
export function parsePipeline(text: string, registry: readonly Pass[], environment: PipelineEnvironment = {}): PipelineEntry[] {
  const entries: PipelineEntry[] = [];
  const available = new Set<ArtifactKey<unknown>>(environment.provided);
  let position = 0;
  const skipSpace = () => {
    while (position < text.length && /\s/.test(text[position]!)) position++;
  };
  const readWhile = (stop: string) => {
    skipSpace();
    const start = position;
    while (position < text.length && !stop.includes(text[position]!)) position++;
    return { word: text.slice(start, position).trimEnd(), start };
  };
  skipSpace();
  if (position === text.length) return entries;
  for (;;) {
    const { word: name, start } = readWhile(',{');
    if (!NAME.test(name)) throw new PipelineError(name === '' ? 'expected a pass name' : `'${name}' is not a pass name (kebab-case)`, start);
    const pass = registry.find((p) => p.name === name);
    if (!pass) throw new PipelineError(`unknown pass '${name}'${didYouMeanHint(name, registry.map((p) => p.name))}`, start);
    const missing = pass.requires.filter((key) => !available.has(key));
    if (missing.length > 0) throw new PipelineError(`pass '${name}' requires ${missing.map((k) => `'${k.name}' (from ${k.producer})`).join(', ')}, which no earlier step produces`, start);
    for (const key of pass.produces) available.add(key);
    const options: PassOptions = {};
    if (text[position] === '{') {
      position++;
      for (;;) {
        const { word: key, start: keyStart } = readWhile('=,}');
        if (text[position] !== '=') throw new PipelineError(`expected 'key=value' in the options of '${name}'`, keyStart);
        const spec = pass.options[key];
        if (!spec) throw new PipelineError(`pass '${name}' has no option '${key}'${didYouMeanHint(key, Object.keys(pass.options))}`, keyStart);
        if (key in options) throw new PipelineError(`option '${key}' of '${name}' is given twice`, keyStart);
        position++;
        const { word: raw, start: valueStart } = readWhile(',}');
        options[key] = parseValue(raw, spec, `${name}.${key}`, valueStart);
        if (text[position] === ',') {
          position++;
          continue;
        }
        if (text[position] !== '}') throw new PipelineError(`unclosed '{' in the options of '${name}'`, position);
        position++;
        break;
      }
    }
    entries.push({ pass, options });
    skipSpace();
    if (position === text.length) return entries;
    if (text[position] !== ',') throw new PipelineError(`expected ',' between passes`, position);
    position++;
  }
}

function parseValue(raw: string, spec: OptionSpec, what: string, offset: number): OptionValue {
  const fail = (expected: string) => new PipelineError(`option ${what} expects ${expected}, got '${raw}'`, offset);
  if (spec.type === 'string-list') {
    const items = raw.split('|').map((s) => s.trim());
    if (items.some((s) => !VALUE_CHARS.test(s))) throw fail("values separated by '|'");
    return items;
  }
  if (!VALUE_CHARS.test(raw)) throw fail('a value');
  switch (spec.type) {
    case 'int':
      if (!/^-?\d+$/.test(raw)) throw fail('an integer');
      return Number(raw);
    case 'number':
      if (!Number.isFinite(Number(raw))) throw fail('a number');
      return Number(raw);
    case 'boolean':
      if (raw !== 'true' && raw !== 'false') throw fail("'true' or 'false'");
      return raw === 'true';
    case 'string':
      if (spec.choices && !spec.choices.includes(raw)) throw fail(`one of ${spec.choices.join('|')}`);
      return raw;
  }
}

/** Prints a pipeline canonically: options in key order, lists joined by '|'. */
export function printPipeline(entries: readonly PipelineEntry[]): string {
  return entries.map(printEntry).join(',');
}

/** Prints one step, `name{key=value,…}`. */
export function printEntry(entry: PipelineEntry): string {
  const keys = Object.keys(entry.options).sort();
  if (keys.length === 0) return entry.pass.name;
  return `${entry.pass.name}{${keys.map((k) => `${k}=${formatValue(entry.options[k]!)}`).join(',')}}`;
}

function formatValue(value: OptionValue): string {
  return Array.isArray(value) ? value.join('|') : String(value);
}

/** The options a pass runs with: those written, the declared defaults for the rest. */
export function withDefaults(pass: Pass, options: PassOptions): PassOptions {
  const out: PassOptions = {};
  for (const [key, spec] of Object.entries(pass.options)) {
    const value = options[key] ?? spec.default;
    if (value !== undefined) out[key] = value;
  }
  return out;
}
