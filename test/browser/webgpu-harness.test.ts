import * as ort from 'onnxruntime-node';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Graph, Model } from '../../src/ir/core.js';
import { DataType } from '../../src/ir/dtype.js';
import { Op } from '../../src/ir/ops.js';
import { encodeModel } from '../../src/ir/serde.js';
import { Tensor } from '../../src/ir/tensor.js';
import { seededRandom } from '../../src/random.js';
import { launchChromium } from '../../src/runtime/browser/chromium.js';
import { cpuComputeNodes } from '../../src/runtime/browser/placement.js';
import { runOnWebGpu } from '../../src/runtime/browser/webgpu-harness.js';
import { DIT_DIGITS, maxAbs, readF32, readI64, skipBrowser } from './browser-env.js';

const M = 4;
const K = 72; // 3 blocks of 32, the last one zero-padded
const N = 16;
const BLOCK = 32;

/** Y = A·W with W as 4-bit MatMulNBits codes (layout of PLATFORM.md), random codes, scales and zero points. */
function matMulNBitsModel(): Model {
  const next = seededRandom(5);
  const nb = Math.ceil(K / BLOCK);
  const graph = new Graph('nbits');
  const a = graph.addInput('a', { elemType: DataType.FLOAT, shape: [M, K] });
  const codes = new Uint8Array(N * nb * (BLOCK / 2));
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < K; k++) {
      const byte = n * nb * (BLOCK / 2) + Math.floor(k / BLOCK) * (BLOCK / 2) + Math.floor((k % BLOCK) / 2);
      codes[byte]! |= Math.floor(next() * 16) << (k % 2 === 0 ? 0 : 4);
    }
  }
  const zeroPoints = Uint8Array.from({ length: N * Math.ceil(nb / 2) }, () => Math.floor(next() * 256));
  const b = graph.addInitializer('b', Tensor.fromBytes(DataType.UINT8, [N, nb, BLOCK / 2], codes));
  const scales = graph.addInitializer('scales', Tensor.fromFloat32([N * nb], Float32Array.from({ length: N * nb }, () => 0.01 + 0.05 * next())));
  const zp = graph.addInitializer('zero_points', Tensor.fromBytes(DataType.UINT8, [N * Math.ceil(nb / 2)], zeroPoints));
  const attributes = { K: { kind: 'int', value: K }, N: { kind: 'int', value: N }, bits: { kind: 'int', value: 4 }, block_size: { kind: 'int', value: BLOCK } } as const;
  const mm = graph.addNode({ opType: Op.MatMulNBits, domain: 'com.microsoft', name: 'fc', inputs: [a, b, scales, zp], outputs: ['y0'], attributes });
  const y = graph.addNode({ opType: Op.Relu, name: 'relu', inputs: [mm.outputs[0]], outputs: ['y'] }).outputs[0]!;
  y.type = { elemType: DataType.FLOAT, shape: [M, N] };
  graph.outputs.push(y);
  const model = new Model(graph);
  model.irVersion = 10;
  model.opsetImports.set('', 21);
  model.opsetImports.set('com.microsoft', 1);
  return model;
}

describe.skipIf(skipBrowser)('WebGPU in headless chromium (onnxruntime-web native EP)', () => {
  let browser: Browser;
  beforeAll(async () => {
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
  });

  it('runs dit-digits on a SwiftShader WebGPU adapter and matches onnxruntime-node', async () => {
    const feeds = {
      x: { dtype: 'float32' as const, dims: [8, 1, 16, 16], data: readF32(`${DIT_DIGITS}/reference_in_x.bin`) },
      t: { dtype: 'int64' as const, dims: [8], data: readI64(`${DIT_DIGITS}/reference_in_t.bin`) },
      y: { dtype: 'int64' as const, dims: [8], data: readI64(`${DIT_DIGITS}/reference_in_y.bin`) },
    };
    const result = await runOnWebGpu({ model: `${DIT_DIGITS}/model.onnx`, feeds, browser });
    // (a) the adapter is WebGPU on SwiftShader, not some other path.
    expect(result.adapterInfo).toEqual({ vendor: 'google', architecture: 'swiftshader', isFallbackAdapter: true });

    const session = await ort.InferenceSession.create(`${DIT_DIGITS}/model.onnx`);
    const cpu = (await session.run(Object.fromEntries(Object.entries(feeds).map(([k, t]) => [k, new ort.Tensor(t.dtype, t.data, t.dims)])))).eps!.data as Float32Array;
    await session.release();
    const eps = result.outputs.eps!;
    expect(eps.dims).toEqual([8, 1, 16, 16]);
    const vsNode = maxAbs(eps.data as Float32Array, cpu);
    const vsTorch = maxAbs(eps.data as Float32Array, readF32(`${DIT_DIGITS}/reference_out_eps.bin`));
    console.log(`dit-digits WebGPU: max|Δ| vs onnxruntime-node ${vsNode.toExponential(2)}, vs PyTorch ${vsTorch.toExponential(2)}; create ${result.timings.createMs.toFixed(0)} ms, run ${result.timings.runMs.toFixed(0)} ms (SwiftShader)`);
    expect(vsNode).toBeLessThan(1e-3);
    expect(vsTorch).toBeLessThan(1e-3);

    // Every node is placed, nearly all on WebGPU; CPU keeps only shape/index ops.
    const { placement } = result;
    console.log(`placement: ${placement.webgpuNodes.length} WebGPU, ${placement.cpuNodes.length} CPU (${[...new Set(placement.cpuNodes.map((n) => placement.opTypes[n]))].join(', ')})`);
    expect(placement.webgpuNodes.length).toBeGreaterThan(300);
    expect(placement.counts.WebGpuExecutionProvider).toBe(placement.webgpuNodes.length);
    expect(cpuComputeNodes(placement)).toEqual([]);
    expect(placement.webgpuNodes.filter((n) => placement.opTypes[n] === 'MatMul').length).toBeGreaterThan(0);
  });

  it('places 4-bit MatMulNBits on WebGpuExecutionProvider and matches onnxruntime-node CPU', async () => {
    const bytes = encodeModel(matMulNBitsModel());
    const next = seededRandom(9);
    const a = Float32Array.from({ length: M * K }, () => next() * 2 - 1);
    const result = await runOnWebGpu({ model: bytes, feeds: { a: { dtype: 'float32', dims: [M, K], data: a } }, browser });
    const session = await ort.InferenceSession.create(bytes);
    const cpu = (await session.run({ a: new ort.Tensor('float32', a, [M, K]) })).y!.data as Float32Array;
    await session.release();
    // Both nodes (MatMulNBits and Relu) on WebGPU: ORT then logs "All nodes placed" without names.
    expect(result.placement.allNodesOn).toBe('WebGpuExecutionProvider');
    expect(result.placement.counts).toEqual({ WebGpuExecutionProvider: 2 });
    expect(result.placement.cpuNodes).toEqual([]);
    expect(result.log.some((line) => /kernel not found.*MatMulNBits/.test(line))).toBe(false);
    const error = maxAbs(result.outputs.y!.data as Float32Array, cpu);
    console.log(`MatMulNBits WebGPU vs CPU: max|Δ| ${error.toExponential(2)} (|y| max ${Math.max(...cpu).toFixed(3)})`);
    expect(Math.max(...cpu)).toBeGreaterThan(0.1);
    expect(error).toBeLessThan(1e-4);
  });
});
