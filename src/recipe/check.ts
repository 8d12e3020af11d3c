/**
 * Semantic checks of a parsed recipe, alone and against a model's layers: what the target cannot run (asked
 * of the target's backend, `checkPlan`: the one source of what a target executes), group weights a k×k Conv
 * stores per output channel, settings that contradict each other, and what each rule covers (a quantize rule that
 * selects nothing is an error). Diagnostics only.
 */
import { backends } from '../backends/registry.js';
import { issueDiagnostics, listLayers, type LowerOptions } from '../backends/backend.js';
import type { Diagnostic } from '../diagnostics.js';
import type { Layer } from '../quant/layers.js';
import type { QuantPlan } from '../quant/plan.js';
import { isKeepName } from '../passes/convert-float16.js';
import { groupsStoredPerChannel } from '../passes/weight-storage.js';
import { planRecipe, scheduleSteps } from './plan.js';
import { describeSelector, describeSelectors, matchSpecificity, resolveSelection } from './select.js';
import type { QuantizeRule, Recipe, Selection, Selector, SourceRef } from './types.js';

/** A diagnostic at `source` (when known). */
function at(severity: Diagnostic['severity'], code: string, message: string, source: SourceRef | undefined, notes?: string[]): Diagnostic {
  return { severity, code, message, ...(source ? { span: source } : {}), ...(notes ? { notes } : {}) };
}


/**
 * Why the target refuses `rule` on every op type it runs at all, or undefined: the rule asked of the backend's
 * `checkPlan` as if it selected one layer of each such op (without a model, nothing narrower is known).
 */
function refusedEverywhere(target: Recipe['target'], rule: QuantizeRule, options: LowerOptions): string | undefined {
  // Recipes repeat a few specs over many rules: ask once per distinct spec.
  const key = JSON.stringify([target, options, rule.weight, rule.input]);
  if (!refusals.has(key)) {
    if (refusals.size > 4096) refusals.clear();
    refusals.set(key, askBackend(target, rule, options));
  }
  return refusals.get(key);
}
const refusals = new Map<string, string | undefined>();

function askBackend(target: Recipe['target'], rule: QuantizeRule, options: LowerOptions): string | undefined {
  const backend = backends[target];
  const ops = [...new Set([...backend.capabilities.weights, ...backend.capabilities.activations].flatMap((c) => c.ops))];
  // checkPlan reads a layer's name and op type only; a probe layer per op stands in for the model's.
  const probes = ops.map((op) => ({ name: `<${op}>`, opType: op }) as Layer);
  const problems = probes.map((probe) => {
    const plan: QuantPlan = new Map([[probe.name, { layer: probe.name, ...(rule.weight ? { weight: rule.weight } : {}), ...(rule.input ? { input: rule.input } : {}) }]]);
    return backend.checkPlan(plan, [probe], options)[0]?.message;
  });
  return problems.every((p) => p !== undefined) ? problems[0] : undefined;
}

/** How the target is checked. */
export interface CheckOptions {
  /** The lowering options the compile will use (`--allow-requantize`). */
  lowering?: LowerOptions;
  /** The target to check for, when not the recipe's (compile `--target`). */
  target?: Recipe['target'];
  /** True when the caller judges target refusals itself (compile `--allow-fallback`: they become float layers). */
  targetCheckedByCaller?: boolean;
  /** True when `checkRecipeAgainstModel` follows: it judges the target on the selected layers, so `checkRecipe` leaves that to it. */
  modelFollows?: boolean;
  /** `--allow-empty`: a quantize rule that selects no layer is a warning (W001), not E045, and a recipe that quantizes nothing is no E046. */
  allowEmpty?: boolean;
}

