/**
 * The `.qrecipe` grammar: chevrotain tokens and a parser whose embedded actions build the syntax tree of
 * src/recipe/syntax.ts directly (no CST). The syntax is small and regular — statements introduced by a keyword,
 * settings as `name value` pairs, calls like `ddim(steps: 50)` — so the parser only builds structure; meaning
 * (which settings exist, their types, defaults) lives in the recipe visitor (src/recipe/visitor.ts), where every
 * error gets a span and a "did you mean".
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type * as Chevrotain from 'chevrotain';
import type { IOrAlt, IToken, TokenType } from 'chevrotain';
import { between, tokenRange, unquote, type Argument, type Call, type RecipeSyntax, type Spec, type Statement, type Term, type Value } from '../src/recipe/syntax.js';

// chevrotain's package entry (lib/src/api.js) imports lodash-es as hundreds of modules: 0.44 s of every CLI start.
// The package also ships the same code as one ESM file (lib/chevrotain.mjs, in its "files"), which loads in 0.11 s.
const chevrotainEntry = createRequire(import.meta.url).resolve('chevrotain');
const { EmbeddedActionsParser, Lexer, createToken } = (await import(pathToFileURL(join(dirname(chevrotainEntry), '..', 'chevrotain.mjs')).href)) as typeof Chevrotain;

export const WhiteSpace = createToken({ name: 'WhiteSpace', pattern: /[ \t\r\n]+/, group: Lexer.SKIPPED });
export const Comment = createToken({ name: 'Comment', pattern: /(#|\/\/)[^\n]*/, group: 'comments' });
export const StringLiteral = createToken({ name: 'StringLiteral', pattern: /"(?:[^"\\\n]|\\.)*"/ });
export const NumberLiteral = createToken({ name: 'NumberLiteral', pattern: /-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?/ });
/** Names: letters, digits, `_`, `-` and `.` inside (`attn.qkv`, `per-channel`, `random-distinct`). */
export const Identifier = createToken({ name: 'Identifier', pattern: /[A-Za-z_][A-Za-z0-9_]*(?:[.-][A-Za-z0-9_]+)*/ });

function keyword(word: string): TokenType {
  return createToken({ name: word[0]!.toUpperCase() + word.slice(1), pattern: new RegExp(`${word}(?![A-Za-z0-9_.-])`), longer_alt: Identifier });
}

export const Recipe = keyword('recipe');
export const Quantize = keyword('quantize');
export const Keep = keyword('keep');
export const Except = keyword('except');
export const Transform = keyword('transform');
export const On = keyword('on');
export const Weight = keyword('weight');
export const Input = keyword('input');

export const LCurly = createToken({ name: 'LCurly', pattern: /\{/ });
export const RCurly = createToken({ name: 'RCurly', pattern: /\}/ });
export const LParen = createToken({ name: 'LParen', pattern: /\(/ });
export const RParen = createToken({ name: 'RParen', pattern: /\)/ });
export const LBracket = createToken({ name: 'LBracket', pattern: /\[/ });
export const RBracket = createToken({ name: 'RBracket', pattern: /\]/ });
export const Comma = createToken({ name: 'Comma', pattern: /,/ });
export const Colon = createToken({ name: 'Colon', pattern: /:/ });
export const Comparison = createToken({ name: 'Comparison', pattern: /[<>]=?|==/ });

/** The statement keywords (the words a recipe's statements start with, besides setting blocks). */
export const KEYWORDS = ['recipe', 'quantize', 'keep', 'except', 'transform', 'on', 'weight', 'input'] as const;

export const allTokens: TokenType[] = [
  WhiteSpace, Comment, StringLiteral, NumberLiteral,
  Recipe, Quantize, Keep, Except, Transform, On, Weight, Input,
  Identifier, LCurly, RCurly, LParen, RParen, LBracket, RBracket, Comma, Colon, Comparison,
];

/**
 * The lexer. Tokens carry their start offset only: spans are offsets, their ends come from the token's image
 * (syntax.ts `between`), and lines and columns are worked out when a diagnostic is rendered — tracking them per
 * token cost half the lexing time of a 20 000-rule recipe.
 */
export const recipeLexer = new Lexer(allTokens, { positionTracking: 'onlyOffset', ensureOptimizations: false });

/**
 * The recipe parser; `recipe()` is the entry rule. Recovers from errors to report several per run. The actions
 * only store tokens and subrule results, never read into them: during recovery a subrule's result may be
 * undefined, and the tree of a recipe with errors is discarded anyway. Each statement's range runs from the
 * token it starts at (`LA(1)` on entry) to the last one it consumed (`LA(0)` on exit).
 */
export class RecipeParser extends EmbeddedActionsParser {
  constructor() {
    super(allTokens, { recoveryEnabled: true, maxLookahead: 3 });
    this.performSelfAnalysis();
  }

