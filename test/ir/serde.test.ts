import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, describe, expect, it } from 'vitest';
import { compileCommand } from '../../src/cli/commands/compile.js';
import { main } from '../../src/cli/main.js';
import { inspectCommand } from '../../src/cli/commands/inspect.js';
import type { CliIO } from '../../src/cli/command.js';
import { DataType } from '../../src/ir/dtype.js';
import { IrError, type IrErrorCode } from '../../src/ir/errors.js';
import { opSchema } from '../../src/ir/ops.js';
import { loadModelSync, saveModel } from '../../src/ir/serde.js';
import { Tensor } from '../../src/ir/tensor.js';
import { assertValid, verifyModel } from '../../src/ir/verify.js';

const scratch = mkdtempSync(join(tmpdir(), 'qcompile-serde-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

interface Manifest {
  inputs: Record<string, { file: string; dtype: 'float32' | 'int64'; shape: number[] }>;
}

/** Runs a model file in ORT on a fixture's reference inputs; returns each output's raw bytes. */
async function runReference(modelPath: string, fixtureDir: string): Promise<Record<string, Buffer>> {
  const manifest = JSON.parse(readFileSync(join(fixtureDir, 'reference_manifest.json'), 'utf8')) as Manifest;
  const feeds: Record<string, ort.Tensor> = {};
  for (const [name, spec] of Object.entries(manifest.inputs)) {
    const bytes = readFileSync(join(fixtureDir, spec.file));
    const data = spec.dtype === 'float32' ? new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength)) : new BigInt64Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
    feeds[name] = new ort.Tensor(spec.dtype, data, spec.shape);
  }
  const session = await ort.InferenceSession.create(modelPath);
  try {
    const results = await session.run(feeds);
    return Object.fromEntries(Object.entries(results).map(([name, t]) => {
      const data = t.data as Float32Array;
      return [name, Buffer.from(data.buffer, data.byteOffset, data.byteLength)];
    }));
  } finally {
    await session.release();
  }
}

const FIXTURES = [
  { name: 'dit-digits', dir: 'test/fixtures/dit-digits', file: 'model.onnx' },
  { name: 'digits-classifier', dir: 'test/fixtures/digits-classifier', file: 'classifier.onnx' },
];

describe.each(FIXTURES)('serde round trip of $name', ({ name, dir, file }) => {
  const original = join(dir, file);

  it('load -> save gives bit-identical ORT outputs, and identical bytes across two saves', async () => {
    const inlineA = join(scratch, `${name}-a.onnx`);
    const inlineB = join(scratch, `${name}-b.onnx`);
    saveModel(loadModelSync(original), inlineA);
    saveModel(loadModelSync(inlineA), inlineB);
    expect(readFileSync(inlineA).equals(readFileSync(inlineB))).toBe(true);
    const expected = await runReference(original, dir);
    const actual = await runReference(inlineA, dir);
    expect(Object.keys(actual).sort()).toEqual(Object.keys(expected).sort());
    for (const output of Object.keys(expected)) expect(actual[output]!.equals(expected[output]!), output).toBe(true);
  });

  it('external-data save reloads to the same tensors and the same ORT outputs', async () => {
    const folder = join(scratch, `${name}-ext`);
    const path = join(folder, 'model.onnx');
    const model = loadModelSync(original);
    mkdirSync(folder);
    saveModel(model, path, { externalData: 'always' });
    expect(readdirSync(folder).sort()).toEqual(['model.onnx', 'model.onnx.data']);
    const reloaded = loadModelSync(path);
    let external = 0;
    for (const [key, value] of model.graph.initializers) {
      const again = reloaded.graph.initializers.get(key)!.initializer!;
      if (again.isExternal) external++;
      expect(Buffer.from(again.bytes()).equals(Buffer.from(value.initializer!.bytes())), key).toBe(true);
      expect(again.dims).toEqual(value.initializer!.dims);
    }
    expect(external).toBeGreaterThan(0);
    const expected = await runReference(original, dir);
    const actual = await runReference(path, dir);
    for (const output of Object.keys(expected)) expect(actual[output]!.equals(expected[output]!), output).toBe(true);
    // Saving the reloaded (external) model again gives the same two files.
    const second = join(scratch, `${name}-ext2`);
    mkdirSync(second);
    saveModel(reloaded, join(second, 'model.onnx'), { externalData: 'always' });
    for (const f of ['model.onnx', 'model.onnx.data']) expect(readFileSync(join(second, f)).equals(readFileSync(join(folder, f))), f).toBe(true);
  });
});

