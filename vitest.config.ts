import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['app/**/*.test.ts', 'simulators/**/*.test.ts', 'test/**/*.test.ts', 'jobs/**/*.test.ts'],
    exclude: ['**/node_modules/**', 'bench/**', 'build/**', 'test/browser/**'],
    // One PostgreSQL and one migrated template per run; each test file clones its own database from it.
    globalSetup: ['./test/support/global-setup.ts'],
    // Child processes, not worker threads: tests start servers, spawn the Prisma CLI and send signals.
    pool: 'forks',
    testTimeout: 30_000,
    hookTimeout: 60_000,
    teardownTimeout: 30_000,
    // scripts/summarize-tests.mjs sums passed/failed from the JSON report.
    reporters: ['default', 'json'],
    outputFile: { json: 'reports/vitest.json' },
  },
});
