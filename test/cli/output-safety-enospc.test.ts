// A full disk mid-run (ENOSPC from the writes into one chosen file) leaves nothing: no model without its side
// file, no truncated dump, no temporaries. node:fs is wrapped so the failure comes from the real write call.
import { copyFileSync, existsSync, mkdtempSync, readdirSync } from 'node:fs';
import * as fs from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { loadModelSync, saveModel } from '../../src/ir/serde.js';
import { DIT_DIGITS } from '../passes/fixture.js';
import { runCli } from './run-cli.js';

/** Writes into files whose path matches `pattern` fail with ENOSPC. */
const disk = vi.hoisted(() => ({ full: undefined as RegExp | undefined, fds: new Set<number>() }));

vi.mock('node:fs', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:fs')>();
  const enospc = (path: unknown) => Object.assign(new Error(`ENOSPC: no space left on device, write '${String(path)}'`), { code: 'ENOSPC', errno: -28 });
  const wrapped = {
    openSync: (path: fs.PathLike, ...rest: unknown[]) => {
      const fd = (real.openSync as (...a: unknown[]) => number)(path, ...rest);
      if (disk.full?.test(String(path))) disk.fds.add(fd);
      return fd;
    },
    closeSync: (fd: number) => {
      disk.fds.delete(fd);
      real.closeSync(fd);
    },
    writeSync: (fd: number, ...rest: unknown[]) => {
      if (disk.fds.has(fd)) throw enospc(`fd ${fd}`);
      return (real.writeSync as (...a: unknown[]) => number)(fd, ...rest);
    },
    writeFileSync: (path: fs.PathOrFileDescriptor, ...rest: unknown[]) => {
      if (disk.full?.test(String(path))) throw enospc(path);
      (real.writeFileSync as (...a: unknown[]) => void)(path, ...rest);
    },
  };
  return { ...real, ...wrapped, default: { ...real, ...wrapped } };
});

afterEach(() => {
  disk.full = undefined;
});

const PASSES = 'select-layers{roles=attn|mlp,bits=8},quantize-weights,cleanup';


function workspace(): string {
  const dir = mkdtempSync(join(tmpdir(), 'qc-enospc-'));
  copyFileSync(join(DIT_DIGITS, 'model.onnx'), join(dir, 'model.onnx'));
  return dir;
}

describe('ENOSPC while writing outputs', () => {
  it('on the .passes.json side file: exit 1, and no model either', async () => {
    const dir = workspace();
    disk.full = /\.passes\.json(\.tmp-\d+-\d+)?$/;
    const result = await runCli([join(dir, 'model.onnx'), '--passes', PASSES, '-o', join(dir, 'q.onnx')]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('ENOSPC');
    expect(readdirSync(dir)).toEqual(['model.onnx']);
  });

  it('on the external data file: exit 1, no partial .data, no model', async () => {
    const dir = workspace();
    saveModel(loadModelSync(join(dir, 'model.onnx')), join(dir, 'ext.onnx'), { externalData: 'always' });
    disk.full = /out[/\\].*q\.onnx\.data/;
    const result = await runCli([join(dir, 'ext.onnx'), '--passes', PASSES, '-o', join(dir, 'out', 'q.onnx')]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('ENOSPC');
    expect(readdirSync(dir).sort()).toEqual(['ext.onnx', 'ext.onnx.data', 'model.onnx']);
  });

  it('on the third dump of --dump-dir: exit 1, no truncated dump folder, no model', async () => {
    const dir = workspace();
    disk.full = /[/\\]02-[^/\\]*\.ir$/;
    const result = await runCli([join(dir, 'model.onnx'), '--passes', PASSES, '-o', join(dir, 'q.onnx'), '--dump-dir', join(dir, 'dump')]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('ENOSPC');
    expect(existsSync(join(dir, 'dump'))).toBe(false);
    expect(readdirSync(dir)).toEqual(['model.onnx']);
  });
});
