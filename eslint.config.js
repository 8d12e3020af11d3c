import { readdirSync, readFileSync } from 'node:fs';
import tseslint from 'typescript-eslint';

/**
 * The dependency rules of docs/architecture.md: for each layer of src/, the layers it may import. Every other
 * layer, and test/ and bench/, is forbidden to it; `src/diagnostics.ts` and `src/random.ts` depend on nothing
 * and every layer may use them. Keep this table and the diagram in docs/architecture.md the same.
 */
export const LAYERS = {
  ir: [],
  quant: ['ir'],
  passes: ['ir', 'quant', 'backends'],
  backends: ['ir', 'quant'],
  report: [],
  runtime: ['ir', 'quant', 'report'],
  recipe: ['ir', 'quant', 'passes', 'backends'],
  synth: ['ir'],
  cli: ['ir', 'quant', 'passes', 'backends', 'report', 'runtime', 'recipe', 'synth'],
};

/** One block per layer. Written with typescript-eslint's `no-restricted-imports` (the same rule, type imports included), so a block of the core rule for the same files (the pass contract's) adds to these instead of replacing them. */
const layerBlocks = Object.entries(LAYERS).map(([layer, allowed]) => {
  const forbidden = Object.keys(LAYERS).filter((other) => other !== layer && !allowed.includes(other));
  return {
    files: [`src/${layer}/**`],
    rules: {
      '@typescript-eslint/no-restricted-imports': [
        'error',
        {
          patterns: [
            ...(forbidden.length > 0 ? [{ group: forbidden.map((other) => `**/${other}/**`), message: `${layer} may import only ${allowed.length > 0 ? allowed.join(', ') : 'nothing of ours'} (docs/architecture.md).` }] : []),
            { group: ['**/test/**', '**/bench/**'], message: 'src never imports test/ or bench/.' },
          ],
        },
      ],
    },
  };
});

/** The pass modules: the files of src/passes that define a pass (registry.ts alone imports them). */
const passesDir = new URL('./src/passes/', import.meta.url);
const passFiles = readdirSync(passesDir).filter((f) => f.endsWith('.ts') && /=\s*definePass\(/.test(readFileSync(new URL(f, passesDir), 'utf8')));

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'grammar/*.json', 'docs/**'] },
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
    },
  },
  ...layerBlocks,
  {
    files: ['src/diagnostics.ts', 'src/random.ts'],
    rules: {
      '@typescript-eslint/no-restricted-imports': ['error', { patterns: [{ group: [...Object.keys(LAYERS).map((layer) => `**/${layer}/**`), '**/test/**', '**/bench/**', './*'], message: 'diagnostics.ts and random.ts depend on nothing of ours.' }] }],
    },
  },
  {
    files: ['bench/**'],
    rules: {
      '@typescript-eslint/no-restricted-imports': ['error', { patterns: [{ group: ['**/test/**'], message: 'bench/ may import src/ but not test/: shared helpers live in bench/ or src/.' }] }],
    },
  },
  {
    // Passes: no serde (clone with Model.clone(); callers inject encoders) and no other pass (share a library module).
    files: ['src/passes/**'],
    ignores: ['src/passes/registry.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            { group: ['**/cli/*'], message: 'nothing depends on cli' },
            { group: ['**/ir/serde*'], message: 'passes do not serialize models: copy with Model.clone(); the caller injects encoders' },
            { group: passFiles.map((f) => `./${f.replace(/\.ts$/, '.js')}`), message: "a pass imports no other pass: share the code through a library module, and run passes only through the pass manager" },
          ],
        },
      ],
    },
  },
);
