/**
 * The one module that knows the ONNX protobuf: decodes `.onnx` files into the IR and encodes it back.
 * External data is referenced, not read, on load: each file is validated (no absolute paths, nothing outside the
 * model's folder, a regular file) and opened once, and tensors read through that descriptor, never by path again.
 * It is streamed tensor by tensor on save; saves are atomic.
 */
import { closeSync, constants, fstatSync, openSync, readFileSync, realpathSync, statSync, writeSync } from 'node:fs';
import { basename, dirname, isAbsolute, relative, resolve, sep } from 'node:path';
import onnxProto from 'onnx-proto';
import { Graph, Model, Node, Value, type Attribute, type Dim, type OpaqueGraph, type ValueType } from './core.js';
import { DataType, byteLengthOf, dataTypeName, isKnownDataType } from './dtype.js';
import { IrError } from './errors.js';
import { ExternalFile, Tensor, numelOf } from './tensor.js';
import { commitFilesAtomically } from './atomic-file.js';

const { onnx } = onnxProto;
type Long = { low: number; high: number; unsigned: boolean; toString(): string };
type IntLike = number | Long | null | undefined;

/** IR versions and opsets ONNX Runtime 1.30 accepts (see PLATFORM.md). */
export const MAX_IR_VERSION = 13;
export const MAX_ONNX_OPSET = 26;

const ONNX_MAGIC_FIELDS = 'ir_version, graph';

/** Loads an `.onnx` file; external data stays on disk until a tensor's bytes are asked for. */
export async function loadModel(path: string): Promise<Model> {
  return loadModelSync(path);
}

/** Synchronous loadModel. */
export function loadModelSync(path: string): Model {
  const file = resolve(path);
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(file);
  } catch (error) {
    throw new IrError('io', `cannot read model: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`, path);
  }
  return decodeModel(bytes, { baseDir: dirname(file), fileName: path });
}

/** Where decodeModel resolves external data, and the name errors mention. */
export interface DecodeOptions {
  baseDir?: string;
  fileName?: string;
}

/** Decodes ONNX bytes into a Model. */
export function decodeModel(bytes: Uint8Array, options: DecodeOptions = {}): Model {
  const fileName = options.fileName;
  if (nestsTooDeep(bytes)) {
    throw new IrError('malformed-model', `messages nest more than ${MAX_MESSAGE_DEPTH} deep (subgraphs in subgraphs), which ONNX Runtime's protobuf parser refuses`, fileName);
  }
  let proto: onnxProto.onnx.ModelProto;
  try {
    proto = onnx.ModelProto.decode(bytes);
  } catch (error) {
    throw new IrError('malformed-model', `not a valid ONNX protobuf (${(error as Error).message})`, fileName);
  }
  if (!proto.graph || toNumber(proto.irVersion) === 0) {
    throw new IrError('malformed-model', `not an ONNX model: missing ${ONNX_MAGIC_FIELDS}`, fileName);
  }
  const irVersion = toNumber(proto.irVersion);
  if (irVersion < 1) throw new IrError('malformed-model', `IR version ${irVersion} is invalid (IR versions start at 1)`, fileName);
  if (irVersion > MAX_IR_VERSION) {
    throw new IrError('unsupported-version', `IR version ${irVersion} is newer than the supported ${MAX_IR_VERSION}`, fileName);
  }
  const context: DecodeContext = { baseDir: options.baseDir, fileName, realBaseDir: undefined, externalFiles: new Map() };
  const graph = decodeGraph(proto.graph, context);
  const model = new Model(graph);
  model.irVersion = irVersion;
  model.producerName = proto.producerName ?? '';
  model.producerVersion = proto.producerVersion ?? '';
  model.domain = proto.domain ?? '';
  model.modelVersion = toNumber(proto.modelVersion);
  model.docString = proto.docString || undefined;
  model.baseDir = options.baseDir;
  for (const opset of proto.opsetImport ?? []) {
    const domain = opset.domain === 'ai.onnx' ? '' : (opset.domain ?? '');
    const version = toNumber(opset.version);
    if (domain === '' && version > MAX_ONNX_OPSET) {
      throw new IrError('unsupported-version', `ai.onnx opset ${version} is newer than the supported ${MAX_ONNX_OPSET}`, fileName);
    }
    model.opsetImports.set(domain, version);
  }
  for (const entry of proto.metadataProps ?? []) model.metadataProps.set(entry.key ?? '', entry.value ?? '');
  restoreNodeMetadata(model, fileName);
  for (const fn of proto.functions ?? []) model.functions.push(onnx.FunctionProto.encode(fn).finish());
  return model;
}

