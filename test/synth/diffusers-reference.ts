/**
 * A float64 transcription of diffusers' `PixArtTransformer2DModel.forward` and `SD3Transformer2DModel.forward`
 * (one sample at a time, plain loops), reading a synthetic model's weights by their diffusers names — token-linear
 * weights, which the export names `onnx::MatMul_N`, by the scope of the MatMul that reads them. The synth tests
 * compare ONNX Runtime's output of the graph with it: the graph must compute what the diffusers code computes.
 * Also the reader of the .npy conditioning files the synth writes.
 */
import { decodeNpy } from '../../src/ir/npy.js';
import type { Model } from '../../src/ir/core.js';
import { DataType } from '../../src/ir/dtype.js';
import type { MmditConfig } from '../../src/synth/mmdit.js';
import type { PixartConfig } from '../../src/synth/pixart.js';

/** A row-major matrix. */
interface Mat {
  rows: number;
  cols: number;
  data: Float64Array;
}

function mat(rows: number, cols: number, fill?: (r: number, c: number) => number): Mat {
  const data = new Float64Array(rows * cols);
  if (fill) for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) data[r * cols + c] = fill(r, c);
  return { rows, cols, data };
}

const at = (m: Mat, r: number, c: number) => m.data[r * m.cols + c]!;
/** Elementwise a ∘ b, a one-row operand broadcast over the other's rows. */
const zip = (a: Mat, b: Mat, f: (x: number, y: number) => number) =>
  mat(Math.max(a.rows, b.rows), a.cols, (r, c) => f(at(a, a.rows === 1 ? 0 : r, c), at(b, b.rows === 1 ? 0 : r, c)));
const add = (a: Mat, b: Mat) => zip(a, b, (x, y) => x + y);
const mul = (a: Mat, b: Mat) => zip(a, b, (x, y) => x * y);
const map = (a: Mat, f: (x: number) => number) => mat(a.rows, a.cols, (r, c) => f(at(a, r, c)));
const rowsOf = (a: Mat, from: number, n: number) => mat(n, a.cols, (r, c) => at(a, from + r, c));
const stack = (a: Mat, b: Mat) => mat(a.rows + b.rows, a.cols, (r, c) => (r < a.rows ? at(a, r, c) : at(b, r - a.rows, c)));
const silu = (a: Mat) => map(a, (x) => x / (1 + Math.exp(-x)));
const geluTanh = (a: Mat) => map(a, (x) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3))));
const onePlus = (a: Mat) => map(a, (x) => 1 + x);

/** LayerNorm over each row, no affine, eps 1e-6. */
function layerNorm(a: Mat): Mat {
  const out = mat(a.rows, a.cols);
  for (let r = 0; r < a.rows; r++) {
    let mean = 0;
    for (let c = 0; c < a.cols; c++) mean += at(a, r, c) / a.cols;
    let variance = 0;
    for (let c = 0; c < a.cols; c++) variance += (at(a, r, c) - mean) ** 2 / a.cols;
    for (let c = 0; c < a.cols; c++) out.data[r * a.cols + c] = (at(a, r, c) - mean) / Math.sqrt(variance + 1e-6);
  }
  return out;
}

/** Softmax attention per head over `heads` column groups (scale headDim^-½). */
function attention(q: Mat, k: Mat, v: Mat, heads: number): Mat {
  const d = q.cols / heads;
  const out = mat(q.rows, q.cols);
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < q.rows; i++) {
      const scores = Array.from({ length: k.rows }, (_, j) => {
        let s = 0;
        for (let c = 0; c < d; c++) s += at(q, i, h * d + c) * at(k, j, h * d + c);
        return s / Math.sqrt(d);
      });
      const max = Math.max(...scores);
      const weights = scores.map((s) => Math.exp(s - max));
      const total = weights.reduce((x, y) => x + y, 0);
      for (let c = 0; c < d; c++) out.data[i * q.cols + h * d + c] = weights.reduce((s, w, j) => s + (w / total) * at(v, j, h * d + c), 0);
    }
  }
  return out;
}

/** `get_1d_sincos_pos_embed_from_grid` for one position: [sin(x·ω), cos(x·ω)], ω_k = 1 / 10000^(k / (dim/2)). */
function sinCos1d(dim: number, x: number): number[] {
  const omega = Array.from({ length: dim / 2 }, (_, k) => 1 / 10000 ** (k / (dim / 2)));
  return [...omega.map((w) => Math.sin(x * w)), ...omega.map((w) => Math.cos(x * w))];
}

/** `get_2d_sincos_pos_embed` rows (i, j) of a grid scaled by `scale`: meshgrid "xy" puts the column's embedding first. */
function positions(dim: number, rows: number, columns: number, scale: number, top = 0, left = 0): Mat {
  const out = mat(rows * columns, dim);
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < columns; j++) {
      const row = [...sinCos1d(dim / 2, (left + j) * scale), ...sinCos1d(dim / 2, (top + i) * scale)];
      row.forEach((value, c) => (out.data[(i * columns + j) * dim + c] = value));
    }
  }
  return out;
}

