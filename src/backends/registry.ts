/** The targets by name: one map, the only place a backend is registered (`--target`, `qcompile targets`). */
import type { Backend, TargetName } from './backend.js';
import { cpuBackend } from './cpu.js';
import { cudaBackend } from './cuda.js';
import { tensorRtBackend } from './tensorrt.js';
import { webGpuBackend } from './webgpu.js';

/** Every backend, keyed by its `--target` name. */
export const backends: Readonly<Record<TargetName, Backend>> = { cpu: cpuBackend, webgpu: webGpuBackend, cuda: cudaBackend, tensorrt: tensorRtBackend };

/** The backend for a `--target` value, or undefined for an unknown name. */
export function findBackend(name: string): Backend | undefined {
  return Object.prototype.hasOwnProperty.call(backends, name) ? backends[name as TargetName] : undefined;
}