/** protobuf's default recursion limit, which ONNX Runtime parses models with: messages nested deeper are refused. */
export const MAX_MESSAGE_DEPTH = 100;

/** The message-typed fields of each ONNX message (field number → message), for nestsTooDeep. */
const MESSAGE_FIELDS: Record<string, Record<number, string>> = {
  Model: { 7: 'Graph', 8: 'Leaf', 14: 'Leaf', 20: 'TrainingInfo', 25: 'Function' },
  TrainingInfo: { 1: 'Graph', 2: 'Graph', 3: 'Leaf', 4: 'Leaf' },
  Function: { 7: 'Node', 9: 'Leaf' },
  Graph: { 1: 'Node', 5: 'Tensor', 11: 'ValueInfo', 12: 'ValueInfo', 13: 'ValueInfo', 14: 'Annotation', 15: 'SparseTensor' },
  Node: { 5: 'Attribute' },
  Attribute: { 5: 'Tensor', 6: 'Graph', 10: 'Tensor', 11: 'Graph', 14: 'Type', 15: 'Type', 22: 'SparseTensor', 23: 'SparseTensor' },
  ValueInfo: { 2: 'Type' },
  Annotation: { 2: 'Leaf' },
  Tensor: { 3: 'Leaf', 13: 'Leaf' },
  SparseTensor: { 1: 'Tensor', 2: 'Tensor' },
  Type: { 1: 'TensorType', 4: 'ElemType', 5: 'MapType', 8: 'TensorType', 9: 'ElemType' },
  TensorType: { 2: 'Shape' },
  ElemType: { 1: 'Type' },
  MapType: { 2: 'Type' },
  Shape: { 1: 'Leaf' },
  Leaf: {},
};

/**
 * Whether messages nest more than MAX_MESSAGE_DEPTH below the ModelProto, found without recursion (protobufjs decodes
 * recursively: a 10 000-deep If-in-If model would overflow the stack). False at malformed bytes: decode reports those.
 */
function nestsTooDeep(bytes: Uint8Array): boolean {
  const stack: { type: string; end: number }[] = [{ type: 'Model', end: bytes.byteLength }];
  let position = 0;
  const varint = (): number | undefined => {
    let value = 0;
    for (let shift = 0; shift < 64; shift += 7) {
      if (position >= bytes.byteLength) return undefined;
      const byte = bytes[position++]!;
      value += (byte & 0x7f) * 2 ** shift;
      if (byte < 0x80) return value;
    }
    return undefined;
  };
  while (stack.length > 0) {
    const top = stack[stack.length - 1]!;
    if (position >= top.end) {
      stack.pop();
      continue;
    }
    const tag = varint();
    if (tag === undefined) return false;
    const wire = tag % 8;
    if (wire === 0) {
      if (varint() === undefined) return false;
    } else if (wire === 1 || wire === 5) {
      position += wire === 1 ? 8 : 4;
    } else if (wire === 2) {
      const length = varint();
      if (length === undefined || position + length > top.end) return false;
      const type = MESSAGE_FIELDS[top.type]![Math.floor(tag / 8)];
      if (type === undefined) position += length;
      else {
        stack.push({ type, end: position + length });
        if (stack.length - 1 > MAX_MESSAGE_DEPTH) return true;
      }
    } else return false; // groups (wire types 3, 4) are not ONNX: decode reports them
  }
  return false;
}

interface DecodeContext {
  baseDir: string | undefined;
  realBaseDir: string | undefined;
  fileName: string | undefined;
  /** External data files opened so far, by resolved path. */
  externalFiles: Map<string, ExternalFile>;
}

