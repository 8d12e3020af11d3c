/**
 * Synthetic SD3-style MMDiT: the graph of a torch 2 ONNX export (optimum's `sd3-transformer-2d`: inputs
 * hidden_states, encoder_hidden_states, pooled_projections, float timestep; output out_hidden_states; dynamic
 * batch, height and width) of diffusers' `SD3Transformer2DModel` — PatchEmbed with the persistent 2-D sin-cos table
 * cropped to the input's size, time_text_embed (timestep MLP + pooled-text projection, summed), context_embedder,
 * joint blocks (AdaLayerNormZero on both streams — AdaLayerNormContinuous on the context in the last block — one
 * softmax attention over the concatenated image and context tokens, split back into to_out.0 / to_add_out, GELU-tanh
 * ff and ff_context), norm_out + proj_out and the unpatchify — with seeded random weights generated while saved, and
 * the pipeline folder it ships in (FlowMatchEulerDiscreteScheduler, shift 3; random conditioning for both inputs).
 */
import type { Model, Value } from '../ir/core.js';
import { DataType } from '../ir/dtype.js';
import { Op } from '../ir/ops.js';
import { Tensor } from '../ir/tensor.js';
import { int, i64s } from './emitter.js';
import { TransformerGraph, WEIGHT_STD, sinCosPositionTable, type TransformerOptions } from './diffusers-transformer.js';
import { writePipelineFolder } from './pipeline-folder.js';

/** Hyper-parameters of an SD3 transformer (diffusers config names in the comments). */
export interface MmditConfig {
  name: string;
  /** num_layers */
  depth: number;
  /** num_attention_heads; the width (= caption_projection_dim) is heads · headDim */
  heads: number;
  /** attention_head_dim */
  headDim: number;
  patch: number;
  /** sample_size: the latent side it was trained at (the base of the position grid). */
  sampleSize: number;
  /** in_channels = out_channels (flow prediction, no learned sigma). */
  channels: number;
  /** joint_attention_dim: width of the text states (CLIP-L + CLIP-G padded / T5-XXL: 4096). */
  jointAttentionDim: number;
  /** pooled_projection_dim: the pooled CLIP-L + CLIP-G embedding (2048). */
  pooledProjectionDim: number;
  /** pos_embed_max_size: side of the position grid the input's patches are cropped from. */
  posEmbedMaxSize: number;
  /** Tokens of each prompt's conditioning (77 CLIP + 256 T5); the graph's sequence axis is dynamic. */
  textLength: number;
}

/** stable-diffusion-3-medium's transformer, and a tiny one for tests. */
export const MMDIT_PRESETS: Record<string, MmditConfig> = {
  'sd3-medium': { name: 'sd3-medium', depth: 24, heads: 24, headDim: 64, patch: 2, sampleSize: 128, channels: 16, jointAttentionDim: 4096, pooledProjectionDim: 2048, posEmbedMaxSize: 192, textLength: 333 },
  tiny: { name: 'tiny', depth: 2, heads: 2, headDim: 32, patch: 2, sampleSize: 16, channels: 4, jointAttentionDim: 32, pooledProjectionDim: 32, posEmbedMaxSize: 16, textLength: 8 },
};

