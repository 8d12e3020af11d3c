/**
 * collect-hessians: measures H = XᵀX of the inputs of every layer planned for GPTQ rounding — over every input row,
 * as a matrix product ORT computes in the session — block by block with the earlier blocks already quantized (as
 * GPTQ prescribes; each block's run starts from the values cached after the last one, passes/staged-runs.ts),
 * rounds each block by GPTQ with them in a working copy, and leaves the layers' codes in the GPTQ_CODES artifact for quantize-weights to store. A Hessian lives only
 * while its block is rounded: memory holds one block's Hessians (DiT-XL/2: 212 MB; all 28 would be 5.9 GB) and
 * one byte per rounded weight. Requires calibration batches (CALIBRATION_BATCHES) and an executor.
 */
import type { Value } from '../ir/core.js';
import { IrError } from '../ir/errors.js';
import { Op } from '../ir/ops.js';
import { Tensor } from '../ir/tensor.js';
import { layersOf } from '../quant/identity.js';
import type { Layer } from '../quant/layers.js';
import { CALIBRATION_BATCHES, GPTQ_CODES } from './artifacts.js';
import { HessianAccumulator } from './gptq.js';
import { definePass, type PassResult } from './pass.js';
import { SessionNodes } from './session-nodes.js';
import { StagedRuns } from './staged-runs.js';
import { quantizePlannedWeights } from './weight-quantization.js';

/** The collect-hessians pass. */
export const collectHessians = definePass({
  name: 'collect-hessians',
  summary: 'measure XᵀX of GPTQ layers\' inputs on calibration data, earlier blocks quantized first',
  options: {},
  requires: [CALIBRATION_BATCHES],
  produces: [GPTQ_CODES],
  async run(model, _options, context): Promise<PassResult> {
    const planned = [...context.plan.values()].filter((p) => p.weight?.rounding.kind === 'gptq');
    if (planned.length === 0) return { modified: false, statistics: { layers: 0 } };
    const batches = context.artifacts.require(CALIBRATION_BATCHES, 'collect-hessians');
    if (batches.length === 0) throw new IrError('invalid-argument', 'collect-hessians needs calibration batches: calibrate first');
    if (!context.executor) throw new IrError('invalid-argument', 'collect-hessians needs an executor to run the model');

    // Work on a copy: quantizing its earlier blocks changes what later blocks see, but not the model itself.
    const work = model.clone();
    const codes = new Map<string, Int8Array | Uint8Array>();
    context.artifacts.set(GPTQ_CODES, codes);
    const plannedNames = new Set(planned.map((p) => p.layer));
    const stages = stagesOf(layersOf(work).filter((l) => plannedNames.has(l.name)));
    const runs = new StagedRuns(batches, context.executor);
    let rows = 0;
    for (const [index, stage] of stages.entries()) {
      context.progress('gptq blocks', index, stages.length);
      const layers = new Map(layersOf(work).map((l) => [l.name, l]));
      // One Gram product per distinct input (q, k and v share theirs), computed in the session: the activations
      // never leave ORT, only K×K sums per batch do.
      const grams = new Map<string, Gram>();
      const session = new SessionNodes(work.graph);
      const accumulators = new Map<string, HessianAccumulator>();
      try {
        for (const name of stage) {
          const layer = layers.get(name)!;
          const input = layer.node.input(0);
          if (!grams.has(input.name)) grams.set(input.name, addGram(session, input, layer.inChannels));
        }
        for (const [input, gram] of grams) accumulators.set(input, new HessianAccumulator(gram.channels));
        // Only what this stage's inputs need beyond the values cached after the last stage runs.
        const pending = stages.slice(index).flat().map((name) => layers.get(name)!.node);
        await runs.run(work, [...grams.values()].flatMap((g) => [g.product, g.shape]), pending, (outputs) => {
          for (const [input, gram] of grams) {
            const shape = outputs[gram.shape]!.data as BigInt64Array;
            if (Number(shape[1]) !== gram.channels) throw new IrError('unsupported', `collect-hessians: the input of a GPTQ layer ('${input}') has ${shape[1]} channels last, not ${gram.channels} (only linears are GPTQ-rounded)`);
            accumulators.get(input)!.addGram(outputs[gram.product]!.data as Float32Array, Number(shape[0]));
          }
        });
      } finally {
        session.removeAll();
      }
      const hessians = new Map<string, Float64Array>();
      for (const [input, accumulator] of accumulators) {
        const hessian = accumulator.result();
        for (const name of stage) if (layers.get(name)!.node.input(0).name === input) hessians.set(name, hessian);
        rows = Math.max(rows, accumulator.rows);
      }
      // Round this stage in the copy (recording its codes) so the next stage's inputs carry its error.
      const stagePlan = new Map([...context.plan].filter(([name]) => stage.includes(name)));
      await quantizePlannedWeights(work, stagePlan, { hessians, codes }, () => {});
    }
    context.progress('gptq blocks', stages.length, stages.length);
    return { modified: false, statistics: { layers: codes.size, stages: stages.length, rows_per_layer: rows } };
  },
});

/** The in-graph XᵀX of one input, and the [rows, K] shape it was taken over. */
interface Gram {
  channels: number;
  product: string;
  shape: string;
}

/** Adds X → Reshape [rows, K] → Xᵀ·X (and the reshaped shape, for the row count) to the graph. */
function addGram(session: SessionNodes, x: Value, channels: number): Gram {
  const base = `${x.name}/gram`;
  const rows = session.add(base, Op.Reshape, [x, session.constant(base, 'rows', Tensor.fromInt64([2], [-1, channels]))], 'rows');
  const transposed = session.add(base, Op.Transpose, [rows], 'transposed', { perm: { kind: 'ints', value: [1, 0] } });
  const product = session.add(base, Op.MatMul, [transposed, rows], 'product');
  const shape = session.add(base, Op.Shape, [rows], 'shape');
  return { channels, product: product.name, shape: shape.name };
}

/** Layers grouped into sequential stages: one per block, and one per layer outside blocks, in model order. */
function stagesOf(layers: Layer[]): string[][] {
  const stages: string[][] = [];
  let currentBlock: number | undefined;
  for (const layer of layers) {
    if (layer.block !== undefined && layer.block === currentBlock) stages[stages.length - 1]!.push(layer.name);
    else stages.push([layer.name]);
    currentBlock = layer.block;
  }
  return stages;
}
