/**
 * The one table of recipe settings: every numeric or enumerated value a user writes — its type, bounds,
 * default and a doc line. The visitor reads values through it, `defaultRecipe` fills from it, the JSON Schema
 * takes its bounds from it, `validateSettings` checks text and JSON recipes alike against it, and the settings
 * table of docs/recipes.md is generated from it (`settingsMarkdown`, a test compares). Sizes a user controls
 * all have an upper bound, so that no recipe that passes `check` can exhaust memory or time in the compile.
 */
import type { Diagnostic } from '../diagnostics.js';
import type { Recipe, Selector, SourceRef } from './types.js';

/** A numeric setting. */
export interface NumberSetting {
  kind: 'int' | 'number';
  /** How it is written: `calibrate { samples N }`, `sampler ddim(steps: N)`. */
  written: string;
  min: number;
  max: number;
  /** True when the bound itself is excluded. */
  minExclusive?: boolean;
  maxExclusive?: boolean;
  /** Absent: the value must be written (a `group N` size). */
  default?: number;
  doc: string;
  /** Why the bounds are what they are, where it is not obvious. */
  reason?: string;
  /** The diagnostic code of a value out of bounds (E014 unless given). */
  code?: string;
}

/** A setting that takes one of a few words. */
export interface EnumSetting {
  kind: 'enum';
  written: string;
  values: readonly string[];
  default: string;
  doc: string;
}

/** One row of the table. */
export type Setting = NumberSetting | EnumSetting;

const SIZE = 65_536;
const STEPS = 10_000;
const SEARCH = 10_000;

