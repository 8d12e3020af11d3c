/**
 * The dependency rules: docs/architecture.md's table is the one `eslint.config.js` enforces, and the lint
 * rejects exactly the imports the table forbids (probed with one import per pair of layers); every folder of
 * src/ is a layer of the table.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ESLint } from 'eslint';
import { describe, expect, it } from 'vitest';

const root = join(import.meta.dirname, '..', '..');
/** The layer table of eslint.config.js: per layer of src/, the layers it may import. */
const { LAYERS } = (await import(pathToFileURL(join(root, 'eslint.config.js')).href)) as { LAYERS: Record<string, string[]> };
const layers = Object.keys(LAYERS);
const eslint = new ESLint({ cwd: root });

/** The rule ids ESLint reports for `source` as if it were the file `path`. */
async function ruleIds(path: string, source: string): Promise<string[]> {
  const [result] = await eslint.lintText(source, { filePath: join(root, path) });
  return result!.messages.map((m) => m.ruleId ?? m.message);
}

const restricted = '@typescript-eslint/no-restricted-imports';

describe('dependency rules', () => {
  it('docs/architecture.md states the table eslint.config.js enforces', () => {
    const doc = readFileSync(join(root, 'docs', 'architecture.md'), 'utf8');
    const rows = [...doc.matchAll(/^\| (\w+) \| ([^|]+) \|$/gm)].filter(([, layer]) => layer !== 'layer');
    const table = Object.fromEntries(rows.map(([, layer, allowed]) => [layer, allowed!.trim() === '—' ? [] : allowed!.split(',').map((s) => s.trim())]));
    expect(table).toEqual(LAYERS);
  });

  it('has a row for every folder of src/ (a new layer gets rules before it gets code)', () => {
    const folders = readdirSync(join(root, 'src'), { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name);
    expect(folders.sort()).toEqual([...layers].sort());
  });

  it('forbids exactly the layer imports the table does not allow', async () => {
    const verdicts: string[] = [];
    const expected: string[] = [];
    for (const from of layers) {
      for (const to of layers) {
        if (from === to) continue;
        const ids = await ruleIds(`src/${from}/probe.ts`, `import { x } from '../${to}/module.js';\nexport const y = x;\n`);
        verdicts.push(`${from} → ${to}: ${ids.includes(restricted) ? 'forbidden' : 'allowed'}`);
        expected.push(`${from} → ${to}: ${LAYERS[from]!.includes(to) ? 'allowed' : 'forbidden'}`);
      }
    }
    expect(verdicts).toEqual(expected);
    expect(verdicts.filter((v) => v.endsWith('forbidden')).length).toBeGreaterThan(40);
  }, 60_000);

  it('keeps src off test/ and bench/, bench/ off test/, and the leaf modules off every layer', async () => {
    expect(await ruleIds('src/passes/probe.ts', `import { x } from '../../test/passes/fixture.js';\nexport const y = x;\n`)).toContain(restricted);
    expect(await ruleIds('src/runtime/probe.ts', `import type { x } from '../../bench/calibration-batches.js';\nexport type y = x;\n`)).toContain(restricted);
    expect(await ruleIds('bench/probe.ts', `import { x } from '../test/passes/fixture.js';\nexport const y = x;\n`)).toContain(restricted);
    expect(await ruleIds('bench/probe.ts', `import { x } from '../src/passes/registry.js';\nexport const y = x;\n`)).not.toContain(restricted);
    expect(await ruleIds('src/diagnostics.ts', `import { x } from './ir/core.js';\nexport const y = x;\n`)).toContain(restricted);
    expect(await ruleIds('src/passes/probe.ts', `import { x } from '../random.js';\nexport const y = x;\n`)).not.toContain(restricted);
  }, 60_000);
});
