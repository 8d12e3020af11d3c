/**
 * Synthetic DiT generator: the graph a torch 1.13 ONNX export of the published DiT (Peebles & Xie) gives —
 * op for op as in test/fixtures/dit-digits (token linears as MatMul + Add with `onnx::MatMul_N` weights,
 * Gemm adaLN on one shared SiLU, Split, LayerNormalization with shared ones/zeros, q/k/v by
 * Reshape/Transpose/Gather, GELU-tanh spelled out, batch-dynamic Shape/Gather/Concat chains, unpatchify) —
 * with seeded random weights that are computed when saved, so DiT-XL/2 (2.7 GB) streams to disk in one
 * tensor's memory.
 */
import { Graph, Model, type Attribute, type Value } from '../ir/core.js';
import { DataType } from '../ir/dtype.js';
import { Op } from '../ir/ops.js';
import { Tensor } from '../ir/tensor.js';
import { sinCosPositionTable } from './diffusers-transformer.js';
import { Emitter, exportedModel, float, i64s, int, ints } from './emitter.js';
import { normalTensor } from './random.js';

/** Architecture hyper-parameters of a DiT. */
export interface DitConfig {
  name: string;
  depth: number;
  hidden: number;
  heads: number;
  patch: number;
  /** Latent (or image) side and channels. */
  inputSize: number;
  inChannels: number;
  /** Output channels are 2·inChannels when the variance is learned too. */
  learnSigma: boolean;
  /** Real classes; the label table has one more row, the null class of classifier-free guidance. */
  numClasses: number;
  mlpRatio: number;
  frequencyDim: number;
}

/** The published DiT sizes (Peebles & Xie, table 1) and a tiny one for tests. */
export const DIT_PRESETS: Record<string, DitConfig> = {
  'dit-xl-2': { name: 'dit-xl-2', depth: 28, hidden: 1152, heads: 16, patch: 2, inputSize: 32, inChannels: 4, learnSigma: true, numClasses: 1000, mlpRatio: 4, frequencyDim: 256 },
  'dit-b-2': { name: 'dit-b-2', depth: 12, hidden: 768, heads: 12, patch: 2, inputSize: 32, inChannels: 4, learnSigma: true, numClasses: 1000, mlpRatio: 4, frequencyDim: 256 },
  'dit-s-2': { name: 'dit-s-2', depth: 12, hidden: 384, heads: 6, patch: 2, inputSize: 32, inChannels: 4, learnSigma: true, numClasses: 1000, mlpRatio: 4, frequencyDim: 256 },
  tiny: { name: 'tiny', depth: 2, hidden: 64, heads: 2, patch: 2, inputSize: 16, inChannels: 1, learnSigma: true, numClasses: 10, mlpRatio: 4, frequencyDim: 256 },
};

/** Options of buildDit. */
export interface DitOptions {
  seed?: number;
  /** Called with the byte count of each weight as it is generated (progress). */
  onWeight?: (bytes: number) => void;
}

/** Standard deviation of every random weight; biases use half of it. */
const WEIGHT_STD = 0.02;