function decodeGraph(proto: onnxProto.onnx.IGraphProto, context: DecodeContext): Graph {
  const graph = new Graph(proto.name ?? 'main');
  graph.docString = proto.docString || undefined;
  const scope = new Map<string, Value>();
  const define = (value: Value) => {
    if (scope.has(value.name)) throw new IrError('malformed-model', `value '${value.name}' is defined more than once`, context.fileName);
    graph.claimName(value.name);
    scope.set(value.name, value);
  };

  for (const init of proto.initializer ?? []) {
    const tensor = decodeTensor(init, context);
    const value = new Value(graph, init.name ?? '', { elemType: tensor.dtype, shape: [...tensor.dims] });
    value.initializer = tensor;
    value.docString = init.docString || undefined;
    define(value);
    graph.initializers.set(value.name, value);
  }
  for (const info of proto.input ?? []) {
    const existing = scope.get(info.name ?? '');
    if (existing?.initializer) {
      // An initializer that is also listed as an input (IR < 4 style): one value, both roles.
      graph.inputs.push(existing);
      continue;
    }
    const value = new Value(graph, info.name ?? '', decodeValueType(info.type));
    value.docString = info.docString || undefined;
    define(value);
    graph.inputs.push(value);
  }

  const nodes: { node: Node; proto: onnxProto.onnx.INodeProto }[] = [];
  for (const nodeProto of proto.node ?? []) {
    const domain = nodeProto.domain === 'ai.onnx' ? '' : (nodeProto.domain ?? '');
    const node = new Node(graph, nodeProto.name || graph.uniqueNodeName(nodeProto.opType ?? 'node'), nodeProto.opType ?? '', domain);
    node.docString = nodeProto.docString || undefined;
    (nodeProto.output ?? []).forEach((name, index) => {
      const value = new Value(graph, name, undefined);
      value.producer = node;
      value.producerIndex = index;
      if (name !== '') define(value);
      node.outputs.push(value);
    });
    for (const attribute of nodeProto.attribute ?? []) node.attributes.set(attribute.name ?? '', decodeAttribute(attribute, context));
    nodes.push({ node, proto: nodeProto });
  }
  const lookup = (name: string, node: Node): Value => {
    const value = scope.get(name);
    if (!value) throw new IrError('malformed-model', `node '${node.name}' (${node.opType}) reads '${name}', which nothing defines`, context.fileName);
    return value;
  };
  for (const { node, proto: nodeProto } of nodes) {
    (nodeProto.input ?? []).forEach((name, index) => node.setInput(index, name === '' ? undefined : lookup(name, node)));
    const captured = new Set<string>();
    for (const attribute of node.attributes.values()) if (attribute.kind === 'graph') for (const free of attribute.value.freeNames) captured.add(free);
    for (const name of [...captured].sort()) {
      const value = scope.get(name);
      if (!value) continue; // defined in a scope between (nested subgraphs); not ours to track
      node.implicitInputs.push(value);
      value.uses.push({ node, index: -1 });
    }
    graph.appendNode(node);
  }
  for (const info of proto.valueInfo ?? []) {
    const value = scope.get(info.name ?? '');
    if (value && !value.initializer) value.type = decodeValueType(info.type) ?? value.type;
  }
  for (const info of proto.output ?? []) {
    const value = scope.get(info.name ?? '');
    if (!value) throw new IrError('malformed-model', `graph output '${info.name}' is not defined`, context.fileName);
    value.type = decodeValueType(info.type) ?? value.type;
    graph.outputs.push(value);
  }
  graph.sortTopologically();
  return graph;
}

function decodeValueType(type: onnxProto.onnx.ITypeProto | null | undefined): ValueType | undefined {
  const tensorType = type?.tensorType;
  if (!tensorType) return undefined;
  const elemType = tensorType.elemType ?? 0;
  const valueType: ValueType = { elemType: elemType as DataType };
  if (tensorType.shape) {
    valueType.shape = (tensorType.shape.dim ?? []).map((d): Dim => {
      if (d.dimParam) return d.dimParam;
      if (d.dimValue === null || d.dimValue === undefined) return null;
      // ONNX Runtime runs a declared negative dim as an unknown one (it accepts any size there): so does the IR.
      const value = toNumber(d.dimValue);
      return value >= 0 ? value : null;
    });
  }
  return valueType;
}

