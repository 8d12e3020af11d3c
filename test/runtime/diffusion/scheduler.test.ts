/**
 * The schedulers against diffusers' published definitions, each formula written out again here independently
 * (and numpy's numbers for the timestep grids and the shifted flow σ), to 1e-6: ᾱ of every beta schedule, the
 * timesteps of every spacing and offset, the Euler and flow σ grids, one step of each sampler; the fixtures'
 * configs parsed; and the new DDIM/DDPM bit-identical to the pre-#13 fixture definitions (kept below verbatim).
 */
import { describe, expect, it } from 'vitest';
import { parseRecipe } from '../../../src/recipe/parse.js';
import { betasOf, cumulativeAlphas, flowSigmas, predictedEps, predictedX0, roundHalfEven, ScheduleError, spacedTimesteps } from '../../../src/runtime/diffusion/schedule-math.js';
import { noiseScheduleFromRecipe, noiseScheduleFromSidecar, parseSchedulerConfig, readSchedulerConfig } from '../../../src/runtime/diffusion/scheduler-config.js';
import { makeScheduler, type NoiseScheduleConfig } from '../../../src/runtime/diffusion/scheduler.js';
import { readSidecar } from '../../../src/runtime/diffusion/sidecar.js';

const close = (actual: readonly number[] | Float64Array | Float32Array, expected: readonly number[], tol = 1e-6) => {
  expect(actual.length).toBe(expected.length);
  actual.forEach((a, i) => expect(Math.abs(a - expected[i]!), `index ${i}: ${a} vs ${expected[i]}`).toBeLessThanOrEqual(tol * Math.max(1, Math.abs(expected[i]!))));
};

/** ᾱ by the papers' definitions: β linear / scaled linear over t/(T−1), GLIDE cosine ᾱ(u) = cos²((u + 0.008)/1.008 · π/2). */
function referenceAlphas(kind: 'linear' | 'scaled_linear' | 'squaredcos_cap_v2', T: number, b0 = 1e-4, b1 = 0.02): number[] {
  const out: number[] = [];
  let product = 1;
  for (let t = 0; t < T; t++) {
    const u = t / (T - 1);
    const f = (s: number) => Math.cos(((s + 0.008) / 1.008) * (Math.PI / 2)) ** 2;
    const beta = kind === 'linear' ? b0 * (1 - u) + b1 * u : kind === 'scaled_linear' ? (Math.sqrt(b0) * (1 - u) + Math.sqrt(b1) * u) ** 2 : Math.min(1 - f((t + 1) / T) / f(t / T), 0.999);
    product *= 1 - beta;
    out.push(product);
  }
  return out;
}

const config = (fields: Record<string, unknown>) => parseSchedulerConfig({ _class_name: 'DDIMScheduler', ...fields });
/** A fixed "normal" stream, so a stochastic step is reproducible. */
const stream = (values: number[]) => {
  let i = 0;
  return () => values[i++ % values.length]!;
};

