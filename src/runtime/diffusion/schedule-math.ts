/**
 * The float64 arithmetic of noise schedules and sampler steps, as diffusers defines it: beta schedules and ᾱ
 * (`betas_for_alpha_bar` for the cosine one), numpy's `linspace` / half-even `round`, the inference timesteps
 * of each `timestep_spacing`, the Euler σ grid (σ = √((1−ᾱ)/ᾱ) interpolated at the timesteps), the shifted
 * rectified-flow σ grid, the prediction conversions (eps / v / sample / flow, one place) and the DDIM / DDPM
 * updates. `scheduler.ts` builds the samplers on it.
 */
import type { Prediction } from './interface.js';

/** The largest T a schedule may have (ᾱ is T float64s; real models use 1000). */
export const MAX_TIMESTEPS = 100_000;

/** A schedule, scheduler config or sidecar that cannot drive a sampler: `file` and `field` say where, when known. */
export class ScheduleError extends Error {
  constructor(
    message: string,
    readonly file?: string,
    readonly field?: string,
  ) {
    super(file ? `${file}: ${message}` : message);
    this.name = 'ScheduleError';
  }
}

/** diffusers' `beta_schedule` names. */
export type BetaSchedule = 'linear' | 'scaled_linear' | 'squaredcos_cap_v2';
export const BETA_SCHEDULES: readonly BetaSchedule[] = ['linear', 'scaled_linear', 'squaredcos_cap_v2'];

/** diffusers' `timestep_spacing` values (Table 2 of "Common Diffusion Noise Schedules and Sample Steps are Flawed"). */
export type TimestepSpacing = 'leading' | 'trailing' | 'linspace';
export const TIMESTEP_SPACINGS: readonly TimestepSpacing[] = ['leading', 'trailing', 'linspace'];

/** Checks T: an integer in [1, MAX_TIMESTEPS]. */
export function checkTimesteps(T: number, file?: string, field = 'T'): void {
  if (!Number.isInteger(T) || T < 1 || T > MAX_TIMESTEPS) throw new ScheduleError(`${field} must be an integer in [1, ${MAX_TIMESTEPS}], got ${T}`, file, field);
}

/**
 * The betas of a schedule: `linear` (beta_start..beta_end evenly), `scaled_linear` (their square roots evenly,
 * squared), `squaredcos_cap_v2` (the GLIDE cosine ᾱ discretized, β capped at 0.999), or `trained` ones as given.
 * Every beta must lie in (0, 1), so ᾱ stays in (0, 1] and every sampler coefficient is finite.
 */
export function betasOf(
  schedule: { kind: BetaSchedule; T: number; betaStart: number; betaEnd: number } | { kind: 'trained'; betas: ArrayLike<number> },
  file?: string,
): Float64Array {
  const fail = (field: string, message: string): never => {
    throw new ScheduleError(message, file, field);
  };
  if (schedule.kind === 'trained') {
    checkTimesteps(schedule.betas.length, file, 'trained_betas');
    const betas = Float64Array.from(schedule.betas);
    betas.forEach((b, t) => {
      if (!(b > 0 && b < 1)) fail('trained_betas', `trained_betas[${t}] is ${b}, outside (0, 1)`);
    });
    return betas;
  }
  const { kind, T, betaStart, betaEnd } = schedule;
  checkTimesteps(T, file);
  if (kind !== 'squaredcos_cap_v2') {
    for (const [field, beta] of [['beta_start', betaStart], ['beta_end', betaEnd]] as const) {
      if (!(beta > 0 && beta < 1)) fail(field, `${field} must be a number in (0, 1), got ${beta}`);
    }
  }
  const betas = new Float64Array(T);
  const alphaBar = (s: number) => Math.cos(((s / T + 0.008) / 1.008) * (Math.PI / 2)) ** 2;
  for (let t = 0; t < T; t++) {
    if (kind === 'linear') betas[t] = betaStart + ((betaEnd - betaStart) * t) / Math.max(T - 1, 1);
    else if (kind === 'scaled_linear') betas[t] = (Math.sqrt(betaStart) + ((Math.sqrt(betaEnd) - Math.sqrt(betaStart)) * t) / Math.max(T - 1, 1)) ** 2;
    else if (kind === 'squaredcos_cap_v2') betas[t] = Math.min(1 - alphaBar(t + 1) / alphaBar(t), 0.999);
    else fail('beta_schedule', `unknown beta schedule '${String(kind)}' (known: ${BETA_SCHEDULES.join(', ')})`);
    // Interpolation between two betas in (0, 1) stays inside; this guards the cosine clip.
    if (!(betas[t]! > 0 && betas[t]! < 1)) fail('beta_schedule', `beta at t = ${t} is ${betas[t]}, outside (0, 1)`);
  }
  return betas;
}

