/**
 * What the synthetic diffusers transformers (PixArt-α `pixart.ts`, SD3 MMDiT `mmdit.ts`) share: the op patterns
 * a torch 2 ONNX export of diffusers' building blocks gives (nn.Linear on tokens as MatMul + Add with
 * `onnx::MatMul_N` weights, on [B, C] vectors as Gemm, PatchEmbed, the `Timesteps` sinusoid + TimestepEmbedding,
 * affine-free LayerNorm and its modulation, scaled_dot_product_attention as opset 14+ lowers it, GELU-tanh
 * FeedForward, unpatchify) and the fixed 2-D sin-cos position table. Both are written by `pipeline-folder.ts`.
 */
import { Graph, Model, type Value } from '../ir/core.js';
import { DataType } from '../ir/dtype.js';
import { Op } from '../ir/ops.js';
import { Tensor } from '../ir/tensor.js';
import { Emitter, exportedModel, float, i64s, int, ints } from './emitter.js';
import { normalTensor } from './random.js';

/** Standard deviation of every random weight; biases use half of it (as the synthetic DiT). */
export const WEIGHT_STD = 0.02;

/** Options of the transformer builders. */
export interface TransformerOptions {
  seed?: number;
  /** Called with the byte count of each weight as it is generated (progress). */
  onWeight?: (bytes: number) => void;
}

/** A graph under construction with seeded lazy weights and the layer patterns of a torch 2 diffusers export. */
export class TransformerGraph {
  readonly graph = new Graph('main_graph');
  readonly e = new Emitter(this.graph);
  readonly seed: number;
  private stream = 0;
  private matmulId = 1000;
  private lnScale: Value | undefined;
  private lnBias: Value | undefined;

  constructor(private readonly options: TransformerOptions) {
    this.seed = options.seed ?? 0;
  }

  /** A named N(0, std) initializer, generated when saved. */
  param(name: string, dims: number[], std: number): Value {
    return this.graph.addInitializer(name, normalTensor(dims, this.seed, this.stream++, std, 0, this.options.onWeight));
  }

  /** nn.Linear on [B, N, K] tokens: MatMul with a transposed `onnx::MatMul_N` weight, then Add of the named bias. */
  linear(scope: string, input: Value, inDim: number, outDim: number, name: string): Value {
    const mm = this.e.op(scope, Op.MatMul, [input, this.param(`onnx::MatMul_${this.matmulId++}`, [inDim, outDim], WEIGHT_STD)]);
    return this.e.op(scope, Op.Add, [this.param(`${name}.bias`, [outDim], WEIGHT_STD / 2), mm]);
  }

  /** nn.Linear on a [B, K] vector: Gemm(x, W[N, K], b) with transB and the parameter names. */
  gemm(scope: string, input: Value, inDim: number, outDim: number, name: string): Value {
    return this.e.op(scope, Op.Gemm, [input, this.param(`${name}.weight`, [outDim, inDim], WEIGHT_STD), this.param(`${name}.bias`, [outDim], WEIGHT_STD / 2)], {
      alpha: float(1), beta: float(1), transB: int(1),
    });
  }

  /** `value`'s size along `axis` at run time (Shape, Gather): an int64 scalar. */
  dim(scope: string, value: Value, axis: number): Value {
    return this.e.op(scope, Op.Gather, [this.e.op(scope, Op.Shape, [value]), this.e.constant(scope, Tensor.fromInt64([], [axis]))], { axis: int(0) });
  }

  /** Concat of int64 scalars (unsqueezed) and constants into a shape. */
  shape(scope: string, parts: (Value | number)[]): Value {
    const pieces = parts.map((p) => (typeof p === 'number' ? this.e.constant(scope, i64s([p])) : this.e.unsqueeze0(p)));
    return this.e.op(scope, Op.Concat, pieces, { axis: int(0) });
  }

  /** Unsqueeze(axis 1) of a [B, C] chunk so it broadcasts over tokens. */
  overTokens(scope: string, chunk: Value): Value {
    return this.e.op(scope, Op.Unsqueeze, [chunk, this.e.constant(scope, i64s([1]))]);
  }

