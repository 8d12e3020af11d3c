/**
 * Synthetic Stable Diffusion UNet generator: the graph a torch ONNX export (opset 17, constant folding) of a
 * diffusers `UNet2DConditionModel` gives, module for module in diffusers' forward order and with its scoped
 * names — time embedding (Expand to the batch, sinusoid with flip_sin_to_cos, Linear → SiLU → Linear as Gemm),
 * ResnetBlock2D (GroupNorm spelled Reshape → InstanceNormalization → Reshape → Mul → Add, SiLU as Sigmoid·x,
 * Gemm time_emb_proj, 1×1 conv_shortcut, `/ output_scale_factor`), Transformer2DModel (1×1 Conv proj_in and
 * proj_out, BasicTransformerBlock: LayerNorm, self- and cross-attention with bias-free q/k/v MatMuls and heads
 * split by Shape/Gather/Concat chains, GEGLU feed-forward as two Slices and erf GELU), stride-2 Conv
 * Downsample2D, nearest ×2 Resize + Conv Upsample2D, channel Concats of the skips — with seeded random weights
 * computed while saved, so SD-1.5's 3.4 GB UNet streams to disk in one tensor's memory. Inputs and outputs
 * are optimum's (`sample`, `timestep`, `encoder_hidden_states` → `out_sample`).
 */
import { Graph, Model, type Value } from '../ir/core.js';
import { DataType } from '../ir/dtype.js';
import { Op } from '../ir/ops.js';
import { Tensor } from '../ir/tensor.js';
import { Emitter, exportedModel, float, i64s, int, ints } from './emitter.js';
import { writePipelineFolder } from './pipeline-folder.js';
import { normalTensor } from './random.js';

/** A diffusers UNet2DConditionModel configuration (the keys of its config.json that shape the graph). */
export interface SdUnetConfig {
  name: string;
  sampleSize: number;
  inChannels: number;
  outChannels: number;
  blockOutChannels: number[];
  /** Per level: true for CrossAttnDownBlock2D, false for DownBlock2D; the up path mirrors it. */
  crossAttention: boolean[];
  layersPerBlock: number;
  /** Heads per level (diffusers' `attention_head_dim`, which SD 1.x/2.x configs use as the head count); the mid block uses the last. */
  attentionHeads: number[];
  crossAttentionDim: number;
  normGroups: number;
  normEps: number;
}

/** SD 1.5 (runwayml/stable-diffusion-v1-5 unet/config.json) and a small one with the same structure. */
export const SD_UNET_PRESETS: Record<string, SdUnetConfig> = {
  sd15: {
    name: 'sd15', sampleSize: 64, inChannels: 4, outChannels: 4, blockOutChannels: [320, 640, 1280, 1280], crossAttention: [true, true, true, false],
    layersPerBlock: 2, attentionHeads: [8, 8, 8, 8], crossAttentionDim: 768, normGroups: 32, normEps: 1e-5,
  },
  'tiny-sd': {
    name: 'tiny-sd', sampleSize: 16, inChannels: 4, outChannels: 4, blockOutChannels: [32, 64], crossAttention: [true, false],
    layersPerBlock: 1, attentionHeads: [8, 8], crossAttentionDim: 32, normGroups: 32, normEps: 1e-5,
  },
};

/** Options of buildSdUnet. */
export interface SdUnetOptions {
  seed?: number;
  /** Called with the byte count of each weight as it is generated (progress). */
  onWeight?: (bytes: number) => void;
}

/** GroupNorm of Transformer2DModel (diffusers hard-codes it). */
const TRANSFORMER_NORM_EPS = 1e-6;
/** LayerNorm of BasicTransformerBlock. */
const LAYER_NORM_EPS = 1e-5;
/** Spread of norm scales around 1 and of norm shifts around 0. */
const NORM_STD = 0.05;

