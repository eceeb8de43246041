// Test configuration: unit suites run in parallel; suites that use the shared pcscd/vpcd ports run one file at a time.
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // The rig suites (test/rig) share one pcscd and its vpcd ports: never run two of them at once.
    fileParallelism: true,
    sequence: { groupOrder: 0 },
    projects: [
      { extends: true, test: { name: 'unit', include: ['test/unit/**/*.test.ts'] } },
      { extends: true, test: { name: 'rig', include: ['test/rig/**/*.test.ts'], fileParallelism: false, sequence: { groupOrder: 1 } } },
    ],
  },
});