describe('noise schedules', () => {
  it('ᾱ of each beta schedule matches its definition (SD scaled_linear 0.00085..0.012 ends at ᾱ ≈ 0.00466)', () => {
    for (const kind of ['linear', 'scaled_linear', 'squaredcos_cap_v2'] as const) {
      const [b0, b1] = kind === 'scaled_linear' ? [0.00085, 0.012] : [1e-4, 0.02];
      close(cumulativeAlphas(betasOf({ kind, T: 1000, betaStart: b0, betaEnd: b1 })), referenceAlphas(kind, 1000, b0, b1));
    }
    const sd = cumulativeAlphas(betasOf({ kind: 'scaled_linear', T: 1000, betaStart: 0.00085, betaEnd: 0.012 }));
    expect(sd[999]).toBeCloseTo(0.004660, 5);
  });

  it('trained_betas are taken as given, and must be T of them in (0, 1)', () => {
    const c = config({ num_train_timesteps: 3, trained_betas: [0.1, 0.2, 0.3] });
    expect(c.trainedBetas).toEqual([0.1, 0.2, 0.3]);
    // One DDIM step from t = 2 to the end: ᾱ_2 = 0.9·0.8·0.7.
    const s = makeScheduler(c, { kind: 'ddim', steps: 1 });
    expect(s.timesteps).toEqual([0]);
    expect(() => config({ num_train_timesteps: 4, trained_betas: [0.1, 0.2, 0.3] })).toThrow(/trained_betas.*3 betas, but num_train_timesteps is 4/);
    expect(() => config({ num_train_timesteps: 2, trained_betas: [0.1, 1] })).toThrow(/trained_betas\[1\] is 1, outside \(0, 1\)/);
  });

  it('timesteps of each spacing and offset are numpy\'s (half-even rounding included)', () => {
    expect(spacedTimesteps(1000, 25, 'leading', 0)).toEqual(Array.from({ length: 25 }, (_, i) => 960 - 40 * i));
    const sd = spacedTimesteps(1000, 50, 'leading', 1);
    expect([sd[0], sd[1], sd[2], sd[49]]).toEqual([981, 961, 941, 1]);
    expect(spacedTimesteps(1000, 3, 'trailing', 0)).toEqual([999, 666, 332]);
    expect(spacedTimesteps(1000, 7, 'trailing', 0)).toEqual([999, 856, 713, 570, 428, 285, 142]);
    expect(spacedTimesteps(1000, 7, 'linspace', 0)).toEqual([999, 832, 666, 500, 333, 166, 0]);
    expect(spacedTimesteps(1000, 16, 'linspace', 0)).toEqual([999, 932, 866, 799, 733, 666, 599, 533, 466, 400, 333, 266, 200, 133, 67, 0]);
    close(spacedTimesteps(1000, 4, 'linspace', 0, false), [999, 666, 333, 0]);
    expect([0.5, 1.5, 2.5, -0.5, -1.5, 2.4, 2.6].map(roundHalfEven)).toEqual([0, 2, 2, -0, -2, 2, 3]);
    expect(() => spacedTimesteps(1000, 1001, 'leading', 0)).toThrow(/steps must be an integer in \[1, T = 1000\]/);
  });

  it('a steps_offset that pushes a timestep past T − 1 is refused', () => {
    expect(() => makeScheduler(config({ steps_offset: 50 }), { kind: 'ddim', steps: 20 })).toThrow(/visits timestep 1000, outside \[0, 999\]/);
  });

  it('Euler σ = √((1−ᾱ)/ᾱ) interpolated at the timesteps, then 0; SD 1.5\'s σ_max is 14.6146', () => {
    const sd15 = parseSchedulerConfig({ _class_name: 'PNDMScheduler', beta_start: 0.00085, beta_end: 0.012, beta_schedule: 'scaled_linear', num_train_timesteps: 1000, set_alpha_to_one: false, skip_prk_steps: true, steps_offset: 1, trained_betas: null, clip_sample: false });
    // No timestep_spacing in the config: Euler's own default, linspace.
    const euler = makeScheduler(sd15, { kind: 'euler', steps: 4 });
    const ab = referenceAlphas('scaled_linear', 1000, 0.00085, 0.012);
    const sigma = (t: number) => {
      const lo = Math.floor(t);
      const w = t - lo;
      const s = (i: number) => Math.sqrt((1 - ab[i]!) / ab[i]!);
      return w === 0 ? s(lo) : s(lo) * (1 - w) + s(lo + 1) * w;
    };
    close(euler.timesteps, [999, 666, 333, 0]);
    close(euler.sigmas!, [sigma(999), sigma(666), sigma(333), sigma(0), 0]);
    expect(euler.initNoiseSigma).toBeCloseTo(14.6146, 3);
    // Fractional timesteps interpolate: linspace(0, 999, 7) has 832.5.
    close(makeScheduler(sd15, { kind: 'euler', steps: 7 }).sigmas!.slice(1, 2), [sigma(832.5)]);
    // leading spacing: init_noise_sigma = √(σ_max² + 1).
    const leading = makeScheduler({ ...sd15, timestepSpacing: 'leading' }, { kind: 'euler', steps: 50 });
    expect(leading.timesteps[0]).toBe(981);
    expect(leading.initNoiseSigma).toBeCloseTo(Math.sqrt(sigma(981) ** 2 + 1), 9);
  });

  it("flow σ: linspace over the (shifted) training σ, shifted again, then 0 — numpy's numbers for shift 3 and 1", () => {
    close(flowSigmas(1000, 4, { kind: 'static', shift: 3 }), [1.0, 0.8576923076923075, 0.6021505376344084, 0.00892857142857143, 0], 1e-12);
    close(flowSigmas(1000, 4, { kind: 'static', shift: 1 }), [1.0, 0.667, 0.334, 0.001, 0], 1e-12);
    const shifted = (s: number, k: number) => (k * s) / (1 + (k - 1) * s);
    const sd3 = makeScheduler(parseSchedulerConfig({ _class_name: 'FlowMatchEulerDiscreteScheduler', num_train_timesteps: 1000, shift: 3.0 }), { kind: 'flow-euler', steps: 28 });
    const lo = shifted(1 / 1000, 3);
    close(sd3.sigmas!, [...Array.from({ length: 28 }, (_, i) => shifted(1 + ((lo - 1) * i) / 27, 3)), 0]);
    close(sd3.timesteps, sd3.sigmas!.slice(0, -1).map((s) => s * 1000));
    expect(sd3.initNoiseSigma).toBe(1);
    expect(sd3.position(0)).toBe(1);
  });

  it('dynamic shifting: μ from the image token count (Flux: 0.5 at 256, 1.15 at 4096), e^μ as the shift; refused without the count', () => {
    const flux = parseSchedulerConfig({ _class_name: 'FlowMatchEulerDiscreteScheduler', num_train_timesteps: 1000, shift: 3.0, use_dynamic_shifting: true, base_shift: 0.5, max_shift: 1.15, base_image_seq_len: 256, max_image_seq_len: 4096 });
    close(makeScheduler(flux, { kind: 'flow-euler', steps: 4, imageSeqLen: 1024 }).sigmas!, [1.0, 0.789953899509246, 0.484967362504921, 0.001875964213224496, 0], 1e-12);
    expect(() => makeScheduler(flux, { kind: 'flow-euler', steps: 4 })).toThrow(/shifts dynamically.*schedule flow\(shift: S\)/);
  });
});

