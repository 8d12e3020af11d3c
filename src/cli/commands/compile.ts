/**
 * The main form, `qcompile MODEL RECIPE -o OUT.onnx`: loads the model, plans the pipeline (from the recipe, or
 * `--passes` text), runs it with the requested instrumentation, verifies, and prints a summary (layers quantized
 * by bits and granularity, sizes, time per pass). Every file it writes (model, external data, `.passes.json`,
 * calibration cache, dumps, bundle) is checked against the run's inputs before any work and staged in one output
 * transaction, committed together at the end or not at all.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import type { Model } from '../../ir/core.js';
import { encodeModel, loadModelSync, saveModel } from '../../ir/serde.js';
import { assertValid } from '../../ir/verify.js';
import { labelClasses, layersOf } from '../../quant/identity.js';
import { BackendError, issueDiagnostics, type TargetName } from '../../backends/backend.js';
import { writeWebGpuBundleFiles } from '../../backends/webgpu/bundle.js';
import { emptyCompile } from '../../recipe/check.js';
import type { Recipe } from '../../recipe/types.js';
import { backends, findBackend } from '../../backends/registry.js';
import { loweringPassOf, loweringTargetOf } from '../../passes/lower-target.js';
import { didYouMeanHint, renderDiagnostic, type Diagnostic } from '../../diagnostics.js';
import type { PassContext } from '../../passes/pass.js';
import { PassFailure, peakRssBytes, runPipeline, type Instrumentation, type PipelineReport } from '../../passes/pass-manager.js';
import { PipelineError, parsePipeline, type PipelineEntry } from '../../passes/pipeline.js';
import { passRegistry } from '../../passes/registry.js';
import type { QuantPlan } from '../../quant/plan.js';
import { OrtExecutor } from '../../runtime/ir-executor.js';
import { InterfaceError, findDiffusionInterface, type DiffusionInterface } from '../../runtime/diffusion/interface.js';
import { ScheduleError } from '../../runtime/diffusion/schedule-math.js';
import { SmokeRunError, smokeRun } from '../../runtime/smoke-run.js';
import type { CliIO, Command } from '../command.js';
import { Progress } from '../progress.js';
import { buildRecipeCalibration, planRecipeFile, recipeCachePath, recipeSampleProbe, type DiffusionOverrides, type PlannedRecipe } from '../recipe-pipeline.js';
import { Artifacts, CALIBRATION_BATCHES, GROUP_ALLOCATION, INPUT_SCALING, SAMPLE_PROBE } from '../../passes/artifacts.js';
import type { AppliedScaling } from '../../passes/scale-folding.js';
import { OutputPathError, OutputTransaction } from '../../ir/atomic-file.js';
import { calibrationCacheFileState } from '../../runtime/calibration-cache.js';
import { formatBytes, formatMs } from '../format.js';
import { LAYERS_METADATA_KEY, encodeLayerChoices, passTimingsPath, summarizeScaling, type LayerChoices, type PassTimings } from '../../report/compile-record.js';

const USAGE = `Usage: qcompile MODEL.onnx [RECIPE.qrecipe] -o OUT.onnx [options]

Quantizes MODEL as RECIPE says (or as a --passes pipeline says) and writes OUT.onnx, with the chosen group
sizes and scaling factors in its metadata (qcompile.layers), and OUT.onnx.passes.json (pass timings, statistics).

Options:
  -o, --output FILE          output model (required)
  --target NAME              lower for cpu | webgpu | cuda | tensorrt: appends the pass lower-NAME
                             (default: the recipe's target, or the --passes text's lower-NAME step;
                             with --passes and neither, the portable Q/DQ form is kept)
  --allow-fallback           dequantize layers the target cannot run instead of failing (listed)
  --allow-empty              write the model even when the compile quantizes no layer, and let a
                             quantize rule select no layer (a warning instead of error E045)
  --bundle DIR               (webgpu) also write a deployable bundle: model + external data, manifest.json,
                             an example page (one denoising step, a DDIM loop) and onnxruntime-web's files
  --allow-requantize         re-express asymmetric int8 the target runs only symmetrically (tensorrt,
                             cuda) as symmetric int8: numerics change; each layer is listed
  --passes TEXT              run this pipeline instead of the recipe's, e.g.
                             'select-layers{roles=attn|mlp,bits=4,group=128},quantize-weights,cleanup'
  --seed N                   seed for every random choice (default 0)
  --prompts FILE             prompts a text-conditioned model is calibrated with (one per line, or a
                             'prompt<TAB>class' TSV), encoded by its pipeline's text encoder
  --conditioning DIR         precomputed conditioning instead (.npy per prompt + uncond.npy)
  --resolution N|HxW         latent size of a model with dynamic height/width
                             (these three override the recipe's calibrate/diffusion settings)
  --dump-dir DIR             write 00-input.ir, NN-PASS.ir, NN-PASS.diff, pipeline.json, timings.json
  --print-ir-after-all       print the IR after every pass (stderr)
  --print-ir-after-change    print the IR after passes that changed it
  --print-ir-after NAME      print the IR after each run of pass NAME (repeatable)
  --print-ir-after-failure   print the IR as a failing pass left it
  --verify-each              verify the model after every pass
  --verbose                  show the passes' informational messages
  -q, --quiet                print only errors, warnings and the final summary (no progress, no
                             per-pass lines); progress is a bar on a terminal, else throttled lines
`;

/** Options of the main form. */
interface CompileArgs {
  model: string;
  recipe?: string;
  output: string;
  target?: string;
  allowFallback: boolean;
  allowRequantize: boolean;
  allowEmpty: boolean;
  bundle?: string;
  passes?: string;
  seed: number;
  prompts?: string;
  conditioning?: string;
  resolution?: [number, number];
  dumpDir?: string;
  printIrAfterAll: boolean;
  printIrAfterChange: boolean;
  printIrAfter: string[];
  printIrAfterFailure: boolean;
  verifyEach: boolean;
  verbose: boolean;
  quiet: boolean;
}

