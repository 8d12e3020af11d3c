/**
 * `qcompile inspect MODEL [--json] [--resolution N]`: what a model is (opsets, I/O, op histogram, parameters
 * by dtype, external data), the weighted layers layer discovery finds in it, and its diffusion interface
 * (latent, timestep, conditioning, output layout, prediction — each fact with its source). Reads no external
 * weight bytes.
 */
import { resolve } from 'node:path';
import type { Dim, Model, ValueType } from '../../ir/core.js';
import { dataTypeName } from '../../ir/dtype.js';
import { IrError } from '../../ir/errors.js';
import { layerStamps } from '../../quant/identity.js';
import { discoverLayers, layerGeometry } from '../../quant/layers.js';
import { loadModelSync } from '../../ir/serde.js';
import { InterfaceError, findDiffusionInterface, type DiffusionInterface } from '../../runtime/diffusion/interface.js';
import { ScheduleError } from '../../runtime/diffusion/schedule-math.js';
import type { CliIO, Command } from '../command.js';
import { formatBytes } from '../format.js';

const USAGE = `Usage: qcompile inspect MODEL [--json] [--resolution N]

Prints opsets, IR version, producer, inputs and outputs, the op histogram, parameter counts and bytes by
dtype, external data files, the layer table (structural name, role, op, weight shape, in->out, block), and
the diffusion interface: latent, timestep, conditioning inputs, output layout and prediction, each with
where it came from (the schedule.json sidecar, the pipeline folder, the graph).

Options:
  --json            print everything as one JSON object
  --resolution N    the latent's side when the model's height and width are dynamic
`;

/** The JSON shape of `inspect --json` (keys in this order). */
export interface InspectReport {
  file: string;
  irVersion: number;
  opsets: { domain: string; version: number }[];
  producer: { name: string; version: string };
  inputs: { name: string; dtype: string; shape: Dim[] | null }[];
  outputs: { name: string; dtype: string; shape: Dim[] | null }[];
  nodes: number;
  ops: { op: string; count: number }[];
  parameters: { total: number; bytes: number; byDtype: { dtype: string; count: number; bytes: number }[] };
  externalData: { file: string; tensors: number; bytes: number; fileBytes: number }[];
  layers: { index: number; name: string; role: string; op: string; weightShape: number[]; inChannels: number; outChannels: number; block: number | null; quantized: boolean }[];
  /** The diffusion interface, or why there is none (a classifier, a missing fact). */
  diffusion: DiffusionInterface | { error: string };
}

/** Builds the inspect report of a loaded model read from `path` (no external bytes are read). */
export function inspectModel(model: Model, file: string, path: string, resolution?: number): InspectReport {
  const io = (v: { name: string; type: ValueType | undefined }) => ({
    name: v.name,
    dtype: v.type ? dataTypeName(v.type.elemType) : '?',
    shape: v.type?.shape ? [...v.type.shape] : null,
  });
  const histogram = new Map<string, number>();
  for (const node of model.graph.nodes) {
    const key = node.domain ? `${node.domain}.${node.opType}` : node.opType;
    histogram.set(key, (histogram.get(key) ?? 0) + 1);
  }
  const byDtype = new Map<string, { count: number; bytes: number }>();
  const external = new Map<string, { fileBytes: number; tensors: number; bytes: number }>();
  let total = 0;
  let bytes = 0;
  for (const value of model.graph.initializers.values()) {
    const tensor = value.initializer!;
    const entry = byDtype.get(dataTypeName(tensor.dtype)) ?? { count: 0, bytes: 0 };
    entry.count += tensor.size;
    entry.bytes += tensor.byteLength;
    byDtype.set(dataTypeName(tensor.dtype), entry);
    total += tensor.size;
    bytes += tensor.byteLength;
    if (tensor.data.kind === 'external') {
      const ext = external.get(tensor.data.location) ?? { fileBytes: tensor.data.source.size, tensors: 0, bytes: 0 };
      ext.tensors++;
      ext.bytes += tensor.byteLength;
      external.set(tensor.data.location, ext);
    }
  }
  return {
    file,
    irVersion: model.irVersion,
    opsets: [...model.opsetImports.entries()].sort(([a], [b]) => compare(a, b)).map(([domain, version]) => ({ domain: domain || 'ai.onnx', version })),
    producer: { name: model.producerName, version: model.producerVersion },
    inputs: model.graph.inputs.filter((v) => !v.initializer).map(io),
    outputs: model.graph.outputs.map(io),
    nodes: model.graph.nodes.length,
    ops: [...histogram.entries()].sort(([a, x], [b, y]) => y - x || compare(a, b)).map(([op, count]) => ({ op, count })),
    parameters: {
      total,
      bytes,
      byDtype: [...byDtype.entries()].sort(([a], [b]) => compare(a, b)).map(([dtype, e]) => ({ dtype, count: e.count, bytes: e.bytes })),
    },
    externalData: [...external.entries()]
      .sort(([a], [b]) => compare(a, b))
      .map(([location, e]) => ({ file: location, tensors: e.tensors, bytes: e.bytes, fileBytes: e.fileBytes })),
    layers: inspectLayers(model),
    diffusion: inspectDiffusion(model, path, resolution),
  };
}

