/**
 * External data and model-input hardening checked against a file system in motion and against ONNX Runtime
 * itself: the descriptor read after a symlink swap, symlinks at load, every external_data form ORT accepts or
 * refuses, the nesting depth ORT's parser stops at, and declared dims ORT runs.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import onnxProto from 'onnx-proto';
import * as ort from 'onnxruntime-node';
import { afterAll, describe, expect, it } from 'vitest';
import { compileCommand } from '../../src/cli/commands/compile.js';
import { IrError } from '../../src/ir/errors.js';
import { loadModelSync, saveModel } from '../../src/ir/serde.js';
import { ExternalFile, Tensor } from '../../src/ir/tensor.js';
import { verifyModel } from '../../src/ir/verify.js';
import { discoverLayers } from '../../src/quant/layers.js';

const { onnx } = onnxProto;
const scratch = mkdtempSync(join(tmpdir(), 'qcompile-extdata-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

const INSIDE = Float32Array.from({ length: 16 }, (_, i) => i + 1);
const OUTSIDE = new Float32Array(16).fill(-7);

type Entries = [string, string][];

/** y = x · W (x f32[1x4]), W f32[4x4] with the given external_data entries, or inline `weight`. */
function modelBytes(weight: onnxProto.onnx.ITensorProto, options: { xDims?: number[]; wDims?: number[]; irVersion?: number } = {}): Uint8Array {
  const info = (name: string, dims: number[]) => ({ name, type: { tensorType: { elemType: 1, shape: { dim: dims.map((dimValue) => ({ dimValue })) } } } });
  return onnx.ModelProto.encode({
    irVersion: options.irVersion ?? 8,
    opsetImport: [{ domain: '', version: 17 }],
    graph: {
      name: 'g',
      input: [info('x', options.xDims ?? [1, 4])],
      output: [{ name: 'y' }],
      initializer: [{ name: 'W', dims: options.wDims ?? [4, 4], dataType: 1, ...weight }],
      node: [{ name: 'mm', opType: 'MatMul', input: ['x', 'W'], output: ['y'] }],
    },
  }).finish();
}

const external = (entries: Entries) => ({ dataLocation: onnx.TensorProto.DataLocation.EXTERNAL, externalData: entries.map(([key, value]) => ({ key, value })) });

/** A fresh folder holding `model.onnx` and `w.bin` (64 zero bytes, then INSIDE). */
function folderWith(bytes: Uint8Array): { dir: string; path: string } {
  const dir = mkdtempSync(join(scratch, 'model-'));
  writeFileSync(join(dir, 'w.bin'), Buffer.concat([Buffer.alloc(64), Buffer.from(INSIDE.buffer)]));
  writeFileSync(join(dir, 'model.onnx'), bytes);
  return { dir, path: join(dir, 'model.onnx') };
}

function loadError(path: string): IrError {
  try {
    loadModelSync(path);
  } catch (error) {
    if (error instanceof IrError) return error;
    throw error;
  }
  throw new Error(`${path} loaded`);
}

/** y = ones(1x4) · W as ONNX Runtime computes it, or the first line of its refusal. */
async function ortColumnSums(path: string): Promise<number[] | string> {
  let session: ort.InferenceSession;
  try {
    session = await ort.InferenceSession.create(path);
  } catch (error) {
    return (error as Error).message.split('\n')[0]!;
  }
  try {
    const { y } = await session.run({ x: new ort.Tensor('float32', new Float32Array(4).fill(1), [1, 4]) });
    return Array.from(y!.data as Float32Array);
  } finally {
    await session.release();
  }
}

function columnSums(w: Float32Array): number[] {
  return [0, 1, 2, 3].map((j) => w[j]! + w[4 + j]! + w[8 + j]! + w[12 + j]!);
}

