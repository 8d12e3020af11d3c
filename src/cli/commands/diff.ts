/**
 * `qcompile diff FP.onnx QUANT.onnx`: runs both models in ONNX Runtime on the same inputs and reports SQNR
 * and max-abs error of every graph output and of each quantized layer's output (the consumers of weight
 * DequantizeLinear nodes; passes keep value names, so the same names exist in both models).
 */
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Model } from '../../ir/core.js';
import { DataType } from '../../ir/dtype.js';
import { Op, isOp } from '../../ir/ops.js';
import { loadModelSync } from '../../ir/serde.js';
import type { HostTensor, TensorMap } from '../../ir/executor.js';
import { OrtExecutor } from '../../runtime/ir-executor.js';
import { manifestFile } from '../../runtime/host-tensor.js';
import { maxAbsError, sqnrDb } from '../../runtime/metrics.js';
import type { CliIO, Command } from '../command.js';

const USAGE = `Usage: qcompile diff FP.onnx QUANT.onnx [--inputs DIR] [--seed N] [--batch N] [--json]

Runs both models in ONNX Runtime on the same inputs; reports SQNR (dB) and max |error| of each output and
of each quantized layer's output.

Options:
  --inputs DIR   read inputs from DIR/reference_manifest.json (a fixture's reference_* files)
  --seed N       seed of the random inputs when --inputs is not given (default 0)
  --batch N      size of symbolic dimensions of random inputs (default 2)
  --json         print the report as JSON
`;

/** One compared value. */
interface Comparison {
  name: string;
  kind: 'output' | 'layer';
  sqnrDb: number;
  maxAbs: number;
}

export const diffCommand: Command = {
  name: 'diff',
  summary: 'compare a quantized model with its float original in ONNX Runtime (SQNR, max error per layer)',
  usage: USAGE,
  async run(argv: string[], io: CliIO): Promise<number> {
    const positional: string[] = [];
    let inputsDir: string | undefined;
    let seed = 0;
    let batch = 2;
    let json = false;
    for (let i = 0; i < argv.length; i++) {
      const arg = argv[i]!;
      const next = () => {
        const value = argv[++i];
        if (value === undefined) throw new Error(`${arg} needs a value`);
        return value;
      };
      if (arg === '--inputs') inputsDir = resolve(io.cwd, next());
      else if (arg === '--seed') seed = Number(next());
      else if (arg === '--batch') batch = Number(next());
      else if (arg === '--json') json = true;
      else if (arg.startsWith('-')) {
        io.stderr(`qcompile diff: error: unknown option '${arg}'\n${USAGE}`);
        return 2;
      } else positional.push(arg);
    }
    if (positional.length !== 2 || !Number.isInteger(seed) || !(batch > 0)) {
      io.stderr(`qcompile diff: error: expected FP.onnx and QUANT.onnx\n${USAGE}`);
      return 2;
    }
    const fp = loadModelSync(resolve(io.cwd, positional[0]!));
    const quant = loadModelSync(resolve(io.cwd, positional[1]!));
    const feeds = inputsDir ? manifestInputs(inputsDir) : randomInputs(fp, seed, batch);
    const outputs = fp.graph.outputs.map((v) => v.name);
    const layers = quantizedLayerOutputs(quant).filter((name) => fp.graph.findValue(name) && !outputs.includes(name));
    const fetch = [...outputs, ...layers];
    const executor = new OrtExecutor();
    const results: TensorMap[] = [];
    for (const model of [fp, quant]) {
      const prepared = await executor.prepare(model, fetch);
      try {
        results.push(await prepared.run(feeds));
      } finally {
        await prepared.release();
      }
    }
    const comparisons: Comparison[] = fetch.map((name) => ({
      name,
      kind: outputs.includes(name) ? 'output' : 'layer',
      ...compare(results[0]![name]!, results[1]![name]!),
    }));
    const source = inputsDir ? `${join(inputsDir, 'reference_manifest.json')}` : `random (seed ${seed}, batch ${batch})`;
    if (json) io.stdout(JSON.stringify({ inputs: source, comparisons }, null, 2) + '\n');
    else io.stdout(table(source, comparisons));
    return 0;
  },
};