/** Every setting, by a dotted id (`block.setting` or `call.argument`). */
export const SETTINGS = {
  target: { kind: 'enum', written: 'target NAME', values: ['cpu', 'webgpu', 'cuda', 'tensorrt'], default: 'cpu', doc: 'runtime the output is lowered for' },
  precision: { kind: 'enum', written: 'precision NAME', values: ['fp32', 'fp16'], default: 'fp32', doc: 'precision of what stays unquantized' },
  seed: { kind: 'int', written: 'seed N', min: 0, max: 2 ** 31 - 1, default: 0, doc: 'seed of every random choice (added to `--seed`)' },
  'diffusion.prediction': { kind: 'enum', written: 'diffusion { prediction NAME }', values: ['model', 'epsilon', 'v', 'flow', 'sample'], default: 'model', doc: 'what the model predicts: as its sidecar or scheduler config says (`model`; epsilon when neither says), the noise, v, the flow velocity (noise − x0) or x0' },
  'diffusion.guidance': { kind: 'number', written: 'diffusion { guidance G }', min: 0, max: 100, default: 0, doc: 'classifier-free guidance scale of calibration and the probe (1 = none; 0, the default: the sidecar\'s recommended scale when it has one, else none)' },
  'diffusion.classes': { kind: 'int', written: 'diffusion { classes N }', min: 0, max: SIZE, default: 0, doc: 'class count of a class-conditional model (0 = read it from the label embedding)' },
  'diffusion.resolution': { kind: 'int', written: 'diffusion { resolution N | HxW }', min: 0, max: SIZE, default: 0, doc: "latent input height and width, for models whose H/W are dynamic (0 = the model's)" },
  'diffusion.timestep-scale': { kind: 'number', written: 'diffusion { timestep-scale X }', min: 0, minExclusive: true, max: 1e6, default: 1, doc: 'the model is fed scheduler timestep × X (Flux-style models: 0.001)' },
  'schedule.steps': { kind: 'int', written: 'schedule linear|scaled-linear|cosine|flow(steps: T)', min: 1, max: STEPS, default: 1000, doc: 'training timesteps T of the schedule' },
  'schedule.start': { kind: 'number', written: 'schedule linear|scaled-linear(start: B)', min: 0, minExclusive: true, max: 1, maxExclusive: true, default: 1e-4, doc: 'β at t = 0', reason: 'a β of 0 never adds noise, 1 destroys the signal' },
  'schedule.end': { kind: 'number', written: 'schedule linear|scaled-linear(end: B)', min: 0, minExclusive: true, max: 1, maxExclusive: true, default: 0.02, doc: 'β at t = T − 1' },
  'schedule.shift': { kind: 'number', written: 'schedule flow(shift: S)', min: 0, minExclusive: true, max: 1000, default: 1, doc: "flow σ shift, σ' = S·σ/(1 + (S − 1)·σ) (SD3: 3)" },
  'ddim.steps': { kind: 'int', written: 'sampler ddim(steps: N)', min: 1, max: STEPS, default: 50, doc: 'DDIM sampling steps' },
  'ddim.eta': { kind: 'number', written: 'sampler ddim(eta: η)', min: 0, max: 1, default: 0, doc: 'DDIM stochasticity (0 deterministic, 1 DDPM-like)' },
  'ddpm.steps': { kind: 'int', written: 'sampler ddpm(steps: N)', min: 1, max: STEPS, default: 1000, doc: 'DDPM sampling steps' },
  'euler.steps': { kind: 'int', written: 'sampler euler(steps: N)', min: 1, max: STEPS, default: 50, doc: 'Euler (discrete, diffusers EulerDiscreteScheduler) sampling steps' },
  'flow-euler.steps': { kind: 'int', written: 'sampler flow-euler(steps: N)', min: 1, max: STEPS, default: 28, doc: 'flow-matching Euler sampling steps' },
  'calibrate.samples': { kind: 'int', written: 'calibrate { samples N }', min: 1, max: SIZE, default: 256, doc: 'calibration (x_t, t, y) triples', reason: 'all samples are held in memory' },
  'calibrate.batch': { kind: 'int', written: 'calibrate { batch N }', min: 1, max: 4096, default: 32, doc: 'trajectories sampled together / samples per calibration batch' },
  'calibrate.ema': { kind: 'number', written: 'calibrate { ema M }', min: 0, max: 1, maxExclusive: true, default: 0, doc: 'momentum of an EMA over batches (0 = plain running statistics)' },
  'evenly-spaced.count': { kind: 'int', written: 'timesteps evenly-spaced(count: K)', min: 1, max: STEPS, default: 20, doc: 'timesteps taken evenly from the trajectory' },
  'ndtc.mean': { kind: 'number', written: 'timesteps ndtc(mean: μ)', min: 0, max: 1, default: 0.5, doc: 'NDTC mean, a fraction of T' },
  'ndtc.std': { kind: 'number', written: 'timesteps ndtc(std: σ)', min: 0, minExclusive: true, max: 10, default: 0.35, doc: 'NDTC standard deviation, a fraction of T' },
  'percentile.p': { kind: 'number', written: 'range percentile(p: P)', min: 0, minExclusive: true, max: 100, default: 99.99, doc: 'percentile of |x| taken as the range' },
  'lp.p': { kind: 'number', written: 'range lp(p: P)', min: 0, minExclusive: true, max: 100, default: 2.4, doc: 'exponent of the L_p range search' },
  'lp.grid': { kind: 'int', written: 'range lp|mse(grid: N)', min: 1, max: SEARCH, default: 100, doc: 'candidate ranges searched (shrink 1 − 0.01·i)' },
  'search.method': { kind: 'enum', written: 'search { method NAME }', values: ['evolution', 'greedy'], default: 'evolution', doc: 'group-size search method' },
  'search.population': { kind: 'int', written: 'search { population N }', min: 2, max: SEARCH, default: 50, doc: 'candidates per generation' },
  'search.top': { kind: 'int', written: 'search { top K }', min: 1, max: SEARCH, default: 10, doc: 'candidates kept per generation' },
  'search.mutations': { kind: 'int', written: 'search { mutations N }', min: 0, max: SEARCH, default: 25, doc: 'mutated children per generation' },
  'search.crossovers': { kind: 'int', written: 'search { crossovers N }', min: 0, max: SEARCH, default: 25, doc: 'crossed children per generation' },
  'search.mutation-rate': { kind: 'number', written: 'search { mutation-rate R }', min: 0, max: 1, default: 0.1, doc: 'per-layer mutation probability' },
  'search.epochs': { kind: 'int', written: 'search { epochs N }', min: 0, max: SEARCH, default: 10, doc: 'generations' },
  'search.fitness': { kind: 'enum', written: 'search { fitness NAME }', values: ['eps-error', 'layer-error'], default: 'eps-error', doc: 'what a candidate is judged by' },
  'search.judge': { kind: 'enum', written: 'search { judge NAME }', values: ['images', 'held-out'], default: 'images', doc: 'how the finalists and the uniform allocations are judged again after the search: by the images each samples (judge-samples, DDIM 20 steps), or by the eps error on held-out calibration samples (no sampling: for models where sampling every finalist costs too much)' },
  'search.judge-samples': { kind: 'int', written: 'search { judge-samples N }', min: 1, max: SIZE, default: 64, doc: 'images each judged allocation samples (judge images)' },
  'weight.bits': { kind: 'int', written: 'weight intN', min: 2, max: 8, doc: 'bits of a weight code (int4/int8 storage, narrower grids inside them)', code: 'E031' },
  'input.bits': { kind: 'int', written: 'input intN', min: 2, max: 8, doc: 'bits of an activation code', code: 'E031' },
  'group.size': { kind: 'int', written: 'weight … group N', min: 1, max: SIZE, doc: 'weights per scale along the input channels', code: 'E032' },
  'auto.candidate': { kind: 'int', written: 'group auto(candidates: [N, …])', min: 1, max: SIZE, doc: 'a group size the search may choose', code: 'E032' },
  'auto.mean': { kind: 'number', written: 'group auto(budget: mean >= N)', min: 1, max: SIZE, default: 128, doc: 'lowest mean group size over the layers', code: 'E032' },
  'auto.bits': { kind: 'number', written: 'group auto(budget: bits <= B)', min: 0, minExclusive: true, max: 64, doc: 'highest average stored bits per weight', code: 'E032' },
  'gptq.block': { kind: 'int', written: 'rounding gptq(block: N)', min: 1, max: SIZE, default: 128, doc: 'columns quantized per GPTQ block' },
  'gptq.damp': { kind: 'number', written: 'rounding gptq(damp: D)', min: 0, max: 1, default: 0.01, doc: 'Hessian damping, a fraction of its mean diagonal' },
  'per-timestep.groups': { kind: 'int', written: 'input … per-timestep(groups: N)', min: 1, max: 1000, default: 10, doc: 'timestep groups, each with its own scale', reason: 'at most T; each group is a table row in every quantized layer' },
  'per-token-group.size': { kind: 'int', written: 'input … dynamic per-token-group(size: N)', min: 1, max: SIZE, default: 64, doc: 'input channels per dynamic scale (a size that does not divide the layer\'s leaves a partial last group)' },
  'smoothquant.alpha': { kind: 'number', written: 'transform smoothquant(alpha: α)', min: 0, max: 1, default: 0.5, doc: 'migration strength' },
  'dilate.max': { kind: 'number', written: 'transform dilate(max: S)', min: 1, max: 1e12, default: 1e6, doc: 'largest dilation factor', reason: 'a factor below 1 shrinks instead of dilating; 0 divides by zero' },
} as const satisfies Record<string, Setting>;

