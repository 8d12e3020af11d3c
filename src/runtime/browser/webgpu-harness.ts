/** Runs an ONNX model in headless chromium on onnxruntime-web's native WebGPU EP and reads back outputs and node placement. */
import { readFileSync } from 'node:fs';
import type { Browser, Page } from 'playwright-core';
import { launchChromium, ortWebDistDir } from './chromium.js';
import { parsePlacement, type Placement } from './placement.js';
import { startStaticServer, type StaticServer } from './static-server.js';

/** Element types a feed or output may have. */
export type BrowserDType = 'float32' | 'int64' | 'int32' | 'uint8' | 'int8' | 'float16';

/** A tensor crossing the Node ↔ page boundary. */
export interface BrowserTensor {
  dtype: BrowserDType;
  dims: number[];
  data: Float32Array | BigInt64Array | Int32Array | Uint8Array | Int8Array | Uint16Array;
}

/** What `navigator.gpu.requestAdapter()` reported. */
export interface AdapterInfo {
  vendor: string;
  architecture: string;
  isFallbackAdapter: boolean;
}

/** A model run on WebGPU. */
export interface WebGpuRunRequest {
  /** A path served as-is, or the model bytes. */
  model: string | Uint8Array;
  /** External data files by the location the model names (e.g. { 'model.onnx.data': bytes-or-path }). */
  externalData?: Record<string, string | Uint8Array>;
  feeds: Record<string, BrowserTensor>;
  /** Output names to fetch (default: all). */
  outputs?: string[];
  /** Reuse this browser instead of launching one. */
  browser?: Browser;
  /** ORT verbose logging, needed for `placement` (default true; it slows runs down). */
  verbose?: boolean;
  /** Milliseconds to wait for the page's result (default 120 s). */
  timeoutMs?: number;
}

/** What a WebGPU run returns. */
export interface WebGpuRunResult {
  outputs: Record<string, BrowserTensor>;
  adapterInfo: AdapterInfo;
  placement: Placement;
  /** Browser console lines, in order (ORT's verbose log among them). */
  log: string[];
  /** Milliseconds of session creation and of `run()`, measured in the page. */
  timings: { createMs: number; runMs: number };
}

const TYPED: Record<BrowserDType, { new (buffer: ArrayBuffer): BrowserTensor['data'] }> = {
  float32: Float32Array,
  int64: BigInt64Array,
  int32: Int32Array,
  uint8: Uint8Array,
  int8: Int8Array,
  float16: Uint16Array,
};

function toBase64(data: BrowserTensor['data']): string {
  return Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('base64');
}

function fromBase64(dtype: BrowserDType, text: string): BrowserTensor['data'] {
  const bytes = Buffer.from(text, 'base64');
  const copy = new ArrayBuffer(bytes.length);
  new Uint8Array(copy).set(bytes);
  return new TYPED[dtype](copy);
}

/** The harness page: loads the ORT WebGPU build, runs `/job.json`, and sets `window.__qcompileRun`. */
const HARNESS_HTML = `<!doctype html><meta charset="utf-8"><title>qcompile WebGPU harness</title>
<script type="module">
const finish = (result) => { window.__qcompileRun = result; };
try {
  const ort = await import('/ort/ort.webgpu.min.mjs');
  const job = await (await fetch('/job.json')).json();
  if (!navigator.gpu) throw new Error('navigator.gpu is missing (WebGPU disabled)');
  const adapter = await navigator.gpu.requestAdapter();
  if (!adapter) throw new Error('navigator.gpu.requestAdapter() returned null');
  const info = adapter.info ?? {};
  const adapterInfo = { vendor: info.vendor ?? '', architecture: info.architecture ?? '', isFallbackAdapter: Boolean(info.isFallbackAdapter ?? adapter.isFallbackAdapter) };
  ort.env.wasm.wasmPaths = '/ort/';
  ort.env.logLevel = job.verbose ? 'verbose' : 'warning';
  const typed = { float32: Float32Array, int64: BigInt64Array, int32: Int32Array, uint8: Uint8Array, int8: Int8Array, float16: Uint16Array };
  const decode = (dtype, text) => { const bin = atob(text); const bytes = new Uint8Array(bin.length); for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i); return new typed[dtype](bytes.buffer); };
  const encode = (data) => { const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength); let bin = ''; for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000)); return btoa(bin); };
  const externalData = job.externalData.map((path) => ({ path, data: '/external/' + path }));
  let start = performance.now();
  const session = await ort.InferenceSession.create('/model.onnx', { executionProviders: ['webgpu'], logSeverityLevel: job.verbose ? 0 : 2, logVerbosityLevel: 0, externalData });
  const createMs = performance.now() - start;
  const feeds = {};
  for (const [name, t] of Object.entries(job.feeds)) feeds[name] = new ort.Tensor(t.dtype, decode(t.dtype, t.data), t.dims);
  start = performance.now();
  const results = await session.run(feeds, job.outputs ?? session.outputNames);
  const runMs = performance.now() - start;
  const outputs = {};
  for (const [name, tensor] of Object.entries(results)) {
    const data = await tensor.getData();
    outputs[name] = { dtype: tensor.type, dims: [...tensor.dims], data: encode(data) };
  }
  await session.release();
  finish({ ok: true, outputs, adapterInfo, createMs, runMs });
} catch (error) {
  finish({ ok: false, error: String(error && error.stack || error) });
}
</script>`;

