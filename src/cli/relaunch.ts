/**
 * The allocator setting a real-size compile needs on glibc, applied by the installed entry point relaunching the
 * CLI once with it. glibc raises its mmap threshold each time a large block is freed (up to 32 MiB): after the
 * first ONNX Runtime session over a real-size model is released, the next sessions' weight buffers (each under
 * 32 MiB) come from the heap, and, interleaved with the JS heap's own blocks, are never handed back. A DiT-XL/2
 * SmoothQuant compile kept 2.8 GB of released session memory and peaked at 4.76 GB (1.76× its weights) where,
 * with the threshold fixed, it peaks at 3.42 GB (1.27×) (8 samples; `bench/recipes-real-size.ts`). Setting
 * MALLOC_MMAP_THRESHOLD_ fixes the threshold (turning the adjustment off); glibc reads it at process start.
 */
import { spawn } from 'node:child_process';

/** The environment the CLI runs under (a fixed 64 KiB mmap threshold: large blocks go back to the system when freed). */
export const ALLOCATOR_ENV: Readonly<Record<string, string>> = { MALLOC_MMAP_THRESHOLD_: String(1 << 16) };

const FORWARDED_SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

/**
 * When this process does not run under ALLOCATOR_ENV (Linux only), runs this same command line again under it —
 * stdio shared, signals passed on — and resolves to its exit code; resolves undefined when the process should
 * go on itself. A child killed by a signal takes this process down with the same signal.
 */
export async function relaunchUnderAllocatorEnv(): Promise<number | undefined> {
  if (process.platform !== 'linux' || Object.entries(ALLOCATOR_ENV).every(([key, value]) => process.env[key] === value)) return undefined;
  const child = spawn(process.execPath, [...process.execArgv, ...process.argv.slice(1)], { stdio: 'inherit', env: { ...process.env, ...ALLOCATOR_ENV } });
  const forward = (signal: NodeJS.Signals): void => {
    child.kill(signal);
  };
  for (const signal of FORWARDED_SIGNALS) process.on(signal, forward);
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (c, s) => resolve([c, s]));
  });
  for (const s of FORWARDED_SIGNALS) process.off(s, forward);
  if (signal) process.kill(process.pid, signal);
  return code ?? 1;
}