/** Checks that need no model. */
export function checkRecipe(recipe: Recipe, options: CheckOptions = {}): Diagnostic[] {
  const out: Diagnostic[] = [];
  const target = options.target ?? recipe.target;
  const compute = backends[target].capabilities.compute;
  if (!compute.includes(recipe.precision)) out.push(at('error', 'E040', `target ${target} does not compute in ${recipe.precision} (its compute types: ${compute.join(', ')})`, recipe.float16.source));
  // JSON recipes reach here unchecked; the text front end has reported (and dropped) unknown names already.
  for (const name of recipe.float16.keep) if (!isKeepName(name)) out.push(at('error', 'E015', `unknown op type or region '${name}' in the float16 keep list`, recipe.float16.source));
  const T = scheduleSteps(recipe);
  for (const rule of recipe.rules) {
    const refused = options.targetCheckedByCaller || options.modelFollows ? undefined : refusedEverywhere(target, rule, options.lowering ?? {});
    if (refused) out.push(at('error', 'E040', `target ${target}: ${refused}`, rule.source));
    const mode = rule.input?.mode;
    if (mode?.kind === 'per-timestep' && mode.groups > T) out.push(at('error', 'E014', `per-timestep(groups: ${mode.groups}) has more groups than the schedule's ${T} timesteps`, rule.source));
    if (mode?.kind === 'dynamic' && mode.groupSize === 'weight' && rule.weight?.granularity.kind !== 'group' && rule.weight?.granularity.kind !== 'auto') {
      out.push(at('error', 'E033', `per-token-group(size: weight) takes the weight's group size, but this rule's weight is ${rule.weight ? rule.weight.granularity.kind : 'not quantized'}: give the weight \`group N\` or \`group auto(…)\`, or the activation a size`, rule.source));
    }
    if (mode?.kind === 'dynamic' && mode.granularity === 'per-token-group' && rule.weight?.granularity.kind === 'per-tensor') {
      out.push(at('warning', 'W003', 'per-token-group activations with a per-tensor weight: the groups buy little', rule.source));
    }
  }
  const { schedule, sampler, prediction } = recipe.diffusion;
  const written = schedule.kind !== 'sidecar' && schedule.kind !== 'config';
  if (written && sampler.kind !== 'flow-euler' && sampler.steps > T) out.push(at('error', 'E014', `the sampler's ${sampler.steps} steps exceed the schedule's ${T} timesteps`, undefined));
  // A flow schedule takes the flow sampler and a velocity prediction; a beta schedule the others.
  if (written && (schedule.kind === 'flow') !== (sampler.kind === 'flow-euler')) out.push(at('error', 'E014', `sampler ${sampler.kind} does not run on a ${schedule.kind} schedule: ${schedule.kind === 'flow' ? 'use flow-euler' : 'flow-euler needs schedule flow(…)'}`, undefined));
  if (written && prediction !== 'model' && (schedule.kind === 'flow') !== (prediction === 'flow')) out.push(at('error', 'E014', `prediction ${prediction} does not go with a ${schedule.kind} schedule: ${schedule.kind === 'flow' ? "a flow model predicts 'flow' (the velocity)" : "'flow' needs schedule flow(…)"}`, undefined));
  return out;
}

/** Checks against a model's layers; returns the selection too (for `check --model`'s table). */
export function checkRecipeAgainstModel(recipe: Recipe, layers: readonly Layer[], options: CheckOptions = {}): { diagnostics: Diagnostic[]; selection: Selection } {
  const selection = resolveSelection(recipe, layers);
  const diagnostics = coverageDiagnostics(recipe, layers, selection, options.allowEmpty === true);
  /** Per quantize rule: the k×k Convs whose `group` weights are stored per output channel. */
  const perChannelConvs = new Map<number, string[]>();
  for (const layer of layers) {
    const plan = selection.assignments.get(layer.name);
    if (plan?.action !== 'quantize') continue;
    if (layer.opType === 'Gather' && plan.input) {
      diagnostics.push(at('error', 'E044', `layer '${layer.name}' is an embedding lookup: its input is an index, which cannot be quantized`, plan.source));
    }
    // Token groups and weight groups alike need not divide the channels: the last group is then partial (a
    // target that needs whole groups refuses it in its checkPlan).
    const g = plan.weight?.granularity;
    if (g?.kind === 'group' && groupsStoredPerChannel(layer.opType, layer.weightShape)) perChannelConvs.set(plan.rule, [...(perChannelConvs.get(plan.rule) ?? []), layer.name]);
  }
  for (const [rule, names] of perChannelConvs) {
    diagnostics.push(at('warning', 'W005', `group weights on ${names.length} Conv layer(s) with a kernel larger than 1×1 are stored per output channel (${listLayers(names)})`, recipe.rules[rule]!.source, ['groups along the input channels of a k×k kernel are not one axis of the stored weight; say `per-channel` for them (e.g. a rule on `op(Conv)`)']));
  }
  if (!options.targetCheckedByCaller) diagnostics.push(...targetDiagnostics(recipe, options.target ?? recipe.target, layers, selection, options.lowering ?? {}));
  return { diagnostics, selection };
}

/**
 * What each rule covers of this model, said loudly: a quantize rule that selects no layer at all is an error
 * (E045, listing the roles the model has; a warning under `allowEmpty`), a selector of a quantize rule that
 * matches nothing while the rule selects other layers is W004 (e.g. `adaln` on a UNet), a rule that more
 * specific rules leave without layers, a keep rule or a transform that matches nothing, W001; and a recipe
 * that quantizes no layer of the model at all, E046 (unless `allowEmpty`).
 */
