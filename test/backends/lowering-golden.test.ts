/**
 * Golden text-IR tests of the `lower-<target>` passes: each case's quantized graph, the pipeline, the pass
 * statistics, the diagnostics it reported and the lowered IR, compared with `golden/<case>.golden`.
 * Regenerate with `UPDATE=1 npx vitest run test/backends/lowering-golden` and review the change as a diff.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loweringPasses } from '../../src/passes/lower-target.js';
import { Artifacts } from '../../src/passes/artifacts.js';
import { renderDiagnostic } from '../../src/diagnostics.js';
import { printModel } from '../../src/ir/printer.js';
import { assertValid } from '../../src/ir/verify.js';
import type { PassContext } from '../../src/passes/pass.js';
import { runPipeline } from '../../src/passes/pass-manager.js';
import { parsePipeline } from '../../src/passes/pipeline.js';
import { loweringCases } from './lowering-golden-cases.js';

const GOLDEN_DIR = join(import.meta.dirname, 'golden');
const update = process.env.UPDATE === '1';

describe('lower-<target> golden text IR', () => {
  it('covers every lowering pass', () => {
    const covered = new Set(loweringCases.map((c) => /^lower-[a-z]+/.exec(c.pipeline)![0]));
    expect([...covered].sort()).toEqual(loweringPasses.map((p) => p.name).sort());
  });

  for (const testCase of loweringCases) {
    it(testCase.name, async () => {
      const model = await testCase.build();
      assertValid(model);
      const input = printModel(model);
      const reported: string[] = [];
      const context: PassContext = { seed: 0, plan: new Map(), artifacts: new Artifacts(), progress: () => undefined, log: () => undefined, report: (d) => void reported.push(renderDiagnostic(d)) };
      const report = await runPipeline(model, parsePipeline(testCase.pipeline, loweringPasses), context, { verify: assertValid });
      const statistics = report.passes.map((p) => `// ${p.step}: modified=${p.modified} ${JSON.stringify(p.statistics)}`);
      const diagnostics = reported.flatMap((text) => text.split('\n').map((line) => `// ${line}`));
      const text = [`// pipeline: ${report.pipeline}`, ...statistics, ...diagnostics, '// ----- input', input, '// ----- output', printModel(model)].join('\n');
      const file = join(GOLDEN_DIR, `${testCase.name}.golden`);
      if (update || !existsSync(file)) {
        writeFileSync(file, text);
        if (!update) throw new Error(`wrote a new golden ${file}: review it and run again`);
      }
      expect(text).toBe(readFileSync(file, 'utf8'));
    });
  }
});
