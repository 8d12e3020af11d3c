/**
 * One diagnostic type for every layer (lexer, parser, schema, semantic checks, passes): spans are byte offsets,
 * turned into `file:line:col` with the source line and a caret only when rendered (as esbuild does).
 */

/** How bad a diagnostic is. */
export type Severity = 'error' | 'warning' | 'note';

/** A region of a source file, in UTF-16 code-unit offsets of the text as read. */
export interface Span {
  file: string;
  offset: number;
  length: number;
}

/** A message about the input, with a stable code (`E0xx` errors, `W0xx` warnings). */
export interface Diagnostic {
  severity: Severity;
  code: string;
  message: string;
  span?: Span;
  /** Extra lines (`note: …`), e.g. where a conflicting rule was declared. */
  notes?: string[];
}

/** Line and column (both 1-based) of `offset` in `text`. */
export function lineColumn(text: string, offset: number): { line: number; column: number } {
  const starts = lineStarts(text);
  // The last line that starts at or before `offset` (binary search: rendering thousands of diagnostics of one
  // text stays linear instead of rescanning the text for each).
  let lo = 0;
  let hi = starts.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (starts[mid]! <= offset) lo = mid;
    else hi = mid - 1;
  }
  return { line: lo + 1, column: offset - starts[lo]! + 1 };
}

/** The offsets where the lines of `text` start, for the text seen last. */
let lastLineStarts: { text: string; starts: number[] } | undefined;
function lineStarts(text: string): number[] {
  if (lastLineStarts?.text !== text) {
    const starts = [0];
    for (let i = text.indexOf('\n'); i >= 0; i = text.indexOf('\n', i + 1)) starts.push(i + 1);
    lastLineStarts = { text, starts };
  }
  return lastLineStarts.starts;
}

/** Renders `file:line:col: error[E012]: message`, the source line, and a caret with `~` under the span. */
export function renderDiagnostic(diagnostic: Diagnostic, sources: ReadonlyMap<string, string> = new Map()): string {
  const head = `${diagnostic.severity}[${diagnostic.code}]: ${diagnostic.message}`;
  const lines: string[] = [];
  const span = diagnostic.span;
  const text = span ? sources.get(span.file) : undefined;
  if (span && text !== undefined) {
    const { line, column } = lineColumn(text, span.offset);
    lines.push(`${span.file}:${line}:${column}: ${head}`);
    const start = span.offset - (column - 1);
    const end = text.indexOf('\n', start);
    const source = text.slice(start, end < 0 ? undefined : end).replace(/\t/g, ' ');
    const width = Math.max(1, Math.min(span.length, source.length - column + 1));
    lines.push(`  ${source}`);
    lines.push(`  ${' '.repeat(column - 1)}^${'~'.repeat(width - 1)}`);
  } else if (span) {
    lines.push(`${span.file}: ${head}`);
  } else {
    lines.push(head);
  }
  for (const note of diagnostic.notes ?? []) lines.push(`  note: ${note}`);
  return lines.join('\n');
}

/** True when any diagnostic is an error. */
export function hasErrors(diagnostics: readonly Diagnostic[]): boolean {
  return diagnostics.some((d) => d.severity === 'error');
}

/** The closest candidate to `word` by edit distance, when it is close enough to be a likely typo. */
export function didYouMean(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of candidates) {
    const d = editDistance(word.toLowerCase(), candidate.toLowerCase());
    if (d < bestDistance) {
      bestDistance = d;
      best = candidate;
    }
  }
  return best !== undefined && bestDistance <= Math.max(1, Math.floor(word.length / 3)) ? best : undefined;
}

/** ` (did you mean 'x'?)` with `didYouMean`'s candidate, or '' when none is close: the one wording of a suggestion. */
export function didYouMeanHint(word: string, candidates: readonly string[]): string {
  const best = didYouMean(word, candidates);
  return best === undefined ? '' : ` (did you mean '${best}'?)`;
}

/** Levenshtein distance (insertions, deletions and substitutions each cost 1). */
function editDistance(a: string, b: string): number {
  const previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diagonal = previous[0]!;
    previous[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const above = previous[j]!;
      previous[j] = Math.min(above + 1, previous[j - 1]! + 1, diagonal + (a[i - 1] === b[j - 1] ? 0 : 1));
      diagonal = above;
    }
  }
  return previous[b.length]!;
}
