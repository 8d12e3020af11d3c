/** `qcompile schema`: prints the JSON Schema of recipes. */
import { recipeSchema } from '../../recipe/schema.js';
import type { CliIO, Command } from '../command.js';

export const schemaCommand: Command = {
  name: 'schema',
  summary: 'print the JSON Schema of recipes',
  usage: 'Usage: qcompile schema\n\nPrints the JSON Schema that normalized recipes (and JSON recipes, after defaults) satisfy.',
  async run(argv: string[], io: CliIO): Promise<number> {
    if (argv.length > 0) {
      io.stderr(`qcompile schema: unexpected argument '${argv[0]}'\n`);
      return 2;
    }
    io.stdout(`${JSON.stringify(recipeSchema, null, 2)}\n`);
    return 0;
  },
};