  /** Affine-free LayerNorm (eps 1e-6); the exporter's ones/zeros, named after the first norm, are shared by all. */
  layerNorm(scope: string, input: Value, dim: number): Value {
    const firstName = scope.slice(1).replaceAll('/', '.');
    this.lnScale ??= this.graph.addInitializer(`${firstName}.weight`, Tensor.fromFloat32([dim], new Float32Array(dim).fill(1)));
    this.lnBias ??= this.graph.addInitializer(`${firstName}.bias`, Tensor.fromFloat32([dim], new Float32Array(dim)));
    return this.e.op(scope, Op.LayerNormalization, [input, this.lnScale, this.lnBias], { axis: int(-1), epsilon: float(1e-6) });
  }

  /** normed · (1 + scale) + shift, with shift/scale already broadcastable over tokens. */
  modulate(scope: string, normed: Value, shift: Value, scale: Value): Value {
    const onePlus = this.e.op(scope, Op.Add, [scale, this.e.constant(scope, Tensor.fromFloat32([], Float32Array.of(1)))]);
    return this.e.op(scope, Op.Add, [this.e.op(scope, Op.Mul, [normed, onePlus]), shift]);
  }

  /** PatchEmbed's projection: Conv(k = s = patch), flatten(2).transpose(1, 2) → [B, N, C]. */
  patchTokens(scope: string, x: Value, inChannels: number, dim: number, patch: number): Value {
    const patched = this.e.op(`${scope}/proj`, Op.Conv, [x, this.param('pos_embed.proj.weight', [dim, inChannels, patch, patch], WEIGHT_STD), this.param('pos_embed.proj.bias', [dim], WEIGHT_STD / 2)], {
      dilations: ints([1, 1]), group: int(1), kernel_shape: ints([patch, patch]), pads: ints([0, 0, 0, 0]), strides: ints([patch, patch]),
    });
    const sliced = this.e.op(scope, Op.Slice, [this.e.op(scope, Op.Shape, [patched]), this.e.constant(scope, i64s([0])), this.e.constant(scope, i64s([2])), this.e.constant(scope, i64s([0]))]);
    const flatShape = this.e.op(scope, Op.Concat, [sliced, this.e.constant(scope, i64s([-1]))], { axis: int(0) });
    return this.e.op(scope, Op.Transpose, [this.e.op(scope, Op.Reshape, [patched, flatShape], { allowzero: int(0) })], { perm: ints([0, 2, 1]) });
  }

  /**
   * `Timesteps(256, flip_sin_to_cos=True, downscale_freq_shift=0)` then TimestepEmbedding (linear_1, SiLU,
   * linear_2) on a float [B] timestep: [B, dim].
   */
  timestepEmbedding(scope: string, t: Value, dim: number, name: string): Value {
    const half = 128;
    const freqs = Float32Array.from({ length: half }, (_, i) => Math.exp((-Math.log(10000) * i) / half));
    const unsq = this.e.op(`${scope}/time_proj`, Op.Unsqueeze, [t, this.e.constant(`${scope}/time_proj`, i64s([1]))]);
    const args = this.e.op(`${scope}/time_proj`, Op.Mul, [unsq, this.e.constant(`${scope}/time_proj`, Tensor.fromFloat32([1, half], freqs))]);
    const sinusoid = this.e.op(`${scope}/time_proj`, Op.Concat, [this.e.op(`${scope}/time_proj`, Op.Cos, [args]), this.e.op(`${scope}/time_proj`, Op.Sin, [args])], { axis: int(-1) });
    const s = `${scope}/timestep_embedder`;
    const l1 = this.gemm(`${s}/linear_1`, sinusoid, 2 * half, dim, `${name}.linear_1`);
    return this.gemm(`${s}/linear_2`, this.e.silu(`${s}/act`, l1), dim, dim, `${name}.linear_2`);
  }

  /** [B, N, C] → [B, heads, N, headDim]. */
  splitHeads(scope: string, x: Value, batch: Value, heads: number, headDim: number): Value {
    const reshaped = this.e.op(scope, Op.Reshape, [x, this.shape(scope, [batch, -1, heads, headDim])], { allowzero: int(0) });
    return this.e.op(scope, Op.Transpose, [reshaped], { perm: ints([0, 2, 1, 3]) });
  }

