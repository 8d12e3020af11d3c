/** The targets by name: one map, the only place a backend is registered (`--target`, `qcompile targets`). */
import type { Pass } from '../passes/pass.js';
import type { Backend, TargetName } from './backend.js';
import { cpuBackend } from './cpu.js';
import { cudaBackend } from './cuda.js';
import { loweringPass } from './lowering-pass.js';
import { tensorRtBackend } from './tensorrt.js';
import { webGpuBackend } from './webgpu.js';

/** Every backend, keyed by its `--target` name. */
export const backends: Readonly<Record<TargetName, Backend>> = { cpu: cpuBackend, webgpu: webGpuBackend, cuda: cudaBackend, tensorrt: tensorRtBackend };

/** The backend for a `--target` value, or undefined for an unknown name. */
export function findBackend(name: string): Backend | undefined {
  return Object.prototype.hasOwnProperty.call(backends, name) ? backends[name as TargetName] : undefined;
}

const loweringPassByTarget = new Map(Object.values(backends).map((backend) => [backend.name, loweringPass(backend)]));

/** One `lower-<target>` pass per backend, in the order of `backends` (a pipeline's registry adds them). */
export const loweringPasses: readonly Pass[] = [...loweringPassByTarget.values()];

/** The `lower-<target>` pass of `target`. */
export function loweringPassOf(target: TargetName): Pass {
  return loweringPassByTarget.get(target)!;
}

/** The target a pipeline step lowers for, or undefined when `pass` is not a lowering pass. */
export function loweringTargetOf(pass: Pass): TargetName | undefined {
  for (const [target, lowering] of loweringPassByTarget) if (lowering === pass) return target;
  return undefined;
}
