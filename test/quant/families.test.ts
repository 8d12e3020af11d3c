/**
 * Layer discovery across model families, by structure: the SD-style UNet of test/fixtures/sd-digits (every
 * layer's role counted against its README), DiT (the fixture and `synth dit`), a DDPM/LDM UNet with a 1×1-conv
 * attention block, an SDXL level, the SD VAE decoder, PixArt-α, SD3 and Flux (test/quant/family-graphs.ts).
 * Each graph gives the same roles and names with every node, value and initializer renamed to random strings.
 */
import { describe, expect, it } from 'vitest';
import type { Model } from '../../src/ir/core.js';
import { DataType } from '../../src/ir/dtype.js';
import { Op, isOp } from '../../src/ir/ops.js';
import { loadModelSync } from '../../src/ir/serde.js';
import { discoverLayers, type Layer } from '../../src/quant/layers.js';
import { checkRecipeAgainstModel } from '../../src/recipe/check.js';
import { parseRecipe } from '../../src/recipe/parse.js';
import { OrtExecutor } from '../../src/runtime/ir-executor.js';
import { DIT_PRESETS, buildDit } from '../../src/synth/dit.js';
import { Random } from '../../src/synth/random.js';
import { FAMILY, convAttentionUnet, fluxLike, pixartLike, sd3Like, sdxlLike, vaeDecoderLike } from './family-graphs.js';

const SD_UNET = 'test/fixtures/sd-digits/unet/model.onnx';
const DIT = 'test/fixtures/dit-digits/model.onnx';

/** Renames every node, value and initializer of `model` to a random string (names must carry no meaning). */
function scramble(model: Model): Model {
  const random = new Random(7, 0);
  const fresh = () => `x${random.nextUint32().toString(36)}${random.nextUint32().toString(36)}`;
  const graph = model.graph;
  const initializers = [...graph.initializers.values()];
  graph.initializers.clear();
  for (const value of initializers) {
    value.name = fresh();
    graph.initializers.set(value.name, value);
  }
  for (const value of graph.inputs) value.name = fresh();
  for (const node of graph.nodes) {
    node.name = fresh();
    for (const output of node.outputs) output.name = fresh();
  }
  return model;
}

const rows = (layers: Layer[]) => layers.map((l) => `${l.name} ${l.role} ${l.block ?? '-'}`);
const countRoles = (layers: Layer[]) => {
  const counts: Record<string, number> = {};
  for (const l of layers) counts[l.role] = (counts[l.role] ?? 0) + 1;
  return counts;
};

