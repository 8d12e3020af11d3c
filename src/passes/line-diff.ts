/**
 * A unified line diff (Myers' O((N+M)·D) shortest edit script) for `--dump-dir`: each pass's text IR is
 * diffed against the previous dump so a reviewer sees what the pass changed.
 */

type Edit = { kind: 'keep' | 'delete' | 'insert'; line: string };

/** The shortest edit script turning `a` into `b`, as keep/delete/insert lines in order. */
export function diffLines(a: readonly string[], b: readonly string[]): Edit[] {
  const max = a.length + b.length;
  const offset = max + 1;
  let v = new Int32Array(2 * max + 3);
  const trace: Int32Array[] = [];
  let found = false;
  for (let d = 0; d <= max && !found; d++) {
    trace.push(v.slice());
    const next = v.slice();
    for (let k = -d; k <= d; k += 2) {
      let x = k === -d || (k !== d && v[offset + k - 1]! < v[offset + k + 1]!) ? v[offset + k + 1]! : v[offset + k - 1]! + 1;
      let y = x - k;
      while (x < a.length && y < b.length && a[x] === b[y]) {
        x++;
        y++;
      }
      next[offset + k] = x;
      if (x >= a.length && y >= b.length) {
        found = true;
        break;
      }
    }
    v = next;
  }
  // Walk the trace backwards from (N, M).
  const edits: Edit[] = [];
  let x = a.length;
  let y = b.length;
  for (let d = trace.length - 1; d >= 0; d--) {
    const before = trace[d]!;
    const k = x - y;
    const down = k === -d || (k !== d && before[offset + k - 1]! < before[offset + k + 1]!);
    const previousK = down ? k + 1 : k - 1;
    const previousX = before[offset + previousK]!;
    const previousY = previousX - previousK;
    while (x > previousX && y > previousY) {
      edits.push({ kind: 'keep', line: a[--x]! });
      y--;
    }
    if (d > 0) {
      if (down) edits.push({ kind: 'insert', line: b[--y]! });
      else edits.push({ kind: 'delete', line: a[--x]! });
    }
  }
  return edits.reverse();
}

/** A unified diff of two texts with `context` lines around each change; '' when they are equal. */
export function unifiedDiff(before: string, after: string, beforeName: string, afterName: string, context = 3): string {
  const a = splitLines(before);
  const b = splitLines(after);
  const edits = diffLines(a, b);
  if (edits.every((e) => e.kind === 'keep')) return '';
  const out = [`--- ${beforeName}`, `+++ ${afterName}`];
  // Positions in a and b before each edit.
  const positions: { ai: number; bi: number }[] = [];
  let ai = 0;
  let bi = 0;
  for (const e of edits) {
    positions.push({ ai, bi });
    if (e.kind !== 'insert') ai++;
    if (e.kind !== 'delete') bi++;
  }
  let i = 0;
  while (i < edits.length) {
    if (edits[i]!.kind === 'keep') {
      i++;
      continue;
    }
    const start = Math.max(0, i - context);
    let end = i;
    // Extend the hunk while the next change is within 2·context kept lines.
    for (;;) {
      while (end < edits.length && edits[end]!.kind !== 'keep') end++;
      let keep = end;
      while (keep < edits.length && edits[keep]!.kind === 'keep') keep++;
      if (keep < edits.length && keep - end <= 2 * context) end = keep;
      else {
        end = Math.min(edits.length, end + context);
        break;
      }
    }
    const hunk = edits.slice(start, end);
    const from = positions[start]!;
    const aCount = hunk.filter((e) => e.kind !== 'insert').length;
    const bCount = hunk.filter((e) => e.kind !== 'delete').length;
    out.push(`@@ -${rangeText(from.ai, aCount)} +${rangeText(from.bi, bCount)} @@`);
    for (const e of hunk) out.push(`${e.kind === 'keep' ? ' ' : e.kind === 'delete' ? '-' : '+'}${e.line}`);
    i = end;
  }
  return out.join('\n') + '\n';
}

function rangeText(start: number, count: number): string {
  return count === 0 ? `${start},0` : `${start + 1},${count}`;
}

function splitLines(text: string): string[] {
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  return lines;
}