class UsageError extends Error {}

class BundleError extends Error {}

export const compileCommand: Command = {
  name: 'compile',
  summary: 'quantize MODEL as RECIPE says (the main form: qcompile MODEL RECIPE -o OUT)',
  usage: USAGE,
  async run(argv: string[], io: CliIO): Promise<number> {
    let args: CompileArgs;
    try {
      args = parseArgs(argv);
    } catch (error) {
      if (!(error instanceof UsageError)) throw error;
      io.stderr(`qcompile: error: ${error.message}\n${USAGE}`);
      return 2;
    }
    const started = performance.now();
    const progress = new Progress(io, { quiet: args.quiet });
    const modelPath = resolve(io.cwd, args.model);
    const model = loadModelSync(modelPath);
    // Refuse what we cannot compile (unknown ops, broken graphs) before doing any work.
    assertValid(model);
    const inputBytes = modelFileBytes(model, modelPath);
    // The run's outputs, and apart from them the dumps (kept when a pass fails: they are its reproducer).
    using outputs = new OutputTransaction();
    using dumpOutputs = new OutputTransaction();
    const runInputs = [modelPath, ...externalDataFiles(model), join(dirname(modelPath), 'schedule.json'), ...(args.prompts !== undefined ? [resolve(io.cwd, args.prompts)] : [])];
    layersOf(model); // discovers and stamps the layers: the one discovery of this compile

    const plan: QuantPlan = new Map();
    let entries: PipelineEntry[];
    let recipe: PlannedRecipe | undefined;
    if (args.passes !== undefined) {
      try {
        entries = parsePipeline(args.passes, passRegistry);
      } catch (error) {
        if (!(error instanceof PipelineError)) throw error;
        io.stderr(`qcompile: error: --passes: ${error.message}\n  ${args.passes}\n  ${' '.repeat(error.offset)}^\n`);
        return 2;
      }
    } else {
      // The recipe is checked for the target and options this compile lowers with (fallbacks are decided by lowering).
      const check = { allowEmpty: args.allowEmpty, ...(args.allowFallback ? { targetCheckedByCaller: true } : { lowering: { requantize: args.allowRequantize }, ...(args.target ? { target: args.target as TargetName } : {}) }) };
      const planned = planRecipeFile(resolve(io.cwd, args.recipe!), model, io, false, check);
      if (!planned) return 1;
      for (const [name, layerPlan] of planned.plan) plan.set(name, layerPlan);
      entries = planned.entries;
      recipe = planned;
      runInputs.push(planned.path);
    }
    outputs.addInputs(runInputs);
    dumpOutputs.addInputs(runInputs);
    const outputPath = resolve(io.cwd, args.output);
    const dumpDir = args.dumpDir ? resolve(io.cwd, args.dumpDir) : undefined;
    const bundleDir = args.bundle !== undefined ? resolve(io.cwd, args.bundle) : undefined;
    try {
      checkOutputs(outputs, outputPath, dumpDir, bundleDir, recipe && recipeCachePath(recipe.recipe, recipe.path));
    } catch (error) {
      if (!(error instanceof OutputPathError)) throw error;
      io.stderr(`qcompile: error: ${error.message}\n`);
      return 1;
    }

    // The target: --target, else a lower-<target> step of --passes, else the recipe's; a --passes run with
    // neither keeps the portable Q/DQ form. The lowering is the pipeline's last step (dumps show it).
    let lowering = entries.find((e) => loweringTargetOf(e.pass) !== undefined);
    const written = lowering ? loweringTargetOf(lowering.pass) : undefined;
    if (written && args.target !== undefined && args.target !== written) {
      io.stderr(`qcompile: error: --target ${args.target} conflicts with the pipeline's lower-${written} step\n`);
      return 2;
    }
    const backend = findBackend(args.target ?? written ?? recipe?.recipe.target ?? '');
    if (backend && !lowering) entries.push((lowering = { pass: loweringPassOf(backend.name), options: {} }));
    if (lowering && args.allowFallback) lowering.options.allowFallback = true;
    if (lowering && args.allowRequantize) lowering.options.allowRequantize = true;
    const sources = new Map(recipe ? [[recipe.path, readFileSync(recipe.path, 'utf8')]] : []);
    const printDiagnostics = (diagnostics: readonly Diagnostic[]) => {
      for (const d of diagnostics) progress.print(`${renderDiagnostic(d, sources)}\n`);
    };
    let pageSchedule: unknown;
    if (args.bundle !== undefined) {
      if (backend?.name !== 'webgpu') {
        io.stderr(`qcompile: error: --bundle writes a WebGPU bundle: it needs --target webgpu (or a recipe with target webgpu)\n`);
        return 2;
      }
      try {
        pageSchedule = bundleSchedule(modelPath, recipe?.recipe);
      } catch (error) {
        if (!(error instanceof BundleError)) throw error;
        io.stderr(`qcompile: error: --bundle: ${error.message}\n`);
        return 1;
      }
    }

    let current = '';
    const context: PassContext = {
      seed: args.seed,
      plan,
      artifacts: new Artifacts(),
      executor: new OrtExecutor(),
      progress: (label, done, total) => progress.update(`${current} ${label}`, done, total),
      log: (message) => {
        if (args.verbose) progress.print(`${message}\n`);
      },
      report: (diagnostic) => printDiagnostics([diagnostic]),
      ...(lowering ? { lowering: { target: loweringTargetOf(lowering.pass)!, options: { allowFallback: lowering.options.allowFallback === true, requantize: lowering.options.allowRequantize === true } } } : {}),
    };
    const dumpStaging = dumpDir ? dumpOutputs.stageFolder(dumpDir) : undefined;
    let calibrationMs: number | undefined;
    let calibrationPeak: number | undefined;
    if (recipe?.needsCalibration) {
      const calibrationStarted = performance.now();
      const overrides: DiffusionOverrides = {
        ...(args.prompts !== undefined ? { prompts: resolve(io.cwd, args.prompts) } : {}),
        ...(args.conditioning !== undefined ? { conditioningDir: resolve(io.cwd, args.conditioning) } : {}),
        ...(args.resolution ? { resolution: args.resolution } : {}),
      };
      const set = await buildRecipeCalibration(recipe.recipe, recipe.path, model, modelPath, recipe.recipe.seed + args.seed, progress, outputs, overrides);
      context.artifacts.set(CALIBRATION_BATCHES, set.batches);
      if (recipe.recipe.search.judge === 'images' && [...plan.values()].some((p) => p.weight?.granularity.kind === 'auto')) context.artifacts.set(SAMPLE_PROBE, await recipeSampleProbe(recipe.recipe, recipe.path, model, modelPath, recipe.recipe.seed + args.seed, context.progress, overrides));
      calibrationMs = performance.now() - calibrationStarted;
      calibrationPeak = peakRssBytes();
    }
    // The smoke run feeds the diffusion inputs at the interface's shapes, found on the float model (a UNet's dynamic
    // H/W must survive its down and up path); a graph with no diffusion interface is smoke-run on guessed shapes.
    const smokeInterface = diffusionInterfaceIfAny(model, modelPath, args.resolution ?? recipeResolution(recipe?.recipe));
    const instrumentation: Instrumentation = {
      printIrAfterAll: args.printIrAfterAll,
      printIrAfterChange: args.printIrAfterChange,
      printIrAfter: args.printIrAfter,
      printIrAfterFailure: args.printIrAfterFailure,
      print: (text) => progress.print(text),
      dumpDir: dumpStaging,
      sourceModel: modelPath,
      serialize: encodeModel,
      ...(args.verifyEach ? { verify: assertValid } : {}),
      tensors: hasDeferredTensors(model) ? 'shape' : 'content',
      onPassStart: (index, entry) => {
        current = `[${index + 1}/${entries.length} ${entry.pass.name}]`;
        progress.step(current);
      },
      onPassEnd: (index, record) => progress.info(`[${index + 1}/${entries.length}] ${record.pass} ${formatMs(record.milliseconds)}${record.modified ? '' : ' (no change)'}, peak RSS ${formatBytes(record.peakRssBytes)}`),
    };
    let report: PipelineReport;
    try {
      report = await runPipeline(model, entries, context, instrumentation);
    } catch (error) {
      if (!(error instanceof PassFailure)) throw error;
      // The dumps are complete (the failing pass's IR, its reproducer): they are kept; the reproducer was written
      // in the staging folder and now lies in the dump folder.
      dumpOutputs.commit();
      const inDumpDir = (text: string) => (dumpStaging && dumpDir ? text.replaceAll(dumpStaging, dumpDir) : text);
      if (error.cause instanceof BackendError) {
        // A target refusal found on the graph: the same grouped, located diagnostics as a refused plan.
        printDiagnostics(issueDiagnostics(error.cause.target, error.cause.issues, 'refused'));
        if (error.reproducer) progress.print(`reproducer: ${inDumpDir(error.reproducer)}\n`);
      } else progress.print(`qcompile: error: ${inDumpDir(error.message)}\n`);
      return 1;
    }
    assertValid(model);
    // A recipe's empty selection was refused by its check (E046) before any work; a --passes run shows it here.
    if (!recipe && !args.allowEmpty && quantizedLayerCount(report) === 0) {
      printDiagnostics([emptyCompile('the --passes pipeline quantized no weight or activation')]);
      return 1;
    }
    const saveStarted = performance.now();
    // Deterministic choices ride in the model; timings (never deterministic) go to the sidecar.
    model.metadataProps.set(LAYERS_METADATA_KEY, encodeLayerChoices(layerChoices(plan, context.artifacts)));
    const staged = outputs.stageFile(outputPath);
    progress.step('[save]');
    saveModel(model, staged, { progress: (done, total) => progress.update('[save] external data', done, total, 'bytes') });
    const saveMs = performance.now() - saveStarted;
    // The staged file is what ORT loads: nothing is committed (the staging goes with the transaction) unless it runs.
    progress.step('[smoke run]');
    const smoke = await smokeRun(model, modelPath, smokeInterface, staged);
    if (smoke instanceof SmokeRunError) {
      progress.print(`qcompile: error: the compiled model fails its smoke run in ONNX Runtime (nothing written): ${smoke.message}\n`);
      return 1;
    }
    progress.info(`[smoke run] ${formatMs(smoke.milliseconds)}`);
    if (smoke.loadOnly) progress.print(`qcompile: note: the compiled model loads in ONNX Runtime but was not smoke-run: ${smoke.loadOnly}\n`);
    const tenths = (ms: number) => Math.round(ms * 10) / 10;
    const timings: PassTimings = {
      pipeline: report.pipeline,
      ...(calibrationMs !== undefined ? { calibrationMilliseconds: tenths(calibrationMs), calibrationPeakRssBytes: calibrationPeak } : {}),
      passes: report.passes.map(({ pass, step, modified, milliseconds, peakRssBytes, statistics }) => ({ pass, step, modified, milliseconds: tenths(milliseconds), peakRssBytes, statistics })),
      saveMilliseconds: tenths(saveMs),
      smokeRunMilliseconds: tenths(smoke.milliseconds),
      totalMilliseconds: tenths(performance.now() - started),
      peakRssBytes: peakRssBytes(),
    };
    outputs.writeFile(passTimingsPath(outputPath), `${JSON.stringify(timings, null, 2)}\n`);
    let bundleFiles: string[] | undefined;
    if (bundleDir !== undefined) {
      bundleFiles = writeWebGpuBundleFiles(model, outputs.stageFolder(bundleDir), { schedule: pageSchedule, classes: labelClasses(model), quantSummary: report.passes.at(-1)?.statistics ?? {} });
    }
    dumpOutputs.commit();
    outputs.commit();
    if (bundleFiles) io.stderr(`wrote WebGPU bundle ${bundleDir} (${bundleFiles.length} files; serve it over http and open index.html)\n`);
    io.stdout(summary(report, plan, inputBytes, outputFileBytes(outputPath), outputPath, saveMs, smoke.milliseconds, performance.now() - started));
    return 0;
  },
};

