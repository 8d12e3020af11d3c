/**
 * Type and shape inference over the IR: fills `value.type` of every node output, keeping symbolic dims
 * (`batch`) symbolic. Small int values of shape subgraphs (Shape → Gather/Slice → Unsqueeze → Concat) are
 * propagated so Reshape/Expand targets resolve. Weights are never read: only int tensors of ≤ 64 elements.
 */
import type { Dim, Model, Node, Value, ValueType } from './core.js';
import { DataType } from './dtype.js';
import { IrError } from './errors.js';
import { MS_DOMAIN, Op, type OpType, domainOf, isOp } from './ops.js';
import { type ShapeContext, type ShapeRule, MAX_PROPAGATED_ELEMENTS, shapeError, smallTensorInts } from './shape-rules/context.js';
import { arithmetic, biasGelu, boolOfInput, cast, castLike, comparison, dropout, sameAsInput, where } from './shape-rules/elementwise.js';
import { conv, convTranspose, gemm, globalPool, matmul, matmulIntegerToFloat, matmulNBits, pool } from './shape-rules/linear.js';
import { argReduce, batchNormalization, layerNormalization, reduce, sameShapeNormalization } from './shape-rules/normalization.js';
import { dequantizeLinear, dynamicQuantizeLinear, quantizeLinear } from './shape-rules/quantization.js';
import {
  concat,
  constant,
  constantOfShape,
  einsum,
  expand,
  flatten,
  gather,
  pad,
  range,
  reshape,
  resize,
  shapeOf,
  size,
  slice,
  split,
  squeeze,
  tile,
  transpose,
  unsqueeze,
} from './shape-rules/shape-ops.js';
import type { Tensor } from './tensor.js';

/** What inference achieved: how many node outputs got an inferred type, and the names of those it could not infer. */
export interface InferenceResult {
  inferred: number;
  unknown: string[];
}

