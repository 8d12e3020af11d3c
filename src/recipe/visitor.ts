/**
 * The recipe visitor: turns the parsed syntax tree (src/recipe/syntax.ts) into a normalized `Recipe`, one
 * statement at a time. Every problem becomes a Diagnostic with the span of the offending text and, for
 * misspellings, a suggestion.
 */
import { didYouMean, type Diagnostic } from '../diagnostics.js';
import { LAYER_ROLES, RENAMED_ROLES, ROLE_GROUPS } from '../quant/layers.js';
import { Op } from '../ir/ops.js';
import { DEFAULT_FLOAT16_KEEP, FLOAT16_REGIONS, isKeepName } from '../passes/convert-float16.js';
import type { ActivationQuantSpec, Granularity, GroupBudget, RangeMethod, Rounding, WeightQuantSpec } from '../quant/plan.js';
import { defaultAutoGroup, defaultInputSpec, defaultRecipe, defaultWeightSpec } from './defaults.js';
import { LIMITS, MSE_EXPONENT, SETTINGS, defaultOf, type Locate, type SettingId } from './settings.js';
import type { Argument, Call, Range, RecipeSyntax, Statement, Term, Value } from './syntax.js';
import type { Recipe, Selector, SourceRef, TimestepStrategy } from './types.js';

/** Selector words that are not roles. */
const SELECTOR_WORDS = ['all', 'first', 'last', 'op', 'name', 'regex'];

/**
 * Builds a Recipe from the syntax tree of a `.qrecipe`, collecting diagnostics into `diagnostics`. Setting values
 * are stored as written (typed, not yet bounded); `locate` gives where each was written, for `validateSettings`.
 */
