/**
 * makeScheduler end to end against PyTorch: the sd-digits UNet (real onnxruntime), driven by the DDIM
 * scheduler its own `scheduler/scheduler_config.json` describes, reproduces the fixture's FP32 samples from
 * their x_T (max |Δ| 1.8e-6 and 2.5e-6) — conditional only (guidance 1) and with classifier-free guidance 1.5 against the empty prompt.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readRawTensor } from '../../../src/runtime/host-tensor.js';
import { openSession, type RuntimeSession } from '../../../src/runtime/ort-session.js';
import { readSchedulerConfig } from '../../../src/runtime/diffusion/scheduler-config.js';
import { makeScheduler } from '../../../src/runtime/diffusion/scheduler.js';

const DIR = 'test/fixtures/sd-digits';
const PIXELS = 256;
const STATES = 8 * 64;
/** Samples 0, 5, 10, 15: the first sample of test prompts 0..3 (sample i uses prompt ⌊i/5⌋). */
const ROWS = [0, 5, 10, 15];

const floats = (file: string, rows: number, width: number) => readRawTensor(`${DIR}/${file}`, 'float32', [rows, width]).data as Float32Array;
const pick = (all: Float32Array, rows: number[], width: number) => {
  const out = new Float32Array(rows.length * width);
  rows.forEach((r, i) => out.set(all.subarray(r * width, (r + 1) * width), i * width));
  return out;
};

describe('DDIM-25 from the sd-digits scheduler config reproduces the PyTorch samples', () => {
  let unet: RuntimeSession;
  beforeAll(async () => {
    unet = await openSession(`${DIR}/unet/model.onnx`, { intraOpNumThreads: 1 });
  });
  afterAll(async () => {
    await unet.release();
  });

  const prompts = pick(floats('prompts/prompt_embeds_test_f32.bin', 100, STATES), ROWS.map((r) => Math.floor(r / 5)), STATES);
  const empty = floats('prompts/prompt_embeds_empty_f32.bin', 1, STATES);

  for (const guidance of [1, 1.5]) {
    it(`guidance ${guidance}: max |Δ| below 1e-4 (measured 2e-6) over ${ROWS.length} samples`, async () => {
      const scheduler = makeScheduler(readSchedulerConfig(`${DIR}/scheduler/scheduler_config.json`), { kind: 'ddim', steps: 25 });
      const n = ROWS.length;
      const x = pick(floats('samples_xT_f32.bin', 500, PIXELS), ROWS, PIXELS).map((v) => v * scheduler.initNoiseSigma);
      // CFG runs the batch twice, conditional rows then unconditional ones.
      const branches = guidance === 1 ? 1 : 2;
      const states = new Float32Array(branches * n * STATES);
      states.set(prompts);
      for (let i = n; i < branches * n; i++) states.set(empty, i * STATES);
      for (let i = 0; i < scheduler.timesteps.length; i++) {
        const input = scheduler.scaleModelInput(x, i);
        const sample = new Float32Array(branches * n * PIXELS);
        for (let b = 0; b < branches; b++) sample.set(input, b * n * PIXELS);
        const t = BigInt(scheduler.timesteps[i]!);
        const result = await unet.run({
          sample: { dtype: 'float32', dims: [branches * n, 1, 16, 16], data: sample },
          timestep: { dtype: 'int64', dims: [branches * n], data: new BigInt64Array(branches * n).fill(t) },
          encoder_hidden_states: { dtype: 'float32', dims: [branches * n, 8, 64], data: states },
        });
        const out = result.out_sample!.data as Float32Array;
        const guided = branches === 1 ? out : Float32Array.from({ length: n * PIXELS }, (_, j) => out[n * PIXELS + j]! + guidance * (out[j]! - out[n * PIXELS + j]!));
        scheduler.step(guided, i, x, () => 0);
      }
      const expected = pick(floats(`samples_g${guidance}_f32.bin`, 500, PIXELS), ROWS, PIXELS);
      let max = 0;
      for (let j = 0; j < x.length; j++) max = Math.max(max, Math.abs(x[j]! - expected[j]!));
      expect(max).toBeLessThan(1e-4);
    });
  }
});