function decodeAttribute(proto: onnxProto.onnx.IAttributeProto, context: DecodeContext): Attribute {
  const A = onnx.AttributeProto.AttributeType;
  switch (proto.type) {
    case A.INT:
      return { kind: 'int', value: toIntValue(proto.i) };
    case A.FLOAT:
      return { kind: 'float', value: proto.f ?? 0 };
    case A.STRING:
      return { kind: 'string', value: Buffer.from(proto.s ?? new Uint8Array()).toString('utf8') };
    case A.TENSOR:
      return { kind: 'tensor', value: decodeTensor(proto.t ?? {}, context) };
    case A.GRAPH:
      return { kind: 'graph', value: opaqueGraph(proto.g ?? {}) };
    case A.INTS:
      return { kind: 'ints', value: (proto.ints ?? []).map(toIntValue) };
    case A.FLOATS:
      return { kind: 'floats', value: [...(proto.floats ?? [])] };
    case A.STRINGS:
      return { kind: 'strings', value: (proto.strings ?? []).map((s) => Buffer.from(s).toString('utf8')) };
    default:
      throw new IrError('unsupported', `attribute '${proto.name}' has unsupported type ${proto.type}`, context.fileName);
  }
}

function opaqueGraph(proto: onnxProto.onnx.IGraphProto): OpaqueGraph {
  const free = new Set<string>();
  collectFreeNames(proto, new Set(), free);
  return { encoded: onnx.GraphProto.encode(proto).finish(), freeNames: [...free].sort() };
}

function collectFreeNames(proto: onnxProto.onnx.IGraphProto, outer: Set<string>, free: Set<string>): void {
  const defined = new Set(outer);
  for (const v of proto.input ?? []) defined.add(v.name ?? '');
  for (const t of proto.initializer ?? []) defined.add(t.name ?? '');
  for (const node of proto.node ?? []) for (const o of node.output ?? []) defined.add(o);
  for (const node of proto.node ?? []) {
    for (const name of node.input ?? []) if (name !== '' && !defined.has(name)) free.add(name);
    for (const a of node.attribute ?? []) {
      for (const g of [a.g, ...(a.graphs ?? [])]) if (g) collectFreeNames(g, defined, free);
    }
  }
  for (const o of proto.output ?? []) if (!defined.has(o.name ?? '')) free.add(o.name ?? '');
}

function decodeTensor(proto: onnxProto.onnx.ITensorProto, context: DecodeContext): Tensor {
  const name = proto.name ?? '';
  const dataType = proto.dataType ?? 0;
  if (!isKnownDataType(dataType) || dataType === DataType.UNDEFINED) {
    throw new IrError('malformed-model', `tensor '${name}' has unknown data type ${dataType}`, context.fileName);
  }
  if (dataType === DataType.STRING) throw new IrError('unsupported', `tensor '${name}': string tensors are not supported`, context.fileName);
  const dims = (proto.dims ?? []).map(toNumber);
  if (dims.some((d) => d < 0 || !Number.isSafeInteger(d))) throw new IrError('malformed-model', `tensor '${name}' has invalid dims [${dims.join(', ')}]`, context.fileName);
  const expected = byteLengthOf(dataType, numelOf(dims));
  const where = `tensor '${name}' (${dataTypeName(dataType)}[${dims.join('x')}])`;

  if (proto.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL) {
    const { location, offset, length } = parseExternalData(proto.externalData ?? [], expected, (message) => new IrError('malformed-model', `${where}: ${message}`, context.fileName));
    const source = openExternalData(location, context, where);
    if (offset < 0n || offset + length > BigInt(source.size)) {
      throw new IrError('external-data-range', `${where}: bytes ${offset}..${offset + length} lie outside '${location}' (${source.size} bytes)`, context.fileName);
    }
    if (length !== BigInt(expected)) throw new IrError('malformed-model', `${where} needs ${expected} bytes, external data has ${length}`, context.fileName);
    return new Tensor(dataType, dims, { kind: 'external', file: source.path, source, offset: Number(offset), length: expected, location });
  }

  let bytes: Uint8Array;
  if (proto.rawData && proto.rawData.length > 0) {
    bytes = proto.rawData;
  } else {
    bytes = typedFieldBytes(proto, dataType, numelOf(dims));
  }
  if (bytes.byteLength !== expected) throw new IrError('malformed-model', `${where} needs ${expected} bytes, has ${bytes.byteLength}`, context.fileName);
  return Tensor.fromBytes(dataType, dims, bytes);
}