/** Builds the UNet graph; weights are lazy (generated when read or saved). */
export function buildSdUnet(config: SdUnetConfig, options: SdUnetOptions = {}): Model {
  checkConfig(config);
  const seed = options.seed ?? 0;
  const graph = new Graph('main_graph');
  const e = new Emitter(graph);
  const levels = config.blockOutChannels.length;
  const timeDim = 4 * config.blockOutChannels[0]!;

  let stream = 0;
  const random = (name: string, dims: number[], std: number, mean = 0) => graph.addInitializer(name, normalTensor(dims, seed, stream++, std, mean, options.onWeight));
  /** torch's default init scale (kaiming-uniform bound 1/√fan_in) as a normal: std 1/√(3·fan_in). */
  const init = (fanIn: number) => 1 / Math.sqrt(3 * fanIn);
  // Folded initializers get the exporter's `onnx::<Op>_N` names from one running counter.
  let anonymous = 2000;
  const folded = (op: string, dims: number[], std: number, mean = 0) => random(`onnx::${op}_${anonymous++}`, dims, std, mean);
  const f32 = (value: number) => Tensor.fromFloat32([], Float32Array.of(value));
  const scalarIndex = (scope: string, index: number) => e.constant(scope, Tensor.fromInt64([], [index]));
  const dim = (scope: string, input: Value, axis: number) => e.op(scope, Op.Gather, [e.op(scope, Op.Shape, [input]), scalarIndex(scope, axis)], { axis: int(0) });

  const sample = graph.addInput('sample', { elemType: DataType.FLOAT, shape: ['batch_size', config.inChannels, 'height', 'width'] });
  const timestep = graph.addInput('timestep', { elemType: DataType.INT64, shape: ['steps'] });
  const context = graph.addInput('encoder_hidden_states', { elemType: DataType.FLOAT, shape: ['batch_size', 'sequence_length', config.crossAttentionDim] });

  const conv = (scope: string, name: string, input: Value, cin: number, cout: number, kernel: number, stride = 1, outputName?: string) => {
    const fanIn = cin * kernel * kernel;
    const pad = (kernel - 1) >> 1;
    return e.op(`${scope}/${name.slice(name.lastIndexOf('.') + 1)}`, Op.Conv, [input, random(`${name}.weight`, [cout, cin, kernel, kernel], init(fanIn)), random(`${name}.bias`, [cout], init(fanIn))], {
      dilations: ints([1, 1]), group: int(1), kernel_shape: ints([kernel, kernel]), pads: ints([pad, pad, pad, pad]), strides: ints([stride, stride]),
    }, outputName);
  };
  /** nn.Linear on [B, C] vectors: Gemm with the parameter's own [out, in] weight. */
  const gemm = (scope: string, name: string, input: Value, cin: number, cout: number) =>
    e.op(scope, Op.Gemm, [input, random(`${name}.weight`, [cout, cin], init(cin)), random(`${name}.bias`, [cout], init(cin))], { alpha: float(1), beta: float(1), transB: int(1) });
  /** nn.Linear on token rows: MatMul with the folded transposed weight [in, out], then Add(bias) when it has one. */
  const linear = (scope: string, name: string, input: Value, cin: number, cout: number, bias: boolean) => {
    const mm = e.op(scope, Op.MatMul, [input, folded('MatMul', [cin, cout], init(cin))]);
    return bias ? e.op(scope, Op.Add, [random(`${name}.bias`, [cout], init(cin)), mm]) : mm;
  };
  /** torch's group_norm export before opset 18; the affine weights fold to [C, 1, 1] initializers. */
  const groupNorm = (scope: string, input: Value, channels: number, eps: number) => {
    const groups = config.normGroups;
    const grouped = e.op(scope, Op.Reshape, [input, e.constant(scope, i64s([0, groups, -1]))], { allowzero: int(0) });
    const ones = e.constant(scope, Tensor.fromFloat32([groups], new Float32Array(groups).fill(1)));
    const zeros = e.constant(scope, Tensor.fromFloat32([groups], new Float32Array(groups)));
    const normed = e.op(scope, Op.InstanceNormalization, [grouped, ones, zeros], { epsilon: float(eps) });
    const back = e.op(scope, Op.Reshape, [normed, e.op(scope, Op.Shape, [input])], { allowzero: int(0) });
    return e.op(scope, Op.Add, [e.op(scope, Op.Mul, [back, folded('Mul', [channels, 1, 1], NORM_STD, 1)]), folded('Add', [channels, 1, 1], NORM_STD)]);
  };
  const layerNorm = (scope: string, name: string, input: Value, channels: number) =>
    e.op(scope, Op.LayerNormalization, [input, random(`${name}.weight`, [channels], NORM_STD, 1), random(`${name}.bias`, [channels], NORM_STD)], { axis: int(-1), epsilon: float(LAYER_NORM_EPS) });

  // 1. Time: timestep.expand(batch) → Timesteps(flip_sin_to_cos, shift 0) → TimestepEmbedding.
  const expanded = e.op('', Op.Expand, [timestep, e.unsqueeze0(dim('', sample, 0))]);
  const half = config.blockOutChannels[0]! / 2;
  const frequencies = Float32Array.from({ length: half }, (_, i) => Math.exp((-Math.log(10000) * i) / half));
  const tp = '/time_proj';
  const tArgs = e.op(tp, Op.Mul, [e.op(tp, Op.Cast, [e.op(tp, Op.Unsqueeze, [expanded, e.constant(tp, i64s([1]))])], { to: int(DataType.FLOAT) }), e.constant(tp, Tensor.fromFloat32([1, half], frequencies))]);
  const scaled = e.op(tp, Op.Mul, [e.constant(tp, f32(1)), tArgs]);
  const sinCos = e.op(tp, Op.Concat, [e.op(tp, Op.Sin, [scaled]), e.op(tp, Op.Cos, [scaled])], { axis: int(-1) });
  // emb[:, half:] and emb[:, :half] (torch writes an open end as INT64_MAX).
  const slice = (from: number, to: number | bigint) => e.op(tp, Op.Slice, [sinCos, e.constant(tp, i64s([from])), e.constant(tp, Tensor.fromInt64([1], [to])), e.constant(tp, i64s([1])), e.constant(tp, i64s([1]))]);
  const tEmb = e.op(tp, Op.Concat, [slice(half, 0x7fffffffffffffffn), slice(0, half)], { axis: int(-1) });
  const te = '/time_embedding';
  const temb = gemm(`${te}/linear_2`, 'time_embedding.linear_2', e.silu(`${te}/act`, gemm(`${te}/linear_1`, 'time_embedding.linear_1', tEmb, 2 * half, timeDim)), timeDim, timeDim);

  // Every resnet's nonlinearity(temb) is the same computation: the exporter's CSE keeps the first resnet's.
  let tembSilu: Value | undefined;
  const resnet = (scope: string, name: string, input: Value, cin: number, cout: number) => {
    const act = `${scope}/nonlinearity`;
    let h = conv(scope, `${name}.conv1`, e.silu(act, groupNorm(`${scope}/norm1`, input, cin, config.normEps)), cin, cout, 3);
    tembSilu ??= e.silu(act, temb);
    const projected = gemm(`${scope}/time_emb_proj`, `${name}.time_emb_proj`, tembSilu, timeDim, cout);
    const broadcast = e.op(scope, Op.Unsqueeze, [e.op(scope, Op.Unsqueeze, [projected, e.constant(scope, i64s([2]))]), e.constant(scope, i64s([3]))]);
    h = e.op(scope, Op.Add, [h, broadcast]);
    h = conv(scope, `${name}.conv2`, e.silu(act, groupNorm(`${scope}/norm2`, h, cout, config.normEps)), cout, cout, 3);
    const skip = cin === cout ? input : conv(scope, `${name}.conv_shortcut`, input, cin, cout, 1);
    return e.op(scope, Op.Div, [e.op(scope, Op.Add, [skip, h]), e.constant(scope, f32(1))]);
  };

  /** Attention (self when `keys` is the block's own tokens): per-head softmax(q·kᵀ/√d)·v, then to_out.0. */
  const attention = (scope: string, name: string, tokens: Value, keys: Value, channels: number, heads: number, keyDim: number) => {
    const headDim = channels / heads;
    /** view(batch, seq, heads, head_dim) with batch and seq read from the tensor's shape. */
    const splitHeads = (x: Value) => {
      const shape = e.op(scope, Op.Concat, [e.unsqueeze0(dim(scope, x, 0)), e.unsqueeze0(dim(scope, x, 1)), e.constant(scope, i64s([heads])), e.constant(scope, i64s([headDim]))], { axis: int(0) });
      return e.op(scope, Op.Reshape, [x, shape], { allowzero: int(0) });
    };
    const q = e.op(scope, Op.Transpose, [splitHeads(linear(`${scope}/to_q`, `${name}.to_q`, tokens, channels, channels, false))], { perm: ints([0, 2, 1, 3]) });
    const k = splitHeads(linear(`${scope}/to_k`, `${name}.to_k`, keys, keyDim, channels, false));
    const v = e.op(scope, Op.Transpose, [splitHeads(linear(`${scope}/to_v`, `${name}.to_v`, keys, keyDim, channels, false))], { perm: ints([0, 2, 1, 3]) });
    const scores = e.op(scope, Op.Mul, [e.op(scope, Op.MatMul, [q, e.op(scope, Op.Transpose, [k], { perm: ints([0, 2, 3, 1]) })]), e.constant(scope, f32(headDim ** -0.5))]);
    const attended = e.op(scope, Op.MatMul, [e.op(scope, Op.Softmax, [scores], { axis: int(-1) }), v]);
    const [b, h, s, d] = [0, 1, 2, 3].map((axis) => dim(scope, attended, axis));
    const merged = e.op(scope, Op.Transpose, [attended], { perm: ints([0, 2, 1, 3]) });
    const width = e.op(scope, Op.Mul, [h!, d!]);
    const mergedShape = e.op(scope, Op.Concat, [e.unsqueeze0(b!), e.unsqueeze0(s!), e.unsqueeze0(width)], { axis: int(0) });
    const out = linear(`${scope}/to_out.0`, `${name}.to_out.0`, e.op(scope, Op.Reshape, [merged, mergedShape], { allowzero: int(0) }), channels, channels, true);
    return e.op(scope, Op.Div, [out, e.constant(scope, f32(1))]);
  };

  /** GEGLU: proj to 2·4C, chunk(2) as two Slices bounded by the shape, hidden · GELU_erf(gate). */
  const geglu = (scope: string, name: string, input: Value, channels: number) => {
    const inner = 4 * channels;
    const proj = linear(`${scope}/proj`, `${name}.proj`, input, channels, 2 * inner, true);
    const axis = e.constant(scope, i64s([-1]));
    const size = e.op(scope, Op.Gather, [e.op(scope, Op.Shape, [proj]), axis], { axis: int(0) });
    const start = e.constant(scope, i64s([0]));
    const chunk = e.op(scope, Op.Div, [e.op(scope, Op.Add, [size, e.constant(scope, i64s([1]))]), e.constant(scope, i64s([2]))]);
    const mid = e.op(scope, Op.Mul, [chunk, e.constant(scope, i64s([1]))]);
    const hidden = e.op(scope, Op.Slice, [proj, start, mid, axis]);
    const end = e.op(scope, Op.Mul, [chunk, e.constant(scope, i64s([2]))]);
    const gate = e.op(scope, Op.Slice, [proj, mid, end, axis]);
    const erf = e.op(scope, Op.Erf, [e.op(scope, Op.Div, [gate, e.constant(scope, f32(Math.SQRT2))])]);
    const gelu = e.op(scope, Op.Mul, [e.op(scope, Op.Mul, [gate, e.op(scope, Op.Add, [erf, e.constant(scope, f32(1))])]), e.constant(scope, f32(0.5))]);
    return e.op(scope, Op.Mul, [hidden, gelu]);
  };

  const transformer = (scope: string, name: string, input: Value, channels: number, heads: number) => {
    const [batch, height, width] = [0, 2, 3].map((axis) => dim(scope, input, axis));
    const projIn = conv(scope, `${name}.proj_in`, groupNorm(`${scope}/norm`, input, channels, TRANSFORMER_NORM_EPS), channels, channels, 1);
    const inner = dim(scope, projIn, 1);
    const nhwc = e.op(scope, Op.Transpose, [projIn], { perm: ints([0, 2, 3, 1]) });
    const area = e.op(scope, Op.Mul, [height!, width!]);
    let tokens = e.op(scope, Op.Reshape, [nhwc, e.op(scope, Op.Concat, [e.unsqueeze0(batch!), e.unsqueeze0(area), e.unsqueeze0(inner)], { axis: int(0) })], { allowzero: int(0) });

    const bs = `${scope}/transformer_blocks.0`;
    const bn = `${name}.transformer_blocks.0`;
    const selfIn = layerNorm(`${bs}/norm1`, `${bn}.norm1`, tokens, channels);
    tokens = e.op(bs, Op.Add, [attention(`${bs}/attn1`, `${bn}.attn1`, selfIn, selfIn, channels, heads, channels), tokens]);
    const crossIn = layerNorm(`${bs}/norm2`, `${bn}.norm2`, tokens, channels);
    tokens = e.op(bs, Op.Add, [attention(`${bs}/attn2`, `${bn}.attn2`, crossIn, context, channels, heads, config.crossAttentionDim), tokens]);
    const ffIn = layerNorm(`${bs}/norm3`, `${bn}.norm3`, tokens, channels);
    const ff = linear(`${bs}/ff/net.2`, `${bn}.ff.net.2`, geglu(`${bs}/ff/net.0`, `${bn}.ff.net.0`, ffIn, channels), 4 * channels, channels, true);
    tokens = e.op(bs, Op.Add, [ff, tokens]);

    const imageShape = e.op(scope, Op.Concat, [batch!, height!, width!, inner].map((d) => e.unsqueeze0(d)), { axis: int(0) });
    const image = e.op(scope, Op.Transpose, [e.op(scope, Op.Reshape, [tokens, imageShape], { allowzero: int(0) })], { perm: ints([0, 3, 1, 2]) });
    return e.op(scope, Op.Add, [conv(scope, `${name}.proj_out`, image, channels, channels, 1), input]);
  };

  // 2. conv_in, 3. down blocks (every resnet/transformer output and downsampler output is a skip).
  let h = conv('', 'conv_in', sample, config.inChannels, config.blockOutChannels[0]!, 3);
  const skips: { value: Value; channels: number }[] = [{ value: h, channels: config.blockOutChannels[0]! }];
  let channels = config.blockOutChannels[0]!;
  for (let level = 0; level < levels; level++) {
    const out = config.blockOutChannels[level]!;
    const block = `down_blocks.${level}`;
    for (let j = 0; j < config.layersPerBlock; j++) {
      h = resnet(`/${block}/resnets.${j}`, `${block}.resnets.${j}`, h, channels, out);
      channels = out;
      if (config.crossAttention[level]) h = transformer(`/${block}/attentions.${j}`, `${block}.attentions.${j}`, h, out, config.attentionHeads[level]!);
      skips.push({ value: h, channels });
    }
    if (level < levels - 1) {
      h = conv(`/${block}/downsamplers.0`, `${block}.downsamplers.0.conv`, h, out, out, 3, 2);
      skips.push({ value: h, channels });
    }
  }

  // 4. Mid block: resnet, transformer, resnet.
  h = resnet('/mid_block/resnets.0', 'mid_block.resnets.0', h, channels, channels);
  h = transformer('/mid_block/attentions.0', 'mid_block.attentions.0', h, channels, config.attentionHeads[levels - 1]!);
  h = resnet('/mid_block/resnets.1', 'mid_block.resnets.1', h, channels, channels);

  // 5. Up blocks: levels reversed, layers_per_block + 1 resnets each on cat([h, skip]), nearest ×2 + conv between.
  for (let i = 0; i < levels; i++) {
    const level = levels - 1 - i;
    const out = config.blockOutChannels[level]!;
    const block = `up_blocks.${i}`;
    for (let j = 0; j <= config.layersPerBlock; j++) {
      const skip = skips.pop()!;
      const joined = e.op(`/${block}`, Op.Concat, [h, skip.value], { axis: int(1) });
      h = resnet(`/${block}/resnets.${j}`, `${block}.resnets.${j}`, joined, channels + skip.channels, out);
      channels = out;
      if (config.crossAttention[level]) h = transformer(`/${block}/attentions.${j}`, `${block}.attentions.${j}`, h, out, config.attentionHeads[level]!);
    }
    if (i < levels - 1) {
      const up = `/${block}/upsamplers.0`;
      const resized = e.op(up, Op.Resize, [h, undefined, e.constant(up, Tensor.fromFloat32([4], Float32Array.of(1, 1, 2, 2)))], {
        coordinate_transformation_mode: { kind: 'string', value: 'asymmetric' }, cubic_coeff_a: float(-0.75), mode: { kind: 'string', value: 'nearest' }, nearest_mode: { kind: 'string', value: 'floor' },
      });
      h = conv(up, `${block}.upsamplers.0.conv`, resized, out, out, 3);
    }
  }

  // 6. Out: GroupNorm → SiLU → conv_out.
  const normed = e.silu('/conv_act', groupNorm('/conv_norm_out', h, channels, config.normEps));
  const out = conv('', 'conv_out', normed, channels, config.outChannels, 3, 1, 'out_sample');
  out.type = { elemType: DataType.FLOAT, shape: ['batch_size', config.outChannels, 'height', 'width'] };
  graph.outputs.push(out);

  return exportedModel(graph, '1.13.0', `qcompile synth unet --preset ${config.name} --seed ${seed}: random weights, not a trained model`);
}