/** ᾱ_t = ∏_{s ≤ t} (1 − β_s). */
export function cumulativeAlphas(betas: Float64Array): Float64Array {
  const out = new Float64Array(betas.length);
  let product = 1;
  for (let t = 0; t < betas.length; t++) out[t] = product *= 1 - betas[t]!;
  return out;
}

/** numpy's `linspace(start, stop, num)`: start + i·step, the last value exactly `stop`. */
export function linspace(start: number, stop: number, num: number): number[] {
  const step = (stop - start) / Math.max(num - 1, 1);
  return Array.from({ length: num }, (_, i) => (i === num - 1 && num > 1 ? stop : start + i * step));
}

/** numpy's `round`: halves to the even neighbour. */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * The inference timesteps of diffusers' `set_timesteps(steps)` for a discrete schedule of T timesteps, high to
 * low: `leading` (i·⌊T/S⌋ + offset), `trailing` (round(T − i·T/S) − 1) or `linspace` (S evenly from 0 to T − 1;
 * rounded to integers for DDIM/DDPM, `round: false` keeps Euler's fractional ones). S in [1, T].
 */
export function spacedTimesteps(T: number, steps: number, spacing: TimestepSpacing, offset: number, round = true): number[] {
  if (!Number.isInteger(steps) || steps < 1 || steps > T) throw new ScheduleError(`sampling steps must be an integer in [1, T = ${T}], got ${steps}`);
  if (spacing === 'linspace') {
    const grid = linspace(0, T - 1, steps).reverse();
    return round ? grid.map(roundHalfEven) : grid;
  }
  if (spacing === 'leading') {
    const stride = Math.floor(T / steps);
    return Array.from({ length: steps }, (_, i) => (steps - 1 - i) * stride + offset);
  }
  // numpy's arange(T, 0, −T/S): ⌈T / (T/S)⌉ values T + i·(−T/S).
  const step = -T / steps;
  return Array.from({ length: Math.ceil(-T / step) }, (_, i) => roundHalfEven(T + i * step) - 1);
}

/** numpy's `interp(x, [0, 1, …, n−1], values)` (clamped at the ends). */
export function interpolate(values: Float64Array, x: number): number {
  if (x <= 0) return values[0]!;
  if (x >= values.length - 1) return values[values.length - 1]!;
  const i = Math.floor(x);
  const w = x - i;
  return values[i]! + (values[i + 1]! - values[i]!) * w;
}

/** The Euler (VE) σ of each training timestep: √((1−ᾱ_t)/ᾱ_t). */
export function trainingSigmas(alphasCumprod: Float64Array): Float64Array {
  return alphasCumprod.map((ab) => Math.sqrt((1 - ab) / ab));
}

/** Rectified-flow shifts: a static `shift` (SD3: σ' = s·σ/(1 + (s−1)·σ)) or diffusers' dynamic time shift by μ. */
export type FlowShift = { kind: 'static'; shift: number } | { kind: 'exponential' | 'linear'; mu: number };

/** σ' for σ ∈ (0, 1]: static `shift·σ/(1 + (shift − 1)·σ)`; exponential `e^μ/(e^μ + (1/σ − 1))`; linear `μ/(μ + (1/σ − 1))`. */
export function shiftSigma(shift: FlowShift, sigma: number): number {
  if (shift.kind === 'static') return (shift.shift * sigma) / (1 + (shift.shift - 1) * sigma);
  const m = shift.kind === 'exponential' ? Math.exp(shift.mu) : shift.mu;
  return m / (m + (1 / sigma - 1));
}

/**
 * The σ grid of diffusers' FlowMatchEulerDiscreteScheduler after `set_timesteps(steps)`, with the terminal 0:
 * the training σ run T/T … 1/T (shifted already when the shift is static), the S inference σ run evenly from
 * the first to the last of those, and are shifted (again, as diffusers does).
 */
export function flowSigmas(T: number, steps: number, shift: FlowShift): number[] {
  checkTimesteps(T);
  if (!Number.isInteger(steps) || steps < 1 || steps > MAX_TIMESTEPS) throw new ScheduleError(`sampling steps must be an integer in [1, ${MAX_TIMESTEPS}], got ${steps}`);
  const train = (sigma: number) => (shift.kind === 'static' ? shiftSigma(shift, sigma) : sigma);
  const sigmaMax = train(T / T);
  const sigmaMin = train(1 / T);
  const sigmas = linspace(sigmaMax * T, sigmaMin * T, steps).map((t) => shiftSigma(shift, t / T));
  return [...sigmas, 0];
}

/**
 * diffusers' `calculate_shift`: μ linear in the image sequence length (token count), base_shift at
 * base_image_seq_len and max_shift at max_image_seq_len.
 */
export function dynamicShiftMu(imageSeqLen: number, baseSeqLen: number, maxSeqLen: number, baseShift: number, maxShift: number): number {
  const m = (maxShift - baseShift) / (maxSeqLen - baseSeqLen);
  return imageSeqLen * m + (baseShift - m * baseSeqLen);
}

/**
 * The clean-sample estimate x0 from one model output, where the sampler's state is x = a·x0 + b·eps:
 * epsilon (x − b·eps)/a; sample the output itself; v (defined on the variance-preserving state x/c, c² = a² + b²:
 * v = (a·eps − b·x0)/c) a·x/c² − (b/c)·v; flow (velocity eps − x0, a + b = 1 on its path) (x − b·v)/(a + b).
 */
export function predictedX0(prediction: Prediction, x: number, out: number, a: number, b: number): number {
  switch (prediction) {
    case 'epsilon':
      return (x - b * out) / a;
    case 'sample':
      return out;
    case 'v': {
      const c2 = a * a + b * b;
      return (a * x) / c2 - (b / Math.sqrt(c2)) * out;
    }
    case 'flow':
      return (x - b * out) / (a + b);
  }
}

/** The noise estimate eps from one model output (x = a·x0 + b·eps; `x0` from `predictedX0`), as diffusers' DDIM derives `pred_epsilon`. */
export function predictedEps(prediction: Prediction, x: number, out: number, a: number, b: number, x0: number): number {
  switch (prediction) {
    case 'epsilon':
      return out;
    case 'sample':
      return (x - a * x0) / b;
    case 'v': {
      const c2 = a * a + b * b;
      return (b * x) / c2 + (a / Math.sqrt(c2)) * out;
    }
    case 'flow':
      return x0 + out;
  }
}

/** Clamps to [−range, range] (diffusers' `clip_sample`); `range` undefined: no clipping. */
function clip(x: number, range: number | undefined): number {
  return range === undefined ? x : x > range ? range : x < -range ? -range : x;
}

/**
 * One DDIM update in place (DDIM paper eqs. 12 and 16, diffusers `DDIMScheduler.step`): x ← √ᾱ_prev·x0 +
 * √(1 − ᾱ_prev − σ²)·eps + σ·z with σ = η·√((1−ᾱ_prev)/(1−ᾱ))·√(1 − ᾱ/ᾱ_prev); x0 clipped to ±`clipRange` when
 * given, eps not re-derived from the clipped x0. z is drawn only where σ > 0.
 */
export function ddimStep(prediction: Prediction, x: Float32Array, out: ArrayLike<number>, ab: number, abPrev: number, eta: number, clipRange: number | undefined, normal: () => number): void {
  const sa = Math.sqrt(ab);
  const sb = Math.sqrt(1 - ab);
  const sigma = eta === 0 ? 0 : eta * Math.sqrt((1 - abPrev) / (1 - ab)) * Math.sqrt(1 - ab / abPrev);
  const dirCoef = Math.sqrt(Math.max(1 - abPrev - sigma * sigma, 0));
  const sPrev = Math.sqrt(abPrev);
  for (let i = 0; i < x.length; i++) {
    const xi = x[i]!;
    const o = out[i]!;
    const x0 = predictedX0(prediction, xi, o, sa, sb);
    const e = predictedEps(prediction, xi, o, sa, sb, x0);
    x[i] = sPrev * clip(x0, clipRange) + dirCoef * e + (sigma === 0 ? 0 : sigma * normal());
  }
}

/** diffusers' DDPM `variance_type`s a fixed-variance sampler can take (`learned*` need the model's variance channels). */
export type DdpmVariance = 'fixed_small' | 'fixed_large';

/**
 * One DDPM update in place (DDPM paper eq. 7, diffusers `DDPMScheduler.step`): the posterior mean
 * (√ᾱ_prev·β_t/(1−ᾱ))·x0 + (√α_t·(1−ᾱ_prev)/(1−ᾱ))·x_t with α_t = ᾱ/ᾱ_prev, β_t = 1 − α_t and x0 clipped to
 * ±`clipRange` when given, plus, except at t = 0, z times √((1−ᾱ_prev)·β_t/(1−ᾱ)) (fixed_small, at least 1e-20
 * before the root) or √β_t (fixed_large).
 */
export function ddpmStep(prediction: Prediction, x: Float32Array, out: ArrayLike<number>, t: number, ab: number, abPrev: number, variance: DdpmVariance, clipRange: number | undefined, normal: () => number): void {
  const alpha = ab / abPrev;
  const beta = 1 - alpha;
  const sa = Math.sqrt(ab);
  const sb = Math.sqrt(1 - ab);
  const c0 = (beta * Math.sqrt(abPrev)) / (1 - ab);
  const ct = ((1 - abPrev) * Math.sqrt(alpha)) / (1 - ab);
  const sigma = t === 0 ? 0 : variance === 'fixed_large' ? Math.sqrt(beta) : Math.sqrt(Math.max((beta * (1 - abPrev)) / (1 - ab), 1e-20));
  for (let i = 0; i < x.length; i++) {
    const xi = x[i]!;
    x[i] = c0 * clip(predictedX0(prediction, xi, out[i]!, sa, sb), clipRange) + ct * xi + (sigma === 0 ? 0 : sigma * normal());
  }
}