describe('one step of each sampler', () => {
  const x = Float32Array.from([0.3, -1.2, 2.5, 0.05]);
  const out = Float32Array.from([0.1, -0.4, 0.9, -2.0]);
  const T = 1000;
  const ab = referenceAlphas('linear', T);

  it('DDIM (η = 0 and 0.5, epsilon / v / sample, clip and set_alpha_to_one): x0, direction, noise', () => {
    for (const prediction of ['epsilon', 'v_prediction', 'sample'] as const) {
      for (const eta of [0, 0.5]) {
        for (const [clip, alphaToOne] of [[true, true], [false, false]] as const) {
          const s = makeScheduler(config({ prediction_type: prediction, clip_sample: clip, set_alpha_to_one: alphaToOne, clip_sample_range: 1.5 }), { kind: 'ddim', steps: 10, eta });
          for (const i of [0, 9]) {
            const t = s.timesteps[i]!;
            const prev = t - 100;
            const a = ab[t]!;
            const ap = prev >= 0 ? ab[prev]! : alphaToOne ? 1 : ab[0]!;
            const z = [0.7, -0.3, 1.1, -1.9];
            const expected = Array.from(x, (xi, j) => {
              const o = out[j]!;
              let x0 = prediction === 'epsilon' ? (xi - Math.sqrt(1 - a) * o) / Math.sqrt(a) : prediction === 'sample' ? o : Math.sqrt(a) * xi - Math.sqrt(1 - a) * o;
              const e = prediction === 'epsilon' ? o : prediction === 'sample' ? (xi - Math.sqrt(a) * x0) / Math.sqrt(1 - a) : Math.sqrt(a) * o + Math.sqrt(1 - a) * xi;
              if (clip) x0 = Math.min(1.5, Math.max(-1.5, x0));
              const std = eta * Math.sqrt(((1 - ap) / (1 - a)) * (1 - a / ap));
              return Math.sqrt(ap) * x0 + Math.sqrt(1 - ap - std * std) * e + std * z[j]!;
            });
            const y = x.slice();
            s.step(out, i, y, stream(z));
            close(y, expected);
          }
        }
      }
    }
  });

  it('DDPM (fixed_small and fixed_large, 10 steps): posterior mean and variance, no noise at t = 0', () => {
    for (const variance of ['fixed_small', 'fixed_large'] as const) {
      const s = makeScheduler(parseSchedulerConfig({ _class_name: 'DDPMScheduler', variance_type: variance }), { kind: 'ddpm', steps: 10 });
      expect(s.timesteps).toEqual([900, 800, 700, 600, 500, 400, 300, 200, 100, 0]);
      for (const i of [0, 9]) {
        const t = s.timesteps[i]!;
        const a = ab[t]!;
        const ap = i === 9 ? 1 : ab[s.timesteps[i + 1]!]!;
        const beta = 1 - a / ap;
        const std = t === 0 ? 0 : variance === 'fixed_small' ? Math.sqrt(((1 - ap) / (1 - a)) * beta) : Math.sqrt(beta);
        const z = [0.2, 0.4, -0.6, 0.8];
        const expected = Array.from(x, (xi, j) => {
          const x0 = Math.min(1, Math.max(-1, (xi - Math.sqrt(1 - a) * out[j]!) / Math.sqrt(a)));
          return (Math.sqrt(ap) * beta * x0) / (1 - a) + (Math.sqrt(1 - beta) * (1 - ap) * xi) / (1 - a) + std * z[j]!;
        });
        const y = x.slice();
        s.step(out, i, y, stream(z));
        close(y, expected);
      }
    }
    expect(() => makeScheduler(parseSchedulerConfig({ _class_name: 'DDPMScheduler', variance_type: 'learned_range' }), { kind: 'ddpm', steps: 10 })).toThrow(/variance_type 'learned_range'.*predicted variance channels/);
  });

  it('Euler (epsilon, v, sample): input scaled by 1/√(σ²+1), x ← x + (σ_next − σ)·(x − x0)/σ', () => {
    for (const prediction of ['epsilon', 'v_prediction', 'sample'] as const) {
      const s = makeScheduler(parseSchedulerConfig({ _class_name: 'EulerDiscreteScheduler', prediction_type: prediction }), { kind: 'euler', steps: 5 });
      const i = 1;
      const sigma = s.sigmas![i]!;
      const next = s.sigmas![i + 1]!;
      close(s.scaleModelInput(x, i), Array.from(x, (v) => v / Math.sqrt(sigma * sigma + 1)));
      const expected = Array.from(x, (xi, j) => {
        const o = out[j]!;
        const x0 = prediction === 'epsilon' ? xi - sigma * o : prediction === 'sample' ? o : o * (-sigma / Math.sqrt(sigma * sigma + 1)) + xi / (sigma * sigma + 1);
        return xi + ((xi - x0) / sigma) * (next - sigma);
      });
      const y = x.slice();
      s.step(out, i, y, () => 0);
      close(y, expected);
    }
  });

  it('flow Euler: x ← x + (σ_next − σ)·v, the last step to σ = 0', () => {
    const s = makeScheduler(parseSchedulerConfig({ _class_name: 'FlowMatchEulerDiscreteScheduler', shift: 3 }), { kind: 'flow-euler', steps: 6 });
    for (const i of [0, 5]) {
      const y = x.slice();
      s.step(out, i, y, () => 0);
      close(y, Array.from(x, (xi, j) => xi + (s.sigmas![i + 1]! - s.sigmas![i]!) * out[j]!));
    }
    expect(s.sigmas![6]).toBe(0);
  });

  it('position(i) ∈ [0, 1] for every sampler, high to low', () => {
    const discrete = config({});
    const flow = parseSchedulerConfig({ _class_name: 'FlowMatchEulerDiscreteScheduler' });
    for (const [c, kind] of [[discrete, 'ddim'], [discrete, 'ddpm'], [discrete, 'euler'], [flow, 'flow-euler']] as const) {
      const s = makeScheduler(c, { kind, steps: 20 });
      const p = s.timesteps.map((_, i) => s.position(i));
      expect(p.every((v, i) => v >= 0 && v <= 1 && (i === 0 || v < p[i - 1]!))).toBe(true);
    }
  });
});

