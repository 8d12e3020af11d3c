/**
 * `qcompile synth dit|unet|pixart|sd3 --preset NAME [--seed N] -o DIR`: writes a synthetic real-size diffusion
 * model with the graph of an ONNX export of the published architecture and seeded random weights — a DiT
 * (model.onnx, model.onnx.data, schedule.json) or a diffusers pipeline folder (unet/ or transformer/,
 * scheduler/, model_index.json, conditioning/*.npy) for an SD UNet, PixArt-α or an SD3-style MMDiT. Weights are
 * generated while they are written, so memory stays at about one tensor whatever the model's size.
 */
import { join, resolve } from 'node:path';
import { OutputTransaction } from '../../ir/atomic-file.js';
import { saveModel } from '../../ir/serde.js';
import { DIT_PRESETS, buildDit, ditParameterCount, ditSchedule } from '../../synth/dit.js';
import { MMDIT_PRESETS, mmditParameterCount, writeMmditPipeline } from '../../synth/mmdit.js';
import { CONDITIONING_PROMPTS } from '../../synth/pipeline-folder.js';
import { PIXART_PRESETS, pixartParameterCount, writePixartPipeline } from '../../synth/pixart.js';
import { SD_UNET_PRESETS, sdUnetParameterCount, writeSdUnetPipeline } from '../../synth/sd-unet.js';
import type { CliIO, Command } from '../command.js';
import { Progress } from '../progress.js';

/** A pipeline-folder family: its preset names, and per preset the parameter count and the writer. */
interface PipelineFamily {
  presets: readonly string[];
  parameters: (preset: string) => number;
  write: (preset: string, seed: number, dir: string, options: { onWeight: (bytes: number) => void }) => string[];
}

function pipelineFamily<C>(presets: Record<string, C>, parameters: (config: C) => number, write: (config: C, seed: number, dir: string, options: { onWeight: (bytes: number) => void }) => string[]): PipelineFamily {
  return { presets: Object.keys(presets), parameters: (preset) => parameters(presets[preset]!), write: (preset, ...rest) => write(presets[preset]!, ...rest) };
}

const PIPELINES: Record<string, PipelineFamily> = {
  unet: pipelineFamily(SD_UNET_PRESETS, sdUnetParameterCount, writeSdUnetPipeline),
  pixart: pipelineFamily(PIXART_PRESETS, pixartParameterCount, writePixartPipeline),
  sd3: pipelineFamily(MMDIT_PRESETS, mmditParameterCount, writeMmditPipeline),
};

const last = String(CONDITIONING_PROMPTS - 1).padStart(3, '0');

const USAGE = `Usage: qcompile synth dit --preset NAME [--seed N] [--learn-sigma | --no-learn-sigma] [-q] -o DIR
       qcompile synth unet|pixart|sd3 --preset NAME [--seed N] [-q] -o DIR

Writes a model with the graph of an ONNX export (opset 17) of the published architecture and seeded random
weights (not a trained model):
  dit     DIR/model.onnx, DIR/model.onnx.data, DIR/schedule.json (DiT, Peebles & Xie; inputs x, t, y)
          presets: ${Object.keys(DIT_PRESETS).join(', ')}
  unet    a diffusers UNet2DConditionModel (inputs sample, timestep, encoder_hidden_states; DDPM-style schedule)
          presets: ${Object.keys(SD_UNET_PRESETS).join(', ')} (sd15: Stable Diffusion 1.5, 859.5 M parameters)
  pixart  a PixArt-α PixArtTransformer2DModel (adaLN-single, caption projection, learned sigma)
          presets: ${Object.keys(PIXART_PRESETS).join(', ')}
  sd3     an SD3-style SD3Transformer2DModel (joint attention, float timestep, flow matching)
          presets: ${Object.keys(MMDIT_PRESETS).join(', ')}
  unet, pixart and sd3 are written as a diffusers/optimum pipeline folder: DIR/unet/ or DIR/transformer/
  (model.onnx, model.onnx.data, config.json), DIR/scheduler/scheduler_config.json, DIR/model_index.json, and
  DIR/conditioning/ (prompt_000..${last}.npy + uncond.npy, one subfolder per input when there are several):
  random precomputed conditioning, to calibrate without a text encoder (--conditioning DIR/conditioning).

Options:
  --preset NAME       architecture size (required)
  --seed N            weight seed, a non-negative integer (default 0); the same seed gives identical files
  --learn-sigma       dit: also output the learned variance (2·C channels; the published presets' default)
  --no-learn-sigma    dit: output epsilon only (C channels)
  -q, --quiet         no progress of the weights written (a bar on a terminal, else throttled lines)
  -o DIR              output folder (created if missing)
`;

