/**
 * The recipe's syntax tree: what the parser's actions (grammar/qrecipe.ts) build while parsing — statements of
 * a few plain kinds whose settings are `name value` term sequences, each with its span — so the visitor reads
 * the tree without a concrete syntax tree in between (the CST of a 20 000-rule recipe cost more to build, walk
 * and collect than the parse itself). Only a recipe that parsed without errors is ever read: the parts that
 * error recovery builds are thrown away with it.
 */
import type { IToken } from 'chevrotain';

/** A byte range of the recipe text. */
export interface Range {
  offset: number;
  length: number;
}

/** A literal or name inside a call's arguments or a list. */
export type Value =
  | { kind: 'number'; value: number; range: Range }
  | { kind: 'string'; value: string; range: Range }
  | { kind: 'name'; value: string; range: Range }
  | { kind: 'list'; items: Value[]; range: Range };

/** `key: left OP right`, key and comparison optional. */
export interface Argument {
  key?: string;
  left: Value;
  comparison?: { op: string; right: Value };
  range: Range;
}

/** `name` or `name(args)`. `args` is undefined when the name has no parentheses. */
export interface Call {
  kind: 'call';
  name: string;
  args?: Argument[];
  range: Range;
}

/** A term of a settings sequence. */
export type Term =
  | { kind: 'number'; value: number; range: Range }
  | { kind: 'string'; value: string; range: Range }
  | { kind: 'list'; items: Value[]; range: Range }
  | Call;

/** `weight …` or `input …` inside a quantize rule; `at` is the keyword's range. */
export interface Spec {
  kind: 'weight' | 'input';
  at: Range;
  terms: Term[];
}

/** One statement of the recipe body, spanning its text (`range`); `at` is a block's or setting's name. */
export type Statement =
  | { kind: 'quantize'; include: Call[]; exclude: Call[]; specs: Spec[]; range: Range }
  | { kind: 'keep'; include: Call[]; exclude: Call[]; range: Range }
  | { kind: 'transform'; call: Call; include: Call[]; exclude: Call[]; range: Range }
  | { kind: 'block'; name: string; at: Range; terms: Term[]; range: Range }
  | { kind: 'setting'; name: string; at: Range; value: Term; range: Range };

/** A whole recipe: `recipe "name" { statements }` (the name unquoted). */
export interface RecipeSyntax {
  name: string;
  statements: Statement[];
}

/** The range covering everything from token `first` to token `last` (tokens carry no end offset: a token ends where its image does). */
export function between(first: IToken, last: IToken): Range {
  const end = last.startOffset + last.image.length;
  return { offset: first.startOffset, length: Math.max(1, end - first.startOffset) };
}

/** A token's range. */
export function tokenRange(token: IToken): Range {
  return between(token, token);
}

/** Unquotes a string literal. */
export function unquote(image: string): string {
  try {
    return JSON.parse(image) as string;
  } catch {
    return image.slice(1, -1);
  }
}