/** Tensors may keep values in typed repeated fields instead of raw_data; converts them to raw bytes. */
function typedFieldBytes(proto: onnxProto.onnx.ITensorProto, dtype: DataType, count: number): Uint8Array {
  const asBytes = (array: ArrayBufferView) => new Uint8Array(array.buffer, array.byteOffset, array.byteLength);
  switch (dtype) {
    case DataType.FLOAT:
    case DataType.COMPLEX64:
      return asBytes(Float32Array.from(proto.floatData ?? []));
    case DataType.DOUBLE:
    case DataType.COMPLEX128:
      return asBytes(Float64Array.from(proto.doubleData ?? []));
    case DataType.INT64:
      return asBytes(BigInt64Array.from((proto.int64Data ?? []).map((v) => BigInt(v.toString()))));
    case DataType.UINT32:
      return asBytes(Uint32Array.from((proto.uint64Data ?? []).map(toNumber)));
    case DataType.UINT64:
      return asBytes(BigUint64Array.from((proto.uint64Data ?? []).map((v) => BigInt(v.toString()))));
    case DataType.INT32:
      return asBytes(Int32Array.from(proto.int32Data ?? []));
    case DataType.INT16:
      return asBytes(Int16Array.from(proto.int32Data ?? []));
    case DataType.UINT16:
    case DataType.FLOAT16:
    case DataType.BFLOAT16:
      return asBytes(Uint16Array.from(proto.int32Data ?? []));
    case DataType.INT8:
      return asBytes(Int8Array.from(proto.int32Data ?? []));
    case DataType.INT4:
    case DataType.UINT4: {
      // int32_data holds one packed byte (two 4-bit values) per entry.
      const packed = Uint8Array.from(proto.int32Data ?? [], (v) => v & 0xff);
      return packed.subarray(0, byteLengthOf(dtype, count));
    }
    default:
      return Uint8Array.from(proto.int32Data ?? []);
  }
}

const INT64_MAX = (1n << 63n) - 1n;
const UINT64_MAX = (1n << 64n) - 1n;

/**
 * The external_data entries of a tensor, read as ONNX Runtime 1.30 reads them: `location` (non-empty, at most once),
 * `offset` (a decimal int64: digits with an optional '-', no sign '+', spaces or other bases), `length` (decimal
 * uint64; when absent, the bytes the tensor needs), `checksum` and `prepacked*` (ignored); a repeated offset, length or
 * checksum keeps its last value; any other key, or an empty value, is refused.
 */
function parseExternalData(entries: onnxProto.onnx.IStringStringEntryProto[], expected: number, fail: (message: string) => IrError): { location: string; offset: bigint; length: bigint } {
  let location: string | undefined;
  let offset = 0n;
  let length: bigint | undefined;
  const decimal = (key: string, value: string, pattern: RegExp, max: bigint): bigint => {
    const parsed = pattern.test(value) ? BigInt(value) : undefined;
    if (parsed === undefined || parsed > max || parsed < -INT64_MAX - 1n) throw fail(`external data ${key} '${value}' is not a decimal integer`);
    return parsed;
  };
  for (const entry of entries) {
    const key = entry.key ?? '';
    const value = entry.value ?? '';
    if (key.startsWith('prepacked')) continue;
    if (value === '' && ['location', 'offset', 'length', 'checksum'].includes(key)) throw fail(`external data key '${key}' has an empty value`);
    if (key === 'location') {
      if (location !== undefined) throw fail(`external data names 'location' twice`);
      location = value;
    } else if (key === 'offset') offset = decimal(key, value, /^-?[0-9]+$/, INT64_MAX);
    else if (key === 'length') length = decimal(key, value, /^[0-9]+$/, UINT64_MAX);
    else if (key !== 'checksum') throw fail(`external data has unknown key '${key}'`);
  }
  if (location === undefined) throw fail('external data without a location');
  return { location, offset, length: length ?? BigInt(expected) };
}

/**
 * Opens an external-data file once per model (later tensors of the same file share the descriptor). Refuses absolute
 * paths and anything outside the model's folder: the last component is opened without following a symlink, and the
 * opened file must be the regular file found at its real path inside the folder (so no swap between check and open).
 */
