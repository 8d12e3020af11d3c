/**
 * Progress of the CLI's long steps (calibration trajectories, passes, search epochs, saving, sampling, synth),
 * the one place that decides how it looks. On a terminal the current step is one bar line redrawn in place
 * (`calibration trajectories [#########-----------] 12/32  0:41 elapsed, ~1:02 left`) and finished with a
 * final line; elsewhere (logs, CI, tests) it is plain lines, throttled to the first, one per tenth of the
 * total (so a step of a second shows its first and last line only) or per LINE_INTERVAL_MS, and the last.
 * `--quiet` silences it (and the informational lines sent through it) but never errors, warnings or what a
 * command prints as its summary. Time comes from the CliIO's clock (tests inject one), so the text is a
 * function of the calls and the clock alone.
 */
import type { CliIO } from './command.js';

/** How a reporter behaves: `quiet` drops progress and informational lines. */
export interface ProgressOptions {
  quiet?: boolean;
}

/** What is being counted: units (`12/32`) or bytes (`1.25/2.61 GiB`). */
export type ProgressUnit = 'count' | 'bytes';

/** Off a terminal: a line at least every this often while a step runs, whatever its fraction done. */
const LINE_INTERVAL_MS = 10_000;
/** Off a terminal: a line each time another 1/LINE_FRACTIONS of the total is done, LINE_MIN_MS after the last. */
const LINE_FRACTIONS = 10;
const LINE_MIN_MS = 1000;
/** On a terminal: the bar is redrawn at most this often (its first and last state always). */
const REDRAW_MS = 100;
const BAR_WIDTH = 20;
const CLEAR_LINE = '\r\x1b[K';

/** The step now reporting: what it counts, since when, and what was last shown of it. */
interface Bar {
  label: string;
  total: number;
  unit: ProgressUnit;
  started: number;
  done: number;
  shownAt: number;
  shownFraction: number;
}

/** The progress reporter of one command run. */
export class Progress {
  private readonly quiet: boolean;
  private readonly terminal: boolean;
  private readonly now: () => number;
  private bar: Bar | undefined;
  /** A line (step name or unfinished bar) is on the terminal without its newline. */
  private live = false;
  /** When the current step began: a bar's clock starts here, not at its first report (which may come after a unit). */
  private stepStarted: number;

  constructor(
    private readonly io: CliIO,
    options: ProgressOptions = {},
  ) {
    this.quiet = options.quiet === true;
    this.terminal = io.stderrIsTTY === true;
    this.now = io.now ?? (() => performance.now());
    this.stepStarted = this.now();
  }

  /**
   * A step begins: the clock of its bars starts now. On a terminal `name` (when given) shows until the step's
   * progress or its next line replaces it.
   */
  step(name?: string): void {
    this.bar = undefined;
    this.stepStarted = this.now();
    if (this.quiet || !this.terminal) return;
    if (name !== undefined) this.draw(name);
    else this.clear();
  }

  /**
   * `done` of `total` of `label`. Another label or total than the current bar's, or a count going back,
   * starts a new bar, timed from the step's start (or the previous bar's end); `done === total` finishes it.
   */
  update(label: string, done: number, total: number, unit: ProgressUnit = 'count'): void {
    if (this.quiet) return;
    const now = this.now();
    const current = this.bar;
    const first = !current || current.label !== label || current.total !== total || current.unit !== unit || done < current.done;
    const bar = first ? (this.bar = { label, total, unit, started: this.stepStarted, done, shownAt: -Infinity, shownFraction: -1 }) : current;
    bar.done = done;
    const finished = done >= total;
    const fraction = total > 0 ? Math.floor((LINE_FRACTIONS * done) / total) : LINE_FRACTIONS;
    const since = now - bar.shownAt;
    const due = this.terminal ? since >= REDRAW_MS : (fraction > bar.shownFraction && since >= LINE_MIN_MS) || since >= LINE_INTERVAL_MS;
    if (first || finished || due) {
      const text = this.terminal ? barLine(bar, now) : plainLine(bar, now);
      if (this.terminal && !finished) this.draw(text);
      else this.line(text);
      bar.shownAt = now;
      bar.shownFraction = fraction;
    }
    if (finished) {
      this.bar = undefined;
      this.stepStarted = now;
    }
  }

  /** An informational line (a pass's time, a cache used): dropped under --quiet. */
  info(text: string): void {
    if (!this.quiet) this.line(text);
  }

  /** Text that is always shown (errors, warnings, diagnostics, IR dumps): a live bar line is cleared first. */
  print(text: string): void {
    this.clear();
    this.io.stderr(text);
  }

  private line(text: string): void {
    this.clear();
    this.io.stderr(`${text}\n`);
  }

  private draw(text: string): void {
    this.io.stderr(`${CLEAR_LINE}${text}`);
    this.live = true;
  }

  private clear(): void {
    if (this.live) this.io.stderr(CLEAR_LINE);
    this.live = false;
  }
}

/** The terminal form: `label [#####---------------] 8/32  0:12 elapsed, ~0:36 left`. */
function barLine(bar: Bar, now: number): string {
  const filled = bar.total > 0 ? Math.min(BAR_WIDTH, Math.floor((BAR_WIDTH * bar.done) / bar.total)) : BAR_WIDTH;
  return `${bar.label} [${'#'.repeat(filled)}${'-'.repeat(BAR_WIDTH - filled)}] ${counted(bar)}  ${timing(bar, now)}`;
}

/** The log form: `label 8/32 (25%)  0:12 elapsed, ~0:36 left`. */
function plainLine(bar: Bar, now: number): string {
  const percent = bar.total > 0 ? Math.floor((100 * Math.min(bar.done, bar.total)) / bar.total) : 100;
  return `${bar.label} ${counted(bar)} (${percent}%)  ${timing(bar, now)}`;
}

function counted(bar: Bar): string {
  if (bar.unit === 'count') return `${bar.done}/${bar.total}`;
  // Both in the total's unit: `1.25/2.61 GiB`, `12.5/48.0 MiB`, `96/180 KiB`.
  const [scale, digits, unit] = bar.total >= 2 ** 30 ? [2 ** 30, 2, 'GiB'] : bar.total >= 2 ** 20 ? [2 ** 20, 1, 'MiB'] : [2 ** 10, 0, 'KiB'];
  return `${(bar.done / scale).toFixed(digits)}/${(bar.total / scale).toFixed(digits)} ${unit}`;
}

/** Elapsed time, and the time left at the rate so far (none before the first unit, nor once done). */
function timing(bar: Bar, now: number): string {
  const elapsed = Math.max(0, now - bar.started);
  const left = bar.done > 0 && bar.done < bar.total ? `, ~${clock((elapsed * (bar.total - bar.done)) / bar.done)} left` : '';
  return `${clock(elapsed)} elapsed${left}`;
}

/** `m:ss`, or `h:mm:ss` from an hour, of `ms` rounded down to the second. */
function clock(ms: number): string {
  const seconds = Math.floor(ms / 1000);
  const [h, m, s] = [Math.floor(seconds / 3600), Math.floor(seconds / 60) % 60, seconds % 60];
  const ss = String(s).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}
