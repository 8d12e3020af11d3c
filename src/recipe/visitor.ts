/**
 * The recipe visitor: turns the parsed syntax into a normalized `Recipe`, one statement at a time. Every
 * problem becomes a Diagnostic with the span of the offending text and, for misspellings, a suggestion.
 */
import type { CstNode } from 'chevrotain';
import { didYouMean, type Diagnostic } from '../diagnostics.js';
import { LAYER_ROLES } from '../quant/layers.js';
import { Op } from '../ir/ops.js';
import { DEFAULT_FLOAT16_KEEP, FLOAT16_REGIONS, isKeepName } from '../passes/convert-float16.js';
import type { ActivationQuantSpec, Granularity, GroupBudget, RangeMethod, Rounding, WeightQuantSpec } from '../quant/plan.js';
import { GPTQ_DEFAULTS, RANGE_DEFAULTS, defaultInputSpec, defaultRecipe, defaultWeightSpec } from './defaults.js';
import { callOf, child, firstNode, firstToken, rangeOf, termOf, tokenRange, unquote, type Argument, type Range, type Term, type Value } from './syntax.js';
import type { Recipe, Selector, SourceRef, TimestepStrategy } from './types.js';

/** Role groups a selector may name: `attn` selects every `attn.*` role. */
export const ROLE_GROUPS = ['attn', 'mlp', 'embed', 'res', 'conv'] as const;
/** Selector words that are not roles. */
const SELECTOR_WORDS = ['all', 'first', 'last', 'op', 'name', 'regex'];
const TARGETS = ['cpu', 'webgpu', 'cuda', 'tensorrt'] as const;

/** Builds a Recipe from the CST of a `.qrecipe`, collecting diagnostics into `diagnostics`. */
export function visitRecipe(cst: CstNode, file: string, diagnostics: Diagnostic[]): Recipe {
  const v = new RecipeVisitor(file, diagnostics);
  return v.recipe(cst);
}

/** A sequence of terms read front to back (settings blocks, weight/input specs). */
class Cursor {
  private index = 0;
  constructor(readonly terms: Term[]) {}
  get done(): boolean {
    return this.index >= this.terms.length;
  }
  peek(): Term | undefined {
    return this.terms[this.index];
  }
  next(): Term | undefined {
    return this.terms[this.index++];
  }
}

class RecipeVisitor {
  private recipeValue = defaultRecipe('');
  /** Rules whose input range was not written, to receive the calibrate section's range at the end. */
  private readonly inheritsRange: ActivationQuantSpec[] = [];

  constructor(
    private readonly file: string,
    private readonly diagnostics: Diagnostic[],
  ) {}

  private error(code: string, message: string, range: Range | undefined, notes?: string[]): void {
    this.diagnostics.push({ severity: 'error', code, message, ...(range ? { span: { file: this.file, ...range } } : {}), ...(notes ? { notes } : {}) });
  }

  private unknown(code: string, what: string, word: string, choices: readonly string[], range: Range): void {
    const suggestion = didYouMean(word, choices);
    this.error(code, `unknown ${what} '${word}'${suggestion ? ` (did you mean '${suggestion}'?)` : ''}`, range);
  }

  recipe(cst: CstNode): Recipe {
    const name = firstToken(cst, 'name');
    this.recipeValue = defaultRecipe(name ? unquote(name.image) : '');
    for (const statement of nodes(cst, 'statement')) this.statement(statement);
    for (const spec of this.inheritsRange) spec.range = this.recipeValue.calibrate.range;
    return this.recipeValue;
  }

  private statement(node: CstNode): void {
    const quantize = firstNode(node, 'quantizeStatement');
    if (quantize) return this.quantize(quantize);
    const keep = firstNode(node, 'keepStatement');
    if (keep) return this.keep(keep);
    const transform = firstNode(node, 'transformStatement');
    if (transform) return this.transform(transform);
    const block = firstNode(node, 'block');
    if (block) return this.block(block);
    const setting = firstNode(node, 'setting');
    if (setting) this.setting(setting);
  }

