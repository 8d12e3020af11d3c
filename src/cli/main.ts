/**
 * The `qcompile` entry point: dispatches to subcommands, or to the main form `qcompile MODEL RECIPE -o OUT`.
 * Only the CLI touches argv, the environment and the process's streams.
 */
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import type { CliIO, Command } from './command.js';
import { commands } from './commands/index.js';

const MAIN_FORM = 'compile';

/** Runs the CLI with `argv` (without node and script); returns the exit code. */
export async function main(argv: string[], io: CliIO = processIO()): Promise<number> {
  const [first, ...rest] = argv;
  if (first === undefined || first === '--help' || first === '-h' || first === 'help') {
    io.stdout(usage());
    return first === undefined ? 2 : 0;
  }
  if (first === '--version' || first === '-V') {
    io.stdout(`${version()}\n`);
    return 0;
  }
  const command = commands.find((c) => c.name === first);
  if (command) return runCommand(command, rest, io);
  const compile = commands.find((c) => c.name === MAIN_FORM);
  if (compile && !first.startsWith('-') && /\.(onnx|json)$/i.test(first)) return runCommand(compile, argv, io);
  io.stderr(`qcompile: error: unknown command '${first}' (see 'qcompile --help')\n`);
  return 2;
}

async function runCommand(command: Command, argv: string[], io: CliIO): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    io.stdout(command.usage.endsWith('\n') ? command.usage : `${command.usage}\n`);
    return 0;
  }
  try {
    return await command.run(argv, io);
  } catch (error) {
    // Commands report expected failures themselves; anything reaching here is still one clear line.
    const message = error instanceof Error ? error.message : String(error);
    io.stderr(`qcompile: error: ${message}\n`);
    if (process.env.QCOMPILE_DEBUG && error instanceof Error && error.stack) io.stderr(`${error.stack}\n`);
    return 1;
  }
}

function usage(): string {
  const width = Math.max(...commands.map((c) => c.name.length));
  const lines = commands
    .filter((c) => c.name !== MAIN_FORM)
    .map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`);
  return [
    'qcompile — post-training quantization compiler for diffusion models in ONNX',
    '',
    'Usage:',
    '  qcompile MODEL.onnx RECIPE.qrecipe -o OUT.onnx [options]   compile (see qcompile compile --help)',
    '  qcompile <command> [options]',
    '',
    'Commands:',
    ...lines,
    '',
    "Run 'qcompile <command> --help' for a command's options.",
    '',
  ].join('\n');
}

function version(): string {
  // Run from src/ (tsx) or dist/src/ (installed): the package root is the first folder up with our package.json.
  for (let url = new URL('./', import.meta.url); url.pathname !== '/'; url = new URL('../', url)) {
    try {
      const pkg = JSON.parse(readFileSync(new URL('package.json', url), 'utf8')) as { name?: string; version: string };
      if (pkg.name === 'qcompile') return `qcompile ${pkg.version}`;
    } catch {
      // not here; keep walking up
    }
  }
  return 'qcompile (unknown version)';
}

function processIO(): CliIO {
  return {
    stdout: (text) => process.stdout.write(text),
    stderr: (text) => process.stderr.write(text),
    cwd: process.cwd(),
    stderrIsTTY: process.stderr.isTTY === true,
  };
}

// Run directly (`tsx src/cli/main.ts …`, as tests and developers do), not only through bin/qcompile.js.
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exitCode = await main(process.argv.slice(2));
}