/** Builds the DiT graph; weights are lazy (generated when read or saved). */
export function buildDit(config: DitConfig, options: DitOptions = {}): Model {
  const seed = options.seed ?? 0;
  const graph = new Graph('main_graph');
  const e = new Emitter(graph);
  const D = config.hidden;
  const p = config.patch;
  const grid = config.inputSize / p;
  const outChannels = config.learnSigma ? 2 * config.inChannels : config.inChannels;
  const headDim = D / config.heads;
  const mlpHidden = D * config.mlpRatio;
  if (!Number.isInteger(grid) || !Number.isInteger(headDim)) throw new Error(`${config.name}: input ${config.inputSize} / patch ${p} and hidden ${D} / heads ${config.heads} must divide`);

  let stream = 0;
  const random = (name: string, dims: number[], std: number) => graph.addInitializer(name, normalTensor(dims, seed, stream++, std, 0, options.onWeight));
  let matmulId = 1000;
  const tokenWeight = (dims: number[]) => random(`onnx::MatMul_${matmulId++}`, dims, WEIGHT_STD);

  const x = graph.addInput('x', { elemType: DataType.FLOAT, shape: ['batch', config.inChannels, config.inputSize, config.inputSize] });
  const t = graph.addInput('t', { elemType: DataType.INT64, shape: ['batch'] });
  const y = graph.addInput('y', { elemType: DataType.INT64, shape: ['batch'] });

  // Patch embedding: Conv(k=p, s=p), flatten(2).transpose(1, 2), + fixed 2-D sin-cos position embedding.
  const scalar1 = e.constant('/x_embedder', Tensor.fromInt64([], [1]));
  const patched = e.op('/x_embedder/proj', Op.Conv, [x, random('x_embedder.proj.weight', [D, config.inChannels, p, p], WEIGHT_STD), random('x_embedder.proj.bias', [D], WEIGHT_STD / 2)], {
    dilations: ints([1, 1]), group: int(1), kernel_shape: ints([p, p]), pads: ints([0, 0, 0, 0]), strides: ints([p, p]),
  });
  const scalar2 = e.constant('', Tensor.fromInt64([], [2]));
  const shape = e.op('', Op.Shape, [patched]);
  const sliced = e.op('', Op.Slice, [shape, e.constant('', i64s([0])), e.constant('', i64s([2])), e.constant('', i64s([0]))]);
  const flatShape = e.op('', Op.Concat, [sliced, e.constant('', i64s([-1]))], { axis: int(0) });
  const flat = e.op('', Op.Reshape, [patched, flatShape], { allowzero: int(0) });
  const tokens = e.op('', Op.Transpose, [flat], { perm: ints([0, 2, 1]) });
  const posEmbed = graph.addInitializer('pos_embed', sinCosPositionTable(D, grid, 1));
  let residual = e.op('', Op.Add, [tokens, posEmbed]);

  // Timestep embedding: cat(cos, sin)(t · freqs) -> Linear -> SiLU -> Linear.
  const tCast = e.op('/t_embedder', Op.Cast, [t], { to: int(DataType.FLOAT) });
  const scalar0 = e.constant('/t_embedder', Tensor.fromInt64([], [0]));
  const tUnsq = e.op('/t_embedder', Op.Unsqueeze, [tCast, e.constant('/t_embedder', i64s([1]))]);
  const tArgs = e.op('/t_embedder', Op.Mul, [tUnsq, e.constant('/t_embedder', Tensor.fromFloat32([1, config.frequencyDim / 2], timestepFrequencies(config.frequencyDim)))]);
  const tEmb = e.op('/t_embedder', Op.Concat, [e.op('/t_embedder', Op.Cos, [tArgs]), e.op('/t_embedder', Op.Sin, [tArgs])], { axis: int(-1) });
  const t0 = e.op('/t_embedder/mlp/mlp.0', Op.Gemm, [tEmb, random('t_embedder.mlp.0.weight', [D, config.frequencyDim], WEIGHT_STD), random('t_embedder.mlp.0.bias', [D], WEIGHT_STD / 2)], gemmAttrs());
  const t1 = e.silu('/t_embedder/mlp/mlp.1', t0);
  const tOut = e.op('/t_embedder/mlp/mlp.2', Op.Gemm, [t1, random('t_embedder.mlp.2.weight', [D, D], WEIGHT_STD), random('t_embedder.mlp.2.bias', [D], WEIGHT_STD / 2)], gemmAttrs());

  // Label embedding: a table of numClasses + 1 rows (the last is the CFG null class).
  const yEmb = e.op('/y_embedder/embedding_table', Op.Gather, [random('y_embedder.embedding_table.weight', [config.numClasses + 1, D], WEIGHT_STD), y]);
  const c = e.op('', Op.Add, [tOut, yEmb]);

  // LayerNorm without affine exports with explicit ones/zeros, shared by every norm.
  const lnScale = graph.addInitializer('blocks.0.norm1.weight', Tensor.fromFloat32([D], new Float32Array(D).fill(1)));
  const lnBias = graph.addInitializer('blocks.0.norm1.bias', Tensor.fromFloat32([D], new Float32Array(D)));
  const layerNorm = (scope: string, input: Value) => e.op(scope, Op.LayerNormalization, [input, lnScale, lnBias], { axis: int(-1), epsilon: float(1e-6) });
  /** LN(x)·(1 + scale) + shift with [B, D] chunks unsqueezed over tokens. */
  const modulate = (scope: string, normed: Value, shift: Value, scale: Value) => {
    const scaleU = e.op(scope, Op.Unsqueeze, [scale, e.constant(scope, i64s([1]))]);
    const onePlus = e.op(scope, Op.Add, [scaleU, e.constant(scope, Tensor.fromFloat32([], Float32Array.of(1)))]);
    const scaled = e.op(scope, Op.Mul, [normed, onePlus]);
    const shiftU = e.op(scope, Op.Unsqueeze, [shift, e.constant(scope, i64s([1]))]);
    return e.op(scope, Op.Add, [scaled, shiftU]);
  };
  const tokenLinear = (scope: string, input: Value, inDim: number, outDim: number, biasName: string) => {
    const mm = e.op(scope, Op.MatMul, [input, tokenWeight([inDim, outDim])]);
    return e.op(scope, Op.Add, [random(biasName, [outDim], WEIGHT_STD / 2), mm]);
  };

  let siluC: Value | undefined;
  for (let b = 0; b < config.depth; b++) {
    const s = `/blocks.${b}`;
    // The exporter merges the identical SiLU(c) of every adaLN into the first block's.
    siluC ??= e.silu(`${s}/adaLN_modulation/adaLN_modulation.0`, c);
    const ada = e.op(`${s}/adaLN_modulation/adaLN_modulation.1`, Op.Gemm, [siluC, random(`blocks.${b}.adaLN_modulation.1.weight`, [6 * D, D], WEIGHT_STD), random(`blocks.${b}.adaLN_modulation.1.bias`, [6 * D], WEIGHT_STD / 2)], gemmAttrs());
    const [shiftMsa, scaleMsa, gateMsa, shiftMlp, scaleMlp, gateMlp] = e.split(s, ada, [D, D, D, D, D, D]);
    const gateMsaU = e.op(s, Op.Unsqueeze, [gateMsa!, e.constant(s, i64s([1]))]);
    const attnIn = modulate(s, layerNorm(`${s}/norm1`, residual), shiftMsa!, scaleMsa!);

    const a = `${s}/attn`;
    const [batch, seq, width] = [0, 1, 2].map((axis) => e.op(a, Op.Gather, [e.op(a, Op.Shape, [attnIn]), e.constant(a, Tensor.fromInt64([], [axis]))], { axis: int(0) }));
    const qkv = tokenLinear(`${a}/qkv`, attnIn, D, 3 * D, `blocks.${b}.attn.qkv.bias`);
    const headsShape = e.op(a, Op.Concat, [
      e.unsqueeze0(batch!), e.unsqueeze0(seq!), e.constant(a, i64s([3])), e.constant(a, i64s([config.heads])), e.constant(a, i64s([headDim])),
    ], { axis: int(0) });
    const heads = e.op(a, Op.Transpose, [e.op(a, Op.Reshape, [qkv, headsShape], { allowzero: int(0) })], { perm: ints([2, 0, 3, 1, 4]) });
    const [q, k, v] = [scalar0, scalar1, scalar2].map((index) => e.op(a, Op.Gather, [heads, index], { axis: int(0) }));
    const kT = e.op(a, Op.Transpose, [k!], { perm: ints([0, 1, 3, 2]) });
    const scores = e.op(a, Op.Mul, [e.op(a, Op.MatMul, [q!, kT]), e.constant(a, Tensor.fromFloat32([], Float32Array.of(headDim ** -0.5)))]);
    const attn = e.op(a, Op.Softmax, [scores], { axis: int(-1) });
    const merged = e.op(a, Op.Transpose, [e.op(a, Op.MatMul, [attn, v!])], { perm: ints([0, 2, 1, 3]) });
    const mergedShape = e.op(a, Op.Concat, [e.unsqueeze0(batch!), e.unsqueeze0(seq!), e.unsqueeze0(width!)], { axis: int(0) });
    const proj = tokenLinear(`${a}/proj`, e.op(a, Op.Reshape, [merged, mergedShape], { allowzero: int(0) }), D, D, `blocks.${b}.attn.proj.bias`);
    residual = e.op(s, Op.Add, [residual, e.op(s, Op.Mul, [gateMsaU, proj])]);

    const gateMlpU = e.op(s, Op.Unsqueeze, [gateMlp!, e.constant(s, i64s([1]))]);
    const mlpIn = modulate(s, layerNorm(`${s}/norm2`, residual), shiftMlp!, scaleMlp!);
    const fc1 = tokenLinear(`${s}/mlp/fc1`, mlpIn, D, mlpHidden, `blocks.${b}.mlp.fc1.bias`);
    const fc2 = tokenLinear(`${s}/mlp/fc2`, e.geluTanh(`${s}/mlp/act`, fc1), mlpHidden, D, `blocks.${b}.mlp.fc2.bias`);
    residual = e.op(s, Op.Add, [residual, e.op(s, Op.Mul, [gateMlpU, fc2])]);
  }

  // Final layer: adaLN (shift, scale), LN, modulate, Linear(D -> p·p·C_out).
  const f = '/final_layer';
  const patchOut = p * p * outChannels;
  const fAda = e.op(`${f}/adaLN_modulation/adaLN_modulation.1`, Op.Gemm, [siluC ?? e.silu(`${f}/adaLN_modulation/adaLN_modulation.0`, c), random('final_layer.adaLN_modulation.1.weight', [2 * D, D], WEIGHT_STD), random('final_layer.adaLN_modulation.1.bias', [2 * D], WEIGHT_STD / 2)], gemmAttrs());
  const [fShift, fScale] = e.split(f, fAda, [D, D]);
  const fOut = tokenLinear(`${f}/linear`, modulate(f, layerNorm(`${f}/norm_final`, residual), fShift!, fScale!), D, patchOut, 'final_layer.linear.bias');

  // Unpatchify: [B, T, p·p·C] -> [B, h, w, p, p, C] -> [B, C, h, p, w, p] -> [B, C, H, W].
  const outBatch = e.op('', Op.Gather, [e.op('', Op.Shape, [fOut]), e.constant('', Tensor.fromInt64([], [0]))], { axis: int(0) });
  const sixD = e.op('', Op.Concat, [e.unsqueeze0(outBatch), ...[grid, grid, p, p, outChannels].map((d) => e.constant('', i64s([d])))], { axis: int(0) });
  const sixDims = e.op('', Op.Transpose, [e.op('', Op.Reshape, [fOut, sixD], { allowzero: int(0) })], { perm: ints([0, 5, 1, 3, 2, 4]) });
  const imageShape = e.op('', Op.Concat, [e.unsqueeze0(outBatch), ...[outChannels, config.inputSize, config.inputSize].map((d) => e.constant('', i64s([d])))], { axis: int(0) });
  const out = e.op('', Op.Reshape, [sixDims, imageShape], { allowzero: int(0) }, 'out');
  out.type = { elemType: DataType.FLOAT, shape: ['batch', outChannels, config.inputSize, config.inputSize] };
  graph.outputs.push(out);

  return exportedModel(graph, '1.13.0', `qcompile synth dit --preset ${config.name} --seed ${seed}${config.learnSigma ? '' : ' --no-learn-sigma'}: random weights, not a trained model`);
}