  private setting(node: CstNode): void {
    const nameToken = firstToken(node, 'name');
    const termNode = firstNode(node, 'term');
    if (!nameToken || !termNode) return;
    const term = termOf(termNode);
    if (!term) return;
    const r = this.recipeValue;
    switch (nameToken.image) {
      case 'target': {
        const word = this.word(term, 'target');
        if (word === undefined) return;
        if ((TARGETS as readonly string[]).includes(word)) r.target = word as Recipe['target'];
        else this.unknown('E015', 'target', word, TARGETS, term.range);
        return;
      }
      case 'precision':
        return this.precision(term, this.source(node));
      case 'seed': {
        const n = this.integer(term, 'seed', 0);
        if (n !== undefined) r.seed = n;
        return;
      }
      default:
        this.unknown('E010', 'statement', nameToken.image, ['target', 'precision', 'seed', 'diffusion', 'calibrate', 'search', 'quantize', 'keep', 'transform'], tokenRange(nameToken));
    }
  }

  /** `precision fp32`, `precision fp16`, `precision fp16(keep: [LayerNormalization, Softmax, embed.time])`. */
  private precision(term: Term, source: SourceRef | undefined): void {
    const call = this.callTerm(term, 'precision');
    if (!call) return;
    if (call.name !== 'fp32' && call.name !== 'fp16') return this.unknown('E015', 'precision', call.name, ['fp32', 'fp16'], call.range);
    const r = this.recipeValue;
    r.precision = call.name;
    if (call.name === 'fp32') {
      this.args(call, []);
      return;
    }
    r.float16 = { keep: [...DEFAULT_FLOAT16_KEEP], ...(source ? { source } : {}) };
    const keep = this.args(call, ['keep']).get('keep');
    if (!keep) return;
    if (keep.left.kind !== 'list' || keep.comparison) return this.error('E014', `argument 'keep' expects a list like [LayerNormalization, Softmax, embed.time], found ${describeValue(keep.left)}`, keep.range);
    const names: string[] = [];
    for (const item of keep.left.items) {
      if (item.kind !== 'name') this.error('E014', `keep expects op types and regions, found ${describeValue(item)}`, item.range);
      else if (!isKeepName(item.value)) {
        const choices = [...Object.values(Op), ...Object.keys(FLOAT16_REGIONS)];
        // Abbreviations (`LayerNorm`) are too far for the edit distance: a unique prefix match suggests too.
        const prefixed = choices.filter((c) => c.toLowerCase().startsWith(item.value.toLowerCase()));
        const suggestion = didYouMean(item.value, choices) ?? (prefixed.length === 1 ? prefixed[0] : undefined);
        this.error('E015', `unknown op type or region '${item.value}'${suggestion ? ` (did you mean '${suggestion}'?)` : ''}`, item.range);
      }
      else if (names.includes(item.value)) this.error('E016', `'${item.value}' is listed twice`, item.range);
      else names.push(item.value);
    }
    r.float16.keep = names;
  }

