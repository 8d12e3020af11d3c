/**
 * End-to-end ORT CPU latency of whole diffusion models, FP32 against their quantized compiles, at batch 2 (one
 * classifier-free-guidance step): DiT-XL/2 (`synth dit --preset dit-xl-2`) and the SD-1.5 UNet (`synth unet
 * --preset sd15`), each compiled by the CLI with `bench/latency/w8a8-speed.qrecipe` (`w8a8`: W8A8 static,
 * little calibration: only the graph form matters here), `recipes/rtn-w4a16-g128.qrecipe` (`w4`: weight-only
 * int4, MatMulNBits accuracy 0), `w7a8` / `w8a8-uint8` (the W8A8 form with 7-bit or uint8 weight codes: exact on
 * x86 CPUs without VNNI, where int8 codes beyond ±64 saturate ORT's uint8×int8 kernels), `w8a8-sym` (symmetric
 * int8 activations, smoothquant-w8a8's form), `bench/latency/w4a8-dynamic.qrecipe` (`w4a8`: int4 with dynamic int8
 * groups, MatMulNBits accuracy 4), and `w4-load` / `w4c4-load` (rtn-w4a16-g128, and the same with int4 convs
 * `bench/latency/w4-int4-conv.qrecipe`, run with ORT's DequantizeLinear folded at session load; see VARIANTS).
 * The FP32 session stays open while each quantized one is timed against it, runs interleaved (FP32, quantized,
 * alternating which goes first) after warm-ups, so a busy machine slows both alike; at most two sessions are
 * held at once. Reports medians, speed-ups, model bytes, session-creation seconds, the load average, and with
 * `--profile` ORT's per-op-type profile of one run of each model (where the time goes), and each variant against
 * issue #15's acceptance (`acceptance`). JSON last line.
 * `--work` holds the float models as `dit/model.onnx` and `sd15/unet/model.onnx` (synthesized when missing; a
 * symlink to an existing folder will do) and the compiles as `<model>-<variant>/model.onnx` (reused when present).
 * Run: npx tsx bench/latency.ts [--runs 7] [--threads 2] [--work /tmp/qcompile-latency] [--models dit,sd15] [--variants w8a8,w4,w4a8] [--profile]
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import * as ort from 'onnxruntime-node';
import { seededRandom } from '../src/random.js';
import { profileByOp } from './latency/ort-profile.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { values: args } = parseArgs({
  options: {
    runs: { type: 'string', default: '7' },
    threads: { type: 'string', default: '2' },
    work: { type: 'string', default: join(tmpdir(), 'qcompile-latency') },
    models: { type: 'string', default: 'dit,sd15' },
    variants: { type: 'string', default: 'w8a8,w4' },
    profile: { type: 'boolean', default: false },
  },
});
const runs = Number(args.runs);
const threads = Number(args.threads);
const BATCH = 2;

/** A model under test: how to synthesize it, extra compile arguments, and the shape of each input at batch 2. */
interface Subject {
  synth: string[];
  /** The float model inside the synthesized folder. */
  model: string;
  /** Extra `qcompile` arguments for a compile that calibrates (e.g. the UNet's text conditioning). */
  calibrationArgs: (dir: string) => string[];
  shapes: Record<string, number[]>;
}
const SUBJECTS: Record<string, Subject> = {
  dit: { synth: ['synth', 'dit', '--preset', 'dit-xl-2'], model: 'model.onnx', calibrationArgs: () => [], shapes: { x: [BATCH, 4, 32, 32], t: [BATCH], y: [BATCH] } },
  sd15: {
    synth: ['synth', 'unet', '--preset', 'sd15'],
    model: join('unet', 'model.onnx'),
    calibrationArgs: (dir) => ['--conditioning', join(dir, 'conditioning'), '--resolution', '64'],
    shapes: { sample: [BATCH, 4, 64, 64], timestep: [BATCH], encoder_hidden_states: [BATCH, 77, 768] },
  },
};
/**
 * Issue #15's acceptance 2, per model: the W8A8 speed-up over FP32, and for the int4 variants at least FP32's
 * speed at a sixth of its bytes. The JSON reports each measured variant against it.
 */
const ACCEPTANCE: Record<string, { w8a8Speedup: number; w4Speedup: number; w4Smaller: number }> = {
  dit: { w8a8Speedup: 2.0, w4Speedup: 1.0, w4Smaller: 6 },
  sd15: { w8a8Speedup: 1.5, w4Speedup: 1.0, w4Smaller: 6 },
};