describe('configs from the ecosystem and the fixtures', () => {
  it("sd-digits' scheduler/scheduler_config.json: DDIM, linear 1e-4..0.02, T = 1000, its stated settings", () => {
    const c = readSchedulerConfig('test/fixtures/sd-digits/scheduler/scheduler_config.json');
    expect(c).toEqual({ origin: 'DDIMScheduler', kind: 'discrete', numTrainTimesteps: 1000, betaSchedule: 'linear', betaStart: 0.0001, betaEnd: 0.02, prediction: 'epsilon', clipSample: true, clipSampleRange: 1, setAlphaToOne: true, timestepSpacing: 'leading', stepsOffset: 0, shift: 1 });
    expect(makeScheduler(c, { kind: 'ddim', steps: 25 }).timesteps).toEqual(Array.from({ length: 25 }, (_, i) => 960 - 40 * i));
  });

  it("dit-digits' sidecar: the fixture DDIM grid 960..0 for T = 1000, S = 25", () => {
    const c = noiseScheduleFromSidecar(readSidecar('test/fixtures/dit-digits/schedule.json'));
    const s = makeScheduler(c, { kind: 'ddim', steps: 25 });
    expect(s.timesteps).toEqual(Array.from({ length: 25 }, (_, i) => 960 - 40 * i));
    expect([s.position(0), s.initNoiseSigma, s.scaleModelInput(Float32Array.of(2), 0)[0]]).toEqual([0.96, 1, 2]);
  });

  it('the discrete schedule keys of PNDM, LMS, DPM-Solver and Euler ancestral configs are read; their sampler keys are not', () => {
    for (const name of ['PNDMScheduler', 'LMSDiscreteScheduler', 'DPMSolverMultistepScheduler', 'EulerAncestralDiscreteScheduler']) {
      const c = parseSchedulerConfig({ _class_name: name, beta_schedule: 'scaled_linear', beta_start: 0.00085, beta_end: 0.012, prediction_type: 'v_prediction', solver_order: 2, algorithm_type: 'dpmsolver++', thresholding: true });
      expect(c).toMatchObject({ origin: name, kind: 'discrete', betaSchedule: 'scaled_linear', prediction: 'v' });
    }
  });

  it('refuses clearly: unknown class, bad values, unimplemented options, a sampler on the wrong kind of schedule', () => {
    const refused: [Record<string, unknown>, RegExp][] = [
      [{ _class_name: 'UniPCMultistepScheduler' }, /'_class_name' is "UniPCMultistepScheduler": qcompile reads the diffusers schedulers DDPMScheduler, DDIMScheduler, .*FlowMatchEulerDiscreteScheduler/],
      [{}, /'_class_name' is missing/],
      [{ _class_name: 'DDIMScheduler', beta_end: 1.5 }, /'beta_end' must be a number in \(0, 1\), got 1.5/],
      [{ _class_name: 'DDIMScheduler', beta_schedule: 'sigmoid' }, /'beta_schedule' must be one of linear, scaled_linear, squaredcos_cap_v2/],
      [{ _class_name: 'DDIMScheduler', num_train_timesteps: 1e9 }, /'num_train_timesteps' must be an integer in \[1, 100000\]/],
      [{ _class_name: 'DDIMScheduler', prediction_type: 'flow' }, /'prediction_type' must be one of epsilon, v_prediction, sample/],
      [{ _class_name: 'DDIMScheduler', clip_sample: 'yes' }, /'clip_sample' must be true or false/],
      [{ _class_name: 'DDIMScheduler', timestep_spacing: 'uniform' }, /'timestep_spacing' must be one of leading, trailing, linspace/],
      [{ _class_name: 'DDIMScheduler', thresholding: true }, /'thresholding' is true: dynamic thresholding of x0, which qcompile does not implement/],
      [{ _class_name: 'EulerDiscreteScheduler', rescale_betas_zero_snr: true }, /zero-terminal-SNR/],
      [{ _class_name: 'EulerDiscreteScheduler', use_karras_sigmas: true }, /'use_karras_sigmas' is true: a respaced σ grid/],
      [{ _class_name: 'FlowMatchEulerDiscreteScheduler', shift: 0 }, /'shift' must be a number in \(0, 1000\]/],
      [{ _class_name: 'FlowMatchEulerDiscreteScheduler', stochastic_sampling: true }, /stochastic flow sampling/],
    ];
    for (const [json, message] of refused) {
      expect(() => parseSchedulerConfig(json, 'scheduler_config.json'), JSON.stringify(json)).toThrow(message);
      expect(() => parseSchedulerConfig(json)).toThrow(ScheduleError);
    }
    expect(() => parseSchedulerConfig([], 'x.json')).toThrow(/x.json: a scheduler config must be a JSON object/);
    const flow = parseSchedulerConfig({ _class_name: 'FlowMatchEulerDiscreteScheduler' });
    expect(() => makeScheduler(flow, { kind: 'ddpm', steps: 10 })).toThrow(/sampler ddpm needs a discrete schedule.*sample it with flow-euler/);
    // Deterministic DDIM on a flow schedule is its flow-Euler step: the same scheduler; stochastic DDIM is refused.
    expect(makeScheduler(flow, { kind: 'ddim', steps: 10 }).timesteps).toEqual(makeScheduler(flow, { kind: 'flow-euler', steps: 10 }).timesteps);
    expect(makeScheduler(flow, { kind: 'ddim', steps: 10 }).spec.kind).toBe('flow-euler');
    expect(() => makeScheduler(flow, { kind: 'ddim', steps: 10, eta: 0.5 })).toThrow(/sampler ddim needs a discrete schedule/);
    expect(() => makeScheduler(config({}), { kind: 'flow-euler', steps: 10 })).toThrow(/sampler flow-euler needs a flow schedule/);
    expect(() => makeScheduler({ ...config({}), prediction: 'flow' }, { kind: 'ddim', steps: 10 })).toThrow(/prediction 'flow'.*take epsilon, v, sample/);
  });
});