describe('layer discovery on the sd-digits UNet (diffusers UNet2DConditionModel, torch export)', () => {
  const model = loadModelSync(SD_UNET);
  const layers = discoverLayers(model);

  it('leaves no layer `other` and counts each role as the README describes the architecture', () => {
    // 4 spatial transformers (down_blocks.0, mid_block, up_blocks.1 ×2) of one block each: self-attention
    // q/k/v/out, cross-attention q/k/v/out, GEGLU fc1/fc2, proj_in/proj_out. 8 resblocks (down 1+1, mid 2,
    // up 2+2): 2 convs and a time projection each, a 1×1 shortcut where channels change (down_blocks.1 64->128,
    // up_blocks.0 256->128 and 192->128, up_blocks.1 192->64 and 128->64). Time embedding: 2 linears.
    expect(countRoles(layers)).toEqual({
      'embed.time': 2, 'conv.in': 1, 'conv.out': 1, down: 1, up: 1,
      'res.conv': 16, 'res.time': 8, 'res.skip': 5,
      'proj.in': 4, 'proj.out': 4,
      'attn.q': 4, 'attn.k': 4, 'attn.v': 4, 'attn.out': 4,
      'attn.cross.q': 4, 'attn.cross.k': 4, 'attn.cross.v': 4, 'attn.cross.out': 4,
      'mlp.fc1': 4, 'mlp.fc2': 4,
    });
    // …and the graph agrees: every Conv and Gemm is a layer, every MatMul but the two of each attention core.
    const ops = (op: string) => model.graph.nodes.filter((n) => n.opType === op).length;
    const byOp = (op: string) => layers.filter((l) => l.opType === op).length;
    expect([byOp('Conv'), byOp('Gemm'), byOp('MatMul')]).toEqual([ops('Conv'), ops('Gemm'), ops('MatMul') - 2 * ops('Softmax')]);
    expect([ops('Conv'), ops('Gemm'), ops('MatMul'), ops('Softmax')]).toEqual([33, 10, 56, 8]);
  });

  it('gives cross-attention k/v the text states: each reads the rank-3 float graph input', () => {
    const text = model.graph.inputs.find((v) => v.type?.shape?.length === 3)!;
    const crossKv = layers.filter((l) => l.role === 'attn.cross.k' || l.role === 'attn.cross.v');
    expect(crossKv.map((l) => l.node.input(0))).toEqual(Array(8).fill(text));
    expect(text.uses.length).toBe(8);
    expect(crossKv.map((l) => l.inChannels)).toEqual(Array(8).fill(64));
  });

  it('names the transformer layers inside their level, one block per transformer', () => {
    const transformer = (level: string, block: number, inner: number) => [
      `${level}.proj.in proj.in -`,
      ...['q', 'k', 'v', 'out'].map((p) => `${level}.${p} attn.${p} ${block}`),
      ...['q', 'k', 'v', 'out'].map((p) => `${level}.cross.${p} attn.cross.${p} ${block}`),
      `${level}.mlp.fc1 mlp.fc1 ${block}`, `${level}.mlp.fc2 mlp.fc2 ${block}`,
      `${level}.proj.out proj.out -`,
    ].slice(0, inner);
    const named = rows(layers);
    expect(named.slice(6, 18)).toEqual(transformer('down.0.attn.0', 0, 12));
    expect(named.slice(26, 38)).toEqual(transformer('mid.attn.0', 1, 12));
    expect(named.slice(54, 66)).toEqual(transformer('up.1.attn.0', 2, 12));
    expect(named.slice(70, 82)).toEqual(transformer('up.1.attn.1', 3, 12));
    expect(named.filter((r) => !r.includes('.attn.'))).toEqual([
      'embed.time.0 embed.time -', 'embed.time.1 embed.time -', 'conv.in conv.in -',
      'down.0.res.0.conv1 res.conv -', 'down.0.res.0.time res.time -', 'down.0.res.0.conv2 res.conv -', 'down.0.downsample down -',
      'down.1.res.0.conv1 res.conv -', 'down.1.res.0.time res.time -', 'down.1.res.0.conv2 res.conv -', 'down.1.res.0.skip res.skip -',
      'mid.res.0.conv1 res.conv -', 'mid.res.0.time res.time -', 'mid.res.0.conv2 res.conv -',
      'mid.res.1.conv1 res.conv -', 'mid.res.1.time res.time -', 'mid.res.1.conv2 res.conv -',
      'up.0.res.0.conv1 res.conv -', 'up.0.res.0.time res.time -', 'up.0.res.0.conv2 res.conv -', 'up.0.res.0.skip res.skip -',
      'up.0.res.1.conv1 res.conv -', 'up.0.res.1.time res.time -', 'up.0.res.1.conv2 res.conv -', 'up.0.res.1.skip res.skip -',
      'up.0.upsample up -',
      'up.1.res.0.conv1 res.conv -', 'up.1.res.0.time res.time -', 'up.1.res.0.conv2 res.conv -', 'up.1.res.0.skip res.skip -',
      'up.1.res.1.conv1 res.conv -', 'up.1.res.1.time res.time -', 'up.1.res.1.conv2 res.conv -', 'up.1.res.1.skip res.skip -',
      'conv.out conv.out -',
    ]);
    expect(new Set(layers.map((l) => l.name)).size).toBe(layers.length);
  });

  it('gives every layer the same role and name with every node, value and initializer renamed', () => {
    expect(rows(discoverLayers(scramble(loadModelSync(SD_UNET))))).toEqual(rows(layers));
  });

  it('gives the same table when the attention products are Einsums (as CompVis LDM writes them)', () => {
    const einsums = loadModelSync(SD_UNET);
    const graph = einsums.graph;
    for (const matmul of graph.nodes.filter((n) => isOp(n, Op.MatMul) && n.inputs.every((v) => !v!.initializer))) {
      const einsum = graph.addNode({ opType: Op.Einsum, inputs: [matmul.input(0), matmul.input(1)], outputs: 1, attributes: { equation: { kind: 'string', value: '...ij,...jk->...ik' } }, before: matmul });
      matmul.outputs[0]!.replaceAllUsesWith(einsum.outputs[0]!);
      graph.removeNode(matmul);
    }
    expect(graph.nodes.filter((n) => isOp(n, Op.Einsum)).length).toBe(16);
    expect(rows(discoverLayers(einsums))).toEqual(rows(layers));
  });
});