describe('atomic save', () => {
  /** A model whose one weight throws when its bytes are computed (a failing lazy tensor). */
  function failingModel() {
    const model = loadModelSync('test/fixtures/digits-classifier/classifier.onnx');
    const [name, value] = [...model.graph.initializers].find(([, v]) => v.initializer!.dims.length === 4)!;
    const dims = value.initializer!.dims;
    value.initializer = Tensor.lazy(DataType.FLOAT, dims, () => {
      throw new Error(`disk on fire while computing ${name}`);
    });
    return model;
  }

  it.each(['never', 'always'] as const)('leaves no file behind when a tensor fails (externalData=%s)', (externalData) => {
    const folder = join(scratch, `atomic-${externalData}`);
    mkdirSync(folder);
    expect(() => saveModel(failingModel(), join(folder, 'model.onnx'), { externalData })).toThrow(/disk on fire/);
    expect(readdirSync(folder)).toEqual([]);
  });

  it('keeps the previous file intact when overwriting fails', () => {
    const folder = join(scratch, 'atomic-overwrite');
    mkdirSync(folder);
    const path = join(folder, 'model.onnx');
    writeFileSync(path, 'previous');
    expect(() => saveModel(failingModel(), path, { externalData: 'never' })).toThrow(/disk on fire/);
    expect(readdirSync(folder)).toEqual(['model.onnx']);
    expect(readFileSync(path, 'utf8')).toBe('previous');
  });
});

const BAD = 'test/fixtures/bad-models';

/** Every file of the bad-model corpus, the IrError code loading it must raise, and a fragment of the message. */
const CORPUS: { file: string; code: IrErrorCode; message: string }[] = [
  { file: 'empty.onnx', code: 'malformed-model', message: 'not an ONNX model: missing ir_version, graph' },
  { file: 'truncated.onnx', code: 'malformed-model', message: 'not a valid ONNX protobuf (index out of range' },
  { file: 'not-onnx.onnx', code: 'malformed-model', message: 'not a valid ONNX protobuf (invalid wire type' },
  { file: 'random-bytes.onnx', code: 'malformed-model', message: 'not a valid ONNX protobuf' },
  { file: 'ir-version-99.onnx', code: 'unsupported-version', message: 'IR version 99 is newer than the supported 13' },
  { file: 'escape-parent.onnx', code: 'external-data-escape', message: "external data path '../outside.bin' escapes the model's folder" },
  { file: 'escape-absolute.onnx', code: 'external-data-escape', message: "external data path '/etc/passwd' escapes the model's folder" },
  { file: 'missing-external.onnx', code: 'external-data-missing', message: "external data file 'missing.bin' does not exist" },
  { file: 'range-beyond-end.onnx', code: 'external-data-range', message: "bytes 0..64 lie outside 'short.bin' (16 bytes)" },
  { file: 'ir-version-negative.onnx', code: 'malformed-model', message: 'IR version -1 is invalid (IR versions start at 1)' },
  { file: 'offset-hex.onnx', code: 'malformed-model', message: "tensor 'W' (f32[4x4]): external data offset '0x0' is not a decimal integer" },
  { file: 'offset-exponent.onnx', code: 'malformed-model', message: "tensor 'W' (f32[4x4]): external data offset '6.4e1' is not a decimal integer" },
  { file: 'offset-empty.onnx', code: 'malformed-model', message: "tensor 'W' (f32[4x4]): external data key 'offset' has an empty value" },
  { file: 'duplicate-location.onnx', code: 'malformed-model', message: "tensor 'W' (f32[4x4]): external data names 'location' twice" },
  { file: 'unknown-external-key.onnx', code: 'malformed-model', message: "tensor 'W' (f32[4x4]): external data has unknown key 'whence'" },
  { file: 'directory-external.onnx', code: 'external-data-missing', message: "tensor 'W' (f32[4x4]): external data 'a-directory' is not a regular file" },
  { file: 'nested-if-10000.onnx', code: 'malformed-model', message: "messages nest more than 100 deep (subgraphs in subgraphs), which ONNX Runtime's protobuf parser refuses" },
];

