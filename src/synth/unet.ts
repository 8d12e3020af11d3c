/**
 * A small synthetic UNet with the op patterns of exported diffusion UNets: GroupNorm spelled as
 * Reshape → InstanceNormalization → Reshape → Mul → Add, SiLU as x·Sigmoid(x), resblocks with a per-block
 * time projection and 1×1 skip convs, stride-2 Conv down, Resize + Conv up, skip Concats, and one transformer
 * block (separate q/k/v, Erf GELU MLP) in the middle. For layer-discovery tests: it runs in ORT but is not
 * a published architecture (sd-unet.ts builds diffusers' SD UNet, `qcompile synth unet`).
 */
import { Graph, Model, type Attribute, type Value } from '../ir/core.js';
import { DataType } from '../ir/dtype.js';
import { Op, type OpType } from '../ir/ops.js';
import { Tensor } from '../ir/tensor.js';
import { Emitter } from './emitter.js';
import { normalTensor } from './random.js';

/** Sizes of the synthetic UNet. */
export interface UnetConfig {
  inChannels: number;
  /** Channels of level 0 and level 1. */
  channels: [number, number];
  imageSize: number;
  groups: number;
  timeDim: number;
}

/** The default: 4-channel 16×16 latents, 32/64 channels. */
export const TINY_UNET: UnetConfig = { inChannels: 4, channels: [32, 64], imageSize: 16, groups: 8, timeDim: 64 };