/** The diffusion interface; a fact it cannot find is reported, not raised: inspect describes any model. */
function inspectDiffusion(model: Model, path: string, resolution: number | undefined): InspectReport['diffusion'] {
  try {
    return findDiffusionInterface(model, path, resolution !== undefined ? { resolution } : {});
  } catch (error) {
    if (error instanceof InterfaceError || error instanceof ScheduleError) return { error: error.message };
    throw error;
  }
}

/** The layers a compiled model's stamps name, else (a float model) those discovery finds. */
function inspectLayers(model: Model): InspectReport['layers'] {
  const stamps = layerStamps(model);
  return (stamps.length > 0 ? stamps : discoverLayers(model)).map((layer, index) => {
    const geometry = layerGeometry(layer.node);
    // A kernel a backend lowered the layer to (MatMulNBits) states K and N as attributes; its weight is packed.
    const inChannels = geometry?.inChannels ?? layer.node.intAttr('K', 0);
    const outChannels = geometry?.outChannels ?? layer.node.intAttr('N', 0);
    return {
      index,
      name: layer.name,
      role: layer.role,
      op: layer.node.opType,
      weightShape: geometry?.weightShape ?? [inChannels, outChannels],
      inChannels,
      outChannels,
      block: layer.block ?? null,
      quantized: geometry ? geometry.quantized !== undefined : true,
    };
  });
}

