/**
 * The `.qrecipe` grammar: chevrotain tokens and a CstParser. The syntax is small and regular — statements
 * introduced by a keyword, settings as `name value` pairs, calls like `ddim(steps: 50)` — so the parser only
 * builds structure; meaning (which settings exist, their types, defaults) lives in the recipe visitor
 * (src/recipe/visitor.ts), where every error gets a span and a "did you mean".
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type * as Chevrotain from 'chevrotain';
import type { CstNode, IToken, TokenType } from 'chevrotain';

// chevrotain's package entry (lib/src/api.js) imports lodash-es as hundreds of modules: 0.44 s of every CLI start.
// The package also ships the same code as one ESM file (lib/chevrotain.mjs, in its "files"), which loads in 0.11 s.
const chevrotainEntry = createRequire(import.meta.url).resolve('chevrotain');
const { CstParser, Lexer, createToken } = (await import(pathToFileURL(join(dirname(chevrotainEntry), '..', 'chevrotain.mjs')).href)) as typeof Chevrotain;

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

/** The lexer (positions tracked in full: offsets, lines and columns). */
export const recipeLexer = new Lexer(allTokens, { positionTracking: 'full', ensureOptimizations: false });

/** The recipe parser; `recipe()` is the entry rule. Recovers from errors to report several per run. */
export class RecipeParser extends CstParser {
  constructor() {
    // onlyOffset: every CST node carries its span, so the visitor reads ranges without walking subtrees.
    super(allTokens, { recoveryEnabled: true, maxLookahead: 3, nodeLocationTracking: 'onlyOffset' });
    this.performSelfAnalysis();
  }

  /** recipe := 'recipe' STRING '{' statement* '}' */
  public recipe = this.RULE('recipe', () => {
    this.CONSUME(Recipe);
    this.CONSUME(StringLiteral, { LABEL: 'name' });
    this.CONSUME(LCurly);
    this.MANY(() => this.SUBRULE(this.statement));
    this.CONSUME(RCurly);
  });

  /** statement := quantize | keep | transform | block | setting */
  public statement = this.RULE('statement', () => {
    this.OR([
      { ALT: () => this.SUBRULE(this.quantizeStatement) },
      { ALT: () => this.SUBRULE(this.keepStatement) },
      { ALT: () => this.SUBRULE(this.transformStatement) },
      { GATE: () => this.LA(2).tokenType === LCurly, ALT: () => this.SUBRULE(this.block) },
      { ALT: () => this.SUBRULE(this.setting) },
    ]);
  });

  /** quantize := 'quantize' selectors ('except' selectors)? '{' spec* '}' */
  public quantizeStatement = this.RULE('quantizeStatement', () => {
    this.CONSUME(Quantize);
    this.SUBRULE(this.selectorList, { LABEL: 'include' });
    this.OPTION(() => {
      this.CONSUME(Except);
      this.SUBRULE2(this.selectorList, { LABEL: 'exclude' });
    });
    this.CONSUME(LCurly);
    this.MANY(() => this.SUBRULE(this.spec));
    this.CONSUME(RCurly);
  });

  /** spec := ('weight' | 'input') term* */
  public spec = this.RULE('spec', () => {
    this.OR([{ ALT: () => this.CONSUME(Weight, { LABEL: 'kind' }) }, { ALT: () => this.CONSUME(Input, { LABEL: 'kind' }) }]);
    this.MANY(() => this.SUBRULE(this.term));
  });

  /** keep := 'keep' selectors ('except' selectors)? */
  public keepStatement = this.RULE('keepStatement', () => {
    this.CONSUME(Keep);
    this.SUBRULE(this.selectorList, { LABEL: 'include' });
    this.OPTION(() => {
      this.CONSUME(Except);
      this.SUBRULE2(this.selectorList, { LABEL: 'exclude' });
    });
  });

  /** transform := 'transform' call 'on' selectors ('except' selectors)? */
  public transformStatement = this.RULE('transformStatement', () => {
    this.CONSUME(Transform);
    this.SUBRULE(this.call);
    this.CONSUME(On);
    this.SUBRULE(this.selectorList, { LABEL: 'include' });
    this.OPTION(() => {
      this.CONSUME(Except);
      this.SUBRULE2(this.selectorList, { LABEL: 'exclude' });
    });
  });