function openExternalData(location: string, context: DecodeContext, where: string): ExternalFile {
  if (!context.baseDir) throw new IrError('external-data-missing', `${where} uses external data, but the model was not loaded from a file`, context.fileName);
  const escape = (why = 'escapes the model\'s folder') =>
    new IrError('external-data-escape', `${where}: external data path '${location}' ${why}; refusing to read it`, context.fileName);
  if (isAbsolute(location) || /^[a-zA-Z]:/.test(location) || location.startsWith('\\') || location.includes('\0')) throw escape();
  const base = resolve(context.baseDir);
  const file = resolve(base, location);
  const rel = relative(base, file);
  if (rel === '' || rel.startsWith('..') || isAbsolute(rel)) throw escape();
  const open = context.externalFiles.get(file);
  if (open) return open;
  let fd: number;
  try {
    // O_NONBLOCK: a FIFO named as data must not hang the open (it is then refused as not a regular file).
    fd = openSync(file, constants.O_RDONLY | (constants.O_NOFOLLOW ?? 0) | (constants.O_NONBLOCK ?? 0));
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new IrError('external-data-missing', `${where}: external data file '${location}' does not exist`, context.fileName);
    if (code === 'ELOOP') throw escape('is a symbolic link');
    throw new IrError('external-data-missing', `${where}: cannot open external data file '${location}' (${code ?? (error as Error).message})`, context.fileName);
  }
  try {
    const opened = fstatSync(fd);
    if (!opened.isFile()) throw new IrError('external-data-missing', `${where}: external data '${location}' is not a regular file`, context.fileName);
    // A symlinked folder on the way may still lead outside; and the file at the real path must be the one opened.
    context.realBaseDir ??= realpathSync(base);
    const real = realpathSync(file);
    const atReal = statSync(real);
    if (!real.startsWith(context.realBaseDir + sep) || atReal.ino !== opened.ino || atReal.dev !== opened.dev) throw escape();
  } catch (error) {
    closeSync(fd);
    throw error;
  }
  const source = new ExternalFile(file, fd);
  context.externalFiles.set(file, source);
  return source;
}

function toNumber(value: IntLike): number {
  if (value === null || value === undefined) return 0;
  if (typeof value === 'number') return value;
  return Number(value.toString());
}

function toIntValue(value: IntLike): number | bigint {
  if (value === null || value === undefined) return 0;
  if (typeof value === 'number') return value;
  const big = BigInt(value.toString());
  return big >= BigInt(Number.MIN_SAFE_INTEGER) && big <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(big) : big;
}

// ---------------------------------------------------------------------------------------------------
// Encoding

/** How saveModel places initializer bytes. */
export interface SaveOptions {
  /**
   * 'auto' (default): external when the model has deferred (external or lazy) tensors or its initializers exceed 1 GiB;
   * 'always' / 'never' force it.
   */
  externalData?: 'auto' | 'always' | 'never';
  /** External data file name, next to the model (default `<model file name>.data`). */
  externalDataName?: string;
  /** Tensors smaller than this stay inline (default 1024 bytes). */
  externalThreshold?: number;
  /**
   * Refer to untouched external tensors where they are, through a hard link of their data file beside the model,
   * instead of copying their bytes (a model staged for an ONNX Runtime session: a few changed weights cost only
   * their bytes). A file that cannot be linked is copied as usual. Not for outputs: they must stand alone.
   */
  linkExternalData?: boolean;
  /** Called after each external tensor is written: bytes of tensor data written so far, of `totalBytes`. */
  progress?: (doneBytes: number, totalBytes: number) => void;
}

const EXTERNAL_AUTO_BYTES = 1 << 30;
const EXTERNAL_ALIGNMENT = 64;

/** Encodes the whole model with every tensor inline (reads external data into memory). */
export function encodeModel(model: Model): Uint8Array {
  return onnx.ModelProto.encode(modelToProto(model, () => undefined)).finish();
}