/**
 * The schedule the bundle's page samples with: the model's `schedule.json` sidecar when there is one, else the
 * recipe's diffusion block, in the sidecar's field names.
 */
function bundleSchedule(modelPath: string, recipe: Recipe | undefined): unknown {
  const sidecar = join(dirname(modelPath), 'schedule.json');
  if (existsSync(sidecar)) return JSON.parse(readFileSync(sidecar, 'utf8')) as unknown;
  const d = recipe?.diffusion;
  if (d?.schedule.kind !== 'linear') throw new BundleError(`the bundle's page samples a linear beta schedule: ${sidecar} is missing and the recipe sets ${d ? `'${d.schedule.kind}'` : 'none'}`);
  return { T: d.schedule.steps, beta_schedule: 'linear', beta_start: d.schedule.betaStart, beta_end: d.schedule.betaEnd, prediction_type: d.prediction === 'model' ? 'epsilon' : d.prediction };
}

function parseArgs(argv: string[]): CompileArgs {
  const positional: string[] = [];
  const args: Partial<CompileArgs> & { printIrAfter: string[] } = {
    allowFallback: false,
    allowRequantize: false,
    allowEmpty: false,
    seed: 0,
    printIrAfterAll: false,
    printIrAfterChange: false,
    printIrAfter: [],
    printIrAfterFailure: false,
    verifyEach: false,
    verbose: false,
    quiet: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const [flag, inline] = arg.startsWith('--') && arg.includes('=') ? [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)] : [arg, undefined];
    const value = () => {
      if (inline !== undefined) return inline;
      const next = argv[++i];
      if (next === undefined) throw new UsageError(`${flag} needs a value`);
      return next;
    };
    switch (flag) {
      case '-o':
      case '--output':
        args.output = value();
        break;
      case '--target':
        args.target = value();
        if (!findBackend(args.target)) throw new UsageError(`unknown target '${args.target}'${didYouMeanHint(args.target, Object.keys(backends))} (supported: ${Object.keys(backends).join(', ')})`);
        break;
      case '--allow-fallback':
        args.allowFallback = true;
        break;
      case '--allow-requantize':
        args.allowRequantize = true;
        break;
      case '--allow-empty':
        args.allowEmpty = true;
        break;
      case '--bundle':
        args.bundle = value();
        break;
      case '--passes':
        args.passes = value();
        break;
      case '--seed': {
        const text = value();
        if (!/^\d+$/.test(text)) throw new UsageError(`--seed expects a non-negative integer, got '${text}'`);
        args.seed = Number(text);
        break;
      }
      case '--prompts':
        args.prompts = value();
        break;
      case '--conditioning':
        args.conditioning = value();
        break;
      case '--resolution': {
        const text = value();
        const match = /^(\d+)(?:x(\d+))?$/.exec(text);
        const [h, w] = match ? [Number(match[1]), Number(match[2] ?? match[1])] : [0, 0];
        if (!(h >= 1 && w >= 1 && h <= 65536 && w <= 65536)) throw new UsageError(`--resolution expects N or HxW (positive integers), got '${text}'`);
        args.resolution = [h, w];
        break;
      }
      case '--dump-dir':
        args.dumpDir = value();
        break;
      case '--print-ir-after-all':
        args.printIrAfterAll = true;
        break;
      case '--print-ir-after-change':
        args.printIrAfterChange = true;
        break;
      case '--print-ir-after':
        args.printIrAfter.push(value());
        break;
      case '--print-ir-after-failure':
        args.printIrAfterFailure = true;
        break;
      case '--verify-each':
        args.verifyEach = true;
        break;
      case '--verbose':
        args.verbose = true;
        break;
      case '-q':
      case '--quiet':
        args.quiet = true;
        break;
      default:
        if (arg.startsWith('-')) throw new UsageError(`unknown option '${arg}'`);
        positional.push(arg);
    }
  }
  if (args.quiet && args.verbose) throw new UsageError('--quiet and --verbose contradict each other');
  if (positional.length === 0) throw new UsageError('missing MODEL');
  if (positional.length > 2) throw new UsageError(`unexpected argument '${positional[2]}'`);
  if (!args.output) throw new UsageError('missing -o OUT.onnx');
  if (positional.length < 2 && args.passes === undefined) throw new UsageError('missing RECIPE (or --passes TEXT)');
  return { ...args, model: positional[0]!, recipe: positional[1], output: args.output } as CompileArgs;
}

