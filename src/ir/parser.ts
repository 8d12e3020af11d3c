/**
 * Reads the text IR that `printer.ts` writes back into a `Model`, so that golden tests start from text (as
 * MLIR's and Binaryen's lit tests do) and a dump can be edited and read again. Literal tensors
 * (`f32[2] [0.1, -3]`, `f16[2] hex:003c00bc`) are read exactly; summarized ones (`f32[128x384] sha1:… min:…
 * max:…`, a bare shape, or a summary's rounded `f16[2] [1, -1]`) become opaque tensors that print the same
 * text again and refuse to be read.
 * `//` starts a comment that runs to the end of the line.
 *
 * Errors are `Diagnostic`s with a span (`file:line:col` when rendered); the parse stops at the first.
 * Not in the text, so not read back: doc strings, `metadata_props`, model-local functions, subgraph bodies
 * (`<graph sha1:…>` is refused), and graph inputs that are also initializers (printed as `init` only).
 */
import type { Diagnostic } from '../diagnostics.js';
import { Graph, Model, Node, Value, type Attribute, type Dim, type ValueType } from './core.js';
import { DataType, byteLengthOf, dataTypeFromName, dataTypeName, isKnownDataType } from './dtype.js';
import { opaqueTensor, typeText } from './printer.js';
import { Tensor, numelOf, packInt4 } from './tensor.js';

/** What `parseModelText` gives: a model, or the diagnostic that stopped it. */
export interface ParsedModel {
  model?: Model;
  diagnostics: Diagnostic[];
}

/** Diagnostic codes of the text-IR parser. */
export const IrTextCode = {
  /** The text does not follow the grammar (`expected …, found …`). */
  syntax: 'E100',
  /** A `%value` used before anything defines it. */
  undefinedValue: 'E101',
  /** A value defined twice (SSA). */
  duplicateValue: 'E102',
  /** A tensor literal whose values do not fit its element type or shape. */
  badTensor: 'E103',
  /** An element type name the IR does not know. */
  unknownType: 'E104',
  /** Something printed in a form that cannot be read back (a subgraph hash). */
  unreadable: 'E105',
  /** A graph output whose type differs from its value's. */
  outputType: 'E106',
} as const;

/** Parses text IR (as `printModel` writes it) into a model; `file` names the text in diagnostics. */
export function parseModelText(text: string, file = '<text>'): ParsedModel {
  try {
    return { model: new Parser(text, file).model(), diagnostics: [] };
  } catch (error) {
    if (error instanceof TextError) return { diagnostics: [error.diagnostic] };
    throw error;
  }
}

class TextError extends Error {
  constructor(readonly diagnostic: Diagnostic) {
    super(diagnostic.message);
  }
}

/** An unquoted value name; never ends with `:` (the printer quotes such names), so `%x: f32[2]` reads as x. */
const NAME = /[A-Za-z0-9_.:/-]*[A-Za-z0-9_./-]/y;
const WORD = /[A-Za-z_][A-Za-z0-9_]*/y;
const OP = /[A-Za-z0-9_.]+/y;
const NUMBER = /-?(?:Infinity|NaN|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)/y;
const INTEGER = /^-?\d+$/;
const HEX = /[0-9a-f]*/y;
const DOMAIN = /[A-Za-z0-9_.-]+/y;
const DTYPE = /[a-z][a-z0-9]*/y;

/** Integer element types, with the typed array that holds them (range checks are round trips through it). */
const INTEGER_ARRAYS: Partial<Record<DataType, new (length: number) => Int8Array | Uint8Array | Int16Array | Uint16Array | Int32Array | Uint32Array>> = {
  [DataType.INT8]: Int8Array,
  [DataType.UINT8]: Uint8Array,
  [DataType.INT16]: Int16Array,
  [DataType.UINT16]: Uint16Array,
  [DataType.INT32]: Int32Array,
  [DataType.UINT32]: Uint32Array,
};

/** A recursive-descent reader over the raw text (the grammar is line-shaped and context-dependent: `2x3` is a tensor shape, `2,3` a value shape). */
class Parser {
  private pos = 0;
  private readonly scope = new Map<string, Value>();

  constructor(
    private readonly text: string,
    private readonly file: string,
  ) {}

