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
);
