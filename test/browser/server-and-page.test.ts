import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { launchChromium } from '../../src/runtime/browser/chromium.js';
import { checkPageRenders } from '../../src/runtime/browser/page-check.js';
import { cpuComputeNodes, parsePlacement } from '../../src/runtime/browser/placement.js';
import { startStaticServer } from '../../src/runtime/browser/static-server.js';
import { skipBrowser } from './browser-env.js';

const dir = mkdtempSync(join(tmpdir(), 'qcompile-serve-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('static server', () => {
  it('serves folders and memory files with COOP/COEP and MIME types, and refuses escapes', async () => {
    writeFileSync(join(dir, 'a.wasm'), new Uint8Array([0, 97, 115, 109]));
    writeFileSync(join(dir, 'm.mjs'), 'export {};');
    const server = await startStaticServer({ directories: { '/d/': dir }, files: { '/x.json': '{"a":1}' } });
    try {
      const wasm = await fetch(server.url('/d/a.wasm'));
      expect(wasm.status).toBe(200);
      expect(wasm.headers.get('content-type')).toBe('application/wasm');
      expect(wasm.headers.get('cross-origin-opener-policy')).toBe('same-origin');
      expect(wasm.headers.get('cross-origin-embedder-policy')).toBe('require-corp');
      expect([...new Uint8Array(await wasm.arrayBuffer())]).toEqual([0, 97, 115, 109]);
      expect((await fetch(server.url('/d/m.mjs'))).headers.get('content-type')).toMatch(/^text\/javascript/);
      expect(await (await fetch(server.url('/x.json'))).json()).toEqual({ a: 1 });
      expect((await fetch(server.url('/d/missing.bin'))).status).toBe(404);
      expect((await fetch(server.url('/d/..%2f..%2fetc%2fpasswd'))).status).toBe(403);
    } finally {
      await server.close();
    }
  });
});

describe('placement parser', () => {
  const prefix = '[error] 2026-11-24 03:14:59.905 [V:onnxruntime:, session_state.cc:1383 VerifyEachNodeIsAssignedToAnEp] ';
  it('splits mixed placement into WebGPU and CPU nodes and tells shape ops from compute ops', () => {
    const placement = parsePlacement([
      `${prefix} Node(s) placed on [CPUExecutionProvider]. Number of nodes: 2`,
      `${prefix}  Slice (/Slice)`,
      `${prefix}  QuantizeLinear (fc/input_quantize)`,
      `${prefix} Node(s) placed on [WebGpuExecutionProvider]. Number of nodes: 1`,
      `${prefix}  MatMulNBits (fc)`,
      '[log] unrelated line',
    ]);
    expect(placement.cpuNodes).toEqual(['/Slice', 'fc/input_quantize']);
    expect(placement.webgpuNodes).toEqual(['fc']);
    expect(placement.nodeToProvider.fc).toBe('WebGpuExecutionProvider');
    expect(placement.counts).toEqual({ CPUExecutionProvider: 2, WebGpuExecutionProvider: 1 });
    expect(cpuComputeNodes(placement)).toEqual(['fc/input_quantize']);
    expect(placement.allNodesOn).toBeUndefined();
  });
  it('reads "All nodes placed on"', () => {
    expect(parsePlacement([`${prefix} All nodes placed on [WebGpuExecutionProvider]. Number of nodes: 7`])).toMatchObject({ allNodesOn: 'WebGpuExecutionProvider', counts: { WebGpuExecutionProvider: 7 } });
  });
});

describe.skipIf(skipBrowser)('checkPageRenders', () => {
  it('reports title, SVG count, console and page errors, and a PNG screenshot', async () => {
    const html = join(dir, 'report.html');
    writeFileSync(html, `<!doctype html><title>qcompile report</title><svg width="40" height="20"><rect width="40" height="20" fill="red"/></svg><svg></svg>
<script>console.error('deliberate'); window.addEventListener('load', () => { throw new Error('boom'); });</script>`);
    const browser = await launchChromium();
    try {
      const check = await checkPageRenders(html, { browser });
      expect(check.title).toBe('qcompile report');
      expect(check.svgCount).toBe(2);
      expect(check.consoleErrors).toEqual(['deliberate', 'uncaught: boom']);
      expect([...check.screenshotPng.subarray(1, 4)].map((c) => String.fromCharCode(c)).join('')).toBe('PNG');
      writeFileSync(html, '<!doctype html><title>clean</title><p>ok</p>');
      expect((await checkPageRenders(html, { browser })).consoleErrors).toEqual([]);
    } finally {
      await browser.close();
    }
  });
});