  /** block := NAME '{' term* '}' — a settings block (`calibrate { samples 256 … }`). */
  public block = this.RULE('block', () => {
    this.CONSUME(Identifier, { LABEL: 'name' });
    this.CONSUME(LCurly);
    this.MANY(() => this.SUBRULE(this.term));
    this.CONSUME(RCurly);
  });

  /** setting := NAME term — one top-level setting (`target webgpu`). */
  public setting = this.RULE('setting', () => {
    this.CONSUME(Identifier, { LABEL: 'name' });
    this.SUBRULE(this.term);
  });

  /** selectors := selector (',' selector)* */
  public selectorList = this.RULE('selectorList', () => {
    this.AT_LEAST_ONE_SEP({ SEP: Comma, DEF: () => this.SUBRULE(this.call) });
  });

  /** term := NUMBER | STRING | list | call | comparison-operator (inside settings) */
  public term = this.RULE('term', () => {
    this.OR([
      { ALT: () => this.CONSUME(NumberLiteral) },
      { ALT: () => this.CONSUME(StringLiteral) },
      { ALT: () => this.SUBRULE(this.list) },
      { ALT: () => this.SUBRULE(this.call) },
    ]);
  });

  /** call := NAME ('(' args? ')')? */
  public call = this.RULE('call', () => {
    this.CONSUME(Identifier, { LABEL: 'name' });
    this.OPTION(() => {
      this.CONSUME(LParen);
      this.MANY_SEP({ SEP: Comma, DEF: () => this.SUBRULE(this.argument) });
      this.CONSUME(RParen);
    });
  });

  /**
   * argument := ((NAME | 'keep') ':')? value (COMPARISON value)? — `steps: 50`, `budget: mean >= 128`,
   * `[32, 64]`, `keep: [Softmax]` (the one keyword that is also an argument name: `precision fp16(keep: …)`).
   */
  public argument = this.RULE('argument', () => {
    this.OPTION(() => {
      this.OR([{ ALT: () => this.CONSUME(Identifier, { LABEL: 'key' }) }, { ALT: () => this.CONSUME(Keep, { LABEL: 'key' }) }]);
      this.CONSUME(Colon);
    });
    this.SUBRULE(this.value, { LABEL: 'left' });
    this.OPTION2(() => {
      this.CONSUME(Comparison);
      this.SUBRULE2(this.value, { LABEL: 'right' });
    });
  });

  /** value := NUMBER | STRING | NAME | 'weight' | list — `weight` as in `per-token-group(size: weight)`, read as a name. */
  public value = this.RULE('value', () => {
    this.OR([
      { ALT: () => this.CONSUME(NumberLiteral) },
      { ALT: () => this.CONSUME(StringLiteral) },
      { ALT: () => this.CONSUME(Identifier) },
      { ALT: () => this.CONSUME(Weight, { LABEL: 'Identifier' }) },
      { ALT: () => this.SUBRULE(this.list) },
    ]);
  });

  /** list := '[' (value (',' value)*)? ']' */
  public list = this.RULE('list', () => {
    this.CONSUME(LBracket);
    this.MANY_SEP({ SEP: Comma, DEF: () => this.SUBRULE(this.value) });
    this.CONSUME(RBracket);
  });
}

/** One shared parser instance (chevrotain parsers are reusable: set `input`, call the rule). */
export const recipeParser = new RecipeParser();

/** Lexes and parses `text`; returns the CST (possibly partial after recovery) and the raw lexer/parser errors. */
export function parseRecipeCst(text: string): { cst: CstNode | undefined; lexErrors: { offset: number; length: number; message: string }[]; parseErrors: { token: IToken; message: string }[] } {
  const lexed = recipeLexer.tokenize(text);
  recipeParser.input = lexed.tokens;
  const cst = recipeParser.recipe();
  return {
    cst,
    lexErrors: lexed.errors.map((e) => ({ offset: e.offset, length: e.length, message: e.message })),
    parseErrors: recipeParser.errors.map((e) => ({ token: e.token, message: e.message })),
  };
}
