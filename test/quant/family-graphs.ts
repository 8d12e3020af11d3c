/**
 * Small graphs with the op patterns of the model families layer discovery must read, written the way torch
 * exports them (token linears as MatMul + bias Add on `onnx::MatMul_N` weights, vector linears as Gemm, SiLU as
 * x·Sigmoid(x), GroupNorm as Reshape → InstanceNormalization → Reshape → affine, heads split and merged by
 * Reshape/Transpose): a DDPM/LDM UNet with a 1×1-conv attention block (both the diffusers and the CompVis
 * operand order), an SDXL UNet level (linear proj_in/proj_out, two blocks per transformer), the SD VAE decoder,
 * a PixArt-α transformer (adaLN-single, caption projection, cross-attention), an SD3 MMDiT (joint attention over
 * an image and a context stream) and Flux (dual- and single-stream blocks). They run in ONNX Runtime; the
 * weights are random.
 */
import { Graph, Model, type Attribute, type Value } from '../../src/ir/core.js';
import { DataType } from '../../src/ir/dtype.js';
import { Op, type OpType } from '../../src/ir/ops.js';
import { Tensor } from '../../src/ir/tensor.js';
import { Emitter, float, i64s, int, ints } from '../../src/synth/emitter.js';
import { normalTensor } from '../../src/synth/random.js';

/** Graph-building helpers shared by the family builders. */
class Builder {
  readonly graph = new Graph('family');
  readonly e = new Emitter(this.graph);
  private stream = 0;
  private weights = 0;

  op(opType: OpType, inputs: (Value | undefined)[], attributes: Record<string, Attribute> = {}): Value {
    return this.e.op('', opType, inputs, attributes);
  }

  random(dims: number[], std = 0.1): Value {
    return this.graph.addInitializer(`onnx::MatMul_${this.weights++}`, normalTensor(dims, 0, this.stream++, std));
  }

  scalar(value: number): Value {
    return this.e.constant('', Tensor.fromFloat32([], Float32Array.of(value)));
  }

  ints(values: number[]): Value {
    return this.e.constant('', i64s(values));
  }

  /** nn.Linear on tokens [B, T, K]: MatMul + bias Add. */
  linear(x: Value, k: number, n: number, bias = true): Value {
    const mm = this.op(Op.MatMul, [x, this.random([k, n])]);
    return bias ? this.op(Op.Add, [mm, this.random([n], 0.02)]) : mm;
  }

  /** nn.Linear on vectors [B, K]: Gemm with transB. */
  gemm(x: Value, k: number, n: number): Value {
    return this.op(Op.Gemm, [x, this.random([n, k]), this.random([n], 0.02)], { transB: int(1) });
  }

  conv(x: Value, cin: number, cout: number, kernel: number, stride = 1): Value {
    return this.op(Op.Conv, [x, this.random([cout, cin, kernel, kernel]), this.random([cout], 0.02)], {
      kernel_shape: ints([kernel, kernel]), pads: ints(Array(4).fill(stride === kernel ? 0 : (kernel - 1) >> 1)), strides: ints([stride, stride]),
    });
  }

  silu(x: Value): Value {
    return this.e.silu('', x);
  }

  gelu(x: Value): Value {
    return this.e.geluTanh('', x);
  }

  layerNorm(x: Value, channels: number): Value {
    const ones = this.graph.addInitializer(`ln${this.stream++}.ones`, Tensor.fromFloat32([channels], new Float32Array(channels).fill(1)));
    const zeros = this.graph.addInitializer(`ln${this.stream++}.zeros`, Tensor.fromFloat32([channels], new Float32Array(channels)));
    return this.op(Op.LayerNormalization, [x, ones, zeros], { axis: int(-1), epsilon: float(1e-6) });
  }

  /** GroupNorm as torch exports it before opset 18. */
  groupNorm(x: Value, channels: number, groups: number): Value {
    const grouped = this.op(Op.Reshape, [x, this.ints([0, groups, -1])]);
    const ones = Tensor.fromFloat32([groups], new Float32Array(groups).fill(1));
    const normed = this.op(Op.InstanceNormalization, [grouped, this.graph.addInitializer(`gn${this.stream++}.ones`, ones), this.graph.addInitializer(`gn${this.stream++}.zeros`, Tensor.fromFloat32([groups], new Float32Array(groups)))], { epsilon: float(1e-5) });
    const back = this.op(Op.Reshape, [normed, this.op(Op.Shape, [x])]);
    return this.op(Op.Add, [this.op(Op.Mul, [back, this.random([channels, 1, 1])]), this.random([channels, 1, 1], 0.02)]);
  }

