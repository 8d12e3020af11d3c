/**
 * `qcompile sample MODEL -o grid.png`: runs a diffusion model's FP (or quantized) sampler in ONNX Runtime and
 * writes a PNG grid (one row per class), the raw float32 samples (`<out>.f32.bin`) and a JSON manifest.
 */
import { existsSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { OutputTransaction } from '../../ir/atomic-file.js';
import { ScheduleError, readSidecar, scheduleFromSidecar, type Schedule, type Sidecar } from '../../runtime/diffusion.js';
import { openSession } from '../../runtime/ort-session.js';
import { imageGridPng } from '../../runtime/png-grid.js';
import { denoiserFromSession, denoiserNamesFromSidecar, sampleImages, type SamplerOptions } from '../../runtime/samplers.js';
import { parseArgs } from '../args.js';
import type { CliIO, Command } from '../command.js';

const USAGE = `Usage: qcompile sample MODEL [options] -o grid.png

Samples images from a class-conditional diffusion model (ONNX) and writes grid.png, grid.f32.bin (float32
[N,C,H,W], little-endian) and grid.json (shape, labels, sampler settings). Rows are classes.

Options:
  --schedule FILE   diffusion sidecar (default: schedule.json next to MODEL)
  --sampler NAME    ddim (default) or ddpm (ancestral, all T steps)
  --steps N         DDIM steps (default 50)
  --eta E           DDIM eta (default 0)
  --seed S          noise seed, non-negative integer (default 0)
  --classes LIST    comma-separated class ids, or 'all' (default all)
  --per-class K     samples per class (default 8)
  --batch B         samples per model call (default 64)
  --scale F         PNG upscale factor (default 3)
  --threads N       ORT intra-op threads (default: ORT's choice)
  -o FILE           output PNG (required)
`;

const KINDS = { schedule: 'string', sampler: 'string', steps: 'string', eta: 'string', seed: 'string', classes: 'string', 'per-class': 'string', batch: 'string', scale: 'string', threads: 'string', output: 'string', help: 'boolean' } as const;

/** The `sample` subcommand. */
export const sampleCommand: Command = {
  name: 'sample',
  summary: 'sample a diffusion model in ONNX Runtime and write a PNG grid plus the raw float32 samples',
  usage: USAGE,
  async run(argv: string[], io: CliIO): Promise<number> {
    const fail = (message: string, code = 1) => {
      io.stderr(`qcompile sample: error: ${message}\n`);
      return code;
    };
    const args = parseArgs(argv.map((a) => (a === '-o' ? '--output' : a === '-h' ? '--help' : a)), { ...KINDS }, io);
    if (!args) return 2;
    if (args.options.help) {
      io.stdout(USAGE);
      return 0;
    }
    if (args.positional.length !== 1) return fail('expected exactly one MODEL argument (see --help)', 2);
    const output = args.options.output as string | undefined;
    if (!output) return fail('missing -o grid.png', 2);
    const modelPath = resolve(io.cwd, args.positional[0]!);
    if (!existsSync(modelPath) || !statSync(modelPath).isFile()) return fail(`model not found: ${modelPath}`);
    const schedulePath = args.options.schedule ? resolve(io.cwd, args.options.schedule as string) : join(dirname(modelPath), 'schedule.json');
    if (!existsSync(schedulePath)) return fail(`no diffusion sidecar: ${schedulePath} does not exist (pass --schedule FILE)`);

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
    const sampler = (args.options.sampler ?? 'ddim') as string;
    if (sampler !== 'ddim' && sampler !== 'ddpm') return fail(`--sampler must be ddim or ddpm, got '${sampler}'`, 2);

    let sidecar: Sidecar;
    let schedule: Schedule;
    try {
      sidecar = readSidecar(schedulePath);
      schedule = scheduleFromSidecar(sidecar);
    } catch (error) {
      if (!(error instanceof ScheduleError)) throw error;
      return fail(error.message);
    }
    const numClasses = sidecar.num_classes ?? 0;
    const image = sidecar.image;
    if (!image) return fail(`${schedulePath}: the sidecar has no 'image' {channels, height, width}`);
    const classesArg = (args.options.classes ?? 'all') as string;
    const classes = classesArg === 'all' ? Array.from({ length: Math.max(numClasses, 1) }, (_, i) => i) : classesArg.split(',').map((s) => Number(s.trim()));
    const badClass = classes.find((c) => !Number.isInteger(c) || c < 0 || (numClasses > 0 && c >= numClasses));
    if (badClass !== undefined) return fail(`bad class '${String(badClass)}' in --classes: the model has classes 0..${numClasses - 1}`, 2);
    const labels = classes.flatMap((c) => Array<number>(perClass as number).fill(c));
    const imageShape = [image.channels, image.height, image.width];

    const started = Date.now();
    const options: SamplerOptions = {
      sampler,
      steps: steps as number,
      eta,
      seed: seed as number,
      batch: batch as number,
      progress: (step, total) => {
        if (step === total || step % 5 === 0) io.stderr(`\rsampling: step ${step}/${total}  ${((Date.now() - started) / 1000).toFixed(1)} s`);
        if (step === total) io.stderr('\n');
      },
    };
    let samples: Float32Array;
    try {
      const session = await openSession(modelPath, threads ? { intraOpNumThreads: threads as number } : {});
      try {
        samples = await sampleImages(denoiserFromSession(session, denoiserNamesFromSidecar(sidecar)), schedule, labels, imageShape, options);
      } finally {
        await session.release();
      }
    } catch (error) {
      return fail((error as Error).message.split('\n')[0]!);
    }

    const pngPath = resolve(io.cwd, output);
    const base = pngPath.replace(/\.png$/i, '');
    const binPath = `${base}.f32.bin`;
    const jsonPath = `${base}.json`;
    const dims = [labels.length, ...imageShape];
    const manifest = {
      model: modelPath,
      samples: { file: binPath.slice(dirname(binPath).length + 1), dtype: 'float32', shape: dims, byte_order: 'little', layout: 'C (row-major)' },
      labels,
      sampler: { name: sampler, ...(sampler === 'ddim' ? { steps, eta } : { steps: sidecar.T }), seed, batch },
      wall_s: Number(((Date.now() - started) / 1000).toFixed(2)),
    };
    try {
      // All three or none; never onto the model or sidecar read (e.g. `-o model.onnx`).
      using outputs = new OutputTransaction();
      outputs.addInputs([modelPath, schedulePath]);
      outputs.writeFile(binPath, new Uint8Array(samples.buffer, samples.byteOffset, samples.byteLength));
      outputs.writeFile(jsonPath, `${JSON.stringify(manifest, null, 2)}\n`);
      outputs.writeFile(pngPath, imageGridPng(samples, dims, { cols: perClass as number, scale: scale as number }));
      outputs.commit();
    } catch (error) {
      return fail(`cannot write outputs: ${(error as Error).message}`);
    }
    io.stdout(`wrote ${pngPath} (${labels.length} samples, ${classes.length} classes × ${perClass as number}), ${binPath}, ${jsonPath}\n`);
    return 0;
  },
};
