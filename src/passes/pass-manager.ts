/**
 * Runs a pipeline of passes over one model with MLIR-style instrumentation: IR printing after all / changed /
 * named passes, numbered dumps with diffs under a dump folder, verification after each pass, and a reproducer
 * (input IR as .onnx, the plan, the failing step's pipeline text and its error) when a pass fails. It is the
 * one caller of `Pass.run`: options reach a pass with their defaults filled, after its required artifacts
 * were checked.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Model } from '../ir/core.js';
import { printModel, type PrintOptions } from '../ir/printer.js';
import { MissingArtifactError } from './artifacts.js';
import { unifiedDiff } from './line-diff.js';
import type { OptionSpecs, Pass, PassContext, PassOptions, PassResult, WrittenOptions } from './pass.js';
import { printEntry, printPipeline, withDefaults, type PipelineEntry } from './pipeline.js';
import type { QuantPlan } from '../quant/plan.js';

/** What the pass manager prints, dumps and checks around each pass. */
export interface Instrumentation {
  printIrAfterAll?: boolean;
  printIrAfterChange?: boolean;
  /** Print the IR after every pass with one of these names. */
  printIrAfter?: string[];
  /** Also print the IR when a pass fails (after the failure, as the pass left it). */
  printIrAfterFailure?: boolean;
  /** Where printed IR goes (the CLI passes stderr). */
  print?: (text: string) => void;
  /** Folder for `00-input.ir`, `NN-pass.ir`, `NN-pass.diff`, `pipeline.json`, `timings.json` (and `NN-pass.failed.ir`). */
  dumpDir?: string;
  /** Checks the model after every pass; throws to fail the pass. */
  verify?: (model: Model) => void;
  /** Folder for the reproducer of a failed pass (default: `<dumpDir>/reproducer` when dumping). */
  reproducerDir?: string;
  /**
   * Serializes a reproducer's input model (the caller injects the IR's serde, which passes never import).
   * Without it, or for a model with deferred weights, the reproducer names the source model and the pipeline.
   */
  serialize?: (model: Model) => Uint8Array;
  /** Path of the model the pipeline started from, named in reproducers that cannot copy it. */
  sourceModel?: string;
  /** How tensors appear in printed IR; 'shape' never reads weights (big models). */
  tensors?: PrintOptions['tensors'];
  /** Called before and after each pass (progress lines). */
  onPassStart?: (index: number, entry: PipelineEntry) => void;
  onPassEnd?: (index: number, record: PassRecord) => void;
}

/** One executed pass, as reported in `pipeline.json` (timings go to `timings.json`). */
export interface PassRecord {
  pass: string;
  /** The step as pipeline text, defaults filled in. */
  step: string;
  modified: boolean;
  statistics: Record<string, number | string>;
  /** Wall time in milliseconds (not part of pipeline.json, which must be reproducible). */
  milliseconds: number;
  /**
   * The process's peak resident memory when the pass ended: a high-water mark, so the pass where it rises is the
   * one that set it (not part of pipeline.json either).
   */
  peakRssBytes: number;
}

/** The process's peak resident set size so far, in bytes. */
export function peakRssBytes(): number {
  return process.resourceUsage().maxRSS * 1024;
}

/** The outcome of a whole pipeline. */
export interface PipelineReport {
  pipeline: string;
  passes: PassRecord[];
}

/** A pass failed: which step, why, and where its reproducer is. */
export class PassFailure extends Error {
  constructor(
    readonly pass: string,
    readonly index: number,
    override readonly cause: unknown,
    readonly reproducer: string | undefined,
  ) {
    const reason = cause instanceof Error ? cause.message : String(cause);
    super(`pass '${pass}' (step ${index + 1}) failed: ${reason}${reproducer ? `\nreproducer: ${reproducer}` : ''}`);
    this.name = 'PassFailure';
  }
}

