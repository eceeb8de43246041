// The benches' per-thread figures from /proc (src/cli/bench/proc-cpu.ts): the run-queue wait of a schedstat
// line (time ready to run while the scheduler ran something else), and the calling thread's CPU and wait.

import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { parseSchedstatWaitMs, threadUsage } from '../../../src/cli/bench/proc-cpu.ts';

describe('parseSchedstatWaitMs', () => {
  it('reads the second field (run-queue wait, ns) as ms', () => {
    expect(parseSchedstatWaitMs('7070405866 4771089565 7362\n')).toBeCloseTo(4771.089565, 6);
    expect(parseSchedstatWaitMs('0 93586 1')).toBeCloseTo(0.093586, 9);
  });

  it('refuses a line that is not three counters', () => {
    expect(parseSchedstatWaitMs('')).toBeUndefined();
    expect(parseSchedstatWaitMs('12 34')).toBeUndefined();
    expect(parseSchedstatWaitMs('12 x 5')).toBeUndefined();
    expect(parseSchedstatWaitMs('-1 2 3')).toBeUndefined();
  });
});

describe('threadUsage', () => {
  const spin = (ms: number) => {
    const end = Date.now() + ms;
    while (Date.now() < end);
  };

  it('counts CPU time this thread spent, and a wait that never goes back', () => {
    const a = threadUsage();
    let x = 0;
    for (let i = 0; i < 1.5e8; i++) x = (x + i) | 0; // a fixed amount of work: 100 ms of CPU or more, however loaded
    const b = threadUsage();
    expect(x).not.toBe(1);
    if (process.platform !== 'linux') return expect(Number.isNaN(a.waitMs)).toBe(true);
    expect(b.cpuMs - a.cpuMs).toBeGreaterThanOrEqual(50); // tick-based (10 ms)
    expect(b.waitMs).toBeGreaterThanOrEqual(a.waitMs);
  });

  it('grows the wait of a thread kept off a busy CPU by more runnable threads than CPUs', async () => {
    if (process.platform !== 'linux') return;
    // One spinning thread per CPU besides this one: some of the time, this thread is ready but not running.
    const hogs = Array.from({ length: availableParallelism() }, () => new Worker('const end = Date.now() + 1500; while (Date.now() < end);', { eval: true }));
    try {
      const a = threadUsage();
      spin(800);
      const b = threadUsage();
      expect(b.waitMs - a.waitMs).toBeGreaterThan(0);
    } finally {
      await Promise.all(hogs.map((w) => w.terminate()));
    }
  });
});