/** Trainable parameters of the diffusers model (every initializer of the graph is one of them). */
export function sdUnetParameterCount(config: SdUnetConfig): number {
  const c0 = config.blockOutChannels[0]!;
  const timeDim = 4 * c0;
  const conv = (cin: number, cout: number, k: number) => cout * cin * k * k + cout;
  const linear = (cin: number, cout: number, bias = true) => cin * cout + (bias ? cout : 0);
  const resnet = (cin: number, cout: number) => 2 * cin + conv(cin, cout, 3) + linear(timeDim, cout) + 2 * cout + conv(cout, cout, 3) + (cin === cout ? 0 : conv(cin, cout, 1));
  const attention = (c: number, kv: number) => linear(c, c, false) + 2 * linear(kv, c, false) + linear(c, c);
  const transformer = (c: number) => 2 * c + 2 * conv(c, c, 1) + 3 * 2 * c + attention(c, c) + attention(c, config.crossAttentionDim) + linear(c, 8 * c) + linear(4 * c, c);
  const levels = config.blockOutChannels.length;
  let total = linear(c0, timeDim) + linear(timeDim, timeDim) + conv(config.inChannels, c0, 3) + 2 * c0 + conv(c0, config.outChannels, 3);
  const skips = [c0];
  let channels = c0;
  for (let level = 0; level < levels; level++) {
    const out = config.blockOutChannels[level]!;
    for (let j = 0; j < config.layersPerBlock; j++) {
      total += resnet(channels, out) + (config.crossAttention[level] ? transformer(out) : 0);
      channels = out;
      skips.push(out);
    }
    if (level < levels - 1) {
      total += conv(out, out, 3);
      skips.push(out);
    }
  }
  total += 2 * resnet(channels, channels) + transformer(channels);
  for (let i = 0; i < levels; i++) {
    const level = levels - 1 - i;
    const out = config.blockOutChannels[level]!;
    for (let j = 0; j <= config.layersPerBlock; j++) {
      total += resnet(channels + skips.pop()!, out) + (config.crossAttention[level] ? transformer(out) : 0);
      channels = out;
    }
    if (i < levels - 1) total += conv(out, out, 3);
  }
  return total;
}