  /** Sinusoidal embedding of an integer timestep [B] → [B, dim]. */
  sinusoid(t: Value, dim: number): Value {
    const half = dim / 2;
    const freqs = Tensor.fromFloat32([1, half], Float32Array.from({ length: half }, (_, i) => Math.exp((-Math.log(10000) * i) / half)));
    const args = this.op(Op.Mul, [this.op(Op.Unsqueeze, [this.op(Op.Cast, [t], { to: int(DataType.FLOAT) }), this.ints([1])]), this.e.constant('', freqs)]);
    return this.op(Op.Concat, [this.op(Op.Cos, [args]), this.op(Op.Sin, [args])], { axis: int(-1) });
  }

  /** LN(x)·(1 + scale) + shift with [B, C] chunks. */
  modulate(normed: Value, shift: Value, scale: Value): Value {
    const unsqueeze = (v: Value) => this.op(Op.Unsqueeze, [v, this.ints([1])]);
    return this.op(Op.Add, [this.op(Op.Mul, [normed, this.op(Op.Add, [unsqueeze(scale), this.scalar(1)])]), unsqueeze(shift)]);
  }

  /** Multi-head attention core over tokens [B, T, C]: heads split, softmax(q·kᵀ/√d)·v, heads merged. */
  attention(q: Value, k: Value, v: Value, channels: number, heads: number): Value {
    const split = (x: Value) => this.op(Op.Transpose, [this.op(Op.Reshape, [x, this.ints([0, -1, heads, channels / heads])])], { perm: ints([0, 2, 1, 3]) });
    const kT = this.op(Op.Transpose, [split(k)], { perm: ints([0, 1, 3, 2]) });
    const scores = this.op(Op.Mul, [this.op(Op.MatMul, [split(q), kT]), this.scalar((channels / heads) ** -0.5)]);
    const mixed = this.op(Op.MatMul, [this.op(Op.Softmax, [scores], { axis: int(-1) }), split(v)]);
    return this.op(Op.Reshape, [this.op(Op.Transpose, [mixed], { perm: ints([0, 2, 1, 3]) }), this.ints([0, -1, channels])]);
  }

  /** [B, T, p·p·C] tokens of a side×side grid back to [B, C, side·p, side·p]. */
  unpatchify(tokens: Value, grid: number, patch: number, channels: number): Value {
    const six = this.op(Op.Reshape, [tokens, this.ints([-1, grid, grid, patch, patch, channels])]);
    return this.op(Op.Reshape, [this.op(Op.Transpose, [six], { perm: ints([0, 5, 1, 3, 2, 4]) }), this.ints([-1, channels, grid * patch, grid * patch])]);
  }

  /** Conv output [B, C, H, W] to tokens [B, H·W, C]. */
  tokens(x: Value, channels: number): Value {
    return this.op(Op.Transpose, [this.op(Op.Reshape, [x, this.ints([0, channels, -1])])], { perm: ints([0, 2, 1]) });
  }

  model(output: Value, shape: (number | string)[]): Model {
    output.type = { elemType: DataType.FLOAT, shape };
    this.graph.outputs.push(output);
    const model = new Model(this.graph);
    model.irVersion = 8;
    model.opsetImports.set('', 17);
    return model;
  }
}

/** Sizes shared by the builders: a 1-channel 8×8 latent, 8 text tokens of width 16, pooled text of width 12. */
export const FAMILY = { side: 8, latentChannels: 1, textTokens: 8, textWidth: 16, pooledWidth: 12 } as const;

/**
 * A DDPM/LDM-style UNet level: conv_in → resblock → attention block of 1×1 convs (GroupNorm → q, k, v → scores →
 * softmax → mix → proj_out → + x) → conv_out. `compVis` writes the mix as CompVis does, bmm(v, softmaxᵀ) with v
 * first; otherwise as diffusers, softmax · v.
 */
