import { defineConfig } from 'vitest/config';

// Two tiers: unit tests sit beside the code and need no root; integration tests in test/
// start real sandboxes and need root (they skip locally without it, and .ci/run sets CI=true
// so that a skip there is a failure).
export default defineConfig({
  test: {
    // Temporary folders: one directory per run, one per test file inside it; what a file
    // leaves there is named and removed (test/tmp-check.ts), and fails a unit test file.
    globalSetup: ['test/tmp-global.ts'],
    projects: [
      {
        test: {
          name: 'unit',
          include: ['src/**/*.test.ts'],
          testTimeout: 20_000,
          setupFiles: ['test/tmp-check.ts'],
          env: { COVE_TEST_TMP_STRICT: '1' },
        },
      },
      {
        test: {
          name: 'integration',
          include: ['test/**/*.test.ts'],
          testTimeout: 120_000,
          hookTimeout: 300_000,
          // Sandboxes share one bridge, one SQLite file per server and the host's cgroups:
          // files run one after another, tests inside a file may still be concurrent.
          fileParallelism: false,
          setupFiles: ['test/tmp-check.ts'],
        },
      },
    ],
  },
});
