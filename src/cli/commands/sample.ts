/**
 * `qcompile sample MODEL -o grid.png`: runs a diffusion model's FP (or quantized) sampler in ONNX Runtime
 * through the sampler driver — class labels or prompts, with classifier-free guidance when asked — and writes
 * a PNG grid (one row per condition), the raw float32 samples (`<out>.f32.bin`, always) and a JSON manifest.
 */
import { existsSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { OutputTransaction } from '../../ir/atomic-file.js';
import { loadModelSync } from '../../ir/serde.js';
import { loadConditioning } from '../../runtime/diffusion/conditioning.js';
import { guidanceFor, noiseScheduleFor } from '../../runtime/diffusion/schedule-source.js';
import { ScheduleError } from '../../runtime/diffusion/schedule-math.js';
import { InterfaceError, findDiffusionInterface, type DiffusionInterface } from '../../runtime/diffusion/interface.js';
import { openDenoiser, sample } from '../../runtime/diffusion/sampler.js';
import { makeScheduler, type SamplerSpec, type Scheduler } from '../../runtime/diffusion/scheduler.js';
import { OrtExecutor } from '../../runtime/ir-executor.js';
import { imageGridPng, previewChannels } from '../../runtime/png-grid.js';
import { parseArgs } from '../args.js';
import type { CliIO, Command } from '../command.js';
import { Progress } from '../progress.js';

const USAGE = `Usage: qcompile sample MODEL [options] -o grid.png

Samples a diffusion model (ONNX) and writes grid.png, grid.f32.bin (float32 [N,C,H,W], little-endian;
always written) and grid.json (shape, conditions, sampler settings). Rows are classes (or prompts); a latent
with more than 3 channels is shown by its first 3 in the PNG (the .f32.bin has them all).

Options:
  --schedule FILE   diffusion sidecar (default: schedule.json next to MODEL, else the pipeline
                    folder's scheduler/scheduler_config.json)
  --sampler NAME    ddim (default; flow-euler for a flow schedule), ddpm (ancestral, all T steps),
                    euler or flow-euler
  --steps N         sampling steps (default 50)
  --eta E           DDIM eta (default 0)
  --seed S          noise seed, non-negative integer (default 0)
  --classes LIST    comma-separated class ids, or 'all' (default all)
  --per-class K     samples per class, or per prompt (default 8)
  --prompts FILE    prompts for a text-conditioned model (one per line, or a 'prompt<TAB>class' TSV)
  --conditioning DIR  precomputed conditioning instead (.npy per prompt + uncond.npy)
  --guidance G      classifier-free guidance scale (default: the sidecar's recommended, else 1)
  --batch B         samples per model call (default 64)
  --scale F         PNG upscale factor (default 3)
  --threads N       ORT intra-op threads (default: ORT's choice)
  -q, --quiet       no progress (a bar on a terminal, else throttled lines): only errors and the summary
  -o FILE           output PNG (required)
`;

const SAMPLERS: readonly SamplerSpec['kind'][] = ['ddim', 'ddpm', 'euler', 'flow-euler'];

const KINDS = { prompts: 'string', conditioning: 'string', guidance: 'string', schedule: 'string', sampler: 'string', steps: 'string', eta: 'string', seed: 'string', classes: 'string', 'per-class': 'string', batch: 'string', scale: 'string', threads: 'string', output: 'string', quiet: 'boolean', help: 'boolean' } as const;

/** The `sample` subcommand. */
export const sampleCommand: Command = {
  name: 'sample',
  summary: 'sample a diffusion model in ONNX Runtime and write a PNG grid plus the raw float32 samples',
  usage: USAGE,
  async run(argv: string[], io: CliIO): Promise<number> {
    const args = parseArgs(argv.map((a) => (a === '-o' ? '--output' : a === '-h' ? '--help' : a === '-q' ? '--quiet' : a)), { ...KINDS }, io);
    if (!args) return 2;
    const progress = new Progress(io, { quiet: args.options.quiet === true });
    const fail = (message: string, code = 1) => {
      progress.print(`qcompile sample: error: ${message}\n`);
      return code;
    };
    if (args.options.help) {
      io.stdout(USAGE);
      return 0;
    }
    if (args.positional.length !== 1) return fail('expected exactly one MODEL argument (see --help)', 2);
    const output = args.options.output as string | undefined;
    if (!output) return fail('missing -o grid.png', 2);
    const modelPath = resolve(io.cwd, args.positional[0]!);
    if (!existsSync(modelPath) || !statSync(modelPath).isFile()) return fail(`model not found: ${modelPath}`);
    const schedulePath = args.options.schedule ? resolve(io.cwd, args.options.schedule as string) : undefined;
    if (schedulePath && !existsSync(schedulePath)) return fail(`no diffusion sidecar: ${schedulePath} does not exist`);

    const integer = (name: string, fallback: number, min: number): number | string => {
      const raw = args.options[name];
      if (raw === undefined) return fallback;
      const value = Number(raw);
      return Number.isInteger(value) && value >= min ? value : `--${name} must be an integer ≥ ${min}, got '${String(raw)}'`;
    };
    const steps = integer('steps', 50, 1);
    const seed = integer('seed', 0, 0);
    const perClass = integer('per-class', 8, 1);
    const batch = integer('batch', 64, 1);
    const scale = integer('scale', 3, 1);
    const threads = integer('threads', 0, 0);
    for (const v of [steps, seed, perClass, batch, scale, threads]) if (typeof v === 'string') return fail(v, 2);
    const eta = args.options.eta === undefined ? 0 : Number(args.options.eta);
    if (!(eta >= 0 && eta <= 1)) return fail(`--eta must be a number in [0, 1], got '${String(args.options.eta)}'`, 2);
    const samplerArg = args.options.sampler as string | undefined;
    if (samplerArg !== undefined && !SAMPLERS.includes(samplerArg as SamplerSpec['kind'])) return fail(`--sampler must be one of ${SAMPLERS.join(', ')}, got '${samplerArg}'`, 2);

    const guidanceFlag = args.options.guidance === undefined ? undefined : Number(args.options.guidance);
    if (guidanceFlag !== undefined && !(guidanceFlag > 0 && guidanceFlag <= 100)) return fail(`--guidance must be a number in (0, 100], got '${String(args.options.guidance)}'`, 2);

    const model = loadModelSync(modelPath);
    let scheduler: Scheduler;
    let iface: DiffusionInterface;
    try {
      iface = findDiffusionInterface(model, modelPath);
      const config = noiseScheduleFor(modelPath, iface, undefined, schedulePath);
      const kind = (samplerArg ?? (config.kind === 'flow' ? 'flow-euler' : 'ddim')) as SamplerSpec['kind'];
      scheduler = makeScheduler(config, kind === 'ddim' ? { kind, steps: steps as number, eta } : { kind, steps: kind === 'ddpm' ? config.numTrainTimesteps : (steps as number) });
    } catch (error) {
      if (!(error instanceof ScheduleError || error instanceof InterfaceError)) throw error;
      return fail(error.message);
    }
    const sampler = scheduler.spec.kind;
    const conditioning = await loadConditioning(
      iface,
      {
        ...(args.options.prompts ? { prompts: resolve(io.cwd, args.options.prompts as string) } : {}),
        ...(args.options.conditioning ? { conditioningDir: resolve(io.cwd, args.options.conditioning as string) } : {}),
      },
      modelPath,
    );
    const byClass = iface.conditioning.some((c) => c.kind === 'class-label');
    const classesArg = (args.options.classes ?? 'all') as string;
    if (!byClass && args.options.classes !== undefined) return fail(`--classes picks class labels, and this model takes ${conditioning.describe}`, 2);
    const chosen = classesArg === 'all' ? Array.from({ length: conditioning.count }, (_, i) => i) : classesArg.split(',').map((s) => Number(s.trim()));
    const badClass = chosen.find((c) => !Number.isInteger(c) || c < 0 || c >= conditioning.count);
    if (badClass !== undefined) return fail(`bad class '${String(badClass)}' in --classes: the model has classes 0..${conditioning.count - 1}`, 2);
    const conditions = chosen.flatMap((c) => Array<number>(perClass as number).fill(c));
    const sidecarPath = schedulePath ?? join(dirname(modelPath), 'schedule.json');
    const guidance = guidanceFor(modelPath, guidanceFlag, sidecarPath);

    const started = Date.now();
    let samples: Float32Array;
    try {
      const denoiser = await openDenoiser(model, iface, new OrtExecutor(threads ? { threads: threads as number } : {}));
      progress.step('sampling');
      try {
        samples = await sample(denoiser, {
          scheduler,
          conditions,
          conditioning,
          guidance,
          seed: seed as number,
          batch: batch as number,
          progress: (step, total) => progress.update('sampling steps', step, total),
        });
      } finally {
        await denoiser.release();
      }
    } catch (error) {
      return fail((error as Error).message.split('\n')[0]!);
    }

    const pngPath = resolve(io.cwd, output);
    const base = pngPath.replace(/\.png$/i, '');
    const binPath = `${base}.f32.bin`;
    const jsonPath = `${base}.json`;
    const dims = [conditions.length, ...iface.latent.shape];
    const preview = previewChannels(samples, dims);
    const manifest = {
      model: modelPath,
      samples: { file: binPath.slice(dirname(binPath).length + 1), dtype: 'float32', shape: dims, byte_order: 'little', layout: 'C (row-major)' },
      ...(byClass ? { labels: conditions } : { conditions, conditioning: conditioning.describe }),
      sampler: { name: sampler, steps: scheduler.timesteps.length, ...(sampler === 'ddim' ? { eta } : {}), seed, batch, guidance },
      ...(preview.note ? { png: preview.note } : {}),
      wall_s: Number(((Date.now() - started) / 1000).toFixed(2)),
    };
    try {
      // All three or none; never onto the model or sidecar read (e.g. `-o model.onnx`).
      using outputs = new OutputTransaction();
      outputs.addInputs([modelPath, sidecarPath]);
      outputs.writeFile(binPath, new Uint8Array(samples.buffer, samples.byteOffset, samples.byteLength));
      outputs.writeFile(jsonPath, `${JSON.stringify(manifest, null, 2)}\n`);
      outputs.writeFile(pngPath, imageGridPng(preview.images, preview.dims, { cols: perClass as number, scale: scale as number }));
      outputs.commit();
    } catch (error) {
      return fail(`cannot write outputs: ${(error as Error).message}`);
    }
    io.stdout(`wrote ${pngPath} (${conditions.length} samples, ${chosen.length} ${byClass ? 'classes' : 'conditions'} × ${perClass as number}${preview.note ? `; ${preview.note}` : ''}), ${binPath}, ${jsonPath}\n`);
    return 0;
  },
};