/** `Timesteps(256, flip_sin_to_cos=True, downscale_freq_shift=0)`: [cos, sin]. */
function timestepProjection(t: number): Mat {
  const freqs = Array.from({ length: 128 }, (_, i) => Math.exp((-Math.log(10000) * i) / 128));
  return mat(1, 256, (_, c) => (c < 128 ? Math.cos(t * freqs[c]!) : Math.sin(t * freqs[c - 128]!)));
}

/** The weights of a synthetic model under their diffusers parameter names, linear weights as [out, in]. */
class Weights {
  private readonly byName = new Map<string, Mat>();

  constructor(model: Model) {
    for (const [name, value] of model.graph.initializers) {
      const tensor = value.initializer!;
      if (tensor.dtype !== DataType.FLOAT) continue;
      const f32 = new Float32Array(tensor.bytes().slice().buffer);
      const dims = tensor.dims;
      if (name.startsWith('onnx::MatMul_')) {
        const reader = value.uses[0]!.node.name;
        const [k, n] = [dims[0]!, dims[1]!];
        this.byName.set(`${reader.slice(1, reader.lastIndexOf('/')).replaceAll('/', '.')}.weight`, mat(n, k, (r, c) => f32[c * n + r]!));
      } else {
        const rows = dims.length > 1 ? dims[dims.length === 3 ? 1 : 0]! : 1;
        this.byName.set(name, { rows, cols: f32.length / rows, data: Float64Array.from(f32) });
      }
    }
  }

  get(name: string): Mat {
    const m = this.byName.get(name);
    if (!m) throw new Error(`reference: no weight ${name}`);
    return m;
  }

  /** nn.Linear: x Wᵀ + b. */
  linear(x: Mat, name: string): Mat {
    const w = this.get(`${name}.weight`);
    const b = this.get(`${name}.bias`);
    return mat(x.rows, w.rows, (r, o) => {
      let s = b.data[o]!;
      for (let k = 0; k < x.cols; k++) s += at(x, r, k) * w.data[o * w.cols + k]!;
      return s;
    });
  }

  timestepEmbedding(t: number, name: string): Mat {
    return this.linear(silu(this.linear(timestepProjection(t), `${name}.linear_1`)), `${name}.linear_2`);
  }

  feedForward(x: Mat, name: string): Mat {
    return this.linear(geluTanh(this.linear(x, `${name}.net.0.proj`)), `${name}.net.2`);
  }

  /** PatchEmbed's Conv(k = s = p) as a linear map of each patch's (channel, row, column) values. */
  patches(image: Float32Array, channels: number, height: number, width: number, patch: number): Mat {
    const [h, w] = [height / patch, width / patch];
    const patchesIn = mat(h * w, channels * patch * patch, (r, c) => {
      const [i, j] = [Math.floor(r / w), r % w];
      const [ch, pi, pj] = [Math.floor(c / (patch * patch)), Math.floor((c % (patch * patch)) / patch), c % patch];
      return image[(ch * height + i * patch + pi) * width + j * patch + pj]!;
    });
    return this.linear(patchesIn, 'pos_embed.proj');
  }
}

/** einsum nhwpqc → nchpwq: [h·w, p·p·c] tokens back to a [c, h·p, w·p] image. */
function unpatchify(tokens: Mat, h: number, w: number, patch: number, channels: number): Float64Array {
  const out = new Float64Array(channels * h * patch * w * patch);
  for (let i = 0; i < h; i++) for (let j = 0; j < w; j++) for (let pi = 0; pi < patch; pi++) for (let pj = 0; pj < patch; pj++) {
    for (let c = 0; c < channels; c++) out[(c * h * patch + i * patch + pi) * w * patch + j * patch + pj] = at(tokens, i * w + j, (pi * patch + pj) * channels + c);
  }
  return out;
}

/** Chunk a [1, n·D] vector (or an [n, D] table) into n rows of D. */
function chunks(m: Mat, n: number): Mat[] {
  const D = (m.rows * m.cols) / n;
  return Array.from({ length: n }, (_, i) => mat(1, D, (_, c) => m.data[i * D + c]!));
}

