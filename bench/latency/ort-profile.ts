/**
 * ORT's profiler read as "where the time went": one session opened with `enableProfiling`, warmed by one run,
 * then one profiled run, its Node events summed per kernel op type (the kernel ORT actually ran after its graph
 * transformers, e.g. QLinearConv, MatMulNBits, DequantizeLinear). The bench scripts share it so that every
 * profile figure they print is measured the same way.
 */
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';

/** Milliseconds per kernel op type of the last of two runs of `model` (a path or encoded bytes), largest first. */
export async function profileByOp(model: string | Uint8Array, feeds: Record<string, ort.Tensor>, options: ort.InferenceSession.SessionOptions): Promise<Record<string, number>> {
  const dir = mkdtempSync(join(tmpdir(), 'qcompile-profile-'));
  try {
    const sessionOptions = { ...options, enableProfiling: true, profileFilePrefix: join(dir, 'profile') };
    const session = typeof model === 'string' ? await ort.InferenceSession.create(model, sessionOptions) : await ort.InferenceSession.create(model, sessionOptions);
    await session.run(feeds);
    await session.run(feeds);
    session.endProfiling();
    await session.release();
    const file = readdirSync(dir).find((f) => f.endsWith('.json'));
    if (!file) throw new Error(`ORT wrote no profile under ${dir}`);
    const events = JSON.parse(readFileSync(join(dir, file), 'utf8')) as { cat: string; name: string; ts: number; dur: number; args?: { op_name?: string } }[];
    // Node events of the last run only: the run events mark its start.
    const lastRunStart = events.filter((e) => e.cat === 'Session' && e.name === 'model_run').at(-1)?.ts ?? 0;
    const byOp: Record<string, number> = {};
    for (const e of events) {
      if (e.cat !== 'Node' || !e.name.endsWith('_kernel_time') || e.ts < lastRunStart) continue;
      const op = e.args?.op_name ?? 'unknown';
      byOp[op] = (byOp[op] ?? 0) + e.dur / 1000;
    }
    return Object.fromEntries(Object.entries(byOp).sort((a, b) => b[1] - a[1]).map(([op, ms]) => [op, Number(ms.toFixed(1))]));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