/** Runs `entries` in order over `model`, applying `instrumentation`. */
export async function runPipeline(model: Model, entries: readonly PipelineEntry[], context: PassContext, instrumentation: Instrumentation = {}): Promise<PipelineReport> {
  const print = instrumentation.print ?? (() => undefined);
  const printOptions: PrintOptions = { tensors: instrumentation.tensors ?? 'content' };
  const dumpDir = instrumentation.dumpDir;
  const report: PipelineReport = { pipeline: printPipeline(entries), passes: [] };
  const reproducerDir = instrumentation.reproducerDir ?? (dumpDir ? join(dumpDir, 'reproducer') : undefined);
  let previousDump: { name: string; text: string } | undefined;
  if (dumpDir) {
    mkdirSync(dumpDir, { recursive: true });
    const text = printModel(model, printOptions);
    writeFileSync(join(dumpDir, '00-input.ir'), text);
    previousDump = { name: '00-input.ir', text };
  }
  for (const [index, entry] of entries.entries()) {
    const options = withDefaults(entry.pass, entry.options);
    const step = printEntry({ pass: entry.pass, options });
    // A clone shares the tensors, so it costs no weight bytes; it is encoded only if the pass fails. Models with
    // deferred weights are not copied into reproducers (encoding would read every weight).
    const encode = instrumentation.serialize;
    const snapshot = reproducerDir && encode && !hasDeferredTensors(model) ? { model: model.clone(), plan: planToJson(context.plan) } : undefined;
    instrumentation.onPassStart?.(index, entry);
    const started = performance.now();
    let result;
    try {
      const missing = entry.pass.requires.find((key) => !context.artifacts.has(key));
      if (missing) throw new MissingArtifactError(missing, entry.pass.name);
      result = await entry.pass.run(model, options, context);
      instrumentation.verify?.(model);
    } catch (error) {
      if (instrumentation.printIrAfterFailure || dumpDir) {
        const text = printModel(model, printOptions);
        if (instrumentation.printIrAfterFailure) print(banner(`IR Dump After Failure ${entry.pass.name} (${index + 1})`) + text);
        if (dumpDir) writeFileSync(join(dumpDir, `${dumpName(index, entry)}.failed.ir`), text);
      }
      const input = snapshot && encode ? { bytes: encode(snapshot.model), plan: snapshot.plan } : undefined;
      const where = reproducerDir ? writeReproducer(reproducerDir, input, step, report.pipeline, error, instrumentation.sourceModel) : undefined;
      throw new PassFailure(entry.pass.name, index, error, where);
    }
    const record: PassRecord = {
      pass: entry.pass.name,
      step,
      modified: result.modified,
      statistics: sortKeys(result.statistics),
      milliseconds: Math.round((performance.now() - started) * 10) / 10,
      peakRssBytes: peakRssBytes(),
    };
    report.passes.push(record);
    instrumentation.onPassEnd?.(index, record);
    const wanted =
      instrumentation.printIrAfterAll || (instrumentation.printIrAfterChange && result.modified) || instrumentation.printIrAfter?.includes(entry.pass.name);
    if (wanted || dumpDir) {
      const text = printModel(model, printOptions);
      if (wanted) print(banner(`IR Dump After ${entry.pass.name} (${index + 1})`) + text);
      if (dumpDir && previousDump) {
        const name = dumpName(index, entry);
        writeFileSync(join(dumpDir, `${name}.ir`), text);
        writeFileSync(join(dumpDir, `${name}.diff`), unifiedDiff(previousDump.text, text, previousDump.name, `${name}.ir`));
        previousDump = { name: `${name}.ir`, text };
      }
    }
  }
  if (dumpDir) {
    const passes = report.passes.map(({ pass, step, modified, statistics }) => ({ pass, step, modified, statistics }));
    writeFileSync(join(dumpDir, 'pipeline.json'), JSON.stringify({ pipeline: report.pipeline, plan: planToJson(context.plan), passes }, null, 2) + '\n');
    writeFileSync(join(dumpDir, 'timings.json'), JSON.stringify(report.passes.map(({ pass, milliseconds, peakRssBytes }) => ({ pass, milliseconds, peakRssBytes })), null, 2) + '\n');
  }
  return report;
}

/** Runs one pass through the manager (defaults filled, required artifacts checked, no instrumentation); a failure is a PassFailure. */
export async function runPass<O extends OptionSpecs>(pass: Pass<O>, model: Model, options: WrittenOptions<O>, context: PassContext): Promise<PassResult> {
  const report = await runPipeline(model, [{ pass, options: options as PassOptions }], context);
  const { modified, statistics } = report.passes[0]!;
  return { modified, statistics };
}

/** The plan as plain JSON, layers in name order. */
export function planToJson(plan: QuantPlan): unknown[] {
  return [...plan.values()].sort((a, b) => (a.layer < b.layer ? -1 : a.layer > b.layer ? 1 : 0));
}

function writeReproducer(dir: string, snapshot: { bytes: Uint8Array; plan: unknown[] } | undefined, step: string, pipeline: string, error: unknown, sourceModel: string | undefined): string {
  mkdirSync(dir, { recursive: true });
  const message = error instanceof Error ? (error.stack ?? error.message) : String(error);
  if (snapshot) {
    writeFileSync(join(dir, 'input.onnx'), snapshot.bytes);
    writeFileSync(join(dir, 'plan.json'), JSON.stringify(snapshot.plan, null, 2) + '\n');
    writeFileSync(join(dir, 'pipeline.txt'), step + '\n');
  } else {
    // Deferred weights: point at the original model and the whole pipeline instead of copying gigabytes.
    writeFileSync(join(dir, 'pipeline.txt'), pipeline + '\n');
    if (sourceModel) writeFileSync(join(dir, 'model.txt'), sourceModel + '\n');
  }
  writeFileSync(join(dir, 'error.txt'), message + '\n');
  return dir;
}

function hasDeferredTensors(model: Model): boolean {
  for (const value of model.graph.initializers.values()) if (value.initializer!.isDeferred) return true;
  return false;
}

/** `01-select-layers`: the dump file stem of step `index`. */
function dumpName(index: number, entry: PipelineEntry): string {
  return `${String(index + 1).padStart(2, '0')}-${entry.pass.name}`;
}

function banner(title: string): string {
  return `// -----// ${title} //----- //\n`;
}

function sortKeys(statistics: Record<string, number | string>): Record<string, number | string> {
  return Object.fromEntries(Object.entries(statistics).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

