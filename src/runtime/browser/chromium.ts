/** Launching Debian's headless chromium with WebGPU on (SwiftShader when there is no GPU). */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { chromium, type Browser } from 'playwright-core';

/** The flags checked in PLATFORM.md: the first two are what WebGPU needs. */
export const CHROMIUM_ARGS = ['--no-sandbox', '--enable-unsafe-webgpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

/** The chromium binary: env QCOMPILE_CHROMIUM, else Debian's /usr/bin/chromium. */
export function chromiumPath(): string {
  return process.env.QCOMPILE_CHROMIUM ?? '/usr/bin/chromium';
}

/** Whether the chromium binary exists. */
export function chromiumAvailable(): boolean {
  return existsSync(chromiumPath());
}

/** The folder holding onnxruntime-web's dist files (ort.webgpu.min.mjs and its wasm). */
export function ortWebDistDir(): string {
  return dirname(createRequire(import.meta.url).resolve('onnxruntime-web/webgpu'));
}

/**
 * Launches headless chromium with the WebGPU flags. Playwright gives every `launch()` a fresh temporary profile
 * (its own `--user-data-dir`, removed on close) and refuses one passed in `args`.
 */
export async function launchChromium(): Promise<Browser> {
  const executablePath = chromiumPath();
  if (!existsSync(executablePath)) throw new Error(`chromium not found at ${executablePath} (apt-get install chromium, or set QCOMPILE_CHROMIUM)`);
  return chromium.launch({ executablePath, headless: true, args: CHROMIUM_ARGS });
}