/** Saves the model atomically: the model file (and its external data file) appear whole or not at all. */
export function saveModel(model: Model, path: string, options: SaveOptions = {}): void {
  const target = resolve(path);
  const initializerBytes = [...model.graph.initializers.values()].reduce((n, v) => n + (v.initializer?.byteLength ?? 0), 0);
  const hadExternal = [...model.graph.initializers.values()].some((v) => v.initializer?.isDeferred);
  const mode = options.externalData ?? 'auto';
  const external = mode === 'always' || (mode === 'auto' && (hadExternal || initializerBytes > EXTERNAL_AUTO_BYTES));
  if (!external) {
    const bytes = encodeModel(model);
    commitFilesAtomically([target], ([temp]) => writeAll(temp!, [bytes]));
    return;
  }
  const dataName = options.externalDataName ?? `${basename(target)}.data`;
  const threshold = options.externalThreshold ?? 1024;
  const dataTarget = resolve(dirname(target), dataName);
  // Data first, then the model that points at it: a reader never sees a model whose data is missing.
  const links = new Map<ExternalFile, string | undefined>();
  const linked = (tensor: Tensor) => {
    if (!options.linkExternalData || tensor.data.kind !== 'external') return undefined;
    const source = tensor.data.source;
    if (!links.has(source)) {
      const name = `${basename(target)}.source${links.size}.data`;
      links.set(source, source.linkTo(resolve(dirname(target), name)) ? name : undefined);
    }
    const location = links.get(source);
    return location === undefined ? undefined : { location, offset: tensor.data.offset, length: tensor.data.length };
  };
  const externalBytes = [...model.graph.initializers.values()].map((v) => v.initializer?.byteLength ?? 0).filter((n) => n >= threshold).reduce((a, b) => a + b, 0);
  commitFilesAtomically([dataTarget, target], ([dataTemp, modelTemp]) => {
    const fd = openSync(dataTemp!, 'w');
    let offset = 0;
    let written = 0;
    let proto: onnxProto.onnx.ModelProto;
    try {
      proto = modelToProto(model, (tensor) => {
        if (tensor.byteLength < threshold) return undefined;
        const inPlace = linked(tensor);
        if (inPlace) {
          options.progress?.((written += inPlace.length), externalBytes);
          return inPlace;
        }
        offset = Math.ceil(offset / EXTERNAL_ALIGNMENT) * EXTERNAL_ALIGNMENT;
        const bytes = tensor.bytes();
        let done = 0;
        while (done < bytes.byteLength) done += writeSync(fd, bytes, done, bytes.byteLength - done, offset + done);
        const ref = { location: dataName, offset, length: bytes.byteLength };
        offset += bytes.byteLength;
        options.progress?.((written += bytes.byteLength), externalBytes);
        return ref;
      });
    } finally {
      closeSync(fd);
    }
    writeAll(modelTemp!, [onnx.ModelProto.encode(proto).finish()]);
  });
}

function writeAll(path: string, chunks: Uint8Array[]): void {
  const fd = openSync(path, 'w');
  try {
    for (const chunk of chunks) {
      let done = 0;
      while (done < chunk.byteLength) done += writeSync(fd, chunk, done, chunk.byteLength - done);
    }
  } finally {
    closeSync(fd);
  }
}

type ExternalSink = (tensor: Tensor) => { location: string; offset: number; length: number } | undefined;

/**
 * Node metadata rides in one model-level entry, `{node name: {key: value}}` in graph order: NodeProto's own
 * `metadata_props` needs IR v10, newer than the onnx-proto schema we encode with and the models we write.
 */
const NODE_METADATA_KEY = 'qcompile.node_metadata';

function nodeMetadataEntry(graph: Graph): onnxProto.onnx.IStringStringEntryProto[] {
  const annotated = graph.nodes.filter((n) => n.metadata.size > 0);
  if (annotated.length === 0) return [];
  return [{ key: NODE_METADATA_KEY, value: JSON.stringify(Object.fromEntries(annotated.map((n) => [n.name, Object.fromEntries(n.metadata)]))) }];
}

function restoreNodeMetadata(model: Model, fileName: string | undefined): void {
  const text = model.metadataProps.get(NODE_METADATA_KEY);
  if (text === undefined) return;
  model.metadataProps.delete(NODE_METADATA_KEY);
  let entries: unknown;
  try {
    entries = JSON.parse(text);
  } catch {
    entries = undefined;
  }
  const valid = (v: unknown): v is Record<string, Record<string, string>> =>
    typeof v === 'object' && v !== null && Object.values(v).every((m) => typeof m === 'object' && m !== null && Object.values(m).every((x) => typeof x === 'string'));
  if (!valid(entries)) throw new IrError('malformed-model', `metadata '${NODE_METADATA_KEY}' is not a JSON object of string maps`, fileName);
  // Nodes another tool removed or renamed since are skipped: the entry annotates, it does not define the graph.
  const byName = new Map(model.graph.nodes.map((n) => [n.name, n]));
  for (const [name, metadata] of Object.entries(entries)) {
    const node = byName.get(name);
    if (node) for (const [key, value] of Object.entries(metadata)) node.metadata.set(key, value);
  }
}

