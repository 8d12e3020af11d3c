/** Calibration-like inputs for pass tests and benchmarks that need data but not the samplers. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TensorMap } from '../src/ir/executor.js';

/** Noised real digits at spread timesteps: calibration-like inputs, x_t and t paired by q(x_t | x_0). */
export function calibrationBatches(count: number, batch: number): TensorMap[] {
  const raw = readFileSync(join(import.meta.dirname, '..', 'test', 'fixtures', 'digits-classifier', 'digits16_f32.bin'));
  const digits = new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength));
  const betas = Array.from({ length: 1000 }, (_, i) => 1e-4 + ((0.02 - 1e-4) * i) / 999);
  const alphaBar: number[] = [];
  betas.reduce((acc, b) => (alphaBar.push(acc * (1 - b)), acc * (1 - b)), 1);
  let state = 12345;
  const uniform = () => ((state = (Math.imul(state, 1664525) + 1013904223) >>> 0) + 0.5) / 2 ** 32;
  const normal = () => Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform());
  const batches: TensorMap[] = [];
  for (let b = 0; b < count / batch; b++) {
    const x = new Float32Array(batch * 256);
    const t = new BigInt64Array(batch);
    const y = new BigInt64Array(batch);
    for (let i = 0; i < batch; i++) {
      const sample = ((b * batch + i) * 7) % 1797;
      const step = Math.floor(uniform() * 1000);
      const ab = alphaBar[step]!;
      for (let p = 0; p < 256; p++) x[i * 256 + p] = Math.sqrt(ab) * digits[sample * 256 + p]! + Math.sqrt(1 - ab) * normal();
      t[i] = BigInt(step);
      y[i] = BigInt(sample % 10);
    }
    batches.push({ x: { dtype: 'float32', dims: [batch, 1, 16, 16], data: x }, t: { dtype: 'int64', dims: [batch], data: t }, y: { dtype: 'int64', dims: [batch], data: y } });
  }
  return batches;
}