/** Number of weights of a DiT (trainable parameters plus the fixed position embedding). */
export function ditParameterCount(config: DitConfig): number {
  const D = config.hidden;
  const p = config.patch;
  const tokens = (config.inputSize / p) ** 2;
  const outChannels = config.learnSigma ? 2 * config.inChannels : config.inChannels;
  const block = (6 * D * D + 6 * D) + (3 * D * D + 3 * D) + (D * D + D) + 2 * (config.mlpRatio * D * D) + config.mlpRatio * D + D;
  return (D * config.inChannels * p * p + D) + tokens * D + (config.frequencyDim * D + D) + (D * D + D) + (config.numClasses + 1) * D
    + 2 * D + config.depth * block + (2 * D * D + 2 * D) + (D * p * p * outChannels + p * p * outChannels);
}

/** The `schedule.json` of a synthetic DiT, in the fixture's format (DiT's linear DDPM schedule). */
export function ditSchedule(config: DitConfig, seed: number): Record<string, unknown> {
  const outChannels = config.learnSigma ? 2 * config.inChannels : config.inChannels;
  const side = config.inputSize;
  return {
    model: `synthetic ${config.name}`,
    T: 1000,
    beta_schedule: 'linear',
    beta_start: 0.0001,
    beta_end: 0.02,
    betas: 'linspace(beta_start, beta_end, T) (float64), alphas_cumprod = cumprod(1 - betas)',
    prediction_type: 'epsilon',
    learn_sigma: config.learnSigma,
    // DiT's (and diffusers' DDPMScheduler's) name for how the extra channels set the variance.
    variance_type: config.learnSigma ? 'learned_range' : 'fixed_small',
    timestep_input: 't is the integer DDPM step index 0..T-1 (int64)',
    inputs: [
      { name: 'x', dtype: 'float32', shape: ['batch', config.inChannels, side, side] },
      { name: 't', dtype: 'int64', shape: ['batch'] },
      { name: 'y', dtype: 'int64', shape: ['batch'] },
    ],
    outputs: [{ name: 'out', dtype: 'float32', shape: ['batch', outChannels, side, side] }],
    output_channels: config.learnSigma ? `0..${config.inChannels - 1}: epsilon, ${config.inChannels}..${outChannels - 1}: variance interpolation v` : 'epsilon',
    num_classes: config.numClasses,
    null_class: config.numClasses,
    image: { channels: config.inChannels, height: side, width: side, layout: 'NCHW', value_range: [-1.0, 1.0] },
    data: `none: seeded random weights (seed ${seed}), N(0, ${WEIGHT_STD}) weights, N(0, ${WEIGHT_STD / 2}) biases`,
    guidance: `classifier-free: label ${config.numClasses} is the null class`,
  };
}

/** nn.Linear on a [B, C] vector exports as Gemm(x, W[N,K], b) with transB. */
function gemmAttrs(): Record<string, Attribute> {
  return { alpha: float(1), beta: float(1), transB: int(1) };
}

/** DiT's timestep frequencies exp(-ln(10000)·i/half), i < half. */
function timestepFrequencies(dim: number): Float32Array {
  const half = dim / 2;
  return Float32Array.from({ length: half }, (_, i) => Math.exp((-Math.log(10000) * i) / half));
}

