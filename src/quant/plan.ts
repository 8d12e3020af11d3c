/**
 * The quantization plan: per layer, how its weight and its input activation are quantized. The recipe
 * front end fills it from its rules; passes read it. Plain data, JSON-serializable, so dumps can show it.
 */
import type { Span } from '../diagnostics.js';
import { IrError } from '../ir/errors.js';

/** How values are grouped for shared scales. Groups run along the input-channel (K) axis. */
export type Granularity =
  | { kind: 'per-tensor' }
  | { kind: 'per-channel' }
  | { kind: 'group'; size: number }
  /** To be chosen per layer by `search-group-sizes` (Q-DiT) from `candidates`, within the budget. */
  | { kind: 'auto'; candidates: number[]; budget: GroupBudget };

/**
 * The budget of a group-size search: the mean group size over the layers stays at or above `min` (Q-DiT's
 * stand-in for a BitOps bound), or the average stored bits per weight — the codes plus each group's float32
 * scale and, when asymmetric, its zero point, weighted by each layer's parameter count — stays at or below `max`.
 */
export type GroupBudget = { kind: 'mean-group-size'; min: number } | { kind: 'average-bits'; max: number };

/** How a quantization range is chosen from data. */
export type RangeMethod =
  | { kind: 'minmax' }
  | { kind: 'percentile'; percentile: number }
  /** Search a shrink grid of candidate ranges for the smallest L_p error (p = 2 is MSE). */
  | { kind: 'lp'; p: number; gridSize: number };

/** How weights are rounded. */
export type Rounding = { kind: 'nearest' } | { kind: 'gptq'; blockSize: number; damp: number };

/** Weight quantization of one layer. */
export interface WeightQuantSpec {
  bits: number;
  symmetric: boolean;
  /** Storage type int (true, the default) or uint (false): int8/int4 vs uint8/uint4. */
  signed?: boolean;
  granularity: Granularity;
  range: RangeMethod;
  rounding: Rounding;
}

/** When activation scales are computed. */
export type ActivationMode =
  | { kind: 'static' }
  /** One (scale, zero point) per timestep group, selected at run time from the timestep input (TPQ). */
  | { kind: 'per-timestep'; groups: number }
  /**
   * Computed in-graph from the live tensor. `groupSize: 'weight'` groups the input channels like the layer's
   * weight (Q-DiT: one group size per layer for both, searched when the weight has `group auto`).
   */
  | { kind: 'dynamic'; granularity: 'per-sample' | 'per-token' | 'per-token-group'; groupSize?: number | 'weight' };

/** Input-activation quantization of one layer. */
export interface ActivationQuantSpec {
  bits: number;
  symmetric: boolean;
  mode: ActivationMode;
  range: RangeMethod;
}

/**
 * The input spec with `per-token-group(size: weight)` resolved to the weight's group size, which must be fixed
 * by then (a literal group, or `group auto` after search-group-sizes).
 */
export function resolveInputGroup(plan: LayerQuantPlan): ActivationQuantSpec | undefined {
  const input = plan.input;
  if (input?.mode.kind !== 'dynamic' || input.mode.groupSize !== 'weight') return input;
  const granularity = plan.weight?.granularity;
  if (granularity?.kind !== 'group') {
    const found = granularity?.kind === 'auto' ? 'group auto (run search-group-sizes first)' : (granularity?.kind ?? 'no weight quantization');
    throw new IrError('invalid-argument', `layer '${plan.layer}': per-token-group(size: weight) needs a weight group size, found ${found}`);
  }
  return { ...input, mode: { ...input.mode, groupSize: granularity.size } };
}

/** The plan for one layer (by its structural name, as stamped on the layer's node: `layersOf`). */
export interface LayerQuantPlan {
  layer: string;
  weight?: WeightQuantSpec;
  input?: ActivationQuantSpec;
  /** The recipe rule that chose this (diagnostics about the layer point at it); absent for `select-layers`. */
  span?: Span;
}

/** Per-layer plans, keyed by layer name. Layers absent from the plan stay in float. */
export type QuantPlan = Map<string, LayerQuantPlan>;
