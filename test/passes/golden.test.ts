/**
 * Golden text-IR tests: each case builds a small graph, runs a pipeline, and compares input IR, pipeline,
 * statistics and output IR with `golden/<case>.golden`. Regenerate with `UPDATE=1 npx vitest run test/passes/golden`
 * and review the change as a diff.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { printModel } from '../../src/ir/printer.js';
import { assertValid } from '../../src/ir/verify.js';
import type { PassContext } from '../../src/passes/pass.js';
import { runPipeline } from '../../src/passes/pass-manager.js';
import { parsePipeline } from '../../src/passes/pipeline.js';


import { passRegistry } from '../../src/passes/registry.js';
import { goldenCases } from './golden-cases.js';
import { Artifacts } from '../../src/passes/artifacts.js';

const GOLDEN_DIR = join(import.meta.dirname, 'golden');
const update = process.env.UPDATE === '1';

describe('golden text IR', () => {
  for (const testCase of goldenCases) {
    it(testCase.name, async () => {
      const model = testCase.build();
      const input = printModel(model);
      const context: PassContext = { seed: 0, plan: new Map(), artifacts: new Artifacts(), progress: () => undefined, log: () => undefined };
      const report = await runPipeline(model, parsePipeline(testCase.pipeline, passRegistry), context, { verify: assertValid });
      const statistics = report.passes.map((p) => `// ${p.step}: ${JSON.stringify(p.statistics)}`);
      const text = [`// pipeline: ${report.pipeline}`, ...statistics, '// ----- input', input, '// ----- output', printModel(model)].join('\n');
      const file = join(GOLDEN_DIR, `${testCase.name}.golden`);
      if (update || !existsSync(file)) {
        writeFileSync(file, text);
        if (!update) throw new Error(`wrote a new golden ${file}: review it and run again`);
      }
      expect(text).toBe(readFileSync(file, 'utf8'));
    });
  }
});
