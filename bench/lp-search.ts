/**
 * The L_p weight range search alone (ptq4dm-w8a8's weights: int8 asymmetric per-channel, p = 2.4, 100 shrink
 * candidates) on the synthetic DiT-XL/2's linear weights: CPU seconds of computeCellParams per weight, the read
 * of the weight excluded — the part of ptq4dm's quantize-weights that does not depend on calibration.
 * XL_LAYERS=n times the first n linears only (default: all) and extrapolates by weight count; LP_BITS=4 searches
 * int4 ranges (dilatequant-w4a8's weights) instead.
 * Run: `npx tsx bench/lp-search.ts` (prints JSON as its last line; generates the model like compile-xl.ts).
 */
import { existsSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadModelSync, saveModel } from '../src/ir/serde.js';
import { Op, isOp } from '../src/ir/ops.js';
import { DIT_PRESETS, buildDit } from '../src/synth/dit.js';
import { computeCellParams, type QuantizerSettings } from '../src/passes/weight-quantizer.js';

const dir = process.env.XL_DIR ?? join(tmpdir(), 'qcompile-xl');
if (!existsSync(join(dir, 'model.onnx'))) {
  mkdirSync(dir, { recursive: true });
  saveModel(buildDit(DIT_PRESETS['dit-xl-2']!, { seed: 0 }), join(dir, 'model.onnx'), { externalData: 'always', externalDataName: 'model.onnx.data' });
}
const model = loadModelSync(join(dir, 'model.onnx'));
const bits = Number(process.env.LP_BITS ?? 8);
const settings: QuantizerSettings = { bits, symmetric: false, signed: true, granularity: { kind: 'per-channel' }, range: { kind: 'lp', p: 2.4, gridSize: 100 } };

// Every MatMul / Gemm weight, in its stored layout: MatMul W [K][N], Gemm with transB W [N][K].
const linears = model.graph.nodes.flatMap((node) => {
  const weight = node.inputs[1]?.initializer;
  if (!weight || weight.dims.length !== 2 || !(isOp(node, Op.MatMul) || isOp(node, Op.Gemm))) return [];
  const transB = isOp(node, Op.Gemm) && node.intAttr('transB', 0) === 1;
  const [rows, cols] = weight.dims as [number, number];
  return [{ name: node.inputs[1]!.name, weight, N: transB ? rows : cols, K: transB ? cols : rows, kMajor: !transB }];
});
const limit = Number(process.env.XL_LAYERS ?? linears.length);
let cpuSeconds = 0;
let timedWeights = 0;
for (const layer of linears.slice(0, limit)) {
  const values = layer.weight.toFloat32();
  const started = process.cpuUsage();
  computeCellParams({ values, N: layer.N, K: layer.K, kMajor: layer.kMajor, name: layer.name }, settings);
  const used = process.cpuUsage(started);
  cpuSeconds += (used.user + used.system) / 1e6;
  timedWeights += values.length;
}
const allWeights = linears.reduce((n, l) => n + l.N * l.K, 0);
const result = {
  layersTimed: Math.min(limit, linears.length),
  layers: linears.length,
  weightsTimed: timedWeights,
  cpuSeconds: Number(cpuSeconds.toFixed(2)),
  nsPerWeight: Number(((cpuSeconds * 1e9) / timedWeights).toFixed(1)),
  allLinearsSeconds: Number(((cpuSeconds * allWeights) / timedWeights).toFixed(1)),
};
console.log(JSON.stringify({ ...result, summary: `L_p search (int${bits} asym per-channel, p 2.4, grid 100): ${result.nsPerWeight} ns CPU per weight; all ${result.layers} linears (${(allWeights / 1e6).toFixed(0)} M weights): ${result.allLinearsSeconds} s` }));
