// No run may change a file the user named as an input, or write outside the folders it names for outputs;
// what it writes appears whole at the end or not at all, signals included (issue #16).
import { spawn, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, linkSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadModelSync, saveModel } from '../../src/ir/serde.js';
import { calibrationCacheFileState } from '../../src/runtime/calibration-cache.js';
import { DIT_DIGITS } from '../passes/fixture.js';
import { runCli } from './run-cli.js';

const PASSES = 'select-layers{roles=attn|mlp,bits=8},quantize-weights,cleanup';


function sha256(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

/** Every file under `dir`, relative to it, sorted. */
function tree(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => !e.isDirectory())
    .map((e) => join(e.parentPath, e.name).slice(dir.length + 1))
    .sort();
}

/** A temp folder holding a copy of the dit-digits model and its schedule sidecar. */
function workspace(): string {
  const dir = mkdtempSync(join(tmpdir(), 'qc-safety-'));
  copyFileSync(join(DIT_DIGITS, 'model.onnx'), join(dir, 'model.onnx'));
  copyFileSync(join(DIT_DIGITS, 'schedule.json'), join(dir, 'schedule.json'));
  return dir;
}

/** A calibrating recipe small enough for a test (16 samples, 10 DDIM steps), with `cache` when given. */
function recipe(dir: string, cache?: string): string {
  const path = join(dir, 'r.qrecipe');
  const cacheLine = cache === undefined ? '' : `    cache ${JSON.stringify(cache)}\n`;
  writeFileSync(path, `recipe "safe" {\n  calibrate {\n    samples 16\n    batch 8\n    sampler ddim(steps: 10)\n${cacheLine}  }\n  quantize attn, mlp {\n    weight int8 sym per-channel\n    input int8 sym static\n  }\n}\n`);
  return path;
}

describe('outputs never replace an input of the run', () => {
  it.each([
    { label: '-o is the input model', output: (dir: string) => join(dir, 'model.onnx') },
    { label: '-o is a hard link to the input model', output: (dir: string) => (linkSync(join(dir, 'model.onnx'), join(dir, 'alias.onnx')), join(dir, 'alias.onnx')) },
    { label: '-o is a symbolic link to the input model', output: (dir: string) => (symlinkSync(join(dir, 'model.onnx'), join(dir, 'link.onnx')), join(dir, 'link.onnx')) },
    { label: '-o reaches the input model through ..', output: (dir: string) => (mkdirSync(join(dir, 'sub')), join(dir, 'sub', '..', 'model.onnx')) },
    { label: '-o is the schedule sidecar the run reads', output: (dir: string) => join(dir, 'schedule.json') },
  ])('$label: exit 1, a clear message, the input unchanged', async ({ output }) => {
    const dir = workspace();
    const before = sha256(join(dir, 'model.onnx'));
    const target = output(dir);
    const result = await runCli([join(dir, 'model.onnx'), '--passes', PASSES, '-o', target]);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/qcompile: error: .*: is an input of this run.*: refusing to overwrite it\n/);
    expect(sha256(join(dir, 'model.onnx'))).toBe(before);
    expect(tree(dir).filter((f) => !['model.onnx', 'schedule.json', 'alias.onnx', 'link.onnx'].includes(f))).toEqual([]);
  });

  it('-o is the recipe: refused before calibration, the recipe unchanged', async () => {
    const dir = workspace();
    const path = recipe(dir);
    const before = sha256(path);
    const result = await runCli([join(dir, 'model.onnx'), path, '-o', path]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`${path}: is an input of this run: refusing to overwrite it`);
    expect(result.stderr).not.toContain('calibration:');
    expect(sha256(path)).toBe(before);
  });

  it('-o is the external data file of the input model (or a model whose .data would be it): refused, data unchanged', async () => {
    const dir = workspace();
    saveModel(loadModelSync(join(dir, 'model.onnx')), join(dir, 'ext.onnx'), { externalData: 'always' });
    const before = sha256(join(dir, 'ext.onnx.data'));
    for (const output of ['ext.onnx.data', 'other/../ext.onnx']) {
      const result = await runCli([join(dir, 'ext.onnx'), '--passes', PASSES, '-o', join(dir, output)]);
      expect(result.code, output).toBe(1);
      expect(result.stderr).toMatch(/ext\.onnx(\.data)?: is an input of this run/);
    }
    expect(sha256(join(dir, 'ext.onnx.data'))).toBe(before);
  });

  // Special files are made here, not borrowed from /dev: a run of the old code replaced /dev/null with a file.
  it('-o is a FIFO or a folder: refused up front, nothing written next to it', async () => {
    const dir = workspace();
    execFileSync('mkfifo', [join(dir, 'fifo')]);
    const fifo = await runCli([join(dir, 'model.onnx'), '--passes', PASSES, '-o', join(dir, 'fifo')]);
    expect(fifo.code).toBe(1);
    expect(fifo.stderr).toContain(`${join(dir, 'fifo')}: is a FIFO: refusing to replace it with a file`);
    expect(statSync(join(dir, 'fifo')).isFIFO()).toBe(true);
    rmSync(join(dir, 'fifo'));
    // External weights: the old save committed q.onnx.data before the model's rename onto the folder failed.
    saveModel(loadModelSync(join(dir, 'model.onnx')), join(dir, 'ext.onnx'), { externalData: 'always' });
    mkdirSync(join(dir, 'q.onnx'));
    const folder = await runCli([join(dir, 'ext.onnx'), '--passes', PASSES, '-o', join(dir, 'q.onnx')]);
    expect(folder.code).toBe(1);
    expect(folder.stderr).toContain(`${join(dir, 'q.onnx')}: is a folder: refusing to replace it with a file`);
    expect(tree(dir)).toEqual(['ext.onnx', 'ext.onnx.data', 'model.onnx', 'schedule.json']);
  });

  it('--dump-dir naming a file: refused up front, the file unchanged', async () => {
    const dir = workspace();
    const before = sha256(join(dir, 'model.onnx'));
    const dump = await runCli([join(dir, 'model.onnx'), '--passes', PASSES, '-o', join(dir, 'q.onnx'), '--dump-dir', join(dir, 'model.onnx')]);
    expect(dump.code).toBe(1);
    expect(dump.stderr).toContain(`${join(dir, 'model.onnx')}: is a file, not a folder`);
    expect(sha256(join(dir, 'model.onnx'))).toBe(before);
    expect(tree(dir)).toEqual(['model.onnx', 'schedule.json']);
  });
});