function modelToProto(model: Model, sink: ExternalSink): onnxProto.onnx.ModelProto {
  return onnx.ModelProto.create({
    irVersion: model.irVersion,
    producerName: model.producerName,
    producerVersion: model.producerVersion,
    domain: model.domain,
    modelVersion: model.modelVersion,
    docString: model.docString ?? '',
    opsetImport: [...model.opsetImports.entries()]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([domain, version]) => ({ domain, version })),
    metadataProps: [...[...model.metadataProps.entries()].map(([key, value]) => ({ key, value })), ...nodeMetadataEntry(model.graph)],
    graph: graphToProto(model.graph, sink),
    functions: model.functions.map((bytes) => onnx.FunctionProto.decode(bytes)),
  });
}

function graphToProto(graph: Graph, sink: ExternalSink): onnxProto.onnx.IGraphProto {
  const typed: onnxProto.onnx.IValueInfoProto[] = [];
  for (const node of graph.nodes) {
    for (const output of node.outputs) if (output.name !== '' && output.type && !output.isGraphOutput) typed.push(valueInfo(output));
  }
  return {
    name: graph.name,
    docString: graph.docString ?? '',
    input: graph.inputs.map(valueInfo),
    output: graph.outputs.map(valueInfo),
    initializer: [...graph.initializers.values()].map((v) => tensorToProto(v.name, v.initializer!, sink, v.docString)),
    node: graph.nodes.map(nodeToProto),
    valueInfo: typed,
  };
}

function valueInfo(value: Value): onnxProto.onnx.IValueInfoProto {
  const info: onnxProto.onnx.IValueInfoProto = { name: value.name };
  if (value.docString) info.docString = value.docString;
  if (value.type) {
    const tensorType: onnxProto.onnx.TypeProto.ITensor = { elemType: value.type.elemType };
    if (value.type.shape) {
      tensorType.shape = {
        dim: value.type.shape.map((d) => (typeof d === 'number' ? { dimValue: d } : typeof d === 'string' ? { dimParam: d } : {})),
      };
    }
    info.type = { tensorType };
  }
  return info;
}

function nodeToProto(node: Node): onnxProto.onnx.INodeProto {
  const proto: onnxProto.onnx.INodeProto = {
    name: node.name,
    opType: node.opType,
    domain: node.domain,
    input: node.inputs.map((v) => v?.name ?? ''),
    output: node.outputs.map((v) => v.name),
    attribute: [...node.attributes.entries()].map(([name, a]) => attributeToProto(name, a)),
  };
  if (node.docString) proto.docString = node.docString;
  return proto;
}

function attributeToProto(name: string, attribute: Attribute): onnxProto.onnx.IAttributeProto {
  const A = onnx.AttributeProto.AttributeType;
  const int = (v: number | bigint) => (typeof v === 'bigint' ? v.toString() : v) as unknown as number;
  switch (attribute.kind) {
    case 'int':
      return { name, type: A.INT, i: int(attribute.value) };
    case 'float':
      return { name, type: A.FLOAT, f: attribute.value };
    case 'string':
      return { name, type: A.STRING, s: Buffer.from(attribute.value, 'utf8') };
    case 'tensor':
      return { name, type: A.TENSOR, t: tensorToProto('', attribute.value, () => undefined) };
    case 'graph':
      return { name, type: A.GRAPH, g: onnx.GraphProto.decode(attribute.value.encoded) };
    case 'ints':
      return { name, type: A.INTS, ints: attribute.value.map(int) };
    case 'floats':
      return { name, type: A.FLOATS, floats: attribute.value };
    case 'strings':
      return { name, type: A.STRINGS, strings: attribute.value.map((s) => Buffer.from(s, 'utf8')) };
  }
}

function tensorToProto(name: string, tensor: Tensor, sink: ExternalSink, docString?: string): onnxProto.onnx.ITensorProto {
  const proto: onnxProto.onnx.ITensorProto = { name, dims: [...tensor.dims], dataType: tensor.dtype };
  if (docString) proto.docString = docString;
  const ref = sink(tensor);
  if (ref) {
    proto.dataLocation = onnx.TensorProto.DataLocation.EXTERNAL;
    proto.externalData = [
      { key: 'location', value: ref.location },
      { key: 'offset', value: String(ref.offset) },
      { key: 'length', value: String(ref.length) },
    ];
  } else {
    proto.rawData = tensor.bytes();
  }
  return proto;
}
