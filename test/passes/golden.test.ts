/**
 * Golden text-IR tests, as lit tests are: each case parses its input model from `golden/<input>.in.ir`, runs
 * a pipeline, and compares the pipeline, statistics and output IR with `golden/<case>.out.ir`. Regenerate the
 * outputs with `UPDATE=1 npx vitest run test/passes/golden` and review the change as a diff; inputs are
 * source, edited by hand. Both kinds of file read back to the text they hold (print → parse → print).
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { printModel, type PrintOptions } from '../../src/ir/printer.js';
import { assertValid } from '../../src/ir/verify.js';
import type { PassContext } from '../../src/passes/pass.js';
import { runPipeline } from '../../src/passes/pass-manager.js';
import { parsePipeline } from '../../src/passes/pipeline.js';
import { passRegistry } from '../../src/passes/registry.js';
import { GOLDEN_DIR, goldenCases, readGoldenModel } from './golden-cases.js';
import { Artifacts } from '../../src/passes/artifacts.js';

const update = process.env.UPDATE === '1';

/** The text after the leading `//` lines: what the printer wrote. */
function printed(text: string): string {
  return text.replace(/^(?:\/\/.*\n)*/, '');
}

describe('golden text IR', () => {
  for (const testCase of goldenCases) {
    it(testCase.name, async () => {
      const { model } = readGoldenModel(`${testCase.input}.in.ir`);
      assertValid(model);
      const context: PassContext = { seed: 0, plan: new Map(), artifacts: new Artifacts(), progress: () => undefined, log: () => undefined };
      const report = await runPipeline(model, parsePipeline(testCase.pipeline, passRegistry), context, { verify: assertValid });
      const statistics = report.passes.map((p) => `// ${p.step}: ${JSON.stringify(p.statistics)}`);
      const text = [`// input: ${testCase.input}.in.ir`, `// pipeline: ${report.pipeline}`, ...statistics, printModel(model)].join('\n');
      const file = join(GOLDEN_DIR, `${testCase.name}.out.ir`);
      if (update || !existsSync(file)) {
        writeFileSync(file, text);
        if (!update) throw new Error(`wrote a new golden ${file}: review it and run again`);
      }
      expect(text).toBe(readFileSync(file, 'utf8'));
    });
  }
});

describe('golden files read back to their text', () => {
  const files: [string, PrintOptions][] = [
    ...[...new Set(goldenCases.map((c) => c.input))].map((input): [string, PrintOptions] => [`${input}.in.ir`, { tensors: 'literal' }]),
    ...goldenCases.map((c): [string, PrintOptions] => [`${c.name}.out.ir`, {}]),
  ];
  for (const [file, options] of files) {
    it(file, () => {
      const { text, model } = readGoldenModel(file);
      expect(printModel(model, options)).toBe(printed(text));
    });
  }
});