describe('external data is read through the descriptor validated at load', () => {
  it('a symlink to an outside file swapped in after load is never read', () => {
    const { dir, path } = folderWith(modelBytes(external([['location', 'w.bin'], ['offset', '64'], ['length', '64']])));
    const model = loadModelSync(path);
    const outside = join(scratch, `outside-${readdirSync(scratch).length}.bin`);
    writeFileSync(outside, Buffer.concat([Buffer.alloc(64), Buffer.from(OUTSIDE.buffer)]));
    renameSync(join(dir, 'w.bin'), join(dir, 'moved.bin'));
    symlinkSync(outside, join(dir, 'w.bin'));
    const weight = model.graph.initializers.get('W')!.initializer!;
    expect(Array.from(weight.toFloat32())).toEqual(Array.from(INSIDE));
    // Saving reads through the same descriptor.
    const out = join(dir, 'saved.onnx');
    saveModel(model, out, { externalData: 'never' });
    expect(Array.from(loadModelSync(out).graph.initializers.get('W')!.initializer!.toFloat32())).toEqual(Array.from(INSIDE));
  });

  it('refuses a data file that is a symlink at load, even to a file inside the folder', () => {
    const { dir, path } = folderWith(modelBytes(external([['location', 'link.bin'], ['offset', '64'], ['length', '64']])));
    symlinkSync(join(dir, 'w.bin'), join(dir, 'link.bin'));
    const error = loadError(path);
    expect(error.code).toBe('external-data-escape');
    expect(error.message).toBe(`${path}: tensor 'W' (f32[4x4]): external data path 'link.bin' is a symbolic link; refusing to read it`);
  });

  it('refuses a data file reached through a symlinked folder that leads outside', () => {
    const { dir, path } = folderWith(modelBytes(external([['location', 'sub/w.bin'], ['offset', '64'], ['length', '64']])));
    const elsewhere = mkdtempSync(join(scratch, 'elsewhere-'));
    writeFileSync(join(elsewhere, 'w.bin'), Buffer.concat([Buffer.alloc(64), Buffer.from(OUTSIDE.buffer)]));
    symlinkSync(elsewhere, join(dir, 'sub'));
    const error = loadError(path);
    expect(error.code).toBe('external-data-escape');
    expect(error.message).toBe(`${path}: tensor 'W' (f32[4x4]): external data path 'sub/w.bin' escapes the model's folder; refusing to read it`);
  });

  it('refuses a FIFO named as data without hanging on the open', () => {
    const { dir, path } = folderWith(modelBytes(external([['location', 'pipe.bin'], ['offset', '0'], ['length', '64']])));
    execFileSync('mkfifo', [join(dir, 'pipe.bin')]);
    const error = loadError(path);
    expect(error.code).toBe('external-data-missing');
    expect(error.message).toBe(`${path}: tensor 'W' (f32[4x4]): external data 'pipe.bin' is not a regular file`);
  });

  it('opens each file once: tensors of one file share one descriptor', () => {
    const dir = mkdtempSync(join(scratch, 'shared-'));
    const path = join(dir, 'model.onnx');
    saveModel(loadModelSync('test/fixtures/digits-classifier/classifier.onnx'), path, { externalData: 'always', externalThreshold: 0 });
    const sources = new Set<unknown>();
    let tensors = 0;
    for (const value of loadModelSync(path).graph.initializers.values()) {
      const data = value.initializer!.data;
      if (data.kind === 'external') {
        expect(data.source).toBeInstanceOf(ExternalFile);
        sources.add(data.source);
        tensors++;
      }
    }
    expect(tensors).toBeGreaterThan(1);
    expect(sources.size).toBe(1);
  });
});