export function convAttentionUnet(compVis: boolean): Model {
  const b = new Builder();
  const { side, latentChannels } = FAMILY;
  const C = 16;
  const x = b.graph.addInput('sample', { elemType: DataType.FLOAT, shape: ['batch', latentChannels, side, side] });
  const t = b.graph.addInput('timestep', { elemType: DataType.INT64, shape: ['batch'] });
  const temb = b.gemm(b.silu(b.gemm(b.sinusoid(t, 16), 16, 32)), 32, 32);
  const h = b.conv(x, latentChannels, C, 3);
  const h1 = b.conv(b.silu(b.groupNorm(h, C, 4)), C, C, 3);
  const withTime = b.op(Op.Add, [h1, b.op(Op.Unsqueeze, [b.gemm(b.silu(temb), 32, C), b.ints([2, 3])])]);
  const res = b.op(Op.Add, [h, b.conv(b.silu(b.groupNorm(withTime, C, 4)), C, C, 3)]);
  const normed = b.groupNorm(res, C, 4);
  const [q, k, v] = [0, 1, 2].map(() => b.op(Op.Reshape, [b.conv(normed, C, C, 1), b.ints([0, C, -1])]));
  const qT = b.op(Op.Transpose, [q!], { perm: ints([0, 2, 1]) });
  const scores = b.op(Op.Mul, [b.op(Op.MatMul, [qT, k!]), b.scalar(C ** -0.5)]);
  const probs = b.op(Op.Softmax, [scores], { axis: int(2) });
  const mixed = compVis
    ? b.op(Op.MatMul, [v!, b.op(Op.Transpose, [probs], { perm: ints([0, 2, 1]) })])
    : b.op(Op.Transpose, [b.op(Op.MatMul, [probs, b.op(Op.Transpose, [v!], { perm: ints([0, 2, 1]) })])], { perm: ints([0, 2, 1]) });
  const attended = b.op(Op.Add, [res, b.conv(b.op(Op.Reshape, [mixed, b.op(Op.Shape, [res])]), C, C, 1)]);
  const out = b.conv(b.silu(b.groupNorm(attended, C, 4)), C, latentChannels, 3);
  return b.model(out, ['batch', latentChannels, side, side]);
}

/**
 * PixArt-α (diffusers PixArtTransformer2DModel), two blocks: patch conv + position; timestep embedder; adaLN-single
 * (one linear on SiLU(t_emb) making 6·C, every block adds its learned table and chunks it); caption projection
 * (linear → GELU tanh → linear on the text states); per block self-attention on the modulated norm, cross-attention
 * on the raw tokens (k/v from the projected caption), modulated MLP, gated residuals; final norm modulated by a
 * table and t_emb (no linear), proj_out, unpatchify.
 */
export function pixartLike(): Model {
  const b = new Builder();
  const { side, latentChannels, textTokens, textWidth } = FAMILY;
  const [C, heads, patch] = [32, 2, 2];
  const grid = side / patch;
  const x = b.graph.addInput('hidden_states', { elemType: DataType.FLOAT, shape: ['batch', latentChannels, side, side] });
  const text = b.graph.addInput('encoder_hidden_states', { elemType: DataType.FLOAT, shape: ['batch', textTokens, textWidth] });
  const t = b.graph.addInput('timestep', { elemType: DataType.INT64, shape: ['batch'] });
  let hidden = b.op(Op.Add, [b.tokens(b.conv(x, latentChannels, C, patch, patch), C), b.random([1, grid * grid, C])]);
  const embedded = b.gemm(b.silu(b.gemm(b.sinusoid(t, 32), 32, C)), C, C);
  const tBlock = b.gemm(b.silu(embedded), C, 6 * C);
  const caption = b.linear(b.gelu(b.linear(text, textWidth, C)), C, C);
  for (let block = 0; block < 2; block++) {
    const table = b.op(Op.Add, [b.random([1, 6, C]), b.op(Op.Reshape, [tBlock, b.ints([-1, 6, C])])]);
    const chunks = b.graph.addNode({ opType: Op.Split, inputs: [table, b.ints([1, 1, 1, 1, 1, 1])], outputs: 6, attributes: { axis: int(1) } }).outputs.map((c) => b.op(Op.Squeeze, [c, b.ints([1])]));
    const [shiftMsa, scaleMsa, gateMsa, shiftMlp, scaleMlp, gateMlp] = chunks;
    const gate = (g: Value, v: Value) => b.op(Op.Mul, [b.op(Op.Unsqueeze, [g, b.ints([1])]), v]);
    const attnIn = b.modulate(b.layerNorm(hidden, C), shiftMsa!, scaleMsa!);
    const self = b.attention(b.linear(attnIn, C, C), b.linear(attnIn, C, C), b.linear(attnIn, C, C), C, heads);
    hidden = b.op(Op.Add, [hidden, gate(gateMsa!, b.linear(self, C, C))]);
    const cross = b.attention(b.linear(hidden, C, C), b.linear(caption, C, C), b.linear(caption, C, C), C, heads);
    hidden = b.op(Op.Add, [hidden, b.linear(cross, C, C)]);
    const mlpIn = b.modulate(b.layerNorm(hidden, C), shiftMlp!, scaleMlp!);
    hidden = b.op(Op.Add, [hidden, gate(gateMlp!, b.linear(b.gelu(b.linear(mlpIn, C, 4 * C)), 4 * C, C))]);
  }
  const finalTable = b.op(Op.Add, [b.random([1, 2, C]), b.op(Op.Unsqueeze, [embedded, b.ints([1])])]);
  const [shift, scale] = b.graph.addNode({ opType: Op.Split, inputs: [finalTable, b.ints([1, 1])], outputs: 2, attributes: { axis: int(1) } }).outputs.map((c) => b.op(Op.Squeeze, [c, b.ints([1])]));
  const out = b.linear(b.modulate(b.layerNorm(hidden, C), shift!, scale!), C, patch * patch * 2 * latentChannels);
  return b.model(b.unpatchify(out, grid, patch, 2 * latentChannels), ['batch', 2 * latentChannels, side, side]);
}