/** The pipeline folder's `unet/config.json` (diffusers keys). */
export function sdUnetConfigJson(config: SdUnetConfig): Record<string, unknown> {
  return {
    _class_name: 'UNet2DConditionModel',
    _diffusers_version: '0.27.2',
    act_fn: 'silu',
    // A single number when every level has the same, as SD 1.5's config.json writes it.
    attention_head_dim: new Set(config.attentionHeads).size === 1 ? config.attentionHeads[0] : config.attentionHeads,
    block_out_channels: config.blockOutChannels,
    center_input_sample: false,
    cross_attention_dim: config.crossAttentionDim,
    down_block_types: config.crossAttention.map((cross) => (cross ? 'CrossAttnDownBlock2D' : 'DownBlock2D')),
    downsample_padding: 1,
    flip_sin_to_cos: true,
    freq_shift: 0,
    in_channels: config.inChannels,
    layers_per_block: config.layersPerBlock,
    mid_block_scale_factor: 1,
    norm_eps: config.normEps,
    norm_num_groups: config.normGroups,
    out_channels: config.outChannels,
    sample_size: config.sampleSize,
    up_block_types: [...config.crossAttention].reverse().map((cross) => (cross ? 'CrossAttnUpBlock2D' : 'UpBlock2D')),
    use_linear_projection: false,
  };
}

