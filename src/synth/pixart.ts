/**
 * Synthetic PixArt-α: the graph of a torch 2 ONNX export of diffusers' `PixArtTransformer2DModel`
 * (`Transformer2DModel` with norm_type ada_norm_single) — PatchEmbed with its fixed sin-cos table, adaLN-single
 * (one shared timestep MLP and `adaln_single.linear` to 6·C, plus each block's learned `scale_shift_table`),
 * the caption projection of the T5 states, blocks of modulated self-attention, unmodulated cross-attention on the
 * projected caption and a modulated GELU-tanh FeedForward, the final `scale_shift_table` + `proj_out` and the
 * unpatchify to the learned-sigma 2·4 channels — with seeded random weights generated while saved, and the
 * pipeline folder it ships in (DPMSolverMultistepScheduler, random T5-sized conditioning).
 */
import type { Model, Value } from '../ir/core.js';
import { DataType } from '../ir/dtype.js';
import { Op } from '../ir/ops.js';
import { int } from './emitter.js';
import { TransformerGraph, WEIGHT_STD, sinCosPositionTable, type TransformerOptions } from './diffusers-transformer.js';
import { writePipelineFolder } from './pipeline-folder.js';

/** Hyper-parameters of a PixArt-α transformer (diffusers config names in the comments). */
export interface PixartConfig {
  name: string;
  /** num_layers */
  depth: number;
  /** num_attention_heads; the width is heads · headDim */
  heads: number;
  /** attention_head_dim */
  headDim: number;
  patch: number;
  /** sample_size: the latent side (the position table is traced at this size, so the export is fixed to it). */
  sampleSize: number;
  inChannels: number;
  /** caption_channels: the width of the text encoder's states (T5-XXL: 4096). */
  captionChannels: number;
  /** Tokens of each prompt's conditioning (T5 max length 120); the graph's sequence axis is dynamic. */
  textLength: number;
}

/** PixArt-XL-2-512x512 as diffusers converts it, and a tiny one for tests. */
export const PIXART_PRESETS: Record<string, PixartConfig> = {
  'pixart-alpha-512': { name: 'pixart-alpha-512', depth: 28, heads: 16, headDim: 72, patch: 2, sampleSize: 64, inChannels: 4, captionChannels: 4096, textLength: 120 },
  tiny: { name: 'tiny', depth: 2, heads: 2, headDim: 32, patch: 2, sampleSize: 16, inChannels: 4, captionChannels: 32, textLength: 8 },
};

/** Learned sigma: epsilon and the variance interpolation, C channels each. */
function outChannelsOf(config: PixartConfig): number {
  return 2 * config.inChannels;
}