  /** `model ir_version=N opsets={…} [producer="…"]` then one graph, then nothing. */
  model(): Model {
    this.blank();
    this.keyword('model');
    this.keyword('ir_version=');
    const irVersion = this.integer();
    this.keyword('opsets={');
    const opsets: [string, number][] = [];
    if (!this.eat('}')) {
      do {
        this.space();
        const domain = this.match(DOMAIN, 'an opset domain');
        this.keyword(':');
        opsets.push([domain === 'ai.onnx' ? '' : domain, this.integer()]);
      } while (this.eat(','));
      this.keyword('}');
    }
    let producer: string | undefined;
    if (this.eat(' producer=')) producer = this.quoted();
    this.endOfLine();
    this.blank();
    const model = new Model(this.graph());
    model.irVersion = irVersion;
    for (const [domain, version] of opsets) model.opsetImports.set(domain, version);
    if (producer !== undefined) {
      // The printer joins name and version with a space; the version never holds one.
      const cut = producer.lastIndexOf(' ');
      model.producerName = cut < 0 ? producer : producer.slice(0, cut);
      model.producerVersion = cut < 0 ? '' : producer.slice(cut + 1);
    }
    this.blank();
    if (this.pos < this.text.length) this.fail(IrTextCode.syntax, `expected the end of the text, found ${this.found()}`);
    return model;
  }

  private graph(): Graph {
    this.keyword('graph');
    this.space();
    const graph = new Graph(this.quoted());
    this.keyword('{');
    this.endOfLine();
    for (;;) {
      this.blank();
      if (this.eat('}')) break;
      if (this.eat('input ')) this.input(graph);
      else if (this.eat('init ')) this.initializer(graph);
      else if (this.eat('output ')) this.output(graph);
      else if (this.peek('%') || this.peek('=')) this.node(graph);
      else this.fail(IrTextCode.syntax, `expected input, init, a node, output or '}', found ${this.found()}`);
      this.endOfLine();
    }
    this.endOfLine();
    return graph;
  }

  /** `input %x: f32[1,4,32]` */
  private input(graph: Graph): void {
    const at = this.pos;
    const name = this.valueName();
    this.keyword(':');
    const value = new Value(graph, name, this.valueType());
    this.define(value, at);
    graph.inputs.push(value);
  }

  /** `init %w = f32[4x4] [...] [external]` */
  private initializer(graph: Graph): void {
    const at = this.pos;
    const name = this.valueName();
    this.keyword('=');
    this.space();
    const tensor = this.tensor(true);
    const value = new Value(graph, name, { elemType: tensor.dtype, shape: [...tensor.dims] });
    value.initializer = tensor;
    this.define(value, at);
    graph.initializers.set(name, value);
  }

  /** `output %y: f32[2]` (the type is the value's; `?` when it has none). */
  private output(graph: Graph): void {
    const value = this.use();
    this.keyword(':');
    this.space();
    const typeAt = this.pos;
    const type = this.valueType();
    if (value.type === undefined) value.type = type;
    else if (typeText(value.type) !== typeText(type)) this.fail(IrTextCode.outputType, `output type ${typeText(type)} differs from the type of %${value.name}, ${typeText(value.type)}`, typeAt, this.pos - typeAt);
    graph.outputs.push(value);
  }

  /** `%a: f32[2], %b = domain.Op(%x, _) {attr=…} captures(%c) @"name"` */
  private node(graph: Graph): void {
    const outputs: { name: string; type: ValueType | undefined; at: number }[] = [];
    if (!this.peek('=')) {
      do {
        this.space();
        const at = this.pos;
        const name = this.valueName();
        outputs.push({ name, type: this.eat(':') ? this.valueType() : undefined, at });
      } while (this.eat(','));
      this.space();
    }
    this.keyword('=');
    this.space();
    const op = this.match(OP, 'an op type');
    const cut = op.lastIndexOf('.');
    const inputs: (Value | undefined)[] = [];
    this.keyword('(');
    if (!this.eat(')')) {
      do {
        this.space();
        inputs.push(this.eat('_') ? undefined : this.use());
      } while (this.eat(','));
      this.keyword(')');
    }
    const attributes: [string, Attribute][] = [];
    if (this.eat(' {')) {
      do {
        this.space();
        const name = this.match(WORD, 'an attribute name');
        this.keyword('=');
        attributes.push([name, this.attribute()]);
      } while (this.eat(','));
      this.keyword('}');
    }
    const captures: Value[] = [];
    if (this.eat(' captures(')) {
      do {
        this.space();
        captures.push(this.use());
      } while (this.eat(','));
      this.keyword(')');
    }
    this.keyword('@');
    const node = new Node(graph, this.quoted(), cut < 0 ? op : op.slice(cut + 1), cut < 0 ? '' : op.slice(0, cut));
    inputs.forEach((value, index) => node.setInput(index, value));
    for (const [name, attribute] of attributes) node.attributes.set(name, attribute);
    for (const value of captures) {
      node.implicitInputs.push(value);
      value.uses.push({ node, index: -1 });
    }
    outputs.forEach(({ name, type, at }, index) => {
      const value = new Value(graph, name, type);
      value.producer = node;
      value.producerIndex = index;
      if (name !== '') this.define(value, at); // an omitted optional output
      node.outputs.push(value);
    });
    graph.appendNode(node);
  }