describe('a model staged for a session refers to its untouched external data in place', () => {
  it('links the source file, writes only the changed tensors, and ONNX Runtime reads it as the full copy', async () => {
    const dir = mkdtempSync(join(scratch, 'linked-'));
    const source = join(dir, 'model.onnx');
    saveModel(loadModelSync('test/fixtures/digits-classifier/classifier.onnx'), source, { externalData: 'always' });
    const model = loadModelSync(source);
    const external = [...model.graph.initializers.values()].filter((v) => v.initializer!.isExternal);
    expect(external.length).toBeGreaterThan(2);
    // One changed weight (a pass's output), the others untouched.
    const changed = external[0]!;
    const values = changed.initializer!.toFloat32().map((v) => v * 0.5);
    changed.initializer = Tensor.fromFloat32(changed.initializer!.dims, values);

    const copied = join(mkdtempSync(join(scratch, 'copied-')), 'model.onnx');
    saveModel(model, copied, { externalData: 'always' });
    const staged = join(mkdtempSync(join(scratch, 'staged-')), 'model.onnx');
    saveModel(model, staged, { externalData: 'always', linkExternalData: true });

    const link = `${staged}.source0.data`;
    expect(statSync(link).ino).toBe(statSync(`${source}.data`).ino);
    // The staged data file holds the changed tensor only (64-byte aligned), not the whole model.
    expect(statSync(`${staged}.data`).size).toBe(values.byteLength);
    expect(statSync(`${copied}.data`).size).toBeGreaterThan(statSync(`${source}.data`).size - 64 * external.length);

    const input = new ort.Tensor('float32', Float32Array.from({ length: 256 }, (_, i) => Math.sin(i)), [1, 1, 16, 16]);
    const run = async (path: string) => {
      const session = await ort.InferenceSession.create(path);
      const out = await session.run({ [session.inputNames[0]!]: input });
      await session.release();
      return Array.from(out[session.outputNames[0]!]!.data as Float32Array);
    };
    expect(await run(staged)).toEqual(await run(copied));
    for (const value of loadModelSync(staged).graph.initializers.values()) expect(value.initializer!.bytes()).toEqual(model.graph.initializers.get(value.name)!.initializer!.bytes());
  });
});

/**
 * external_data forms and what ONNX Runtime 1.30 does with each (measured: `ortColumnSums` below runs it again).
 * w.bin is 64 zero bytes then INSIDE, so offset 64 reads INSIDE and offset 0 reads 16 zeros.
 */
const FORMS: { name: string; entries: Entries; accepted: boolean; offset?: number }[] = [
  { name: 'decimal', entries: [['location', 'w.bin'], ['offset', '64'], ['length', '64']], accepted: true, offset: 64 },
  { name: 'leading zero', entries: [['location', 'w.bin'], ['offset', '064'], ['length', '64']], accepted: true, offset: 64 },
  { name: 'minus zero', entries: [['location', 'w.bin'], ['offset', '-0'], ['length', '64']], accepted: true, offset: 0 },
  { name: 'no offset', entries: [['location', 'w.bin'], ['length', '64']], accepted: true, offset: 0 },
  { name: 'no length (the tensor size)', entries: [['location', 'w.bin'], ['offset', '32']], accepted: true, offset: 32 },
  { name: 'repeated offset keeps the last', entries: [['location', 'w.bin'], ['offset', '0'], ['offset', '64'], ['length', '64']], accepted: true, offset: 64 },
  { name: 'repeated length keeps the last', entries: [['location', 'w.bin'], ['offset', '64'], ['length', '32'], ['length', '64']], accepted: true, offset: 64 },
  { name: 'checksum', entries: [['location', 'w.bin'], ['offset', '64'], ['length', '64'], ['checksum', 'abc']], accepted: true, offset: 64 },
  { name: 'prepacked key', entries: [['location', 'w.bin'], ['offset', '64'], ['length', '64'], ['prepacked_x', '1']], accepted: true, offset: 64 },
  { name: 'location back into the folder', entries: [['location', 'sub/../w.bin'], ['offset', '64'], ['length', '64']], accepted: true, offset: 64 },
  { name: 'hex offset', entries: [['location', 'w.bin'], ['offset', '0x40'], ['length', '64']], accepted: false },
  { name: 'exponent offset', entries: [['location', 'w.bin'], ['offset', '6.4e1'], ['length', '64']], accepted: false },
  { name: 'empty offset', entries: [['location', 'w.bin'], ['offset', ''], ['length', '64']], accepted: false },
  { name: 'plus sign', entries: [['location', 'w.bin'], ['offset', '+64'], ['length', '64']], accepted: false },
  { name: 'leading space', entries: [['location', 'w.bin'], ['offset', ' 64'], ['length', '64']], accepted: false },
  { name: 'trailing tab', entries: [['location', 'w.bin'], ['offset', '64\t'], ['length', '64']], accepted: false },
  { name: 'negative offset', entries: [['location', 'w.bin'], ['offset', '-64'], ['length', '64']], accepted: false },
  { name: 'offset beyond int64', entries: [['location', 'w.bin'], ['offset', '99999999999999999999'], ['length', '64']], accepted: false },
  { name: 'int64 max offset', entries: [['location', 'w.bin'], ['offset', '9223372036854775807'], ['length', '64']], accepted: false },
  { name: 'negative length', entries: [['location', 'w.bin'], ['offset', '64'], ['length', '-64']], accepted: false },
  { name: 'empty length', entries: [['location', 'w.bin'], ['offset', '64'], ['length', '']], accepted: false },
  { name: 'length not the tensor size', entries: [['location', 'w.bin'], ['offset', '64'], ['length', '32']], accepted: false },
  { name: 'uint64 max length', entries: [['location', 'w.bin'], ['offset', '0'], ['length', '18446744073709551615']], accepted: false },
  { name: 'empty checksum', entries: [['location', 'w.bin'], ['offset', '64'], ['length', '64'], ['checksum', '']], accepted: false },
  { name: 'unknown key', entries: [['location', 'w.bin'], ['offset', '64'], ['length', '64'], ['foo', 'bar']], accepted: false },
  { name: 'empty key', entries: [['location', 'w.bin'], ['offset', '64'], ['length', '64'], ['', '1']], accepted: false },
  { name: 'duplicate location', entries: [['location', 'nope.bin'], ['location', 'w.bin'], ['offset', '64'], ['length', '64']], accepted: false },
  { name: 'empty location', entries: [['location', ''], ['offset', '0'], ['length', '64']], accepted: false },
  { name: 'directory', entries: [['location', 'sub'], ['offset', '0'], ['length', '64']], accepted: false },
];

