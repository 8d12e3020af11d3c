/** `qcompile fmt RECIPE [--write]`: prints (or rewrites) a recipe in canonical form. */
import { resolve } from 'node:path';
import { renderDiagnostic } from '../../diagnostics.js';
import { writeFileAtomic } from '../../ir/atomic-file.js';
import { formatRecipe } from '../../recipe/format.js';
import { parseRecipeFile } from '../../recipe/parse.js';
import type { CliIO, Command } from '../command.js';
import { parseArgs } from '../args.js';

const USAGE = `Usage: qcompile fmt RECIPE [--write]

Prints the recipe in canonical form (every setting explicit, fixed order). --write replaces the file.`;

export const fmtCommand: Command = {
  name: 'fmt',
  summary: 'print a recipe in canonical form',
  usage: USAGE,
  async run(argv: string[], io: CliIO): Promise<number> {
    const args = parseArgs(argv, { write: 'boolean' }, io);
    if (!args || args.positional.length !== 1) {
      if (args) io.stderr(`qcompile fmt: expected one RECIPE\n${USAGE}\n`);
      return 2;
    }
    const file = args.positional[0]!;
    const path = resolve(io.cwd, file);
    const parsed = parseRecipeFile(path, file);
    if (!parsed.recipe) {
      for (const d of parsed.diagnostics) io.stderr(`${renderDiagnostic(d, new Map([[file, parsed.text]]))}\n`);
      return 1;
    }
    const text = formatRecipe(parsed.recipe);
    if (args.options.write) writeFileAtomic(path, text);
    else io.stdout(text);
    return 0;
  },
};