describe('recipe schedules', () => {
  const recipe = (diffusion: string) => {
    const parsed = parseRecipe(`recipe "r" { diffusion { ${diffusion} } }`);
    expect(parsed.diagnostics.filter((d) => d.severity === 'error')).toEqual([]);
    return parsed.recipe!.diffusion;
  };

  it('linear / cosine / flow schedules become configs; sidecar and config defer to the model folder', () => {
    expect(noiseScheduleFromRecipe(recipe('schedule linear(start: 0.001, end: 0.01, steps: 500)'))).toEqual({ origin: 'recipe', kind: 'discrete', numTrainTimesteps: 500, betaSchedule: 'linear', betaStart: 0.001, betaEnd: 0.01, prediction: 'epsilon', shift: 1 });
    expect(noiseScheduleFromRecipe(recipe('schedule cosine(steps: 100) prediction v'))).toMatchObject({ betaSchedule: 'squaredcos_cap_v2', prediction: 'v', numTrainTimesteps: 100 });
    expect(noiseScheduleFromRecipe(recipe('schedule flow(shift: 3.0, steps: 1000) prediction flow'))).toEqual({ origin: 'recipe', kind: 'flow', numTrainTimesteps: 1000, prediction: 'flow', shift: 3 });
    expect(noiseScheduleFromRecipe(recipe('schedule sidecar'))).toBeUndefined();
    expect(noiseScheduleFromRecipe(recipe('schedule config'))).toBeUndefined();
  });
});

