/**
 * The text IR: a deterministic, human-readable listing of a model, used by pass dumps and golden tests, and
 * read back by `parser.ts`. Attributes are sorted; tensors are summarized (`f32[128x384] sha1:… min:… max:…`,
 * small ones `f32[4] [1, 2, 3, 4]`) unless `tensors: 'literal'` asks for their exact contents.
 */
import { createHash } from 'node:crypto';
import type { Attribute, Dim, Graph, Model, Node, Value, ValueType } from './core.js';
import { DataType, dataTypeName } from './dtype.js';
import { IrError } from './errors.js';
import { Tensor, formatNumber } from './tensor.js';

/** How much of each tensor the printer reads. */
export interface PrintOptions {
  /**
   * 'content' (default) hashes and ranges every tensor; 'shape' prints only dtype and shape (no reads: big
   * models); 'literal' prints every tensor's values exactly (`f32[2] [0.1, -3]`, `f16[2] hex:003c00bc`) and
   * float attributes exactly, so that `parseModelText` gives back the same model (golden-test inputs).
   */
  tensors?: 'content' | 'shape' | 'literal';
}

/** What the text showed of a tensor that was read back without its contents. */
interface OpaqueText {
  /** The summary as printed (`sha1:… min:… max:…` form); undefined when only the shape was printed. */
  summary: string | undefined;
  external: boolean;
}

/** Tensors read back from text that printed a summary or a shape: their contents are unknown. */
const opaqueTensors = new WeakMap<Tensor, OpaqueText>();

/**
 * A tensor known only by its printed summary (or shape): printing it shows the same text again, reading
 * its bytes throws. `parseModelText` makes these from `content` and `shape` dumps.
 */
export function opaqueTensor(dtype: DataType, dims: readonly number[], summary: string | undefined, external: boolean): Tensor {
  const shown = summary ?? `${dataTypeName(dtype)}[${dims.join('x')}]`;
  const tensor = Tensor.lazy(dtype, dims, () => {
    throw new IrError('unsupported', `tensor ${shown} was read from text that printed only its summary: its contents are unknown`);
  });
  opaqueTensors.set(tensor, { summary, external });
  return tensor;
}

/** Prints a model as text IR. */
export function printModel(model: Model, options: PrintOptions = {}): string {
  const opsets = [...model.opsetImports.entries()]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([domain, version]) => `${domain === '' ? 'ai.onnx' : domain}:${version}`)
    .join(', ');
  const header = `model ir_version=${model.irVersion} opsets={${opsets}}` + (model.producerName ? ` producer=${quote(`${model.producerName} ${model.producerVersion}`.trim())}` : '');
  return `${header}\n${printGraph(model.graph, options)}`;
}

/** Prints one graph as text IR. */
export function printGraph(graph: Graph, options: PrintOptions = {}): string {
  const lines: string[] = [`graph ${quote(graph.name)} {`];
  for (const input of graph.inputs) if (!input.initializer) lines.push(`  input ${ref(input)}: ${typeText(input.type)}`);
  const initializers = [...graph.initializers.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const value of initializers) {
    const tensor = value.initializer!;
    const external = options.tensors !== 'literal' && (opaqueTensors.get(tensor)?.external ?? tensor.isExternal);
    lines.push(`  init ${ref(value)} = ${tensorText(tensor, options)}${external ? ' external' : ''}`);
  }
  for (const node of graph.nodes) lines.push(`  ${printNode(node, options)}`);
  for (const output of graph.outputs) lines.push(`  output ${ref(output)}: ${typeText(output.type)}`);
  lines.push('}');
  return lines.join('\n') + '\n';
}

/** Prints one node: `%y: f32[2,3] = MatMul(%a, %b) {attrs} @"name"`. */
export function printNode(node: Node, options: PrintOptions = {}): string {
  const outputs = node.outputs.map((o) => (o.type ? `${ref(o)}: ${typeText(o.type)}` : ref(o))).join(', ');
  const op = node.domain === '' ? node.opType : `${node.domain}.${node.opType}`;
  const inputs = node.inputs.map((v) => (v ? ref(v) : '_')).join(', ');
  const attributes = [...node.attributes.entries()]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([name, a]) => `${name}=${attributeText(a, options)}`);
  const attrText = attributes.length > 0 ? ` {${attributes.join(', ')}}` : '';
  const implicit = node.implicitInputs.length > 0 ? ` captures(${node.implicitInputs.map(ref).join(', ')})` : '';
  return `${outputs} = ${op}(${inputs})${attrText}${implicit} @${quote(node.name)}`;
}

function attributeText(attribute: Attribute, options: PrintOptions): string {
  switch (attribute.kind) {
    case 'int':
      return String(attribute.value);
    case 'float':
      return floatText(attribute.value, options);
    case 'string':
      return quote(attribute.value);
    case 'ints':
      return `[${attribute.value.join(', ')}]`;
    case 'floats':
      return `[${attribute.value.map((v) => floatText(v, options)).join(', ')}]`;
    case 'strings':
      return `[${attribute.value.map(quote).join(', ')}]`;
    case 'tensor':
      return tensorText(attribute.value, options);
    case 'graph':
      return `<graph sha1:${createHash('sha1').update(attribute.value.encoded).digest('hex').slice(0, 12)}>`;
  }
}

