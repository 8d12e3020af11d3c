/**
 * The recipe's syntax tree: the chevrotain CST flattened into a few plain node kinds with spans, so the
 * visitor reads `name value` sequences instead of CST children.
 */
import type { CstNode, IToken } from 'chevrotain';

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

/** A term of a settings sequence. `args` is undefined when the name has no parentheses. */
export type Term =
  | { kind: 'number'; value: number; range: Range }
  | { kind: 'string'; value: string; range: Range }
  | { kind: 'list'; items: Value[]; range: Range }
  | { kind: 'call'; name: string; args?: Argument[]; range: Range };

/** The range covering everything from `first` to `last` (tokens). */
function between(first: IToken, last: IToken): Range {
  const end = (last.endOffset ?? last.startOffset) + 1;
  return { offset: first.startOffset, length: Math.max(1, end - first.startOffset) };
}

/**
 * The text range a CST node covers (recovered nodes may have none): its tracked location, else the first and
 * last real token under it, found by an explicit-stack walk (no recursion: list nesting is the user's) that allocates no token list.
 */
export function rangeOf(node: CstNode): Range | undefined {
  const location = node.location;
  // The parser tracks node offsets; nodes built by error recovery may lack them, and are walked instead.
  if (location && !Number.isNaN(location.startOffset) && location.endOffset !== undefined && !Number.isNaN(location.endOffset)) {
    return { offset: location.startOffset, length: Math.max(1, location.endOffset + 1 - location.startOffset) };
  }
  let first: IToken | undefined;
  let last: IToken | undefined;
  const stack: CstNode[] = [node];
  while (stack.length > 0) {
    const n = stack.pop()!;
    for (const key in n.children) {
      for (const child of n.children[key]!) {
        if (!('image' in child)) stack.push(child);
        else if (!Number.isNaN(child.startOffset)) {
          if (!first || child.startOffset < first.startOffset) first = child;
          if (!last || child.startOffset > last.startOffset) last = child;
        }
      }
    }
  }
  return first && last ? between(first, last) : undefined;
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

function child(node: CstNode, key: string): (CstNode | IToken)[] {
  return node.children[key] ?? [];
}

function firstToken(node: CstNode, key: string): IToken | undefined {
  return child(node, key).find((c): c is IToken => 'image' in c && !Number.isNaN(c.startOffset));
}

function firstNode(node: CstNode, key: string): CstNode | undefined {
  return child(node, key).find((c): c is CstNode => !('image' in c));
}

/** Converts a `term` CST node. */
export function termOf(node: CstNode): Term | undefined {
  const number = firstToken(node, 'NumberLiteral');
  if (number) return { kind: 'number', value: Number(number.image), range: tokenRange(number) };
  const string = firstToken(node, 'StringLiteral');
  if (string) return { kind: 'string', value: unquote(string.image), range: tokenRange(string) };
  const list = firstNode(node, 'list');
  if (list) return listOf(list);
  const call = firstNode(node, 'call');
  return call ? callOf(call) : undefined;
}

/** Converts a `call` CST node. */
export function callOf(node: CstNode): Extract<Term, { kind: 'call' }> | undefined {
  const name = firstToken(node, 'name');
  if (!name) return undefined;
  const range = rangeOf(node) ?? tokenRange(name);
  if (!firstToken(node, 'LParen')) return { kind: 'call', name: name.image, range };
  const args = child(node, 'argument')
    .filter((c): c is CstNode => !('image' in c))
    .map(argumentOf)
    .filter((a): a is Argument => a !== undefined);
  return { kind: 'call', name: name.image, args, range };
}

function argumentOf(node: CstNode): Argument | undefined {
  const key = firstToken(node, 'key');
  const left = child(node, 'left')[0];
  const right = child(node, 'right')[0];
  const leftValue = left && !('image' in left) ? valueOf(left) : undefined;
  if (!leftValue) return undefined;
  const op = firstToken(node, 'Comparison');
  const rightValue = right && !('image' in right) ? valueOf(right) : undefined;
  return {
    ...(key ? { key: key.image } : {}),
    left: leftValue,
    ...(op && rightValue ? { comparison: { op: op.image, right: rightValue } } : {}),
    range: rangeOf(node) ?? leftValue.range,
  };
}

function valueOf(node: CstNode): Value | undefined {
  const number = firstToken(node, 'NumberLiteral');
  if (number) return { kind: 'number', value: Number(number.image), range: tokenRange(number) };
  const string = firstToken(node, 'StringLiteral');
  if (string) return { kind: 'string', value: unquote(string.image), range: tokenRange(string) };
  const name = firstToken(node, 'Identifier');
  if (name) return { kind: 'name', value: name.image, range: tokenRange(name) };
  const list = firstNode(node, 'list');
  return list ? listOf(list) : undefined;
}

function listOf(node: CstNode): Extract<Term, { kind: 'list' }> {
  const items = child(node, 'value')
    .filter((c): c is CstNode => !('image' in c))
    .map(valueOf)
    .filter((v): v is Value => v !== undefined);
  return { kind: 'list', items, range: rangeOf(node) ?? { offset: 0, length: 1 } };
}

export { child, firstNode, firstToken };