// ---- the pre-#13 definitions (of the since-removed src/runtime/diffusion.ts), verbatim, as the reference ----
function legacyClippedX0(xi: number, eps: number, sa: number, sb: number): number {
  const x0 = (xi - sb * eps) / sa;
  return x0 > 1 ? 1 : x0 < -1 ? -1 : x0;
}
function legacyDdim(alphasCumprod: Float64Array, x: Float32Array, eps: Float32Array, t: number, tPrev: number | undefined, eta: number, normal: () => number): void {
  const ab = alphasCumprod[t]!;
  const abPrev = tPrev === undefined ? 1 : alphasCumprod[tPrev]!;
  const sa = Math.sqrt(ab);
  const sb = Math.sqrt(1 - ab);
  const sigma = eta === 0 ? 0 : eta * Math.sqrt((1 - abPrev) / (1 - ab)) * Math.sqrt(1 - ab / abPrev);
  const dirCoef = Math.sqrt(Math.max(1 - abPrev - sigma * sigma, 0));
  const sPrev = Math.sqrt(abPrev);
  for (let i = 0; i < x.length; i++) {
    const e = eps[i]!;
    x[i] = sPrev * legacyClippedX0(x[i]!, e, sa, sb) + dirCoef * e + (sigma === 0 ? 0 : sigma * normal());
  }
}
function legacyDdpm(alphasCumprod: Float64Array, x: Float32Array, eps: Float32Array, t: number, normal: () => number): void {
  const ab = alphasCumprod[t]!;
  const abPrev = t === 0 ? 1 : alphasCumprod[t - 1]!;
  const alpha = ab / abPrev;
  const beta = 1 - alpha;
  const sa = Math.sqrt(ab);
  const sb = Math.sqrt(1 - ab);
  const c0 = (beta * Math.sqrt(abPrev)) / (1 - ab);
  const ct = ((1 - abPrev) * Math.sqrt(alpha)) / (1 - ab);
  const sigma = t === 0 ? 0 : Math.sqrt((beta * (1 - abPrev)) / (1 - ab));
  for (let i = 0; i < x.length; i++) {
    const xi = x[i]!;
    x[i] = c0 * legacyClippedX0(xi, eps[i]!, sa, sb) + ct * xi + (sigma === 0 ? 0 : sigma * normal());
  }
}
function legacyLinearAlphas(T: number, betaStart: number, betaEnd: number): Float64Array {
  const out = new Float64Array(T);
  let product = 1;
  for (let t = 0; t < T; t++) out[t] = product *= 1 - (betaStart + ((betaEnd - betaStart) * t) / Math.max(T - 1, 1));
  return out;
}

