/**
 * `qcompile synth dit|unet --preset NAME [--seed N] -o DIR`: writes a synthetic real-size diffusion model with
 * the graph of a torch ONNX export of the published architecture and seeded random weights — a DiT (model.onnx,
 * model.onnx.data, schedule.json) or a Stable Diffusion UNet laid out as an optimum pipeline folder (unet/,
 * scheduler/, model_index.json, conditioning/*.npy). Weights are generated while they are written, so memory
 * stays at about one tensor whatever the model's size.
 */
import { join, resolve } from 'node:path';
import { OutputTransaction } from '../../ir/atomic-file.js';
import type { Model } from '../../ir/core.js';
import { saveModel } from '../../ir/serde.js';
import { DIT_PRESETS, buildDit, ditParameterCount, ditSchedule } from '../../synth/dit.js';
import { encodeNpyFloat32 } from '../../synth/npy.js';
import { Random } from '../../synth/random.js';
import { SD15_SCHEDULER_CONFIG, SD_UNET_PRESETS, buildSdUnet, sdModelIndex, sdUnetConfigJson, sdUnetParameterCount } from '../../synth/sd-unet.js';
import type { CliIO, Command } from '../command.js';

/** Precomputed prompt conditionings written next to a UNet, and their token count (CLIP's 77). */
const PROMPTS = 8;
const SEQUENCE = 77;

const USAGE = `Usage: qcompile synth dit --preset NAME [--seed N] [--learn-sigma | --no-learn-sigma] -o DIR
       qcompile synth unet --preset NAME [--seed N] -o DIR

Writes a model with the graph of a torch ONNX export (opset 17) of the published architecture and seeded
random weights (not a trained model):
  dit   DIR/model.onnx, DIR/model.onnx.data, DIR/schedule.json (DiT, Peebles & Xie; inputs x, t, y)
        presets: ${Object.keys(DIT_PRESETS).join(', ')}
  unet  a diffusers UNet2DConditionModel (inputs sample, timestep, encoder_hidden_states) as an optimum
        pipeline folder: DIR/unet/model.onnx (+ model.onnx.data), DIR/unet/config.json,
        DIR/scheduler/scheduler_config.json, DIR/model_index.json, and DIR/conditioning/prompt_000..${String(PROMPTS - 1).padStart(3, '0')}.npy
        + uncond.npy: random [${SEQUENCE}, cross_attention_dim] encoder_hidden_states, to calibrate without a text encoder
        presets: ${Object.keys(SD_UNET_PRESETS).join(', ')} (sd15: Stable Diffusion 1.5, 859.5 M parameters)

Options:
  --preset NAME       architecture size (required)
  --seed N            weight seed, a non-negative integer (default 0); the same seed gives identical files
  --learn-sigma       dit: also output the learned variance (2·C channels; the published presets' default)
  --no-learn-sigma    dit: output epsilon only (C channels)
  -o DIR              output folder (created if missing)
`;

export const synthCommand: Command = {
  name: 'synth',
  summary: 'write a synthetic real-size DiT or SD UNet (seeded random weights, torch-export graph) for tests and benchmarks',
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
      } else if (arg.startsWith('-')) return usageError(`unknown option '${arg}'`);
      else positional.push(arg);
    }
    const family = positional[0];
    if (positional.length !== 1 || (family !== 'dit' && family !== 'unet')) return usageError('expected one model family: \'dit\' or \'unet\'');
    if (preset === undefined) return usageError('--preset is required');
    const presets: Record<string, unknown> = family === 'dit' ? DIT_PRESETS : SD_UNET_PRESETS;
    if (!Object.hasOwn(presets, preset)) return usageError(`unknown ${family} preset '${preset}' (one of ${Object.keys(presets).join(', ')})`);
    if (family === 'unet' && learnSigma !== undefined) return usageError('--learn-sigma and --no-learn-sigma are DiT options (an SD UNet predicts epsilon only)');
    if (!/^\d+$/.test(seedText) || Number(seedText) > 0xffffffff) return usageError(`--seed must be an integer in 0..4294967295, got '${seedText}'`);
    if (outDir === undefined) return usageError('-o DIR is required');
    const seed = Number(seedText);
    const dir = resolve(io.cwd, outDir);

    const started = performance.now();
    let described = '';
    try {
      // Every file appears together at the end; an interrupted synth (gigabytes) leaves nothing behind.
      using outputs = new OutputTransaction();
      const save = (model: Model, path: string, count: number) => {
        described += ` (${count.toLocaleString('en-US')} weights, ${((4 * count) / 2 ** 30).toFixed(2)} GiB)`;
        saveModel(model, outputs.stageFile(path), { externalData: 'always', externalDataName: 'model.onnx.data' });
      };
      const json = (path: string, value: unknown) => outputs.writeFile(path, `${JSON.stringify(value, null, 2)}\n`);
      if (family === 'dit') {
        const config = { ...DIT_PRESETS[preset]!, learnSigma: learnSigma ?? DIT_PRESETS[preset]!.learnSigma };
        described = config.learnSigma ? config.name : `${config.name} without learned sigma`;
        save(buildDit(config, { seed, onWeight: progress(io, 4 * ditParameterCount(config)) }), join(dir, 'model.onnx'), ditParameterCount(config));
        json(join(dir, 'schedule.json'), ditSchedule(config, seed));
      } else {
        const config = SD_UNET_PRESETS[preset]!;
        described = config.name;
        save(buildSdUnet(config, { seed, onWeight: progress(io, 4 * sdUnetParameterCount(config)) }), join(dir, 'unet', 'model.onnx'), sdUnetParameterCount(config));
        json(join(dir, 'unet', 'config.json'), sdUnetConfigJson(config));
        json(join(dir, 'scheduler', 'scheduler_config.json'), SD15_SCHEDULER_CONFIG);
        json(join(dir, 'model_index.json'), sdModelIndex(config, seed));
        const states = (stream: number) => {
          const values = new Float32Array(SEQUENCE * config.crossAttentionDim);
          new Random(seed, stream).fillNormal(values, 0, 1);
          return encodeNpyFloat32([SEQUENCE, config.crossAttentionDim], values);
        };
        // Streams far above the weights' (a few thousand tensors), so no conditioning repeats a weight.
        for (let p = 0; p < PROMPTS; p++) outputs.writeFile(join(dir, 'conditioning', `prompt_${String(p).padStart(3, '0')}.npy`), states(1_000_000 + p));
        outputs.writeFile(join(dir, 'conditioning', 'uncond.npy'), states(1_000_000 + PROMPTS));
      }
      outputs.commit();
    } catch (error) {
      io.stderr(`qcompile: error: ${outDir}: ${(error as Error).message.split('\n')[0]}\n`);
      return 1;
    }
    const seconds = (performance.now() - started) / 1000;
    io.stderr(`synth: wrote ${described} to ${outDir} in ${seconds.toFixed(1)} s\n`);
    return 0;
  },
};

/** A weight callback that reports every 10% of `totalBytes` on stderr. */
function progress(io: CliIO, totalBytes: number): (bytes: number) => void {
  let doneBytes = 0;
  let reported = 0;
  return (bytes) => {
    doneBytes += bytes;
    const percent = Math.floor((100 * doneBytes) / totalBytes);
    if (percent >= reported + 10) {
      reported = percent - (percent % 10);
      io.stderr(`synth: ${reported}% (${(doneBytes / 2 ** 20).toFixed(0)} MiB)\n`);
    }
  };
}