/** `scheduler/scheduler_config.json` as SD 1.5 ships it. */
export const SD15_SCHEDULER_CONFIG: Readonly<Record<string, unknown>> = {
  _class_name: 'PNDMScheduler',
  _diffusers_version: '0.27.2',
  beta_end: 0.012,
  beta_schedule: 'scaled_linear',
  beta_start: 0.00085,
  clip_sample: false,
  num_train_timesteps: 1000,
  prediction_type: 'epsilon',
  set_alpha_to_one: false,
  skip_prk_steps: true,
  steps_offset: 1,
  timestep_spacing: 'leading',
  trained_betas: null,
};

/** `model_index.json` of the pipeline folder: only the UNet and the scheduler are present. */
export function sdModelIndex(config: SdUnetConfig, seed: number): Record<string, unknown> {
  return {
    _class_name: 'StableDiffusionPipeline',
    _diffusers_version: '0.27.2',
    feature_extractor: [null, null],
    safety_checker: [null, null],
    scheduler: ['diffusers', 'PNDMScheduler'],
    text_encoder: [null, null],
    tokenizer: [null, null],
    unet: ['diffusers', 'UNet2DConditionModel'],
    vae: [null, null],
    note: `qcompile synth unet --preset ${config.name} --seed ${seed}: seeded random weights (not a trained model); no text encoder or VAE — conditioning/ holds precomputed encoder_hidden_states`,
  };
}

