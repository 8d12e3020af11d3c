import { mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Graph, Model } from '../../src/ir/core.js';
import { DataType } from '../../src/ir/dtype.js';
import { Op } from '../../src/ir/ops.js';
import { Tensor } from '../../src/ir/tensor.js';
import { decodeModel, encodeModel } from '../../src/ir/serde.js';
import { Artifacts, CALIBRATION_BATCHES, MissingArtifactError, type ArtifactKey } from '../../src/passes/artifacts.js';
import { definePass, type PassContext } from '../../src/passes/pass.js';
import { PassFailure, runPipeline } from '../../src/passes/pass-manager.js';
import { PipelineError, parsePipeline, printPipeline } from '../../src/passes/pipeline.js';
import { diffLines, unifiedDiff } from '../../src/passes/line-diff.js';

function appendRelu(model: Model): void {
  const graph = model.graph;
  const relu = graph.addNode({ opType: Op.Relu, inputs: [graph.outputs[0]], outputs: ['r'] });
  graph.outputs[0] = relu.outputs[0]!;
}

const addRelu = definePass({
  name: 'add-relu',
  summary: 'appends a Relu to the first output',
  options: { count: { type: 'int', description: 'how many', default: 1 }, tag: { type: 'string', description: 't', choices: ['a', 'b'] } },
  run(model, options) {
    // Typed from the specs: count is a number (defaulted), tag 'a' | 'b' | undefined.
    const count: number = options.count;
    const tag: 'a' | 'b' | undefined = options.tag;
    for (let i = 0; i < count; i++) appendRelu(model);
    return { modified: true, statistics: { added: count, ...(tag ? { tag } : {}) } };
  },
});
const noop = definePass({
  name: 'noop',
  summary: 'does nothing',
  options: { roles: { type: 'string-list', description: 'r' }, scale: { type: 'number', description: 's', default: 2.4 }, on: { type: 'boolean', description: 'b' } },
  run: () => ({ modified: false, statistics: {} }),
});
const explode = definePass({
  name: 'explode',
  summary: 'changes the model, then fails',
  options: {},
  run(model) {
    appendRelu(model);
    throw new Error('boom');
  },
});
const MEASURED: ArtifactKey<number> = { name: 'measured', producer: 'measure' };
const measure = definePass({
  name: 'measure',
  summary: 'produces an artifact',
  options: {},
  produces: [MEASURED],
  run(_model, _options, context) {
    context.artifacts.set(MEASURED, 42);
    return { modified: false, statistics: {} };
  },
});
const consume = definePass({
  name: 'consume',
  summary: 'requires the measured artifact and the calibration batches',
  options: {},
  requires: [CALIBRATION_BATCHES, MEASURED],
  run(_model, _options, context) {
    return { modified: false, statistics: { measured: context.artifacts.require(MEASURED, 'consume') } };
  },
});
const registry = [addRelu, noop, explode, measure, consume];

function tiny(): Model {
  const graph = new Graph('g');
  const x = graph.addInput('x', { elemType: DataType.FLOAT, shape: [2, 3] });
  const w = graph.addInitializer('w', Tensor.fromFloat32([3, 2], Float32Array.of(1, 2, 3, 4, 5, 6)));
  const mm = graph.addNode({ opType: Op.MatMul, inputs: [x, w], outputs: ['y'] });
  graph.outputs.push(mm.outputs[0]!);
  const model = new Model(graph);
  model.opsetImports.set('', 17);
  return model;
}

function context(): PassContext {
  return { seed: 0, plan: new Map(), artifacts: new Artifacts(), progress: () => undefined, log: () => undefined };
}

