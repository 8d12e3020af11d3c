import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: 'forks',
    maxWorkers: 2,
    // Two workers share two cores: ORT threads spinning between ops would take them from each other
    // (runtime/ort-session.ts ortSpinning: two compiles at once 24.2 s spinning, 20.7 s not).
    env: { QCOMPILE_ORT_SPINNING: '0' },
  },
});
