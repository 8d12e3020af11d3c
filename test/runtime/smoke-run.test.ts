/**
 * The smoke run the compile command gives every model before writing it: ORT loads and runs it once, and its
 * outputs must have the FP model's shapes and be finite where the FP model's are (the FP model is run only when
 * the compiled outputs leave a doubt).
 */
import { describe, expect, it } from 'vitest';
import { backends } from '../../src/backends/registry.js';
import { Op, isOp } from '../../src/ir/ops.js';
import { loadModelSync } from '../../src/ir/serde.js';
import { Tensor } from '../../src/ir/tensor.js';
import { discoverLayers } from '../../src/quant/layers.js';
import { SmokeRunError, smokeRun } from '../../src/runtime/smoke-run.js';
import { w4a16 } from '../backends/quantized-fixtures.js';
import { DIT_DIGITS } from '../passes/fixture.js';

const MODEL = `${DIT_DIGITS}/model.onnx`;

describe('smokeRun', () => {
  it('passes rtn-w4a16-g128 lowered for cpu (MatMulNBits) on one seeded sample', async () => {
    const model = await w4a16();
    backends.cpu.lower(model);
    const result = await smokeRun(model, MODEL);
    if (result instanceof SmokeRunError) throw result;
    expect(result.inputs).toEqual({ x: [1, 1, 16, 16], t: [1], y: [1] });
    // All finite, shape [batch, 1, 16, 16] with batch sized 1 by x: settled without the FP model.
    expect(result.referenceRun).toBe(false);
    console.log(`smoke run of the lowered dit-digits: ${result.milliseconds.toFixed(0)} ms (compiled session, one sample)`);
  }, 60_000);

  it('an output shape its declared dims do not settle (an unnamed dim) is checked against the FP model run', async () => {
    const model = await w4a16();
    backends.cpu.lower(model);
    const eps = model.graph.outputs[0]!;
    eps.type = { elemType: eps.type!.elemType, shape: [null, ...eps.type!.shape!.slice(1)] };
    const result = await smokeRun(model, MODEL);
    if (result instanceof SmokeRunError) throw result;
    expect(result).toMatchObject({ inputs: { x: [1, 1, 16, 16], t: [1], y: [1] }, referenceRun: true });
  }, 60_000);

  it('a NaN weight scale (what a broken pass could write) fails as non-finite on eps', async () => {
    const model = await w4a16();
    const dq = model.graph.nodes.find((n) => isOp(n, Op.DequantizeLinear))!;
    const scale = dq.input(1);
    const values = Float32Array.from(scale.initializer!.toFloat32());
    values[0] = NaN;
    scale.initializer = Tensor.fromFloat32(scale.initializer!.dims, values);
    const result = await smokeRun(model, MODEL);
    expect(result).toBeInstanceOf(SmokeRunError);
    expect(result).toMatchObject({ reason: 'non-finite', output: 'eps' });
    expect((result as SmokeRunError).message).toMatch(/^output 'eps' is not finite at element \d+ \(NaN\) where the FP model's is -?\d/);
  }, 60_000);

  it('a model ONNX Runtime refuses (a weight with the wrong inner dimension) fails as load or run, with ORT\'s reason', async () => {
    const model = loadModelSync(MODEL);
    const layer = discoverLayers(model).find((l) => l.role === 'mlp.fc1')!;
    const [rows, cols] = layer.weight.initializer!.dims as [number, number];
    layer.weight.initializer = Tensor.fromFloat32([rows + 1, cols], new Float32Array((rows + 1) * cols));
    const result = await smokeRun(model, MODEL);
    expect(result).toBeInstanceOf(SmokeRunError);
    expect(['load', 'run']).toContain((result as SmokeRunError).reason);
    expect((result as SmokeRunError).message).toMatch(/^ONNX Runtime (refuses|cannot run) the compiled model: .+/);
  }, 60_000);

  it('an input the smoke run cannot build (unknown rank) checks the load only, and says why', async () => {
    const model = loadModelSync(MODEL);
    const x = model.graph.inputs.find((v) => v.name === 'x')!;
    x.type = { elemType: x.type!.elemType };
    const result = await smokeRun(model, MODEL);
    if (result instanceof SmokeRunError) throw result;
    expect(result.inputs).toBeUndefined();
    expect(result.loadOnly).toBe("graph input 'x' has no known type and rank");
  }, 60_000);
});