export function visitRecipe(tree: RecipeSyntax, file: string, diagnostics: Diagnostic[]): { recipe: Recipe; locate: Locate } {
  const v = new RecipeVisitor(file, diagnostics);
  const recipe = v.recipe(tree);
  return { recipe, locate: (site) => v.spanOf(site.holder, site.key) };
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
  /** Where each setting value was written: holder object → key → range. */
  private readonly written = new Map<object, Map<string | number, Range>>();

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

  /** The span of the value stored at `holder[key]`, when it was written in the text. */
  spanOf(holder: object, key: string | number): SourceRef | undefined {
    const range = this.written.get(holder)?.get(key);
    return range ? { file: this.file, ...range } : undefined;
  }

  recipe(tree: RecipeSyntax): Recipe {
    this.recipeValue = defaultRecipe(tree.name);
    for (const statement of tree.statements) this.statement(statement);
    for (const spec of this.inheritsRange) spec.range = this.recipeValue.calibrate.range;
    return this.recipeValue;
  }

  private statement(node: Statement): void {
    switch (node.kind) {
      case 'quantize':
        return this.quantize(node);
      case 'keep':
        return this.keep(node);
      case 'transform':
        return this.transform(node);
      case 'block':
        return this.block(node);
      case 'setting':
        return this.setting(node);
    }
  }

  private setting(node: Extract<Statement, { kind: 'setting' }>): void {
    const term = node.value;
    const r = this.recipeValue;
    switch (node.name) {
      case 'target':
        return this.wordInto('target', term, r, 'target');
      case 'precision':
        return this.precision(term, this.source(node.range));
      case 'seed':
        return this.numberInto('seed', term, r, 'seed');
      default:
        this.unknown('E010', 'statement', node.name, ['target', 'precision', 'seed', 'diffusion', 'calibrate', 'search', 'quantize', 'keep', 'transform'], node.at);
    }
  }

  /** `precision fp32`, `precision fp16`, `precision fp16(keep: [LayerNormalization, Softmax, embed.time])`. */
  private precision(term: Term, source: SourceRef | undefined): void {
    const call = this.callTerm(term, 'precision');
    if (!call) return;
    if (call.name !== 'fp32' && call.name !== 'fp16') return this.unknown('E015', 'precision', call.name, SETTINGS.precision.values, call.range);
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
    if (keep.left.items.length > LIMITS.list.max) return this.error('E014', `the keep list has ${keep.left.items.length} entries; at most ${LIMITS.list.max}`, keep.range);
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

  private block(node: Extract<Statement, { kind: 'block' }>): void {
    const cursor = new Cursor(node.terms);
    switch (node.name) {
      case 'diffusion':
        return this.settings(cursor, 'diffusion', {
          schedule: (t) => this.schedule(t),
          prediction: (t) => this.wordInto('diffusion.prediction', t, this.recipeValue.diffusion, 'prediction'),
          sampler: (t) => this.sampler(t),
          guidance: (t) => this.numberInto('diffusion.guidance', t, this.recipeValue.diffusion, 'guidance'),
          classes: (t) => this.numberInto('diffusion.classes', t, this.recipeValue.diffusion, 'classes'),
          resolution: (t) => this.resolution(t, cursor),
          'timestep-scale': (t) => this.numberInto('diffusion.timestep-scale', t, this.recipeValue.diffusion, 'timestepScale'),
        });
      case 'calibrate':
        return this.settings(cursor, 'calibrate', {
          samples: (t) => this.numberInto('calibrate.samples', t, this.recipeValue.calibrate, 'samples'),
          batch: (t) => this.numberInto('calibrate.batch', t, this.recipeValue.calibrate, 'batch'),
          sampler: (t) => this.sampler(t),
          timesteps: (t) => this.timesteps(t),
          range: (t) => {
            const range = this.range(t);
            if (range) this.recipeValue.calibrate.range = range;
          },
          ema: (t) => this.numberInto('calibrate.ema', t, this.recipeValue.calibrate, 'ema'),
          cache: (t) => this.stringInto(t, 'cache', 'a file name'),
          prompts: (t) => this.stringInto(t, 'prompts', 'a file name'),
          conditioning: (t) => this.stringInto(t, 'conditioning', 'a folder name'),
        });
      case 'search': {
        const s = this.recipeValue.search;
        return this.settings(cursor, 'search', {
          method: (t) => this.wordInto('search.method', t, s, 'method'),
          population: (t) => this.numberInto('search.population', t, s, 'population'),
          top: (t) => this.numberInto('search.top', t, s, 'topK'),
          mutations: (t) => this.numberInto('search.mutations', t, s, 'mutations'),
          crossovers: (t) => this.numberInto('search.crossovers', t, s, 'crossovers'),
          epochs: (t) => this.numberInto('search.epochs', t, s, 'epochs'),
          'mutation-rate': (t) => this.numberInto('search.mutation-rate', t, s, 'mutationRate'),
          fitness: (t) => this.wordInto('search.fitness', t, s, 'fitness'),
          judge: (t) => this.wordInto('search.judge', t, s, 'judge'),
          'judge-samples': (t) => this.numberInto('search.judge-samples', t, s, 'judgeSamples'),
        });
      }
      default:
        this.unknown('E011', 'block', node.name, ['diffusion', 'calibrate', 'search'], node.at);
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

  /** A path setting of the calibrate block: a quoted string, kept as written (relative to the recipe). */
  private stringInto(t: Term, key: 'cache' | 'prompts' | 'conditioning', what: string): void {
    if (t.kind === 'string') this.recipeValue.calibrate[key] = t.value;
    else this.error('E014', `${key} expects ${what} in quotes`, t.range);
  }

  /**
   * `resolution 64` (square) or `resolution 64x96` (height × width): the lexer reads `64x96` as the number 64
   * and the name `x96` written against it, which this joins.
   */
  private resolution(t: Term, cursor: Cursor): void {
    const r = this.recipeValue.diffusion.resolution;
    const next = cursor.peek();
    const width = next?.kind === 'call' && next.args === undefined && /^x\d+$/.test(next.name) && t.kind === 'number' && next.range.offset === t.range.offset + t.range.length ? next : undefined;
    const stray = next?.kind === 'call' && /^x/.test(next.name) && !width ? next : undefined;
    if (t.kind !== 'number' || stray) {
      // A stray `x…` belongs to the size, not a setting of its own.
      if (stray) cursor.next();
      return this.error('E014', `resolution expects a size like 64 or a height x width like 64x96, found ${describe(t)}${stray ? ` ${describe(stray)}` : ''}`, t.range);
    }
    this.numberInto('diffusion.resolution', t, r, 'height');
    if (!width) return this.numberInto('diffusion.resolution', t, r, 'width');
    cursor.next();
    r.width = Number(width.name.slice(1));
    this.record(r, 'width', width.range);
  }

  private schedule(t: Term): void {
    const call = this.callTerm(t, 'schedule');
    if (!call) return;
    switch (call.name) {
      case 'sidecar':
        this.args(call, []);
        this.recipeValue.diffusion.schedule = { kind: 'sidecar' };
        return;
      case 'linear':
      case 'scaled-linear': {
        const args = this.args(call, ['start', 'end', 'steps']);
        const schedule = { kind: call.name, betaStart: defaultOf('schedule.start'), betaEnd: defaultOf('schedule.end'), steps: defaultOf('schedule.steps') };
        this.argInto(args, 'start', schedule, 'betaStart');
        this.argInto(args, 'end', schedule, 'betaEnd');
        this.argInto(args, 'steps', schedule, 'steps');
        this.recipeValue.diffusion.schedule = schedule;
        return;
      }
      case 'cosine': {
        const schedule = { kind: 'cosine' as const, steps: defaultOf('schedule.steps') };
        this.argInto(this.args(call, ['steps']), 'steps', schedule, 'steps');
        this.recipeValue.diffusion.schedule = schedule;
        return;
      }
      case 'config':
        this.args(call, []);
        this.recipeValue.diffusion.schedule = { kind: 'config' };
        return;
      case 'flow': {
        const args = this.args(call, ['shift', 'steps']);
        const schedule = { kind: 'flow' as const, shift: defaultOf('schedule.shift'), steps: defaultOf('schedule.steps') };
        this.argInto(args, 'shift', schedule, 'shift');
        this.argInto(args, 'steps', schedule, 'steps');
        this.recipeValue.diffusion.schedule = schedule;
        return;
      }
      default:
        this.unknown('E015', 'schedule', call.name, ['sidecar', 'config', 'linear', 'scaled-linear', 'cosine', 'flow'], call.range);
    }
  }

  private sampler(t: Term): void {
    const call = this.callTerm(t, 'sampler');
    if (!call) return;
    if (call.name === 'ddim') {
      const args = this.args(call, ['steps', 'eta']);
      const sampler = { kind: 'ddim' as const, steps: defaultOf('ddim.steps'), eta: defaultOf('ddim.eta') };
      this.argInto(args, 'steps', sampler, 'steps');
      this.argInto(args, 'eta', sampler, 'eta');
      this.recipeValue.diffusion.sampler = sampler;
    } else if (call.name === 'ddpm' || call.name === 'euler' || call.name === 'flow-euler') {
      const sampler: { kind: typeof call.name; steps: number } = { kind: call.name, steps: defaultOf(`${call.name}.steps`) };
      this.argInto(this.args(call, ['steps']), 'steps', sampler, 'steps');
      this.recipeValue.diffusion.sampler = sampler;
    } else {
      this.unknown('E015', 'sampler', call.name, ['ddim', 'ddpm', 'euler', 'flow-euler'], call.range);
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
        const evenly = { kind: 'evenly-spaced' as const, count: defaultOf('evenly-spaced.count') };
        this.argInto(this.args(call, ['count']), 'count', evenly, 'count');
        strategy = evenly;
        break;
      }
      case 'ndtc': {
        const args = this.args(call, ['mean', 'std']);
        const ndtc = { kind: 'ndtc' as const, mean: defaultOf('ndtc.mean'), std: defaultOf('ndtc.std') };
        this.argInto(args, 'mean', ndtc, 'mean');
        this.argInto(args, 'std', ndtc, 'std');
        strategy = ndtc;
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
        const range = { kind: 'percentile' as const, percentile: defaultOf('percentile.p') };
        this.argInto(this.args(call, ['p']), 'p', range, 'percentile');
        return range;
      }
      case 'mse': {
        const range = { kind: 'lp' as const, p: MSE_EXPONENT, gridSize: defaultOf('lp.grid') };
        this.argInto(this.args(call, ['grid']), 'grid', range, 'gridSize');
        return range;
      }
      case 'lp': {
        const args = this.args(call, ['p', 'grid']);
        const range = { kind: 'lp' as const, p: defaultOf('lp.p'), gridSize: defaultOf('lp.grid') };
        this.argInto(args, 'p', range, 'p');
        this.argInto(args, 'grid', range, 'gridSize');
        return range;
      }
      default:
        this.unknown('E015', 'range method', call.name, ['minmax', 'percentile', 'mse', 'lp'], call.range);
        return undefined;
    }
  }

  private quantize(node: Extract<Statement, { kind: 'quantize' }>): void {
    const rule: Recipe['rules'][number] = { select: this.selectors(node.include), except: this.selectors(node.exclude), source: this.source(node.range) };
    for (const spec of node.specs) {
      const cursor = new Cursor(spec.terms);
      if (spec.kind === 'weight') {
        if (rule.weight) this.error('E016', 'this rule already has a weight spec', spec.at);
        rule.weight = this.weightSpec(cursor, spec.at);
      } else {
        if (rule.input) this.error('E016', 'this rule already has an input spec', spec.at);
        rule.input = this.inputSpec(cursor, spec.at);
      }
    }
    if (!rule.weight && !rule.input) {
      this.diagnostics.push({ severity: 'warning', code: 'W002', message: 'quantize rule has neither a weight nor an input spec; it changes nothing', span: { file: this.file, ...node.range } });
    }
    this.recipeValue.rules.push(rule);
  }

  /** `int4|int8|uint4|uint8|intN` → bits and signedness. */
  /** The storage type `int4|int8|uint4|uint8|intN`; the spec it starts is `record`ed at its bits (bounds: the table's). */
  private storage(t: Term | undefined, what: string, at: Range): { bits: number; signed: boolean; range: Range } | undefined {
    const word = t?.kind === 'call' && t.args === undefined ? t.name : undefined;
    const match = word ? /^(u?)int(\d+)$/.exec(word) : null;
    if (!match) {
      this.error('E031', `${what} needs a type first: int8, int4, uint8, uint4 (or intN for 2 ≤ N ≤ 8)`, t?.range ?? at);
      return undefined;
    }
    return { bits: Number(match[2]), signed: match[1] === '', range: t!.range };
  }

  private weightSpec(cursor: Cursor, at: Range): WeightQuantSpec | undefined {
    const storage = this.storage(cursor.next(), 'weight', at);
    if (!storage) return undefined;
    const spec = defaultWeightSpec(storage.bits, storage.signed);
    this.record(spec, 'bits', storage.range);
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
      const group = { kind: 'group' as const, size: t.value };
      this.record(group, 'size', t.range);
      return group;
    }
    if (t?.kind === 'call' && t.name === 'auto') {
      const args = this.args(t, ['candidates', 'budget']);
      const auto = defaultAutoGroup();
      const candidatesArg = args.get('candidates');
      if (candidatesArg) {
        const list = candidatesArg.left;
        if (list.kind !== 'list' || candidatesArg.comparison || list.items.length === 0 || list.items.some((i) => i.kind !== 'number')) {
          this.error('E032', 'auto candidates must be a list of positive integers, e.g. [32, 64, 128]', candidatesArg.range);
        } else if (list.items.length > LIMITS.list.max) {
          this.error('E032', `auto candidates list ${list.items.length} sizes; at most ${LIMITS.list.max}`, candidatesArg.range);
        } else {
          auto.candidates = list.items.map((i) => (i as { value: number }).value);
          list.items.forEach((item, j) => this.record(auto.candidates, j, item.range));
        }
      }
      const budget = args.get('budget');
      if (budget) {
        const name = budget.left.kind === 'name' ? budget.left.value : undefined;
        const right = budget.comparison?.right;
        let groupBudget: GroupBudget | undefined;
        if (right?.kind === 'number' && name === 'mean' && budget.comparison?.op === '>=') groupBudget = { kind: 'mean-group-size', min: right.value };
        else if (right?.kind === 'number' && name === 'bits' && budget.comparison?.op === '<=') groupBudget = { kind: 'average-bits', max: right.value };
        if (groupBudget) {
          this.record(groupBudget, groupBudget.kind === 'mean-group-size' ? 'min' : 'max', right!.range);
          auto.budget = groupBudget;
        } else this.error('E032', "auto budget must read 'mean >= N' (the mean group size over the layers) or 'bits <= B' (average stored bits per weight, scales and zero points included)", budget.range);
      }
      return auto;
    }
    this.error('E032', "'group' needs a size (group 128) or auto(candidates: [...], budget: mean >= N | bits <= B)", t?.range ?? at);
    return undefined;
  }

  private rounding(t: Term | undefined, at: Range): Rounding | undefined {
    if (t?.kind === 'call' && t.name === 'nearest') return { kind: 'nearest' };
    if (t?.kind === 'call' && t.name === 'gptq') {
      const args = this.args(t, ['block', 'damp']);
      const gptq = { kind: 'gptq' as const, blockSize: defaultOf('gptq.block'), damp: defaultOf('gptq.damp') };
      this.argInto(args, 'block', gptq, 'blockSize');
      this.argInto(args, 'damp', gptq, 'damp');
      return gptq;
    }
    if (t?.kind === 'call') this.unknown('E015', 'rounding', t.name, ['nearest', 'gptq'], t.range);
    else this.error('E013', "'rounding' needs nearest or gptq(block: 128, damp: 0.01)", t?.range ?? at);
    return undefined;
  }

  private inputSpec(cursor: Cursor, at: Range): ActivationQuantSpec | undefined {
    const storage = this.storage(cursor.next(), 'input', at);
    if (!storage) return undefined;
    const spec = defaultInputSpec(storage.bits, this.recipeValue.calibrate.range);
    this.record(spec, 'bits', storage.range);
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
          const mode = { kind: 'per-timestep' as const, groups: defaultOf('per-timestep.groups') };
          this.argInto(this.args(t as Call, ['groups']), 'groups', mode, 'groups');
          spec.mode = mode;
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
              const mode = { kind: 'dynamic' as const, granularity: 'per-token-group' as const, groupSize: followsWeight ? ('weight' as const) : defaultOf('per-token-group.size') };
              if (!followsWeight) this.argInto(args, 'size', mode, 'groupSize');
              spec.mode = mode;
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

  private keep(node: Extract<Statement, { kind: 'keep' }>): void {
    this.recipeValue.keep.push({ select: this.selectors(node.include), except: this.selectors(node.exclude), source: this.source(node.range) });
  }

  private transform(node: Extract<Statement, { kind: 'transform' }>): void {
    const call = node.call;
    const select = this.selectors(node.include);
    const except = this.selectors(node.exclude);
    const source = this.source(node.range);
    if (call.name === 'smoothquant') {
      const transform = { kind: 'smoothquant' as const, alpha: defaultOf('smoothquant.alpha'), select, except, source };
      this.argInto(this.args(call, ['alpha']), 'alpha', transform, 'alpha');
      this.recipeValue.transforms.push(transform);
    } else if (call.name === 'dilate') {
      const transform = { kind: 'dilate' as const, maxScale: defaultOf('dilate.max'), select, except, source };
      this.argInto(this.args(call, ['max']), 'max', transform, 'maxScale');
      this.recipeValue.transforms.push(transform);
    } else {
      this.unknown('E043', 'transform', call.name, ['smoothquant', 'dilate'], call.range);
    }
  }

  private selectors(calls: Call[]): Selector[] {
    const out: Selector[] = [];
    for (const call of calls) {
      const one = this.selector(call);
      if (one) out.push(one);
    }
    return out;
  }

  private selector(call: Call): Selector | undefined {
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
    const renamed = RENAMED_ROLES.get(call.name);
    if (renamed) this.error('E020', `unknown layer role '${call.name}' (renamed '${renamed}')`, call.range);
    else this.unknown('E020', 'layer role or selector', call.name, [...LAYER_ROLES, ...ROLE_GROUPS, ...SELECTOR_WORDS], call.range);
    return undefined;
  }

  // -- small typed readers -------------------------------------------------------------------------

  private source(range: Range): SourceRef {
    return { file: this.file, ...range };
  }

  /** Notes where the value at `holder[key]` was written (for validateSettings' diagnostics). */
  private record(holder: object, key: string | number, range: Range): void {
    let keys = this.written.get(holder);
    if (!keys) this.written.set(holder, (keys = new Map()));
    keys.set(key, range);
  }

  /** Reads a number term into `holder[key]`; its bounds are validateSettings' (the table's) to judge. */
  private numberInto<H extends object>(id: SettingId, t: Term, holder: H, key: keyof H & string): void {
    if (t.kind !== 'number') return this.error('E014', `${SETTINGS[id].written} expects a number, found ${describe(t)}`, t.range);
    (holder as Record<string, unknown>)[key] = t.value;
    this.record(holder, key, t.range);
  }

  /** Reads one of the table's words into `holder[key]`, suggesting the nearest for a misspelling. */
  private wordInto<H extends object>(id: SettingId, t: Term, holder: H, key: keyof H & string): void {
    const setting = SETTINGS[id];
    if (setting.kind !== 'enum') throw new Error(`setting ${id} is not an enum`);
    if (t.kind !== 'call' || t.args !== undefined) return this.error('E014', `${setting.written} expects a name, found ${describe(t)}`, t.range);
    if (!(setting.values as readonly string[]).includes(t.name)) return this.unknown('E015', id.split('.').at(-1)!, t.name, setting.values, t.range);
    (holder as Record<string, unknown>)[key] = t.name;
    this.record(holder, key, t.range);
  }

  /** Reads argument `name` (when given) into `holder[key]`; the holder already has the table's default. */
  private argInto<H extends object>(args: Map<string, Argument>, name: string, holder: H, key: keyof H & string): void {
    const arg = args.get(name);
    if (!arg) return;
    if (arg.left.kind !== 'number' || arg.comparison) return this.error('E014', `argument '${name}' expects a number, found ${describeValue(arg.left)}`, arg.range);
    (holder as Record<string, unknown>)[key] = arg.left.value;
    this.record(holder, key, arg.left.range);
  }

  private callTerm(t: Term, what: string): Call | undefined {
    if (t.kind === 'call') return t;
    this.error('E014', `${what} expects a name like ddim(steps: 50), found ${describe(t)}`, t.range);
    return undefined;
  }

  /** Named arguments of a call (positional ones take the names in order); unknown names are errors. */
  private args(call: Call, names: string[]): Map<string, Argument> {
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

