/** `qcompile fmt`: prints a recipe in canonical form — every setting explicit, fixed order, one statement per line. */
import type { ActivationQuantSpec, RangeMethod, WeightQuantSpec } from '../quant/plan.js';
import { describeSelectors } from './select.js';
import { blockSetting, settingSites } from './settings.js';
import type { Recipe, Selector } from './types.js';

/** The canonical text of a recipe; parsing it gives the same recipe (spans aside). */
export function formatRecipe(recipe: Recipe): string {
  const c = recipe.calibrate;
  const lines: string[] = [`recipe ${JSON.stringify(recipe.name)} {`];
  const precision = recipe.precision === 'fp16' ? `fp16(keep: [${recipe.float16.keep.join(', ')}])` : 'fp32';
  lines.push(`  target ${recipe.target}`, `  precision ${precision}`, `  seed ${recipe.seed}`, '');
  const blocks = tableSettings(recipe);
  lines.push('  diffusion {', `    schedule ${schedule(recipe)}`, `    sampler ${sampler(recipe)}`, `    resolution ${resolution(recipe)}`, ...blocks('diffusion', '    '), '  }', '');
  const strings = (['cache', 'prompts', 'conditioning'] as const).map((key) => `    ${key} ${JSON.stringify(c[key])}`);
  lines.push('  calibrate {', `    timesteps ${timesteps(recipe)}`, `    range ${range(c.range)}`, ...blocks('calibrate', '    '), ...strings, '  }');
  if (recipe.transforms.length > 0) lines.push('');
  for (const t of recipe.transforms) {
    const head = t.kind === 'smoothquant' ? `smoothquant(alpha: ${num(t.alpha)})` : `dilate(max: ${num(t.maxScale)})`;
    lines.push(`  transform ${head} on ${selection(t.select, t.except)}`);
  }
  for (const rule of recipe.rules) {
    lines.push('', `  quantize ${selection(rule.select, rule.except)} {`);
    if (rule.weight) lines.push(`    weight ${weight(rule.weight)}`);
    if (rule.input) lines.push(`    input ${input(rule.input)}`);
    lines.push('  }');
  }
  if (recipe.keep.length > 0) lines.push('');
  for (const k of recipe.keep) lines.push(`  keep ${selection(k.select, k.except)}`);
  lines.push('', `  search { ${blocks('search', '').join(' ')} }`, '}');
  return `${lines.join('\n')}\n`;
}

/** The `key value` lines of each block's plain settings, in the settings table's order, from the table. */
function tableSettings(recipe: Recipe): (block: string, indent: string) => string[] {
  const sites = settingSites(recipe);
  return (block, indent) =>
    sites.flatMap((site) => {
      const written = blockSetting(site.id);
      const value = (site.holder as Record<string | number, number | string>)[site.key]!;
      return written?.block === block ? [`${indent}${written.key} ${typeof value === 'number' ? num(value) : value}`] : [];
    });
}

function num(n: number): string {
  return String(n);
}

function selection(select: Selector[], except: Selector[]): string {
  return except.length > 0 ? `${describeSelectors(select)} except ${describeSelectors(except)}` : describeSelectors(select);
}

function schedule(recipe: Recipe): string {
  const s = recipe.diffusion.schedule;
  if (s.kind === 'sidecar' || s.kind === 'config') return s.kind;
  if (s.kind === 'cosine') return `cosine(steps: ${s.steps})`;
  if (s.kind === 'flow') return `flow(shift: ${num(s.shift)}, steps: ${s.steps})`;
  return `${s.kind}(start: ${num(s.betaStart)}, end: ${num(s.betaEnd)}, steps: ${s.steps})`;
}

function sampler(recipe: Recipe): string {
  const s = recipe.diffusion.sampler;
  return s.kind === 'ddim' ? `ddim(steps: ${s.steps}, eta: ${num(s.eta)})` : `${s.kind}(steps: ${s.steps})`;
}

/** `resolution 64` when square, `resolution 64x96` otherwise. */
function resolution(recipe: Recipe): string {
  const { height, width } = recipe.diffusion.resolution;
  return height === width ? `${height}` : `${height}x${width}`;
}

function timesteps(recipe: Recipe): string {
  const t = recipe.calibrate.timesteps;
  if (t.kind === 'evenly-spaced') return `evenly-spaced(count: ${t.count})`;
  if (t.kind === 'ndtc') return `ndtc(mean: ${num(t.mean)}, std: ${num(t.std)})`;
  return t.kind;
}

function range(r: RangeMethod): string {
  if (r.kind === 'minmax') return 'minmax';
  if (r.kind === 'percentile') return `percentile(p: ${num(r.percentile)})`;
  return `lp(p: ${num(r.p)}, grid: ${r.gridSize})`;
}

function storage(bits: number, signed: boolean | undefined): string {
  return `${signed === false ? 'u' : ''}int${bits}`;
}

function weight(w: WeightQuantSpec): string {
  const g = w.granularity;
  const granularity =
    g.kind === 'group' ? `group ${g.size}` : g.kind === 'auto' ? `group auto(candidates: [${g.candidates.join(', ')}], budget: ${g.budget.kind === 'mean-group-size' ? `mean >= ${num(g.budget.min)}` : `bits <= ${num(g.budget.max)}`})` : g.kind;
  const rounding = w.rounding.kind === 'gptq' ? `gptq(block: ${w.rounding.blockSize}, damp: ${num(w.rounding.damp)})` : 'nearest';
  return `${storage(w.bits, w.signed)} ${w.symmetric ? 'sym' : 'asym'} ${granularity} range ${range(w.range)} rounding ${rounding}`;
}

function input(a: ActivationQuantSpec): string {
  const m = a.mode;
  const mode =
    m.kind === 'static' ? 'static' : m.kind === 'per-timestep' ? `per-timestep(groups: ${m.groups})` : m.granularity === 'per-token-group' ? `dynamic per-token-group(size: ${m.groupSize})` : `dynamic ${m.granularity}`;
  return `${storage(a.bits, true)} ${a.symmetric ? 'sym' : 'asym'} ${mode} range ${range(a.range)}`;
}
