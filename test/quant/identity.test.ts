import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { findBackend } from '../../src/backends/registry.js';
import type { CliIO } from '../../src/cli/command.js';
import { main } from '../../src/cli/main.js';
import type { Model } from '../../src/ir/core.js';
import { Op, isOp } from '../../src/ir/ops.js';
import { decodeModel, encodeModel, loadModelSync, saveModel } from '../../src/ir/serde.js';
import { Artifacts, CALIBRATION_BATCHES } from '../../src/passes/artifacts.js';
import type { PassContext } from '../../src/passes/pass.js';
import { runPipeline } from '../../src/passes/pass-manager.js';
import { parsePipeline } from '../../src/passes/pipeline.js';
import { passRegistry } from '../../src/passes/registry.js';
import { LAYER_KEY, ROLE_KEY, layerStamps, layersOf } from '../../src/quant/identity.js';
import { discoverLayers } from '../../src/quant/layers.js';
import { checkRecipeAgainstModel } from '../../src/recipe/check.js';
import { parseRecipeFile } from '../../src/recipe/parse.js';
import { planRecipe } from '../../src/recipe/plan.js';
import { OrtExecutor } from '../../src/runtime/ir-executor.js';
import { calibrationBatches } from '../../bench/calibration-batches.js';
import { DIT_DIGITS, referenceEps } from '../passes/fixture.js';

// Counts discoveries: identity.ts calls discoverLayers through this module's export.
vi.mock('../../src/quant/layers.js', async (importOriginal) => {
  const actual = await importOriginal<typeof import('../../src/quant/layers.js')>();
  return { ...actual, discoverLayers: vi.fn(actual.discoverLayers) };
});

const MODEL = `${DIT_DIGITS}/model.onnx`;
const executor = new OrtExecutor();
/** The fixture's layers as discovery names them on the float model: the identity every step must keep. */
const fpIdentity = discoverLayers(loadModelSync(MODEL)).map((l) => `${l.name} ${l.role} ${l.block ?? '-'}`);
const identityOf = (model: Model) => layerStamps(model).map((s) => `${s.name} ${s.role} ${s.block ?? '-'}`);

/** Small stand-ins for the recipes' search settings: the test checks identity, not the search's quality. */
const SMALL_SEARCH = { population: 4, topK: 2, mutations: 2, crossovers: 2, epochs: 1, samples: 8, finalists: 1 };

describe('layer identity stamped once, kept by every pass of every shipped recipe', () => {
  const recipes = readdirSync('recipes').filter((f) => f.endsWith('.qrecipe')).sort();

  it.each(recipes)('%s: after each pass and the lowering every layer keeps its name and role; one discovery', async (file) => {
    const model = loadModelSync(MODEL);
    vi.mocked(discoverLayers).mockClear();
    const recipe = parseRecipeFile(join('recipes', file)).recipe!;
    // What a compile does: the plan is made from the stamped layers.
    const layers = layersOf(model);
    const { plan, pipeline } = planRecipe(recipe, layers, checkRecipeAgainstModel(recipe, layers).selection, file);
    const entries = parsePipeline(pipeline, passRegistry, { provided: [CALIBRATION_BATCHES] }).map((e) => (e.pass.name === 'search-group-sizes' ? { ...e, options: { ...e.options, ...SMALL_SEARCH } } : e));
    const context: PassContext = { seed: 0, plan, executor, artifacts: new Artifacts().set(CALIBRATION_BATCHES, calibrationBatches(16, 16)), progress: () => {}, log: () => {} };
    const seen: { pass: string; identity: string[]; views: string[] }[] = [{ pass: '(start)', identity: identityOf(model), views: layersOf(model).map((l) => l.name) }];
    await runPipeline(model, entries, context, {
      onPassEnd: (_, record) => seen.push({ pass: record.pass, identity: identityOf(model), views: layersOf(model).map((l) => l.name) }),
    });
    findBackend(recipe.target!)!.lower(model, {});
    seen.push({ pass: `lower-${recipe.target}`, identity: identityOf(model), views: layerStamps(model).map((s) => s.name) });
    const reloaded = decodeModel(encodeModel(model));
    seen.push({ pass: '(save and load)', identity: identityOf(reloaded), views: layerStamps(reloaded).map((s) => s.name) });

    expect(seen.map((s) => s.pass)).toEqual(['(start)', ...entries.map((e) => e.pass.name), `lower-${recipe.target}`, '(save and load)']);
    const names = fpIdentity.map((row) => row.split(' ')[0]);
    for (const step of seen) {
      expect(step.identity, `after ${step.pass}`).toEqual(fpIdentity);
      expect(step.views, `layer views after ${step.pass}`).toEqual(names);
    }
    // Every planned layer is quantized, and its stamp sits on the node that now applies the quantized weight: a
    // MatMulNBits, an integer MatMul over the codes (a float-bias int8 Gemm), or an op reading a dequantized weight.
    for (const name of plan.keys()) {
      const node = layerStamps(model).find((s) => s.name === name)!.node;
      const quantized = isOp(node, Op.MatMulNBits) || isOp(node, Op.MatMulIntegerToFloat) || (node.inputs[1]?.producer !== undefined && isOp(node.inputs[1].producer, Op.DequantizeLinear));
      expect(quantized || plan.get(name)!.weight === undefined, name).toBe(true);
    }
    expect(discoverLayers).toHaveBeenCalledTimes(1);
  }, 300_000);
});

