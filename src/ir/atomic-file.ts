import { closeSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';

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
  try {
    write(temps);
    temps.forEach((temp, i) => renameSync(temp, targets[i]!));
  } catch (error) {
    for (const temp of temps) rmSync(temp, { force: true });
    throw error;
  }
}

/** Writes one file atomically (temp + rename). */
export function writeFileAtomic(path: string, data: Uint8Array | string): void {
  commitFilesAtomically([path], ([temp]) => {
    const fd = openSync(temp!, 'w');
    try {
      const bytes = typeof data === 'string' ? Buffer.from(data) : data;
      let done = 0;
      while (done < bytes.byteLength) done += writeSync(fd, bytes, done, bytes.byteLength - done);
    } finally {
      closeSync(fd);
    }
  });
}
