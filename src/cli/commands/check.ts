/** `qcompile check RECIPE [--model MODEL] [--json] [--strict]`: validates a recipe; with a model, shows what each rule selects. */
import { resolve } from 'node:path';
import { renderDiagnostic, hasErrors, type Diagnostic } from '../../diagnostics.js';
import { IrError } from '../../ir/errors.js';
import { layersOf } from '../../quant/identity.js';
import { loadModel } from '../../ir/serde.js';
import { checkRecipe, checkRecipeAgainstModel } from '../../recipe/check.js';
import { parseRecipeFile } from '../../recipe/parse.js';
import { describeSelectors } from '../../recipe/select.js';
import type { CliIO, Command } from '../command.js';
import { parseArgs } from '../args.js';

const USAGE = `Usage: qcompile check RECIPE [--model MODEL.onnx] [--allow-requantize] [--json] [--strict]

Validates a recipe (.qrecipe or .json): syntax, schema and semantic checks. With --model, also resolves
which layers each rule selects and checks group sizes against their channels.
  --model MODEL   check against this model's layers
  --allow-requantize  check the target as compile --allow-requantize lowers for it
  --json          print the diagnostics (and the selection) as JSON
  --strict        fail on warnings too
Exit: 0 valid, 1 errors (or warnings with --strict), 2 usage error.`;

export const checkCommand: Command = {
  name: 'check',
  summary: 'validate a recipe (and show what it selects in --model)',
  usage: USAGE,
  async run(argv: string[], io: CliIO): Promise<number> {
    const args = parseArgs(argv, { model: 'string', 'allow-requantize': 'boolean', json: 'boolean', strict: 'boolean' }, io);
    if (!args || args.positional.length !== 1) {
      if (args) io.stderr(`qcompile check: expected one RECIPE\n${USAGE}\n`);
      return 2;
    }
    const file = args.positional[0]!;
    const parsed = parseRecipeFile(resolve(io.cwd, file), file);
    const diagnostics: Diagnostic[] = [...parsed.diagnostics];
    const table: { rule: string; layers: string[] }[] = [];
    const options = { lowering: { requantize: args.options['allow-requantize'] === true } };
    if (parsed.recipe) {
      diagnostics.push(...checkRecipe(parsed.recipe, { ...options, modelFollows: args.options.model !== undefined }));
      if (args.options.model) {
        const modelPath = args.options.model as string;
        let model;
        try {
          model = await loadModel(resolve(io.cwd, modelPath));
        } catch (error) {
          // A model that cannot be read is the user's input problem, not a crash: say why, exit 1.
          if (!(error instanceof IrError)) throw error;
          io.stderr(`qcompile check: cannot load model ${modelPath}: ${error.message}\n`);
          return 1;
        }
        const layers = layersOf(model);
        const { diagnostics: modelDiagnostics, selection } = checkRecipeAgainstModel(parsed.recipe, layers, options);
        diagnostics.push(...modelDiagnostics);
        // Each rule's layers, in model order, from one pass over the layers (a recipe may have thousands of rules).
        const layersOfRule = { quantize: new Map<number, string[]>(), keep: new Map<number, string[]>() };
        const unassigned: string[] = [];
        for (const l of layers) {
          const a = selection.assignments.get(l.name);
          if (!a) unassigned.push(l.name);
          else if (layersOfRule[a.action].has(a.rule)) layersOfRule[a.action].get(a.rule)!.push(l.name);
          else layersOfRule[a.action].set(a.rule, [l.name]);
        }
        parsed.recipe.rules.forEach((rule, i) => table.push({ rule: `quantize ${describeSelectors(rule.select)}`, layers: layersOfRule.quantize.get(i) ?? [] }));
        parsed.recipe.keep.forEach((rule, i) => table.push({ rule: `keep ${describeSelectors(rule.select)}`, layers: layersOfRule.keep.get(i) ?? [] }));
        if (unassigned.length > 0) table.push({ rule: '(no rule: stays float)', layers: unassigned });
      }
    }
    const failed = hasErrors(diagnostics) || (args.options.strict === true && diagnostics.length > 0);
    if (args.options.json) {
      io.stdout(`${JSON.stringify({ file, valid: !failed, diagnostics, selection: table }, null, 2)}\n`);
    } else {
      const sources = new Map([[file, parsed.text]]);
      // One write each: thousands of lines written one by one cost more than rendering them.
      if (diagnostics.length > 0) io.stderr(diagnostics.map((d) => `${renderDiagnostic(d, sources)}\n`).join(''));
      if (table.length > 0) io.stdout(table.map((row) => `${row.rule}: ${row.layers.length} layer(s)${row.layers.length ? `\n  ${row.layers.join('\n  ')}` : ''}\n`).join(''));
      const errors = diagnostics.filter((d) => d.severity === 'error').length;
      const warnings = diagnostics.filter((d) => d.severity === 'warning').length;
      io.stdout(`${file}: ${failed ? 'invalid' : 'ok'} (${errors} error(s), ${warnings} warning(s))\n`);
    }
    return failed ? 1 : 0;
  },
};