describe('layer stamps in the file', () => {
  it('survive save and load as node metadata; ONNX Runtime loads and runs the stamped model unchanged', async () => {
    const model = loadModelSync(MODEL);
    const before = await referenceEps(model, executor);
    layersOf(model);
    const path = join(mkdtempSync(join(tmpdir(), 'qc-identity-')), 'stamped.onnx');
    saveModel(model, path);
    const loaded = loadModelSync(path);
    expect(identityOf(loaded)).toEqual(fpIdentity);
    const qkv = loaded.graph.nodes.find((n) => n.metadata.get(LAYER_KEY) === 'blocks.2.attn.qkv')!;
    expect([isOp(qkv, Op.MatMul), qkv.metadata.get(ROLE_KEY)]).toEqual([true, 'attn.qkv']);
    // The stamps ride in one model-level entry that the IR does not show as model metadata.
    expect([...loaded.metadataProps.keys()]).toEqual([...model.metadataProps.keys()]);
    expect(Array.from(await referenceEps(loaded, executor))).toEqual(Array.from(before));
    // An unstamped model writes no entry: its bytes do not change.
    const fresh = loadModelSync(MODEL);
    expect(Buffer.from(encodeModel(decodeModel(encodeModel(fresh)))).equals(Buffer.from(encodeModel(fresh)))).toBe(true);
  });

  it('rejects a malformed stamp entry, and a stamp without a known role', () => {
    const model = loadModelSync(MODEL);
    model.metadataProps.set('qcompile.node_metadata', '{"x": 3}');
    expect(() => decodeModel(encodeModel(model))).toThrow(/qcompile.node_metadata' is not a JSON object of string maps/);
    const stamped = loadModelSync(MODEL);
    layersOf(stamped);
    stamped.graph.nodes.find((n) => n.metadata.has(LAYER_KEY))!.metadata.set(ROLE_KEY, 'attn.qkvv');
    expect(() => layerStamps(stamped)).toThrow(/layer 'embed.patch' .* has no valid qcompile.role stamp \(found 'attn.qkvv'\)/);
    // A model stamped before attn.proj became attn.out says so.
    stamped.graph.nodes.find((n) => n.metadata.has(LAYER_KEY))!.metadata.set(ROLE_KEY, 'attn.proj');
    expect(() => layerStamps(stamped)).toThrow(/\(found 'attn.proj', the old spelling of 'attn.out': compile the float model again\)/);
  });

  it('a node built to replace another takes its stamp', () => {
    const model = loadModelSync(MODEL);
    const fc1 = layersOf(model).find((l) => l.name === 'blocks.0.mlp.fc1')!.node;
    const replacement = model.graph.addNode({ opType: Op.MatMul, inputs: [fc1.input(0), fc1.input(1)], outputs: ['replacement'], replaces: fc1 });
    fc1.outputs[0]!.replaceAllUsesWith(replacement.outputs[0]!);
    model.graph.removeNode(fc1);
    expect(identityOf(model)).toEqual(fpIdentity);
    expect(model.graph.nodes.indexOf(replacement)).toBeGreaterThan(0);
    // A copy that leaves the original in place would give the layer two nodes: refused, naming both.
    const proj = layersOf(model).find((l) => l.name === 'blocks.0.attn.out')!.node;
    const copy = model.graph.addNode({ opType: Op.MatMul, inputs: [proj.input(0), proj.input(1)], outputs: ['copy'], replaces: proj });
    expect(() => layerStamps(model)).toThrow(`layer 'blocks.0.attn.out' is stamped on two nodes, '${copy.name}' and '${proj.name}'`);
  });
});

describe('qcompile compile', () => {
  it('discovers the layers once, and writes them stamped on the lowered nodes, as inspect shows them', async () => {
    vi.mocked(discoverLayers).mockClear();
    const out = join(mkdtempSync(join(tmpdir(), 'qc-identity-')), 'model.onnx');
    let err = '';
    const io: CliIO = { stdout: () => {}, stderr: (t) => void (err += t), cwd: process.cwd() };
    expect(await main([MODEL, 'recipes/rtn-w4a16-g128.qrecipe', '-o', out, '--target', 'webgpu', '--bundle', join(out, '..', 'bundle')], io), err).toBe(0);
    // inspect reads the compiled file's stamps, the lowered kernels included (no second discovery either).
    let json = '';
    expect(await main(['inspect', out, '--json'], { ...io, stdout: (t) => void (json += t) })).toBe(0);
    const inspected = (JSON.parse(json) as { layers: { name: string; role: string; block: number | null; op: string }[] }).layers;
    expect(inspected.map((l) => `${l.name} ${l.role} ${l.block ?? '-'}`)).toEqual(fpIdentity);
    expect(inspected.find((l) => l.name === 'blocks.0.attn.qkv')).toMatchObject({ op: 'MatMulNBits', inChannels: 128, outChannels: 384, quantized: true });
    expect(discoverLayers).toHaveBeenCalledTimes(1);
    const compiled = loadModelSync(out);
    expect(identityOf(compiled)).toEqual(fpIdentity);
    expect(layerStamps(compiled).filter((s) => isOp(s.node, Op.MatMulNBits)).map((s) => s.name)).toEqual(fpIdentity.map((r) => r.split(' ')).filter(([, role]) => /^(attn|mlp)\.|^adaln$/.test(role!)).map(([name]) => name));
  }, 120_000);
});
