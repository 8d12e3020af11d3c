/** `qcompile check RECIPE [--model MODEL] [--allow-empty] [--json] [--strict]`: validates a recipe; with a model, shows what each rule selects (count, roles, first names). */
import { resolve } from 'node:path';
import { lineColumn, renderDiagnostic, hasErrors, type Diagnostic } from '../../diagnostics.js';
import { IrError } from '../../ir/errors.js';
import { layersOf } from '../../quant/identity.js';
import { loadModel } from '../../ir/serde.js';
import { listLayers } from '../../backends/backend.js';
import { checkRecipe, checkRecipeAgainstModel, countRoles } from '../../recipe/check.js';
import { parseRecipeFile } from '../../recipe/parse.js';
import { describeSelectors } from '../../recipe/select.js';
import type { Selector, SourceRef } from '../../recipe/types.js';
import type { Layer } from '../../quant/layers.js';
import type { CliIO, Command } from '../command.js';
import { parseArgs } from '../args.js';

const USAGE = `Usage: qcompile check RECIPE [--model MODEL.onnx] [--allow-requantize] [--allow-empty] [--json] [--strict]

Validates a recipe (.qrecipe or .json): syntax, schema and semantic checks. With --model, also resolves
which layers each rule selects (count, roles, first names) and checks them against the target.
  --model MODEL   check against this model's layers
  --allow-requantize  check the target as compile --allow-requantize lowers for it
  --allow-empty   a quantize rule that selects no layer of MODEL is a warning, as compile --allow-empty judges it
  --json          print the diagnostics (and the selection) as JSON
  --strict        fail on warnings too
Exit: 0 valid, 1 errors (or warnings with --strict), 2 usage error.`;

/** One row of the rule → layers table: the rule as written, where, and the layers it takes (with their roles). */
interface SelectionRow {
  rule: string;
  at?: string;
  layers: string[];
  roles: Record<string, number>;
}

function selectionRow(rule: string, source: SourceRef | undefined, file: string, text: string, layers: readonly Layer[]): SelectionRow {
  const at = source ? lineColumn(text, source.offset) : undefined;
  return { rule, ...(at ? { at: `${file}:${at.line}:${at.column}` } : {}), layers: layers.map((l) => l.name), roles: countRoles(layers) };
}

/** `FILE:LINE:COL: quantize attn, mlp: 24 layer(s) (attn.qkv 6, …)` and, indented, the first layer names. */
function printRow(row: SelectionRow): string {
  const roles = Object.entries(row.roles).map(([role, n]) => `${role} ${n}`).join(', ');
  const head = `${row.at ? `${row.at}: ` : ''}${row.rule}: ${row.layers.length} layer(s)${roles ? ` (${roles})` : ''}`;
  return row.layers.length === 0 ? `${head}\n` : `${head}\n  ${listLayers(row.layers)}\n`;
}

/** `attn, mlp except attn.qkv`: a rule's selectors as written. */
function ruleText(keyword: string, rule: { select: Selector[]; except: Selector[] }): string {
  return `${keyword} ${describeSelectors(rule.select)}${rule.except.length > 0 ? ` except ${describeSelectors(rule.except)}` : ''}`;
}

export const checkCommand: Command = {
  name: 'check',
  summary: 'validate a recipe (and show what it selects in --model)',
  usage: USAGE,
  async run(argv: string[], io: CliIO): Promise<number> {
    const args = parseArgs(argv, { model: 'string', 'allow-requantize': 'boolean', 'allow-empty': 'boolean', json: 'boolean', strict: 'boolean' }, io);
    if (!args || args.positional.length !== 1) {
      if (args) io.stderr(`qcompile check: expected one RECIPE\n${USAGE}\n`);
      return 2;
    }
    const file = args.positional[0]!;
    const parsed = parseRecipeFile(resolve(io.cwd, file), file);
    const diagnostics: Diagnostic[] = [...parsed.diagnostics];
    const table: SelectionRow[] = [];
    const options = { lowering: { requantize: args.options['allow-requantize'] === true }, allowEmpty: args.options['allow-empty'] === true };
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
        const taken = { quantize: new Map<number, Layer[]>(), keep: new Map<number, Layer[]>() };
        const unassigned: Layer[] = [];
        for (const l of layers) {
          const a = selection.assignments.get(l.name);
          if (!a) unassigned.push(l);
          else if (taken[a.action].has(a.rule)) taken[a.action].get(a.rule)!.push(l);
          else taken[a.action].set(a.rule, [l]);
        }
        parsed.recipe.rules.forEach((rule, i) => table.push(selectionRow(ruleText('quantize', rule), rule.source, file, parsed.text, taken.quantize.get(i) ?? [])));
        parsed.recipe.keep.forEach((rule, i) => table.push(selectionRow(ruleText('keep', rule), rule.source, file, parsed.text, taken.keep.get(i) ?? [])));
        if (unassigned.length > 0) table.push(selectionRow('(no rule: stays float)', undefined, file, parsed.text, unassigned));
      }
    }
    const failed = hasErrors(diagnostics) || (args.options.strict === true && diagnostics.length > 0);
    if (args.options.json) {
      io.stdout(`${JSON.stringify({ file, valid: !failed, diagnostics, selection: table }, null, 2)}\n`);
    } else {
      const sources = new Map([[file, parsed.text]]);
      // One write each: thousands of lines written one by one cost more than rendering them.
      if (diagnostics.length > 0) io.stderr(diagnostics.map((d) => `${renderDiagnostic(d, sources)}\n`).join(''));
      if (table.length > 0) io.stdout(table.map(printRow).join(''));
      const errors = diagnostics.filter((d) => d.severity === 'error').length;
      const warnings = diagnostics.filter((d) => d.severity === 'warning').length;
      io.stdout(`${file}: ${failed ? 'invalid' : 'ok'} (${errors} error(s), ${warnings} warning(s))\n`);
    }
    return failed ? 1 : 0;
  },
};