  private block(node: CstNode): void {
    const nameToken = firstToken(node, 'name')!;
    const cursor = new Cursor(nodes(node, 'term').map(termOf).filter((t): t is Term => t !== undefined));
    switch (nameToken.image) {
      case 'diffusion':
        return this.settings(cursor, 'diffusion', {
          schedule: (t) => this.schedule(t),
          prediction: (t) => {
            const w = this.word(t, 'prediction');
            if (w === 'epsilon' || w === 'v') this.recipeValue.diffusion.prediction = w;
            else if (w !== undefined) this.unknown('E015', 'prediction', w, ['epsilon', 'v'], t.range);
          },
          sampler: (t) => this.sampler(t),
          guidance: (t) => this.positive(t, 'guidance', (n) => (this.recipeValue.diffusion.guidance = n)),
          classes: (t) => {
            const n = this.integer(t, 'classes', 0);
            if (n !== undefined) this.recipeValue.diffusion.classes = n;
          },
        });
      case 'calibrate':
        return this.settings(cursor, 'calibrate', {
          samples: (t) => {
            const n = this.integer(t, 'samples', 1);
            if (n !== undefined) this.recipeValue.calibrate.samples = n;
          },
          batch: (t) => {
            const n = this.integer(t, 'batch', 1);
            if (n !== undefined) this.recipeValue.calibrate.batch = n;
          },
          sampler: (t) => this.sampler(t),
          timesteps: (t) => this.timesteps(t),
          range: (t) => {
            const range = this.range(t);
            if (range) this.recipeValue.calibrate.range = range;
          },
          ema: (t) => {
            const n = this.number(t, 'ema');
            if (n === undefined) return;
            if (n < 0 || n >= 1) this.error('E014', `ema momentum must be in [0, 1), got ${n}`, t.range);
            else this.recipeValue.calibrate.ema = n;
          },
          cache: (t) => {
            if (t.kind === 'string') this.recipeValue.calibrate.cache = t.value;
            else this.error('E014', 'cache expects a file name in quotes', t.range);
          },
        });
      case 'search': {
        const s = this.recipeValue.search;
        const int = (key: 'population' | 'topK' | 'mutations' | 'crossovers' | 'epochs', min: number) => (t: Term) => {
          const n = this.integer(t, key, min);
          if (n !== undefined) s[key] = n;
        };
        return this.settings(cursor, 'search', {
          method: (t) => {
            const w = this.word(t, 'method');
            if (w === 'evolution' || w === 'greedy') s.method = w;
            else if (w !== undefined) this.unknown('E015', 'search method', w, ['evolution', 'greedy'], t.range);
          },
          population: int('population', 2),
          top: int('topK', 1),
          mutations: int('mutations', 0),
          crossovers: int('crossovers', 0),
          epochs: int('epochs', 0),
          'mutation-rate': (t) => {
            const n = this.number(t, 'mutation-rate');
            if (n !== undefined && (n < 0 || n > 1)) this.error('E014', `mutation-rate must be in [0, 1], got ${n}`, t.range);
            else if (n !== undefined) s.mutationRate = n;
          },
          fitness: (t) => {
            const w = this.word(t, 'fitness');
            if (w === 'eps-error' || w === 'layer-error') s.fitness = w;
            else if (w !== undefined) this.unknown('E015', 'fitness', w, ['eps-error', 'layer-error'], t.range);
          },
        });
      }
      default:
        this.unknown('E011', 'block', nameToken.image, ['diffusion', 'calibrate', 'search'], tokenRange(nameToken));
    }
  }

  /** Reads `name value` pairs; each handler consumes the value term. */
  private settings(cursor: Cursor, block: string, handlers: Record<string, (value: Term) => void>): void {
    const seen = new Map<string, Range>();
    while (!cursor.done) {
      const key = cursor.next()!;
      if (key.kind !== 'call' || key.args !== undefined) {
        this.error('E012', `expected a ${block} setting name, found ${describe(key)}`, key.range);
        continue;
      }
      const handler = handlers[key.name];
      if (!handler) {
        this.unknown('E012', `${block} setting`, key.name, Object.keys(handlers), key.range);
        // Skip its value too, when it clearly is one.
        if (cursor.peek() && (cursor.peek()!.kind !== 'call' || !(cursor.peek() as { name: string }).name || !handlers[(cursor.peek() as { name: string }).name])) cursor.next();
        continue;
      }
      const previous = seen.get(key.name);
      if (previous) this.error('E016', `${block} setting '${key.name}' is set twice`, key.range);
      seen.set(key.name, key.range);
      const value = cursor.next();
      if (!value) {
        this.error('E013', `${block} setting '${key.name}' needs a value`, key.range);
        return;
      }
      handler(value);
    }
  }

  private schedule(t: Term): void {
    const call = this.callTerm(t, 'schedule');
    if (!call) return;
    const args = this.args(call, ['start', 'end', 'steps']);
    const steps = this.argInteger(args, 'steps', 1000, 1);
    switch (call.name) {
      case 'sidecar':
        this.recipeValue.diffusion.schedule = { kind: 'sidecar' };
        return;
      case 'linear':
      case 'scaled-linear':
        this.recipeValue.diffusion.schedule = { kind: call.name, betaStart: this.argNumber(args, 'start', 1e-4), betaEnd: this.argNumber(args, 'end', 0.02), steps };
        return;
      case 'cosine':
        this.recipeValue.diffusion.schedule = { kind: 'cosine', steps };
        return;
      default:
        this.unknown('E015', 'schedule', call.name, ['sidecar', 'linear', 'scaled-linear', 'cosine'], call.range);
    }
  }