describe('layer discovery on DiT', () => {
  it('the fixture: same roles and names scrambled; `keep final` keeps the final linear', () => {
    const layers = discoverLayers(loadModelSync(DIT));
    expect(rows(discoverLayers(scramble(loadModelSync(DIT))))).toEqual(rows(layers));
    const { recipe } = parseRecipe('recipe "t" {\n  quantize all { weight int8 }\n  keep final\n}');
    const { selection } = checkRecipeAgainstModel(recipe!, layers);
    expect([...selection.assignments].filter(([, plan]) => plan.action === 'keep').map(([name]) => name)).toEqual(['final.linear']);
  });

  it('the fixture unpatchified by an Einsum (`einsum(\'nhwpqc->nchpwq\', x)`, as DiT writes it): the final linear stays `final`', () => {
    const model = loadModelSync(DIT);
    const graph = model.graph;
    const transpose = graph.nodes.find((n) => isOp(n, Op.Transpose) && n.intsAttr('perm', []).length === 6)!;
    const einsum = graph.addNode({ opType: Op.Einsum, inputs: [transpose.input(0)], outputs: 1, attributes: { equation: { kind: 'string', value: 'nhwpqc->nchpwq' } }, before: transpose });
    transpose.outputs[0]!.replaceAllUsesWith(einsum.outputs[0]!);
    graph.removeNode(transpose);
    expect(rows(discoverLayers(model))).toEqual(rows(discoverLayers(loadModelSync(DIT))));
  });

  it('`synth dit --preset tiny` (learned sigma: 8 output channels): final.linear is `final`, attention out is attn.out', () => {
    const layers = discoverLayers(buildDit(DIT_PRESETS.tiny!));
    expect(rows(layers.filter((l) => l.block === undefined))).toEqual([
      'embed.patch embed.patch -', 'embed.time.0 embed.time -', 'embed.time.1 embed.time -', 'embed.label embed.label -', 'final.adaln adaln -', 'final.linear final -',
    ]);
    expect(layers.at(-1)!.outChannels).toBe(2 * 2 * 2);
    expect(rows(layers.filter((l) => l.block === 1))).toEqual(['adaln', 'attn.qkv', 'attn.out', 'mlp.fc1', 'mlp.fc2'].map((r) => `blocks.1.${r} ${r} 1`));
  });
});