  private attribute(): Attribute {
    const start = this.pos;
    if (this.peek('"')) return { kind: 'string', value: this.quoted() };
    if (this.peek('<graph')) this.fail(IrTextCode.unreadable, 'a subgraph is printed as its hash and cannot be read back', start, this.text.indexOf('>', start) + 1 - start);
    if (this.eat('[')) {
      if (this.eat(']')) return { kind: 'ints', value: [] };
      if (this.peek('"')) {
        const strings: string[] = [];
        do {
          this.space();
          strings.push(this.quoted());
        } while (this.eat(','));
        this.keyword(']');
        return { kind: 'strings', value: strings };
      }
      const numbers: string[] = [];
      do {
        this.space();
        numbers.push(this.match(NUMBER, 'a number'));
      } while (this.eat(','));
      this.keyword(']');
      return numbers.every((n) => INTEGER.test(n)) ? { kind: 'ints', value: numbers.map(integerValue) } : { kind: 'floats', value: numbers.map(float32) };
    }
    NUMBER.lastIndex = this.pos;
    if (NUMBER.test(this.text)) {
      const number = this.match(NUMBER, 'a number');
      return INTEGER.test(number) ? { kind: 'int', value: integerValue(number) } : { kind: 'float', value: float32(number) };
    }
    return { kind: 'tensor', value: this.tensor(false) };
  }

  /**
   * `f32[2x2] [1, 2, 3, 4]` (values), `f16[2] hex:003c00bc` (bytes), `f32[128x384] sha1:… min:… max:…` or
   * `f32[128x384]` (opaque: summary or shape only). An initializer's tensor may carry the ` external` mark;
   * it is kept on opaque tensors (to print it again) and dropped where the values are read into memory.
   */
  private tensor(initializer: boolean): Tensor {
    const start = this.pos;
    const dtype = this.dtype();
    this.keyword('[');
    const dims: number[] = [];
    if (!this.eat(']')) {
      do dims.push(this.integer());
      while (this.eat('x'));
      this.keyword(']');
    }
    const shape = `${dataTypeName(dtype)}[${dims.join('x')}]`;
    if (this.eat(' [')) {
      const tensor = this.values(dtype, dims, shape);
      // A summary's values in a type written as hex: in literals (`f16[2] [1, -1]`): kept as printed.
      return tensor ? this.marked(initializer, tensor) : opaqueTensor(dtype, dims, this.text.slice(start, this.pos), initializer && this.eat(' external'));
    }
    if (this.eat(' hex:')) {
      const at = this.pos;
      const hex = this.match(HEX, 'hex digits');
      const expected = byteLengthOf(dtype, numelOf(dims));
      if (hex.length % 2 !== 0 || (dtype !== DataType.STRING && hex.length / 2 !== expected)) this.fail(IrTextCode.badTensor, `${shape} holds ${expected} bytes, the literal has ${hex.length / 2}`, at, hex.length);
      return this.marked(initializer, Tensor.fromBytes(dtype, dims, new Uint8Array(Buffer.from(hex, 'hex'))));
    }
    let summary: string | undefined;
    if (this.eat(' sha1:')) {
      this.match(HEX, 'hex digits');
      if (this.eat(' min:')) {
        this.match(NUMBER, 'a number');
        this.keyword('max:');
        this.match(NUMBER, 'a number');
      }
      summary = this.text.slice(start, this.pos);
    }
    return opaqueTensor(dtype, dims, summary, initializer && this.eat(' external'));
  }

  /** `tensor`, after reading (and dropping) an initializer's ` external` mark. */
  private marked(initializer: boolean, tensor: Tensor): Tensor {
    if (initializer) this.eat(' external');
    return tensor;
  }

