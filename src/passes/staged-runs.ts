/**
 * Staged runs: a model run over the calibration batches stage after stage, while the stages' layers are
 * rewritten in between (GPTQ rounds block k before block k+1 is measured), without running the whole model
 * for every stage. After each stage the values no later rewrite can change — those no node that reads a
 * still-pending layer's weight lies upstream of — are kept per batch at the frontier where the changing part
 * begins, and the next stage runs only the slice of the model (Model.slice) from that frontier to what it
 * fetches. On DiT-XL/2 the frontier is a block's residual stream and conditioning (≈1.2 MB a row), and the 29
 * GPTQ stages cost about two forwards of the model instead of one each. Memory: the frontier of every batch
 * (for a UNet it includes the skip connections).
 */
import type { Model, Node } from '../ir/core.js';
import { DataType } from '../ir/dtype.js';
import type { HostTensor, ModelExecutor, TensorMap } from '../ir/executor.js';

/** The element type of each host tensor dtype, for typing cached values as slice inputs. */
const ELEM_TYPES: Record<HostTensor['dtype'], DataType> = {
  float32: DataType.FLOAT,
  float16: DataType.FLOAT16,
  int64: DataType.INT64,
  int32: DataType.INT32,
  int8: DataType.INT8,
  uint8: DataType.UINT8,
  bool: DataType.BOOL,
};

/** Runs over a fixed list of batches, caching per batch the frontier values of the part no pending layer changes. */
export class StagedRuns {
  /** Per batch, the cached frontier values by name. */
  private cache: TensorMap[];

  constructor(
    private readonly batches: TensorMap[],
    private readonly executor: ModelExecutor,
  ) {
    this.cache = batches.map(() => ({}));
  }

  /**
   * Runs `model` on every batch and hands `fetch`'s values to `onBatch`; only the nodes `fetch` needs beyond the
   * cached values run. `pending` are the nodes of layers still to be rewritten (this stage's and every later
   * one's): afterwards the cache holds the values upstream of all of them that a pending node's side reads.
   */
  async run(model: Model, fetch: string[], pending: Iterable<Node>, onBatch: (outputs: TensorMap, batch: number) => void): Promise<void> {
    const graph = model.graph;
    const cached = Object.keys(this.cache[0]!).filter((name) => graph.findValue(name)?.producer);
    const frontier = frontierOf(model, new Set(pending));
    const computed = frontier.filter((name) => !cached.includes(name));
    const cut = new Map(cached.map((name) => [name, { elemType: ELEM_TYPES[this.cache[0]![name]!.dtype] }]));
    const outputs = [...new Set([...fetch, ...computed])];
    const slice = model.slice(cut, outputs);
    const inputs = new Set(slice.graph.inputs.map((v) => v.name));
    const prepared = await this.executor.prepare(slice, outputs);
    try {
      for (const [b, feeds] of this.batches.entries()) {
        const given: TensorMap = {};
        for (const [name, tensor] of Object.entries({ ...feeds, ...this.cache[b] })) if (inputs.has(name)) given[name] = tensor;
        const results = await prepared.run(given);
        onBatch(results, b);
        const kept: TensorMap = {};
        for (const name of frontier) kept[name] = results[name] ?? this.cache[b]![name]!;
        this.cache[b] = kept;
      }
    } finally {
      await prepared.release();
    }
  }
}

/**
 * The values computed upstream of every pending node (no pending node is among their ancestors) that a
 * downstream node reads: what later stages start from. Graph inputs and initializers are not cached.
 */
function frontierOf(model: Model, pending: Set<Node>): string[] {
  const downstream = new Set<Node>();
  for (const node of model.graph.nodes) {
    if (pending.has(node) || [...node.inputs, ...node.implicitInputs].some((v) => v?.producer && downstream.has(v.producer))) downstream.add(node);
  }
  const frontier = new Set<string>();
  for (const node of downstream) {
    for (const value of [...node.inputs, ...node.implicitInputs]) if (value?.producer && !downstream.has(value.producer)) frontier.add(value.name);
  }
  return [...frontier];
}