/** The exponent `range mse` means (it is `lp` with p = 2; not a setting). */
export const MSE_EXPONENT = 2;

/** The id of a setting. */
export type SettingId = keyof typeof SETTINGS;

/** The settings that have a default. */
type Defaulted = { [K in SettingId]: (typeof SETTINGS)[K] extends { default: unknown } ? K : never }[SettingId];

/** The default of a setting (numbers widened to `number`, words kept as their literal union). */
export function defaultOf<K extends Defaulted>(id: K): (typeof SETTINGS)[K] extends { default: infer D } ? (D extends number ? number : D) : never {
  return (SETTINGS[id] as { default: unknown }).default as never;
}

/** Limits on the size of a recipe itself (not a setting value). */
export const LIMITS = {
  /** quantize, keep and transform statements together. */
  statements: { max: 50_000, doc: 'statements (rules, keeps, transforms) in one recipe' },
  /** Brackets and parentheses open at once. */
  nesting: { max: 32, doc: 'brackets and parentheses open at once' },
  /** Characters of a `name("…")` glob or `regex("…")` pattern. */
  pattern: { max: 256, doc: 'characters of a name glob or regex pattern' },
  /** Selectors in one rule (select and except together). */
  selectors: { max: 1024, doc: 'selectors in one rule' },
  /** Entries of a list (`auto` candidates, fp16 keep). */
  list: { max: 64, doc: 'entries of a list' },
} as const;

