/**
 * The text-IR parser: print → parse → print is the identity on the fixtures' dumps (summaries, shapes,
 * literals); a literal dump is lossless (same tensor bytes, same ONNX Runtime outputs); errors are located.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { renderDiagnostic } from '../../src/diagnostics.js';
import { Graph, Model } from '../../src/ir/core.js';
import { DataType } from '../../src/ir/dtype.js';
import { IrError } from '../../src/ir/errors.js';
import { parseModelText } from '../../src/ir/parser.js';
import { printModel } from '../../src/ir/printer.js';
import { loadModelSync } from '../../src/ir/serde.js';
import { Tensor } from '../../src/ir/tensor.js';
import { OrtExecutor } from '../../src/runtime/ir-executor.js';

const FIXTURES = join(import.meta.dirname, '..', 'fixtures');

function parse(text: string): Model {
  const parsed = parseModelText(text, 'test.ir');
  if (!parsed.model) throw new Error(renderDiagnostic(parsed.diagnostics[0]!, new Map([['test.ir', text]])));
  return parsed.model;
}

/** The first line of the rendered diagnostic for `text`: `test.ir:line:col: error[E…]: message`. */
function errorOf(text: string): string {
  const parsed = parseModelText(text, 'test.ir');
  expect(parsed.model).toBeUndefined();
  return renderDiagnostic(parsed.diagnostics[0]!, new Map([['test.ir', text]])).split('\n')[0]!;
}

function bytesOf(model: Model): Map<string, string> {
  return new Map([...model.graph.initializers].map(([name, value]) => [name, Buffer.from(value.initializer!.bytes()).toString('hex')]));
}