/** The one registry: op → shape rule. Ops not listed leave their outputs untyped (reported, never a crash). */
const RULES: Partial<Record<OpType, ShapeRule>> = {
  [Op.Abs]: sameAsInput,
  [Op.Ceil]: sameAsInput,
  [Op.Clip]: sameAsInput,
  [Op.Cos]: sameAsInput,
  [Op.CumSum]: sameAsInput,
  [Op.Elu]: sameAsInput,
  [Op.Erf]: sameAsInput,
  [Op.Exp]: sameAsInput,
  [Op.FastGelu]: sameAsInput,
  [Op.Floor]: sameAsInput,
  [Op.Gelu]: sameAsInput,
  [Op.GroupNormalization]: sameShapeNormalization,
  [Op.HardSigmoid]: sameAsInput,
  [Op.HardSwish]: sameAsInput,
  [Op.Identity]: sameAsInput,
  [Op.InstanceNormalization]: sameShapeNormalization,
  [Op.LeakyRelu]: sameAsInput,
  [Op.Log]: sameAsInput,
  [Op.Neg]: sameAsInput,
  [Op.QuickGelu]: sameAsInput,
  [Op.Reciprocal]: sameAsInput,
  [Op.Relu]: sameAsInput,
  [Op.Round]: sameAsInput,
  [Op.Sigmoid]: sameAsInput,
  [Op.Sign]: sameAsInput,
  [Op.Sin]: sameAsInput,
  [Op.Softmax]: sameAsInput,
  [Op.Softplus]: sameAsInput,
  [Op.Sqrt]: sameAsInput,
  [Op.Tanh]: sameAsInput,
  [Op.Trilu]: sameAsInput,
  [Op.IsNaN]: boolOfInput,
  [Op.Not]: boolOfInput,
  [Op.Add]: arithmetic,
  [Op.Sub]: arithmetic,
  [Op.Mul]: arithmetic,
  [Op.Div]: arithmetic,
  [Op.Pow]: arithmetic,
  [Op.Mod]: arithmetic,
  [Op.Max]: arithmetic,
  [Op.Min]: arithmetic,
  [Op.Sum]: arithmetic,
  [Op.Mean]: arithmetic,
  [Op.BiasGelu]: biasGelu,
  [Op.Equal]: comparison,
  [Op.Less]: comparison,
  [Op.LessOrEqual]: comparison,
  [Op.Greater]: comparison,
  [Op.GreaterOrEqual]: comparison,
  [Op.And]: comparison,
  [Op.Or]: comparison,
  [Op.Xor]: comparison,
  [Op.Where]: where,
  [Op.Cast]: cast,
  [Op.CastLike]: castLike,
  [Op.Dropout]: dropout,
  [Op.MatMul]: matmul,
  [Op.MatMulInteger]: matmul,
  [Op.MatMulIntegerToFloat]: matmulIntegerToFloat,
  [Op.MatMulNBits]: matmulNBits,
  [Op.Gemm]: gemm,
  [Op.Conv]: conv,
  [Op.ConvTranspose]: convTranspose,
  [Op.MaxPool]: pool,
  [Op.AveragePool]: pool,
  [Op.GlobalAveragePool]: globalPool,
  [Op.LayerNormalization]: layerNormalization,
  [Op.BatchNormalization]: batchNormalization,
  [Op.ReduceMean]: reduce,
  [Op.ReduceSum]: reduce,
  [Op.ReduceMax]: reduce,
  [Op.ReduceMin]: reduce,
  [Op.ReduceProd]: reduce,
  [Op.ReduceL2]: reduce,
  [Op.ReduceSumSquare]: reduce,
  [Op.ArgMax]: argReduce,
  [Op.ArgMin]: argReduce,
  [Op.QuantizeLinear]: quantizeLinear,
  [Op.DequantizeLinear]: dequantizeLinear,
  [Op.DynamicQuantizeLinear]: dynamicQuantizeLinear,
  [Op.Reshape]: reshape,
  [Op.Transpose]: transpose,
  [Op.Split]: split,
  [Op.Slice]: slice,
  [Op.Concat]: concat,
  [Op.Gather]: gather,
  [Op.Unsqueeze]: unsqueeze,
  [Op.Squeeze]: squeeze,
  [Op.Expand]: expand,
  [Op.Shape]: shapeOf,
  [Op.Size]: size,
  [Op.Flatten]: flatten,
  [Op.Tile]: tile,
  [Op.Pad]: pad,
  [Op.ConstantOfShape]: constantOfShape,
  [Op.Constant]: constant,
  [Op.Range]: range,
  [Op.Resize]: resize,
  [Op.Einsum]: einsum,
};

/** The rule for `node`, looked up in the node's own domain (an ai.onnx name in another domain has none). */
function ruleFor(node: Node): ShapeRule | undefined {
  const domain = node.domain === 'ai.onnx' ? '' : node.domain;
  if (domain !== '' && domain !== MS_DOMAIN) return undefined;
  if (!Object.prototype.hasOwnProperty.call(RULES, node.opType)) return undefined;
  const opType = node.opType as OpType;
  return domainOf(opType) === domain ? RULES[opType] : undefined;
}

/** Infers the type of every node output in `model` (in place); throws IrError('shape-inference') on inconsistent shapes. */
export function inferShapes(model: Model): InferenceResult {
  const graph = model.graph;
  const values = new Map<Value, Dim[]>();
  for (const init of graph.initializers.values()) {
    const ints = init.initializer ? smallTensorInts(init.initializer) : undefined;
    if (ints) values.set(init, ints);
  }
  let inferred = 0;
  const unknown: string[] = [];
  for (const node of graph.nodes) {
    const rule = ruleFor(node);
    const result = rule ? rule(contextFor(model.opset, node, values)) : undefined;
    node.outputs.forEach((output, i) => {
      const type = result?.types[i];
      const value = result?.values?.[i];
      if (value && value.length <= MAX_PROPAGATED_ELEMENTS && isIntType(type)) values.set(output, value);
      if (type) {
        output.type = mergeDeclared(output.type, type);
        inferred++;
      } else unknown.push(output.name); // a declared type (value_info) is kept, but it was not inferred
    });
  }
  return { inferred, unknown };
}

