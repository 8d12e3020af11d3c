/**
 * IR verifier: structural invariants (SSA, topological order, exact use-lists), op schemas and opsets, finite
 * in-memory weights, the shape conflicts inference proves (what ONNX Runtime refuses at load), and the
 * quantization layouts ONNX Runtime checks late or not at all (blocked DQ scale shapes, extra inputs, MatMulNBits).
 */
import type { Dim, Graph, Model, Node, Value } from './core.js';
import { DataType, dataTypeName } from './dtype.js';
import { IrError } from './errors.js';
import { shapeConflict } from './infer-shapes.js';
import { MS_DOMAIN, Op, type OpType, isOp, opSchema } from './ops.js';
import { MAX_ONNX_OPSET } from './serde.js';
import { assertFinite } from './numerics.js';

/** ONNX Runtime implements its contrib ops at com.microsoft version 1 only. */
const MAX_MS_OPSET = 1;

/** One problem found by the verifier; `code` is stable, `node` names the offending node when there is one. */
export interface VerifyIssue {
  code: string;
  message: string;
  node?: string;
}

/** Checks `model` and returns every issue found (empty when valid). Never throws on a malformed graph. */
export function verifyModel(model: Model): VerifyIssue[] {
  const issues: VerifyIssue[] = [];
  checkOpsets(model, issues);
  checkGraph(model, model.graph, issues);
  checkWeightsFinite(model.graph, issues);
  if (issues.length === 0) {
    // Inference needs a well-formed graph; on one, what it proves wrong ONNX Runtime refuses to load.
    const conflict = shapeConflict(model);
    if (conflict) issues.push({ code: 'shape-inference', message: conflict.message });
  }
  return issues;
}

/** Throws `IrError('verify')` listing all issues when `model` is not valid. */
export function assertValid(model: Model): void {
  const issues = verifyModel(model);
  if (issues.length === 0) return;
  const lines = issues.map((i) => `  ${i.code}: ${i.message}`);
  throw new IrError('verify', `model '${model.graph.name}' has ${issues.length} verifier issue(s):\n${lines.join('\n')}`);
}

function checkOpsets(model: Model, issues: VerifyIssue[]): void {
  const onnx = model.opset;
  if (onnx > MAX_ONNX_OPSET) issues.push({ code: 'opset-too-new', message: `ai.onnx opset ${onnx} is above ONNX Runtime's limit ${MAX_ONNX_OPSET}` });
  if (onnx <= 0) issues.push({ code: 'opset-missing', message: 'the model imports no ai.onnx opset' });
  const contrib = model.opsetImports.get(MS_DOMAIN);
  if (contrib !== undefined && contrib > MAX_MS_OPSET) {
    issues.push({ code: 'opset-too-new', message: `${MS_DOMAIN} opset ${contrib} is above ONNX Runtime's limit ${MAX_MS_OPSET}` });
  }
}

function checkGraph(model: Model, graph: Graph, issues: VerifyIssue[]): void {
  const defined = new Set<Value>();
  const names = new Map<string, Value>();
  const define = (value: Value, where: string, node?: Node): void => {
    const other = names.get(value.name);
    if (other !== undefined) {
      issues.push({ code: 'duplicate-value', message: `value '${value.name}' is defined more than once (${where})`, ...(node ? { node: node.name } : {}) });
    }
    names.set(value.name, value);
    defined.add(value);
  };
  for (const value of graph.inputs) define(value, 'graph input');
  for (const [name, value] of graph.initializers) {
    if (!graph.inputs.includes(value)) define(value, 'initializer');
    checkInitializer(name, value, issues);
  }

  const nodeNames = new Set<string>();
  for (const node of graph.nodes) {
    if (nodeNames.has(node.name)) issues.push({ code: 'duplicate-node-name', message: `node name '${node.name}' is used twice`, node: node.name });
    nodeNames.add(node.name);
    node.inputs.forEach((input, index) => {
      if (!input) return;
      if (!defined.has(input)) {
        issues.push({ code: 'use-before-def', message: `node '${node.name}' (${node.opType}) input ${index} '${input.name}' is not defined before use`, node: node.name });
      }
      if (!input.uses.some((u) => u.node === node && u.index === index)) {
        issues.push({ code: 'missing-use', message: `value '${input.name}' does not record its use by '${node.name}' input ${index}`, node: node.name });
      }
    });
    for (const input of node.implicitInputs) {
      if (!defined.has(input)) issues.push({ code: 'use-before-def', message: `node '${node.name}' captures '${input.name}' before it is defined`, node: node.name });
    }
    node.outputs.forEach((output, index) => {
      if (output.producer !== node || output.producerIndex !== index) {
        issues.push({ code: 'bad-producer', message: `output ${index} '${output.name}' of '${node.name}' does not point back to its producer`, node: node.name });
      }
      define(output, `output of '${node.name}'`, node);
    });
    checkNode(model, node, issues);
  }

  const inGraph = new Set(graph.nodes);
  for (const value of defined) {
    for (const use of value.uses) {
      const actual = use.index < 0 ? use.node.implicitInputs.includes(value) : use.node.inputs[use.index] === value;
      if (!actual || !inGraph.has(use.node)) {
        issues.push({ code: 'stale-use', message: `value '${value.name}' records a use by '${use.node.name}' slot ${use.index} that does not exist`, node: use.node.name });
      }
    }
  }
  for (const output of graph.outputs) {
    if (!defined.has(output)) issues.push({ code: 'undefined-output', message: `graph output '${output.name}' is not defined` });
  }
}

