// The benches' per-thread figures (src/cli/bench/proc-cpu.ts): a schedstat line's on-CPU time and run-queue wait
// (time ready to run while the scheduler ran something else), the calling thread's CPU and wait, and this whole
// process's CPU, other threads included; and how `bench opal` splits the process's CPU per purchase and writes
// the CPU and run-queue wait lines (src/cli/bench/opal-cpu.ts).

import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { cpuPerPurchase, cpuText, waitText } from '../../../src/cli/bench/opal-cpu.ts';
import { mainThreadCpuMs, ownProcessCpuMs, parseSchedstat, threadUsage } from '../../../src/cli/bench/proc-cpu.ts';

describe('parseSchedstat', () => {
  it('reads the first field (on-CPU, ns) and the second (run-queue wait, ns) as ms', () => {
    const u = parseSchedstat('7070405866 4771089565 7362\n')!;
    expect(u.cpuMs).toBeCloseTo(7070.405866, 6);
    expect(u.waitMs).toBeCloseTo(4771.089565, 6);
    expect(parseSchedstat('0 93586 1')).toEqual({ cpuMs: 0, waitMs: 0.093586 });
  });

  it('refuses a line that is not three counters', () => {
    expect(parseSchedstat('')).toBeUndefined();
    expect(parseSchedstat('12 34')).toBeUndefined();
    expect(parseSchedstat('12 x 5')).toBeUndefined();
    expect(parseSchedstat('-1 2 3')).toBeUndefined();
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
    expect(b.cpuMs - a.cpuMs).toBeGreaterThanOrEqual(50);
    expect(b.cpuMs - a.cpuMs).not.toBe(Math.round((b.cpuMs - a.cpuMs) / 10) * 10); // schedstat's ns, not stat's 10 ms ticks
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

describe('ownProcessCpuMs', () => {
  it("counts another thread's CPU, which the calling thread's own figure does not", async () => {
    // A worker does a fixed amount of work (100 ms of CPU or more) while this thread waits for it.
    const worker = new Worker('let x = 0; for (let i = 0; i < 1.5e8; i++) x = (x + i) | 0; require("node:worker_threads").parentPort.postMessage(x);', { eval: true });
    const p0 = ownProcessCpuMs();
    const t0 = threadUsage();
    await new Promise((resolve, reject) => worker.once('message', resolve).once('error', reject));
    const processMs = ownProcessCpuMs() - p0;
    const self = threadUsage().cpuMs - t0.cpuMs;
    await worker.terminate();
    expect(processMs - self).toBeGreaterThanOrEqual(50);
  });
});

describe('mainThreadCpuMs', () => {
  it("counts the main thread's CPU in schedstat's ns, not stat's 10 ms ticks", () => {
    if (process.platform !== 'linux') return expect(mainThreadCpuMs()).toBeUndefined();
    // vitest runs this file in a forked process: the main thread is this test's thread.
    const a = mainThreadCpuMs()!;
    let x = 0;
    for (let i = 0; i < 1.5e8; i++) x = (x + i) | 0; // a fixed amount of work: 100 ms of CPU or more, however loaded
    const b = mainThreadCpuMs()!;
    expect(x).not.toBe(1);
    expect(b - a).toBeGreaterThanOrEqual(50);
    // Of a few readings, some is not a whole number of 10 ms ticks, as every reading of stat is.
    const readings = [a, b];
    for (let i = 0; i < 3; i++) {
      for (let j = 0; j < 1e6; j++) x = (x + j) | 0;
      readings.push(mainThreadCpuMs()!);
    }
    expect(readings.some((r) => Math.abs(r - Math.round(r / 10) * 10) > 1e-6)).toBe(true);
  });
});

describe('cpuPerPurchase (bench opal)', () => {
  it('gives each measured thread its share, and the rest of the process as other threads', () => {
    // main, payment, merchant, shop (not a thread of its own here), opal; the process used 1,000 ms in all.
    const c = cpuPerPurchase([100, 300, 200, NaN, 320], 1000, 100);
    expect(c).toEqual({ main: 1, payment: 3, merchant: 2, shop: NaN, opal: 3.2, other: 0.8 });
  });

  it('gives the other threads nothing when the measured threads used all of it', () => {
    expect(cpuPerPurchase([500, NaN, NaN, NaN, NaN], 500, 10).other).toBe(0);
  });
});

describe('the CPU and wait lines (bench opal)', () => {
  it('names each measured part in order, the rest of the process as other threads, and skips what was not measured', () => {
    const c = cpuPerPurchase([100, 300, 200, NaN, 320], 1000, 100);
    expect(cpuText(c)).toBe('main 1.00, payment 3.00, merchant 2.00, opal 3.20, other threads 0.800');
  });

  it('gives each thread whose wait was read its share of the run in whole percent', () => {
    expect(waitText({ main: 12.4, payment: NaN, merchant: 18.6, shop: NaN, opal: 20 })).toBe(
      '(the share of the run each thread was ready to run but waited for a vCPU: main 12%, merchant 19%, opal 20%)',
    );
  });

  it('has no wait line when no thread could be read', () => {
    expect(waitText({ main: NaN, payment: NaN, merchant: NaN, shop: NaN, opal: NaN })).toBeUndefined();
  });
});
