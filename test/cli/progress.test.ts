// Progress of the long steps (issue #15): the reporter's terminal and log forms, exact to the character under a
// fake clock, and real compiles of the dit-digits fixture with and without --quiet.
import { copyFileSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { CliIO } from '../../src/cli/command.js';
import { Progress } from '../../src/cli/progress.js';
import { loadModelSync, saveModel } from '../../src/ir/serde.js';
import { DIT_DIGITS } from '../passes/fixture.js';
import { runCli } from './run-cli.js';

/** A reporter on a captured stderr whose clock reads `clock.t` (milliseconds). */
function reporter(terminal: boolean, quiet = false): { progress: Progress; clock: { t: number }; stderr: () => string } {
  let stderr = '';
  const clock = { t: 0 };
  const io: CliIO = { stdout: () => {}, stderr: (text) => void (stderr += text), cwd: process.cwd(), stderrIsTTY: terminal, now: () => clock.t };
  return { progress: new Progress(io, { quiet }), clock, stderr: () => stderr };
}

describe('Progress (fake clock)', () => {
  it('off a terminal: the first line, one per tenth (a second apart at least) or per 10 s, and the last; elapsed and the ETA at the rate so far', () => {
    const { progress, clock, stderr } = reporter(false);
    const at = (t: number, done: number) => {
      clock.t = t;
      progress.update('calibration trajectories', done, 32);
    };
    at(0, 0);
    at(2_000, 1); // neither a new tenth nor 10 s since the last line
    at(8_000, 4); // a new tenth: 8 s for 4 → 56 s for the other 28
    at(19_000, 5); // same tenth, 11 s since the last line
    at(19_500, 6);
    at(19_800, 7); // a new tenth, but under a second since the last line
    at(21_000, 8);
    at(103_000, 32);
    clock.t = 104_000;
    progress.update('layers', 3, 10); // timed from the end of the previous bar, not from its first report
    clock.t = 3_723_000;
    progress.update('layers', 4, 10);
    expect(stderr()).toBe(
      [
        'calibration trajectories 0/32 (0%)  0:00 elapsed',
        'calibration trajectories 4/32 (12%)  0:08 elapsed, ~0:56 left',
        'calibration trajectories 5/32 (15%)  0:19 elapsed, ~1:42 left',
        'calibration trajectories 8/32 (25%)  0:21 elapsed, ~1:03 left',
        'calibration trajectories 32/32 (100%)  1:43 elapsed',
        'layers 3/10 (30%)  0:01 elapsed, ~0:02 left',
        'layers 4/10 (40%)  1:00:20 elapsed, ~1:30:30 left',
        '',
      ].join('\n'),
    );
  });

  it('a step restarts the clock; bytes are shown in the total’s unit', () => {
    const { progress, clock, stderr } = reporter(false);
    clock.t = 5_000;
    progress.step('[save]');
    clock.t = 7_000;
    progress.update('[save] external data', 2 ** 30, 2.5 * 2 ** 30, 'bytes');
    clock.t = 9_000;
    progress.update('[save] external data', 2.5 * 2 ** 30, 2.5 * 2 ** 30, 'bytes');
    progress.update('synth: weights', 96 * 1024, 180 * 1024, 'bytes');
    expect(stderr()).toBe('[save] external data 1.00/2.50 GiB (40%)  0:02 elapsed, ~0:03 left\n[save] external data 2.50/2.50 GiB (100%)  0:04 elapsed\nsynth: weights 96/180 KiB (53%)  0:00 elapsed, ~0:00 left\n');
  });

  it('on a terminal: one bar redrawn in place (at most every 100 ms), cleared for other lines, finished with a final line', () => {
    const { progress, clock, stderr } = reporter(true);
    progress.step('[3/9 calibrate]');
    progress.update('[3/9 calibrate] calibration batches', 0, 32);
    clock.t = 50;
    progress.update('[3/9 calibrate] calibration batches', 1, 32); // too soon to redraw
    clock.t = 41_000;
    progress.update('[3/9 calibrate] calibration batches', 12, 32);
    progress.info('[2/9] select-layers 1.0 ms');
    progress.print('warning[W001]: x\n');
    clock.t = 100_000;
    progress.update('[3/9 calibrate] calibration batches', 32, 32);
    const clear = '\r\x1b[K';
    expect(stderr()).toBe(
      `${clear}[3/9 calibrate]` +
        `${clear}[3/9 calibrate] calibration batches [--------------------] 0/32  0:00 elapsed` +
        `${clear}[3/9 calibrate] calibration batches [#######-------------] 12/32  0:41 elapsed, ~1:08 left` +
        `${clear}[2/9] select-layers 1.0 ms\n` +
        'warning[W001]: x\n' +
        '[3/9 calibrate] calibration batches [####################] 32/32  1:40 elapsed\n',
    );
  });

  it('--quiet: no progress and no informational lines, on a terminal or not; errors and warnings still print', () => {
    for (const terminal of [true, false]) {
      const { progress, clock, stderr } = reporter(terminal, true);
      progress.step('[1/3 calibrate]');
      progress.update('calibration batches', 0, 4);
      clock.t = 20_000;
      progress.update('calibration batches', 4, 4);
      progress.info('[1/3] calibrate 20.00 s');
      progress.print('qcompile: error: x\n');
      expect(stderr()).toBe('qcompile: error: x\n');
    }
  });
});

describe('saveModel progress', () => {
  it('reports each external tensor written, ending at the external bytes in all', () => {
    const model = loadModelSync(join(DIT_DIGITS, 'model.onnx'));
    const calls: [number, number][] = [];
    saveModel(model, join(mkdtempSync(join(tmpdir(), 'qc-save-progress-')), 'm.onnx'), { externalData: 'always', progress: (done, total) => void calls.push([done, total]) });
    const external = [...model.graph.initializers.values()].filter((v) => v.initializer!.byteLength >= 1024);
    expect(calls).toHaveLength(external.length);
    const total = external.reduce((n, v) => n + v.initializer!.byteLength, 0);
    expect(calls.at(-1)).toEqual([total, total]);
    expect(calls.every(([done, t], i) => t === total && done > (calls[i - 1]?.[0] ?? 0))).toBe(true);
  });
});

describe('compile progress on dit-digits (a calibrating W7A8 recipe, int7 weights so that no W043 joins the quiet output: 16 samples, 10 DDIM steps)', () => {
  /** A folder with the fixture model, its sidecar and the recipe. */
  function workspace(): string {
    const dir = mkdtempSync(join(tmpdir(), 'qc-progress-'));
    copyFileSync(join(DIT_DIGITS, 'model.onnx'), join(dir, 'model.onnx'));
    copyFileSync(join(DIT_DIGITS, 'schedule.json'), join(dir, 'schedule.json'));
    writeFileSync(join(dir, 'r.qrecipe'), 'recipe "progress" {\n  calibrate {\n    samples 16\n    batch 8\n    sampler ddim(steps: 10)\n  }\n  quantize attn, mlp {\n    weight int7 sym per-channel\n    input int8 sym static\n  }\n}\n');
    return dir;
  }

  it('logs calibration and pass progress with ETAs; --quiet prints only the summary; the outputs are byte-identical', async () => {
    const loud = workspace();
    const quiet = workspace();
    // A clock that advances a second per reading: every tenth of every step is a line, deterministically.
    let t = 0;
    const run = await runCli([join(loud, 'model.onnx'), join(loud, 'r.qrecipe'), '-o', join(loud, 'q.onnx')], undefined, { now: () => (t += 1000) });
    expect(run.code, run.stderr).toBe(0);
    const lines = run.stderr.split('\n');
    const timing = String.raw`\d+:\d\d elapsed`;
    const eta = String.raw`${timing}, ~\d+:\d\d left`;
    expect(lines[0]).toMatch(new RegExp(String.raw`^calibration trajectories 8/16 \(50%\)  ${eta}$`));
    expect(lines[1]).toMatch(new RegExp(String.raw`^calibration trajectories 16/16 \(100%\)  ${timing}$`));
    expect(lines[2]).toMatch(/^calibration: 16 samples \(uniform; 10 classes\) from 120 model rows in \d+\.\d s, peak RSS \d+\.\d+ [MG]iB$/);
    const calibrate = lines.filter((l) => /^\[\d\/\d calibrate\] calibration batches/.test(l));
    expect(calibrate).toHaveLength(3);
    expect(calibrate[0]).toMatch(new RegExp(String.raw`^\[\d/\d calibrate\] calibration batches 0/2 \(0%\)  ${timing}$`));
    expect(calibrate[1]).toMatch(new RegExp(String.raw`^\[\d/\d calibrate\] calibration batches 1/2 \(50%\)  ${eta}$`));
    expect(calibrate[2]).toMatch(new RegExp(String.raw`^\[\d/\d calibrate\] calibration batches 2/2 \(100%\)  ${timing}$`));
    // One line per tenth of the 24 layers: nine with an ETA, then the last.
    expect(lines.filter((l) => new RegExp(String.raw`^\[\d/\d quantize-weights\] layers \d+/24 \(\d+%\)  ${eta}$`).test(l))).toHaveLength(9);
    expect(lines.filter((l) => /^\[\d\/\d\] [a-z-]+ \d+\.\d+ m?s/.test(l)).length).toBeGreaterThanOrEqual(4);
    expect(lines.at(-2)).toMatch(/^\[smoke run\] \d+\.\d+ m?s$/);

    const silent = await runCli([join(quiet, 'model.onnx'), join(quiet, 'r.qrecipe'), '-o', join(quiet, 'q.onnx'), '--quiet']);
    expect(silent.code, silent.stderr).toBe(0);
    expect(silent.stderr).toBe('');
    const shape = (summary: string) => summary.replace(/ +\d+\.\d+ m?s/g, ' T').replaceAll(loud, 'DIR').replaceAll(quiet, 'DIR');
    expect(shape(silent.stdout)).toBe(shape(run.stdout));
    expect(silent.stdout).toMatch(/^wrote .*q\.onnx\nsize: .*\nlayers quantized: \d+\n/);
    expect(readFileSync(join(quiet, 'q.onnx')).equals(readFileSync(join(loud, 'q.onnx')))).toBe(true);
  });

  it('on a terminal: a bar redrawn in place and finished with its line, the line cleared before each pass line, nothing left dangling', async () => {
    const dir = workspace();
    const { code, stderr } = await runCli([join(dir, 'model.onnx'), '--passes', 'select-layers{roles=attn|mlp,bits=8},quantize-weights,cleanup', '-o', join(dir, 'q.onnx')], undefined, { stderrIsTTY: true });
    expect(code, stderr).toBe(0);
    expect(stderr).toMatch(/\r\x1b\[K\[2\/3 quantize-weights\] layers \[-{20}\] 0\/(\d+)  0:\d\d elapsed(\r\x1b\[K\[2\/3 quantize-weights\] layers \[#*-*\] \d+\/\1  [^\r\n]*)*\r\x1b\[K\[2\/3 quantize-weights\] layers \[#{20}\] \1\/\1  0:\d\d elapsed\n\[2\/3\] quantize-weights \d+\.\d+ m?s, peak RSS \d+\.\d+ [MG]iB\n/);
    expect(stderr).toMatch(/\r\x1b\[K\[3\/3\] cleanup \d+\.\d+ m?s \(no change\), peak RSS \d+\.\d+ [MG]iB\n\r\x1b\[K\[save\]\r\x1b\[K\[smoke run\]\r\x1b\[K\[smoke run\] \d+\.\d+ m?s\n$/);
    expect(stderr.split('\n').every((line) => !line.includes('\r') || line.startsWith('\r\x1b[K') || line === '')).toBe(true);
  });
});

describe('--quiet on the other commands', () => {
  it('compile: --quiet with --verbose is a usage error', async () => {
    const run = await runCli([join(DIT_DIGITS, 'model.onnx'), '--passes', 'select-layers,quantize-weights', '-q', '--verbose', '-o', join(tmpdir(), 'never.onnx')]);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/^qcompile: error: --quiet and --verbose contradict each other\nUsage: qcompile MODEL\.onnx/);
  });

  it('synth: the summary line only; without it, the weights written as throttled lines ending at 100%', async () => {
    const loud = await runCli(['synth', 'dit', '--preset', 'tiny', '-o', mkdtempSync(join(tmpdir(), 'qc-synth-'))]);
    expect(loud.code, loud.stderr).toBe(0);
    const lines = loud.stderr.trim().split('\n');
    expect(lines.at(-2)).toBe('synth: weights 715/715 KiB (100%)  0:00 elapsed');
    expect(lines.at(-1)).toMatch(/^synth: wrote tiny \(184,072 weights, 0\.00 GiB\) to .* in \d+\.\d s$/);
    expect(lines.length).toBeLessThanOrEqual(12);
    const silent = await runCli(['synth', 'dit', '--preset', 'tiny', '-q', '-o', mkdtempSync(join(tmpdir(), 'qc-synth-'))]);
    expect(silent.code, silent.stderr).toBe(0);
    expect(silent.stderr).toMatch(/^synth: wrote tiny \(184,072 weights, 0\.00 GiB\) to .* in \d+\.\d s\n$/);
  });

  it('eval: what it starts and its sampling steps, none with -q; the same report either way', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'qc-eval-'));
    const quant = join(dir, 'q.onnx');
    expect((await runCli([join(DIT_DIGITS, 'model.onnx'), '--passes', 'select-layers{roles=attn|mlp,bits=8},quantize-weights,cleanup', '-o', quant, '-q'])).code).toBe(0);
    const reports = [];
    for (const flags of [[], ['-q']]) {
      const out = join(dir, `report${flags.length}`);
      const run = await runCli(['eval', '--fp', join(DIT_DIGITS, 'model.onnx'), '--quant', quant, '--samples', '4', '--steps', '2', ...flags, '-o', out]);
      expect(run.code, run.stderr).toBe(0);
      expect(run.stdout).toMatch(/^wrote .*report\d\/report\.html\nPSNR vs FP: mean /);
      if (flags.length) expect(run.stderr).toBe('');
      else {
        expect(run.stderr).toMatch(/^sampling 4 × DDIM-2 \(FP; 10 classes\)\nsampling steps 1\/2 \(50%\)  0:\d\d elapsed, ~0:\d\d left\nsampling steps 2\/2 \(100%\)  0:\d\d elapsed\nsampling 4 × DDIM-2 \(quantized; 10 classes\)\n/);
        expect(run.stderr).toMatch(/\nheld-out trajectories 8\/8 \(100%\)  0:\d\d elapsed\n/);
      }
      reports.push(JSON.parse(readFileSync(join(out, 'report.json'), 'utf8')).metrics);
    }
    expect(reports[1]).toEqual(reports[0]);
  });

  it('sample: step progress lines, none with -q; the same files either way', async () => {
    const outputs = [];
    for (const flags of [[], ['-q']]) {
      const dir = mkdtempSync(join(tmpdir(), 'qc-sample-'));
      const run = await runCli(['sample', join(DIT_DIGITS, 'model.onnx'), '--steps', '4', '--classes', '0,1', '--per-class', '2', ...flags, '-o', join(dir, 'grid.png')]);
      expect(run.code, run.stderr).toBe(0);
      if (flags.length) expect(run.stderr).toBe('');
      else expect(run.stderr).toMatch(/^sampling steps 1\/4 \(25%\)  0:\d\d elapsed, ~0:\d\d left\n(.*\n)*sampling steps 4\/4 \(100%\)  0:\d\d elapsed\n$/);
      outputs.push(readFileSync(join(dir, 'grid.f32.bin')));
    }
    expect(outputs[1]!.equals(outputs[0]!)).toBe(true);
  });
});
