/**
 * The ONNX Runtime-backed ModelExecutor: exposes the requested intermediate values as extra graph outputs
 * (pushed only while encoding, then popped, so the caller's model is unchanged), opens an onnxruntime-node
 * session — from bytes, or from a temp folder when weights are external or lazy — and runs batches.
 */
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { makeTemporaryFolder, releaseTemporary } from '../ir/atomic-file.js';
import type { Graph, Model, Node, Value } from '../ir/core.js';
import { IrError } from '../ir/errors.js';
import { encodeModel, saveModel } from '../ir/serde.js';
import type { HostTensor, ModelExecutor, PreparedModel, TensorMap } from '../ir/executor.js';
import { hasSaturatingKernels, widenSaturatingWeights } from '../quant/integer-kernels.js';
import { ortSpinning, sessionConfigExtra, spinningConfig } from './ort-session.js';

const X86 = process.arch === 'x64' || process.arch === 'ia32';

/** Session settings for evaluation runs. */
export interface OrtExecutorOptions {
  /** ORT graph optimization level (default 'all'). */
  optimization?: 'disabled' | 'basic' | 'extended' | 'all';
  /** Threads per session (default: ORT's choice). */
  threads?: number;
  /**
   * Keep ORT's MatMulNBits rewrite of 4/8-bit weights exact (accuracy level 0) instead of int8 activations;
   * default true, so evaluation measures the quantized weights, not ORT's extra rounding.
   */
  exactLowBitMatMul?: boolean;
  /**
   * Let ORT keep freed buffers in its CPU arena for later runs (default false). The arena never hands memory
   * back, and sessions with many fetched values fragment it: on DiT-XL/2, a calibration session over the
   * int8-weight model grew from 0.57 GB to 4.53 GB in two runs with it and stayed at 0.79 GB without, at the same
   * per-run time (bench/ort-arena.ts).
   */
  memoryArena?: boolean;
  /** Let ORT's intra-op threads spin between ops (default: `ortSpinning()`, on unless `QCOMPILE_ORT_SPINNING=0`). */
  spinning?: boolean;
}

/** A ModelExecutor running models in onnxruntime-node on the CPU. */
export class OrtExecutor implements ModelExecutor {
  constructor(private readonly options: OrtExecutorOptions = {}) {}

  /**
   * Prepares `model` so that the values named in `fetch` can be read. Int8 weights that ORT's uint8×int8 kernels
   * could saturate on an x86 CPU without VNNI are run as uint8 (on a clone: `widenSaturatingWeights`), so what is
   * measured is the quantized graph's arithmetic on every CPU.
   */
  async prepare(original: Model, fetch: string[]): Promise<PreparedModel> {
    const model = exactIntegerProducts(original);
    const graph = model.graph;
    const added: Value[] = [];
    for (const name of fetch) {
      const value = graph.findValue(name);
      if (!value) throw new IrError('invalid-argument', `cannot fetch '${name}': no such value in graph '${graph.name}'`);
      if (!value.isGraphOutput) added.push(value);
    }
    const sessionOptions = this.sessionOptions();
    let session: ort.InferenceSession;
    let tempDir: string | undefined;
    const modelOutputs = [...graph.outputs];
    graph.outputs.push(...added);
    const originalOrder = branchesForFetchesLast(graph, modelOutputs);
    try {
      if (hasDeferredTensors(model)) {
        // ORT resolves external data by path, so deferred weights go to disk next to a model file: a tracked
        // temporary, gone once the session holds the weights, or on any exit (signals included) before that.
        // Untouched external weights are read in place through a hard link of their file: staging a 3 GB model
        // whose pass changed a few tensors writes those tensors only.
        tempDir = makeTemporaryFolder('qcompile-ort-');
        const path = join(tempDir, 'model.onnx');
        saveModel(model, path, { externalData: 'always', linkExternalData: true });
        session = await ort.InferenceSession.create(path, sessionOptions);
      } else {
        session = await ort.InferenceSession.create(encodeModel(model), sessionOptions);
      }
    } finally {
      if (originalOrder) graph.nodes.splice(0, graph.nodes.length, ...originalOrder);
      graph.outputs.splice(graph.outputs.length - added.length, added.length);
      if (tempDir) releaseTemporary(tempDir);
    }
    return prepared(session, fetch);
  }

  /** Prepares the model saved at `path` (its external data beside it), fetching graph outputs only: nothing is encoded again. */
  async prepareFile(path: string, fetch: string[]): Promise<PreparedModel> {
    return prepared(await ort.InferenceSession.create(path, this.sessionOptions()), fetch);
  }

