import { mkdtempSync, renameSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Op } from '../../src/ir/ops.js';
import { printModel } from '../../src/ir/printer.js';
import { encodeModel, loadModelSync, saveModel } from '../../src/ir/serde.js';
import { layerStamps, layersOf } from '../../src/quant/identity.js';
import { OrtExecutor } from '../../src/runtime/ir-executor.js';
import { DIT_DIGITS, referenceEps } from '../passes/fixture.js';

const executor = new OrtExecutor({ optimization: 'basic' });

describe('Model.clone', () => {
  it('copies the structure exactly, node metadata (the layer stamps) included: the clone encodes to the same bytes', () => {
    const model = loadModelSync(`${DIT_DIGITS}/model.onnx`);
    const stamped = layersOf(model);
    const clone = model.clone();
    expect(Buffer.from(encodeModel(clone)).equals(Buffer.from(encodeModel(model)))).toBe(true);
    expect(layerStamps(clone).map((l) => [l.name, l.role])).toEqual(stamped.map((l) => [l.name, l.role]));
  });

  it('reads no external bytes, shares the tensors, and leaves the original as it was when the clone is rewritten', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'qc-clone-'));
    saveModel(loadModelSync(`${DIT_DIGITS}/model.onnx`), join(dir, 'model.onnx'), { externalData: 'always' });
    const model = loadModelSync(join(dir, 'model.onnx'));
    const external = [...model.graph.initializers.values()].filter((v) => v.initializer!.isExternal);
    expect(external.length).toBeGreaterThan(10);
    const printed = printModel(model, { tensors: 'shape' });
    const outputUses = model.graph.outputs[0]!.uses.length;

    // Without its data file, any read of external bytes would throw: cloning must not read any.
    renameSync(join(dir, 'model.onnx.data'), join(dir, 'hidden.data'));
    const clone = model.clone();
    renameSync(join(dir, 'hidden.data'), join(dir, 'model.onnx.data'));
    // New values over the same tensor objects (compared as booleans: a Value's graph is too large to print).
    expect(external.every((v) => clone.graph.initializers.get(v.name) !== v)).toBe(true);
    expect(external.every((v) => clone.graph.initializers.get(v.name)!.initializer === v.initializer)).toBe(true);
    expect(clone.baseDir).toBe(model.baseDir);
    expect(await referenceEps(clone, executor)).toEqual(await referenceEps(model, executor));

    // Rewrite the clone: a Relu on the output, a node's input rewired, an attribute list and the metadata changed.
    const graph = clone.graph;
    const relu = graph.addNode({ opType: Op.Relu, inputs: [graph.outputs[0]], outputs: ['relu_out'] });
    graph.outputs[0] = relu.outputs[0]!;
    const withInts = graph.nodes.find((n) => [...n.attributes.values()].some((a) => a.kind === 'ints'))!;
    const [key, attribute] = [...withInts.attributes].find(([, a]) => a.kind === 'ints')!;
    const original = structuredClone(model.graph.nodes.find((n) => n.name === withInts.name)!.attributes.get(key));
    if (attribute.kind === 'ints') attribute.value.push(7);
    clone.metadataProps.set('cloned', 'yes');
    clone.opsetImports.set('', 21);
    expect(printModel(clone, { tensors: 'shape' })).not.toBe(printed);
    expect(printModel(model, { tensors: 'shape' })).toBe(printed);
    expect(model.graph.nodes.find((n) => n.name === withInts.name)!.attributes.get(key)).toEqual(original);
    expect(model.graph.outputs[0]!.uses).toHaveLength(outputUses);
    expect(model.metadataProps.has('cloned')).toBe(false);
    expect(model.opset).not.toBe(21);
  });
});