function checkInitializer(name: string, value: Value, issues: VerifyIssue[]): void {
  const tensor = value.initializer;
  if (!tensor) {
    issues.push({ code: 'initializer-type', message: `initializer '${name}' holds no tensor` });
    return;
  }
  if (value.name !== name) issues.push({ code: 'initializer-type', message: `initializer key '${name}' differs from its value name '${value.name}'` });
  const type = value.type;
  if (!type) return;
  const shapeMatches = type.shape === undefined || (type.shape.length === tensor.dims.length && type.shape.every((d, i) => d === null || d === tensor.dims[i]));
  if (type.elemType !== tensor.dtype || !shapeMatches) {
    issues.push({
      code: 'initializer-type',
      message: `initializer '${name}' is typed ${describeType(type.elemType, type.shape)} but holds ${describeType(tensor.dtype, [...tensor.dims])}`,
    });
  }
}

/** The inputs of weighted ops that hold weights and biases (what quantization reads). */
const WEIGHT_INPUTS: [OpType, number[]][] = [
  [Op.MatMul, [0, 1]],
  [Op.Gemm, [0, 1, 2]],
  [Op.Conv, [1, 2]],
  [Op.ConvTranspose, [1, 2]],
];

/**
 * In-memory float weights must be finite: a NaN weight gives NaN scales, an Inf weight an Inf scale. Deferred
 * (external, lazy) weights are checked as the quantizer reads them, so a big model is not read twice.
 */
function checkWeightsFinite(graph: Graph, issues: VerifyIssue[]): void {
  const checked = new Set<Value>();
  for (const node of graph.nodes) {
    const slots = WEIGHT_INPUTS.find(([op]) => isOp(node, op))?.[1] ?? [];
    for (const slot of slots) {
      const tensor = node.inputs[slot]?.initializer;
      if (!tensor || tensor.isDeferred || !FLOAT_TYPES.has(tensor.dtype) || checked.has(node.inputs[slot]!)) continue;
      checked.add(node.inputs[slot]!);
      try {
        assertFinite(tensor.toFloat32(), `weight '${node.inputs[slot]!.name}'`);
      } catch (error) {
        if (!(error instanceof IrError)) throw error;
        issues.push({ code: 'non-finite', message: `${error.message} (input ${slot} of '${node.name}', ${node.opType})`, node: node.name });
      }
    }
  }
}

const FLOAT_TYPES = new Set([DataType.FLOAT, DataType.FLOAT16, DataType.DOUBLE]);

function checkNode(model: Model, node: Node, issues: VerifyIssue[]): void {
  const domain = node.domain === 'ai.onnx' ? '' : node.domain;
  const domainLabel = domain === '' ? 'ai.onnx' : domain;
  if (!model.opsetImports.has(domain) && !(domain === '' && model.opsetImports.has('ai.onnx'))) {
    issues.push({ code: 'domain-not-imported', message: `node '${node.name}' uses domain '${domainLabel}', which the model does not import`, node: node.name });
  }
  const schema = opSchema(node.opType, domain);
  if (!schema) {
    // Domains without a schema table (custom ops) cannot be checked further, but known domains must match.
    issues.push({ code: 'unknown-op', message: `node '${node.name}' has op '${node.opType}' unknown in domain '${domainLabel}'`, node: node.name });
    return;
  }
  let inputCount = node.inputs.length;
  while (inputCount > 0 && node.inputs[inputCount - 1] === undefined) inputCount--;
  if (inputCount < schema.minInputs || (schema.maxInputs >= 0 && inputCount > schema.maxInputs)) {
    issues.push({ code: 'arity', message: `node '${node.name}' (${node.opType}) has ${inputCount} inputs, expects ${range(schema.minInputs, schema.maxInputs)}`, node: node.name });
  }
  for (let i = 0; i < schema.minInputs && i < node.inputs.length; i++) {
    if (!node.inputs[i]) issues.push({ code: 'arity', message: `node '${node.name}' (${node.opType}) is missing required input ${i}`, node: node.name });
  }
  const outputCount = node.outputs.length;
  if (outputCount < schema.minOutputs || (schema.maxOutputs >= 0 && outputCount > schema.maxOutputs)) {
    issues.push({ code: 'arity', message: `node '${node.name}' (${node.opType}) has ${outputCount} outputs, expects ${range(schema.minOutputs, schema.maxOutputs)}`, node: node.name });
  }
  if (isOp(node, Op.QuantizeLinear) || isOp(node, Op.DequantizeLinear)) checkQdq(node, issues);
  if (isOp(node, Op.MatMulNBits)) checkMatMulNBits(node, issues);
}