/**
 * SD3 MMDiT (diffusers SD3Transformer2DModel), two joint blocks: patch conv + position; context_embedder on the
 * text states; timestep embedder + pooled-text embedder summed into temb; per block adaLN for each stream
 * (norm1, norm1_context: 6 chunks), q/k/v per stream Concat'ed over tokens, one attention, its output split back
 * (Slice) into to_out and to_add_out, an MLP per stream; norm_out (2 chunks), proj_out, unpatchify.
 */
export function sd3Like(): Model {
  const b = new Builder();
  const { side, latentChannels, textTokens, textWidth, pooledWidth } = FAMILY;
  const [C, heads, patch] = [32, 2, 2];
  const grid = side / patch;
  const x = b.graph.addInput('hidden_states', { elemType: DataType.FLOAT, shape: ['batch', latentChannels, side, side] });
  const text = b.graph.addInput('encoder_hidden_states', { elemType: DataType.FLOAT, shape: ['batch', textTokens, textWidth] });
  const pooled = b.graph.addInput('pooled_projections', { elemType: DataType.FLOAT, shape: ['batch', pooledWidth] });
  const t = b.graph.addInput('timestep', { elemType: DataType.INT64, shape: ['batch'] });
  let image = b.op(Op.Add, [b.tokens(b.conv(x, latentChannels, C, patch, patch), C), b.random([1, grid * grid, C])]);
  let context = b.linear(text, textWidth, C);
  const timeEmb = b.gemm(b.silu(b.gemm(b.sinusoid(t, 32), 32, C)), C, C);
  const textEmb = b.gemm(b.silu(b.gemm(pooled, pooledWidth, C)), C, C);
  const cond = b.silu(b.op(Op.Add, [timeEmb, textEmb]));
  const chunk = (v: Value, n: number) => b.graph.addNode({ opType: Op.Split, inputs: [v, b.ints(Array(n).fill(C))], outputs: n, attributes: { axis: int(1) } }).outputs;
  const gate = (g: Value, v: Value) => b.op(Op.Mul, [b.op(Op.Unsqueeze, [g, b.ints([1])]), v]);
  const imageTokens = grid * grid;
  for (let block = 0; block < 2; block++) {
    const [shiftMsa, scaleMsa, gateMsa, shiftMlp, scaleMlp, gateMlp] = chunk(b.gemm(cond, C, 6 * C), 6);
    const [cShiftMsa, cScaleMsa, cGateMsa, cShiftMlp, cScaleMlp, cGateMlp] = chunk(b.gemm(cond, C, 6 * C), 6);
    const imageIn = b.modulate(b.layerNorm(image, C), shiftMsa!, scaleMsa!);
    const contextIn = b.modulate(b.layerNorm(context, C), cShiftMsa!, cScaleMsa!);
    const [q, k, v] = [0, 1, 2].map(() => b.linear(imageIn, C, C));
    const [cq, ck, cv] = [0, 1, 2].map(() => b.linear(contextIn, C, C));
    const joint = (a: Value, c: Value) => b.op(Op.Concat, [a, c], { axis: int(1) });
    const mixed = b.attention(joint(q!, cq!), joint(k!, ck!), joint(v!, cv!), C, heads);
    const slice = (from: number, to: number) => b.op(Op.Slice, [mixed, b.ints([from]), b.ints([to]), b.ints([1])]);
    image = b.op(Op.Add, [image, gate(gateMsa!, b.linear(slice(0, imageTokens), C, C))]);
    context = b.op(Op.Add, [context, gate(cGateMsa!, b.linear(slice(imageTokens, imageTokens + textTokens), C, C))]);
    const mlp = (stream: Value, shift: Value, scale: Value, g: Value) => b.op(Op.Add, [stream, gate(g, b.linear(b.gelu(b.linear(b.modulate(b.layerNorm(stream, C), shift, scale), C, 4 * C)), 4 * C, C))]);
    image = mlp(image, shiftMlp!, scaleMlp!, gateMlp!);
    context = mlp(context, cShiftMlp!, cScaleMlp!, cGateMlp!);
  }
  const [scale, shift] = chunk(b.gemm(cond, C, 2 * C), 2);
  const out = b.linear(b.modulate(b.layerNorm(image, C), shift!, scale!), C, patch * patch * latentChannels);
  return b.model(b.unpatchify(out, grid, patch, latentChannels), ['batch', latentChannels, side, side]);
}