describe('bit-compatible with the fixture definitions', () => {
  /** A deterministic pseudo-model output per step (no RNG state shared with the samplers). */
  const fakeOutput = (n: number, step: number) => Float32Array.from({ length: n }, (_, j) => Math.sin(1.3 * j + 0.7 * step) * 1.4);
  const start = Float32Array.from({ length: 64 }, (_, j) => Math.cos(0.37 * j) * 1.7);
  const noise = () => {
    let k = 0;
    return () => Math.sin(++k * 12.9898) * 1.1;
  };
  const sidecarConfig: NoiseScheduleConfig = noiseScheduleFromSidecar(readSidecar('test/fixtures/dit-digits/schedule.json'));
  const alphas = legacyLinearAlphas(1000, 1e-4, 0.02);

  it('ᾱ of the linear schedule is the same float64s', () => {
    expect(cumulativeAlphas(betasOf({ kind: 'linear', T: 1000, betaStart: 1e-4, betaEnd: 0.02 }))).toEqual(alphas);
  });

  it('DDIM-25 (η = 0 and 0.3) and DDPM-1000 trajectories are identical to the last bit', () => {
    for (const [kind, steps, eta] of [['ddim', 25, 0], ['ddim', 25, 0.3], ['ddpm', 1000, 0]] as const) {
      const s = makeScheduler(sidecarConfig, { kind, steps, eta });
      const x = start.slice();
      const y = start.slice();
      const [nx, ny] = [noise(), noise()];
      s.timesteps.forEach((t, i) => {
        const out = fakeOutput(x.length, i);
        s.step(out, i, x, nx);
        if (kind === 'ddim') legacyDdim(alphas, y, out, t, s.timesteps[i + 1], eta, ny);
        else legacyDdpm(alphas, y, out, t, ny);
      });
      expect(Array.from(x)).toEqual(Array.from(y));
    }
  });
});

describe('prediction conversions', () => {
  it('recover x0 and eps from each kind of output, for a VP, a VE (Euler) and a flow state', () => {
    const x0 = 0.37;
    const eps = -1.21;
    const states: [string, number, number][] = [['VP', Math.sqrt(0.3), Math.sqrt(0.7)], ['VE', 1, 4.5], ['flow', 0.25, 0.75]];
    for (const [name, a, b] of states) {
      const x = a * x0 + b * eps;
      const c = Math.sqrt(a * a + b * b);
      // The definitions: v on the variance-preserving state x/c, flow velocity noise − x0.
      const outputs = { epsilon: eps, sample: x0, v: (a * eps - b * x0) / c, flow: eps - x0 } as const;
      for (const [prediction, out] of Object.entries(outputs) as [keyof typeof outputs, number][]) {
        if (prediction === 'flow' && name !== 'flow') continue;
        const gotX0 = predictedX0(prediction, x, out, a, b);
        expect(gotX0, `${name} ${prediction} x0`).toBeCloseTo(x0, 12);
        expect(predictedEps(prediction, x, out, a, b, gotX0), `${name} ${prediction} eps`).toBeCloseTo(eps, 12);
      }
    }
  });
});