/** Runs `model` once in ONNX Runtime (batch 2, seeded inputs; timesteps 0..999) and returns its output. */
async function runOnce(model: Model): Promise<Float32Array> {
  const random = new Random(3, 1);
  const feeds = Object.fromEntries(model.graph.inputs.map((input) => {
    const dims = input.type!.shape!.map((d) => (typeof d === 'number' ? d : 2));
    const size = dims.reduce((a, b) => a * b, 1);
    const data = input.type!.elemType === DataType.INT64 ? BigInt64Array.from({ length: size }, () => BigInt(random.nextUint32() % 1000)) : Float32Array.from({ length: size }, () => random.nextUint32() / 2 ** 32 - 0.5);
    return [input.name, { dtype: input.type!.elemType === DataType.INT64 ? ('int64' as const) : ('float32' as const), dims, data }];
  }));
  const output = model.graph.outputs[0]!.name;
  const prepared = await new OrtExecutor().prepare(model, [output]);
  try {
    return (await prepared.run(feeds))[output]!.data as Float32Array;
  } finally {
    await prepared.release();
  }
}

describe.each([
  ['a DDPM/LDM UNet with a 1×1-conv attention block (diffusers order)', () => convAttentionUnet(false)],
  ['a DDPM/LDM UNet with a 1×1-conv attention block (CompVis order: bmm(v, softmaxᵀ))', () => convAttentionUnet(true)],
])('layer discovery on %s', (_, build) => {
  it('finds q/k/v/out as 1×1 convs of the level\'s attention, the resblock around it, no other', async () => {
    const layers = discoverLayers(build());
    expect(rows(layers)).toEqual([
      'embed.time.0 embed.time -', 'embed.time.1 embed.time -', 'conv.in conv.in -',
      'down.0.res.0.conv1 res.conv -', 'down.0.res.0.time res.time -', 'down.0.res.0.conv2 res.conv -',
      'down.0.attn.0.q attn.q 0', 'down.0.attn.0.k attn.k 0', 'down.0.attn.0.v attn.v 0', 'down.0.attn.0.out attn.out 0',
      'conv.out conv.out -',
    ]);
    expect(layers.filter((l) => l.role.startsWith('attn.')).map((l) => `${l.opType} ${l.weightShape.join('x')}`)).toEqual(Array(4).fill('Conv 16x16x1x1'));
    expect(rows(discoverLayers(scramble(build())))).toEqual(rows(layers));
    const out = await runOnce(build());
    expect(out.length).toBe(2 * FAMILY.latentChannels * FAMILY.side ** 2);
    expect(out.every(Number.isFinite)).toBe(true);
  });
});

describe('layer discovery on a PixArt-α transformer', () => {
  const layers = discoverLayers(pixartLike());

  it('adaLN-single is one shared `adaln`, the caption projection embed.cond, cross-attention k/v on the caption', async () => {
    const perBlock = (b: number) => [
      ...['q', 'k', 'v', 'out'].map((p) => `blocks.${b}.attn.${p} attn.${p} ${b}`),
      ...['q', 'k', 'v', 'out'].map((p) => `blocks.${b}.attn.cross.${p} attn.cross.${p} ${b}`),
      `blocks.${b}.mlp.fc1 mlp.fc1 ${b}`, `blocks.${b}.mlp.fc2 mlp.fc2 ${b}`,
    ];
    expect(rows(layers)).toEqual([
      'embed.patch embed.patch -', 'embed.time.0 embed.time -', 'embed.time.1 embed.time -', 'adaln adaln -',
      'embed.cond.0 embed.cond -', 'embed.cond.1 embed.cond -', ...perBlock(0), ...perBlock(1), 'final.linear final -',
    ]);
    const caption = layers.find((l) => l.name === 'embed.cond.1')!.node;
    const crossKv = layers.filter((l) => l.role === 'attn.cross.k' || l.role === 'attn.cross.v');
    expect(crossKv.every((l) => l.node.input(0).producer === caption.outputs[0]!.uses[0]!.node)).toBe(true);
    expect(rows(discoverLayers(scramble(pixartLike())))).toEqual(rows(layers));
    const out = await runOnce(pixartLike());
    expect(out.length).toBe(2 * 2 * FAMILY.latentChannels * FAMILY.side ** 2);
    expect(out.every(Number.isFinite)).toBe(true);
  });
});