  /** recipe := 'recipe' STRING '{' statement* '}' */
  public recipe = this.RULE('recipe', (): RecipeSyntax => {
    this.CONSUME(Recipe);
    const name = this.CONSUME(StringLiteral, { LABEL: 'name' });
    this.CONSUME(LCurly);
    const statements: Statement[] = [];
    this.MANY(() => {
      statements.push(this.SUBRULE(this.statement));
    });
    this.CONSUME(RCurly);
    return { name: unquote(name.image), statements };
  });

  /** statement := quantize | keep | transform | block | setting */
  public statement = this.RULE('statement', (): Statement => this.OR(this.statementAlternatives));
  private readonly statementAlternatives: IOrAlt<Statement>[] = [
    { ALT: () => this.SUBRULE(this.quantizeStatement) },
    { ALT: () => this.SUBRULE(this.keepStatement) },
    { ALT: () => this.SUBRULE(this.transformStatement) },
    { GATE: () => this.LA(2).tokenType === LCurly, ALT: () => this.SUBRULE(this.block) },
    { ALT: () => this.SUBRULE(this.setting) },
  ];

  /** quantize := 'quantize' selectors ('except' selectors)? '{' spec* '}' */
  public quantizeStatement = this.RULE('quantizeStatement', (): Statement => {
    const first = this.CONSUME(Quantize);
    const include = this.SUBRULE(this.selectorList, { LABEL: 'include' });
    let exclude: Call[] = [];
    this.OPTION(() => {
      this.CONSUME(Except);
      exclude = this.SUBRULE2(this.selectorList, { LABEL: 'exclude' });
    });
    this.CONSUME(LCurly);
    const specs: Spec[] = [];
    this.MANY(() => {
      specs.push(this.SUBRULE(this.spec));
    });
    const last = this.CONSUME(RCurly);
    return { kind: 'quantize', include, exclude, specs, range: between(first, last) };
  });

  /** spec := ('weight' | 'input') term* */
  public spec = this.RULE('spec', (): Spec => {
    this.OR(this.specAlternatives);
    const kind = this.LA(0);
    const terms: Term[] = [];
    this.MANY(() => {
      terms.push(this.SUBRULE(this.term));
    });
    return { kind: kind.tokenType === Weight ? 'weight' : 'input', at: tokenRange(kind), terms };
  });

  private readonly specAlternatives: IOrAlt<IToken>[] = [{ ALT: () => this.CONSUME(Weight, { LABEL: 'kind' }) }, { ALT: () => this.CONSUME(Input, { LABEL: 'kind' }) }];

  /** keep := 'keep' selectors ('except' selectors)? */
  public keepStatement = this.RULE('keepStatement', (): Statement => {
    const first = this.CONSUME(Keep);
    const include = this.SUBRULE(this.selectorList, { LABEL: 'include' });
    let exclude: Call[] = [];
    this.OPTION(() => {
      this.CONSUME(Except);
      exclude = this.SUBRULE2(this.selectorList, { LABEL: 'exclude' });
    });
    return { kind: 'keep', include, exclude, range: between(first, this.LA(0)) };
  });

  /** transform := 'transform' call 'on' selectors ('except' selectors)? */
  public transformStatement = this.RULE('transformStatement', (): Statement => {
    const first = this.CONSUME(Transform);
    const call = this.SUBRULE(this.call);
    this.CONSUME(On);
    const include = this.SUBRULE(this.selectorList, { LABEL: 'include' });
    let exclude: Call[] = [];
    this.OPTION(() => {
      this.CONSUME(Except);
      exclude = this.SUBRULE2(this.selectorList, { LABEL: 'exclude' });
    });
    return { kind: 'transform', call, include, exclude, range: between(first, this.LA(0)) };
  });

  /** block := NAME '{' term* '}' — a settings block (`calibrate { samples 256 … }`). */
  public block = this.RULE('block', (): Statement => {
    const name = this.CONSUME(Identifier, { LABEL: 'name' });
    this.CONSUME(LCurly);
    const terms: Term[] = [];
    this.MANY(() => {
      terms.push(this.SUBRULE(this.term));
    });
    const last = this.CONSUME(RCurly);
    return { kind: 'block', name: name.image, at: tokenRange(name), terms, range: between(name, last) };
  });

  /** setting := NAME term — one top-level setting (`target webgpu`). */
  public setting = this.RULE('setting', (): Statement => {
    const name = this.CONSUME(Identifier, { LABEL: 'name' });
    const value = this.SUBRULE(this.term);
    return { kind: 'setting', name: name.image, at: tokenRange(name), value, range: between(name, this.LA(0)) };
  });

  /** selectors := selector (',' selector)* */
  public selectorList = this.RULE('selectorList', (): Call[] => {
    const calls: Call[] = [];
    this.AT_LEAST_ONE_SEP({
      SEP: Comma,
      DEF: () => {
        calls.push(this.SUBRULE(this.call));
      },
    });
    return calls;
  });

