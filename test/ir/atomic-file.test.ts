import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { OutputPathError, OutputTransaction } from '../../src/ir/atomic-file.js';

function folder(): string {
  return mkdtempSync(join(tmpdir(), 'qc-atomic-'));
}

describe('OutputTransaction', () => {
  it('stages files next to their destinations; nothing appears before commit, everything after', () => {
    const dir = folder();
    writeFileSync(join(dir, 'old.txt'), 'old\n');
    const tx = new OutputTransaction();
    tx.writeFile(join(dir, 'old.txt'), 'new\n');
    tx.writeFile(join(dir, 'deep', 'er', 'b.txt'), 'b\n');
    const staged = tx.stageFolder(join(dir, 'dump'));
    mkdirSync(join(staged, 'reproducer'));
    writeFileSync(join(staged, 'reproducer', 'pipeline.txt'), 'p\n');
    expect(readFileSync(join(dir, 'old.txt'), 'utf8')).toBe('old\n');
    expect(existsSync(join(dir, 'deep', 'er', 'b.txt'))).toBe(false);
    expect(tx.commit().sort()).toEqual([join(dir, 'deep', 'er', 'b.txt'), join(dir, 'dump', 'reproducer', 'pipeline.txt'), join(dir, 'old.txt')]);
    expect(readFileSync(join(dir, 'old.txt'), 'utf8')).toBe('new\n');
    expect(readdirSync(dir, { recursive: true }).filter((f) => String(f).includes('qcompile') || String(f).includes('.tmp-'))).toEqual([]);
  });

  it('a destination refused at commit time commits nothing, and abort removes the folders it made', () => {
    const dir = folder();
    const tx = new OutputTransaction();
    tx.writeFile(join(dir, 'a.txt'), 'a\n');
    tx.writeFile(join(dir, 'new', 'b.txt'), 'b\n');
    mkdirSync(join(dir, 'a.txt')); // appears between staging and commit
    expect(() => tx.commit()).toThrow(OutputPathError);
    expect(readdirSync(dir).sort()).toEqual(['a.txt']);
    expect(readdirSync(join(dir, 'a.txt'))).toEqual([]);
  });

  it('refuses inputs (by inode), devices and folders; a folder destination keeps the files already in it', () => {
    const dir = folder();
    writeFileSync(join(dir, 'in.onnx'), 'model');
    writeFileSync(join(dir, 'mine.txt'), 'mine');
    const tx = new OutputTransaction();
    tx.addInputs([join(dir, 'in.onnx')]);
    expect(() => tx.checkFile(join(dir, '.', 'in.onnx'))).toThrow(`${join(dir, 'in.onnx')}: is an input of this run: refusing to overwrite it`);
    expect(() => tx.checkFile('/dev/zero')).toThrow('/dev/zero: is a device');
    expect(() => tx.checkFile(dir)).toThrow('is a folder');
    expect(() => tx.checkFolder(join(dir, 'in.onnx', 'sub'))).toThrow('is a file, not a folder');
    tx.writeFile(join(dir, 'out.txt'), 'out');
    tx.commit();
    expect(readdirSync(dir).sort()).toEqual(['in.onnx', 'mine.txt', 'out.txt']);
    expect(readFileSync(join(dir, 'in.onnx'), 'utf8')).toBe('model');
  });

  it('a staged subfolder landing on a link is refused: nothing is written outside the folder named for it', () => {
    const dir = folder();
    const outside = folder();
    mkdirSync(join(dir, 'dump'));
    execFileSync('ln', ['-s', outside, join(dir, 'dump', 'reproducer')]);
    const tx = new OutputTransaction();
    const staged = tx.stageFolder(join(dir, 'dump'));
    mkdirSync(join(staged, 'reproducer'));
    writeFileSync(join(staged, 'reproducer', 'input.onnx'), 'x');
    expect(() => tx.commit()).toThrow('is a link: refusing to write through it');
    expect(readdirSync(outside)).toEqual([]);
  });

  it('SIGTERM removes what is staged and the process still dies of SIGTERM', () => {
    const dir = folder();
    const module = resolve('src/ir/atomic-file.ts');
    const script = `import { OutputTransaction } from ${JSON.stringify(module)};
const tx = new OutputTransaction();
tx.writeFile(${JSON.stringify(join(dir, 'out', 'q.onnx'))}, 'partial');
process.kill(process.pid, 'SIGTERM');
setTimeout(() => {}, 5000);`;
    const child = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8' });
    expect(child.signal, child.stderr).toBe('SIGTERM');
    expect(readdirSync(dir)).toEqual([]);
  });
});