describe('layer discovery on an SD3 MMDiT (joint attention)', () => {
  const model = sd3Like();
  const layers = discoverLayers(model);

  it('splits each joint block into the image stream and the context stream; embedders and final by structure', async () => {
    const perBlock = (b: number) => [
      `blocks.${b}.adaln adaln ${b}`, `blocks.${b}.context.adaln adaln ${b}`,
      ...['q', 'k', 'v'].map((p) => `blocks.${b}.attn.${p} attn.${p} ${b}`),
      ...['q', 'k', 'v'].map((p) => `blocks.${b}.attn.context.${p} attn.context.${p} ${b}`),
      `blocks.${b}.attn.out attn.out ${b}`, `blocks.${b}.attn.context.out attn.context.out ${b}`,
      `blocks.${b}.mlp.fc1 mlp.fc1 ${b}`, `blocks.${b}.mlp.fc2 mlp.fc2 ${b}`,
      `blocks.${b}.context.mlp.fc1 mlp.fc1 ${b}`, `blocks.${b}.context.mlp.fc2 mlp.fc2 ${b}`,
    ];
    expect(rows(layers)).toEqual([
      'embed.patch embed.patch -', 'embed.cond.0 embed.cond -', 'embed.time.0 embed.time -', 'embed.time.1 embed.time -',
      'embed.cond.1 embed.cond -', 'embed.cond.2 embed.cond -', ...perBlock(0), ...perBlock(1), 'final.adaln adaln -', 'final.linear final -',
    ]);
    // The context stream's q/k/v read what context_embedder made of the text states (block 0).
    const contextEmbedder = layers.find((l) => l.name === 'embed.cond.0')!;
    expect(contextEmbedder.node.input(0)).toBe(model.graph.inputs.find((v) => v.type?.shape?.length === 3));
    expect(rows(discoverLayers(scramble(sd3Like())))).toEqual(rows(layers));
    const out = await runOnce(sd3Like());
    expect(out.length).toBe(2 * FAMILY.latentChannels * FAMILY.side ** 2);
    expect(out.every(Number.isFinite)).toBe(true);
  });

  it('keeps the roles when the export lists the context stream first (Flux concatenates context before image)', () => {
    const flux = sd3Like();
    for (const concat of flux.graph.nodes.filter((n) => isOp(n, Op.Concat) && n.inputs.length === 2 && n.intAttr('axis', 0) === 1)) {
      const [a, b] = [concat.inputs[0]!, concat.inputs[1]!];
      concat.setInput(0, b);
      concat.setInput(1, a);
    }
    expect(discoverLayers(flux).map((l) => l.role)).toEqual(layers.map((l) => l.role));
  });
});

describe('layer discovery on an SDXL UNet level (linear proj_in/proj_out, two blocks per transformer, add_embedding)', () => {
  it('names the blocks inside the transformer, finds the linear projections and the added-condition embedder', async () => {
    const layers = discoverLayers(sdxlLike());
    const block = (j: number) => [
      ...['q', 'k', 'v', 'out'].map((p) => `down.0.attn.0.blocks.${j}.${p} attn.${p} ${j}`),
      ...['q', 'k', 'v', 'out'].map((p) => `down.0.attn.0.blocks.${j}.cross.${p} attn.cross.${p} ${j}`),
      `down.0.attn.0.blocks.${j}.mlp.fc1 mlp.fc1 ${j}`, `down.0.attn.0.blocks.${j}.mlp.fc2 mlp.fc2 ${j}`,
    ];
    expect(rows(layers)).toEqual([
      'embed.time.0 embed.time -', 'embed.time.1 embed.time -', 'embed.cond.0 embed.cond -', 'embed.cond.1 embed.cond -', 'conv.in conv.in -',
      'down.0.res.0.conv1 res.conv -', 'down.0.res.0.time res.time -', 'down.0.res.0.conv2 res.conv -',
      'down.0.attn.0.proj.in proj.in -', ...block(0), ...block(1), 'down.0.attn.0.proj.out proj.out -',
      'conv.out conv.out -',
    ]);
    expect(layers.filter((l) => l.role.startsWith('proj.')).map((l) => l.opType)).toEqual(['MatMul', 'MatMul']);
    expect(rows(discoverLayers(scramble(sdxlLike())))).toEqual(rows(layers));
    const out = await runOnce(sdxlLike());
    expect(out.length).toBe(2 * FAMILY.latentChannels * FAMILY.side ** 2);
    expect(out.every(Number.isFinite)).toBe(true);
  });
});