  /** term := NUMBER | STRING | list | call | comparison-operator (inside settings) */
  public term = this.RULE('term', (): Term => this.OR(this.termAlternatives));
  private readonly termAlternatives: IOrAlt<Term>[] = [
    { ALT: () => numberOf(this.CONSUME(NumberLiteral)) },
    { ALT: () => stringOf(this.CONSUME(StringLiteral)) },
    { ALT: () => this.SUBRULE(this.list) },
    { ALT: () => this.SUBRULE(this.call) },
  ];

  /** call := NAME ('(' args? ')')? */
  public call = this.RULE('call', (): Call => {
    const name = this.CONSUME(Identifier, { LABEL: 'name' });
    let args: Argument[] | undefined;
    this.OPTION(() => {
      this.CONSUME(LParen);
      const written: Argument[] = [];
      this.MANY_SEP({
        SEP: Comma,
        DEF: () => {
          written.push(this.SUBRULE(this.argument));
        },
      });
      this.CONSUME(RParen);
      args = written;
    });
    const range = between(name, this.LA(0));
    return args === undefined ? { kind: 'call', name: name.image, range } : { kind: 'call', name: name.image, args, range };
  });

  /**
   * argument := ((NAME | 'keep') ':')? value (COMPARISON value)? — `steps: 50`, `budget: mean >= 128`,
   * `[32, 64]`, `keep: [Softmax]` (the one keyword that is also an argument name: `precision fp16(keep: …)`).
   */
  public argument = this.RULE('argument', (): Argument => {
    const first = this.LA(1);
    let key: string | undefined;
    this.OPTION(() => {
      key = this.OR([{ ALT: () => this.CONSUME(Identifier, { LABEL: 'key' }) }, { ALT: () => this.CONSUME(Keep, { LABEL: 'key' }) }]).image;
      this.CONSUME(Colon);
    });
    const left = this.SUBRULE(this.value, { LABEL: 'left' });
    let comparison: Argument['comparison'];
    this.OPTION2(() => {
      const op = this.CONSUME(Comparison).image;
      comparison = { op, right: this.SUBRULE2(this.value, { LABEL: 'right' }) };
    });
    const range = between(first, this.LA(0));
    if (key === undefined) return comparison === undefined ? { left, range } : { left, comparison, range };
    return comparison === undefined ? { key, left, range } : { key, left, comparison, range };
  });

  /** value := NUMBER | STRING | NAME | 'weight' | list — `weight` as in `per-token-group(size: weight)`, read as a name. */
  public value = this.RULE('value', (): Value => this.OR(this.valueAlternatives));
  private readonly valueAlternatives: IOrAlt<Value>[] = [
    { ALT: () => numberOf(this.CONSUME(NumberLiteral)) },
    { ALT: () => stringOf(this.CONSUME(StringLiteral)) },
    { ALT: () => nameOf(this.CONSUME(Identifier)) },
    { ALT: () => nameOf(this.CONSUME(Weight, { LABEL: 'Identifier' })) },
    { ALT: () => this.SUBRULE(this.list) },
  ];

  /** list := '[' (value (',' value)*)? ']' */
  public list = this.RULE('list', (): Extract<Term, { kind: 'list' }> => {
    const first = this.CONSUME(LBracket);
    const items: Value[] = [];
    this.MANY_SEP({
      SEP: Comma,
      DEF: () => {
        items.push(this.SUBRULE(this.value));
      },
    });
    const last = this.CONSUME(RBracket);
    return { kind: 'list', items, range: between(first, last) };
  });
}

function numberOf(token: IToken): Extract<Value, { kind: 'number' }> {
  return { kind: 'number', value: Number(token.image), range: tokenRange(token) };
}

function stringOf(token: IToken): Extract<Value, { kind: 'string' }> {
  return { kind: 'string', value: unquote(token.image), range: tokenRange(token) };
}

function nameOf(token: IToken): Extract<Value, { kind: 'name' }> {
  return { kind: 'name', value: token.image, range: tokenRange(token) };
}

/** One shared parser instance (chevrotain parsers are reusable: set `input`, call the rule). */
export const recipeParser = new RecipeParser();

/** Lexes and parses `text`; returns the syntax tree (meaningless after recovery: read it only without errors) and the raw lexer/parser errors. */
export function parseRecipeSyntax(text: string): { tree: RecipeSyntax | undefined; lexErrors: { offset: number; length: number; message: string }[]; parseErrors: { token: IToken; message: string }[] } {
  const lexed = recipeLexer.tokenize(text);
  recipeParser.input = lexed.tokens;
  const tree = recipeParser.recipe();
  return {
    tree,
    lexErrors: lexed.errors.map((e) => ({ offset: e.offset, length: e.length, message: e.message })),
    parseErrors: recipeParser.errors.map((e) => ({ token: e.token, message: e.message })),
  };
}
