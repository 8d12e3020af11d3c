/**
 * Output safety: every file a run writes is staged under a temporary name next to its destination and appears
 * only at commit, all together, or not at all. No output may be an input of the run (same inode, whatever link,
 * `..` or hard link names it), a folder, a device, a FIFO or a socket, or lie outside the folder named for it.
 * Temporaries are removed on every exit path, signals included (SIGINT/SIGTERM/SIGHUP abort, clean up, re-raise).
 */
/// <reference lib="esnext.disposable" />
import { closeSync, linkSync, lstatSync, mkdirSync, mkdtempSync, openSync, readdirSync, renameSync, rmSync, rmdirSync, statSync, writeSync, type Stats } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';

/** An output path the run must not write (it names an input, a device, a folder…), said in one line. */
export class OutputPathError extends Error {
  constructor(
    readonly path: string,
    reason: string,
  ) {
    super(`${path}: ${reason}`);
    this.name = 'OutputPathError';
  }
}

// ---------------------------------------------------------------------------------------------------
// Temporaries removed on every exit path

/** Paths (files or folders) to remove if the process ends before their owner does. */
const liveTemporaries = new Set<string>();
/** Transactions neither committed nor aborted: aborted if the process ends first. */
const liveTransactions = new Set<OutputTransaction>();
const CLEANUP_SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
let handlersInstalled = false;

function removeLiveTemporaries(): void {
  for (const transaction of liveTransactions) transaction.abort();
  for (const path of [...liveTemporaries].reverse()) removeQuietly(path);
  liveTemporaries.clear();
}

function onSignal(signal: NodeJS.Signals): void {
  removeLiveTemporaries();
  uninstallHandlers();
  // Re-raise with the default action, so the parent sees the process die of the signal it sent.
  process.kill(process.pid, signal);
}

/**
 * Installed on first use and kept: a signal that arrived while the main thread was busy is delivered later, and
 * taking the handlers off in between would swallow it (the process would ignore SIGTERM).
 */
function installHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  for (const signal of CLEANUP_SIGNALS) process.on(signal, onSignal);
  process.on('exit', removeLiveTemporaries);
}

function uninstallHandlers(): void {
  handlersInstalled = false;
  for (const signal of CLEANUP_SIGNALS) process.off(signal, onSignal);
  process.off('exit', removeLiveTemporaries);
}

/** Marks `path` for removal should the process exit or be signalled before `releaseTemporary(path)`. */
function trackTemporary(path: string): void {
  liveTemporaries.add(path);
  installHandlers();
}

/** Removes `path` (file or folder) and stops tracking it. */
export function releaseTemporary(path: string): void {
  removeQuietly(path);
  liveTemporaries.delete(path);
}

/** A fresh folder under the system temp folder: removed by `releaseTemporary`, or on exit or a signal before that. */
export function makeTemporaryFolder(prefix: string): string {
  installHandlers(); // before the folder exists: a signal in between would otherwise kill us with it left behind
  const dir = mkdtempSync(join(tmpdir(), prefix));
  trackTemporary(dir);
  return dir;
}

function removeQuietly(path: string): void {
  try {
    rmSync(path, { recursive: true, force: true });
  } catch {
    // best effort: cleanup must never mask the error that led here
  }
}

// ---------------------------------------------------------------------------------------------------
// Single files (temp + rename)

/** A temp path next to `path`, unique to this process and call. */
export function tempPathFor(path: string): string {
  tempCounter++;
  return `${path}.tmp-${process.pid}-${tempCounter}`;
}
let tempCounter = 0;

/**
 * Writes files so that readers never see a half-written one: `write` fills temp files, and only when it
 * returns are they renamed onto their targets (in the order given); on any failure the temps are removed.
 */
export function commitFilesAtomically(targets: string[], write: (tempPaths: string[]) => void): void {
  const temps = targets.map(tempPathFor);
  for (const temp of temps) trackTemporary(temp); // before any exists
  try {
    write(temps);
    temps.forEach((temp, i) => renameSync(temp, targets[i]!));
  } finally {
    for (const temp of temps) releaseTemporary(temp);
  }
}

/** Writes one file atomically (temp + rename). */
export function writeFileAtomic(path: string, data: Uint8Array | string): void {
  commitFilesAtomically([path], ([temp]) => writeBytes(temp!, data));
}

