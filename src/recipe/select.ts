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
 * Each distinct selector's specificity for every layer, and each distinct rule's (its selectors minus its
 * exceptions), computed once: recipes repeat a few selector lists over many rules, and resolution asks every
 * rule about every layer.
 */
class SpecificityTable {
  private readonly bySelector = new Map<string, Int32Array>();
  private readonly byRule = new Map<string, Int32Array>();
  constructor(private readonly layers: readonly SelectableLayer[]) {}

  private selectorRow(s: Selector): Int32Array {
    const text = JSON.stringify(s);
    let row = this.bySelector.get(text);
    if (!row) this.bySelector.set(text, (row = Int32Array.from(this.layers, (layer) => matchSpecificity(s, layer, this.layers.length))));
    return row;
  }

  /** Best specificity of a rule (select minus except) for each layer, -1 where it does not apply; `key` is ruleKey(rule). */
  rule(rule: { select: Selector[]; except: Selector[] }, key = ruleKey(rule)): Int32Array {
    let row = this.byRule.get(key);
    if (!row) {
      row = new Int32Array(this.layers.length).fill(-1);
      for (const s of rule.select) {
        const specificity = this.selectorRow(s);
        for (let i = 0; i < row.length; i++) row[i] = Math.max(row[i]!, specificity[i]!);
      }
      for (const s of rule.except) {
        const excluded = this.selectorRow(s);
        for (let i = 0; i < row.length; i++) if (excluded[i]! >= 0) row[i] = -1;
      }
      this.byRule.set(key, row);
    }
    return row;
  }
}

/** Rules with the same key select the same layers with the same specificity. */
function ruleKey(rule: { select: Selector[]; except: Selector[] }): string {
  return JSON.stringify([rule.select, rule.except]);
}

/** The rules of one kind that share a key: their specificity row and the last one's index (later rules win ties). */
interface RuleGroup {
  row: Int32Array;
  last: number;
}

function groupRules(table: SpecificityTable, rules: readonly { select: Selector[]; except: Selector[] }[]): RuleGroup[] {
  const groups = new Map<string, RuleGroup>();
  rules.forEach((rule, i) => {
    const key = ruleKey(rule);
    const group = groups.get(key);
    if (group) group.last = i;
    else groups.set(key, { row: table.rule(rule, key), last: i });
  });
  return [...groups.values()];
}

/** Resolves every layer's plan from the recipe's quantize and keep rules. */
export function resolveSelection(recipe: Recipe, layers: readonly SelectableLayer[]): Selection {
  const assignments = new Map<string, ResolvedLayerPlan>();
  const table = new SpecificityTable(layers);
  const quantize = groupRules(table, recipe.rules);
  const keep = groupRules(table, recipe.keep);
  for (const [index, layer] of layers.entries()) {
    // The most specific rule, the later on a tie; a keep rule wins over quantize rules of its specificity.
    let bestSpecificity = -1;
    let bestIndex = -1;
    let bestIsKeep = false;
    for (const { row, last } of quantize) {
      const specificity = row[index]!;
      if (specificity > bestSpecificity || (specificity === bestSpecificity && specificity >= 0 && last > bestIndex)) [bestSpecificity, bestIndex] = [specificity, last];
    }
    for (const { row, last } of keep) {
      const specificity = row[index]!;
      if (specificity >= 0 && (specificity > bestSpecificity || (specificity === bestSpecificity && (!bestIsKeep || last > bestIndex)))) [bestSpecificity, bestIndex, bestIsKeep] = [specificity, last, true];
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
  const row = new SpecificityTable(layers).rule(transform);
  return layers.filter((_, index) => row[index]! >= 0);
}