describe('layer discovery on a Flux transformer (packed latent tokens, dual- and single-stream blocks)', () => {
  it('x_embedder is the patch embedding; the dual block splits into streams; the single block is one self-attention', async () => {
    const layers = discoverLayers(fluxLike());
    expect(rows(layers)).toEqual([
      'embed.patch embed.patch -', 'embed.cond.0 embed.cond -',
      'embed.time.0 embed.time -', 'embed.time.1 embed.time -', 'embed.time.2 embed.time -', 'embed.time.3 embed.time -',
      'embed.cond.1 embed.cond -', 'embed.cond.2 embed.cond -',
      'blocks.0.adaln adaln 0', 'blocks.0.context.adaln adaln 0',
      ...['q', 'k', 'v'].flatMap((p) => [`blocks.0.attn.context.${p} attn.context.${p} 0`, `blocks.0.attn.${p} attn.${p} 0`]),
      'blocks.0.attn.context.out attn.context.out 0', 'blocks.0.attn.out attn.out 0',
      'blocks.0.mlp.fc1 mlp.fc1 0', 'blocks.0.mlp.fc2 mlp.fc2 0', 'blocks.0.context.mlp.fc1 mlp.fc1 0', 'blocks.0.context.mlp.fc2 mlp.fc2 0',
      'blocks.1.adaln adaln 1', 'blocks.1.attn.q attn.q 1', 'blocks.1.attn.k attn.k 1', 'blocks.1.attn.v attn.v 1',
      'blocks.1.mlp.fc1 mlp.fc1 1', 'blocks.1.attn.out attn.out 1',
      'final.adaln adaln -', 'final.linear final -',
    ]);
    expect(rows(discoverLayers(scramble(fluxLike())))).toEqual(rows(layers));
    const out = await runOnce(fluxLike());
    expect(out.length).toBe(2 * 16 * 4);
    expect(out.every(Number.isFinite)).toBe(true);
  });
});

describe('layer discovery on the SD VAE decoder', () => {
  it('finds the mid block\'s linear attention and names the decoder as an up path', async () => {
    const layers = discoverLayers(vaeDecoderLike());
    expect(rows(layers)).toEqual([
      'conv.in conv.in -', 'up.0.res.0.conv1 res.conv -', 'up.0.res.0.conv2 res.conv -',
      'up.0.attn.0.q attn.q 0', 'up.0.attn.0.k attn.k 0', 'up.0.attn.0.v attn.v 0', 'up.0.attn.0.out attn.out 0',
      'up.0.res.1.conv1 res.conv -', 'up.0.res.1.conv2 res.conv -', 'up.0.res.2.conv1 res.conv -', 'up.0.res.2.conv2 res.conv -',
      'up.0.upsample up -', 'conv.out conv.out -',
    ]);
    expect(rows(discoverLayers(scramble(vaeDecoderLike())))).toEqual(rows(layers));
    const out = await runOnce(vaeDecoderLike());
    expect(out.length).toBe(2 * 3 * (2 * FAMILY.side) ** 2);
    expect(out.every(Number.isFinite)).toBe(true);
  });
});