function writeBytes(path: string, data: Uint8Array | string): void {
  const fd = openSync(path, 'w');
  try {
    const bytes = typeof data === 'string' ? Buffer.from(data) : data;
    let done = 0;
    while (done < bytes.byteLength) done += writeSync(fd, bytes, done, bytes.byteLength - done);
  } finally {
    closeSync(fd);
  }
}

// ---------------------------------------------------------------------------------------------------
// Guards

/** The identity of a file the run reads: its inode, whatever name or link reaches it. */
interface FileIdentity {
  path: string;
  dev: number;
  ino: number;
}

function statOrUndefined(path: string, follow = true): Stats | undefined {
  try {
    return follow ? statSync(path) : lstatSync(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw error;
  }
}

function kindOf(stats: Stats): string {
  if (stats.isDirectory()) return 'a folder';
  if (stats.isCharacterDevice() || stats.isBlockDevice()) return 'a device';
  if (stats.isFIFO()) return 'a FIFO';
  if (stats.isSocket()) return 'a socket';
  return 'not a regular file';
}

/**
 * Refuses a path the run would read as a file: it must be a regular file (after links), never a device, FIFO
 * or socket that would block or never end. Returns its stats, or undefined when nothing is there.
 */
export function regularFileOrNothing(path: string): Stats | undefined {
  const stats = statOrUndefined(path);
  if (stats && !stats.isFile()) throw new OutputPathError(path, `is ${kindOf(stats)}, not a regular file`);
  return stats;
}

/**
 * All the files one run writes: each is staged under a temporary name in its destination folder and renamed into
 * place by `commit`, all together; `abort` (or a signal) removes every staged file and every folder it made.
 * Every destination is checked against the run's inputs (by inode, so links and `..` do not hide one).
 */
export class OutputTransaction implements Disposable {
  private readonly inputs: FileIdentity[] = [];
  /** Staging folder → the folder its contents are committed into. */
  private readonly staged = new Map<string, string>();
  /** Folders this transaction created, deepest last; removed on abort when still empty. */
  private readonly created: string[] = [];
  private done = false;

  /** Declares files the run reads: no output may replace one of them. Missing files are skipped. */
  addInputs(paths: Iterable<string>): void {
    for (const path of paths) {
      const stats = statOrUndefined(resolve(path));
      if (stats) this.inputs.push({ path: resolve(path), dev: stats.dev, ino: stats.ino });
    }
  }

  /**
   * Checks that `target` may become an output file: not an input of the run, not a folder, device, FIFO or
   * socket; the folder above it is a folder (it may not exist yet). Throws OutputPathError.
   */
  checkFile(target: string): void {
    const path = resolve(target);
    const stats = statOrUndefined(path);
    if (stats) {
      if (!stats.isFile()) throw new OutputPathError(path, `is ${kindOf(stats)}: refusing to replace it with a file`);
      const input = this.inputs.find((i) => i.dev === stats.dev && i.ino === stats.ino);
      if (input) throw new OutputPathError(path, `is an input of this run${input.path === path ? '' : ` (${input.path})`}: refusing to overwrite it`);
    }
    this.checkFolder(dirname(path));
  }

  /** Checks that `target` may hold outputs: a folder, or nothing yet (above it, folders or nothing). */
  checkFolder(target: string): void {
    for (let dir = resolve(target); ; dir = dirname(dir)) {
      const stats = statOrUndefined(dir);
      if (stats) {
        if (!stats.isDirectory()) throw new OutputPathError(dir, `is ${stats.isFile() ? 'a file' : kindOf(stats)}, not a folder`);
        return;
      }
      if (dirname(dir) === dir) return;
    }
  }

  /**
   * A staging folder whose contents `commit` moves into `destination` (created if missing), file by file:
   * `destination` itself is never emptied or replaced, so files of the user's already there are left alone.
   */
  stageFolder(destination: string): string {
    this.assertOpen();
    const dest = resolve(destination);
    this.checkFolder(dest);
    liveTransactions.add(this);
    installHandlers(); // before anything exists on disk, so that a signal finds it all
    this.makeFolders(dest);
    const staging = mkdtempSync(join(dest, `.qcompile-staging-${process.pid}-`));
    trackTemporary(staging);
    this.staged.set(staging, dest);
    return staging;
  }

  /** The staged path of output file `target`: write it there; it appears at `target` on commit. */
  stageFile(target: string): string {
    const path = resolve(target);
    this.checkFile(path);
    const dest = dirname(path);
    const staging = [...this.staged].find(([, d]) => d === dest)?.[0] ?? this.stageFolder(dest);
    return join(staging, relative(dest, path));
  }

  /** Writes `data` as output file `target` (appearing on commit). */
  writeFile(target: string, data: Uint8Array | string): void {
    writeBytes(this.stageFile(target), data);
  }

  /**
   * Moves every staged file into place. All destinations are checked first (nothing is renamed if one is refused);
   * a rename that fails midway puts back what was already replaced; either way the transaction is then aborted.
   * Returns the committed paths.
   */
  commit(): string[] {
    this.assertOpen();
    const moves: { from: string; to: string }[] = [];
    for (const [staging, dest] of this.staged) {
      for (const rel of listFiles(staging)) moves.push({ from: join(staging, rel), to: join(dest, rel) });
    }
    try {
      for (const { to } of moves) this.checkFile(to);
      for (const { to } of moves) this.checkNoLinkedFolder(to);
    } catch (error) {
      this.abort();
      throw error;
    }
    const applied: { to: string; backup?: string }[] = [];
    try {
      for (const { from, to } of moves) {
        mkdirSync(dirname(to), { recursive: true });
        const backup = statOrUndefined(to, false) ? tempPathFor(to) : undefined;
        if (backup) linkOrMove(to, backup);
        applied.push({ to, backup });
        renameSync(from, to);
      }
    } catch (error) {
      for (const { to, backup } of applied.reverse()) {
        if (backup) renameSync(backup, to);
        else removeQuietly(to);
      }
      this.abort();
      throw error;
    }
    for (const { backup } of applied) if (backup) removeQuietly(backup);
    this.finish();
    return moves.map((m) => m.to);
  }

  /** Removes everything staged and every folder this transaction made (when empty). Idempotent. */
  abort(): void {
    if (this.done) return;
    this.finish();
    for (const dir of [...this.created].reverse()) {
      try {
        rmdirSync(dir);
      } catch {
        // not empty (something else was written there) or already gone: leave it
      }
    }
  }

  /** `using` a transaction aborts it on every way out of the scope that did not commit it. */
  [Symbol.dispose](): void {
    this.abort();
  }

  private finish(): void {
    this.done = true;
    liveTransactions.delete(this);
    for (const staging of this.staged.keys()) releaseTemporary(staging);
    this.staged.clear();
  }

  private assertOpen(): void {
    if (this.done) throw new Error('output transaction already committed or aborted');
  }

  /** A staged subfolder must land in a real folder: a link there would carry the write outside the named one. */
  private checkNoLinkedFolder(target: string): void {
    const dest = [...this.staged.values()].find((d) => target.startsWith(`${d}/`));
    if (!dest) return;
    for (let dir = dirname(target); dir !== dest; dir = dirname(dir)) {
      const stats = statOrUndefined(dir, false);
      if (stats?.isSymbolicLink()) throw new OutputPathError(dir, 'is a link: refusing to write through it, outside the folder named for the output');
    }
  }

  private makeFolders(dest: string): void {
    const missing: string[] = [];
    for (let dir = dest; !statOrUndefined(dir); dir = dirname(dir)) missing.unshift(dir);
    for (const dir of missing) {
      mkdirSync(dir);
      this.created.push(dir);
    }
  }
}

/** Keeps the old file reachable under `backup` (a hard link; a rename where links are not allowed). */
function linkOrMove(path: string, backup: string): void {
  try {
    linkSync(path, backup);
  } catch {
    renameSync(path, backup);
  }
}

/**
 * Files under `dir`, relative to it, in reverse name order: a stable commit order in which `q.onnx.data` lands
 * before the `q.onnx` that points at it.
 */
function listFiles(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.isDirectory()) out.push(...listFiles(join(dir, entry.name)).map((f) => join(entry.name, f)));
    else out.push(entry.name);
  }
  return out.sort().reverse();
}