function coverageDiagnostics(recipe: Recipe, layers: readonly Layer[], selection: Selection, allowEmpty: boolean): Diagnostic[] {
  const out: Diagnostic[] = [];
  const applied = new Set<string>();
  for (const plan of selection.assignments.values()) applied.add(`${plan.action}${plan.rule}`);
  // Each distinct selector is matched against the layers once (recipes repeat a few selectors over many rules).
  const matched = new Map<string, boolean[]>();
  const matchesOf = (s: Selector): boolean[] => {
    const key = JSON.stringify(s);
    let row = matched.get(key);
    if (!row) matched.set(key, (row = layers.map((layer) => matchSpecificity(s, layer, layers.length) >= 0)));
    return row;
  };
  const selectsAny = (rule: { select: Selector[]; except: Selector[] }): boolean => {
    // Each selector's row looked up once per rule, not once per layer.
    const select = rule.select.map(matchesOf);
    const except = rule.except.map(matchesOf);
    return layers.some((_, i) => select.some((row) => row[i]) && !except.some((row) => row[i]));
  };
  recipe.rules.forEach((rule, i) => {
    const name = `quantize rule '${describeSelectors(rule.select)}'`;
    if (!selectsAny(rule)) {
      const notes = [modelRoles(layers), ...(allowEmpty ? [] : ['pass --allow-empty to compile anyway'])];
      out.push(at(allowEmpty ? 'warning' : 'error', allowEmpty ? 'W001' : 'E045', `${name} selects no layer of this model`, rule.source, notes));
      return;
    }
    if (!applied.has(`quantize${i}`)) out.push(at('warning', 'W001', `${name} applies to no layer (more specific rules take all its layers)`, rule.source));
    for (const s of rule.select) {
      if (!matchesOf(s).includes(true)) out.push(at('warning', 'W004', `selector '${describeSelector(s)}' of ${name} matches no layer of this model`, rule.source, [modelRoles(layers)]));
    }
  });
  recipe.keep.forEach((rule, i) => {
    const name = `keep rule '${describeSelectors(rule.select)}'`;
    if (!selectsAny(rule)) out.push(at('warning', 'W001', `${name} matches no layer of this model`, rule.source));
    else if (!applied.has(`keep${i}`)) out.push(at('warning', 'W001', `${name} applies to no layer (more specific rules take all its layers)`, rule.source));
  });
  for (const transform of recipe.transforms) {
    if (!selectsAny(transform)) out.push(at('warning', 'W001', `transform ${transform.kind} on '${describeSelectors(transform.select)}' matches no layer of this model`, transform.source));
  }
  const quantizes = [...selection.assignments.values()].some((plan) => plan.action === 'quantize' && (plan.weight || plan.input));
  if (!quantizes && !allowEmpty) out.push(emptyCompile('no rule of the recipe quantizes a layer of this model'));
  return out;
}

/** E046: a compile that quantizes no layer (predicted from a recipe's selection, or seen after a `--passes` run) writes nothing. */
export function emptyCompile(why: string): Diagnostic {
  return at('error', 'E046', `this compile quantizes no layer (${why}); nothing written`, undefined, ['pass --allow-empty to write the unquantized model anyway']);
}

/** The roles of `layers` with their layer counts, sorted by role (what E045 lists and `check --model` shows per rule). */
export function countRoles(layers: readonly Layer[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const role of layers.map((l) => l.role).sort()) counts[role] = (counts[role] ?? 0) + 1;
  return counts;
}

/** `this model's layers by role: attn.out 6, attn.qkv 6, …`, the note of a selection that finds nothing. */
function modelRoles(layers: readonly Layer[]): string {
  const roles = Object.entries(countRoles(layers)).map(([role, n]) => `${role} ${n}`);
  return `this model's layers by role: ${roles.length > 0 ? roles.join(', ') : 'none (no weighted layer)'}`;
}

/**
 * What the target cannot run on these very layers: one diagnostic per rule, with a note per problem listing its
 * layers — the backends' own grouping, as the lowering reports it.
 */
function targetDiagnostics(recipe: Recipe, target: Recipe['target'], layers: readonly Layer[], selection: Selection, options: LowerOptions): Diagnostic[] {
  const { plan } = planRecipe(recipe, layers, selection, '');
  const issues = backends[target].checkPlan(plan, layers, options).flatMap((issue) => {
    const assigned = selection.assignments.get(issue.layer);
    if (assigned?.action !== 'quantize') return [];
    return [{ ...issue, ...(assigned.source ? { span: assigned.source } : {}) }];
  });
  return issueDiagnostics(target, issues, 'refused');
}
