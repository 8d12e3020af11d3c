import { spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ALLOCATOR_ENV } from '../../src/cli/relaunch.js';

const root = join(import.meta.dirname, '..', '..');
/** A CLI-like entry point: relaunches, and in the relaunched process prints what it runs under, or sleeps. */
const script = (body: string) =>
  `import { relaunchUnderAllocatorEnv } from ${JSON.stringify(join(root, 'src/cli/relaunch.ts'))};
   const code = await relaunchUnderAllocatorEnv();
   if (code !== undefined) process.exitCode = code; else { ${body} }`;
const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !(key in ALLOCATOR_ENV)));

describe.runIf(process.platform === 'linux')('relaunch under the allocator settings', () => {
  it('runs the command again with MALLOC_MMAP_THRESHOLD_ set, passing its output and exit code through', () => {
    const body = 'console.log(`threshold ${process.env.MALLOC_MMAP_THRESHOLD_} args ${process.argv.slice(1).join(",")}`); process.exitCode = 3;';
    const run = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script(body), '--', 'a', 'b'], { cwd: root, encoding: 'utf8', env });
    expect(run.stdout.trim()).toBe(`threshold ${1 << 16} args a,b`);
    expect(run.status).toBe(3);
  });

  it('passes SIGTERM on and dies of it, leaving no relaunched process behind', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script('console.log(`pid ${process.pid}`); setTimeout(() => {}, 60000);')], { cwd: root, env });
    const pid = await new Promise<number>((resolve) => child.stdout.on('data', (d: Buffer) => resolve(Number(/pid (\d+)/.exec(d.toString())![1]))));
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.once('exit', (_code, signal) => resolve(signal)));
    child.kill('SIGTERM');
    expect(await exited).toBe('SIGTERM');
    expect(() => process.kill(pid, 0)).toThrow();
  });
});