/** Layers a --passes pipeline quantized: weights stored as codes plus activations given Q/DQ (a layer with both counts twice). */
function quantizedLayerCount(report: PipelineReport): number {
  const counted: Record<string, string> = { 'quantize-weights': 'layers_quantized', 'quantize-activations': 'layers' };
  return report.passes.reduce((n, p) => n + (p.pass in counted ? Number(p.statistics[counted[p.pass]!] ?? 0) : 0), 0);
}

/** Per layer: the planned weight bits and group size (searched or not) and the scaling passes' factor summaries. */
function layerChoices(plan: QuantPlan, artifacts: Artifacts): Map<string, LayerChoices> {
  const searched = artifacts.get(GROUP_ALLOCATION);
  const scaling = artifacts.get(INPUT_SCALING) ?? new Map<string, AppliedScaling[]>();
  const choices = new Map<string, LayerChoices>();
  for (const [name, entry] of plan) {
    if (!entry.weight && !scaling.has(name)) continue;
    const g = entry.weight?.granularity;
    choices.set(name, { ...(entry.weight ? { bits: entry.weight.bits } : {}), ...(g?.kind === 'group' ? { groupSize: g.size } : {}), ...(searched?.has(name) ? { searched: true } : {}) });
  }
  for (const [name, applied] of scaling) choices.set(name, { ...choices.get(name), scaling: applied.map((a) => summarizeScaling(a.pass, a.factors)) });
  return choices;
}