/** The bounds of a numeric setting as text: `an integer in [1, 65536]`, `a number in (0, 1)`. */
export function describeBounds(s: NumberSetting): string {
  return `${s.kind === 'int' ? 'an integer' : 'a number'} in ${s.minExclusive ? '(' : '['}${s.min}, ${s.max}${s.maxExclusive ? ')' : ']'}`;
}

/** Why `value` is not acceptable for setting `id`, or undefined when it is. */
export function settingProblem(id: SettingId, value: unknown): string | undefined {
  const s: Setting = SETTINGS[id];
  if (s.kind === 'enum') return typeof value === 'string' && s.values.includes(value) ? undefined : `${s.written} must be one of ${s.values.join(', ')}, got ${JSON.stringify(value)}`;
  const ok =
    typeof value === 'number' &&
    Number.isFinite(value) &&
    (s.kind === 'number' || Number.isInteger(value)) &&
    (s.minExclusive ? value > s.min : value >= s.min) &&
    (s.maxExclusive ? value < s.max : value <= s.max);
  return ok ? undefined : `${s.written}: must be ${describeBounds(s)}, got ${typeof value === 'number' ? value : JSON.stringify(value)}${s.reason ? ` (${s.reason})` : ''}`;
}

/** The JSON Schema of a setting's value. */
export function settingSchema(id: SettingId): Record<string, unknown> {
  const s: Setting = SETTINGS[id];
  if (s.kind === 'enum') return { enum: [...s.values], description: s.doc };
  return {
    type: s.kind === 'int' ? 'integer' : 'number',
    [s.minExclusive ? 'exclusiveMinimum' : 'minimum']: s.min,
    [s.maxExclusive ? 'exclusiveMaximum' : 'maximum']: s.max,
    description: s.doc,
  };
}

/** Where a setting's value sits in a normalized recipe: the object holding it, its key, the JSON pointer path. */
export interface SettingSite {
  id: SettingId;
  holder: object;
  key: string | number;
  path: (string | number)[];
}

/**
 * Every setting value of a normalized recipe, with where it sits. The one map from the Recipe's shape to the
 * table; `validateSettings` walks it for text and JSON recipes alike.
 */
