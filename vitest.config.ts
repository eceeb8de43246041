// Test configuration: two projects. `unit` runs in parallel; `rig` (real pcscd + vpcd, shared ports) runs one file at a time.
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // SoftHSM2 runs on Node's own OpenSSL 3 inside the test process, which offers single DES (used for the
    // 3DES card keys' retail MAC in the token) only with the legacy provider (docs/hsm-bridge.md).
    execArgv: ['--openssl-legacy-provider'],
    projects: [
      { extends: true, test: { name: 'unit', include: ['test/unit/**/*.test.ts'] } },
      {
        extends: true,
        test: { name: 'rig', include: ['test/rig/**/*.test.ts'], fileParallelism: false, sequence: { groupOrder: 1 } },
      },
    ],
  },
});
