/**
 * Test helper: copies of the fixture models whose every name means nothing (inputs, outputs, initializers,
 * node outputs and nodes renamed to opaque strings), written where a test lays them out, so structural
 * discovery is checked against the names optimum would give.
 */
import { copyFileSync, mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { Model } from '../../../src/ir/core.js';
import { loadModelSync, saveModel } from '../../../src/ir/serde.js';

/** Renames every value and node of `model` in place; returns the old → new input and output names. */
export function scrambleNames(model: Model): Map<string, string> {
  const graph = model.graph;
  const renamed = new Map<string, string>();
  let i = 0;
  for (const value of graph.inputs) {
    const name = `in_${(i++ * 7919) % 1000}`;
    renamed.set(value.name, name);
    value.name = name;
  }
  const initializers = [...graph.initializers.values()];
  graph.initializers.clear();
  for (const value of initializers) {
    value.name = `onnx::Opaque_${i++}`;
    graph.initializers.set(value.name, value);
  }
  for (const node of graph.nodes) {
    node.name = `n${i++}`;
    for (const output of node.outputs) {
      const name = `v${i++}`;
      if (output.isGraphOutput) renamed.set(output.name, name);
      output.name = name;
    }
  }
  return renamed;
}

/** Saves a scrambled copy of `source` as `<temp>/<relative>`, copying `extras` (paths relative to the source's folder root) beside it. */
export function scrambledCopy(source: string, relative: string, extras: { from: string; to: string }[] = []): { path: string; root: string; names: Map<string, string> } {
  const model = loadModelSync(source);
  const names = scrambleNames(model);
  const root = mkdtempSync(join(tmpdir(), 'qc-scrambled-'));
  const path = join(root, relative);
  mkdirSync(dirname(path), { recursive: true });
  saveModel(model, path);
  for (const { from, to } of extras) {
    mkdirSync(dirname(join(root, to)), { recursive: true });
    copyFileSync(from, join(root, to));
  }
  return { path, root, names };
}
