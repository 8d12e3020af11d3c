import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { loadManifestTensors } from '../../src/runtime/host-tensor.js';
import { maxAbsError } from '../../src/runtime/metrics.js';
import { forEachBatch, openSession, runBatched } from '../../src/runtime/ort-session.js';

const DIR = 'test/fixtures/dit-digits';

describe('ORT harness', () => {
  const ref = loadManifestTensors(`${DIR}/reference_manifest.json`);

  it('loads the fixture manifest tensors with their dtypes and shapes', () => {
    expect(ref.x!.dims).toEqual([8, 1, 16, 16]);
    expect(Array.from(ref.t!.data as BigInt64Array, Number)).toEqual([0, 1, 500, 999, 10, 100, 400, 800]);
  });

  it('from bytes with config entries, batched (3+3+2) equals the PyTorch reference and the unbatched run', async () => {
    const session = await openSession(new Uint8Array(readFileSync(`${DIR}/model.onnx`)), { intraOpNumThreads: 2, graphOptimizationLevel: 'all', configEntries: { 'session.qdq_matmulnbits_accuracy_level': '0' } });
    try {
      expect([...session.inputNames]).toEqual(['x', 't', 'y']);
      const inputs = { x: ref.x!, t: ref.t!, y: ref.y! };
      const whole = await session.run(inputs);
      expect(maxAbsError(whole.eps!.data as Float32Array, ref.eps!.data as Float32Array)).toBeLessThan(1e-4);
      const batched = await runBatched(session, inputs, 3);
      expect(batched.eps!.dims).toEqual([8, 1, 16, 16]);
      expect(maxAbsError(batched.eps!.data as Float32Array, whole.eps!.data as Float32Array)).toBeLessThan(1e-5);
      const firstRows: number[] = [];
      await forEachBatch(session, inputs, 3, (out, first) => void firstRows.push(first, out.eps!.dims[0]!));
      expect(firstRows).toEqual([0, 3, 3, 3, 6, 2]);
    } finally {
      await session.release();
    }
  });

  it('a bad config entry name is refused before ORT sees it', async () => {
    await expect(openSession(`${DIR}/model.onnx`, { configEntries: { noGroup: '1' } })).rejects.toThrow(/session\.name/);
  });
});