/**
 * An SDXL UNet level (diffusers UNet2DConditionModel with use_linear_projection and 2 transformer blocks per
 * Transformer2DModel): time embedding plus `add_embedding` (linear → SiLU → linear on the pooled text and the
 * sinusoid of the time ids), conv_in, a resblock, then GroupNorm → tokens → proj_in (a linear) → 2 × (self-
 * attention, cross-attention on the text states, GEGLU feed-forward) → proj_out (a linear) → image → + input,
 * conv_out.
 */
export function sdxlLike(): Model {
  const b = new Builder();
  const { side, latentChannels, textTokens, textWidth, pooledWidth } = FAMILY;
  const [C, heads] = [16, 2];
  const x = b.graph.addInput('sample', { elemType: DataType.FLOAT, shape: ['batch', latentChannels, side, side] });
  const t = b.graph.addInput('timestep', { elemType: DataType.INT64, shape: ['batch'] });
  const text = b.graph.addInput('encoder_hidden_states', { elemType: DataType.FLOAT, shape: ['batch', textTokens, textWidth] });
  const pooled = b.graph.addInput('text_embeds', { elemType: DataType.FLOAT, shape: ['batch', pooledWidth] });
  const timeIds = b.graph.addInput('time_ids', { elemType: DataType.FLOAT, shape: ['batch', 6] });
  const temb = b.gemm(b.silu(b.gemm(b.sinusoid(t, 16), 16, 32)), 32, 32);
  const idArgs = b.op(Op.Mul, [b.op(Op.Unsqueeze, [timeIds, b.ints([2])]), b.random([1, 1, 4])]);
  const idEmb = b.op(Op.Reshape, [b.op(Op.Concat, [b.op(Op.Cos, [idArgs]), b.op(Op.Sin, [idArgs])], { axis: int(-1) }), b.ints([0, -1])]);
  const addEmb = b.gemm(b.silu(b.gemm(b.op(Op.Concat, [pooled, idEmb], { axis: int(-1) }), pooledWidth + 48, 32)), 32, 32);
  const cond = b.silu(b.op(Op.Add, [temb, addEmb]));
  const h = b.conv(x, latentChannels, C, 3);
  const h1 = b.op(Op.Add, [b.conv(b.silu(b.groupNorm(h, C, 4)), C, C, 3), b.op(Op.Unsqueeze, [b.gemm(cond, 32, C), b.ints([2, 3])])]);
  const res = b.op(Op.Add, [h, b.conv(b.silu(b.groupNorm(h1, C, 4)), C, C, 3)]);
  let tokens = b.linear(b.tokens(b.groupNorm(res, C, 4), C), C, C);
  for (let block = 0; block < 2; block++) {
    const selfIn = b.layerNorm(tokens, C);
    tokens = b.op(Op.Add, [tokens, b.linear(b.attention(b.linear(selfIn, C, C, false), b.linear(selfIn, C, C, false), b.linear(selfIn, C, C, false), C, heads), C, C)]);
    const crossIn = b.layerNorm(tokens, C);
    tokens = b.op(Op.Add, [tokens, b.linear(b.attention(b.linear(crossIn, C, C, false), b.linear(text, textWidth, C, false), b.linear(text, textWidth, C, false), C, heads), C, C)]);
    const projected = b.linear(b.layerNorm(tokens, C), C, 8 * C);
    const half = (from: number, to: number) => b.op(Op.Slice, [projected, b.ints([from]), b.ints([to]), b.ints([-1])]);
    const gated = b.op(Op.Mul, [half(0, 4 * C), b.gelu(half(4 * C, 8 * C))]);
    tokens = b.op(Op.Add, [tokens, b.linear(gated, 4 * C, C)]);
  }
  const image = b.op(Op.Reshape, [b.op(Op.Transpose, [b.linear(tokens, C, C)], { perm: ints([0, 2, 1]) }), b.op(Op.Shape, [res])]);
  const out = b.conv(b.silu(b.groupNorm(b.op(Op.Add, [image, res]), C, 4)), C, latentChannels, 3);
  return b.model(out, ['batch', latentChannels, side, side]);
}