  /**
   * scaled_dot_product_attention as torch lowers it (q and kᵀ each scaled by headDim^-¼), then the heads merged
   * back: [B, heads, N, d] ×3 → [B, N, heads·d].
   */
  attention(scope: string, q: Value, k: Value, v: Value, batch: Value, heads: number, headDim: number): Value {
    const root = this.e.constant(scope, Tensor.fromFloat32([], Float32Array.of(headDim ** -0.25)));
    const kT = this.e.op(scope, Op.Transpose, [k], { perm: ints([0, 1, 3, 2]) });
    const scores = this.e.op(scope, Op.MatMul, [this.e.op(scope, Op.Mul, [q, root]), this.e.op(scope, Op.Mul, [kT, root])]);
    const attended = this.e.op(scope, Op.MatMul, [this.e.op(scope, Op.Softmax, [scores], { axis: int(-1) }), v]);
    const merged = this.e.op(scope, Op.Transpose, [attended], { perm: ints([0, 2, 1, 3]) });
    return this.e.op(scope, Op.Reshape, [merged, this.shape(scope, [batch, -1, heads * headDim])], { allowzero: int(0) });
  }

  /** FeedForward(activation_fn="gelu-approximate"): net.0.proj C→4C, GELU-tanh, net.2 4C→C. */
  feedForward(scope: string, x: Value, dim: number, name: string): Value {
    const inner = 4 * dim;
    const fc1 = this.linear(`${scope}/net.0/proj`, x, dim, inner, `${name}.net.0.proj`);
    return this.linear(`${scope}/net.2`, this.e.geluTanh(`${scope}/net.0`, fc1), inner, dim, `${name}.net.2`);
  }

  /** [B, h·w, p·p·C] → [B, h, w, p, p, C] → einsum nhwpqc→nchpwq → [B, C, h·p, w·p]; h, w scalars or numbers. */
  unpatchify(x: Value, batch: Value, h: Value | number, w: Value | number, patch: number, channels: number, outputName: string): Value {
    const six = this.e.op('', Op.Reshape, [x, this.shape('', [batch, h, w, patch, patch, channels])], { allowzero: int(0) });
    const permuted = this.e.op('', Op.Transpose, [six], { perm: ints([0, 5, 1, 3, 2, 4]) });
    const scaled = (side: Value | number) => (typeof side === 'number' ? side * patch : this.e.op('', Op.Mul, [side, this.e.constant('', Tensor.fromInt64([], [patch]))]));
    return this.e.op('', Op.Reshape, [permuted, this.shape('', [batch, channels, scaled(h), scaled(w)])], { allowzero: int(0) }, outputName);
  }

  /** The finished model: opset 17, producer pytorch 2.x. */
  model(docString: string): Model {
    return exportedModel(this.graph, '2.1.0', docString);
  }
}

/**
 * diffusers' `get_2d_sincos_pos_embed` as a [1, grid², dim] table: token (i, j) gets [emb1d(j·s), emb1d(i·s)]
 * with s = base / grid / interpolation and emb1d(x) = [sin(x·ω), cos(x·ω)], ω_k = 10000^(-k/(dim/4)).
 */
export function sinCosPositionTable(dim: number, grid: number, positionScale: number): Tensor {
  return Tensor.lazy(DataType.FLOAT, [1, grid * grid, dim], () => {
    const quarter = dim / 4;
    const out = new Float32Array(grid * grid * dim);
    const emb1d = (position: number, target: number) => {
      for (let k = 0; k < quarter; k++) {
        const angle = position / 10000 ** (k / quarter);
        out[target + k] = Math.sin(angle);
        out[target + quarter + k] = Math.cos(angle);
      }
    };
    for (let i = 0; i < grid; i++) {
      for (let j = 0; j < grid; j++) {
        const base = (i * grid + j) * dim;
        emb1d(j * positionScale, base);
        emb1d(i * positionScale, base + dim / 2);
      }
    }
    return new Uint8Array(out.buffer);
  });
}