/** Builds the SD3 transformer graph; weights are lazy (generated when read or saved). */
export function buildMmdit(config: MmditConfig, options: TransformerOptions = {}): Model {
  const g = new TransformerGraph(options);
  const { e } = g;
  const D = config.heads * config.headDim;
  const p = config.patch;
  const C = config.channels;
  if (config.sampleSize % p !== 0) throw new Error(`${config.name}: sample size ${config.sampleSize} / patch ${p} must divide`);

  const x = g.graph.addInput('hidden_states', { elemType: DataType.FLOAT, shape: ['batch_size', C, 'height', 'width'] });
  const text = g.graph.addInput('encoder_hidden_states', { elemType: DataType.FLOAT, shape: ['batch_size', 'sequence_length', config.jointAttentionDim] });
  const pooled = g.graph.addInput('pooled_projections', { elemType: DataType.FLOAT, shape: ['batch_size', config.pooledProjectionDim] });
  const t = g.graph.addInput('timestep', { elemType: DataType.FLOAT, shape: ['step'] });

  // PatchEmbed: the centre h × w of the max-size grid, positions scaled by base (sample_size / patch) / max grid.
  const scope = '/pos_embed';
  const patch = e.constant(scope, Tensor.fromInt64([], [p]));
  const h = e.op(scope, Op.Div, [g.dim(scope, x, 2), patch]);
  const w = e.op(scope, Op.Div, [g.dim(scope, x, 3), patch]);
  const max = config.posEmbedMaxSize;
  const table = g.graph.addInitializer('pos_embed.pos_embed', sinCosPositionTable(D, max, config.sampleSize / p / max));
  const spatial = e.op(scope, Op.Reshape, [table, e.constant(scope, i64s([1, max, max, D]))], { allowzero: int(0) });
  const half = (side: Value) => e.op(scope, Op.Div, [e.op(scope, Op.Sub, [e.constant(scope, Tensor.fromInt64([], [max])), side]), e.constant(scope, Tensor.fromInt64([], [2]))]);
  const [top, left] = [half(h), half(w)];
  const starts = g.shape(scope, [top, left]);
  const ends = g.shape(scope, [e.op(scope, Op.Add, [top, h]), e.op(scope, Op.Add, [left, w])]);
  const cropped = e.op(scope, Op.Slice, [spatial, starts, ends, e.constant(scope, i64s([1, 2])), e.constant(scope, i64s([1, 1]))]);
  const positions = e.op(scope, Op.Reshape, [cropped, e.constant(scope, i64s([1, -1, D]))], { allowzero: int(0) });
  let hidden = e.op(scope, Op.Add, [g.patchTokens(scope, x, C, D, p), positions]);
  const batch = g.dim('', x, 0);

  // time_text_embed: timestep MLP on the float timestep + text_embedder (linear_1, SiLU, linear_2) on the pooled text.
  const timeEmb = g.timestepEmbedding('/time_text_embed', t, D, 'time_text_embed.timestep_embedder');
  const te = '/time_text_embed/text_embedder';
  const pooled1 = g.gemm(`${te}/linear_1`, pooled, config.pooledProjectionDim, D, 'time_text_embed.text_embedder.linear_1');
  const pooledEmb = g.gemm(`${te}/linear_2`, e.silu(`${te}/act_1`, pooled1), D, D, 'time_text_embed.text_embedder.linear_2');
  const temb = e.op('/time_text_embed', Op.Add, [timeEmb, pooledEmb]);
  let context = g.linear('/context_embedder', text, config.jointAttentionDim, D, 'context_embedder');

  /** A modulation Linear on SiLU(temb) (the exporter merges every norm's identical SiLU into the first) split in `n`. */
  let siluTemb: Value | undefined;
  const adaLN = (scope: string, name: string, n: number) => {
    siluTemb ??= e.silu(`${scope}/silu`, temb);
    return e.split(scope, g.gemm(`${scope}/linear`, siluTemb, D, n * D, `${name}.linear`), Array<number>(n).fill(D)).map((chunk) => g.overTokens(scope, chunk));
  };

  for (let b = 0; b < config.depth; b++) {
    const s = `/transformer_blocks.${b}`;
    const n = `transformer_blocks.${b}`;
    const last = b === config.depth - 1;
    const [shiftMsa, scaleMsa, gateMsa, shiftMlp, scaleMlp, gateMlp] = adaLN(`${s}/norm1`, `${n}.norm1`, 6);
    const normHidden = g.modulate(`${s}/norm1`, g.layerNorm(`${s}/norm1/norm`, hidden, D), shiftMsa!, scaleMsa!);
    // AdaLayerNormZero on the context, or in the last block AdaLayerNormContinuous: (scale, shift) only.
    const contextChunks = adaLN(`${s}/norm1_context`, `${n}.norm1_context`, last ? 2 : 6);
    const [cShift, cScale] = last ? [contextChunks[1], contextChunks[0]] : contextChunks;
    const normContext = g.modulate(`${s}/norm1_context`, g.layerNorm(`${s}/norm1_context/norm`, context, D), cShift!, cScale!);

    // Joint attention: both streams' heads concatenated along the sequence for one softmax, then split back.
    const a = `${s}/attn`;
    const heads = (value: Value) => g.splitHeads(a, value, batch, config.heads, config.headDim);
    const qkv = (input: Value, names: string[]) => names.map((m) => heads(g.linear(`${a}/${m}`, input, D, D, `${n}.attn.${m}`)));
    const [q, k, v] = qkv(normHidden, ['to_q', 'to_k', 'to_v']);
    const [cq, ck, cv] = qkv(normContext, ['add_q_proj', 'add_k_proj', 'add_v_proj']);
    const joint = (image: Value, text: Value) => e.op(a, Op.Concat, [image, text], { axis: int(2) });
    const attended = g.attention(a, joint(q!, cq!), joint(k!, ck!), joint(v!, cv!), batch, config.heads, config.headDim);
    const imageTokens = e.op(a, Op.Unsqueeze, [g.dim(a, hidden, 1), e.constant(a, i64s([0]))]);
    const axis1 = e.constant(a, i64s([1]));
    const imagePart = e.op(a, Op.Slice, [attended, e.constant(a, i64s([0])), imageTokens, axis1, e.constant(a, i64s([1]))]);
    hidden = e.op(s, Op.Add, [hidden, e.op(s, Op.Mul, [gateMsa!, g.linear(`${a}/to_out.0`, imagePart, D, D, `${n}.attn.to_out.0`)])]);

    const ffIn = g.modulate(s, g.layerNorm(`${s}/norm2`, hidden, D), shiftMlp!, scaleMlp!);
    hidden = e.op(s, Op.Add, [hidden, e.op(s, Op.Mul, [gateMlp!, g.feedForward(`${s}/ff`, ffIn, D, `${n}.ff`)])]);

    if (!last) {
      const [, , cGateMsa, cShiftMlp, cScaleMlp, cGateMlp] = contextChunks;
      const contextPart = e.op(a, Op.Slice, [attended, imageTokens, e.constant(a, i64s([Number.MAX_SAFE_INTEGER])), axis1, e.constant(a, i64s([1]))]);
      context = e.op(s, Op.Add, [context, e.op(s, Op.Mul, [cGateMsa!, g.linear(`${a}/to_add_out`, contextPart, D, D, `${n}.attn.to_add_out`)])]);
      const cffIn = g.modulate(s, g.layerNorm(`${s}/norm2_context`, context, D), cShiftMlp!, cScaleMlp!);
      context = e.op(s, Op.Add, [context, e.op(s, Op.Mul, [cGateMlp!, g.feedForward(`${s}/ff_context`, cffIn, D, `${n}.ff_context`)])]);
    }
  }

  // norm_out (AdaLayerNormContinuous: scale, shift), proj_out, unpatchify to [B, C, H, W].
  const [scale, shift] = adaLN('/norm_out', 'norm_out', 2);
  const normed = g.modulate('/norm_out', g.layerNorm('/norm_out/norm', hidden, D), shift!, scale!);
  const projected = g.linear('/proj_out', normed, D, p * p * C, 'proj_out');
  const out = g.unpatchify(projected, batch, h, w, p, C, 'out_hidden_states');
  out.type = { elemType: DataType.FLOAT, shape: ['batch_size', C, 'height', 'width'] };
  g.graph.outputs.push(out);
  return g.model(`qcompile synth sd3 --preset ${config.name} --seed ${g.seed}: random weights (N(0, ${WEIGHT_STD})), not a trained model`);
}