describe('external_data entries are read exactly as ONNX Runtime reads them', () => {
  it.each(FORMS)('$name: ORT and qcompile agree (accepted: $accepted), reading the same bytes', async ({ entries, accepted, offset }) => {
    const { dir, path } = folderWith(modelBytes(external(entries)));
    mkdirSync(join(dir, 'sub'));
    const ortResult = await ortColumnSums(path);
    expect(Array.isArray(ortResult), String(ortResult)).toBe(accepted);
    if (!accepted) {
      expect(loadError(path).message).toMatch(/^.*model\.onnx: tensor 'W' \(f32\[4x4\]\)[: ]/);
      return;
    }
    const weight = loadModelSync(path).graph.initializers.get('W')!.initializer!.toFloat32();
    const file = Buffer.concat([Buffer.alloc(64), Buffer.from(INSIDE.buffer)]);
    expect(Array.from(weight)).toEqual(Array.from(new Float32Array(file.buffer.slice(file.byteOffset + offset!, file.byteOffset + offset! + 64))));
    expect(columnSums(weight)).toEqual(ortResult);
  });
});

/** An If nested `depth` deep (then-branches), innermost reading x from the outermost scope. */
function nestedIf(depth: number): Uint8Array {
  const f32 = (name: string) => ({ name, type: { tensorType: { elemType: 1, shape: { dim: [{ dimValue: 1 }] } } } });
  const leaf = (name: string): onnxProto.onnx.IGraphProto => ({ name, output: [f32(`${name}_o`)], node: [{ opType: 'Identity', input: ['x'], output: [`${name}_o`] }] });
  let graph = leaf('g0');
  for (let level = 1; level <= depth; level++) {
    graph = {
      name: `g${level}`,
      output: [f32(`g${level}_o`)],
      node: [{ opType: 'If', input: ['c'], output: [`g${level}_o`], attribute: [
        { name: 'then_branch', type: onnx.AttributeProto.AttributeType.GRAPH, g: graph },
        { name: 'else_branch', type: onnx.AttributeProto.AttributeType.GRAPH, g: leaf(`e${level}`) },
      ] }],
    };
  }
  return onnx.ModelProto.encode({
    irVersion: 8,
    opsetImport: [{ domain: '', version: 17 }],
    graph: { name: 'main', input: [f32('x'), { name: 'c', type: { tensorType: { elemType: 9, shape: { dim: [] } } } }], output: [f32('y')], node: [{ ...graph.node![0]!, output: ['y'] }] },
  }).finish();
}