describe('folders named for outputs', () => {
  it('--bundle naming the input model\'s folder: the bundle\'s model.onnx would replace the input; nothing is written', async () => {
    const dir = workspace();
    const before = sha256(join(dir, 'model.onnx'));
    const result = await runCli([join(dir, 'model.onnx'), resolve('recipes/rtn-w4a16-g128.qrecipe'), '-o', join(dir, 'out', 'q.onnx'), '--target', 'webgpu', '--bundle', dir]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`${join(dir, 'model.onnx')}: is an input of this run: refusing to overwrite it`);
    expect(sha256(join(dir, 'model.onnx'))).toBe(before);
    expect(tree(dir)).toEqual(['model.onnx', 'schedule.json']);
  });
});

describe('the calibration cache path', () => {
  it.each([
    { label: 'the input model, relative to the recipe', cache: () => 'model.onnx', message: 'is not a qcompile calibration cache: refusing to read or overwrite it' },
    { label: 'an absolute path to an unrelated file', cache: (dir: string) => (writeFileSync(join(dir, 'notes.txt'), 'mine\n'), join(dir, 'notes.txt')), message: 'is not a qcompile calibration cache' },
    { label: 'a FIFO (would hang)', cache: (dir: string) => (execFileSync('mkfifo', [join(dir, 'fifo')]), 'fifo'), message: 'is a FIFO, not a regular file' },
    { label: 'in a folder that does not exist', cache: () => 'no-such-folder/calibration.bin', message: "the calibration cache's folder" },
  ])('$label: refused before calibration, exit 1, every file unchanged', async ({ cache, message }) => {
    const dir = workspace();
    const path = recipe(dir, cache(dir));
    const before = new Map(tree(dir).filter((f) => f !== 'fifo').map((f) => [f, sha256(join(dir, f))]));
    const result = await runCli([join(dir, 'model.onnx'), path, '-o', join(dir, 'q.onnx')]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(message);
    expect(result.stderr).not.toContain('calibration:');
    for (const [file, hash] of before) expect(sha256(join(dir, file)), file).toBe(hash);
    expect(tree(dir).filter((f) => f !== 'fifo')).toEqual([...before.keys()]);
  });

  it('a device (/dev/zero would read gigabytes, then be replaced) is refused without reading or writing it', () => {
    expect(() => calibrationCacheFileState('/dev/zero')).toThrow('/dev/zero: is a device, not a regular file');
    expect(statSync('/dev/zero').isCharacterDevice()).toBe(true);
  });

  it('an edited cache is detected by its checksum, ignored with a warning and recomputed: output as from a clean run', async () => {
    const dir = workspace();
    const path = recipe(dir, 'calibration.bin');
    const first = await runCli([join(dir, 'model.onnx'), path, '-o', join(dir, 'a.onnx')]);
    expect(first.code, first.stderr).toBe(0);
    const cache = readFileSync(join(dir, 'calibration.bin'));
    // Scale one recorded activation sample (inside x, the last array before the checksum) by 4.
    const at = cache.length - 32 - 4 * 100;
    cache.writeFloatLE(cache.readFloatLE(at) * 4 + 1, at);
    writeFileSync(join(dir, 'calibration.bin'), cache);
    const second = await runCli([join(dir, 'model.onnx'), path, '-o', join(dir, 'b.onnx')]);
    expect(second.code, second.stderr).toBe(0);
    expect(second.stderr).toContain(`qcompile: warning: calibration: not using ${join(dir, 'calibration.bin')}: calibration cache checksum mismatch`);
    expect(readFileSync(join(dir, 'b.onnx')).equals(readFileSync(join(dir, 'a.onnx')))).toBe(true);
    // The recomputed cache replaced the edited one and is used as is next time.
    const third = await runCli([join(dir, 'model.onnx'), path, '-o', join(dir, 'c.onnx')]);
    expect(third.stderr).toContain(`from ${join(dir, 'calibration.bin')}`);
    expect(third.stderr).not.toContain('qcompile: warning');
  });
});

describe('signals: nothing left behind', () => {
  const cliScript = resolve('src/cli/main.ts');
  /** What qcompile put in the temp folder (tsx keeps its own transform cache there). */
  const ours = (tmp: string) => readdirSync(tmp).filter((f) => f.startsWith('qcompile'));

  /** Runs the CLI as a child with TMPDIR=`tmp`; sends `signal` once `ready` says so (polled every 2 ms). */
  function runAndSignal(args: string[], tmp: string, signal: NodeJS.Signals, ready: (stderr: string) => boolean): Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string; sent: boolean }> {
    return new Promise((done) => {
      const child = spawn(process.execPath, ['--import', 'tsx', cliScript, ...args], { env: { ...process.env, TMPDIR: tmp }, stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      let sent = false;
      child.stderr.on('data', (chunk: Buffer) => void (stderr += chunk.toString()));
      const poll = setInterval(() => {
        if (!sent && ready(stderr)) {
          sent = true;
          child.kill(signal);
        }
      }, 2);
      child.on('exit', (code, exitSignal) => {
        clearInterval(poll);
        done({ code, signal: exitSignal, stderr, sent });
      });
    });
  }

  it('SIGTERM while the calibration has its model copy in TMPDIR: the copy and every staged output are removed', async () => {
    const dir = workspace();
    const tmp = mkdtempSync(join(tmpdir(), 'qc-safety-tmp-'));
    // External weights make the ORT executor write its model copy to TMPDIR.
    saveModel(loadModelSync(join(dir, 'model.onnx')), join(dir, 'ext.onnx'), { externalData: 'always' });
    const path = recipe(dir, 'calibration.bin');
    const before = tree(dir);
    const run = await runAndSignal([join(dir, 'ext.onnx'), path, '-o', join(dir, 'out', 'q.onnx')], tmp, 'SIGTERM', () => ours(tmp).length > 0);
    expect(run.sent, run.stderr).toBe(true);
    expect(run.signal, run.stderr).toBe('SIGTERM');
    expect(ours(tmp)).toEqual([]);
    expect(tree(dir)).toEqual(before);
    expect(existsSync(join(dir, 'out'))).toBe(false);
  }, 60_000);

  it('SIGINT after calibration (cache staged, passes running): no cache, no output, no temporaries', async () => {
    const dir = workspace();
    const tmp = mkdtempSync(join(tmpdir(), 'qc-safety-tmp-'));
    const path = recipe(dir, 'calibration.bin');
    const before = tree(dir);
    const run = await runAndSignal([join(dir, 'model.onnx'), path, '-o', join(dir, 'q.onnx')], tmp, 'SIGINT', (stderr) => stderr.includes('calibration: cached in'));
    expect(run.sent, run.stderr).toBe(true);
    expect(run.signal, run.stderr).toBe('SIGINT');
    expect(ours(tmp)).toEqual([]);
    expect(tree(dir)).toEqual(before);
  }, 60_000);
});

describe('the other commands that write', () => {
  it('sample -o naming its own model is refused after sampling; the model unchanged, nothing else written', async () => {
    const dir = workspace();
    const before = sha256(join(dir, 'model.onnx'));
    const result = await runCli(['sample', join(dir, 'model.onnx'), '--steps', '2', '--per-class', '1', '-o', join(dir, 'model.onnx')]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`${join(dir, 'model.onnx')}: is an input of this run: refusing to overwrite it`);
    expect(sha256(join(dir, 'model.onnx'))).toBe(before);
    expect(tree(dir)).toEqual(['model.onnx', 'schedule.json']);
  });

  it('synth -o DIR writes the three files together and leaves no staging behind; files of the user in DIR stay', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'qc-synth-'));
    writeFileSync(join(dir, 'mine.txt'), 'mine\n');
    const result = await runCli(['synth', 'dit', '--preset', 'tiny', '-o', dir]);
    expect(result.code, result.stderr).toBe(0);
    expect(tree(dir)).toEqual(['mine.txt', 'model.onnx', 'model.onnx.data', 'schedule.json']);
    expect(loadModelSync(join(dir, 'model.onnx')).graph.initializers.size).toBeGreaterThan(0);
  });
});