/** Names of the outputs of nodes that read a dequantized constant weight, in graph order. */
function quantizedLayerOutputs(model: Model): string[] {
  const names: string[] = [];
  for (const node of model.graph.nodes) {
    if (!isOp(node, Op.DequantizeLinear) || !node.inputs[0]?.isConstant) continue;
    for (const use of node.outputs[0]!.uses) names.push(use.node.outputs[0]!.name);
  }
  const order = new Map(model.graph.nodes.flatMap((n, i) => n.outputs.map((o) => [o.name, i] as const)));
  return [...new Set(names)].sort((a, b) => order.get(a)! - order.get(b)!);
}

function compare(reference: HostTensor, test: HostTensor): { sqnrDb: number; maxAbs: number } {
  const a = Array.from(reference.data as ArrayLike<number | bigint>, Number);
  const b = Array.from(test.data as ArrayLike<number | bigint>, Number);
  return { sqnrDb: sqnrDb(a, b), maxAbs: maxAbsError(a, b) };
}

function table(source: string, comparisons: Comparison[]): string {
  const width = Math.max(5, ...comparisons.map((c) => c.name.length + (c.kind === 'output' ? 9 : 0)));
  const lines = [`inputs: ${source}`, `${'value'.padEnd(width)}  ${'SQNR dB'.padStart(8)}  ${'max abs'.padStart(10)}`];
  for (const c of comparisons) {
    const label = c.kind === 'output' ? `${c.name} (output)` : c.name;
    lines.push(`${label.padEnd(width)}  ${c.sqnrDb.toFixed(2).padStart(8)}  ${c.maxAbs.toExponential(2).padStart(10)}`);
  }
  return lines.join('\n') + '\n';
}

/** Reads inputs named in `dir/reference_manifest.json` ({inputs: {name: {file, dtype, shape}}}). */
function manifestInputs(dir: string): TensorMap {
  const manifestPath = join(dir, 'reference_manifest.json');
  const manifest = JSON.parse(readFileSync(manifestPath, 'utf8')) as {
    inputs: Record<string, { file: string; dtype: string; shape: number[] }>;
  };
  const feeds: TensorMap = {};
  for (const [name, entry] of Object.entries(manifest.inputs)) {
    const raw = readFileSync(manifestFile(manifestPath, entry.file));
    const buffer = raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength);
    const make: Record<string, () => HostTensor['data']> = {
      float32: () => new Float32Array(buffer),
      int64: () => new BigInt64Array(buffer),
      int32: () => new Int32Array(buffer),
    };
    const data = make[entry.dtype];
    if (!data) throw new Error(`${entry.file}: unsupported dtype '${entry.dtype}'`);
    feeds[name] = { dtype: entry.dtype as HostTensor['dtype'], dims: entry.shape, data: data() };
  }
  return feeds;
}

/** Seeded inputs from the model's input types: N(0,1) floats, integers in [0, 10); symbolic dims = batch. */
function randomInputs(model: Model, seed: number, batch: number): TensorMap {
  let state = (seed * 2654435761 + 1) >>> 0;
  const random = () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return (state + 0.5) / 2 ** 32;
  };
  const feeds: TensorMap = {};
  for (const input of model.graph.inputs) {
    if (input.isConstant || !input.type) continue;
    const dims = (input.type.shape ?? []).map((d) => (typeof d === 'number' ? d : batch));
    const count = dims.reduce((a, b) => a * b, 1);
    switch (input.type.elemType) {
      case DataType.FLOAT:
        feeds[input.name] = { dtype: 'float32', dims, data: Float32Array.from({ length: count }, () => Math.sqrt(-2 * Math.log(random())) * Math.cos(2 * Math.PI * random())) };
        break;
      case DataType.INT64:
        feeds[input.name] = { dtype: 'int64', dims, data: BigInt64Array.from({ length: count }, () => BigInt(Math.floor(random() * 10))) };
        break;
      case DataType.INT32:
        feeds[input.name] = { dtype: 'int32', dims, data: Int32Array.from({ length: count }, () => Math.floor(random() * 10)) };
        break;
      default:
        throw new Error(`input '${input.name}': cannot make random values of this type; use --inputs`);
    }
  }
  return feeds;
}