describe('subgraph nesting is capped where ONNX Runtime caps it', () => {
  it('31 nested Ifs (99 messages deep) load in both; 32 (102 deep) are refused by both', async () => {
    const dir = mkdtempSync(join(scratch, 'nested-'));
    for (const [depth, accepted] of [[31, true], [32, false]] as const) {
      const path = join(dir, `nested-${depth}.onnx`);
      writeFileSync(path, nestedIf(depth));
      const session = await ort.InferenceSession.create(path).catch((error: Error) => error);
      expect(session instanceof Error ? session.message : 'loaded').toMatch(accepted ? /^loaded$/ : /Protobuf parsing failed/);
      if (!(session instanceof Error)) await session.release();
      if (accepted) expect(loadModelSync(path).graph.nodes.map((n) => n.opType)).toEqual(['If']);
      else expect(loadError(path).message).toContain('messages nest more than 100 deep');
    }
  });
});

describe('declared dims as ONNX Runtime sees them', () => {
  it('a 0 dim in an initializer and input is valid when shapes agree (ORT runs it)', async () => {
    const { path } = folderWith(modelBytes({ rawData: new Uint8Array(0) }, { xDims: [1, 0], wDims: [0, 4] }));
    const session = await ort.InferenceSession.create(path);
    const { y } = await session.run({ x: new ort.Tensor('float32', new Float32Array(0), [1, 0]) });
    await session.release();
    expect(Array.from(y!.data as Float32Array)).toEqual([0, 0, 0, 0]);
    const model = loadModelSync(path);
    expect(model.graph.initializers.get('W')!.initializer!.dims).toEqual([0, 4]);
    expect(verifyModel(model)).toEqual([]);
  });

  it('a negative input dim is an unknown dim (ORT runs any size there)', async () => {
    const { path } = folderWith(modelBytes({ rawData: new Uint8Array(INSIDE.buffer.slice(0)) }, { xDims: [-1, 4] }));
    expect(await ortColumnSums(path)).toEqual(columnSums(INSIDE));
    const model = loadModelSync(path);
    expect(model.graph.inputs[0]!.type!.shape).toEqual([null, 4]);
    expect(verifyModel(model)).toEqual([]);
  });

  it('negative initializer dims are refused (ORT: Out of bounds dimensions)', async () => {
    const { path } = folderWith(modelBytes({ rawData: new Uint8Array(INSIDE.buffer.slice(0)) }, { wDims: [-4, -4] }));
    expect(await ortColumnSums(path)).toMatch(/Out of bounds dimensions/);
    expect(loadError(path).message).toBe(`${path}: tensor 'W' has invalid dims [-4, -4]`);
  });
});

describe('non-finite weights in external data', () => {
  it('stop the quantizer as it reads them, naming the tensor, and nothing is written', async () => {
    const dir = mkdtempSync(join(scratch, 'nan-external-'));
    const model = loadModelSync('test/fixtures/dit-digits/model.onnx');
    // A transformer-block layer: select-layers keeps the embeddings and the final layer float by default.
    const value = discoverLayers(model).find((layer) => layer.name.startsWith('blocks.'))!.weight;
    const name = value.name;
    const values = Float32Array.from(value.initializer!.toFloat32());
    values[3] = NaN;
    value.initializer = Tensor.fromFloat32(value.initializer!.dims, values);
    const path = join(dir, 'model.onnx');
    saveModel(model, path, { externalData: 'always' });
    const reloaded = loadModelSync(path);
    expect(reloaded.graph.initializers.get(name)!.initializer!.isExternal).toBe(true);
    // The verifier leaves external weights to the quantizer (no second full read of a big model).
    expect(verifyModel(reloaded)).toEqual([]);
    const out = join(dir, 'out');
    mkdirSync(out);
    let stderr = '';
    const code = await compileCommand.run([path, '--passes', 'select-layers{bits=8},quantize-weights', '-o', join(out, 'q.onnx')], { stdout: () => undefined, stderr: (s) => void (stderr += s), cwd: process.cwd() });
    expect(code).toBe(1);
    expect(stderr).toContain(`weight '${name}' is not finite: element 3 is NaN`);
    expect(readdirSync(out)).toEqual([]);
  });
});