/**
 * Flux (diffusers FluxTransformer2DModel), one dual-stream and one single-stream block on packed latent tokens
 * [B, T, C]: x_embedder (a linear on the latent), context_embedder, timestep and guidance embedders, pooled-text
 * embedder; the dual block concatenates context before image and RMS-normalizes q and k (spelled out); the single
 * block runs one attention over the joint sequence, its proj_mlp beside q/k/v and proj_out over Concat(attention,
 * GELU(mlp)); norm_out, proj_out on the image tokens.
 */
export function fluxLike(): Model {
  const b = new Builder();
  const { textTokens, textWidth, pooledWidth } = FAMILY;
  const [tokens, packed, C, heads] = [16, 4, 32, 2];
  const x = b.graph.addInput('hidden_states', { elemType: DataType.FLOAT, shape: ['batch', tokens, packed] });
  const text = b.graph.addInput('encoder_hidden_states', { elemType: DataType.FLOAT, shape: ['batch', textTokens, textWidth] });
  const pooled = b.graph.addInput('pooled_projections', { elemType: DataType.FLOAT, shape: ['batch', pooledWidth] });
  const t = b.graph.addInput('timestep', { elemType: DataType.INT64, shape: ['batch'] });
  const guidance = b.graph.addInput('guidance', { elemType: DataType.INT64, shape: ['batch'] });
  let image = b.linear(x, packed, C);
  let context = b.linear(text, textWidth, C);
  const embed = (v: Value, k: number) => b.gemm(b.silu(b.gemm(v, k, C)), C, C);
  const cond = b.silu(b.op(Op.Add, [b.op(Op.Add, [embed(b.sinusoid(t, 32), 32), embed(b.sinusoid(guidance, 32), 32)]), embed(pooled, pooledWidth)]));
  const chunk = (v: Value, n: number) => b.graph.addNode({ opType: Op.Split, inputs: [v, b.ints(Array(n).fill(C))], outputs: n, attributes: { axis: int(1) } }).outputs;
  const gate = (g: Value, v: Value) => b.op(Op.Mul, [b.op(Op.Unsqueeze, [g, b.ints([1])]), v]);
  const rms = (v: Value) => {
    const meanSquare = b.op(Op.ReduceMean, [b.op(Op.Pow, [v, b.scalar(2)])], { axes: ints([-1]), keepdims: int(1) });
    return b.op(Op.Mul, [b.op(Op.Div, [v, b.op(Op.Sqrt, [b.op(Op.Add, [meanSquare, b.scalar(1e-6)])])]), b.random([C])]);
  };
  const joint = (c: Value, i: Value) => b.op(Op.Concat, [c, i], { axis: int(1) });
  const [shiftMsa, scaleMsa, gateMsa, shiftMlp, scaleMlp, gateMlp] = chunk(b.gemm(cond, C, 6 * C), 6);
  const [cShiftMsa, cScaleMsa, cGateMsa, cShiftMlp, cScaleMlp, cGateMlp] = chunk(b.gemm(cond, C, 6 * C), 6);
  const imageIn = b.modulate(b.layerNorm(image, C), shiftMsa!, scaleMsa!);
  const contextIn = b.modulate(b.layerNorm(context, C), cShiftMsa!, cScaleMsa!);
  const mixed = b.attention(
    joint(rms(b.linear(contextIn, C, C)), rms(b.linear(imageIn, C, C))),
    joint(rms(b.linear(contextIn, C, C)), rms(b.linear(imageIn, C, C))),
    joint(b.linear(contextIn, C, C), b.linear(imageIn, C, C)), C, heads);
  const slice = (v: Value, from: number, to: number) => b.op(Op.Slice, [v, b.ints([from]), b.ints([to]), b.ints([1])]);
  context = b.op(Op.Add, [context, gate(cGateMsa!, b.linear(slice(mixed, 0, textTokens), C, C))]);
  image = b.op(Op.Add, [image, gate(gateMsa!, b.linear(slice(mixed, textTokens, textTokens + tokens), C, C))]);
  const mlp = (stream: Value, shift: Value, scale: Value, g: Value) => b.op(Op.Add, [stream, gate(g, b.linear(b.gelu(b.linear(b.modulate(b.layerNorm(stream, C), shift, scale), C, 4 * C)), 4 * C, C))]);
  image = mlp(image, shiftMlp!, scaleMlp!, gateMlp!);
  context = mlp(context, cShiftMlp!, cScaleMlp!, cGateMlp!);
  let all = joint(context, image);
  const [shift, scale, g] = chunk(b.gemm(cond, C, 3 * C), 3);
  const normed = b.modulate(b.layerNorm(all, C), shift!, scale!);
  const attended = b.attention(b.linear(normed, C, C), b.linear(normed, C, C), b.linear(normed, C, C), C, heads);
  const mlpHidden = b.gelu(b.linear(normed, C, 4 * C));
  all = b.op(Op.Add, [all, gate(g!, b.linear(b.op(Op.Concat, [attended, mlpHidden], { axis: int(2) }), 5 * C, C))]);
  const [outScale, outShift] = chunk(b.gemm(cond, C, 2 * C), 2);
  const out = b.linear(b.modulate(b.layerNorm(slice(all, textTokens, textTokens + tokens), C), outShift!, outScale!), C, packed);
  return b.model(out, ['batch', tokens, packed]);
}

