/**
 * Calibration sets of a text-conditioned model under classifier-free guidance (sd-digits with its
 * precomputed prompt states): every row carries all three inputs, the unconditional rows the sampler really
 * ran sit beside the conditional ones, and re-running a recorded batch gives the output the sampler saw.
 */
import { describe, expect, it } from 'vitest';
import { SD, sdDigits } from './sd-digits.js';
import { buildCalibrationSet } from '../../src/runtime/calibration.js';
import { openDenoiser } from '../../src/runtime/diffusion/sampler.js';
import { runCli } from '../cli/run-cli.js';

describe('calibration of sd-digits under CFG', () => {
  it('records [uncond, cond] row pairs with the timestep, latent and text states the model got', async () => {
    const { model, iface, conditioning, empty, scheduler } = sdDigits(10);
    const denoiser = await openDenoiser(model, iface);
    try {
      const set = await buildCalibrationSet(denoiser, scheduler, conditioning, { samples: 6, batch: 4, strategy: { kind: 'random-distinct' }, seed: 2, guidance: 1.5 });
      // 6 trajectories × (uncond + cond) rows, in batches of 4.
      expect(set.timesteps).toHaveLength(12);
      expect(set.batches.map((b) => b.sample!.dims)).toEqual([[4, 1, 16, 16], [4, 1, 16, 16], [4, 1, 16, 16]]);
      expect(Object.keys(set.batches[0]!).sort()).toEqual(['encoder_hidden_states', 'sample', 'timestep']);
      for (let r = 0; r < 12; r += 2) expect(set.timesteps[r]).toBe(set.timesteps[r + 1]);
      expect(new Set(set.timesteps).size).toBe(6);
      const rows = set.batches.flatMap((b) => Array.from({ length: 4 }, (_, i) => ({ b, i })));
      rows.forEach(({ b, i }, r) => {
        const states = (b.encoder_hidden_states!.data as Float32Array).subarray(i * 512, (i + 1) * 512);
        const latent = (b.sample!.data as Float32Array).subarray(i * 256, (i + 1) * 256);
        if (r % 2 === 0) expect(Array.from(states)).toEqual(Array.from(empty));
        else {
          // The conditional row is trajectory k's prompt (k % 120), on the same x_t as its unconditional twin.
          expect(Array.from(states)).not.toEqual(Array.from(empty));
          const twin = rows[r - 1]!;
          expect(Array.from(latent)).toEqual(Array.from((twin.b.sample!.data as Float32Array).subarray(twin.i * 256, (twin.i + 1) * 256)));
        }
      });
    } finally {
      await denoiser.release();
    }
  }, 120_000);

  it('compiling sd-digits without prompts or conditioning is one clear error naming the three ways to give them', async () => {
    const result = await runCli([`${SD}/unet/model.onnx`, 'recipes/ptq4dm-w8a8.qrecipe', '-o', '/tmp/qcompile-never-written.onnx']);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("qcompile: error: the model is text-conditioned ('encoder_hidden_states' (text-states)): give it prompts with --prompts FILE or `calibrate { prompts \"FILE\" }` in the recipe, or precomputed conditioning with --conditioning DIR");
    expect(result.stderr).not.toMatch(/\n\s+at /);
  });
});