  private sampler(t: Term): void {
    const call = this.callTerm(t, 'sampler');
    if (!call) return;
    if (call.name === 'ddim') {
      const args = this.args(call, ['steps', 'eta']);
      this.recipeValue.diffusion.sampler = { kind: 'ddim', steps: this.argInteger(args, 'steps', 50, 1), eta: this.argNumber(args, 'eta', 0) };
    } else if (call.name === 'ddpm') {
      const args = this.args(call, ['steps']);
      this.recipeValue.diffusion.sampler = { kind: 'ddpm', steps: this.argInteger(args, 'steps', 1000, 1) };
    } else {
      this.unknown('E015', 'sampler', call.name, ['ddim', 'ddpm'], call.range);
    }
  }

  private timesteps(t: Term): void {
    const call = this.callTerm(t, 'timesteps');
    if (!call) return;
    let strategy: TimestepStrategy | undefined;
    switch (call.name) {
      case 'uniform':
      case 'random-distinct':
        this.args(call, []);
        strategy = { kind: call.name };
        break;
      case 'evenly-spaced': {
        const args = this.args(call, ['count']);
        strategy = { kind: 'evenly-spaced', count: this.argInteger(args, 'count', 20, 1) };
        break;
      }
      case 'ndtc': {
        const args = this.args(call, ['mean', 'std']);
        const mean = this.argNumber(args, 'mean', 0.5);
        const std = this.argNumber(args, 'std', 0.35);
        if (mean < 0 || mean > 1 || std <= 0) this.error('E014', `ndtc mean must be in [0, 1] and std > 0 (fractions of T), got mean ${mean}, std ${std}`, call.range);
        strategy = { kind: 'ndtc', mean, std };
        break;
      }
      default:
        this.unknown('E015', 'timestep strategy', call.name, ['uniform', 'evenly-spaced', 'random-distinct', 'ndtc'], call.range);
    }
    if (strategy) this.recipeValue.calibrate.timesteps = strategy;
  }

  private range(t: Term): RangeMethod | undefined {
    const call = this.callTerm(t, 'range');
    if (!call) return undefined;
    switch (call.name) {
      case 'minmax':
        this.args(call, []);
        return { kind: 'minmax' };
      case 'percentile': {
        const args = this.args(call, ['p']);
        const p = this.argNumber(args, 'p', RANGE_DEFAULTS.percentile);
        if (p <= 0 || p > 100) this.error('E014', `percentile must be in (0, 100], got ${p}`, call.range);
        return { kind: 'percentile', percentile: p };
      }
      case 'mse': {
        const args = this.args(call, ['grid']);
        return { kind: 'lp', p: RANGE_DEFAULTS.mseP, gridSize: this.argInteger(args, 'grid', RANGE_DEFAULTS.gridSize, 1) };
      }
      case 'lp': {
        const args = this.args(call, ['p', 'grid']);
        const p = this.argNumber(args, 'p', RANGE_DEFAULTS.lpP);
        if (p <= 0) this.error('E014', `lp exponent must be > 0, got ${p}`, call.range);
        return { kind: 'lp', p, gridSize: this.argInteger(args, 'grid', RANGE_DEFAULTS.gridSize, 1) };
      }
      default:
        this.unknown('E015', 'range method', call.name, ['minmax', 'percentile', 'mse', 'lp'], call.range);
        return undefined;
    }
  }

  private quantize(node: CstNode): void {
    const include = this.selectors(firstNode(node, 'include'));
    const exclude = this.selectors(firstNode(node, 'exclude'));
    const rule: Recipe['rules'][number] = { select: include, except: exclude, source: this.source(node) };
    for (const spec of nodes(node, 'spec')) {
      const kindToken = firstToken(spec, 'kind');
      if (!kindToken) continue;
      const cursor = new Cursor(nodes(spec, 'term').map(termOf).filter((t): t is Term => t !== undefined));
      if (kindToken.image === 'weight') {
        if (rule.weight) this.error('E016', 'this rule already has a weight spec', tokenRange(kindToken));
        rule.weight = this.weightSpec(cursor, tokenRange(kindToken));
      } else {
        if (rule.input) this.error('E016', 'this rule already has an input spec', tokenRange(kindToken));
        rule.input = this.inputSpec(cursor, tokenRange(kindToken));
      }
    }
    if (!rule.weight && !rule.input) {
      this.diagnostics.push({ severity: 'warning', code: 'W002', message: 'quantize rule has neither a weight nor an input spec; it changes nothing', span: { file: this.file, ...(rangeOf(node) ?? { offset: 0, length: 1 }) } });
    }
    this.recipeValue.rules.push(rule);
  }