/** Builds the UNet graph (opset 17) with seeded lazy weights. */
export function buildUnet(config: UnetConfig = TINY_UNET, seed = 0): Model {
  const graph = new Graph('unet');
  let stream = 0;
  const weight = (name: string, dims: number[]) => graph.addInitializer(name, normalTensor(dims, seed, stream++, 0.05));
  const constant = (name: string, tensor: Tensor) => graph.addInitializer(name, tensor);
  // Nodes are appended in program order (as an exporter lists them), so layer indices follow the forward pass.
  const emitter = new Emitter(graph);
  const op = (opType: OpType, inputs: (Value | undefined)[], attributes: Record<string, Attribute> = {}, output?: string) => emitter.op('', opType, inputs, attributes, output);
  const f32 = (dims: number[], value: number) => Tensor.fromFloat32(dims, new Float32Array(dims.reduce((a, b) => a * b, 1)).fill(value));
  const [c0, c1] = config.channels;
  const side = config.imageSize;

  const x = graph.addInput('sample', { elemType: DataType.FLOAT, shape: ['batch', config.inChannels, side, side] });
  const t = graph.addInput('timestep', { elemType: DataType.INT64, shape: ['batch'] });

  const silu = (v: Value) => op(Op.Mul, [v, op(Op.Sigmoid, [v])]);
  const conv = (name: string, input: Value, cin: number, cout: number, kernel: number, stride = 1, output?: string) =>
    op(Op.Conv, [input, weight(`${name}.weight`, [cout, cin, kernel, kernel]), weight(`${name}.bias`, [cout])], {
      kernel_shape: { kind: 'ints', value: [kernel, kernel] },
      pads: { kind: 'ints', value: Array(4).fill((kernel - 1) >> 1) },
      strides: { kind: 'ints', value: [stride, stride] },
    }, output);
  const gemm = (name: string, input: Value, cin: number, cout: number) =>
    op(Op.Gemm, [input, weight(`${name}.weight`, [cout, cin]), weight(`${name}.bias`, [cout])], { transB: { kind: 'int', value: 1 } });
  let groupNorms = 0;
  /** GroupNorm as torch exports it before opset 18. */
  const groupNorm = (input: Value, channels: number) => {
    const id = groupNorms++;
    const grouped = op(Op.Reshape, [input, constant(`gn${id}.groups`, Tensor.fromInt64([3], [0, config.groups, -1]))]);
    const normed = op(Op.InstanceNormalization, [grouped, constant(`gn${id}.ones`, f32([config.groups], 1)), constant(`gn${id}.zeros`, f32([config.groups], 0))], { epsilon: { kind: 'float', value: 1e-5 } });
    const back = op(Op.Reshape, [normed, op(Op.Shape, [input])]);
    return op(Op.Add, [op(Op.Mul, [back, constant(`gn${id}.gamma`, f32([channels, 1, 1], 1))]), constant(`gn${id}.beta`, f32([channels, 1, 1], 0))]);
  };

  // Time embedding: sinusoid → Linear → SiLU → Linear; every resblock projects SiLU(temb).
  const half = config.timeDim / 2;
  const freqs = Float32Array.from({ length: half }, (_, i) => Math.exp((-Math.log(10000) * i) / half));
  const args = op(Op.Mul, [op(Op.Unsqueeze, [op(Op.Cast, [t], { to: { kind: 'int', value: DataType.FLOAT } }), constant('time.axes', Tensor.fromInt64([1], [1]))]), constant('time.freqs', Tensor.fromFloat32([1, half], freqs))]);
  const sinusoid = op(Op.Concat, [op(Op.Sin, [args]), op(Op.Cos, [args])], { axis: { kind: 'int', value: -1 } });
  const temb = gemm('time_embedding.linear_2', silu(gemm('time_embedding.linear_1', sinusoid, config.timeDim, 4 * c0)), 4 * c0, 4 * c0);
  const tembSilu = silu(temb);
  const spatialAxes = constant('time.spatial_axes', Tensor.fromInt64([2], [2, 3]));

  let resblocks = 0;
  const resblock = (input: Value, cin: number, cout: number) => {
    const name = `resnets.${resblocks++}`;
    const h = conv(`${name}.conv1`, silu(groupNorm(input, cin)), cin, cout, 3);
    const withTime = op(Op.Add, [h, op(Op.Unsqueeze, [gemm(`${name}.time_emb_proj`, tembSilu, 4 * c0, cout), spatialAxes])]);
    const h2 = conv(`${name}.conv2`, silu(groupNorm(withTime, cout)), cout, cout, 3);
    const skip = cin === cout ? input : conv(`${name}.conv_shortcut`, input, cin, cout, 1);
    return op(Op.Add, [skip, h2]);
  };

  /** Self-attention + GELU(erf) MLP over the H·W tokens, as a transformer block inside the UNet. */
  const transformer = (input: Value, channels: number) => {
    const tokensShape = constant('attn.tokens_shape', Tensor.fromInt64([3], [0, channels, -1]));
    const tokens = op(Op.Transpose, [op(Op.Reshape, [groupNorm(input, channels), tokensShape])], { perm: { kind: 'ints', value: [0, 2, 1] } });
    const ones = constant('attn.ln_ones', f32([channels], 1));
    const zeros = constant('attn.ln_zeros', f32([channels], 0));
    const ln = (v: Value) => op(Op.LayerNormalization, [v, ones, zeros], { axis: { kind: 'int', value: -1 }, epsilon: { kind: 'float', value: 1e-5 } });
    const linear = (name: string, v: Value, cin: number, cout: number, bias = true) => {
      const mm = op(Op.MatMul, [v, weight(`${name}.weight`, [cin, cout])]);
      return bias ? op(Op.Add, [mm, weight(`${name}.bias`, [cout])]) : mm;
    };
    const normed = ln(tokens);
    const q = linear('attn1.to_q', normed, channels, channels, false);
    const k = linear('attn1.to_k', normed, channels, channels, false);
    const v = linear('attn1.to_v', normed, channels, channels, false);
    const scores = op(Op.Mul, [op(Op.MatMul, [q, op(Op.Transpose, [k], { perm: { kind: 'ints', value: [0, 2, 1] } })]), constant('attn.scale', f32([], channels ** -0.5))]);
    const attended = op(Op.MatMul, [op(Op.Softmax, [scores], { axis: { kind: 'int', value: -1 } }), v]);
    const afterAttn = op(Op.Add, [tokens, linear('attn1.to_out.0', attended, channels, channels)]);
    const fc1 = linear('ff.net.0.proj', ln(afterAttn), channels, 4 * channels);
    const erf = op(Op.Erf, [op(Op.Div, [fc1, constant('gelu.sqrt2', f32([], Math.SQRT2))])]);
    const gelu = op(Op.Mul, [op(Op.Mul, [fc1, op(Op.Add, [erf, constant('gelu.one', f32([], 1))])]), constant('gelu.half', f32([], 0.5))]);
    const out = op(Op.Add, [afterAttn, linear('ff.net.2', gelu, 4 * channels, channels)]);
    const image = op(Op.Reshape, [op(Op.Transpose, [out], { perm: { kind: 'ints', value: [0, 2, 1] } }), op(Op.Shape, [input])]);
    return op(Op.Add, [input, image]);
  };

  const h0 = conv('conv_in', x, config.inChannels, c0, 3);
  const d0 = resblock(h0, c0, c0);
  const down = conv('downsamplers.0.conv', d0, c0, c0, 3, 2);
  const d1 = resblock(down, c0, c1);
  const mid = resblock(transformer(resblock(d1, c1, c1), c1), c1, c1);
  const u1 = resblock(op(Op.Concat, [mid, d1], { axis: { kind: 'int', value: 1 } }), 2 * c1, c1);
  const resized = op(Op.Resize, [u1, undefined, constant('upsamplers.0.scales', Tensor.fromFloat32([4], Float32Array.of(1, 1, 2, 2)))], { mode: { kind: 'string', value: 'nearest' } });
  const up = conv('upsamplers.0.conv', resized, c1, c1, 3);
  const u0 = resblock(op(Op.Concat, [up, d0], { axis: { kind: 'int', value: 1 } }), c1 + c0, c0);
  const output = conv('conv_out', silu(groupNorm(u0, c0)), c0, config.inChannels, 3, 1, 'noise_pred');
  output.type = { elemType: DataType.FLOAT, shape: ['batch', config.inChannels, side, side] };
  graph.outputs.push(output);

  const model = new Model(graph);
  model.irVersion = 8;
  model.producerName = 'qcompile-synth';
  model.opsetImports.set('', 17);
  return model;
}