/**
 * A float attribute value: always with a point or an exponent (`1.0`, not `1`), so it reads back as a float;
 * exactly (a decimal that reads back as the same float32) in literal mode, else to 6 significant digits.
 */
function floatText(value: number, options: PrintOptions): string {
  const text = options.tensors === 'literal' ? exactFloat32(value) : formatNumber(value);
  return /^-?\d+$/.test(text) ? `${text}.0` : text;
}

/** The tensor as its print mode shows it (an opaque tensor shows the text it was read from). */
function tensorText(tensor: Tensor, options: PrintOptions): string {
  const shape = `${dataTypeName(tensor.dtype)}[${tensor.dims.join('x')}]`;
  if (options.tensors === 'shape') return shape;
  const opaque = opaqueTensors.get(tensor);
  if (opaque) {
    if (options.tensors === 'literal' || opaque.summary === undefined) throw new IrError('unsupported', `tensor ${opaque.summary ?? shape} was read from text without its contents: it cannot be printed ${options.tensors === 'literal' ? 'as a literal' : 'with its contents'}`);
    return opaque.summary;
  }
  return options.tensors === 'literal' ? literalText(tensor, shape) : tensor.summary();
}

/** Element types a literal writes as numbers; every other type is written as `hex:` bytes. */
const NUMERIC_LITERAL = new Set<DataType>([
  DataType.FLOAT,
  DataType.DOUBLE,
  DataType.INT8,
  DataType.UINT8,
  DataType.INT16,
  DataType.UINT16,
  DataType.INT32,
  DataType.UINT32,
  DataType.INT64,
  DataType.UINT64,
  DataType.BOOL,
  DataType.INT4,
  DataType.UINT4,
]);

/** `f32[2] [0.1, -3]`: every value exactly; `f16[2] hex:003c00bc` (raw little-endian bytes) for other types. */
function literalText(tensor: Tensor, shape: string): string {
  if (!NUMERIC_LITERAL.has(tensor.dtype)) return `${shape} hex:${Buffer.from(tensor.bytes()).toString('hex')}`;
  let values: string[];
  if (tensor.dtype === DataType.FLOAT) values = Array.from(tensor.toFloat32(), exactFloat32);
  else if (tensor.dtype === DataType.DOUBLE) values = tensor.toNumbers().map(exactNumber);
  else if (tensor.dtype === DataType.INT64) values = Array.from(tensor.toBigInt64(), String);
  else if (tensor.dtype === DataType.UINT64) values = Array.from(new BigUint64Array(tensor.bytes().slice().buffer), String);
  else values = tensor.toNumbers().map(String);
  return `${shape} [${values.join(', ')}]`;
}

/**
 * A short decimal that reads back as the same float32: the value rounded to 7, 8 or 9 significant digits,
 * the first that does, trailing zeros dropped (`0.1` for Math.fround(0.1)); 9 digits always suffice. Not
 * always the shortest, but a function of the value alone, so printing what was read gives the same text.
 * A value float32 cannot hold exactly is written as a double.
 */
function exactFloat32(value: number): string {
  if (!Number.isFinite(value) || Object.is(value, -0) || Math.fround(value) !== value) return exactNumber(value);
  for (const digits of [7, 8]) {
    const candidate = Number(value.toPrecision(digits));
    if (Math.fround(candidate) === value) return exactNumber(candidate);
  }
  return exactNumber(Number(value.toPrecision(9)));
}

/** The shortest decimal that reads back as the same double, keeping the sign of zero. */
function exactNumber(value: number): string {
  return Object.is(value, -0) ? '-0' : String(value);
}

/** `f32[batch,64,128]`, or `?` when unknown. */
export function typeText(type: ValueType | undefined): string {
  if (!type) return '?';
  const shape = type.shape ? `[${type.shape.map(dimText).join(',')}]` : '[*]';
  return `${dataTypeName(type.elemType)}${shape}`;
}

/** A dimension: its size, `?`, or its symbol (quoted unless it is a plain identifier). */
function dimText(dim: Dim): string {
  if (dim === null) return '?';
  if (typeof dim === 'number') return String(dim);
  return /^[A-Za-z_][A-Za-z0-9_]*$/.test(dim) ? dim : quote(dim);
}

/** `%name`, quoted when it holds other characters or ends with `:` (which would read as a type's colon). */
function ref(value: Value): string {
  return /^[A-Za-z0-9_.:/-]*[A-Za-z0-9_./-]$/.test(value.name) ? `%${value.name}` : `%${quote(value.name)}`;
}

function quote(text: string): string {
  return JSON.stringify(text);
}