  /**
   * The values of a literal after its `[`: numbers, as many as the shape holds, each fitting the element type.
   * Undefined for element types that literals write as hex: (float16, bfloat16, float8): the numbers of a
   * summary, rounded, cannot give their bytes back.
   */
  private values(dtype: DataType, dims: number[], shape: string): Tensor | undefined {
    const listAt = this.pos - 1;
    const numbers: { text: string; at: number }[] = [];
    if (!this.eat(']')) {
      do {
        this.space();
        numbers.push({ at: this.pos, text: this.match(NUMBER, 'a number') });
      } while (this.eat(','));
      this.keyword(']');
    }
    const count = numelOf(dims);
    if (numbers.length !== count) this.fail(IrTextCode.badTensor, `${shape} holds ${count} values, the literal has ${numbers.length}`, listAt, this.pos - listAt);
    const bad = (n: { text: string; at: number }): never => this.fail(IrTextCode.badTensor, `${n.text} is not a ${dataTypeName(dtype)} value`, n.at, n.text.length);
    const integers = (): number[] => numbers.map((n) => (INTEGER.test(n.text) ? Number(n.text) : bad(n)));
    switch (dtype) {
      case DataType.FLOAT:
        return Tensor.fromFloat32(dims, Float32Array.from(numbers, (n) => Number(n.text)));
      case DataType.DOUBLE: {
        const array = Float64Array.from(numbers, (n) => Number(n.text));
        return Tensor.fromBytes(dtype, dims, new Uint8Array(array.buffer));
      }
      case DataType.INT64:
      case DataType.UINT64: {
        const array = dtype === DataType.INT64 ? new BigInt64Array(count) : new BigUint64Array(count);
        const [min, max] = dtype === DataType.INT64 ? [-(2n ** 63n), 2n ** 63n - 1n] : [0n, 2n ** 64n - 1n];
        numbers.forEach((n, i) => {
          if (!INTEGER.test(n.text)) bad(n);
          // A summary prints int64 as doubles, whose shortest form may pass the type's ends (Slice's "to the
          // end" INT64_MAX prints 9223372036854776000): a value that rounds to an end reads as that end.
          const exact = BigInt(n.text);
          const value = exact > max && Number(n.text) === Number(max) ? max : exact < min && Number(n.text) === Number(min) ? min : exact;
          array[i] = value;
          if (array[i] !== value) bad(n);
        });
        return Tensor.fromBytes(dtype, dims, new Uint8Array(array.buffer));
      }
      case DataType.BOOL: {
        const values = integers();
        values.forEach((v, i) => (v === 0 || v === 1 ? undefined : bad(numbers[i]!)));
        return Tensor.fromBytes(dtype, dims, Uint8Array.from(values));
      }
      case DataType.INT4:
      case DataType.UINT4: {
        const [lo, hi] = dtype === DataType.INT4 ? [-8, 7] : [0, 15];
        const values = integers();
        values.forEach((v, i) => (v >= lo && v <= hi ? undefined : bad(numbers[i]!)));
        return Tensor.fromBytes(dtype, dims, packInt4(values));
      }
      default: {
        const ArrayType = INTEGER_ARRAYS[dtype];
        if (!ArrayType) return undefined;
        const values = integers();
        const array = new ArrayType(count);
        values.forEach((v, i) => {
          array[i] = v;
          if (array[i] !== v) bad(numbers[i]!);
        });
        return Tensor.fromBytes(dtype, dims, new Uint8Array(array.buffer));
      }
    }
  }

  /** `?` (no type), `f32[*]` (unknown rank) or `f32[batch,?,3]`. */
  private valueType(): ValueType | undefined {
    this.space();
    if (this.eat('?')) return undefined;
    const elemType = this.dtype();
    this.keyword('[');
    if (this.eat('*]')) return { elemType };
    const shape: Dim[] = [];
    if (!this.eat(']')) {
      do {
        if (this.eat('?')) shape.push(null);
        else if (this.peek('"')) shape.push(this.quoted());
        else if (/\d/.test(this.text[this.pos] ?? '')) shape.push(this.integer());
        else shape.push(this.match(WORD, 'a dimension'));
      } while (this.eat(','));
      this.keyword(']');
    }
    return { elemType, shape };
  }

  private dtype(): DataType {
    const at = this.pos;
    const name = this.match(DTYPE, 'an element type');
    const numbered = /^dtype(\d+)$/.exec(name);
    const dtype = numbered ? Number(numbered[1]) : dataTypeFromName(name);
    if (dtype === undefined || !isKnownDataType(dtype)) return this.fail(IrTextCode.unknownType, `unknown element type '${name}'`, at, name.length);
    return dtype;
  }