interface PageRun {
  ok: boolean;
  error?: string;
  outputs?: Record<string, { dtype: BrowserDType; dims: number[]; data: string }>;
  adapterInfo?: AdapterInfo;
  createMs?: number;
  runMs?: number;
}

/** Opens `url` on `browser`, collecting console lines and page errors into `log`. */
export async function openLoggedPage(browser: Browser, url: string, log: string[]): Promise<Page> {
  const page = await browser.newPage();
  page.on('console', (message) => log.push(`[${message.type()}] ${message.text()}`));
  page.on('pageerror', (error) => log.push(`[pageerror] ${error.message}`));
  await page.goto(url);
  return page;
}

/** Runs `request.model` on WebGPU in headless chromium; throws with the page's error and log tail on failure. */
export async function runOnWebGpu(request: WebGpuRunRequest): Promise<WebGpuRunResult> {
  const externalData = request.externalData ?? {};
  const files: Record<string, Uint8Array | string> = { '/index.html': HARNESS_HTML };
  const directories: Record<string, string> = { '/ort/': ortWebDistDir() };
  const job = {
    feeds: Object.fromEntries(Object.entries(request.feeds).map(([name, t]) => [name, { dtype: t.dtype, dims: t.dims, data: toBase64(t.data) }])),
    outputs: request.outputs ?? null,
    externalData: Object.keys(externalData),
    verbose: request.verbose ?? true,
  };
  files['/job.json'] = JSON.stringify(job);
  let server: StaticServer | undefined;
  const ownBrowser = request.browser === undefined;
  const browser = request.browser ?? (await launchChromium());
  try {
    server = await startStaticServer({ files, directories });
    const bytes = (source: string | Uint8Array): Uint8Array => (typeof source === 'string' ? readFileSync(source) : source);
    server.setFile('/model.onnx', bytes(request.model));
    for (const [location, source] of Object.entries(externalData)) server.setFile(`/external/${location}`, bytes(source));
    const log: string[] = [];
    const page = await openLoggedPage(browser, server.url('/'), log);
    try {
      await page.waitForFunction(() => (window as unknown as { __qcompileRun?: unknown }).__qcompileRun !== undefined, undefined, { timeout: request.timeoutMs ?? 120_000, polling: 100 });
      const run = (await page.evaluate(() => (window as unknown as { __qcompileRun: unknown }).__qcompileRun)) as PageRun;
      if (!run.ok) throw new Error(`WebGPU run failed in the page: ${run.error}\n${log.slice(-20).join('\n')}`);
      const outputs = Object.fromEntries(Object.entries(run.outputs!).map(([name, t]) => [name, { dtype: t.dtype, dims: t.dims, data: fromBase64(t.dtype, t.data) }]));
      return { outputs, adapterInfo: run.adapterInfo!, placement: parsePlacement(log), log, timings: { createMs: run.createMs!, runMs: run.runMs! } };
    } finally {
      await page.close();
    }
  } finally {
    await server?.close();
    if (ownBrowser) await browser.close();
  }
}
