/**
 * Selection: which rule applies to each layer. A layer takes the most specific matching rule — name or regex
 * (4) > exact role / first / last (3) > role group (2) > op type (1) > all (0) — with ties going to the rule
 * written later; a `keep` rule wins over a quantize rule of equal specificity. A rule that selects nothing is a
 * warning (W001) naming it.
 */
import type { Diagnostic } from '../diagnostics.js';
import type { Recipe, ResolvedLayerPlan, SelectableLayer, Selection, Selector, SourceRef } from './types.js';

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
      return globToRegExp(selector.glob).test(layer.name) ? 4 : -1;
    case 'regex':
      return new RegExp(`^(?:${selector.pattern})$`).test(layer.name) ? 4 : -1;
  }
}

/** `*` matches within a name segment run, `**`/`*` both cross dots here: layer names are short. */
function globToRegExp(glob: string): RegExp {
  const escaped = glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${escaped}$`);
}

/** Best specificity of a rule (select minus except) for a layer, or -1. */
function ruleSpecificity(rule: { select: Selector[]; except: Selector[] }, layer: SelectableLayer, count: number): number {
  if (rule.except.some((s) => matchSpecificity(s, layer, count) >= 0)) return -1;
  return Math.max(-1, ...rule.select.map((s) => matchSpecificity(s, layer, count)));
}

/** Resolves every layer's plan from the recipe's quantize and keep rules. */
export function resolveSelection(recipe: Recipe, layers: readonly SelectableLayer[]): Selection {
  const assignments = new Map<string, ResolvedLayerPlan>();
  const used = new Set<string>();
  const count = layers.length;
  for (const layer of layers) {
    let best: { specificity: number; plan: ResolvedLayerPlan; key: string } | undefined;
    recipe.rules.forEach((rule, i) => {
      const specificity = ruleSpecificity(rule, layer, count);
      if (specificity >= 0 && (!best || specificity >= best.specificity)) {
        best = { specificity, key: `rule${i}`, plan: { action: 'quantize', ...(rule.weight ? { weight: rule.weight } : {}), ...(rule.input ? { input: rule.input } : {}), rule: i, ...(rule.source ? { source: rule.source } : {}) } };
      }
    });
    recipe.keep.forEach((rule, i) => {
      const specificity = ruleSpecificity(rule, layer, count);
      if (specificity >= 0 && (!best || specificity >= best.specificity)) best = { specificity, key: `keep${i}`, plan: { action: 'keep', rule: i, ...(rule.source ? { source: rule.source } : {}) } };
    });
    if (best) {
      assignments.set(layer.name, best.plan);
      used.add(best.key);
    }
  }
  const diagnostics: Diagnostic[] = [];
  const warnUnused = (what: string, key: string, rule: { source?: SourceRef; select: Selector[] }) => {
    if (used.has(key)) return;
    const matchesAny = layers.some((l) => ruleSpecificity({ select: rule.select, except: [] }, l, count) >= 0);
    diagnostics.push({
      severity: 'warning',
      code: 'W001',
      message: `${what} '${describeSelectors(rule.select)}' ${matchesAny ? 'applies to no layer (more specific rules take all its layers)' : 'matches no layer of this model'}`,
      ...(rule.source ? { span: rule.source } : {}),
    });
  };
  recipe.rules.forEach((rule, i) => warnUnused('quantize rule', `rule${i}`, rule));
  recipe.keep.forEach((rule, i) => warnUnused('keep rule', `keep${i}`, rule));
  return { assignments, diagnostics };
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
  return layers.filter((l) => ruleSpecificity(transform, l, layers.length) >= 0);
}
