/**
 * Which W4 linear form ORT CPU runs fastest at DiT-XL/2's batch-2 shape (512 rows: 2 × 256 tokens; K 1152 →
 * N 4608, the MLP fc1): the float MatMul against MatMulNBits (bits 4, symmetric) at accuracy_level 0 (float
 * activations) and 4 (int8 activations, the kernel quantizing A per block), for block sizes 32, 64 and 128, as
 * the cpu lowering emits them (`cpuBackend.lower` of a blocked DequantizeLinear → MatMul), and the W8A8 form
 * (MatMulIntegerToFloat after ORT's QDQ fusion) as the int8 GEMM ceiling. Medians of 9
 * interleaved runs, 2 threads. Run: npx tsx bench/latency/nbits-forms.ts [--rows 512]
 */
import { parseArgs } from 'node:util';
import * as ort from 'onnxruntime-node';
import { cpuBackend } from '../../src/backends/cpu.js';
import { dequantizeTensor } from '../../src/quant/quantized-forms.js';
import { DataType } from '../../src/ir/dtype.js';
import { encodeModel } from '../../src/ir/serde.js';
import { Graph, Model } from '../../src/ir/core.js';
import { Op } from '../../src/ir/ops.js';
import { Tensor } from '../../src/ir/tensor.js';

const { values: args } = parseArgs({ options: { rows: { type: 'string', default: '512' } } });
const M = Number(args.rows), K = 1152, N = 4608;
const options = { graphOptimizationLevel: 'all', intraOpNumThreads: 2, interOpNumThreads: 1 } as const;

/** A MatMul [M, K] × W [K, N] whose W is int4 symmetric codes in blocks of `block` along K (blocked DequantizeLinear, opset 21). */
function blockedMatMul(block: number): Model {
  const g = new Graph('nbits');
  const a = g.addInput('a', { elemType: DataType.FLOAT, shape: [M, K] });
  const packed = Uint8Array.from({ length: (K * N) / 2 }, (_, i) => (i * 2654435761) >>> 24);
  const w = g.addInitializer('w_quantized', Tensor.fromBytes(DataType.INT4, [K, N], packed));
  const s = g.addInitializer('w_scale', Tensor.fromFloat32([K / block, N], Float32Array.from({ length: (K / block) * N }, (_, i) => 0.01 + 0.001 * (i % 7))));
  const dq = g.addNode({ opType: Op.DequantizeLinear, inputs: [w, s], outputs: ['w'], attributes: { axis: { kind: 'int', value: 0 }, block_size: { kind: 'int', value: block } } });
  const y = g.addNode({ opType: Op.MatMul, name: 'fc', inputs: [a, dq.outputs[0]!], outputs: ['y'] }).outputs[0]!;
  y.type = { elemType: DataType.FLOAT, shape: [M, N] };
  g.outputs.push(y);
  const m = new Model(g);
  m.irVersion = 10;
  m.opsetImports.set('', 21);
  return m;
}

/** The W8A8 form for comparison: static int8 Q/DQ on A, int8 per-channel W; ORT fuses it into MatMulIntegerToFloat. */
function int8MatMul(): Uint8Array {
  const g = new Graph('int8');
  const a = g.addInput('a', { elemType: DataType.FLOAT, shape: [M, K] });
  const w = g.addInitializer('w_quantized', Tensor.fromBytes(DataType.INT8, [K, N], Uint8Array.from({ length: K * N }, (_, i) => (i * 2654435761) >>> 24)));
  const ws = g.addInitializer('w_scale', Tensor.fromFloat32([N], new Float32Array(N).fill(0.001)));
  const as = g.addInitializer('a_scale', Tensor.fromFloat32([], Float32Array.of(0.01)));
  const az = g.addInitializer('a_zero_point', Tensor.fromBytes(DataType.UINT8, [], Uint8Array.of(128)));
  const wd = g.addNode({ opType: Op.DequantizeLinear, inputs: [w, ws], outputs: ['w'], attributes: { axis: { kind: 'int', value: 1 } } }).outputs[0]!;
  const aq = g.addNode({ opType: Op.QuantizeLinear, inputs: [a, as, az], outputs: ['aq'] }).outputs[0]!;
  const ad = g.addNode({ opType: Op.DequantizeLinear, inputs: [aq, as, az], outputs: ['ad'] }).outputs[0]!;
  const y = g.addNode({ opType: Op.MatMul, inputs: [ad, wd], outputs: ['y'] }).outputs[0]!;
  y.type = { elemType: DataType.FLOAT, shape: [M, N] };
  g.outputs.push(y);
  const m = new Model(g);
  m.irVersion = 10;
  m.opsetImports.set('', 21);
  return encodeModel(m);
}

/** The float model (W dequantized to a constant) or the cpu lowering's MatMulNBits at `accuracyLevel`. */
function build(block: number, accuracyLevel?: number): Uint8Array {
  const model = blockedMatMul(block);
  if (accuracyLevel === undefined) {
    const dq = model.graph.nodes.find((n) => n.opType === Op.DequantizeLinear)!;
    dq.outputs[0]!.replaceAllUsesWith(model.graph.addInitializer('w_float', dequantizeTensor(dq)));
    model.graph.removeDeadCode();
  } else cpuBackend.lower(model, { accuracyLevel });
  return encodeModel(model);
}

const forms: Record<string, Uint8Array> = { fp32: build(128), 'w8a8-matmulinteger': int8MatMul() };
for (const block of [32, 64, 128]) for (const level of [0, 4]) forms[`nbits-b${block}-acc${level}`] = build(block, level);
const feeds = { a: new ort.Tensor('float32', Float32Array.from({ length: M * K }, (_, i) => Math.sin(i * 0.37)), [M, K]) };
const sessions = new Map<string, ort.InferenceSession>();
for (const [name, bytes] of Object.entries(forms)) sessions.set(name, await ort.InferenceSession.create(bytes, options));
for (const s of sessions.values()) await s.run(feeds);
const times = new Map<string, number[]>();
for (let r = 0; r < 9; r++) for (const [f, s] of sessions) { const t = performance.now(); await s.run(feeds); times.set(f, [...(times.get(f) ?? []), performance.now() - t]); }
const medians = Object.fromEntries([...times].map(([f, t]) => [f, Number([...t].sort((a, b) => a - b)[4]!.toFixed(2))]));
console.log(JSON.stringify({ rows: M, K, N, medians_ms: medians, summary: Object.entries(medians).map(([f, ms]) => `${f} ${ms} ms (${(medians.fp32! / ms).toFixed(2)}x fp32)`).join(', ') }));
