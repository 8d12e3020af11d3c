/**
 * The smoke run every compiled model passes before it is written: ONNX Runtime loads it and runs it once on
 * a seeded input, and each output must have the FP model's shape and be finite wherever the FP model's output
 * is. So a model ORT refuses, or one whose scales make it compute NaN, never leaves the compiler with exit 0.
 *
 * Memory and time: the FP model is run first from its file (ORT reads it; nothing is decoded on our side), its
 * session is released, and only then is the compiled model opened — from the file the compile staged
 * (`compiledPath`: its weights are not computed and written a second time), else encoded — so the two sessions
 * are never alive together.
 */
import * as ort from 'onnxruntime-node';
import type { Model } from '../ir/core.js';
import { DataType } from '../ir/dtype.js';
import type { TensorMap } from '../ir/executor.js';
import { seededNormal } from '../random.js';
import { ANY_LENGTH, type DiffusionInterface } from './diffusion/interface.js';
import { OrtExecutor } from './ir-executor.js';

/** Why a compiled model failed its smoke run: ORT refused to load or run it, or an output is wrong. */
export class SmokeRunError extends Error {
  constructor(
    readonly reason: 'load' | 'run' | 'shape' | 'non-finite',
    message: string,
    /** The output concerned, for `shape` and `non-finite`. */
    readonly output?: string,
  ) {
    super(message);
    this.name = 'SmokeRunError';
  }
}

/** What a passed smoke run did. */
export interface SmokeRunResult {
  /** The feeds' shapes (symbolic dims run as 1); absent when only the load was checked. */
  inputs?: Record<string, number[]>;
  /** Why the model was only loaded, not run: no feed could be built, or the FP model itself refuses the guessed one. */
  loadOnly?: string;
  milliseconds: number;
}

/**
 * Loads `model` (compiled) in ONNX Runtime and runs it and the FP model at `referencePath` once on the same
 * seeded input; returns a failure as a SmokeRunError (never throws one). Float inputs are standard normal,
 * integer inputs 0 (a valid class index and timestep), symbolic dims 1 — except where the model's diffusion
 * interface, when known, resolves them (a UNet's dynamic height and width must survive its down and up
 * path: it runs at its own resolution, batch 1). When that input is not one the FP
 * model accepts (a symbolic dim that must be larger, an input of unknown rank), the guess is at fault, not the
 * compile: the compiled model is then only loaded, and the result says why.
 */
export async function smokeRun(model: Model, referencePath: string, diffusion?: DiffusionInterface, compiledPath?: string): Promise<SmokeRunResult | SmokeRunError> {
  const started = performance.now();
  const outputs = model.graph.outputs.map((v) => v.name);
  const built = smokeFeeds(model, diffusion ? interfaceShapes(diffusion) : {});
  // The feeds to run, unless no feed could be built or the FP model refuses it (then `loadOnly` says why).
  let feeds = typeof built === 'string' ? undefined : built;
  let loadOnly = typeof built === 'string' ? built : undefined;
  const reference: TensorMap = {};
  if (feeds) {
    try {
      const session = await ort.InferenceSession.create(referencePath);
      try {
        const results = await session.run(Object.fromEntries(Object.entries(feeds).map(([name, t]) => [name, new ort.Tensor(t.dtype, t.data as never, t.dims)])), outputs);
        for (const name of outputs) reference[name] = { dtype: results[name]!.type as never, dims: [...results[name]!.dims], data: results[name]!.data as never };
      } finally {
        await session.release();
      }
    } catch (error) {
      feeds = undefined;
      loadOnly = `the FP model does not run on the smoke input (${firstLine(error)})`;
    }
  }

  let prepared;
  try {
    prepared = compiledPath ? await new OrtExecutor().prepareFile(compiledPath, outputs) : await new OrtExecutor().prepare(model, outputs);
  } catch (error) {
    return new SmokeRunError('load', `ONNX Runtime refuses the compiled model: ${firstLine(error)}`);
  }
  let compiled: TensorMap | undefined;
  try {
    if (feeds) compiled = await prepared.run(feeds);
  } catch (error) {
    return new SmokeRunError('run', `ONNX Runtime cannot run the compiled model: ${firstLine(error)}`);
  } finally {
    await prepared.release();
  }
  if (!feeds || !compiled) return { loadOnly: loadOnly ?? 'no feeds', milliseconds: performance.now() - started };

  for (const name of outputs) {
    const want = reference[name]!;
    const got = compiled[name]!;
    if (want.dims.join(',') !== got.dims.join(',')) return new SmokeRunError('shape', `output '${name}' has shape [${got.dims.join(', ')}], the FP model's has [${want.dims.join(', ')}]`, name);
    const bad = firstNewNonFinite(want, got);
    if (bad >= 0) return new SmokeRunError('non-finite', `output '${name}' is not finite at element ${bad} (${String(got.data[bad])}) where the FP model's is ${String(want.data[bad])}`, name);
  }
  return { inputs: Object.fromEntries(Object.entries(feeds).map(([k, t]) => [k, t.dims])), milliseconds: performance.now() - started };
}

