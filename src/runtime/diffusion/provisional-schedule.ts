/**
 * PROVISIONAL adapter until the scheduler-config readers (scheduler-config.ts) land: a `schedule.json`
 * sidecar's schedule as a NoiseScheduleConfig, with the fixtures' DDIM conventions.
 */
import type { Sidecar } from '../diffusion.js';
import type { NoiseScheduleConfig } from './scheduler.js';

/** A validated sidecar's schedule as a NoiseScheduleConfig (the fixtures' DDIM: clipped, ᾱ_prev = 1, leading). */
export function provisionalNoiseSchedule(sidecar: Sidecar): NoiseScheduleConfig {
  const betaSchedule = sidecar.beta_schedule === 'scaled-linear' ? 'scaled_linear' : sidecar.beta_schedule === 'cosine' ? 'squaredcos_cap_v2' : 'linear';
  return {
    origin: 'sidecar',
    kind: 'discrete',
    numTrainTimesteps: sidecar.T,
    betaSchedule,
    ...(sidecar.beta_start !== undefined ? { betaStart: sidecar.beta_start } : {}),
    ...(sidecar.beta_end !== undefined ? { betaEnd: sidecar.beta_end } : {}),
    prediction: sidecar.prediction_type,
    clipSample: true,
    clipSampleRange: 1,
    setAlphaToOne: true,
    timestepSpacing: 'leading',
    stepsOffset: 0,
    shift: 1,
  };
}