  /** `int4|int8|uint4|uint8|intN` → bits and signedness. */
  private storage(t: Term | undefined, what: string, at: Range): { bits: number; signed: boolean } | undefined {
    const word = t?.kind === 'call' && t.args === undefined ? t.name : undefined;
    const match = word ? /^(u?)int(\d+)$/.exec(word) : null;
    if (!match) {
      this.error('E031', `${what} needs a type first: int8, int4, uint8, uint4 (or intN for 2 ≤ N ≤ 8)`, t?.range ?? at);
      return undefined;
    }
    const bits = Number(match[2]);
    if (bits < 2 || bits > 8) {
      this.error('E031', `${bits}-bit ${what}s are not supported (2..8 bits)`, t!.range);
      return undefined;
    }
    return { bits, signed: match[1] === '' };
  }

  private weightSpec(cursor: Cursor, at: Range): WeightQuantSpec | undefined {
    const storage = this.storage(cursor.next(), 'weight', at);
    if (!storage) return undefined;
    const spec = defaultWeightSpec(storage.bits, storage.signed);
    const seen = new Set<string>();
    while (!cursor.done) {
      const t = cursor.next()!;
      const word = t.kind === 'call' ? t.name : undefined;
      const once = (key: string) => {
        if (seen.has(key)) this.error('E033', `conflicting or repeated ${key} setting '${word}'`, t.range);
        seen.add(key);
      };
      switch (word) {
        case 'sym':
        case 'symmetric':
        case 'asym':
        case 'asymmetric':
          once('symmetry');
          spec.symmetric = word.startsWith('sym');
          break;
        case 'per-tensor':
        case 'per-channel':
          once('granularity');
          spec.granularity = { kind: word };
          break;
        case 'group': {
          once('granularity');
          const granularity = this.group(cursor, t.range);
          if (granularity) spec.granularity = granularity;
          break;
        }
        case 'range':
          once('range');
          spec.range = this.rangeSetting(cursor, t) ?? spec.range;
          break;
        case 'rounding': {
          once('rounding');
          const rounding = this.rounding(cursor.next(), t.range);
          if (rounding) spec.rounding = rounding;
          break;
        }
        default:
          if (t.kind === 'call') this.unknown('E030', 'weight setting', t.name, ['sym', 'asym', 'per-tensor', 'per-channel', 'group', 'range', 'rounding'], t.range);
          else this.error('E030', `unexpected ${describe(t)} in a weight spec`, t.range);
      }
    }
    return spec;
  }

  /** The method after a `range` keyword (`t`) in a weight or input spec. */
  private rangeSetting(cursor: Cursor, t: Term): RangeMethod | undefined {
    const next = cursor.next();
    if (next) return this.range(next);
    this.error('E013', "'range' needs a method", t.range);
    return undefined;
  }