export function settingSites(recipe: Recipe): SettingSite[] {
  const out: SettingSite[] = [];
  const at = (id: SettingId, holder: object, key: string | number, path: (string | number)[]) => out.push({ id, holder, key, path: [...path, key] });
  at('target', recipe, 'target', []);
  at('precision', recipe, 'precision', []);
  at('seed', recipe, 'seed', []);
  const d = recipe.diffusion;
  at('diffusion.prediction', d, 'prediction', ['diffusion']);
  at('diffusion.guidance', d, 'guidance', ['diffusion']);
  at('diffusion.classes', d, 'classes', ['diffusion']);
  at('diffusion.resolution', d.resolution, 'height', ['diffusion', 'resolution']);
  at('diffusion.resolution', d.resolution, 'width', ['diffusion', 'resolution']);
  at('diffusion.timestep-scale', d, 'timestepScale', ['diffusion']);
  const schedule = d.schedule;
  if ('steps' in schedule) at('schedule.steps', schedule, 'steps', ['diffusion', 'schedule']);
  if (schedule.kind === 'linear' || schedule.kind === 'scaled-linear') {
    at('schedule.start', schedule, 'betaStart', ['diffusion', 'schedule']);
    at('schedule.end', schedule, 'betaEnd', ['diffusion', 'schedule']);
  }
  if (schedule.kind === 'flow') at('schedule.shift', schedule, 'shift', ['diffusion', 'schedule']);
  const sampler = d.sampler;
  if (sampler.kind === 'ddim') at('ddim.eta', sampler, 'eta', ['diffusion', 'sampler']);
  at(`${sampler.kind}.steps`, sampler, 'steps', ['diffusion', 'sampler']);
  const c = recipe.calibrate;
  at('calibrate.samples', c, 'samples', ['calibrate']);
  at('calibrate.batch', c, 'batch', ['calibrate']);
  at('calibrate.ema', c, 'ema', ['calibrate']);
  const t = c.timesteps;
  if (t.kind === 'evenly-spaced') at('evenly-spaced.count', t, 'count', ['calibrate', 'timesteps']);
  if (t.kind === 'ndtc') {
    at('ndtc.mean', t, 'mean', ['calibrate', 'timesteps']);
    at('ndtc.std', t, 'std', ['calibrate', 'timesteps']);
  }
  const range = (r: Recipe['calibrate']['range'], path: (string | number)[]) => {
    if (r.kind === 'percentile') at('percentile.p', r, 'percentile', path);
    if (r.kind === 'lp') {
      at('lp.p', r, 'p', path);
      at('lp.grid', r, 'gridSize', path);
    }
  };
  range(c.range, ['calibrate', 'range']);
  const s = recipe.search;
  at('search.method', s, 'method', ['search']);
  at('search.population', s, 'population', ['search']);
  at('search.top', s, 'topK', ['search']);
  at('search.mutations', s, 'mutations', ['search']);
  at('search.crossovers', s, 'crossovers', ['search']);
  at('search.mutation-rate', s, 'mutationRate', ['search']);
  at('search.epochs', s, 'epochs', ['search']);
  at('search.fitness', s, 'fitness', ['search']);
  at('search.judge', s, 'judge', ['search']);
  at('search.judge-samples', s, 'judgeSamples', ['search']);
  recipe.rules.forEach((rule, i) => {
    const w = rule.weight;
    if (w) {
      const path = ['rules', i, 'weight'];
      at('weight.bits', w, 'bits', path);
      const g = w.granularity;
      if (g.kind === 'group') at('group.size', g, 'size', [...path, 'granularity']);
      if (g.kind === 'auto') {
        g.candidates.forEach((_, j) => at('auto.candidate', g.candidates, j, [...path, 'granularity', 'candidates']));
        if (g.budget.kind === 'mean-group-size') at('auto.mean', g.budget, 'min', [...path, 'granularity', 'budget']);
        else at('auto.bits', g.budget, 'max', [...path, 'granularity', 'budget']);
      }
      range(w.range, [...path, 'range']);
      if (w.rounding.kind === 'gptq') {
        at('gptq.block', w.rounding, 'blockSize', [...path, 'rounding']);
        at('gptq.damp', w.rounding, 'damp', [...path, 'rounding']);
      }
    }
    const a = rule.input;
    if (a) {
      const path = ['rules', i, 'input'];
      at('input.bits', a, 'bits', path);
      if (a.mode.kind === 'per-timestep') at('per-timestep.groups', a.mode, 'groups', [...path, 'mode']);
      if (a.mode.kind === 'dynamic' && typeof a.mode.groupSize === 'number') at('per-token-group.size', a.mode, 'groupSize', [...path, 'mode']);
      range(a.range, [...path, 'range']);
    }
  });
  recipe.transforms.forEach((transform, i) => {
    if (transform.kind === 'smoothquant') at('smoothquant.alpha', transform, 'alpha', ['transforms', i]);
    else at('dilate.max', transform, 'maxScale', ['transforms', i]);
  });
  return out;
}

/**
 * The block and key of a setting written `block { key VALUE }` (what `fmt` prints from the table), else
 * undefined — also for one written in alternative forms (`resolution N | HxW`), which fmt words itself.
 */
