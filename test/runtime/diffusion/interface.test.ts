import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Model } from '../../../src/ir/core.js';
import { DataType } from '../../../src/ir/dtype.js';
import { Op } from '../../../src/ir/ops.js';
import { loadModelSync } from '../../../src/ir/serde.js';
import { Tensor } from '../../../src/ir/tensor.js';
import { findTimestepInput } from '../../../src/quant/diffusion-inputs.js';
import { ANY_LENGTH, findDiffusionInterface, type DiffusionInterface } from '../../../src/runtime/diffusion/interface.js';
import { scrambledCopy } from './scramble.js';

const DIT = 'test/fixtures/dit-digits/model.onnx';
const SD = 'test/fixtures/sd-digits/unet/model.onnx';
/** A model path in an empty folder: no sidecar, no pipeline folder, only the graph. */
const bare = () => join(mkdtempSync(join(tmpdir(), 'qc-iface-')), 'model.onnx');
const withoutProvenance = ({ provenance: _, ...rest }: DiffusionInterface) => rest;
const sources = (i: DiffusionInterface) => Object.fromEntries(i.provenance.map((p) => [p.fact, p.source]));

describe('findDiffusionInterface', () => {
  it('reads the class-conditional DiT fixture from its graph and schedule.json', () => {
    const found = findDiffusionInterface(loadModelSync(DIT), DIT);
    expect(withoutProvenance(found)).toEqual({
      latent: { name: 'x', shape: [1, 16, 16] },
      timestep: { name: 't', elemType: DataType.INT64, rank: 1, scale: 1 },
      conditioning: [{ name: 'y', kind: 'class-label', elemType: DataType.INT64, shape: [] }],
      output: { name: 'eps', channels: 1, varianceChannels: 0 },
      prediction: 'epsilon',
      classes: { count: 10 },
    });
    expect(sources(found)).toEqual({
      'latent x [1, 16, 16]': 'graph',
      'timestep t i64 [B]': 'graph',
      'timestep scale 1': 'graph',
      'conditioning y class-label i64 []': 'graph',
      'output eps 1 channels': 'graph',
      'prediction epsilon': 'sidecar',
      'classes 10, no null class': 'sidecar',
    });
  });

  it('reads the text-conditioned sd-digits UNet, its sidecar roles agreeing with the structure', () => {
    const found = findDiffusionInterface(loadModelSync(SD), SD);
    expect(withoutProvenance(found)).toEqual({
      latent: { name: 'sample', shape: [1, 16, 16] },
      timestep: { name: 'timestep', elemType: DataType.INT64, rank: 1, scale: 1 },
      conditioning: [{ name: 'encoder_hidden_states', kind: 'text-states', elemType: DataType.FLOAT, shape: [8, 64] }],
      output: { name: 'out_sample', channels: 1, varianceChannels: 0 },
      prediction: 'epsilon',
    });
    expect(found.provenance[0]).toEqual({ fact: 'latent sample [1, 16, 16]', source: 'sidecar', detail: 'schedule.json roles.latent (the graph agrees)' });
    expect(found.provenance.find((p) => p.fact.startsWith('conditioning'))?.detail).toBe('schedule.json roles.conditioning (the graph agrees)');
  });

  it('finds the same facts when every name is scrambled (sd-digits in a pipeline folder, the DiT with its schedule)', () => {
    const sd = scrambledCopy(SD, 'unet/model.onnx', [{ from: 'test/fixtures/sd-digits/scheduler/scheduler_config.json', to: 'scheduler/scheduler_config.json' }]);
    const dit = scrambledCopy(DIT, 'model.onnx');
    // The DiT's sidecar without its list of input names (which the scrambled copy no longer has).
    const schedule = JSON.parse(readFileSync('test/fixtures/dit-digits/schedule.json', 'utf8')) as Record<string, unknown>;
    delete schedule.inputs;
    delete schedule.outputs;
    writeFileSync(join(dit.root, 'schedule.json'), JSON.stringify(schedule));
    for (const [original, copy] of [[SD, sd], [DIT, dit]] as const) {
      const expected = withoutProvenance(findDiffusionInterface(loadModelSync(original), original));
      const n = (name: string) => copy.names.get(name)!;
      const renamed = {
        ...expected,
        latent: { ...expected.latent, name: n(expected.latent.name) },
        timestep: { ...expected.timestep, name: n(expected.timestep.name) },
        conditioning: expected.conditioning.map((c) => ({ ...c, name: n(c.name) })),
        output: { ...expected.output, name: n(expected.output.name) },
      };
      const found = findDiffusionInterface(loadModelSync(copy.path), copy.path);
      expect(withoutProvenance(found)).toEqual(renamed);
      expect(found.provenance.filter((p) => /^(latent|timestep|conditioning|output) /.test(p.fact)).every((p) => p.source === 'graph')).toBe(true);
    }
    // The scrambled sd-digits has no sidecar: what it predicts comes from the scheduler config.
    const found = findDiffusionInterface(loadModelSync(sd.path), sd.path);
    expect(found.provenance.find((p) => p.fact === 'prediction epsilon')?.source).toBe('pipeline-folder');
  });

  it('takes a float timestep the graph scales by 1000 (Flux) as σ: scale 1/1000, and a rank-0 one', () => {
    const model = loadModelSync(DIT);
    const t = model.graph.inputs.find((v) => v.name === 't')!;
    t.type = { elemType: DataType.FLOAT, shape: [] };
    const cast = t.uses[0]!.node;
    const thousand = model.graph.addInitializer('thousand', Tensor.fromFloat32([], Float32Array.of(1000)));
    const scaled = model.graph.addNode({ opType: Op.Mul, inputs: [t, thousand], outputs: ['t_scaled'], before: cast }).outputs[0]!;
    cast.setInput(0, scaled);
    const found = findDiffusionInterface(model, bare(), { recipe: { prediction: 'flow' } });
    expect(found.timestep).toEqual({ name: 't', elemType: DataType.FLOAT, rank: 0, scale: 1 / 1000 });
    expect(found.provenance.find((p) => p.fact === 'timestep scale 1/1000')?.detail).toMatch(/multiplies it by 1000/);
    expect(findTimestepInput(model)?.name).toBe('t');
    expect(findDiffusionInterface(model, bare(), { recipe: { prediction: 'flow', timestepScale: 1 } }).timestep.scale).toBe(1);
  });

  it('takes a timestep without a declared shape as [B], and says so', () => {
    const model = loadModelSync(DIT);
    model.graph.inputs.find((v) => v.name === 't')!.type = { elemType: DataType.INT64 };
    expect(findTimestepInput(model)?.name).toBe('t');
    const found = findDiffusionInterface(model, DIT);
    expect(found.timestep).toEqual({ name: 't', elemType: DataType.INT64, rank: 1, scale: 1 });
    expect(found.provenance[1]).toEqual({ fact: 'timestep t i64 [B]', source: 'graph', detail: 'read by the sinusoidal embedding; no declared shape, taken as [B]' });
  });

  it('takes dynamic height and width from the recipe or --resolution, and says what to add when neither is given', () => {
    const model = dynamicSpatial(loadModelSync(DIT));
    expect(() => findDiffusionInterface(model, bare(), { recipe: { prediction: 'epsilon' } })).toThrow(
      "the latent input 'x' has dynamic height and width: add `diffusion { resolution 64 }` to the recipe or pass --resolution 64 (the latent's side, the config's sample_size)",
    );
    const cli = findDiffusionInterface(model, bare(), { recipe: { prediction: 'epsilon' }, resolution: 16 });
    expect(cli.latent.shape).toEqual([1, 16, 16]);
    expect(cli.provenance[0]).toEqual({ fact: 'latent x [1, 16, 16]', source: 'command-line', detail: '--resolution' });
    const recipe = findDiffusionInterface(model, bare(), { recipe: { prediction: 'epsilon', resolution: [32, 16] }, resolution: 16 });
    expect(recipe.latent.shape).toEqual([1, 32, 16]);
    expect(recipe.provenance[0]!.source).toBe('recipe');
    // A static latent and a different stated resolution disagree: loud, not silently one of them.
    expect(() => findDiffusionInterface(loadModelSync(DIT), DIT, { resolution: 32 })).toThrow("the model's latent 'x' is 16x16, but --resolution says 32x32");
  });

  it('reads learned variance from 2C output channels and refuses a layout it cannot explain', () => {
    const model = loadModelSync(DIT);
    model.graph.outputs[0]!.type = { elemType: DataType.FLOAT, shape: ['batch', 2, 16, 16] };
    expect(findDiffusionInterface(model, DIT).output).toEqual({ name: 'eps', channels: 2, varianceChannels: 1 });
    model.graph.outputs[0]!.type = { elemType: DataType.FLOAT, shape: ['batch', 3, 16, 16] };
    expect(() => findDiffusionInterface(model, DIT)).toThrow("output 'eps' has 3 channels for a 1-channel latent: qcompile reads C (the prediction) or 2C (prediction | learned variance)");
  });

  it('names what is missing: the prediction, an input it cannot explain', () => {
    expect(() => findDiffusionInterface(loadModelSync(DIT), bare())).toThrow(/^cannot tell what the model predicts: add `diffusion \{ prediction epsilon \}`/);
    const model = loadModelSync(DIT);
    model.graph.addInput('mystery', { elemType: DataType.FLOAT, shape: ['batch', 3, 5] });
    expect(() => findDiffusionInterface(model, DIT)).toThrow(
      'cannot tell what model input \'mystery\' carries: state it in a schedule.json next to the model, "roles": { "conditioning": { "mystery": KIND } } (KIND: class-label, text-states, pooled-text, time-ids, guidance, text-mask)',
    );
  });

  it("takes a sidecar's roles: names, and kinds for inputs the graph cannot explain; a bad role is named", () => {
    const model = loadModelSync(DIT);
    model.graph.addInput('mystery', { elemType: DataType.FLOAT, shape: ['batch', 7] });
    const dir = mkdtempSync(join(tmpdir(), 'qc-iface-'));
    const schedule = JSON.parse(readFileSync('test/fixtures/dit-digits/schedule.json', 'utf8')) as Record<string, unknown>;
    const write = (roles: unknown) => writeFileSync(join(dir, 'schedule.json'), JSON.stringify({ ...schedule, roles }));
    write({ latent: 'x', conditioning: { mystery: 'pooled-text' } });
    const found = findDiffusionInterface(model, join(dir, 'model.onnx'));
    expect(found.conditioning).toEqual([
      { name: 'y', kind: 'class-label', elemType: DataType.INT64, shape: [] },
      { name: 'mystery', kind: 'pooled-text', elemType: DataType.FLOAT, shape: [7] },
    ]);
    expect(found.provenance.find((p) => p.fact.startsWith('conditioning mystery'))).toEqual({ fact: 'conditioning mystery pooled-text f32 [7]', source: 'sidecar', detail: 'schedule.json roles.conditioning' });
    write({ conditioning: { mystery: 'colour' } });
    expect(() => findDiffusionInterface(model, join(dir, 'model.onnx'))).toThrow(`${join(dir, 'schedule.json')}: roles.conditioning.mystery must be one of class-label, text-states, pooled-text, time-ids, guidance, text-mask, got "colour"`);
    write({ latent: 'sample' });
    expect(() => findDiffusionInterface(model, join(dir, 'model.onnx'))).toThrow(`${join(dir, 'schedule.json')}: roles.latent names 'sample', which the model has no input called`);
    write({ noise: 'x' });
    expect(() => findDiffusionInterface(model, join(dir, 'model.onnx'))).toThrow("unknown role 'noise' in \"roles\" (known: latent, timestep, conditioning, output)");
  });

  it('resolves a dynamic text length from the sidecar\'s inputs, else the pipeline\'s tokenizer.json, else leaves it to the conditioning', () => {
    const model = loadModelSync(SD);
    model.graph.inputs.find((v) => v.name === 'encoder_hidden_states')!.type = { elemType: DataType.FLOAT, shape: ['batch', 'sequence', 64] };
    expect(findDiffusionInterface(model, SD).conditioning[0]!.shape).toEqual([8, 64]);
    const root = mkdtempSync(join(tmpdir(), 'qc-iface-'));
    for (const file of ['tokenizer/tokenizer.json', 'text_encoder/model.onnx', 'scheduler/scheduler_config.json']) {
      mkdirSync(join(root, dirname(file)), { recursive: true });
      copyFileSync(`test/fixtures/sd-digits/${file}`, join(root, file));
    }
    expect(findDiffusionInterface(model, join(root, 'unet', 'model.onnx')).conditioning[0]!.shape).toEqual([8, 64]);
    expect(findDiffusionInterface(model, bare(), { recipe: { prediction: 'epsilon' } }).conditioning[0]!.shape).toEqual([ANY_LENGTH, 64]);
    model.graph.inputs.find((v) => v.name === 'encoder_hidden_states')!.type = { elemType: DataType.FLOAT, shape: ['batch', 8, 'width'] };
    expect(() => findDiffusionInterface(model, bare(), { recipe: { prediction: 'epsilon' } })).toThrow(
      "conditioning input 'encoder_hidden_states' (text-states) has a dynamic dimension 2 that neither schedule.json's \"inputs\", the pipeline's config.json nor its tokenizer.json states: export it with static dimensions",
    );
  });

  it('refuses a sidecar naming inputs the model lacks', () => {
    const model = loadModelSync(DIT);
    model.graph.inputs[1]!.name = 'timestep';
    expect(() => findDiffusionInterface(model, DIT)).toThrow(`test/fixtures/dit-digits/schedule.json: "inputs" lists 't', which the model has no input called (is the sidecar stale?)`);
    const sd = loadModelSync(SD);
    sd.graph.inputs[0]!.name = 'latent';
    expect(() => findDiffusionInterface(sd, SD)).toThrow(/schedule\.json: "inputs" lists 'sample'/);
  });

  it('classes: the recipe over the sidecar, a null class from a table with one row more', () => {
    const model = loadModelSync(DIT);
    expect(findDiffusionInterface(model, DIT, { recipe: { classes: 10, nullClass: 3 } }).classes).toEqual({ count: 10, nullClass: 3 });
    const found = findDiffusionInterface(model, bare(), { recipe: { prediction: 'epsilon' } });
    expect(found.classes).toEqual({ count: 10 });
    expect(found.provenance.at(-1)).toEqual({ fact: 'classes 10, no null class', source: 'graph', detail: 'the label embedding table has 10 rows' });
    expect(() => findDiffusionInterface(model, DIT, { recipe: { classes: 4 } })).toThrow('diffusion { classes } says 4 classes, but the label embedding table has 10 rows (expected 4, or 5 with a null class)');
  });
});

/** The DiT with its latent and output declared [batch, 1, height, width]. */
function dynamicSpatial(model: Model): Model {
  for (const v of [model.graph.inputs[0]!, model.graph.outputs[0]!]) v.type = { elemType: DataType.FLOAT, shape: ['batch', 1, 'height', 'width'] };
  return model;
}