  private group(cursor: Cursor, at: Range): Granularity | undefined {
    const t = cursor.next();
    if (t?.kind === 'number') {
      if (!Number.isInteger(t.value) || t.value < 1) {
        this.error('E032', `group size must be a positive integer, got ${t.value}`, t.range);
        return undefined;
      }
      return { kind: 'group', size: t.value };
    }
    if (t?.kind === 'call' && t.name === 'auto') {
      const args = this.args(t, ['candidates', 'budget']);
      const candidatesArg = args.get('candidates');
      let candidates = [32, 64, 128, 192, 288];
      if (candidatesArg) {
        if (candidatesArg.left.kind !== 'list' || candidatesArg.left.items.some((i) => i.kind !== 'number' || !Number.isInteger(i.value) || i.value < 1)) {
          this.error('E032', 'auto candidates must be a list of positive integers, e.g. [32, 64, 128]', candidatesArg.range);
        } else {
          candidates = candidatesArg.left.items.map((i) => (i as { value: number }).value);
        }
      }
      let groupBudget: GroupBudget = { kind: 'mean-group-size', min: 128 };
      const budget = args.get('budget');
      if (budget) {
        const name = budget.left.kind === 'name' ? budget.left.value : undefined;
        const value = budget.comparison?.right.kind === 'number' ? budget.comparison.right.value : undefined;
        if (name === 'mean' && budget.comparison?.op === '>=' && value !== undefined) groupBudget = { kind: 'mean-group-size', min: value };
        else if (name === 'bits' && budget.comparison?.op === '<=' && value !== undefined && value > 0) groupBudget = { kind: 'average-bits', max: value };
        else this.error('E032', "auto budget must read 'mean >= N' (the mean group size over the layers) or 'bits <= B' (average stored bits per weight, scales and zero points included)", budget.range);
      }
      if (groupBudget.kind === 'mean-group-size' && groupBudget.min > Math.max(...candidates)) this.error('E032', `budget mean >= ${groupBudget.min} is unreachable: the largest candidate is ${Math.max(...candidates)}`, t.range);
      return { kind: 'auto', candidates, budget: groupBudget };
    }
    this.error('E032', "'group' needs a size (group 128) or auto(candidates: [...], budget: mean >= N | bits <= B)", t?.range ?? at);
    return undefined;
  }

  private rounding(t: Term | undefined, at: Range): Rounding | undefined {
    if (t?.kind === 'call' && t.name === 'nearest') return { kind: 'nearest' };
    if (t?.kind === 'call' && t.name === 'gptq') {
      const args = this.args(t, ['block', 'damp']);
      const damp = this.argNumber(args, 'damp', GPTQ_DEFAULTS.damp);
      if (damp < 0) this.error('E014', `gptq damp must be ≥ 0, got ${damp}`, t.range);
      return { kind: 'gptq', blockSize: this.argInteger(args, 'block', GPTQ_DEFAULTS.blockSize, 1), damp };
    }
    if (t?.kind === 'call') this.unknown('E015', 'rounding', t.name, ['nearest', 'gptq'], t.range);
    else this.error('E013', "'rounding' needs nearest or gptq(block: 128, damp: 0.01)", t?.range ?? at);
    return undefined;
  }

  private inputSpec(cursor: Cursor, at: Range): ActivationQuantSpec | undefined {
    const storage = this.storage(cursor.next(), 'input', at);
    if (!storage) return undefined;
    const spec = defaultInputSpec(storage.bits, this.recipeValue.calibrate.range);
    let rangeWritten = false;
    let dynamic = false;
    const seen = new Set<string>();
    while (!cursor.done) {
      const t = cursor.next()!;
      const word = t.kind === 'call' ? t.name : undefined;
      const once = (key: string) => {
        if (seen.has(key)) this.error('E033', `conflicting or repeated ${key} setting '${word}'`, t.range);
        seen.add(key);
      };
      switch (word) {
        case 'sym':
        case 'symmetric':
        case 'asym':
        case 'asymmetric':
          once('symmetry');
          spec.symmetric = word.startsWith('sym');
          break;
        case 'static':
          once('mode');
          spec.mode = { kind: 'static' };
          break;
        case 'per-tensor':
          if (dynamic) this.error('E033', "'per-tensor' is the static granularity; dynamic modes are per-sample, per-token or per-token-group", t.range);
          break;
        case 'per-timestep': {
          once('mode');
          const args = this.args(t as Extract<Term, { kind: 'call' }>, ['groups']);
          spec.mode = { kind: 'per-timestep', groups: this.argInteger(args, 'groups', 10, 1) };
          break;
        }
        case 'dynamic': {
          once('mode');
          dynamic = true;
          spec.mode = { kind: 'dynamic', granularity: 'per-token' };
          const next = cursor.peek();
          const granularities = ['per-sample', 'per-token', 'per-token-group'];
          if (next?.kind === 'call' && next.name.startsWith('per-') && !granularities.includes(next.name)) {
            cursor.next();
            this.unknown('E030', 'dynamic granularity', next.name, granularities, next.range);
          } else if (next?.kind === 'call' && granularities.includes(next.name)) {
            cursor.next();
            if (next.name === 'per-token-group') {
              const args = this.args(next, ['size']);
              const size = args.get('size');
              const followsWeight = size?.left.kind === 'name' && size.left.value === 'weight' && !size.comparison;
              spec.mode = { kind: 'dynamic', granularity: 'per-token-group', groupSize: followsWeight ? 'weight' : this.argInteger(args, 'size', 64, 1) };
            } else {
              this.args(next, []);
              spec.mode = { kind: 'dynamic', granularity: next.name as 'per-sample' | 'per-token' };
            }
          }
          break;
        }
        case 'range': {
          once('range');
          const range = this.rangeSetting(cursor, t);
          if (range) {
            spec.range = range;
            rangeWritten = true;
          }
          break;
        }
        default:
          if (t.kind === 'call') this.unknown('E030', 'input setting', t.name, ['sym', 'asym', 'static', 'per-timestep', 'dynamic', 'range'], t.range);
          else this.error('E030', `unexpected ${describe(t)} in an input spec`, t.range);
      }
    }
    if (!rangeWritten) this.inheritsRange.push(spec);
    return spec;
  }

