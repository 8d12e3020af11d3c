/**
 * Rows per model run under a memory budget. A run's activations grow with its rows: SD-1.5's UNet at 64×64
 * holds ~1.1 GB of them a row, so one classifier-free-guidance call of a calibration batch of 32 would need
 * ~70 GB. Runs over the model's own calibration data (trajectories, calibration batches) are therefore cut to
 * the rows whose estimated activations (peakActivationBytes) fit the budget — a fixed share of the weight bytes,
 * with a floor for small models — so a compile's peak stays within ~1.5× the weights at any resolution. The cut
 * depends on the graph and the fed shapes only, so it is the same on every machine and every run.
 */
import type { Dim, Model } from '../ir/core.js';
import type { TensorMap } from '../ir/executor.js';
import { peakActivationBytes } from '../ir/activation-memory.js';
import { sliceFeeds } from './diffusion/tensor-rows.js';

/**
 * The activation budget of one run, as a share of the model's weight bytes. ORT's measured peak runs ~1.3× the
 * estimate (SD-1.5: 1.37 GB measured a 64×64 row, 1.10 GB estimated), so 0.3 keeps weights plus activations
 * near 1.4× the weights.
 */
export const ACTIVATION_BUDGET_SHARE = 0.3;
/** The smallest activation budget of one run (small models run their batches whole). */
export const ACTIVATION_BUDGET_FLOOR_BYTES = 2 ** 30;

/** Bytes of the model's initializers (external ones included). */
function weightBytes(model: Model): number {
  let bytes = 0;
  for (const value of model.graph.initializers.values()) bytes += value.initializer?.byteLength ?? 0;
  return bytes;
}

/** What one row of a feed shape costs, and the rows a run takes. */
export interface RowsPerRun {
  rows: number;
  /** Estimated activation bytes of one row; undefined when the shapes leave it unknown (the rows are then not cut). */
  bytesPerRow?: number;
}

/** Cuts runs of one model to its activation budget; estimates are kept per feed shape. */
export class RunRows {
  readonly budgetBytes: number;
  private readonly known = new Map<string, RowsPerRun>();

  constructor(
    private readonly model: Model,
    budgetBytes?: number,
  ) {
    this.budgetBytes = budgetBytes ?? Math.max(ACTIVATION_BUDGET_FLOOR_BYTES, ACTIVATION_BUDGET_SHARE * weightBytes(model));
  }

  /** The rows a run of feeds shaped like `feeds` (any row count) takes, at least 1. */
  of(feeds: TensorMap): RowsPerRun {
    const key = Object.entries(feeds)
      .map(([name, t]) => `${name}:${t.dims.slice(1).join('x')}/${t.dims.length}`)
      .join(',');
    let found = this.known.get(key);
    if (!found) {
      const dims = new Map<string, Dim[]>();
      // One row: the batch axis of every fed input at 1 (a scalar stays a scalar).
      for (const [name, t] of Object.entries(feeds)) dims.set(name, t.dims.length === 0 ? [] : [1, ...t.dims.slice(1)]);
      const bytesPerRow = peakActivationBytes(this.model, dims);
      found = bytesPerRow === undefined || bytesPerRow === 0 ? { rows: Infinity } : { rows: Math.max(1, Math.floor(this.budgetBytes / bytesPerRow)), bytesPerRow };
      this.known.set(key, found);
    }
    return found;
  }
}

/** `batches` with every batch of more rows than a run fits split into runs that fit (in order; the others as they are). */
export function cutBatches(batches: readonly TensorMap[], runRows: RunRows): TensorMap[] {
  return batches.flatMap((feeds) => {
    const rows = Object.values(feeds).find((t) => t.dims.length > 0)?.dims[0] ?? 1;
    const fit = runRows.of(feeds).rows;
    if (rows <= fit) return [feeds];
    return Array.from({ length: Math.ceil(rows / fit) }, (_, i) => sliceFeeds(feeds, i * fit, Math.min(rows, (i + 1) * fit)));
  });
}
