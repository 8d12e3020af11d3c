import { describe, expect, it } from 'vitest';
import { backends } from '../../src/backends/registry.js';
import type { TensorMap } from '../../src/passes/executor.js';
import { Op, isOp } from '../../src/ir/ops.js';
import { encodeModel } from '../../src/ir/serde.js';
import { chromiumAvailable } from '../../src/runtime/browser/chromium.js';
import { runOnWebGpu, type BrowserTensor } from '../../src/runtime/browser/webgpu-harness.js';
import { OrtExecutor } from '../../src/runtime/ir-executor.js';
import { maxAbsDiff, referenceInputs } from '../passes/fixture.js';
import { w4a16 } from './quantized-fixtures.js';

/** Chromium is a test dependency: under CI its absence fails the suite; locally the test is skipped. */
const browserReady = chromiumAvailable() || process.env.CI !== undefined;

/** Reference row 4 (a real digit noised at t = 10): one sample, since SwiftShader runs the lowered fixture in ~95 s per sample. */
function oneRow(): TensorMap {
  const all = referenceInputs();
  return {
    x: { dtype: 'float32', dims: [1, 1, 16, 16], data: (all.x!.data as Float32Array).slice(4 * 256, 5 * 256) },
    t: { dtype: 'int64', dims: [1], data: (all.t!.data as BigInt64Array).slice(4, 5) },
    y: { dtype: 'int64', dims: [1], data: (all.y!.data as BigInt64Array).slice(4, 5) },
  };
}

describe.runIf(browserReady)('WebGPU lowering in headless Chromium (SwiftShader)', () => {
  it('rtn-w4a16-g128 lowered to MatMulNBits runs on the WebGPU EP and matches onnxruntime-node within 1e-3', { timeout: 300_000 }, async () => {
    expect(chromiumAvailable(), '/usr/bin/chromium is missing (apt-get install -y chromium)').toBe(true);
    const model = await w4a16();
    backends.webgpu.lower(model);
    const nbits = model.graph.nodes.filter((n) => isOp(n, Op.MatMulNBits)).map((n) => n.name);
    expect(nbits).toHaveLength(31);
    const feeds = oneRow();
    const prepared = await new OrtExecutor({ optimization: 'basic' }).prepare(model, ['eps']);
    const expected = (await prepared.run(feeds)).eps!.data as Float32Array;
    await prepared.release();
    const browserFeeds = Object.fromEntries(Object.entries(feeds).map(([name, t]) => [name, { dtype: t.dtype, dims: t.dims, data: t.data } as BrowserTensor]));
    const result = await runOnWebGpu({ model: encodeModel(model), feeds: browserFeeds, outputs: ['eps'], timeoutMs: 240_000 });
    expect(result.adapterInfo).toMatchObject({ vendor: 'google', architecture: 'swiftshader' });
    // Placement from ORT's verbose log: every MatMulNBits on WebGPU, none refused (int64 shape ops may run on CPU).
    expect(result.log.filter((l) => /kernel not found in registries for Op type: MatMulNBits/.test(l))).toEqual([]);
    const { nodeToProvider, allNodesOn } = result.placement;
    for (const name of nbits) expect(allNodesOn ?? nodeToProvider[name], name).toBe('WebGpuExecutionProvider');
    expect(maxAbsDiff(expected, result.outputs.eps!.data as Float32Array)).toBeLessThan(1e-3);
  });
});
