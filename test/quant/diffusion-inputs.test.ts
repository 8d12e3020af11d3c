import { describe, expect, it } from 'vitest';
import type { Model } from '../../src/ir/core.js';
import { parseModelText } from '../../src/ir/parser.js';
import { findDiffusionInputs, findTimestepInput } from '../../src/quant/diffusion-inputs.js';

/** Parses IR text (naming its nodes n0, n1, …), failing the test on a diagnostic. */
function model(text: string): Model {
  let n = 0;
  const parsed = parseModelText(text.replace(/^(\s*%.* = \w+\(.*)$/gm, (line) => `${line} @"n${n++}"`));
  if (!parsed.model) throw new Error(JSON.stringify(parsed));
  return parsed.model;
}

/** The classification as plain names: what each input was found to be, and how. */
function classify(m: Model) {
  const r = findDiffusionInputs(m);
  return {
    latent: r.latent && `${r.latent.value.name} (${r.latent.by})`,
    timestep: r.timestep && `${r.timestep.value.name} (${r.timestep.by})${r.timestep.innerScale ? ` x${r.timestep.innerScale}` : ''}`,
    conditioning: Object.fromEntries(r.conditioning.map((c) => [c.value.name, `${c.kind} (${c.by})`])),
    output: r.output?.name,
    rotary: r.rotaryPositions.map((v) => v.name),
    unexplained: r.unexplained.map((v) => v.name),
  };
}

/** Sinusoidal features of `src` (Unsqueeze, Mul by frequencies, Cos/Sin, Concat) into a Gemm: the time embedding. */
const sinusoid = (src: string, name: string) => `
  %${name}_u = Unsqueeze(%${src}, %axis1)
  %${name}_a = Mul(%${name}_u, %freqs)
  %${name}_cos = Cos(%${name}_a)
  %${name}_sin = Sin(%${name}_a)
  %${name}_f = Concat(%${name}_cos, %${name}_sin) {axis=-1}
  %${name}_emb = Gemm(%${name}_f, %w_time, %b16) {transB=1}`;

const COMMON_INITS = `
  init %axis1 = i64[1] [1]
  init %freqs = f32[1x4] [1, 0.1, 0.01, 0.001]
  init %w_time = f32[16x8]
  init %b16 = f32[16]`;

// SD3-shaped MMDiT: a [B,C,H,W] latent through a patch conv, float timestep, context embedder on the
// T5/CLIP states, pooled projections into the time embedding, and an attention mask on the scores.
const SD3 = `model ir_version=8 opsets={ai.onnx:17}
graph "sd3-like" {
  input %hidden_states: f32[batch,4,8,8]
  input %encoder_hidden_states: f32[batch,6,16]
  input %pooled_projections: f32[batch,12]
  input %timestep: f32[batch]
  input %encoder_attention_mask: i64[batch,6]
  ${COMMON_INITS}
  init %w_patch = f32[16x4x2x2]
  init %w_ctx = f32[16x16]
  init %w_pool = f32[16x12]
  init %w_q = f32[16x16]
  init %w_unpatch = f32[16x16]
  init %minus = f32[] [-10000]
  init %shape_out = i64[4] [-1, 4, 8, 8]
  init %shape_tok = i64[3] [-1, 16, 16]
  ${sinusoid('timestep', 't')}
  %pooled = Gemm(%pooled_projections, %w_pool, %b16) {transB=1}
  %temb = Add(%t_emb, %pooled)
  %patches = Conv(%hidden_states, %w_patch) {strides=[2, 2]}
  %tokens = Reshape(%patches, %shape_tok)
  %ctx = MatMul(%encoder_hidden_states, %w_ctx)
  %q = MatMul(%tokens, %w_q)
  %ctxT = Transpose(%ctx) {perm=[0, 2, 1]}
  %scores = MatMul(%q, %ctxT)
  %maskf = Cast(%encoder_attention_mask) {to=1}
  %bias = Mul(%maskf, %minus)
  %bias_u = Unsqueeze(%bias, %axis1)
  %masked = Add(%scores, %bias_u)
  %probs = Softmax(%masked) {axis=-1}
  %att = MatMul(%probs, %ctx)
  %h = Add(%att, %temb)
  %proj = MatMul(%h, %w_unpatch)
  %out = Reshape(%proj, %shape_out)
  output %out: f32[batch,4,8,8]
}`;

// SDXL-shaped UNet conditioning: time ids [B,6] through their own sinusoid, concatenated with the pooled
// text_embeds into add_embedding's linear; int64 timestep.
const SDXL = `model ir_version=8 opsets={ai.onnx:17}
graph "sdxl-like" {
  input %sample: f32[batch,4,8,8]
  input %timestep: i64[batch]
  input %encoder_hidden_states: f32[batch,6,16]
  input %text_embeds: f32[batch,12]
  input %time_ids: f32[batch,6]
  ${COMMON_INITS}
  init %flat = i64[1] [-1]
  init %per_sample = i64[2] [-1, 48]
  init %w_in = f32[16x4x3x3]
  init %w_k = f32[16x16]
  init %w_add = f32[16x60]
  init %w_out = f32[4x16x3x3]
  %tf = Cast(%timestep) {to=1}
  ${sinusoid('tf', 't')}
  %ids = Reshape(%time_ids, %flat)
  %ids_u = Unsqueeze(%ids, %axis1)
  %ids_a = Mul(%ids_u, %freqs)
  %ids_cos = Cos(%ids_a)
  %ids_sin = Sin(%ids_a)
  %ids_f = Concat(%ids_cos, %ids_sin) {axis=-1}
  %ids_b = Reshape(%ids_f, %per_sample)
  %add_in = Concat(%text_embeds, %ids_b) {axis=-1}
  %aug = Gemm(%add_in, %w_add, %b16) {transB=1}
  %temb = Add(%t_emb, %aug)
  %h0 = Conv(%sample, %w_in) {pads=[1, 1, 1, 1]}
  %k = MatMul(%encoder_hidden_states, %w_k)
  %out = Conv(%h0, %w_out) {pads=[1, 1, 1, 1]}
  output %out: f32[batch,4,8,8]
  output %k: ?
  output %temb: ?
}`;

// Flux-shaped: packed [B,L,C] token latents, σ-timestep and guidance each scaled by 1000 into a sinusoid,
// and rotary position ids (Cos/Sin multiplied into q, never into a linear).
const FLUX = `model ir_version=8 opsets={ai.onnx:17}
graph "flux-like" {
  input %hidden_states: f32[batch,16,64]
  input %encoder_hidden_states: f32[batch,6,32]
  input %pooled_projections: f32[batch,12]
  input %timestep: f32[batch]
  input %img_ids: f32[16,3]
  input %guidance: f32[batch]
  ${COMMON_INITS}
  init %thousand = f32[] [1000]
  init %w_x = f32[64x16]
  init %w_ctx = f32[32x16]
  init %w_pool = f32[16x12]
  init %axis2 = i64[1] [2]
  init %omega = f32[16] [1, 0.5, 0.25, 0.125, 1, 0.5, 0.25, 0.125, 1, 0.5, 0.25, 0.125, 1, 0.5, 0.25, 0.125]
  init %sum_axes = i64[1] [1]
  init %w_out = f32[16x64]
  %ts = Mul(%timestep, %thousand)
  ${sinusoid('ts', 't')}
  %gs = Mul(%guidance, %thousand)
  ${sinusoid('gs', 'g')}
  %pooled = Gemm(%pooled_projections, %w_pool, %b16) {transB=1}
  %x = MatMul(%hidden_states, %w_x)
  %c = MatMul(%encoder_hidden_states, %w_ctx)
  %pos = Unsqueeze(%img_ids, %axis2)
  %pos_w = Mul(%pos, %omega)
  %angles = ReduceSum(%pos_w, %sum_axes) {keepdims=0}
  %rc = Cos(%angles)
  %rs = Sin(%angles)
  %xr = Mul(%x, %rc)
  %xs = Mul(%x, %rs)
  %x2 = Add(%xr, %xs)
  %out = MatMul(%x2, %w_out)
  output %out: f32[batch,16,64]
  output %c: ?
  output %t_emb: ?
  output %g_emb: ?
  output %pooled: ?
}`;

describe('diffusion inputs by structure', () => {
  it('SD3-shaped: float timestep, context-embedded text states, pooled projections, attention mask', () => {
    expect(classify(model(SD3))).toEqual({
      latent: 'hidden_states (structure)',
      timestep: 'timestep (structure)',
      conditioning: {
        encoder_hidden_states: 'text-states (structure)',
        pooled_projections: 'pooled-text (structure)',
        encoder_attention_mask: 'text-mask (structure)',
      },
      output: 'out',
      rotary: [],
      unexplained: [],
    });
  });

  it('SDXL-shaped: time ids through their own sinusoid, text_embeds concatenated into add_embedding', () => {
    expect(classify(model(SDXL))).toEqual({
      latent: 'sample (structure)',
      timestep: 'timestep (structure)',
      conditioning: { time_ids: 'time-ids (structure)', encoder_hidden_states: 'text-states (structure)', text_embeds: 'pooled-text (structure)' },
      output: 'out',
      rotary: [],
      unexplained: [],
    });
  });

  it('Flux-shaped: token latent matched to the output, x1000 timestep, guidance second, rotary ids set apart', () => {
    expect(classify(model(FLUX))).toEqual({
      latent: 'hidden_states (structure)',
      timestep: 'timestep (structure) x1000',
      conditioning: { guidance: 'guidance (structure)', encoder_hidden_states: 'text-states (structure)', pooled_projections: 'pooled-text (structure)' },
      output: 'out',
      rotary: ['img_ids'],
      unexplained: [],
    });
  });

  it('tells Flux\'s timestep from its guidance by name when the graph lists guidance first, else by graph order', () => {
    const swapped = FLUX.replace('  input %timestep: f32[batch]\n', '').replace('  input %guidance: f32[batch]\n', '  input %guidance: f32[batch]\n  input %timestep: f32[batch]\n');
    expect(classify(model(swapped))).toMatchObject({ timestep: 'timestep (structure) x1000', conditioning: { guidance: 'guidance (structure)' } });
    const opaque = swapped.replace(/%guidance\b/g, '%p').replace(/%timestep\b/g, '%q');
    expect(classify(model(opaque))).toMatchObject({ timestep: 'p (structure) x1000', conditioning: { q: 'guidance (structure)' } });
  });

  it('keeps the facts when the names mean nothing, and falls back to optimum names only where structure is silent', () => {
    const scrambled = SD3.replace(/encoder_attention_mask/g, 'e').replace(/hidden_states\b/g, 'a').replace(/encoder_a\b/g, 'b').replace(/pooled_projections/g, 'c').replace(/timestep/g, 'd');
    expect(classify(model(scrambled))).toMatchObject({ latent: 'a (structure)', timestep: 'd (structure)', conditioning: { b: 'text-states (structure)', c: 'pooled-text (structure)', e: 'text-mask (structure)' } });
    // An input no rule explains keeps its optimum name's meaning; a timestep fed to nothing sinusoidal too.
    const bare = model(`model ir_version=8 opsets={ai.onnx:17}
graph "bare" {
  input %sample: f32[batch,4,8,8]
  input %timestep: i64[batch]
  input %guidance: f32[batch]
  input %other: f32[batch,3]
  %out = Identity(%sample)
  output %out: f32[batch,4,8,8]
}`);
    expect(classify(bare)).toMatchObject({ latent: 'sample (structure)', timestep: 'timestep (name)', conditioning: { guidance: 'guidance (name)' }, unexplained: ['other'] });
    expect(findTimestepInput(bare)?.name).toBe('timestep');
  });
});
