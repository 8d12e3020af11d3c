/** Serves a WebGPU deployable bundle folder in headless chromium and returns the page's `window.qcompileResult`. */
import type { Browser } from 'playwright-core';
import { launchChromium } from './chromium.js';
import { startStaticServer } from './static-server.js';
import { openLoggedPage } from './webgpu-harness.js';

/** The result the bundle page (`src/backends/webgpu/page/main.js`) sets when it finishes. */
export interface BundleResult {
  ok: boolean;
  error?: string;
  adapterInfo: { vendor: string; architecture: string; isFallbackAdapter: boolean };
  createMs: number;
  /** One denoising step on the seeded noise `x` at timestep `t`. */
  oneStep: { t: number; classes: number[]; x: number[]; eps: number[]; ms: number };
  /** The DDIM loop's final images, NCHW, and the milliseconds of each step. */
  ddim: { steps: number; timesteps: number[]; classes: number[]; shape: number[]; images: number[]; stepMs: number[] };
  /** Browser console lines. */
  log: string[];
}

/** Options of `runBundle`. */
export interface BundleRunOptions {
  steps?: number;
  count?: number;
  seed?: number;
  browser?: Browser;
  timeoutMs?: number;
}

/** Serves `bundleDir`, opens its index.html with the given steps/count/seed and waits for `window.qcompileResult`. */
export async function runBundle(bundleDir: string, options: BundleRunOptions = {}): Promise<BundleResult> {
  const server = await startStaticServer({ directories: { '/': bundleDir } });
  const ownBrowser = options.browser === undefined;
  const browser = options.browser ?? (await launchChromium());
  try {
    const query = new URLSearchParams({ steps: String(options.steps ?? 20), count: String(options.count ?? 10), seed: String(options.seed ?? 0) });
    const log: string[] = [];
    const page = await openLoggedPage(browser, server.url(`/index.html?${query}`), log);
    try {
      await page.waitForFunction(() => (window as unknown as { qcompileResult?: unknown }).qcompileResult !== undefined, undefined, { timeout: options.timeoutMs ?? 300_000, polling: 200 });
      const result = (await page.evaluate(() => (window as unknown as { qcompileResult: unknown }).qcompileResult)) as Omit<BundleResult, 'log'>;
      if (!result.ok) throw new Error(`bundle page failed: ${result.error}\n${log.slice(-20).join('\n')}`);
      return { ...result, log };
    } finally {
      await page.close();
    }
  } finally {
    await server.close();
    if (ownBrowser) await browser.close();
  }
}
