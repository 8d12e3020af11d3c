/**
 * The text IR: a deterministic, human-readable listing of a model, used by pass dumps and golden tests.
 * Attributes are sorted, tensors are summarized (`f32[128x384] sha1:… min:… max:…`), never printed raw.
 */
import { createHash } from 'node:crypto';
import type { Attribute, Graph, Model, Node, Value, ValueType } from './core.js';
import { dataTypeName } from './dtype.js';
import { formatNumber } from './tensor.js';

/** How much of each tensor the printer reads. */
export interface PrintOptions {
  /** 'content' (default) hashes and ranges every tensor; 'shape' prints only dtype and shape (no reads: big models). */
  tensors?: 'content' | 'shape';
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
    const summary = options.tensors === 'shape' ? `${dataTypeName(tensor.dtype)}[${tensor.dims.join('x')}]` : tensor.summary();
    lines.push(`  init ${ref(value)} = ${summary}${tensor.isExternal ? ' external' : ''}`);
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
      return formatNumber(attribute.value);
    case 'string':
      return quote(attribute.value);
    case 'ints':
      return `[${attribute.value.join(', ')}]`;
    case 'floats':
      return `[${attribute.value.map(formatNumber).join(', ')}]`;
    case 'strings':
      return `[${attribute.value.map(quote).join(', ')}]`;
    case 'tensor':
      return options.tensors === 'shape' ? `${dataTypeName(attribute.value.dtype)}[${attribute.value.dims.join('x')}]` : attribute.value.summary();
    case 'graph':
      return `<graph sha1:${createHash('sha1').update(attribute.value.encoded).digest('hex').slice(0, 12)}>`;
  }
}

/** `f32[batch,64,128]`, or `?` when unknown. */
export function typeText(type: ValueType | undefined): string {
  if (!type) return '?';
  const shape = type.shape ? `[${type.shape.map((d) => (d === null ? '?' : String(d))).join(',')}]` : '[*]';
  return `${dataTypeName(type.elemType)}${shape}`;
}

function ref(value: Value): string {
  return /^[A-Za-z0-9_.:/-]+$/.test(value.name) ? `%${value.name}` : `%${quote(value.name)}`;
}

function quote(text: string): string {
  return JSON.stringify(text);
}