function checkConfig(config: SdUnetConfig): void {
  const problems: string[] = [];
  const levels = config.blockOutChannels.length;
  if (config.crossAttention.length !== levels || config.attentionHeads.length !== levels) problems.push('one crossAttention flag and one head count per level');
  config.blockOutChannels.forEach((c, level) => {
    if (c % config.normGroups !== 0) problems.push(`channels ${c} divisible by ${config.normGroups} groups`);
    const heads = config.attentionHeads[level] ?? 1;
    if (c % heads !== 0) problems.push(`channels ${c} divisible by ${heads} heads`);
  });
  if (config.blockOutChannels[0]! % 2 !== 0) problems.push('an even time-embedding width');
  if (problems.length > 0) throw new Error(`${config.name}: the UNet needs ${problems.join(', ')}`);
}

/** Writes the UNet as a pipeline folder (unet/, scheduler/, model_index.json, conditioning/ [77, cross_attention_dim]); returns the paths written, relative to DIR. */
export function writeSdUnetPipeline(config: SdUnetConfig, seed: number, dir: string, options: Omit<SdUnetOptions, 'seed'> = {}): string[] {
  return writePipelineFolder({
    denoiser: 'unet',
    model: buildSdUnet(config, { ...options, seed }),
    denoiserConfig: sdUnetConfigJson(config),
    schedulerConfig: SD15_SCHEDULER_CONFIG,
    modelIndex: sdModelIndex(config, seed),
    conditioning: [{ input: 'encoder_hidden_states', shape: [CLIP_TOKENS, config.crossAttentionDim] }],
  }, seed, dir);
}

/** The token count of CLIP's text states, which SD 1.x/2.x UNets are conditioned on. */
const CLIP_TOKENS = 77;