/**
 * The types inference gives `wanted`, leaving every value's type as it was declared (so a pass that only needs
 * to know shapes does not add value_info to what it saves). Where inference stops early, what it reached.
 * `inputDims` fixes graph inputs' dims for this inference only: the feeds a pass is about to run (a UNet's
 * dynamic height and width become its calibration resolution, so its activations' row lengths are known).
 */
export function peekTypes(model: Model, wanted: readonly Value[], inputDims?: ReadonlyMap<string, readonly Dim[]>): Map<Value, ValueType | undefined> {
  const types = new Map<Value, ValueType | undefined>();
  const inputs = model.graph.inputs.filter((v) => inputDims?.has(v.name) && v.type);
  const declaredInputs = inputs.map((v) => v.type);
  for (const v of inputs) v.type = { elemType: v.type!.elemType, shape: [...inputDims!.get(v.name)!] };
  try {
    withDeclaredTypes(model, () => {
      try {
        inferShapes(model);
      } catch {
        // An inconsistent shape elsewhere in the graph: keep what inference reached before it.
      }
      for (const v of wanted) types.set(v, v.type);
    });
  } finally {
    inputs.forEach((v, i) => (v.type = declaredInputs[i]));
  }
  return types;
}

/** The inconsistency inference proves in `model` (a MatMul whose inner dims differ…), or undefined; types stay as declared. */
export function shapeConflict(model: Model): IrError | undefined {
  return withDeclaredTypes(model, () => {
    try {
      inferShapes(model);
      return undefined;
    } catch (error) {
      if (error instanceof IrError && error.code === 'shape-inference') return error;
      throw error;
    }
  });
}

/** Runs `body`, then puts back the declared type of every node output. */
function withDeclaredTypes<T>(model: Model, body: () => T): T {
  const outputs = model.graph.nodes.flatMap((n) => n.outputs);
  const declared = outputs.map((v) => v.type);
  try {
    return body();
  } finally {
    outputs.forEach((v, i) => (v.type = declared[i]));
  }
}

function isIntType(type: ValueType | undefined): boolean {
  return type?.elemType === DataType.INT64 || type?.elemType === DataType.INT32;
}

/** Keeps declared information where inference has less (an unknown rank or dim), else the inferred type. */
function mergeDeclared(declared: ValueType | undefined, inferred: ValueType): ValueType {
  if (!declared?.shape || declared.elemType !== inferred.elemType) return inferred;
  if (!inferred.shape) return { elemType: inferred.elemType, shape: [...declared.shape] };
  if (inferred.shape.length !== declared.shape.length) return inferred;
  return { elemType: inferred.elemType, shape: inferred.shape.map((d, i) => (d === null ? declared.shape![i]! : d)) };
}

function contextFor(opset: number, node: Node, values: Map<Value, Dim[]>): ShapeContext {
  return {
    node,
    opset,
    has: (index) => node.inputs[index] !== undefined,
    type: (index) => node.inputs[index]?.type,
    shape: (index) => node.inputs[index]?.type?.shape,
    ints: (index) => {
      const input = node.inputs[index];
      return input ? values.get(input) : undefined;
    },
    floats: (index) => {
      const input = node.inputs[index];
      const tensor = input?.initializer ?? constantTensorOf(input);
      if (!tensor || tensor.size > MAX_PROPAGATED_ELEMENTS || (tensor.dtype !== DataType.FLOAT && tensor.dtype !== DataType.DOUBLE && tensor.dtype !== DataType.FLOAT16)) return undefined;
      return Array.from(tensor.toFloat32());
    },
    fail: (message) => shapeError(node, message),
  };
}

function constantTensorOf(value: Value | undefined): Tensor | undefined {
  const producer = value?.producer;
  if (!producer || !isOp(producer, Op.Constant)) return undefined;
  const attr = producer.attributes.get('value');
  return attr?.kind === 'tensor' ? attr.value : undefined;
}