/** Renders the report as aligned text. */
export function formatInspectReport(report: InspectReport): string {
  const shape = (s: Dim[] | null) => (s ? `[${s.map((d) => d ?? '?').join(', ')}]` : '[?]');
  const lines: string[] = [];
  lines.push(`model     ${report.file}`);
  lines.push(`ir        ${report.irVersion}`);
  lines.push(`opsets    ${report.opsets.map((o) => `${o.domain} ${o.version}`).join(', ')}`);
  lines.push(`producer  ${[report.producer.name, report.producer.version].filter(Boolean).join(' ') || '-'}`);
  lines.push('', 'inputs');
  for (const v of report.inputs) lines.push(`  ${v.name}  ${v.dtype}${shape(v.shape)}`);
  lines.push('outputs');
  for (const v of report.outputs) lines.push(`  ${v.name}  ${v.dtype}${shape(v.shape)}`);
  lines.push('', `ops (${report.nodes} nodes)`);
  lines.push(...table(report.ops.map((o) => [o.op, String(o.count)]), [false, true]).map((l) => `  ${l}`));
  lines.push('', `parameters  ${report.parameters.total.toLocaleString('en-US')} (${formatBytes(report.parameters.bytes)})`);
  lines.push(...table(report.parameters.byDtype.map((d) => [d.dtype, d.count.toLocaleString('en-US'), formatBytes(d.bytes)]), [false, true, true]).map((l) => `  ${l}`));
  if (report.externalData.length > 0) {
    lines.push('', 'external data');
    lines.push(...table(report.externalData.map((e) => [e.file, `${e.tensors} tensors`, formatBytes(e.bytes), `file ${formatBytes(e.fileBytes)}`]), [false, true, true, true]).map((l) => `  ${l}`));
  }
  lines.push('', `layers (${report.layers.length})`);
  const rows = report.layers.map((l) => [
    String(l.index), l.name, l.role, l.op + (l.quantized ? ' (q)' : ''), l.weightShape.join('x'), `${l.inChannels}->${l.outChannels}`, l.block === null ? '-' : String(l.block),
  ]);
  lines.push(...table([['#', 'name', 'role', 'op', 'weight', 'in->out', 'block'], ...rows], [true, false, false, false, false, true, true]).map((l) => `  ${l}`));
  lines.push('');
  if ('error' in report.diffusion) lines.push(`diffusion interface: none (${report.diffusion.error})`);
  else {
    lines.push('diffusion interface');
    lines.push(...table(report.diffusion.provenance.map((p) => [p.fact, p.source, p.detail ?? '']), [false, false, false]).map((l) => `  ${l}`));
  }
  return `${lines.join('\n')}\n`;
}

export const inspectCommand: Command = {
  name: 'inspect',
  summary: 'print a model\'s I/O, ops, parameters, external data and discovered layers',
  usage: USAGE,
  async run(argv: string[], io: CliIO): Promise<number> {
    if (argv.includes('--help') || argv.includes('-h')) {
      io.stdout(USAGE);
      return 0;
    }
    const positional: string[] = [];
    let json = false;
    let resolution: number | undefined;
    for (let i = 0; i < argv.length; i++) {
      const arg = argv[i]!;
      if (arg === '--json') json = true;
      else if (arg === '--resolution') {
        const value = argv[++i];
        resolution = value !== undefined && /^[1-9]\d{0,4}$/.test(value) ? Number(value) : undefined;
        if (resolution === undefined) {
          io.stderr(`qcompile inspect: error: --resolution takes a positive integer, got ${value === undefined ? 'nothing' : `'${value}'`}\n${USAGE}`);
          return 2;
        }
      } else if (arg.startsWith('-')) {
        io.stderr(`qcompile inspect: error: unknown option '${arg}'\n${USAGE}`);
        return 2;
      } else positional.push(arg);
    }
    if (positional.length !== 1) {
      io.stderr(`qcompile inspect: error: expected one MODEL\n${USAGE}`);
      return 2;
    }
    const file = positional[0]!;
    const path = resolve(io.cwd, file);
    let report: InspectReport;
    try {
      report = inspectModel(loadModelSync(path), file, path, resolution);
    } catch (error) {
      // IrErrors about the model name it by its resolved path: show it as the user wrote it.
      const message = error instanceof IrError && error.file ? (error.file === path ? `${file}${error.message.slice(path.length)}` : error.message) : `${file}: ${(error as Error).message}`;
      io.stderr(`qcompile: error: ${message.split('\n')[0]}\n`);
      return 1;
    }
    io.stdout(json ? `${JSON.stringify(report, null, 2)}\n` : formatInspectReport(report));
    return 0;
  },
};

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Pads columns to equal width; `right[i]` right-aligns column i. */
function table(rows: string[][], right: boolean[]): string[] {
  const widths = right.map((_, i) => Math.max(0, ...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((cell, i) => (right[i] ? cell.padStart(widths[i]!) : cell.padEnd(widths[i]!))).join('  ').trimEnd());
}
