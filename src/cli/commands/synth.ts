/**
 * `qcompile synth dit --preset NAME [--seed N] -o DIR`: writes a synthetic real-size DiT (model.onnx, its
 * external data model.onnx.data, schedule.json). Weights are generated while they are written, so memory
 * stays at about one tensor whatever the model's size.
 */
import { join, resolve } from 'node:path';
import { OutputTransaction } from '../../ir/atomic-file.js';
import { saveModel } from '../../ir/serde.js';
import { DIT_PRESETS, buildDit, ditParameterCount, ditSchedule } from '../../synth/dit.js';
import type { CliIO, Command } from '../command.js';

const USAGE = `Usage: qcompile synth dit --preset NAME [--seed N] -o DIR

Writes DIR/model.onnx, DIR/model.onnx.data and DIR/schedule.json: a DiT with the graph of a torch 1.13 ONNX
export of the published architecture and seeded random weights (not a trained model).

Presets: ${Object.keys(DIT_PRESETS).join(', ')}

Options:
  --preset NAME  architecture size (required)
  --seed N       weight seed, a non-negative integer (default 0); the same seed gives identical files
  -o DIR         output folder (created if missing)
`;

export const synthCommand: Command = {
  name: 'synth',
  summary: 'write a synthetic real-size DiT (seeded random weights, torch-export graph) for tests and benchmarks',
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
    for (let i = 0; i < argv.length; i++) {
      const arg = argv[i]!;
      if (arg === '--preset' || arg === '--seed' || arg === '-o' || arg === '--output') {
        const value = argv[++i];
        if (value === undefined) return usageError(`${arg} needs a value`);
        if (arg === '--preset') preset = value;
        else if (arg === '--seed') seedText = value;
        else outDir = value;
      } else if (arg.startsWith('-')) return usageError(`unknown option '${arg}'`);
      else positional.push(arg);
    }
    if (positional.length !== 1 || positional[0] !== 'dit') return usageError('expected the model family \'dit\'');
    if (preset === undefined) return usageError('--preset is required');
    const config = DIT_PRESETS[preset];
    if (!config) return usageError(`unknown preset '${preset}' (one of ${Object.keys(DIT_PRESETS).join(', ')})`);
    if (!/^\d+$/.test(seedText) || Number(seedText) > 0xffffffff) return usageError(`--seed must be an integer in 0..4294967295, got '${seedText}'`);
    if (outDir === undefined) return usageError('-o DIR is required');
    const seed = Number(seedText);
    const dir = resolve(io.cwd, outDir);

    const totalBytes = 4 * ditParameterCount(config);
    let doneBytes = 0;
    let reported = 0;
    const started = performance.now();
    const onWeight = (bytes: number) => {
      doneBytes += bytes;
      const percent = Math.floor((100 * doneBytes) / totalBytes);
      if (percent >= reported + 10) {
        reported = percent - (percent % 10);
        io.stderr(`synth: ${reported}% (${(doneBytes / 2 ** 20).toFixed(0)} MiB)\n`);
      }
    };
    try {
      // The three files appear together at the end; an interrupted synth (gigabytes) leaves nothing behind.
      using outputs = new OutputTransaction();
      const model = buildDit(config, { seed, onWeight });
      saveModel(model, outputs.stageFile(join(dir, 'model.onnx')), { externalData: 'always', externalDataName: 'model.onnx.data' });
      outputs.writeFile(join(dir, 'schedule.json'), `${JSON.stringify(ditSchedule(config, seed), null, 2)}\n`);
      outputs.commit();
    } catch (error) {
      io.stderr(`qcompile: error: ${outDir}: ${(error as Error).message.split('\n')[0]}\n`);
      return 1;
    }
    const seconds = (performance.now() - started) / 1000;
    io.stderr(`synth: wrote ${config.name} (${ditParameterCount(config).toLocaleString('en-US')} weights, ${(totalBytes / 2 ** 30).toFixed(2)} GiB) to ${outDir} in ${seconds.toFixed(1)} s\n`);
    return 0;
  },
};