/** `met` / `not met` for each measured variant of `row` against the model's acceptance. */
function acceptanceOf(name: string, row: Record<string, unknown>, variants: string[]): Record<string, string> {
  const goal = ACCEPTANCE[name]!;
  const verdicts: Record<string, string> = {};
  for (const v of variants) {
    const speedup = row[`${v}_speedup`] as number;
    const smaller = row[`${v}_smaller`] as number;
    const w8 = v.startsWith('w8a8') || v === 'w7a8';
    const met = w8 ? speedup >= goal.w8a8Speedup : speedup >= goal.w4Speedup && smaller >= goal.w4Smaller;
    const wanted = w8 ? `>= ${goal.w8a8Speedup}x faster` : `>= ${goal.w4Speedup}x as fast, >= ${goal.w4Smaller}x smaller`;
    verdicts[v] = `${met ? 'met' : 'not met'}: ${speedup}x${w8 ? '' : `, ${smaller}x smaller`} (wanted ${wanted})`;
  }
  return verdicts;
}

/**
 * The quantized variants: the recipe each is compiled with (`compile`: the folder of another variant's compile
 * it shares) and extra session config entries. `session.disable_quant_qdq=1` turns ORT's QDQ transformers off,
 * so its constant folding dequantizes weight-only DequantizeLinear → Conv/MatMul at session load (float speed
 * and float memory at run time; int4 on disk) where by default it dequantizes on every run.
 */
const FOLD_AT_LOAD = { 'session.disable_quant_qdq': '1' };
const VARIANTS: Record<string, { recipe: string; calibrates: boolean; compile?: string; config?: Record<string, string> }> = {
  w8a8: { recipe: join(root, 'bench', 'latency', 'w8a8-speed.qrecipe'), calibrates: true },
  w7a8: { recipe: join(root, 'bench', 'latency', 'w7a8-speed.qrecipe'), calibrates: true },
  'w8a8-uint8': { recipe: join(root, 'bench', 'latency', 'w8a8-uint8-speed.qrecipe'), calibrates: true },
  'w8a8-sym': { recipe: join(root, 'bench', 'latency', 'w8a8-sym-speed.qrecipe'), calibrates: true },
  w4: { recipe: join(root, 'recipes', 'rtn-w4a16-g128.qrecipe'), calibrates: false },
  w4a8: { recipe: join(root, 'bench', 'latency', 'w4a8-dynamic.qrecipe'), calibrates: false },
  'w4-load': { recipe: join(root, 'recipes', 'rtn-w4a16-g128.qrecipe'), calibrates: false, compile: 'w4', config: FOLD_AT_LOAD },
  'w4c4-load': { recipe: join(root, 'bench', 'latency', 'w4-int4-conv.qrecipe'), calibrates: false, config: FOLD_AT_LOAD },
};

/** Runs the CLI from sources in its own process; throws with its stderr on failure. Returns wall seconds. */
function qcompile(cliArgs: string[]): number {
  const started = performance.now();
  const run = spawnSync(process.execPath, ['--import', 'tsx', join(root, 'src', 'cli', 'main.ts'), ...cliArgs], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 << 20 });
  if (run.status !== 0) throw new Error(`qcompile ${cliArgs.join(' ')} exited ${run.status}:\n${run.stderr.slice(-3000)}`);
  process.stderr.write(run.stdout.split('\n').slice(-12).join('\n'));
  return (performance.now() - started) / 1000;
}

/** Bytes of a model file and the external-data files next to it that share its name. */
function modelBytes(path: string): number {
  const dir = dirname(path);
  const base = path.slice(dir.length + 1);
  return readdirSync(dir)
    .filter((f) => f === base || (f.startsWith(base.replace(/\.onnx$/, '')) && /\.(data|bin|weights)$|\.onnx\.data$|\.onnx_data$/.test(f)))
    .reduce((n, f) => n + statSync(join(dir, f)).size, 0);
}

function sessionOptions(variant?: string): ort.InferenceSession.SessionOptions {
  const config = (variant && VARIANTS[variant]?.config) || undefined;
  const extra = config ? { extra: Object.fromEntries(Object.entries(config).map(([key, value]) => [key.split('.')[0]!, { [key.split('.').slice(1).join('.')]: value }])) } : {};
  return { graphOptimizationLevel: 'all', intraOpNumThreads: threads, interOpNumThreads: 1, executionMode: 'sequential', ...extra };
}

/** Seeded feeds for `session`'s inputs at the subject's shapes (a loud error for an input it does not know). */
function feedsFor(session: ort.InferenceSession, shapes: Record<string, number[]>): Record<string, ort.Tensor> {
  const random = seededRandom(7);
  const feeds: Record<string, ort.Tensor> = {};
  for (const meta of session.inputMetadata) {
    const dims = shapes[meta.name];
    if (!dims || !meta.isTensor) throw new Error(`latency bench: no shape for input '${meta.name}' (known: ${Object.keys(shapes).join(', ')})`);
    const size = dims.reduce((a, b) => a * b, 1);
    if (meta.type === 'int64') feeds[meta.name] = new ort.Tensor('int64', BigInt64Array.from({ length: size }, (_, i) => BigInt(meta.name === 'y' ? i % 10 : 500)), dims);
    else if (meta.type === 'float32') feeds[meta.name] = new ort.Tensor('float32', Float32Array.from({ length: size }, () => (meta.name.startsWith('t') ? 500 : random() * 2 - 1)), dims);
    else throw new Error(`latency bench: input '${meta.name}' has type ${meta.type}`);
  }
  return feeds;
}