/** Builds the PixArt-α graph; weights are lazy (generated when read or saved). */
export function buildPixart(config: PixartConfig, options: TransformerOptions = {}): Model {
  const g = new TransformerGraph(options);
  const { e } = g;
  const D = config.heads * config.headDim;
  const p = config.patch;
  const grid = config.sampleSize / p;
  const outChannels = outChannelsOf(config);
  if (!Number.isInteger(grid)) throw new Error(`${config.name}: sample size ${config.sampleSize} / patch ${p} must divide`);

  const x = g.graph.addInput('hidden_states', { elemType: DataType.FLOAT, shape: ['batch_size', config.inChannels, config.sampleSize, config.sampleSize] });
  const t = g.graph.addInput('timestep', { elemType: DataType.INT64, shape: ['batch_size'] });
  const text = g.graph.addInput('encoder_hidden_states', { elemType: DataType.FLOAT, shape: ['batch_size', 'sequence_length', config.captionChannels] });

  // PatchEmbed: interpolation_scale max(sample_size // 64, 1), base size = grid, so positions are k / scale.
  const interpolation = Math.max(Math.floor(config.sampleSize / 64), 1);
  const posTable = g.graph.addInitializer('pos_embed.pos_embed', sinCosPositionTable(D, grid, 1 / interpolation));
  let hidden = e.op('/pos_embed', Op.Add, [g.patchTokens('/pos_embed', x, config.inChannels, D, p), posTable]);
  const batch = g.dim('', x, 0);

  // adaLN-single: the timestep MLP once, SiLU, one Linear to the 6·C modulation every block shares.
  const tFloat = e.op('/adaln_single/emb/time_proj', Op.Cast, [t], { to: int(DataType.FLOAT) });
  const embeddedTimestep = g.timestepEmbedding('/adaln_single/emb', tFloat, D, 'adaln_single.emb.timestep_embedder');
  const modulation = g.gemm('/adaln_single/linear', e.silu('/adaln_single/silu', embeddedTimestep), D, 6 * D, 'adaln_single.linear');

  // Caption projection: linear_1, GELU(tanh), linear_2 on the text states.
  const c1 = g.linear('/caption_projection/linear_1', text, config.captionChannels, D, 'caption_projection.linear_1');
  const caption = g.linear('/caption_projection/linear_2', e.geluTanh('/caption_projection/act_1', c1), D, D, 'caption_projection.linear_2');

  const attention = (scope: string, query: Value, context: Value, name: string, keyDim: number) => {
    const q = g.linear(`${scope}/to_q`, query, D, D, `${name}.to_q`);
    const k = g.linear(`${scope}/to_k`, context, keyDim, D, `${name}.to_k`);
    const v = g.linear(`${scope}/to_v`, context, keyDim, D, `${name}.to_v`);
    const heads = (value: Value) => g.splitHeads(scope, value, batch, config.heads, config.headDim);
    const merged = g.attention(scope, heads(q), heads(k), heads(v), batch, config.heads, config.headDim);
    return g.linear(`${scope}/to_out.0`, merged, D, D, `${name}.to_out.0`);
  };

  for (let b = 0; b < config.depth; b++) {
    const s = `/transformer_blocks.${b}`;
    const n = `transformer_blocks.${b}`;
    // scale_shift_table[None] + timestep.reshape(B, 6, -1), chunked into six [B, 1, C].
    const perBlock = e.op(s, Op.Reshape, [modulation, g.shape(s, [batch, 6, -1])], { allowzero: int(0) });
    const table = g.param(`${n}.scale_shift_table`, [6, D], D ** -0.5);
    const [shiftMsa, scaleMsa, gateMsa, shiftMlp, scaleMlp, gateMlp] = e.split(s, e.op(s, Op.Add, [table, perBlock]), [1, 1, 1, 1, 1, 1]);

    const attnIn = g.modulate(s, g.layerNorm(`${s}/norm1`, hidden, D), shiftMsa!, scaleMsa!);
    hidden = e.op(s, Op.Add, [e.op(s, Op.Mul, [gateMsa!, attention(`${s}/attn1`, attnIn, attnIn, `${n}.attn1`, D)]), hidden]);
    // PixArt's cross-attention reads the residual stream unnormalized.
    hidden = e.op(s, Op.Add, [attention(`${s}/attn2`, hidden, caption, `${n}.attn2`, D), hidden]);
    const ffIn = g.modulate(s, g.layerNorm(`${s}/norm2`, hidden, D), shiftMlp!, scaleMlp!);
    hidden = e.op(s, Op.Add, [e.op(s, Op.Mul, [gateMlp!, g.feedForward(`${s}/ff`, ffIn, D, `${n}.ff`)]), hidden]);
  }

  // Output: scale_shift_table[None] + embedded_timestep[:, None] → shift, scale; norm_out, modulate, proj_out.
  const finalTable = g.param('scale_shift_table', [2, D], D ** -0.5);
  const [shift, scale] = e.split('', e.op('', Op.Add, [finalTable, g.overTokens('', embeddedTimestep)]), [1, 1]);
  const normed = g.modulate('', g.layerNorm('/norm_out', hidden, D), shift!, scale!);
  const projected = g.linear('/proj_out', normed, D, p * p * outChannels, 'proj_out');
  const out = g.unpatchify(projected, batch, grid, grid, p, outChannels, 'out_hidden_states');
  out.type = { elemType: DataType.FLOAT, shape: ['batch_size', outChannels, config.sampleSize, config.sampleSize] };
  g.graph.outputs.push(out);
  return g.model(`qcompile synth pixart --preset ${config.name} --seed ${g.seed}: random weights (N(0, ${WEIGHT_STD})), not a trained model`);
}

/**
 * Trainable parameters of a PixArt-α transformer, as `sum(p.numel() for p in transformer.parameters())` counts
 * them: without the fixed position table (a non-persistent buffer) and the affine-free norms' ones/zeros.
 */