describe('pipeline text', () => {
  it('round-trips parse → print → parse, canonically', () => {
    const text = ' noop{ roles = attn.qkv|mlp.fc1 , scale=0.5,on=true} , add-relu{count=2},explode';
    const first = parsePipeline(text, registry);
    const printed = printPipeline(first);
    expect(printed).toBe('noop{on=true,roles=attn.qkv|mlp.fc1,scale=0.5},add-relu{count=2},explode');
    const second = parsePipeline(printed, registry);
    expect(second.map((e) => [e.pass.name, e.options])).toEqual(first.map((e) => [e.pass.name, e.options]));
    expect(parsePipeline('', registry)).toEqual([]);
  });

  it('reports bad text with an offset and a suggestion', () => {
    const fail = (text: string) => {
      try {
        parsePipeline(text, registry);
      } catch (error) {
        expect(error).toBeInstanceOf(PipelineError);
        return `${(error as PipelineError).offset}: ${(error as Error).message}`;
      }
      throw new Error('expected a PipelineError');
    };
    expect(fail('noop,add-relo')).toBe("5: unknown pass 'add-relo' (did you mean 'add-relu'?)");
    expect(fail('add-relu{cont=2}')).toBe("9: pass 'add-relu' has no option 'cont' (did you mean 'count'?)");
    expect(fail('add-relu{count=two}')).toBe("15: option add-relu.count expects an integer, got 'two'");
    expect(fail('add-relu{tag=c}')).toBe("13: option add-relu.tag expects one of a|b, got 'c'");
    expect(fail('add-relu{count=1')).toBe("16: unclosed '{' in the options of 'add-relu'");
    expect(fail('noop,,noop')).toBe('5: expected a pass name');
    expect(fail('add-relu{count=1,count=2}')).toBe("17: option 'count' of 'add-relu' is given twice");
  });

  it("rejects a step whose required artifacts neither an earlier step produces nor the caller provides, at the step's offset", () => {
    const provided = [CALIBRATION_BATCHES];
    const fail = (text: string, environment = {}) => {
      try {
        parsePipeline(text, registry, environment);
      } catch (error) {
        expect(error).toBeInstanceOf(PipelineError);
        return `${(error as PipelineError).offset}: ${(error as Error).message}`;
      }
      throw new Error('expected a PipelineError');
    };
    expect(fail('noop, consume')).toBe(
      "6: pass 'consume' requires 'calibration-batches' (from the caller (compile builds them from the recipe)), 'measured' (from measure), which no earlier step produces",
    );
    expect(fail('noop,consume,measure', { provided })).toBe("5: pass 'consume' requires 'measured' (from measure), which no earlier step produces");
    expect(fail('measure,consume')).toContain("requires 'calibration-batches'");
    expect(parsePipeline('measure,noop,consume', registry, { provided }).map((e) => e.pass.name)).toEqual(['measure', 'noop', 'consume']);
  });
});

describe('line diff', () => {
  it('produces an edit script that rebuilds both sides', () => {
    let seed = 7;
    const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    for (let trial = 0; trial < 300; trial++) {
      const a = Array.from({ length: Math.floor(random() * 10) }, () => 'abc'[Math.floor(random() * 3)]!);
      const b = Array.from({ length: Math.floor(random() * 10) }, () => 'abc'[Math.floor(random() * 3)]!);
      const edits = diffLines(a, b);
      expect(edits.filter((e) => e.kind !== 'insert').map((e) => e.line)).toEqual(a);
      expect(edits.filter((e) => e.kind !== 'delete').map((e) => e.line)).toEqual(b);
    }
  });

  it('prints unified hunks', () => {
    const a = 'a\nb\nc\nd\ne\nf\ng\nh\ni\n';
    const b = 'a\nB\nc\nd\ne\nf\ng\nh\ni\nj\n';
    expect(unifiedDiff(a, b, 'x', 'y', 1)).toBe('--- x\n+++ y\n@@ -1,3 +1,3 @@\n a\n-b\n+B\n c\n@@ -9,1 +9,2 @@\n i\n+j\n');
    expect(unifiedDiff(a, a, 'x', 'y')).toBe('');
  });
});

