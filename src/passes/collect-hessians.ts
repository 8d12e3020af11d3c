/**
 * collect-hessians: measures H = XᵀX of the inputs of every layer planned for GPTQ rounding, block by block
 * with the earlier blocks already quantized (as GPTQ prescribes), and leaves them in the LAYER_HESSIANS
 * artifact for quantize-weights. Requires calibration batches (CALIBRATION_BATCHES) and an executor.
 */
import { IrError } from '../ir/errors.js';
import { layersOf } from '../quant/identity.js';
import type { Layer } from '../quant/layers.js';
import { CALIBRATION_BATCHES, LAYER_HESSIANS } from './artifacts.js';
import { HessianAccumulator } from './gptq.js';
import { definePass, type PassResult } from './pass.js';
import { quantizePlannedWeights } from './weight-quantization.js';

/** Input rows (tokens) accumulated per layer; more are subsampled evenly (4096 cost the fixture 3 dB of eps SQNR at W4). */
const MAX_ROWS = 16384;

/** The collect-hessians pass. */
export const collectHessians = definePass({
  name: 'collect-hessians',
  summary: 'measure XᵀX of GPTQ layers\' inputs on calibration data, earlier blocks quantized first',
  options: {},
  requires: [CALIBRATION_BATCHES],
  produces: [LAYER_HESSIANS],
  async run(model, _options, context): Promise<PassResult> {
    const planned = [...context.plan.values()].filter((p) => p.weight?.rounding.kind === 'gptq');
    if (planned.length === 0) return { modified: false, statistics: { layers: 0 } };
    const batches = context.artifacts.require(CALIBRATION_BATCHES, 'collect-hessians');
    if (batches.length === 0) throw new IrError('invalid-argument', 'collect-hessians needs calibration batches: calibrate first');
    if (!context.executor) throw new IrError('invalid-argument', 'collect-hessians needs an executor to run the model');

    // Work on a copy: quantizing its earlier blocks changes what later blocks see, but not the model itself.
    const work = model.clone();
    const hessians = new Map<string, Float64Array>();
    context.artifacts.set(LAYER_HESSIANS, hessians);
    const plannedNames = new Set(planned.map((p) => p.layer));
    const stages = stagesOf(layersOf(work).filter((l) => plannedNames.has(l.name)));
    let rows = 0;
    for (const [index, stage] of stages.entries()) {
      context.progress('gptq blocks', index, stages.length);
      const layers = new Map(layersOf(work).map((l) => [l.name, l]));
      const inputs = [...new Set(stage.map((name) => layers.get(name)!.node.input(0).name))];
      const accumulators = new Map(stage.map((name) => [name, new HessianAccumulator(layers.get(name)!.inChannels)]));
      const prepared = await context.executor.prepare(work, inputs);
      try {
        for (const feeds of batches) {
          const outputs = await prepared.run(feeds);
          for (const name of stage) {
            const layer = layers.get(name)!;
            const x = outputs[layer.node.input(0).name]!;
            const data = x.data as Float32Array;
            const K = layer.inChannels;
            if (x.dims[x.dims.length - 1] !== K) throw new IrError('unsupported', `collect-hessians: input of '${name}' is not channels-last (${x.dims.join('x')})`);
            const rows = data.length / K;
            // Every stride-th row (token) of every batch: H converges long before all tokens are seen.
            const stride = Math.max(1, Math.ceil((rows * batches.length) / MAX_ROWS));
            if (stride === 1) accumulators.get(name)!.add(data, rows);
            else {
              const kept = Math.ceil(rows / stride);
              const sample = new Float32Array(kept * K);
              for (let r = 0; r < kept; r++) sample.set(data.subarray(r * stride * K, (r * stride + 1) * K), r * K);
              accumulators.get(name)!.add(sample, kept);
            }
          }
        }
      } finally {
        await prepared.release();
      }
      for (const [name, accumulator] of accumulators) {
        hessians.set(name, accumulator.result());
        rows = Math.max(rows, accumulator.rows);
      }
      // Quantize this stage in the copy so the next stage's inputs carry its error.
      const stagePlan = new Map([...context.plan].filter(([name]) => stage.includes(name)));
      quantizePlannedWeights(work, stagePlan, hessians, () => {});
    }
    context.progress('gptq blocks', stages.length, stages.length);
    return { modified: false, statistics: { layers: hessians.size, stages: stages.length, rows_per_layer: rows } };
  },
});

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