export const synthCommand: Command = {
  name: 'synth',
  summary: 'write a synthetic real-size DiT, SD UNet, PixArt-α or SD3-style transformer (seeded random weights, torch-export graph) for tests and benchmarks',
  usage: USAGE,
  async run(argv: string[], io: CliIO): Promise<number> {
    const usageError = (message: string) => {
      io.stderr(`qcompile synth: error: ${message}\n${USAGE}`);
      return 2;
    };
    if (argv.includes('--help') || argv.includes('-h')) {
      io.stdout(USAGE);
      return 0;
    }
    const positional: string[] = [];
    let preset: string | undefined;
    let seedText = '0';
    let outDir: string | undefined;
    let learnSigma: boolean | undefined;
    let quiet = false;
    for (let i = 0; i < argv.length; i++) {
      const arg = argv[i]!;
      if (arg === '--preset' || arg === '--seed' || arg === '-o' || arg === '--output') {
        const value = argv[++i];
        if (value === undefined) return usageError(`${arg} needs a value`);
        if (arg === '--preset') preset = value;
        else if (arg === '--seed') seedText = value;
        else outDir = value;
      } else if (arg === '--learn-sigma' || arg === '--no-learn-sigma') {
        if (learnSigma !== undefined) return usageError('give --learn-sigma or --no-learn-sigma once');
        learnSigma = arg === '--learn-sigma';
      } else if (arg === '-q' || arg === '--quiet') quiet = true;
      else if (arg.startsWith('-')) return usageError(`unknown option '${arg}'`);
      else positional.push(arg);
    }
    const family = positional[0];
    if (positional.length !== 1 || (family !== 'dit' && !Object.hasOwn(PIPELINES, family!))) return usageError(`expected one model family: dit, ${Object.keys(PIPELINES).join(', ')}`);
    if (preset === undefined) return usageError('--preset is required');
    const presets = family === 'dit' ? Object.keys(DIT_PRESETS) : PIPELINES[family!]!.presets;
    if (!presets.includes(preset)) return usageError(`unknown ${family} preset '${preset}' (one of ${presets.join(', ')})`);
    if (family !== 'dit' && learnSigma !== undefined) return usageError('--learn-sigma and --no-learn-sigma are DiT options');
    if (!/^\d+$/.test(seedText) || Number(seedText) > 0xffffffff) return usageError(`--seed must be an integer in 0..4294967295, got '${seedText}'`);
    if (outDir === undefined) return usageError('-o DIR is required');
    const seed = Number(seedText);
    const dir = resolve(io.cwd, outDir);

    const started = performance.now();
    const progress = new Progress(io, { quiet });
    const label = 'synth: weights';
    let described: string;
    try {
      if (family === 'dit') {
        const config = { ...DIT_PRESETS[preset]!, learnSigma: learnSigma ?? DIT_PRESETS[preset]!.learnSigma };
        const count = ditParameterCount(config);
        described = `${config.learnSigma ? config.name : `${config.name} without learned sigma`}${sized(count)}`;
        // The model and its sidecar appear together at the end; an interrupted synth (gigabytes) leaves nothing behind.
        // Its weights are generated as they are written: the save's progress is theirs.
        using outputs = new OutputTransaction();
        const progressOfSave = (done: number, total: number) => progress.update(label, done, total, 'bytes');
        saveModel(buildDit(config, { seed }), outputs.stageFile(join(dir, 'model.onnx')), { externalData: 'always', externalDataName: 'model.onnx.data', progress: progressOfSave });
        outputs.writeFile(join(dir, 'schedule.json'), `${JSON.stringify(ditSchedule(config, seed), null, 2)}\n`);
        outputs.commit();
      } else {
        const pipeline = PIPELINES[family!]!;
        const count = pipeline.parameters(preset);
        described = `${family} ${preset}${sized(count)}`;
        let done = 0;
        pipeline.write(preset, seed, dir, { onWeight: (bytes) => progress.update(label, (done += bytes), 4 * count, 'bytes') });
      }
    } catch (error) {
      progress.print(`qcompile: error: ${outDir}: ${(error as Error).message.split('\n')[0]}\n`);
      return 1;
    }
    const seconds = (performance.now() - started) / 1000;
    progress.print(`synth: wrote ${described} to ${outDir} in ${seconds.toFixed(1)} s\n`);
    return 0;
  },
};

/** ` (859,520,964 weights, 3.20 GiB)`. */
function sized(count: number): string {
  return ` (${count.toLocaleString('en-US')} weights, ${((4 * count) / 2 ** 30).toFixed(2)} GiB)`;
}
