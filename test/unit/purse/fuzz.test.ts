// Fuzz the purse applet: >= 100,000 seeded random and mutated APDUs in total (see fuzz-harness.ts for the
// generator and the invariants checked after every APDU). The seed is in the test name: a failure message names
// the APDU number and its bytes, and runFuzz(seed, count, profile) replays it exactly.

import { describe, expect, it } from 'vitest';
import { runFuzz } from './fuzz-harness.ts';

describe('purse fuzz (seeded, reproducible)', () => {
  // 110,000 APDUs in all: two 50,000 runs (T=1) and a 10,000 run on a T=0 card (61xx / 6Cxx response shaping).
  const RUNS = [
    { seed: 0x5eed0001, count: 50_000, profile: 'points' },
    { seed: 0x5eed0002, count: 50_000, profile: 'pin-points' },
    { seed: 0x5eed0003, count: 10_000, profile: 't0-plain' },
  ] as const;
  it('runs at least 100,000 APDUs in all', () => {
    expect(RUNS.reduce((n, r) => n + r.count, 0)).toBeGreaterThanOrEqual(100_000);
  });
  for (const { seed, count, profile } of RUNS) {
    it(`seed 0x${seed.toString(16).toUpperCase()}: ${count} random and mutated APDUs (${profile} card): no escaped exception, valid SWs, no state change without a valid MAC`, async () => {
      const s = await runFuzz(seed, count, profile);
      expect(s.apdus).toBe(count);
      // the mix reached the deep paths: value moved often, MAC checks refused mutated S2s / MACs
      expect(s.changes).toBeGreaterThan(count / 300);
      expect(s.sws.get(0x6982) ?? 0).toBeGreaterThan(count / 200);
      expect(s.sws.get(0x9000) ?? 0).toBeGreaterThan(count / 20);
      for (const sw of [0x6700, 0x6985, 0x6a86, 0x6d00, 0x6e00, 0x6a80, 0x9401, 0x9404]) {
        expect(s.sws.get(sw) ?? 0, `SW ${sw.toString(16)} seen`).toBeGreaterThan(0);
      }
    }, 120_000);
  }
});
