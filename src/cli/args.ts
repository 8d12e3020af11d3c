/** A small argv parser shared by subcommands: `--name value`, `--name=value`, boolean `--flag`, positionals. */
import type { CliIO } from './command.js';

/** Declared options: name → kind. */
export type OptionKinds = Record<string, 'string' | 'boolean'>;

/** Parsed arguments. */
export interface ParsedArgs {
  positional: string[];
  options: Record<string, string | boolean>;
}

/** Parses `argv`; on an unknown option or a missing value prints one line to stderr and returns undefined. */
export function parseArgs(argv: string[], kinds: OptionKinds, io: CliIO): ParsedArgs | undefined {
  const positional: string[] = [];
  const options: Record<string, string | boolean> = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (!arg.startsWith('--') || arg === '--') {
      positional.push(arg);
      continue;
    }
    const [rawName, inline] = arg.slice(2).split(/=(.*)/s, 2) as [string, string | undefined];
    const kind = kinds[rawName];
    if (!kind) {
      io.stderr(`qcompile: error: unknown option '--${rawName}'\n`);
      return undefined;
    }
    if (kind === 'boolean') {
      options[rawName] = inline === undefined ? true : inline !== 'false';
      continue;
    }
    const value = inline ?? argv[++i];
    if (value === undefined) {
      io.stderr(`qcompile: error: option '--${rawName}' needs a value\n`);
      return undefined;
    }
    options[rawName] = value;
  }
  return { positional, options };
}