  private keep(node: CstNode): void {
    this.recipeValue.keep.push({ select: this.selectors(firstNode(node, 'include')), except: this.selectors(firstNode(node, 'exclude')), source: this.source(node) });
  }

  private transform(node: CstNode): void {
    const callNode = firstNode(node, 'call');
    const call = callNode ? callOf(callNode) : undefined;
    if (!call) return;
    const select = this.selectors(firstNode(node, 'include'));
    const except = this.selectors(firstNode(node, 'exclude'));
    const source = this.source(node);
    if (call.name === 'smoothquant') {
      const args = this.args(call, ['alpha']);
      const alpha = this.argNumber(args, 'alpha', 0.5);
      if (alpha < 0 || alpha > 1) this.error('E014', `smoothquant alpha must be in [0, 1], got ${alpha}`, call.range);
      this.recipeValue.transforms.push({ kind: 'smoothquant', alpha, select, except, source });
    } else if (call.name === 'dilate') {
      const args = this.args(call, ['max']);
      this.recipeValue.transforms.push({ kind: 'dilate', maxScale: this.argNumber(args, 'max', 1e6), select, except, source });
    } else {
      this.unknown('E043', 'transform', call.name, ['smoothquant', 'dilate'], call.range);
    }
  }

  private selectors(node: CstNode | undefined): Selector[] {
    if (!node) return [];
    const out: Selector[] = [];
    for (const callNode of nodes(node, 'call')) {
      const call = callOf(callNode);
      if (!call) continue;
      const one = this.selector(call);
      if (one) out.push(one);
    }
    return out;
  }

  private selector(call: Extract<Term, { kind: 'call' }>): Selector | undefined {
    const stringArg = (what: string) => {
      const arg = call.args?.[0];
      if (call.args?.length !== 1 || arg!.left.kind !== 'string' || arg!.key) {
        this.error('E021', `${call.name}(…) takes one quoted ${what}, e.g. ${call.name}("${what === 'pattern' ? 'blocks\\\\.[0-3]\\\\..*' : 'blocks.*.attn.*'}")`, call.range);
        return undefined;
      }
      return (arg!.left as { value: string }).value;
    };
    switch (call.name) {
      case 'all':
      case 'first':
      case 'last':
        if (call.args !== undefined) this.error('E021', `'${call.name}' takes no arguments`, call.range);
        return { kind: call.name };
      case 'op': {
        const arg = call.args?.[0];
        const op = arg?.left.kind === 'name' || arg?.left.kind === 'string' ? String(arg.left.value) : undefined;
        if (!op || call.args!.length !== 1) {
          this.error('E021', 'op(…) takes one op type, e.g. op(Conv)', call.range);
          return undefined;
        }
        return { kind: 'op', op };
      }
      case 'name': {
        const glob = stringArg('glob');
        return glob === undefined ? undefined : { kind: 'name', glob };
      }
      case 'regex': {
        const pattern = stringArg('pattern');
        if (pattern === undefined) return undefined;
        try {
          new RegExp(pattern);
        } catch (error) {
          this.error('E021', `invalid regex: ${(error as Error).message}`, call.range);
          return undefined;
        }
        return { kind: 'regex', pattern };
      }
    }
    if (call.args !== undefined) this.error('E021', `role '${call.name}' takes no arguments`, call.range);
    if ((LAYER_ROLES as readonly string[]).includes(call.name) || (ROLE_GROUPS as readonly string[]).includes(call.name)) return { kind: 'role', role: call.name };
    this.unknown('E020', 'layer role or selector', call.name, [...LAYER_ROLES, ...ROLE_GROUPS, ...SELECTOR_WORDS], call.range);
    return undefined;
  }