function hasDeferredTensors(model: Model): boolean {
  for (const value of model.graph.initializers.values()) if (value.initializer!.isDeferred) return true;
  return false;
}

/** The external data files the model's initializers point at. */
function externalDataFiles(model: Model): string[] {
  const files = new Set<string>();
  for (const value of model.graph.initializers.values()) {
    const data = value.initializer!.data;
    if (data.kind === 'external') files.add(data.file);
  }
  return [...files];
}

/** The model file plus the external data files its initializers point at. */
function modelFileBytes(model: Model, path: string): number {
  return [path, ...externalDataFiles(model)].reduce((n, f) => n + statSync(f).size, 0);
}

/**
 * Refuses, before any work, every output path the run must not write: an input of the run, a folder, device or
 * FIFO where a file goes (or the reverse), two outputs at one path, a calibration cache path holding anything
 * but a calibration cache, or in a folder that does not exist.
 */
function checkOutputs(outputs: OutputTransaction, outputPath: string, dumpDir: string | undefined, bundleDir: string | undefined, cachePath: string | undefined): void {
  const files = [outputPath, `${outputPath}.data`, passTimingsPath(outputPath)];
  for (const file of files) outputs.checkFile(file);
  if (dumpDir) outputs.checkFolder(dumpDir);
  if (bundleDir) outputs.checkFolder(bundleDir);
  if (cachePath) {
    if (files.includes(cachePath)) throw new OutputPathError(cachePath, 'is both the calibration cache and an output of this run');
    calibrationCacheFileState(cachePath);
  }
}

