/** `qcompile eval`: compares a quantized model with its FP original and writes report.json + report.html. */
import { existsSync, readFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { OutputTransaction } from '../../ir/atomic-file.js';
import { decodePassTimings, passTimingsPath, type PassTimings } from '../../report/compile-record.js';
import { renderReportHtml } from '../../report/report.js';
import { parseRecipeFile } from '../../recipe/parse.js';
import { evaluate } from '../../runtime/evaluate.js';
import { parseArgs } from '../args.js';
import type { CliIO, Command } from '../command.js';
import { Progress } from '../progress.js';

const USAGE = `Usage: qcompile eval --fp FP.onnx --quant Q.onnx -o REPORT_DIR [options]

Samples both models from the same seeds and writes REPORT_DIR/report.json and a self-contained report.html.
  --samples N        samples per model (default 100)
  --steps S          DDIM steps (default 20)
  --seed K           seed of the starting noise (default 0)
  --recipe R         the recipe that made Q (shown in the report)
  --features F.onnx  feature extractor with outputs 'features' and 'logits' (FD and label agreement)
  --real-mu MU.bin --real-cov COV.bin   float64 mean [D] and covariance [D×D] of the real data's features
  --passes FILE      the compile's pass timings (default: Q.onnx.passes.json when it exists)
  --prompts FILE     prompts for a text-conditioned model (one per line, or a 'prompt<TAB>class' TSV:
                     the class gives prompt adherence)
  --conditioning DIR precomputed conditioning instead (.npy per prompt + uncond.npy)
  --guidance G       classifier-free guidance scale (default: the recipe's when it sets one other than 1,
                     else the sidecar's recommended scale, else 1); both models sample with it
  -q, --quiet        no progress lines: only errors and the summary

The layer table (group sizes, activation forms, scaling factors) is read off Q's graph and metadata.`;

export const evalCommand: Command = {
  name: 'eval',
  summary: 'compare a quantized model with its FP original: image metrics, SQNR by timestep, report.html',
  usage: USAGE,
  async run(argv: string[], io: CliIO): Promise<number> {
    const args = parseArgs(argv.map((a) => (a === '-q' ? '--quiet' : a)), { fp: 'string', quant: 'string', o: 'string', output: 'string', samples: 'string', steps: 'string', seed: 'string', recipe: 'string', features: 'string', 'real-mu': 'string', 'real-cov': 'string', passes: 'string', prompts: 'string', conditioning: 'string', guidance: 'string', quiet: 'boolean' }, io);
    if (!args) return 2;
    const o = args.options;
    const progress = new Progress(io, { quiet: o.quiet === true });
    const out = (o.output ?? o.o ?? args.positional.find((_, i, all) => all[i - 1] === '-o')) as string | undefined;
    if (!o.fp || !o.quant || !out) {
      io.stderr(`qcompile eval: --fp, --quant and -o are required\n${USAGE}\n`);
      return 2;
    }
    const number = (key: string, fallback: number) => (o[key] === undefined ? fallback : Number(o[key]));
    const samples = number('samples', 100);
    const steps = number('steps', 20);
    const seed = number('seed', 0);
    if (![samples, steps, seed].every((n) => Number.isInteger(n) && n >= 0) || samples < 2 || steps < 1) {
      io.stderr('qcompile eval: --samples (≥ 2), --steps (≥ 1) and --seed must be non-negative integers\n');
      return 2;
    }
    const guidanceFlag = o.guidance === undefined ? undefined : Number(o.guidance);
    if (guidanceFlag !== undefined && !(guidanceFlag > 0 && guidanceFlag <= 100)) {
      io.stderr(`qcompile eval: --guidance must be a number in (0, 100], got '${String(o.guidance)}'\n`);
      return 2;
    }
    if (o.features && (!o['real-mu'] || !o['real-cov'])) {
      io.stderr('qcompile eval: --features needs --real-mu and --real-cov\n');
      return 2;
    }
    const at = (p: unknown) => resolve(io.cwd, p as string);
    // Pass timings: the explicit file must be one; the default sidecar is used only when it is there.
    const passesFile = o.passes ? at(o.passes) : passTimingsPath(at(o.quant));
    let passTimings: { source: string; timings: PassTimings } | undefined;
    if (o.passes || existsSync(passesFile)) {
      const timings = existsSync(passesFile) ? decodePassTimings(readFileSync(passesFile, 'utf8')) : undefined;
      if (!timings) {
        io.stderr(`qcompile eval: ${passesFile}: ${existsSync(passesFile) ? 'not a pass-timings file (qcompile writes OUT.onnx.passes.json)' : 'no such file'}\n`);
        if (o.passes) return 2;
      } else passTimings = { source: basename(passesFile), timings };
    }
    // The recipe's prediction is checked against the sidecar (a recipe that does not parse is only shown).
    const recipeDiffusion = o.recipe ? parseRecipeFile(at(o.recipe)).recipe?.diffusion : undefined;
    const recipePrediction = recipeDiffusion?.prediction === 'model' ? undefined : recipeDiffusion?.prediction;
    const guidance = guidanceFlag ?? (recipeDiffusion && recipeDiffusion.guidance > 0 ? recipeDiffusion.guidance : undefined);
    const report = await evaluate({
      fp: at(o.fp),
      quant: at(o.quant),
      samples,
      steps,
      seed,
      ...(o.recipe ? { recipe: { name: basename(o.recipe as string), text: readFileSync(at(o.recipe), 'utf8') } } : {}),
      ...(recipePrediction ? { recipePrediction } : {}),
      ...(guidance !== undefined ? { guidance } : {}),
      conditioning: { ...(o.prompts ? { prompts: at(o.prompts) } : {}), ...(o.conditioning ? { conditioningDir: at(o.conditioning) } : {}) },
      ...(o.features ? { features: { model: at(o.features), realMu: at(o['real-mu']), realCov: at(o['real-cov']) } } : {}),
      ...(passTimings ? { passTimings } : {}),
      progress: (message) => {
        progress.step();
        progress.info(message);
      },
      stepProgress: (label, done, total) => progress.update(label, done, total),
    });
    const dir = at(out);
    // Both reports or neither; never onto a file the evaluation read.
    using outputs = new OutputTransaction();
    outputs.addInputs([o.fp, o.quant, o.recipe, o.features, o['real-mu'], o['real-cov'], o.prompts, passesFile].filter((p) => p !== undefined).map(at));
    outputs.writeFile(join(dir, 'report.json'), `${JSON.stringify(report, null, 2)}\n`);
    outputs.writeFile(join(dir, 'report.html'), renderReportHtml(report));
    outputs.commit();
    const m = report.metrics!;
    const g = report.guidanceSignal;
    io.stdout(
      `wrote ${join(dir, 'report.html')}\nPSNR vs FP: mean ${m.psnrDb!.mean.toFixed(2)} ± ${(2 * (m.psnrDb!.se ?? 0)).toFixed(2)} dB, min ${m.psnrDb!.min.toFixed(2)} dB` +
        (m.labelAgreement !== undefined ? `; label agreement ${(100 * m.labelAgreement).toFixed(1)}%` : '') +
        (m.promptAdherence ? `; prompt adherence FP ${(100 * m.promptAdherence.fp).toFixed(1)}%, quantized ${(100 * m.promptAdherence.quant).toFixed(1)}%` : '') +
        (m.fd ? `; FD FP ${m.fd.fp.toFixed(2)}, quantized ${m.fd.quant.toFixed(2)}` : '') +
        (g ? `; guidance-signal SQNR (×${g.guidance}) ${g.sqnrDb.filter(Number.isFinite).length ? `${Math.min(...g.sqnrDb.filter(Number.isFinite)).toFixed(1)}..${Math.max(...g.sqnrDb.filter(Number.isFinite)).toFixed(1)} dB` : 'n/a'}` : '') +
        '\n',
    );
    return 0;
  },
};