/**
 * Trainable parameters of an SD3 transformer, as `sum(p.numel() for p in transformer.parameters())` counts them:
 * without the position table (a persistent buffer, in the state dict but no parameter) and the norms' ones/zeros.
 */
export function mmditParameterCount(config: MmditConfig): number {
  const D = config.heads * config.headDim;
  const linear = (i: number, o: number) => i * o + o;
  const ff = linear(D, 4 * D) + linear(4 * D, D);
  const block = 2 * linear(D, 6 * D) + 8 * linear(D, D) + 2 * ff;
  const lastBlock = linear(D, 6 * D) + linear(D, 2 * D) + 7 * linear(D, D) + ff;
  return linear(config.channels * config.patch * config.patch, D)
    + linear(256, D) + linear(D, D) + linear(config.pooledProjectionDim, D) + linear(D, D)
    + linear(config.jointAttentionDim, D)
    + (config.depth - 1) * block + lastBlock
    + linear(D, 2 * D) + linear(D, config.patch * config.patch * config.channels);
}

/** The fixed tensors the export carries besides the parameters: the position table and the norms' ones/zeros. */
export function mmditBufferCount(config: MmditConfig): number {
  const D = config.heads * config.headDim;
  return config.posEmbedMaxSize ** 2 * D + 2 * D;
}