export function blockSetting(id: SettingId): { block: string; key: string } | undefined {
  const match = /^(\w+) \{ ([\w-]+) [^(|]*\}$/.exec(SETTINGS[id].written);
  return match ? { block: match[1]!, key: match[2]! } : undefined;
}

/** Where a diagnostic about the value at `site` points (text: the value as written; JSON: its key). */
export type Locate = (site: SettingSite) => Diagnostic['span'];

/**
 * The one semantic validation every recipe form goes through: the limits on the recipe's size (E017), then
 * each setting value against the table. Cross-setting rules (a per-timestep group count above T, …) are checkRecipe's.
 */
export function validateSettings(recipe: Recipe, locate: Locate): Diagnostic[] {
  const out: Diagnostic[] = [];
  const statements = recipe.rules.length + recipe.keep.length + recipe.transforms.length;
  if (statements > LIMITS.statements.max) out.push({ severity: 'error', code: 'E017', message: `the recipe has ${statements} rules, keeps and transforms; at most ${LIMITS.statements.max}` });
  const groups: [string, { select: Selector[]; except: Selector[]; source?: SourceRef }[]][] = [['rules', recipe.rules], ['keep', recipe.keep], ['transforms', recipe.transforms]];
  for (const [key, list] of groups) {
    list.forEach((rule, i) => {
      const span = rule.source ?? locate({ id: 'target', holder: rule, key: 'select', path: [key, i, 'select'] });
      const where = span ? { span } : {};
      const count = rule.select.length + rule.except.length;
      if (count > LIMITS.selectors.max) out.push({ severity: 'error', code: 'E017', message: `a rule with ${count} selectors; at most ${LIMITS.selectors.max}`, ...where });
      for (const selector of [...rule.select, ...rule.except]) {
        const pattern = selector.kind === 'name' ? selector.glob : selector.kind === 'regex' ? selector.pattern : '';
        if (pattern.length > LIMITS.pattern.max) out.push({ severity: 'error', code: 'E017', message: `a ${selector.kind} pattern of ${pattern.length} characters; at most ${LIMITS.pattern.max}`, ...where });
      }
    });
  }
  for (const site of settingSites(recipe)) {
    const value = (site.holder as Record<string | number, unknown>)[site.key];
    const problem = settingProblem(site.id, value);
    if (!problem) continue;
    const s: Setting = SETTINGS[site.id];
    const span = locate(site);
    // One value written for two sites (`resolution 64` is the height and the width) is reported once.
    if (out.some((d) => d.message === problem && d.span?.offset === span?.offset)) continue;
    out.push({ severity: 'error', code: s.kind === 'enum' ? 'E015' : (s.code ?? 'E014'), message: problem, ...(span ? { span } : {}) });
  }
  if (out.length > 0) return out;
  // Settings that bound each other.
  const { height, width } = recipe.diffusion.resolution;
  if ((height === 0) !== (width === 0)) {
    const span = locate({ id: 'diffusion.resolution', holder: recipe.diffusion.resolution, key: 'height', path: ['diffusion', 'resolution', 'height'] });
    out.push({ severity: 'error', code: 'E014', message: `resolution ${height}x${width}: give both sides, or neither (0 = the model's)`, ...(span ? { span } : {}) });
  }
  recipe.rules.forEach((rule, i) => {
    const g = rule.weight?.granularity;
    if (g?.kind !== 'auto' || g.budget.kind !== 'mean-group-size') return;
    const largest = Math.max(...g.candidates);
    if (g.budget.min <= largest) return;
    const span = locate({ id: 'auto.mean', holder: g.budget, key: 'min', path: ['rules', i, 'weight', 'granularity', 'budget', 'min'] });
    out.push({ severity: 'error', code: 'E032', message: `budget mean >= ${g.budget.min} is unreachable: the largest candidate is ${largest}`, ...(span ? { span } : {}) });
  });
  return out;
}

/** The markers around the generated settings section of docs/recipes.md. */
export const SETTINGS_DOC_BEGIN = '<!-- settings table: generated by grammar/gen-settings.ts from src/recipe/settings.ts -->';
export const SETTINGS_DOC_END = '<!-- end of settings table -->';

/** The settings table of docs/recipes.md (between its `settings` markers), generated from SETTINGS and LIMITS. */
export function settingsMarkdown(): string {
  const rows = ['| setting | id | values | default | meaning |', '| --- | --- | --- | --- | --- |'];
  const cell = (text: string) => text.replaceAll('|', '\\|');
  for (const [id, s] of Object.entries(SETTINGS) as [SettingId, Setting][]) {
    const values = s.kind === 'enum' ? s.values.map((v) => `\`${v}\``).join(', ') : describeBounds(s);
    const fallback = s.default === undefined ? 'required' : `\`${s.default}\``;
    rows.push(`| \`${cell(s.written)}\` | ${id} | ${cell(values)} | ${fallback} | ${cell(s.doc)}${'reason' in s && s.reason ? ` (${cell(s.reason)})` : ''} |`);
  }
  rows.push('', '| limit | at most |', '| --- | --- |');
  for (const limit of Object.values(LIMITS)) rows.push(`| ${limit.doc} | ${limit.max} |`);
  return rows.join('\n');
}