/** Scale / zero-point shapes against axis and block_size (ORT checks the blocked case only at run()). */
function checkQdq(node: Node, issues: VerifyIssue[]): void {
  const report = (message: string): void => void issues.push({ code: 'qdq-params', message: `node '${node.name}' (${node.opType}): ${message}`, node: node.name });
  const x = staticShape(node.inputs[0]);
  const scale = staticShape(node.inputs[1]);
  const zeroPoint = node.inputs[2] ? staticShape(node.inputs[2]) : undefined;
  if (zeroPoint && scale && !sameShape(zeroPoint, scale)) report(`zero point shape [${zeroPoint.join(',')}] differs from scale shape [${scale.join(',')}]`);
  if (!scale) return;
  const blockSize = node.intAttr('block_size', 0);
  if (scale.length === 0 || (scale.length === 1 && scale[0] === 1 && blockSize === 0)) return; // per-tensor
  if (!x) return;
  const rank = x.length;
  const rawAxis = node.intAttr('axis', 1);
  const axis = rawAxis < 0 ? rawAxis + rank : rawAxis;
  if (axis < 0 || axis >= rank) {
    report(`axis ${rawAxis} is out of range for rank ${rank}`);
    return;
  }
  if (blockSize > 0) {
    const expected = x.map((d, i) => (i === axis && typeof d === 'number' ? Math.ceil(d / blockSize) : d));
    if (!sameShape(scale, expected)) report(`blocked scale shape [${scale.join(',')}] does not match input [${x.join(',')}] with axis ${axis} and block_size ${blockSize} (expected [${expected.join(',')}])`);
    return;
  }
  if (scale.length !== 1 || (typeof x[axis] === 'number' && scale[0] !== x[axis])) {
    report(`per-axis scale shape [${scale.join(',')}] does not match input dim ${axis} (${String(x[axis])})`);
  }
}

/** MatMulNBits layout: B uint8 [N, nb, bs·bits/8], scales [N·nb], zero_points uint8 [N·ceil(nb·bits/8)]. */
function checkMatMulNBits(node: Node, issues: VerifyIssue[]): void {
  const report = (message: string): void => void issues.push({ code: 'matmulnbits', message: `node '${node.name}': ${message}`, node: node.name });
  const k = node.intAttr('K', 0);
  const n = node.intAttr('N', 0);
  const bits = node.intAttr('bits', 4);
  const blockSize = node.intAttr('block_size', 0);
  if (k <= 0 || n <= 0) report(`attributes K=${k} and N=${n} must be positive`);
  if (![2, 4, 8].includes(bits)) report(`bits=${bits} must be 2, 4 or 8`);
  if (blockSize < 16 || blockSize > 256 || (blockSize & (blockSize - 1)) !== 0) report(`block_size=${blockSize} must be a power of 2 in 16..256`);
  if (k <= 0 || n <= 0 || blockSize <= 0) return;
  const blocks = Math.ceil(k / blockSize);
  const a = node.inputs[0]?.type?.shape;
  if (a && a.length > 0 && typeof a[a.length - 1] === 'number' && a[a.length - 1] !== k) report(`input A's last dim ${String(a[a.length - 1])} differs from K=${k}`);
  const b = node.inputs[1];
  const expectB = [n, blocks, (blockSize * bits) / 8];
  if (b?.type && (b.type.elemType !== DataType.UINT8 || !sameShape(staticShape(b) ?? [], expectB))) {
    report(`B is ${describeType(b.type.elemType, b.type.shape)}, expected u8[${expectB.join('x')}]`);
  }
  const scales = staticShape(node.inputs[2]);
  if (scales && !(sameShape(scales, [n * blocks]) || sameShape(scales, [n, blocks]))) report(`scales shape [${scales.join(',')}] expected [${n * blocks}]`);
  const zp = node.inputs[3];
  if (zp?.type && zp.type.elemType === DataType.UINT8) {
    const expectZp = n * Math.ceil((blocks * bits) / 8);
    const shape = staticShape(zp);
    if (shape && !(sameShape(shape, [expectZp]) || sameShape(shape, [n, Math.ceil((blocks * bits) / 8)]))) report(`zero_points shape [${shape.join(',')}] expected [${expectZp}]`);
  }
}

function staticShape(value: Value | undefined): Dim[] | undefined {
  if (!value) return undefined;
  if (value.initializer) return [...value.initializer.dims];
  return value.type?.shape;
}

function sameShape(a: readonly Dim[], b: readonly Dim[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

function range(min: number, max: number): string {
  if (max < 0) return `at least ${min}`;
  return min === max ? `${min}` : `${min}..${max}`;
}

function describeType(elemType: DataType, shape: readonly Dim[] | undefined): string {
  return `${dataTypeName(elemType)}[${shape ? shape.map((d) => (d === null ? '?' : String(d))).join('x') : '*'}]`;
}
