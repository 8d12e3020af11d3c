/**
 * What `qcompile` leaves next to a compiled model for the report. Deterministic per-layer choices go into the
 * model's `metadata_props` under `qcompile.layers` (so the .onnx stays byte-identical across runs); pass
 * timings, which are not deterministic, go to the sidecar `<out>.passes.json`. Plain data, no imports.
 */

/** The metadata_props key of the per-layer choices. */
export const LAYERS_METADATA_KEY = 'qcompile.layers';

/** A summary of one scaling pass's per-input-channel factors s on a layer. */
export interface ScalingSummary {
  pass: string;
  min: number;
  median: number;
  max: number;
  /** Channels scaled (the factor vector's length). */
  count: number;
}

/** The compiler's choices for one layer. */
export interface LayerChoices {
  bits?: number;
  /** Weight group size along K (absent for per-channel and per-tensor weights). */
  groupSize?: number;
  /** True when `search-group-sizes` chose the group size. */
  searched?: boolean;
  scaling?: ScalingSummary[];
}

/** One executed pass as the sidecar records it. */
export interface PassTiming {
  pass: string;
  /** The step as pipeline text, defaults filled in. */
  step: string;
  modified: boolean;
  milliseconds: number;
  /** The process's peak resident memory when the pass ended (a high-water mark). */
  peakRssBytes?: number;
  statistics: Record<string, number | string>;
}

/** The sidecar `<out>.passes.json`. */
export interface PassTimings {
  pipeline: string;
  /** Building the recipe's calibration set, before the first pass. */
  calibrationMilliseconds?: number;
  /** The process's peak resident memory once the calibration set was built. */
  calibrationPeakRssBytes?: number;
  passes: PassTiming[];
  saveMilliseconds?: number;
  /** The smoke run of the saved model in ONNX Runtime (src/runtime/smoke-run.ts). */
  smokeRunMilliseconds?: number;
  totalMilliseconds?: number;
  /** The whole compile's peak resident memory (save and smoke run included). */
  peakRssBytes?: number;
}

/** The sidecar's path for a compiled model. */
export function passTimingsPath(modelPath: string): string {
  return `${modelPath}.passes.json`;
}

/** Min, median and max of the factors, at 6 significant digits so the metadata is stable text. */
export function summarizeScaling(pass: string, factors: ArrayLike<number>): ScalingSummary {
  const sorted = Float64Array.from(factors).sort();
  const n = sorted.length;
  const median = n === 0 ? NaN : n % 2 === 1 ? sorted[(n - 1) / 2]! : (sorted[n / 2 - 1]! + sorted[n / 2]!) / 2;
  const round = (v: number) => (Number.isFinite(v) ? Number(v.toPrecision(6)) : v);
  return { pass, min: round(sorted[0] ?? NaN), median: round(median), max: round(sorted[n - 1] ?? NaN), count: n };
}

/** The metadata value: layers in the given order, keys in a fixed order. */
export function encodeLayerChoices(layers: ReadonlyMap<string, LayerChoices>): string {
  const out: Record<string, LayerChoices> = {};
  for (const [name, c] of layers) {
    out[name] = {
      ...(c.bits !== undefined ? { bits: c.bits } : {}),
      ...(c.groupSize !== undefined ? { groupSize: c.groupSize } : {}),
      ...(c.searched ? { searched: true } : {}),
      ...(c.scaling?.length ? { scaling: c.scaling.map((s) => ({ pass: s.pass, min: s.min, median: s.median, max: s.max, count: s.count })) } : {}),
    };
  }
  return JSON.stringify(out);
}

/** Reads the metadata value back; undefined when absent or not the expected shape. */
export function decodeLayerChoices(text: string | undefined): Map<string, LayerChoices> | undefined {
  if (text === undefined) return undefined;
  try {
    const parsed: unknown = JSON.parse(text);
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return undefined;
    return new Map(Object.entries(parsed as Record<string, LayerChoices>));
  } catch {
    return undefined;
  }
}

/** Reads a sidecar's text; undefined when it is not one. */
export function decodePassTimings(text: string): PassTimings | undefined {
  try {
    const parsed = JSON.parse(text) as PassTimings;
    return Array.isArray(parsed?.passes) && parsed.passes.every((p) => typeof p.pass === 'string' && typeof p.milliseconds === 'number') ? parsed : undefined;
  } catch {
    return undefined;
  }
}
