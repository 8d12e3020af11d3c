import { readdirSync, readFileSync } from 'node:fs';
import tseslint from 'typescript-eslint';

/** The pass modules: the files of src/passes that define a pass (registry.ts alone imports them). */
const passesDir = new URL('./src/passes/', import.meta.url);
const passFiles = readdirSync(passesDir).filter((f) => f.endsWith('.ts') && /=\s*definePass\(/.test(readFileSync(new URL(f, passesDir), 'utf8')));

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'grammar/*.json', 'docs/**'] },
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
      'no-restricted-imports': ['error', { patterns: [{ group: ['**/cli/*'], message: 'nothing depends on cli' }] }],
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