describe('text IR parser', () => {
  const dit = loadModelSync(join(FIXTURES, 'dit-digits', 'model.onnx'));

  it('reads the dit-digits dump back to the same text, with tensor summaries and with shapes only', () => {
    for (const tensors of ['content', 'shape'] as const) {
      const text = printModel(dit, { tensors });
      const model = parse(text);
      expect(printModel(model, { tensors })).toBe(text);
      expect(model.graph.nodes.length).toBe(dit.graph.nodes.length);
      expect(model.graph.initializers.size).toBe(dit.graph.initializers.size);
    }
    expect(printModel(dit)).toMatch(/init %\S+ = f32\[\d+x\d+\] sha1:[0-9a-f]{12} min:\S+ max:\S+\n/);
  });

  it('keeps summarized tensors opaque: they print their summary again and refuse to be read', () => {
    const model = parse(printModel(dit));
    const weight = [...model.graph.initializers.values()].find((v) => v.initializer!.size > 8)!;
    expect(() => weight.initializer!.bytes()).toThrow(IrError);
    expect(() => weight.initializer!.bytes()).toThrow(/contents are unknown/);
    expect(() => printModel(model, { tensors: 'literal' })).toThrow(/cannot be printed as a literal/);
  });

  it('reads a literal dump of the digits classifier losslessly: same bytes, same ONNX Runtime outputs', async () => {
    const classifier = loadModelSync(join(FIXTURES, 'digits-classifier', 'classifier.onnx'));
    const text = printModel(classifier, { tensors: 'literal' });
    const model = parse(text);
    expect(printModel(model, { tensors: 'literal' })).toBe(text);
    expect(bytesOf(model)).toEqual(bytesOf(classifier));
    const raw = readFileSync(join(FIXTURES, 'digits-classifier', 'reference_in_x.bin'));
    const feeds = { x: { dtype: 'float32' as const, dims: [8, 1, 16, 16], data: new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength)) } };
    const outputs = async (m: Model) => {
      const prepared = await new OrtExecutor().prepare(m, ['logits', 'features']);
      try {
        return await prepared.run(feeds);
      } finally {
        await prepared.release();
      }
    };
    const [before, after] = [await outputs(classifier), await outputs(model)];
    expect(Array.from(after.logits!.data as Float32Array)).toEqual(Array.from(before.logits!.data as Float32Array));
    expect(Array.from(after.features!.data as Float32Array)).toEqual(Array.from(before.features!.data as Float32Array));
  });

  it('writes literals exactly: float32 edge values, int64 beyond 2^53, int4, bool, float16 bytes, typed attributes', () => {
    const graph = new Graph('literals');
    const x = graph.addInput('x', { elemType: DataType.FLOAT, shape: ['batch', null, 'n + 1', 3] });
    const f32 = graph.addInitializer('f32', Tensor.fromFloat32([2, 3], Float32Array.of(Math.fround(0.1), -0, NaN, -Infinity, 3.4028234663852886e38, 1.401298464324817e-45)));
    const i64 = graph.addInitializer('i64', Tensor.fromInt64([3], [2n ** 62n + 1n, -(2n ** 63n), 2n ** 63n - 1n]));
    const i4 = graph.addInitializer('i4', Tensor.fromBytes(DataType.INT4, [3], Uint8Array.of(0x8f, 0x07)));
    graph.addInitializer('flags', Tensor.fromBytes(DataType.BOOL, [2], Uint8Array.of(1, 0)));
    graph.addInitializer('half', Tensor.fromBytes(DataType.FLOAT16, [2], Uint8Array.of(0x00, 0x3c, 0x00, 0xbc)));
    const node = graph.addNode({
      opType: 'Custom',
      domain: 'com.example',
      inputs: [x, undefined, f32, i64, i4],
      outputs: ['y', ''],
      name: 'odd name "quoted"',
      attributes: {
        alpha: { kind: 'float', value: 1 },
        big: { kind: 'ints', value: [2n ** 60n + 1n, -1] },
        labels: { kind: 'strings', value: ['a', 'b,"c"'] },
        scales: { kind: 'floats', value: [Math.fround(0.3), 2] },
        value: { kind: 'tensor', value: Tensor.fromInt32([2], [7, -7]) },
      },
    });
    node.outputs[0]!.type = { elemType: DataType.FLOAT, shape: [2, 3] };
    graph.outputs.push(node.outputs[0]!);
    const model = new Model(graph);
    model.opsetImports.set('', 21);
    model.opsetImports.set('com.example', 1);
    model.producerName = 'qcompile test';
    model.producerVersion = '0.1';

    const text = printModel(model, { tensors: 'literal' });
    expect(text).toContain('init %f32 = f32[2x3] [0.1, -0, NaN, -Infinity, 3.4028235e+38, 1.401298e-45]');
    expect(text).toContain('init %i64 = i64[3] [4611686018427387905, -9223372036854775808, 9223372036854775807]');
    expect(text).toContain('init %half = f16[2] hex:003c00bc');
    expect(text).toContain('{alpha=1.0, big=[1152921504606846977, -1], labels=["a", "b,\\"c\\""], scales=[0.3, 2.0], value=i32[2] [7, -7]}');
    expect(text).toContain('input %x: f32[batch,?,"n + 1",3]');
    const again = parse(text);
    expect(printModel(again, { tensors: 'literal' })).toBe(text);
    expect(bytesOf(again)).toEqual(bytesOf(model));
    const read = again.graph.nodes[0]!;
    expect([read.domain, read.opType, read.name, read.inputs[1], read.outputs.length]).toEqual(['com.example', 'Custom', 'odd name "quoted"', undefined, 2]);
    expect(Object.fromEntries(read.attributes)).toEqual(Object.fromEntries(node.attributes));
    expect([again.producerName, again.producerVersion, again.irVersion, again.opsetImports.get('com.example')]).toEqual(['qcompile test', '0.1', 8, 1]);

    // The default dump rounds small tensors (f16 as numbers): it still reads back to its own text.
    const summary = printModel(model);
    expect(summary).toContain('init %half = f16[2] [1, -1]');
    expect(summary).toContain('init %i64 = i64[3] [4611686018427388000, -9223372036854776000, 9223372036854776000]');
    expect(printModel(parse(summary))).toBe(summary);
  });

  it('reports errors at line:col with a code', () => {
    const head = 'model ir_version=8 opsets={ai.onnx:17}\ngraph "g" {\n  input %x: f32[2]\n';
    expect(errorOf(`${head}  %y = Relu(%nope) @"r"\n  output %y: ?\n}\n`)).toBe('test.ir:4:13: error[E101]: %nope is not defined before this use');
    expect(errorOf(`${head}  input %x: f32[2]\n}\n`)).toBe('test.ir:4:9: error[E102]: %x is already defined');
    expect(errorOf(`${head}  init %w = f32[2x2] [1, 2, 3]\n}\n`)).toBe('test.ir:4:22: error[E103]: f32[2x2] holds 4 values, the literal has 3');
    expect(errorOf(`${head}  init %w = i8[2] [1, 300]\n}\n`)).toBe('test.ir:4:23: error[E103]: 300 is not a i8 value');
    expect(errorOf(`${head}  init %w = q7[2] [1, 2]\n}\n`)).toBe("test.ir:4:13: error[E104]: unknown element type 'q7'");
    expect(errorOf(`${head}  %y = Relu(%x) "r"\n}\n`)).toBe("test.ir:4:17: error[E100]: expected '@', found '\"r\"'");
    expect(errorOf(`${head}  %y = If(%x) {then_branch=<graph sha1:0123456789ab>} @"if"\n}\n`)).toBe('test.ir:4:28: error[E105]: a subgraph is printed as its hash and cannot be read back');
    expect(errorOf(`${head}  output %x: f32[3]\n}\n`)).toBe('test.ir:4:14: error[E106]: output type f32[3] differs from the type of %x, f32[2]');
    expect(errorOf(`${head}}\ntrailing\n`)).toBe("test.ir:5:1: error[E100]: expected the end of the text, found 'trailing'");
  });
});