  private sessionOptions(): ort.InferenceSession.SessionOptions {
    return {
      graphOptimizationLevel: this.options.optimization ?? 'all',
      enableCpuMemArena: this.options.memoryArena ?? false,
      ...(this.options.threads ? { intraOpNumThreads: this.options.threads, interOpNumThreads: 1 } : {}),
      extra: sessionConfigExtra({
        ...(this.options.exactLowBitMatMul ?? true ? { 'session.qdq_matmulnbits_accuracy_level': '0' } : {}),
        ...spinningConfig(this.options.spinning ?? ortSpinning()),
      }),
    };
  }
}

/**
 * `model`, or on x86 a clone of it whose saturating int8 integer-kernel weights are uint8 (integer-kernels.ts).
 * ORT's ARM kernels are exact for int8 weights, and it keeps int8 activations int8 there (their uint8 × int8
 * pairing is x86's), so elsewhere the model runs as it is.
 */
function exactIntegerProducts(model: Model): Model {
  if (!X86 || !hasSaturatingKernels(model)) return model;
  const exact = model.clone();
  widenSaturatingWeights(exact);
  return exact;
}

/** A runner over an open session. */
function prepared(session: ort.InferenceSession, fetch: string[]): PreparedModel {
  return {
    async run(feeds: TensorMap): Promise<TensorMap> {
      const inputs: Record<string, ort.Tensor> = {};
      for (const [name, tensor] of Object.entries(feeds)) inputs[name] = new ort.Tensor(tensor.dtype, tensor.data as never, tensor.dims);
      const results = await session.run(inputs, fetch);
      const out: TensorMap = {};
      for (const name of fetch) out[name] = toHost(results[name]!);
      return out;
    },
    async release(): Promise<void> {
      await session.release();
    },
  };
}

function toHost(tensor: ort.Tensor): HostTensor {
  return { dtype: tensor.type as HostTensor['dtype'], dims: [...tensor.dims], data: tensor.data as HostTensor['data'] };
}

/**
 * Reorders the nodes only the added fetches need (calibration observers, Gram products: branches off the model)
 * to the end, the branch reading the latest of the model's values first; returns the original order (undefined
 * when nothing moved). ORT's default execution order is a depth-first walk from the leaf nodes taken from the
 * last: with the branches inline it runs them after the whole model, so every observed activation stays alive
 * to the end of the run — on DiT-XL/2 a calibration run over 113 observed tensors peaked 2.59 GB within the run
 * for 0.79 GB after it; ordered so, each branch runs as soon as its value exists, and the run peaks at 0.95 GB
 * (the model alone: 0.90 GB). Each branch keeps its own nodes in order, so the graph stays topologically sorted.
 */
function branchesForFetchesLast(graph: Graph, modelOutputs: readonly Value[]): Node[] | undefined {
  const nodes = graph.nodes;
  const producersOf = (node: Node) => [...node.inputs, ...node.implicitInputs].flatMap((v) => (v?.producer ? [v.producer] : []));
  const needed = new Set<Node>();
  const stack = modelOutputs.flatMap((v) => (v.producer ? [v.producer] : []));
  while (stack.length > 0) {
    const node = stack.pop()!;
    if (needed.has(node)) continue;
    needed.add(node);
    stack.push(...producersOf(node));
  }
  if (needed.size === nodes.length) return undefined;
  const position = new Map(nodes.map((n, i) => [n, i]));
  // Branches: the other nodes joined by their edges among themselves; each attached where its latest model value is made.
  const root = new Map<Node, Node>();
  const find = (node: Node): Node => {
    let r = node;
    while (root.get(r) !== r) r = root.get(r)!;
    root.set(node, r);
    return r;
  };
  const branchNodes = nodes.filter((n) => !needed.has(n));
  for (const node of branchNodes) root.set(node, node);
  for (const node of branchNodes) for (const p of producersOf(node)) if (!needed.has(p)) root.set(find(node), find(p));
  const attach = new Map<Node, number>();
  for (const node of branchNodes) {
    const r = find(node);
    for (const p of producersOf(node)) if (needed.has(p)) attach.set(r, Math.max(attach.get(r) ?? -1, position.get(p)!));
    if (!attach.has(r)) attach.set(r, -1);
  }
  const branches = new Map<Node, Node[]>();
  for (const node of branchNodes) {
    const r = find(node);
    if (!branches.has(r)) branches.set(r, []);
    branches.get(r)!.push(node);
  }
  const ordered = [...branches.entries()].sort(([a, first], [b, second]) => attach.get(b)! - attach.get(a)! || position.get(first[0]!)! - position.get(second[0]!)!);
  const original = [...nodes];
  nodes.splice(0, nodes.length, ...original.filter((n) => needed.has(n)), ...ordered.flatMap(([, branch]) => branch));
  return original;
}

function hasDeferredTensors(model: Model): boolean {
  for (const value of model.graph.initializers.values()) if (value.initializer!.isDeferred) return true;
  return false;
}