async function open(path: string, variant?: string): Promise<{ session: ort.InferenceSession; createSeconds: number }> {
  const started = performance.now();
  const session = await ort.InferenceSession.create(path, sessionOptions(variant));
  return { session, createSeconds: Number(((performance.now() - started) / 1000).toFixed(2)) };
}

const median = (values: number[]): number => Number([...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!.toFixed(1));

async function timed(session: ort.InferenceSession, feeds: Record<string, ort.Tensor>): Promise<number> {
  const started = performance.now();
  await session.run(feeds);
  return performance.now() - started;
}

const results: Record<string, unknown> = {};
const summaries: string[] = [];
const loadBefore = loadavg()[0]!;
for (const name of args.models.split(',')) {
  const subject = SUBJECTS[name];
  if (!subject) throw new Error(`latency bench: unknown model '${name}' (known: ${Object.keys(SUBJECTS).join(', ')})`);
  const dir = join(args.work, name);
  const fp32Path = join(dir, subject.model);
  if (!existsSync(fp32Path)) qcompile([...subject.synth, '-o', dir]);
  const row: Record<string, unknown> = { fp32_bytes: modelBytes(fp32Path) };
  const paths: Record<string, string> = { fp32: fp32Path };
  for (const variant of args.variants.split(',')) {
    const spec = VARIANTS[variant];
    if (!spec) throw new Error(`latency bench: unknown variant '${variant}' (known: ${Object.keys(VARIANTS).join(', ')})`);
    const outDir = join(args.work, `${name}-${spec.compile ?? variant}`);
    const out = join(outDir, 'model.onnx');
    if (!existsSync(out)) {
      mkdirSync(outDir, { recursive: true });
      row[`${variant}_compile_s`] = Number(qcompile([fp32Path, spec.recipe, '-o', out, ...(spec.calibrates ? subject.calibrationArgs(dir) : [])]).toFixed(1));
    }
    paths[variant] = out;
    row[`${variant}_bytes`] = modelBytes(out);
    row[`${variant}_smaller`] = Number(((row.fp32_bytes as number) / (row[`${variant}_bytes`] as number)).toFixed(2));
  }

  const fp32 = await open(fp32Path);
  row.fp32_create_s = fp32.createSeconds;
  const feeds = feedsFor(fp32.session, subject.shapes);
  for (let i = 0; i < 2; i++) await fp32.session.run(feeds);
  const fp32Times: number[] = [];
  for (const variant of args.variants.split(',')) {
    const quantized = await open(paths[variant]!, variant);
    row[`${variant}_create_s`] = quantized.createSeconds;
    for (let i = 0; i < 2; i++) await quantized.session.run(feeds);
    const pairFp32: number[] = [];
    const pairQuantized: number[] = [];
    for (let r = 0; r < runs; r++) {
      if (r % 2 === 0) {
        pairFp32.push(await timed(fp32.session, feeds));
        pairQuantized.push(await timed(quantized.session, feeds));
      } else {
        pairQuantized.push(await timed(quantized.session, feeds));
        pairFp32.push(await timed(fp32.session, feeds));
      }
    }
    await quantized.session.release();
    fp32Times.push(...pairFp32);
    row[`${variant}_ms`] = median(pairQuantized);
    row[`${variant}_fp32_ms`] = median(pairFp32);
    row[`${variant}_speedup`] = Number((median(pairFp32) / median(pairQuantized)).toFixed(2));
  }
  await fp32.session.release();
  row.fp32_ms = median(fp32Times);
  if (args.profile) {
    const profiles: Record<string, Record<string, number>> = {};
    for (const [variant, path] of Object.entries(paths)) profiles[variant] = await profileByOp(path, feeds, sessionOptions(variant));
    row.profile_ms = profiles;
  }
  row.acceptance = acceptanceOf(name, row, args.variants.split(','));
  results[name] = row;
  summaries.push(`${name} b${BATCH}: fp32 ${row.fp32_ms} ms; ${args.variants.split(',').map((v) => `${v} ${row[`${v}_speedup`]}x faster, ${row[`${v}_smaller`]}x smaller`).join('; ')}`);
}
const loadAfter = loadavg()[0]!;
console.log(JSON.stringify({ runs, threads, batch: BATCH, loadAverage: [Number(loadBefore.toFixed(2)), Number(loadAfter.toFixed(2))], ...results, summary: `${summaries.join(' | ')} (ORT CPU ${threads} threads, medians of ${runs} interleaved, load ${loadBefore.toFixed(1)}→${loadAfter.toFixed(1)})` }));