export function pixartParameterCount(config: PixartConfig): number {
  const D = config.heads * config.headDim;
  const linear = (i: number, o: number) => i * o + o;
  const patchOut = config.patch * config.patch * outChannelsOf(config);
  const block = 6 * D + 4 * linear(D, D) + 4 * linear(D, D) + linear(D, 4 * D) + linear(4 * D, D);
  return linear(config.inChannels * config.patch * config.patch, D)
    + linear(256, D) + linear(D, D) + linear(D, 6 * D)
    + linear(config.captionChannels, D) + linear(D, D)
    + config.depth * block
    + 2 * D + linear(D, patchOut);
}

/** The fixed tensors the export carries besides the parameters: the position table and the norms' ones/zeros. */
export function pixartBufferCount(config: PixartConfig): number {
  const D = config.heads * config.headDim;
  return (config.sampleSize / config.patch) ** 2 * D + 2 * D;
}

/** The transformer's diffusers config.json (the keys `PixArtTransformer2DModel` reads). */
export function pixartTransformerConfig(config: PixartConfig): Record<string, unknown> {
  const D = config.heads * config.headDim;
  return {
    _class_name: 'PixArtTransformer2DModel',
    _diffusers_version: '0.29.0',
    activation_fn: 'gelu-approximate',
    attention_bias: true,
    attention_head_dim: config.headDim,
    attention_type: 'default',
    caption_channels: config.captionChannels,
    cross_attention_dim: D,
    dropout: 0.0,
    in_channels: config.inChannels,
    interpolation_scale: null,
    norm_elementwise_affine: false,
    norm_eps: 1e-6,
    norm_num_groups: 32,
    norm_type: 'ada_norm_single',
    num_attention_heads: config.heads,
    num_embeds_ada_norm: 1000,
    num_layers: config.depth,
    out_channels: outChannelsOf(config),
    patch_size: config.patch,
    sample_size: config.sampleSize,
    upcast_attention: false,
    use_additional_conditions: false,
  };
}

/** PixArt-α ships `DPMSolverMultistepScheduler()` with its defaults: linear betas 1e-4..0.02, T = 1000, epsilon. */
export const PIXART_SCHEDULER_CONFIG: Record<string, unknown> = {
  _class_name: 'DPMSolverMultistepScheduler',
  _diffusers_version: '0.22.0.dev0',
  algorithm_type: 'dpmsolver++',
  beta_end: 0.02,
  beta_schedule: 'linear',
  beta_start: 0.0001,
  dynamic_thresholding_ratio: 0.995,
  euler_at_final: false,
  lower_order_final: true,
  num_train_timesteps: 1000,
  prediction_type: 'epsilon',
  sample_max_value: 1.0,
  solver_order: 2,
  solver_type: 'midpoint',
  steps_offset: 0,
  thresholding: false,
  timestep_spacing: 'linspace',
  trained_betas: null,
  use_karras_sigmas: false,
  use_lu_lambdas: false,
  variance_type: null,
};

/**
 * Writes a PixArt-α pipeline folder: DIR/transformer/model.onnx (+ model.onnx.data, config.json),
 * DIR/scheduler/scheduler_config.json, DIR/model_index.json and DIR/conditioning/prompt_000…007.npy + uncond.npy
 * ([textLength, captionChannels] float32, seeded N(0, 1): stand-ins for T5 states). Returns the relative paths.
 */
export function writePixartPipeline(config: PixartConfig, seed: number, dir: string, options: Omit<TransformerOptions, 'seed'> = {}): string[] {
  return writePipelineFolder({
    model: buildPixart(config, { ...options, seed }),
    denoiser: 'transformer',
    denoiserConfig: pixartTransformerConfig(config),
    schedulerConfig: PIXART_SCHEDULER_CONFIG,
    modelIndex: {
      _class_name: 'PixArtAlphaPipeline',
      _diffusers_version: '0.22.0.dev0',
      scheduler: ['diffusers', 'DPMSolverMultistepScheduler'],
      text_encoder: [null, null],
      tokenizer: [null, null],
      transformer: ['diffusers', 'PixArtTransformer2DModel'],
      vae: [null, null],
      note: `synthetic ${config.name} (seed ${seed}): random weights; conditioning/ holds random T5-shaped states`,
    },
    conditioning: [{ input: 'encoder_hidden_states', shape: [config.textLength, config.captionChannels] }],
  }, seed, dir);
}