/** Files that load (ONNX Runtime may run them or not) but that the verifier, and so compile, must refuse. */
const VERIFY_CORPUS: { file: string; code: string; message: string }[] = [
  { file: 'unknown-op.onnx', code: 'unknown-op', message: "node 'frob' has op 'Frobnicate' unknown in domain 'com.example'" },
  { file: 'matmul-mismatch.onnx', code: 'shape-inference', message: "node 'mm' (MatMul): inner dims differ: [1,4] · [0,4]" },
  { file: 'nan-weight.onnx', code: 'non-finite', message: "weight 'W' is not finite: element 5 is NaN (input 1 of 'mm', MatMul)" },
  { file: 'inf-weight.onnx', code: 'non-finite', message: "weight 'W' is not finite: element 5 is Infinity (input 1 of 'mm', MatMul)" },
];

/** Runs a command with captured streams. */
async function run(command: { run(argv: string[], io: CliIO): Promise<number> }, argv: string[]) {
  let stdout = '';
  let stderr = '';
  const code = await command.run(argv, { stdout: (s) => void (stdout += s), stderr: (s) => void (stderr += s), cwd: process.cwd() });
  return { code, stdout, stderr };
}

describe('bad-model corpus', () => {
  it('covers every .onnx file in the folder', () => {
    const files = readdirSync(BAD).filter((f) => f.endsWith('.onnx')).sort();
    expect(files).toEqual([...CORPUS, ...VERIFY_CORPUS].map((c) => c.file).sort());
  });

  it.each(VERIFY_CORPUS)('$file: loads, and the verifier reports exactly $code', ({ file, code, message }) => {
    const issues = verifyModel(loadModelSync(join(BAD, file)));
    expect(issues.map((issue) => [issue.code, issue.message])).toEqual([[code, message]]);
  });

  it.each(VERIFY_CORPUS)('$file: compile refuses it before any work and writes no output', async ({ file, message }) => {
    const folder = mkdtempSync(join(scratch, 'compile-'));
    const result = await run(compileCommand, [join(BAD, file), '--passes', 'cleanup', '-o', join(folder, 'out.onnx')]).catch((error: Error) => ({ code: 1, stdout: '', stderr: error.message }));
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain(message);
    expect(readdirSync(folder)).toEqual([]);
  });

  it('matmul-mismatch.onnx, nan-weight.onnx: ONNX Runtime refuses the first, and runs the second to all-NaN outputs', async () => {
    await expect(ort.InferenceSession.create(join(BAD, 'matmul-mismatch.onnx'))).rejects.toThrow(/Incompatible dimensions for matrix multiplication/);
    const session = await ort.InferenceSession.create(join(BAD, 'nan-weight.onnx'));
    try {
      const { y } = await session.run({ x: new ort.Tensor('float32', new Float32Array(4).fill(1), [1, 4]) });
      expect(Array.from(y!.data as Float32Array).map(Number.isNaN)).toEqual([false, true, false, false]);
    } finally {
      await session.release();
    }
  });

  it('ir-version-negative.onnx: ONNX Runtime 1.30 loads it, yet no ONNX IR version is below 1 (refused here)', async () => {
    const session = await ort.InferenceSession.create(join(BAD, 'ir-version-negative.onnx'));
    await session.release();
  });

  it('nested-if-10000.onnx: ONNX Runtime refuses it too (protobuf parsing)', async () => {
    await expect(ort.InferenceSession.create(join(BAD, 'nested-if-10000.onnx'))).rejects.toThrow(/Protobuf parsing failed/);
  });

  it('manifest-escape: diff --inputs refuses a manifest naming a file outside its folder', async () => {
    const model = 'test/fixtures/digits-classifier/classifier.onnx';
    let stderr = '';
    const code = await main(['diff', model, model, '--inputs', join(BAD, 'manifest-escape')], { stdout: () => undefined, stderr: (s) => void (stderr += s), cwd: process.cwd() });
    expect(code).toBe(1);
    expect(stderr).toBe(`qcompile: error: ${join(process.cwd(), BAD, 'manifest-escape', 'reference_manifest.json')}: file '../short.bin' is outside the manifest's folder; refusing to read it\n`);
  });

  it.each(CORPUS)('$file: load fails with $code', ({ file, code, message }) => {
    let error: unknown;
    try {
      loadModelSync(join(BAD, file));
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(IrError);
    expect((error as IrError).code).toBe(code);
    expect((error as IrError).message).toContain(message);
    expect((error as IrError).message).toContain(file);
  });

  it.each(CORPUS)('$file: inspect exits 1 with one clear line', async ({ file, message }) => {
    const result = await run(inspectCommand, [join(BAD, file)]);
    expect(result.code).toBe(1);
    expect(result.stdout).toBe('');
    expect(result.stderr.split('\n')).toEqual([expect.stringMatching(/^qcompile: error: /), '']);
    expect(result.stderr).toContain(`${join(BAD, file)}: `);
    expect(result.stderr).toContain(message);
  });

  it.each(CORPUS)('$file: compile fails and writes no output', async ({ file }) => {
    const folder = mkdtempSync(join(scratch, 'compile-'));
    const result = await run(compileCommand, [join(BAD, file), '--passes', 'cleanup', '-o', join(folder, 'out.onnx')]).catch((error: Error) => ({ code: 1, stdout: '', stderr: error.message }));
    expect(result.code).not.toBe(0);
    expect(readdirSync(folder)).toEqual([]);
  });

  it('unknown-op.onnx: loads and inspects (an op without a schema is kept as is)', async () => {
    const model = loadModelSync(join(BAD, 'unknown-op.onnx'));
    const node = model.graph.nodes.find((n) => n.opType === 'Frobnicate')!;
    expect(node.domain).toBe('com.example');
    expect(opSchema(node.opType, node.domain)).toBeUndefined();
    expect(model.opsetImports.get('com.example')).toBe(1);
    const result = await run(inspectCommand, [join(BAD, 'unknown-op.onnx'), '--json']);
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout).ops).toEqual([{ op: 'MatMul', count: 1 }, { op: 'com.example.Frobnicate', count: 1 }]);
  });

  it('unknown-op.onnx: the verifier reports unknown-op (what the compile path must reject)', () => {
    const model = loadModelSync(join(BAD, 'unknown-op.onnx'));
    expect(verifyModel(model).map((issue) => issue.code)).toContain('unknown-op');
    expect(() => assertValid(model)).toThrow(expect.objectContaining({ code: 'verify', message: expect.stringContaining("op 'Frobnicate' unknown in domain 'com.example'") }));
    // The unknown op is its only issue.
    expect(verifyModel(model).filter((issue) => issue.code !== 'unknown-op')).toEqual([]);
  });

  it('refuses an escaping location before touching the file it names', () => {
    // ../outside.bin does not exist: the error is the escape, not a missing file.
    expect(existsSync(join(BAD, '..', 'outside.bin'))).toBe(false);
    expect(() => loadModelSync(join(BAD, 'escape-parent.onnx'))).toThrow(/escapes the model's folder/);
  });
});