/** The transformer's diffusers config.json (the keys `SD3Transformer2DModel` reads). */
export function mmditTransformerConfig(config: MmditConfig): Record<string, unknown> {
  return {
    _class_name: 'SD3Transformer2DModel',
    _diffusers_version: '0.29.0.dev0',
    attention_head_dim: config.headDim,
    caption_projection_dim: config.heads * config.headDim,
    in_channels: config.channels,
    joint_attention_dim: config.jointAttentionDim,
    num_attention_heads: config.heads,
    num_layers: config.depth,
    out_channels: config.channels,
    patch_size: config.patch,
    pooled_projection_dim: config.pooledProjectionDim,
    pos_embed_max_size: config.posEmbedMaxSize,
    sample_size: config.sampleSize,
  };
}

/** SD3 ships a FlowMatchEulerDiscreteScheduler: T = 1000, shift 3; the model predicts the flow (velocity). */
export const MMDIT_SCHEDULER_CONFIG: Record<string, unknown> = {
  _class_name: 'FlowMatchEulerDiscreteScheduler',
  _diffusers_version: '0.29.0.dev0',
  num_train_timesteps: 1000,
  shift: 3.0,
};

/**
 * Writes an SD3 pipeline folder: DIR/transformer/model.onnx (+ model.onnx.data, config.json),
 * DIR/scheduler/scheduler_config.json, DIR/model_index.json and, per conditioning input,
 * DIR/conditioning/encoder_hidden_states/prompt_000…007.npy + uncond.npy ([textLength, jointAttentionDim]) and
 * DIR/conditioning/pooled_projections/… ([pooledProjectionDim]), float32 seeded N(0, 1). Returns the relative paths.
 */
export function writeMmditPipeline(config: MmditConfig, seed: number, dir: string, options: Omit<TransformerOptions, 'seed'> = {}): string[] {
  return writePipelineFolder({
    model: buildMmdit(config, { ...options, seed }),
    denoiser: 'transformer',
    denoiserConfig: mmditTransformerConfig(config),
    schedulerConfig: MMDIT_SCHEDULER_CONFIG,
    modelIndex: {
      _class_name: 'StableDiffusion3Pipeline',
      _diffusers_version: '0.29.0.dev0',
      scheduler: ['diffusers', 'FlowMatchEulerDiscreteScheduler'],
      text_encoder: [null, null],
      text_encoder_2: [null, null],
      text_encoder_3: [null, null],
      tokenizer: [null, null],
      tokenizer_2: [null, null],
      tokenizer_3: [null, null],
      transformer: ['diffusers', 'SD3Transformer2DModel'],
      vae: [null, null],
      note: `synthetic ${config.name} (seed ${seed}): random weights; conditioning/ holds random text states and pooled embeddings`,
    },
    conditioning: [
      { input: 'encoder_hidden_states', shape: [config.textLength, config.jointAttentionDim] },
      { input: 'pooled_projections', shape: [config.pooledProjectionDim] },
    ],
  }, seed, dir);
}
