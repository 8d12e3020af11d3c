/** The contract every `qcompile` subcommand implements; main.ts dispatches on `name`. */
export interface CliIO {
  /** Writes to standard output (no newline added). */
  stdout(text: string): void;
  /** Writes to standard error (no newline added). */
  stderr(text: string): void;
  /** Working directory that relative paths resolve against. */
  cwd: string;
  /** True when stderr is a terminal: progress is then one bar redrawn in place, else throttled lines (progress.ts). */
  stderrIsTTY?: boolean;
  /** The clock progress is timed with, in milliseconds (default `performance.now`; tests inject a fake one). */
  now?: () => number;
}

/** One subcommand: parses its own argv, returns the process exit code. */
export interface Command {
  name: string;
  /** One line for `qcompile --help`. */
  summary: string;
  /** Full `--help` text. */
  usage: string;
  run(argv: string[], io: CliIO): Promise<number>;
}
