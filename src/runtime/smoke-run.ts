/**
 * The smoke run every compiled model passes before it is written: ONNX Runtime loads it and runs it once on
 * a seeded input, and each output must have the FP model's shape and be finite wherever the FP model's output
 * is. So a model ORT refuses, or one whose scales make it compute NaN, never leaves the compiler with exit 0.
 *
 * Cost: the compiled model is opened from the file the compile staged (`compiledPath`: its weights are not
 * computed and written a second time), else encoded, and run first. The FP model — a second full read of the
 * input weights and a float forward, more than the rest of a big compile — is run only when the compiled run
 * leaves a doubt: a failed run (is the guessed input at fault?), a non-finite element (is the FP model's
 * finite there?), or an output shape its declared dims do not settle. An all-finite output whose shape equals
 * the declared one (each fixed dim, each named dim as sized by the feeds) needs no reference. Its session is
 * opened from its file only after the compiled one is released, so the two are never alive together.
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
  /** Whether the FP model was run for reference (only when the compiled outputs alone left a doubt). */
  referenceRun: boolean;
  milliseconds: number;
}

/**
 * Loads `model` (compiled) in ONNX Runtime and runs it once on a seeded input, checked against the FP model at
 * `referencePath` as the header says; returns a failure as a SmokeRunError (never throws one). Float inputs are
 * standard normal, integer inputs 0 (a valid class index and timestep), symbolic dims 1 — except where the
 * model's diffusion interface, when known, resolves them (a UNet's dynamic height and width must survive its
 * down and up path: it runs at its own resolution, batch 1). When that input is not one the FP model accepts (a
 * symbolic dim that must be larger, an input of unknown rank), the guess is at fault, not the compile: the
 * compiled model is then only loaded, and the result says why.
 */
export async function smokeRun(model: Model, referencePath: string, diffusion?: DiffusionInterface, compiledPath?: string): Promise<SmokeRunResult | SmokeRunError> {
  const started = performance.now();
  const outputs = model.graph.outputs.map((v) => v.name);
  const built = smokeFeeds(model, diffusion ? interfaceShapes(diffusion) : {});
  const feeds = typeof built === 'string' ? undefined : built;

  let prepared;
  try {
    // One run, its session released after: the arena recycles the forward's intermediates (without it each is a
    // fresh mmap that page-faults in; DiT-XL/2 ran 1.3x slower) and returns its memory with the session.
    const executor = new OrtExecutor({ memoryArena: true });
    prepared = compiledPath ? await executor.prepareFile(compiledPath, outputs) : await executor.prepare(model, outputs);
  } catch (error) {
    return new SmokeRunError('load', `ONNX Runtime refuses the compiled model: ${firstLine(error)}`);
  }
  let compiled: TensorMap | undefined;
  let runError: unknown;
  try {
    if (feeds) compiled = await prepared.run(feeds);
  } catch (error) {
    runError = error;
  } finally {
    await prepared.release();
  }
  const milliseconds = () => performance.now() - started;
  if (!feeds) return { loadOnly: built as string, referenceRun: false, milliseconds: milliseconds() };
  const inputs = Object.fromEntries(Object.entries(feeds).map(([k, t]) => [k, t.dims]));
  if (compiled && settledWithoutReference(model, feeds, compiled)) return { inputs, referenceRun: false, milliseconds: milliseconds() };

  const reference = await runReference(referencePath, feeds, outputs);
  if (typeof reference === 'string') return { loadOnly: `the FP model does not run on the smoke input (${reference})`, referenceRun: true, milliseconds: milliseconds() };
  if (!compiled) return new SmokeRunError('run', `ONNX Runtime cannot run the compiled model: ${firstLine(runError)}`);
  for (const name of outputs) {
    const want = reference[name]!;
    const got = compiled[name]!;
    if (want.dims.join(',') !== got.dims.join(',')) return new SmokeRunError('shape', `output '${name}' has shape [${got.dims.join(', ')}], the FP model's has [${want.dims.join(', ')}]`, name);
    const bad = firstNewNonFinite(want, got);
    if (bad >= 0) return new SmokeRunError('non-finite', `output '${name}' is not finite at element ${bad} (${String(got.data[bad])}) where the FP model's is ${String(want.data[bad])}`, name);
  }
  return { inputs, referenceRun: true, milliseconds: milliseconds() };
}

/** The FP model's outputs on `feeds`, run from its file, or ORT's reason (first line) when it refuses them. */
async function runReference(referencePath: string, feeds: TensorMap, outputs: string[]): Promise<TensorMap | string> {
  try {
    const session = await ort.InferenceSession.create(referencePath);
    try {
      const results = await session.run(Object.fromEntries(Object.entries(feeds).map(([name, t]) => [name, new ort.Tensor(t.dtype, t.data as never, t.dims)])), outputs);
      const reference: TensorMap = {};
      for (const name of outputs) reference[name] = { dtype: results[name]!.type as never, dims: [...results[name]!.dims], data: results[name]!.data as never };
      return reference;
    } finally {
      await session.release();
    }
  } catch (error) {
    return firstLine(error);
  }
}

/**
 * True when the compiled outputs pass without the FP model: every element finite (so none can be new), and each
 * output's shape the one its declared type gives on these feeds — fixed dims as declared, each named dim the size
 * that name has in the feeds. An undeclared rank, an unnamed dim, or a name no input sizes leaves it to the FP run.
 */
function settledWithoutReference(model: Model, feeds: TensorMap, compiled: TensorMap): boolean {
  const sizes = new Map<string, number>();
  for (const input of model.graph.inputs) {
    const feed = feeds[input.name];
    input.type?.shape?.forEach((d, i) => {
      if (typeof d === 'string' && feed && feed.dims.length === input.type!.shape!.length) sizes.set(d, feed.dims[i]!);
    });
  }
  return model.graph.outputs.every((output) => {
    const got = compiled[output.name]!;
    const declared = output.type?.shape;
    if (!declared || declared.length !== got.dims.length) return false;
    if (!declared.every((d, i) => (typeof d === 'number' ? d : typeof d === 'string' ? sizes.get(d) : undefined) === got.dims[i])) return false;
    return firstNewNonFinite(undefined, got) < 0;
  });
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

/** Index of the first element finite in `reference` (every element when there is none) but not in `compiled`, or −1 (non-float outputs: −1). */
function firstNewNonFinite(reference: TensorMap[string] | undefined, compiled: TensorMap[string]): number {
  if (compiled.dtype !== 'float32' && compiled.dtype !== 'float16') return -1;
  for (let i = 0; i < compiled.data.length; i++) if ((!reference || isFiniteAt(reference, i)) && !isFiniteAt(compiled, i)) return i;
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