/**
 * The SD VAE decoder (diffusers AutoencoderKL): conv_in on the latent, a mid block (resblock, attention,
 * resblock) whose attention is GroupNorm → tokens → Linear q/k/v → one head → Linear out → back to the image →
 * + x → / rescale factor, then an up block (resblock, nearest Resize + conv) and GroupNorm → SiLU → conv_out to
 * 3 channels at twice the side.
 */
export function vaeDecoderLike(): Model {
  const b = new Builder();
  const { side } = FAMILY;
  const [latent, C] = [4, 16];
  const z = b.graph.addInput('latent_sample', { elemType: DataType.FLOAT, shape: ['batch', latent, side, side] });
  const resblock = (x: Value) => b.op(Op.Add, [x, b.conv(b.silu(b.groupNorm(b.conv(b.silu(b.groupNorm(x, C, 4)), C, C, 3), C, 4)), C, C, 3)]);
  const h = resblock(b.conv(z, latent, C, 3));
  const tokens = b.tokens(b.groupNorm(h, C, 4), C);
  const attended = b.linear(b.attention(b.linear(tokens, C, C), b.linear(tokens, C, C), b.linear(tokens, C, C), C, 1), C, C);
  const image = b.op(Op.Reshape, [b.op(Op.Transpose, [attended], { perm: ints([0, 2, 1]) }), b.op(Op.Shape, [h])]);
  const mid = resblock(b.op(Op.Div, [b.op(Op.Add, [image, h]), b.scalar(1)]));
  const resized = b.op(Op.Resize, [resblock(mid), undefined, b.e.constant('', Tensor.fromFloat32([4], Float32Array.of(1, 1, 2, 2)))], { mode: { kind: 'string', value: 'nearest' } });
  const out = b.conv(b.silu(b.groupNorm(b.conv(resized, C, C, 3), C, 4)), C, 3, 3);
  return b.model(out, ['batch', 3, 2 * side, 2 * side]);
}