/** Batch-1 shapes of the diffusion inputs (a conditioning length the conditioning sets runs as 1). */
function interfaceShapes(diffusion: DiffusionInterface): Record<string, number[]> {
  const shapes: Record<string, number[]> = {
    [diffusion.latent.name]: [1, ...diffusion.latent.shape],
    [diffusion.timestep.name]: diffusion.timestep.rank === 1 ? [1] : [],
  };
  for (const input of diffusion.conditioning) shapes[input.name] = [1, ...input.shape.map((d) => (d === ANY_LENGTH ? 1 : d))];
  return shapes;
}

/** One seeded feed per graph input (initializer-backed inputs excluded; `shapes` fixes some inputs' dims), or why none can be built. */
function smokeFeeds(model: Model, shapes: Record<string, number[]>): TensorMap | string {
  const normal = seededNormal(0x5eed);
  const feeds: TensorMap = {};
  for (const input of model.graph.inputs) {
    if (input.initializer) continue;
    const shape = input.type?.shape;
    if (!input.type || !shape) return `graph input '${input.name}' has no known type and rank`;
    const dims = shapes[input.name] ?? shape.map((d) => (typeof d === 'number' ? d : 1));
    const count = dims.reduce((a, b) => a * b, 1);
    const elemType = input.type.elemType;
    if (elemType === DataType.FLOAT) feeds[input.name] = { dtype: 'float32', dims, data: Float32Array.from({ length: count }, normal) };
    else if (elemType === DataType.INT64) feeds[input.name] = { dtype: 'int64', dims, data: new BigInt64Array(count) };
    else if (elemType === DataType.INT32) feeds[input.name] = { dtype: 'int32', dims, data: new Int32Array(count) };
    else if (elemType === DataType.BOOL) feeds[input.name] = { dtype: 'bool', dims, data: new Uint8Array(count) };
    else return `graph input '${input.name}' is ${DataType[elemType]} (the smoke run feeds float32, int64, int32 and bool)`;
  }
  return feeds;
}

/** Index of the first element finite in `reference` but not in `compiled`, or −1 (non-float outputs: −1). */
function firstNewNonFinite(reference: TensorMap[string], compiled: TensorMap[string]): number {
  if (compiled.dtype !== 'float32' && compiled.dtype !== 'float16') return -1;
  for (let i = 0; i < compiled.data.length; i++) if (isFiniteAt(reference, i) && !isFiniteAt(compiled, i)) return i;
  return -1;
}

function isFiniteAt(tensor: TensorMap[string], i: number): boolean {
  // float16 comes back as raw bits: an all-ones exponent is Inf or NaN.
  if (tensor.dtype === 'float16') return ((tensor.data[i] as number) & 0x7c00) !== 0x7c00;
  if (tensor.dtype === 'float32') return Number.isFinite(tensor.data[i] as number);
  return true;
}

function firstLine(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).split('\n')[0]!;
}