  // -- small typed readers -------------------------------------------------------------------------

  private source(node: CstNode) {
    const range = rangeOf(node);
    return range ? { file: this.file, ...range } : undefined;
  }

  private word(t: Term, what: string): string | undefined {
    if (t.kind === 'call' && t.args === undefined) return t.name;
    this.error('E014', `${what} expects a name, found ${describe(t)}`, t.range);
    return undefined;
  }

  private number(t: Term, what: string): number | undefined {
    if (t.kind === 'number') return t.value;
    this.error('E014', `${what} expects a number, found ${describe(t)}`, t.range);
    return undefined;
  }

  private integer(t: Term, what: string, min: number): number | undefined {
    const n = this.number(t, what);
    if (n === undefined) return undefined;
    if (!Number.isInteger(n) || n < min) {
      this.error('E014', `${what} must be an integer ≥ ${min}, got ${n}`, t.range);
      return undefined;
    }
    return n;
  }

  private positive(t: Term, what: string, set: (n: number) => void): void {
    const n = this.number(t, what);
    if (n === undefined) return;
    if (n <= 0) this.error('E014', `${what} must be > 0, got ${n}`, t.range);
    else set(n);
  }

  private callTerm(t: Term, what: string): Extract<Term, { kind: 'call' }> | undefined {
    if (t.kind === 'call') return t;
    this.error('E014', `${what} expects a name like ddim(steps: 50), found ${describe(t)}`, t.range);
    return undefined;
  }

  /** Named arguments of a call (positional ones take the names in order); unknown names are errors. */
  private args(call: Extract<Term, { kind: 'call' }>, names: string[]): Map<string, Argument> {
    const out = new Map<string, Argument>();
    (call.args ?? []).forEach((arg, i) => {
      const key = arg.key ?? names[i];
      if (!key || !names.includes(key)) {
        if (names.length === 0) this.error('E034', `'${call.name}' takes no arguments`, arg.range);
        else this.unknown('E034', `argument of ${call.name}`, arg.key ?? String(i + 1), names, arg.range);
        return;
      }
      if (out.has(key)) this.error('E034', `argument '${key}' of ${call.name} is given twice`, arg.range);
      out.set(key, arg);
    });
    return out;
  }

  private argNumber(args: Map<string, Argument>, key: string, fallback: number): number {
    const arg = args.get(key);
    if (!arg) return fallback;
    if (arg.left.kind !== 'number' || arg.comparison) {
      this.error('E014', `argument '${key}' expects a number, found ${describeValue(arg.left)}`, arg.range);
      return fallback;
    }
    return arg.left.value;
  }

  private argInteger(args: Map<string, Argument>, key: string, fallback: number, min: number): number {
    const n = this.argNumber(args, key, fallback);
    if (!Number.isInteger(n) || n < min) {
      this.error('E014', `argument '${key}' must be an integer ≥ ${min}, got ${n}`, args.get(key)!.range);
      return fallback;
    }
    return n;
  }
}

function nodes(node: CstNode, key: string): CstNode[] {
  return child(node, key).filter((c): c is CstNode => !('image' in c));
}

function describe(t: Term): string {
  switch (t.kind) {
    case 'number':
      return `the number ${t.value}`;
    case 'string':
      return `the string "${t.value}"`;
    case 'list':
      return 'a list';
    case 'call':
      return `'${t.name}'`;
  }
}

function describeValue(v: Value): string {
  return v.kind === 'name' ? `'${v.value}'` : v.kind === 'list' ? 'a list' : v.kind === 'string' ? `"${v.value}"` : String(v.value);
}