/** One sample of `PixArtTransformer2DModel.forward`: image [C, H, W], caption [L, captionChannels] → [2C, H, W]. */
export function pixartReference(model: Model, config: PixartConfig, image: Float32Array, timestep: number, caption: Float32Array): Float64Array {
  const W = new Weights(model);
  const D = config.heads * config.headDim;
  const side = config.sampleSize;
  const grid = side / config.patch;
  let hidden = add(W.patches(image, config.inChannels, side, side, config.patch), positions(D, grid, grid, 1 / Math.max(Math.floor(side / 64), 1)));
  const embedded = W.timestepEmbedding(timestep, 'adaln_single.emb.timestep_embedder');
  const modulation = W.linear(silu(embedded), 'adaln_single.linear');
  const text = { rows: caption.length / config.captionChannels, cols: config.captionChannels, data: Float64Array.from(caption) };
  const projected = W.linear(geluTanh(W.linear(text, 'caption_projection.linear_1')), 'caption_projection.linear_2');
  const attn = (query: Mat, context: Mat, name: string) =>
    W.linear(attention(W.linear(query, `${name}.to_q`), W.linear(context, `${name}.to_k`), W.linear(context, `${name}.to_v`), config.heads), `${name}.to_out.0`);
  for (let b = 0; b < config.depth; b++) {
    const n = `transformer_blocks.${b}`;
    const table = chunks(W.get(`${n}.scale_shift_table`), 6);
    const [shiftMsa, scaleMsa, gateMsa, shiftMlp, scaleMlp, gateMlp] = chunks(modulation, 6).map((m, i) => add(m, table[i]!));
    const normed = add(mul(layerNorm(hidden), onePlus(scaleMsa!)), shiftMsa!);
    hidden = add(mul(gateMsa!, attn(normed, normed, `${n}.attn1`)), hidden);
    hidden = add(attn(hidden, projected, `${n}.attn2`), hidden);
    const ffIn = add(mul(layerNorm(hidden), onePlus(scaleMlp!)), shiftMlp!);
    hidden = add(mul(gateMlp!, W.feedForward(ffIn, `${n}.ff`)), hidden);
  }
  const [shift, scale] = chunks(W.get('scale_shift_table'), 2).map((m) => add(m, embedded));
  const out = W.linear(add(mul(layerNorm(hidden), onePlus(scale!)), shift!), 'proj_out');
  return unpatchify(out, grid, grid, config.patch, 2 * config.inChannels);
}

/** One sample of `SD3Transformer2DModel.forward`: image [C, H, W], text [L, jointDim], pooled [pooledDim] → [C, H, W]. */
export function mmditReference(model: Model, config: MmditConfig, image: Float32Array, height: number, width: number, timestep: number, text: Float32Array, pooled: Float32Array): Float64Array {
  const W = new Weights(model);
  const D = config.heads * config.headDim;
  const [h, w] = [height / config.patch, width / config.patch];
  const max = config.posEmbedMaxSize;
  const scale = config.sampleSize / config.patch / max;
  let hidden = add(W.patches(image, config.channels, height, width, config.patch), positions(D, h, w, scale, Math.floor((max - h) / 2), Math.floor((max - w) / 2)));
  const pooledRow = { rows: 1, cols: pooled.length, data: Float64Array.from(pooled) };
  const temb = add(W.timestepEmbedding(timestep, 'time_text_embed.timestep_embedder'), W.linear(silu(W.linear(pooledRow, 'time_text_embed.text_embedder.linear_1')), 'time_text_embed.text_embedder.linear_2'));
  let context = W.linear({ rows: text.length / config.jointAttentionDim, cols: config.jointAttentionDim, data: Float64Array.from(text) }, 'context_embedder');
  const modulate = (x: Mat, shift: Mat, s: Mat) => add(mul(layerNorm(x), onePlus(s)), shift);
  for (let b = 0; b < config.depth; b++) {
    const n = `transformer_blocks.${b}`;
    const last = b === config.depth - 1;
    const [shiftMsa, scaleMsa, gateMsa, shiftMlp, scaleMlp, gateMlp] = chunks(W.linear(silu(temb), `${n}.norm1.linear`), 6);
    const c = chunks(W.linear(silu(temb), `${n}.norm1_context.linear`), last ? 2 : 6);
    const normHidden = modulate(hidden, shiftMsa!, scaleMsa!);
    const normContext = last ? modulate(context, c[1]!, c[0]!) : modulate(context, c[0]!, c[1]!);
    const proj = (name: string, x: Mat) => W.linear(x, `${n}.attn.${name}`);
    const joint = attention(
      stack(proj('to_q', normHidden), proj('add_q_proj', normContext)),
      stack(proj('to_k', normHidden), proj('add_k_proj', normContext)),
      stack(proj('to_v', normHidden), proj('add_v_proj', normContext)),
      config.heads,
    );
    hidden = add(hidden, mul(gateMsa!, proj('to_out.0', rowsOf(joint, 0, hidden.rows))));
    hidden = add(hidden, mul(gateMlp!, W.feedForward(modulate(hidden, shiftMlp!, scaleMlp!), `${n}.ff`)));
    if (!last) {
      context = add(context, mul(c[2]!, proj('to_add_out', rowsOf(joint, hidden.rows, context.rows))));
      context = add(context, mul(c[5]!, W.feedForward(modulate(context, c[3]!, c[4]!), `${n}.ff_context`)));
    }
  }
  const [s, shift] = chunks(W.linear(silu(temb), 'norm_out.linear'), 2);
  const out = W.linear(modulate(hidden, shift!, s!), 'proj_out');
  return unpatchify(out, h, w, config.patch, config.channels);
}

/** A float32 .npy file's shape and values (qcompile's own reader). */
export function readNpyFloat32(bytes: Uint8Array): { shape: number[]; values: Float32Array } {
  const array = decodeNpy(bytes, 'conditioning.npy');
  if (array.dtype !== 'float32') throw new Error(`expected float32, got ${array.dtype}`);
  return { shape: array.shape, values: array.data };
}
