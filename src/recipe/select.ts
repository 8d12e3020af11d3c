/**
 * Selection: which rule applies to each layer. A layer takes the most specific matching rule — name or regex
 * (4) > exact role / first / last (3) > role group (2) > op type (1) > all (0) — with ties going to the rule
 * written later; a `keep` rule wins over a quantize rule of equal specificity. What a rule that selects nothing
 * means is judged by the recipe checks (check.ts).
 */
import type { Recipe, ResolvedLayerPlan, SelectableLayer, Selection, Selector } from './types.js';

/** Specificity of `selector` for `layer`, or -1 when it does not match. */
export function matchSpecificity(selector: Selector, layer: SelectableLayer, layerCount: number): number {
  switch (selector.kind) {
    case 'all':
      return 0;
    case 'op':
      return layer.opType === selector.op ? 1 : -1;
    case 'role':
      if (layer.role === selector.role) return 3;
      return layer.role.startsWith(`${selector.role}.`) ? 2 : -1;
    case 'first':
      return layer.index === 0 ? 3 : -1;
    case 'last':
      return layer.index === layerCount - 1 ? 3 : -1;
    case 'name':
      return globMatches(selector.glob, layer.name) ? 4 : -1;
    case 'regex':
      return compiledRegex(selector.pattern).test(layer.name) ? 4 : -1;
  }
}

/**
 * Whether `name` matches `glob` in full (`*` any run of characters, dots included; `?` one character). Greedy
 * with a single resume point: a later `*` supersedes an earlier one, so the work is O(glob × name) at worst —
 * never the exponential backtracking a `.*.*.*…` regular expression does on a near miss.
 */
export function globMatches(glob: string, name: string): boolean {
  let g = 0;
  let n = 0;
  let star = -1;
  let resume = 0;
  while (n < name.length) {
    if (g < glob.length && (glob[g] === '?' || glob[g] === name[n]) && glob[g] !== '*') {
      g++;
      n++;
    } else if (g < glob.length && glob[g] === '*') {
      star = g++;
      resume = n;
    } else if (star >= 0) {
      g = star + 1;
      n = ++resume;
    } else return false;
  }
  while (g < glob.length && glob[g] === '*') g++;
  return g === glob.length;
}

/** Regex selectors compiled once per pattern (a recipe's thousands of rules × layers would otherwise recompile each). */
const regexCache = new Map<string, RegExp>();
function compiledRegex(pattern: string): RegExp {
  let re = regexCache.get(pattern);
  if (!re) {
    re = new RegExp(`^(?:${pattern})$`);
    if (regexCache.size > 1024) regexCache.clear();
    regexCache.set(pattern, re);
  }
  return re;
}

/**
 * Each distinct selector's specificity for every layer, computed once: recipes repeat a few selectors over many
 * rules, and resolution asks every rule about every layer.
 */
class SpecificityTable {
  private readonly byText = new Map<string, Int32Array>();
  private readonly bySelector = new Map<Selector, Int32Array>();
  constructor(private readonly layers: readonly SelectableLayer[]) {}

  /** Specificity of selector `s` for the layer at `index`, or -1. */
  of(s: Selector, index: number): number {
    let row = this.bySelector.get(s);
    if (!row) {
      const text = JSON.stringify(s);
      row = this.byText.get(text);
      if (!row) this.byText.set(text, (row = Int32Array.from(this.layers, (layer) => matchSpecificity(s, layer, this.layers.length))));
      this.bySelector.set(s, row);
    }
    return row[index]!;
  }

  /** Best specificity of a rule (select minus except) for the layer at `index`, or -1. */
  rule(rule: { select: Selector[]; except: Selector[] }, index: number): number {
    for (const s of rule.except) if (this.of(s, index) >= 0) return -1;
    let best = -1;
    for (const s of rule.select) best = Math.max(best, this.of(s, index));
    return best;
  }
}

/** Resolves every layer's plan from the recipe's quantize and keep rules. */
export function resolveSelection(recipe: Recipe, layers: readonly SelectableLayer[]): Selection {
  const assignments = new Map<string, ResolvedLayerPlan>();
  const table = new SpecificityTable(layers);
  for (const [index, layer] of layers.entries()) {
    // The best rule so far (`>=`: later rules win ties, keep rules — scanned last — win over quantize ones).
    let bestSpecificity = -1;
    let bestIndex = -1;
    let bestIsKeep = false;
    for (let i = 0; i < recipe.rules.length; i++) {
      const specificity = table.rule(recipe.rules[i]!, index);
      if (specificity >= 0 && specificity >= bestSpecificity) [bestSpecificity, bestIndex, bestIsKeep] = [specificity, i, false];
    }
    for (let i = 0; i < recipe.keep.length; i++) {
      const specificity = table.rule(recipe.keep[i]!, index);
      if (specificity >= 0 && specificity >= bestSpecificity) [bestSpecificity, bestIndex, bestIsKeep] = [specificity, i, true];
    }
    if (bestIndex < 0) continue;
    if (bestIsKeep) {
      const rule = recipe.keep[bestIndex]!;
      assignments.set(layer.name, { action: 'keep', rule: bestIndex, ...(rule.source ? { source: rule.source } : {}) });
    } else {
      const rule = recipe.rules[bestIndex]!;
      assignments.set(layer.name, { action: 'quantize', ...(rule.weight ? { weight: rule.weight } : {}), ...(rule.input ? { input: rule.input } : {}), rule: bestIndex, ...(rule.source ? { source: rule.source } : {}) });
    }
  }
  return { assignments };
}

/** Selectors as written: `attn.qkv, op(Conv), name("blocks.*")`. */
export function describeSelectors(selectors: Selector[]): string {
  return selectors.map(describeSelector).join(', ');
}

/** One selector as written. */
export function describeSelector(s: Selector): string {
  switch (s.kind) {
    case 'all':
    case 'first':
    case 'last':
      return s.kind;
    case 'role':
      return s.role;
    case 'op':
      return `op(${s.op})`;
    case 'name':
      return `name(${JSON.stringify(s.glob)})`;
    case 'regex':
      return `regex(${JSON.stringify(s.pattern)})`;
  }
}

/** The layers a transform applies to (its selectors minus its exceptions). */
export function selectForTransform<T extends SelectableLayer>(transform: { select: Selector[]; except: Selector[] }, layers: readonly T[]): T[] {
  const table = new SpecificityTable(layers);
  return layers.filter((_, index) => table.rule(transform, index) >= 0);
}
