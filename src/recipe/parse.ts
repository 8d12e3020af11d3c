/**
 * Reading recipes: `.qrecipe` text (lexer → parser with error recovery → visitor) or JSON (merged onto the
 * defaults, then validated against the schema). Either way the answer is diagnostics, and a recipe when
 * there are no errors — never an exception.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type * as AjvModule from 'ajv';
import { parseRecipeSyntax } from '../../grammar/qrecipe.js';
import { hasErrors, type Diagnostic } from '../diagnostics.js';
import { defaultRecipe } from './defaults.js';
import { buildRecipeSchema } from './schema.js';
import { LIMITS, validateSettings } from './settings.js';
import type { Recipe } from './types.js';
import { visitRecipe } from './visitor.js';

/** What reading a recipe gives. */
export interface ParseResult {
  recipe?: Recipe;
  diagnostics: Diagnostic[];
  /** The text read (for rendering diagnostics). */
  text: string;
}

/** Reads a recipe file (`.json` as JSON, anything else as `.qrecipe` text); spans name it `fileName` (the path as the user wrote it). */
export function parseRecipeFile(path: string, fileName = path): ParseResult {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    return { text: '', diagnostics: [{ severity: 'error', code: 'E000', message: `cannot read recipe: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`, span: { file: fileName, offset: 0, length: 0 } }] };
  }
  return path.toLowerCase().endsWith('.json') ? parseRecipeJson(text, fileName) : parseRecipe(text, fileName);
}

/** Parses `.qrecipe` text. */
export function parseRecipe(text: string, file = '<recipe>'): ParseResult {
  const tooDeep = firstTooDeep(text);
  // The parser descends once per open bracket: past the limit, say where instead of overflowing the stack.
  if (tooDeep !== undefined) return { text, diagnostics: [{ severity: 'error', code: 'E003', message: `brackets nested more than ${LIMITS.nesting.max} deep`, span: { file, offset: tooDeep, length: 1 } }] };
  const diagnostics: Diagnostic[] = [];
  const { tree, lexErrors, parseErrors } = parseRecipeSyntax(text);
  for (const e of lexErrors) {
    diagnostics.push({ severity: 'error', code: 'E001', message: `unexpected character '${text.slice(e.offset, e.offset + Math.max(1, e.length)).slice(0, 20)}'`, span: { file, offset: e.offset, length: Math.max(1, e.length) } });
  }
  for (const e of parseErrors) {
    const at = Number.isNaN(e.token.startOffset) ? text.length : e.token.startOffset;
    const found = e.token.tokenType?.name === 'EOF' || Number.isNaN(e.token.startOffset) ? 'end of file' : `'${e.token.image}'`;
    diagnostics.push({ severity: 'error', code: 'E002', message: `syntax error: ${friendlyParseMessage(e.message)}, found ${found}`, span: { file, offset: at, length: Math.max(1, e.token.image?.length ?? 1) } });
  }
  if (!tree || diagnostics.length > 0) return { diagnostics, text };
  const { recipe, locate } = visitRecipe(tree, file, diagnostics);
  diagnostics.push(...validateSettings(recipe, locate));
  return hasErrors(diagnostics) ? { diagnostics, text } : { recipe, diagnostics, text };
}

/** The offset of the first `(` or `[` that opens one more than LIMITS.nesting allows (strings and comments skipped), or undefined. */
function firstTooDeep(text: string): number | undefined {
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      for (i++; i < text.length && text[i] !== '"' && text[i] !== '\n'; i++) if (text[i] === '\\') i++;
    } else if (c === '#' || (c === '/' && text[i + 1] === '/')) {
      while (i < text.length && text[i] !== '\n') i++;
    } else if (c === '(' || c === '[') {
      if (++depth > LIMITS.nesting.max) return i;
    } else if (c === ')' || c === ']') depth = Math.max(0, depth - 1);
  }
  return undefined;
}

/** Chevrotain says `Expecting token of type --> RCurly <-- but found --> 'x' <--`; say `expected '}'`. */
function friendlyParseMessage(message: string): string {
  const names: Record<string, string> = { RCurly: "'}'", LCurly: "'{'", RParen: "')'", LParen: "'('", RBracket: "']'", LBracket: "'['", StringLiteral: 'a quoted string', Identifier: 'a name', NumberLiteral: 'a number', Recipe: "'recipe'", Comma: "','", Colon: "':'", On: "'on'" };
  const expected = [...message.matchAll(/-->\s*(\w+)\s*<--/g)].map((m) => m[1]!).filter((n) => !message.includes(`'${n}'`));
  const first = /Expecting token of type --> (\w+) <--/.exec(message)?.[1];
  if (first) return `expected ${names[first] ?? first}`;
  if (/one of these possible Token sequences/.test(message) || /Expecting: one of/.test(message)) return 'expected a statement (quantize, keep, transform, a setting or a block)';
  if (/redundant input/.test(message)) return 'unexpected input';
  return expected.length > 0 ? `expected ${expected.map((n) => names[n] ?? n).join(' or ')}` : message.split('\n')[0]!;
}