describe('pass manager', () => {
  it('prints IR after all, after changes and after a named pass', async () => {
    const printed: string[] = [];
    const entries = parsePipeline('noop,add-relu,noop', registry);
    const run = (instrumentation: object) => {
      printed.length = 0;
      return runPipeline(tiny(), entries, context(), { print: (t) => printed.push(t), ...instrumentation });
    };
    await run({ printIrAfterAll: true });
    expect(printed.map((t) => t.split('\n')[0])).toEqual([
      '// -----// IR Dump After noop (1) //----- //',
      '// -----// IR Dump After add-relu (2) //----- //',
      '// -----// IR Dump After noop (3) //----- //',
    ]);
    await run({ printIrAfterChange: true });
    expect(printed).toHaveLength(1);
    expect(printed[0]).toContain('Relu(%y)');
    const report = await run({ printIrAfter: ['noop'] });
    expect(printed).toHaveLength(2);
    expect(report.pipeline).toBe('noop,add-relu,noop');
    expect(report.passes.map((p) => [p.step, p.modified, p.statistics])).toEqual([
      ['noop{scale=2.4}', false, {}],
      ['add-relu{count=1}', true, { added: 1 }],
      ['noop{scale=2.4}', false, {}],
    ]);
  });

  it('writes numbered dumps with diffs, pipeline.json and timings.json', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'qc-dump-'));
    await runPipeline(tiny(), parsePipeline('add-relu{count=2},noop', registry), context(), { dumpDir: dir });
    expect(readdirSync(dir).sort()).toEqual(['00-input.ir', '01-add-relu.diff', '01-add-relu.ir', '02-noop.diff', '02-noop.ir', 'pipeline.json', 'timings.json']);
    const diff = readFileSync(join(dir, '01-add-relu.diff'), 'utf8');
    expect(diff).toContain('--- 00-input.ir\n+++ 01-add-relu.ir\n');
    expect(diff.split('\n').filter((l) => l.startsWith('+  %r'))).toHaveLength(2);
    expect(readFileSync(join(dir, '02-noop.diff'), 'utf8')).toBe('');
    const pipeline = JSON.parse(readFileSync(join(dir, 'pipeline.json'), 'utf8'));
    expect(pipeline.pipeline).toBe('add-relu{count=2},noop');
    expect(pipeline.passes[0]).toEqual({ pass: 'add-relu', step: 'add-relu{count=2}', modified: true, statistics: { added: 2 } });
    expect(JSON.stringify(pipeline)).not.toContain('milliseconds');
    expect(JSON.stringify(pipeline)).not.toContain('peakRss');
    const timings = JSON.parse(readFileSync(join(dir, 'timings.json'), 'utf8'));
    expect(timings[0].pass).toBe('add-relu');
    // The process's high-water mark: this test process holds at least the test runner (tens of MB), never less.
    expect(timings[0].peakRssBytes).toBeGreaterThan(20e6);
    expect(timings[1].peakRssBytes).toBeGreaterThanOrEqual(timings[0].peakRssBytes);
  });

  it('fills defaults and hands artifacts from step to step; a programmatic step missing a required artifact fails naming its producer', async () => {
    const ctx = context();
    ctx.artifacts.set(CALIBRATION_BATCHES, []);
    const report = await runPipeline(tiny(), parsePipeline('measure,consume', registry, { provided: [CALIBRATION_BATCHES] }), ctx);
    expect(report.passes[1]!.statistics).toEqual({ measured: 42 });
    const failure = await runPipeline(tiny(), [{ pass: consume, options: {} }], context()).catch((e: unknown) => e);
    expect(failure).toBeInstanceOf(PassFailure);
    expect((failure as PassFailure).cause).toBeInstanceOf(MissingArtifactError);
    expect((failure as PassFailure).message).toBe("pass 'consume' (step 1) failed: consume needs the 'calibration-batches' artifact, which the caller (compile builds them from the recipe) produces");
  });

  it('fails with a reproducer: the failing step, its input model (encoded only on failure), the plan and the error', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'qc-repro-'));
    const ctx = context();
    ctx.plan.set('layer0', { layer: 'layer0', span: { file: 'test.qrecipe', offset: 3, length: 4 } });
    let encoded = 0;
    const encode = (model: Model) => {
      encoded++;
      return encodeModel(model);
    };
    const failure = await runPipeline(tiny(), parsePipeline('add-relu,noop,explode', registry), ctx, { reproducerDir: dir, serialize: encode }).catch((e: unknown) => e);
    expect(encoded).toBe(1);
    expect(failure).toBeInstanceOf(PassFailure);
    expect((failure as PassFailure).message).toBe(`pass 'explode' (step 3) failed: boom\nreproducer: ${dir}`);
    expect(readFileSync(join(dir, 'pipeline.txt'), 'utf8')).toBe('explode\n');
    expect(readFileSync(join(dir, 'error.txt'), 'utf8')).toMatch(/^Error: boom/);
    expect(JSON.parse(readFileSync(join(dir, 'plan.json'), 'utf8'))).toEqual([{ layer: 'layer0', span: { file: 'test.qrecipe', offset: 3, length: 4 } }]);
    // The reproducer's model is the input of the failing pass (after add-relu), not what it left (one more Relu).
    const input = decodeModel(readFileSync(join(dir, 'input.onnx')));
    expect(input.graph.nodes.map((n) => n.opType)).toEqual(['MatMul', 'Relu']);
  });

  it('fails the pass whose output does not verify', async () => {
    const verify = (model: Model) => {
      if (model.graph.nodes.length > 1) throw new Error('too many nodes');
    };
    const failure = await runPipeline(tiny(), parsePipeline('noop,add-relu', registry), context(), { verify }).catch((e: unknown) => e);
    expect((failure as PassFailure).pass).toBe('add-relu');
    expect((failure as PassFailure).message).toContain('too many nodes');
  });
});