  /** `%name` or `%"any name"`. */
  private valueName(): string {
    this.keyword('%');
    return this.peek('"') ? this.quoted() : this.match(NAME, 'a value name');
  }

  /** A `%value` that something before defines. */
  private use(): Value {
    const at = this.pos;
    const name = this.valueName();
    const value = this.scope.get(name);
    if (!value) return this.fail(IrTextCode.undefinedValue, `%${name} is not defined before this use`, at, this.pos - at);
    return value;
  }

  private define(value: Value, at: number): void {
    if (this.scope.has(value.name)) this.fail(IrTextCode.duplicateValue, `%${value.name} is already defined`, at, value.name.length + 1);
    value.graph.claimName(value.name);
    this.scope.set(value.name, value);
  }

  /** A JSON string literal. */
  private quoted(): string {
    const start = this.pos;
    if (this.text[start] !== '"') this.fail(IrTextCode.syntax, `expected a quoted string, found ${this.found()}`);
    let end = start + 1;
    while (end < this.text.length && this.text[end] !== '"' && this.text[end] !== '\n') end += this.text[end] === '\\' ? 2 : 1;
    if (this.text[end] !== '"') this.fail(IrTextCode.syntax, 'unterminated string', start, end - start);
    try {
      const value = JSON.parse(this.text.slice(start, end + 1)) as string;
      this.pos = end + 1;
      return value;
    } catch {
      return this.fail(IrTextCode.syntax, 'malformed string escape', start, end + 1 - start);
    }
  }

  private integer(): number {
    const at = this.pos;
    const text = this.match(NUMBER, 'an integer');
    if (!INTEGER.test(text)) this.fail(IrTextCode.syntax, `expected an integer, found ${text}`, at, text.length);
    return Number(text);
  }

  /** The text `pattern` matches here (sticky), or a syntax error naming `what` was expected. */
  private match(pattern: RegExp, what: string): string {
    pattern.lastIndex = this.pos;
    const found = pattern.exec(this.text);
    if (!found || (found[0] === '' && pattern !== HEX)) return this.fail(IrTextCode.syntax, `expected ${what}, found ${this.found()}`);
    this.pos += found[0].length;
    return found[0];
  }

  private peek(literal: string): boolean {
    return this.text.startsWith(literal, this.pos);
  }

  private eat(literal: string): boolean {
    if (!this.peek(literal)) return false;
    this.pos += literal.length;
    return true;
  }

  /** `literal`, after optional spaces. */
  private keyword(literal: string): void {
    this.space();
    if (!this.eat(literal)) this.fail(IrTextCode.syntax, `expected '${literal.trim()}', found ${this.found()}`);
  }

  private space(): void {
    while (this.text[this.pos] === ' ' || this.text[this.pos] === '\t') this.pos++;
  }

  /** Spaces, a comment, then a line break (or the end of the text). */
  private endOfLine(): void {
    this.space();
    if (this.peek('//')) while (this.pos < this.text.length && this.text[this.pos] !== '\n') this.pos++;
    if (this.pos < this.text.length && !this.eat('\n') && !this.eat('\r\n')) this.fail(IrTextCode.syntax, `expected the end of the line, found ${this.found()}`);
  }

  /** Blank lines and comment lines. */
  private blank(): void {
    for (;;) {
      const before = this.pos;
      while (/\s/.test(this.text[this.pos] ?? '')) this.pos++;
      if (this.peek('//')) while (this.pos < this.text.length && this.text[this.pos] !== '\n') this.pos++;
      if (this.pos === before) return;
    }
  }

  /** What is at the cursor, for messages: `'foo'`, or `the end of the line`. */
  private found(): string {
    if (this.pos >= this.text.length) return 'the end of the text';
    if (this.text[this.pos] === '\n' || this.text[this.pos] === '\r') return 'the end of the line';
    return `'${/^\S{1,20}/.exec(this.text.slice(this.pos))?.[0] ?? this.text[this.pos]}'`;
  }

  private fail(code: string, message: string, offset = this.pos, length = 1): never {
    throw new TextError({ severity: 'error', code, message, span: { file: this.file, offset, length: Math.max(1, length) } });
  }
}

/** A float attribute value: ONNX stores float32. */
function float32(text: string): number {
  return Math.fround(Number(text));
}

function integerValue(text: string): number | bigint {
  const value = Number(text);
  return Number.isSafeInteger(value) ? value : BigInt(text);
}