/** Parses a recipe written as JSON (any subset of the normalized object; the rest takes the defaults). */
export function parseRecipeJson(text: string, file = '<recipe.json>'): ParseResult {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    const position = /position (\d+)/.exec((error as Error).message)?.[1];
    return { text, diagnostics: [{ severity: 'error', code: 'E050', message: `invalid JSON: ${(error as Error).message}`, span: { file, offset: position ? Number(position) : 0, length: 1 } }] };
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    return { text, diagnostics: [{ severity: 'error', code: 'E051', message: 'a JSON recipe must be an object', span: { file, offset: 0, length: 1 } }] };
  }
  const recipe = mergeDefaults(defaultRecipe(''), json as Record<string, unknown>) as Recipe;
  const shape = validateShape(recipe, file, text);
  const diagnostics = hasErrors(shape) ? shape : validateSettings(recipe, (site) => ({ file, ...(keySpan(text, site.path.map(String)) ?? { offset: 0, length: 1 }) }));
  return hasErrors(diagnostics) ? { diagnostics, text } : { recipe, diagnostics, text };
}

/**
 * The schema validator, loaded and compiled on the first JSON recipe: `.qrecipe` text never needs it, and ajv
 * costs every CLI start 0.05 s to load and 0.15 s to compile the schema. ajv is CommonJS: `require` loads it synchronously.
 */
let validator: AjvModule.ValidateFunction | undefined;
function shapeValidator(): AjvModule.ValidateFunction {
  if (!validator) {
    const { Ajv } = createRequire(import.meta.url)('ajv') as typeof AjvModule;
    validator = new Ajv({ allErrors: true, strict: false }).compile(buildRecipeSchema(false));
  }
  return validator;
}

/** Shape errors of a normalized recipe (the schema without the table's bounds), as diagnostics (E051); given the JSON text, spans point at the offending key. */
function validateShape(recipe: Recipe, file: string, text?: string): Diagnostic[] {
  const validate = shapeValidator();
  if (validate(recipe)) return [];
  return (validate.errors ?? []).map((e) => {
    const extra = typeof e.params.additionalProperty === 'string' ? e.params.additionalProperty : undefined;
    const keys = [...e.instancePath.split('/').slice(1), ...(extra === undefined ? [] : [extra])];
    const found = text === undefined ? undefined : keySpan(text, keys);
    const message = `schema: ${e.instancePath || '/'} ${e.message ?? 'is invalid'}${extra === undefined ? '' : ` '${extra}'`}`;
    return { severity: 'error' as const, code: 'E051', message, span: { file, offset: found?.offset ?? 0, length: found?.length ?? 1 } };
  });
}

/**
 * Where the last of `keys` (a JSON-pointer path) is written in `text`: each object key is looked for as
 * `"key"` after the previous one. Array indices are skipped, so inside arrays this lands on the first element
 * holding the key — good enough to put a caret near the problem; defaulted fields absent from the text give none.
 */
function keySpan(text: string, keys: readonly string[]): { offset: number; length: number } | undefined {
  let from = 0;
  let span: { offset: number; length: number } | undefined;
  for (const key of keys.filter((k) => !/^\d+$/.test(k))) {
    const quoted = JSON.stringify(key.replaceAll('~1', '/').replaceAll('~0', '~'));
    const at = text.indexOf(quoted, from);
    if (at < 0) return span;
    span = { offset: at, length: quoted.length };
    from = at + quoted.length;
  }
  return span;
}

/** Objects merge key by key (unless they are different kinds of a union); arrays and scalars replace the default. */
function mergeDefaults(base: unknown, override: unknown): unknown {
  if (isPlainObject(base) && isPlainObject(override) && (!('kind' in override) || override.kind === base.kind)) {
    const out: Record<string, unknown> = { ...base };
    for (const [key, value] of Object.entries(override)) out[key] = key in base ? mergeDefaults(base[key], value) : value;
    return out;
  }
  return override === undefined ? base : override;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