function outputFileBytes(path: string): number {
  return statSync(path).size + (existsSync(`${path}.data`) ? statSync(`${path}.data`).size : 0);
}

function summary(report: PipelineReport, plan: QuantPlan, inputBytes: number, outputBytes: number, outputPath: string, saveMs: number, smokeMs: number, totalMs: number): string {
  const lines: string[] = [];
  const quantized = report.passes.filter((p) => p.pass === 'quantize-weights').reduce((n, p) => n + Number(p.statistics.layers_quantized ?? 0), 0);
  lines.push(`wrote ${outputPath}`);
  lines.push(`size: ${formatBytes(inputBytes)} -> ${formatBytes(outputBytes)} (${((100 * outputBytes) / inputBytes).toFixed(1)}%)`);
  lines.push(`layers quantized: ${quantized}`);
  const groups = new Map<string, number>();
  for (const entry of plan.values()) {
    if (!entry.weight) continue;
    const g = entry.weight.granularity;
    const key = `W${entry.weight.bits}${entry.weight.symmetric ? ' sym' : ' asym'} ${g.kind === 'group' ? `group ${g.size}` : g.kind}`;
    groups.set(key, (groups.get(key) ?? 0) + 1);
  }
  for (const [key, count] of [...groups.entries()].sort()) lines.push(`  ${key.padEnd(24)} ${String(count).padStart(4)} layers planned`);
  const width = Math.max(4, ...report.passes.map((p) => p.pass.length));
  lines.push(`${'pass'.padEnd(width)}  ${'time'.padStart(10)}  changed  statistics`);
  for (const p of report.passes) {
    const stats = Object.entries(p.statistics)
      .map(([k, v]) => `${k}=${v}`)
      .join(' ');
    lines.push(`${p.pass.padEnd(width)}  ${formatMs(p.milliseconds).padStart(10)}  ${(p.modified ? 'yes' : 'no').padEnd(7)}  ${stats}`);
  }
  lines.push(`${'(save)'.padEnd(width)}  ${formatMs(saveMs).padStart(10)}`);
  lines.push(`${'(smoke run)'.padEnd(width)}  ${formatMs(smokeMs).padStart(10)}`);
  lines.push(`${'total'.padEnd(width)}  ${formatMs(totalMs).padStart(10)}`);
  return lines.join('\n') + '\n';
}

/** The recipe's `diffusion { resolution }`, when it sets one. */
function recipeResolution(recipe: Recipe | undefined): [number, number] | undefined {
  const size = recipe?.diffusion.resolution;
  return size && size.height > 0 ? [size.height, size.width] : undefined;
}

/** The model's diffusion interface, or undefined when the graph is not a denoiser the interface can explain. */
function diffusionInterfaceIfAny(model: Model, modelPath: string, resolution: [number, number] | undefined): DiffusionInterface | undefined {
  try {
    return findDiffusionInterface(model, modelPath, resolution ? { resolution } : {});
  } catch (error) {
    if (error instanceof InterfaceError || error instanceof ScheduleError) return undefined;
    throw error;
  }
}
