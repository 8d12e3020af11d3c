/**
 * The deployable WebGPU bundle: `model.onnx` (+ external data), `manifest.json` (inputs, schedule, quantization
 * summary), the static page from `src/backends/webgpu/page/`, and the onnxruntime-web files the native
 * WebGPU build loads (`ort.webgpu.min.mjs` and its asyncify wasm companion) under `ort/`. `qcompile … --target
 * webgpu --bundle DIR` writes it.
 */
import { copyFileSync, existsSync, mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { Model } from '../../ir/core.js';
import { saveModel } from '../../ir/serde.js';

/** The ORT web files `ort.webgpu.min.mjs` needs at run time (it imports the asyncify wasm glue). */
export const ORT_WEBGPU_FILES = ['ort.webgpu.min.mjs', 'ort-wasm-simd-threaded.asyncify.mjs', 'ort-wasm-simd-threaded.asyncify.wasm'];

/** What the page needs besides the model. */
export interface BundleOptions {
  /** The sampling schedule the page runs (JSON-serializable, e.g. the fixture's schedule.json). */
  schedule: unknown;
  /** Class labels the page offers for conditioning. */
  classes: number;
  /** The lowering's statistics and fallbacks, shown on the page. */
  quantSummary: unknown;
  /** The page folder (default: the one next to this module). */
  pageDir?: string;
}

/** The page folder: next to this module in a source checkout, under the package's `src/` when built to `dist/`. */
function defaultPageDir(): string {
  const candidates = [join(import.meta.dirname, 'page'), join(import.meta.dirname, '..', '..', '..', '..', 'src', 'backends', 'webgpu', 'page')];
  const found = candidates.find((dir) => existsSync(join(dir, 'index.html')));
  if (!found) throw new Error(`WebGPU page files not found (looked in ${candidates.join(', ')})`);
  return found;
}

/**
 * Writes the bundle to `outDir` atomically: everything is written into a sibling temporary folder that then
 * replaces `outDir`, so a failure leaves no half-written bundle. Returns the files written, relative to it.
 */
export function writeWebGpuBundle(model: Model, outDir: string, options: BundleOptions): string[] {
  const staging = `${outDir}.tmp-${process.pid}`;
  rmSync(staging, { recursive: true, force: true });
  try {
    const written = writeWebGpuBundleFiles(model, staging, options);
    const previous = `${outDir}.old-${process.pid}`;
    if (existsSync(outDir)) renameSync(outDir, previous);
    renameSync(staging, outDir);
    rmSync(previous, { recursive: true, force: true });
    return written;
  } catch (error) {
    rmSync(staging, { recursive: true, force: true });
    throw error;
  }
}

/** Writes the bundle's files into the folder `outDir` as they are (the caller stages and commits them). */
export function writeWebGpuBundleFiles(model: Model, outDir: string, options: BundleOptions): string[] {
  const pageDir = options.pageDir ?? defaultPageDir();
  const ortDist = dirname(createRequire(import.meta.url).resolve('onnxruntime-web/webgpu'));
  mkdirSync(join(outDir, 'ort'), { recursive: true });
  const written: string[] = [];
  saveModel(model, join(outDir, 'model.onnx'), { externalData: 'always' });
  written.push('model.onnx', 'model.onnx.data');
  const inputs = model.graph.inputs.map((v) => ({ name: v.name, elemType: v.type?.elemType, shape: v.type?.shape }));
  const outputs = model.graph.outputs.map((v) => v.name);
  const manifest = { model: 'model.onnx', externalData: 'model.onnx.data', inputs, outputs, schedule: options.schedule, classes: options.classes, quantization: options.quantSummary, ort: 'ort/ort.webgpu.min.mjs' };
  writeFileSync(join(outDir, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  written.push('manifest.json');
  for (const file of readdirSync(pageDir)) {
    copyFileSync(join(pageDir, file), join(outDir, file));
    written.push(file);
  }
  for (const file of ORT_WEBGPU_FILES) {
    copyFileSync(join(ortDist, file), join(outDir, 'ort', file));
    written.push(`ort/${file}`);
  }
  return written;
}
