/** The one way tests run the shipped CLI in-process: `main` with captured stdout and stderr. */
import type { CliIO } from '../../src/cli/command.js';
import { main } from '../../src/cli/main.js';

/** What one CLI run returned and printed. */
export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `qcompile ARGS` in `cwd` (default: the current folder); `terminal` says what stderr is (default: not a terminal, a fake clock when given). */
export async function runCli(args: string[], cwd = process.cwd(), terminal: Pick<CliIO, 'stderrIsTTY' | 'now'> = {}): Promise<CliRun> {
  let stdout = '';
  let stderr = '';
  const io: CliIO = { stdout: (t) => void (stdout += t), stderr: (t) => void (stderr += t), cwd, ...terminal };
  const code = await main(args, io);
  return { code, stdout, stderr };
}
