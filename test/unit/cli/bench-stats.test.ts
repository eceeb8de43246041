// The benchmarks' statistics helpers: percentiles, the warm-up that runs until a flow's rate stops improving,
// the concurrent runner's busy window (the rate while every worker had work), and the timed slice that settles
// before it measures.

import { describe, expect, it } from 'vitest';
import { percentile, runConcurrently, runTimedSlice, summarize, warmUntilSteady, warmUpText } from '../../../src/cli/bench/stats.ts';

/** A round function whose n-th call runs at rates[n] operations per second (the last rate repeats). */
function scripted(rates: readonly number[]) {
  const sizes: number[] = [];
  const round = async (n: number) => {
    sizes.push(n);
    const perSec = rates[Math.min(sizes.length - 1, rates.length - 1)]!;
    return (n * 1000) / perSec;
  };
  return { round, sizes };
}

describe('warmUntilSteady', () => {
  it('runs rounds until two in a row are no more than 5% faster than the best before them', async () => {
    const s = scripted([300, 600, 900, 1000, 1020, 1010, 2000]);
    const w = await warmUntilSteady(s.round, { roundSize: 100 });
    // 1000 beats 900 by 11%: not flat; 1020 (2% over 1000) and 1010 are flat: stop after round 6
    expect(w).toEqual({ rounds: 6, roundSize: 100, lastPerSec: 1010, settled: true, gain: 0.05 });
    expect(s.sizes).toEqual([100, 100, 100, 100, 100, 100]);
  });

  it('a single flat round between rising ones does not end it', async () => {
    const s = scripted([500, 510, 800, 810, 805]);
    const w = await warmUntilSteady(s.round, { roundSize: 10 });
    expect(w.rounds).toBe(5);
    expect(w.settled).toBe(true);
  });

  it('stops at maxRounds, saying the rate was still rising', async () => {
    const s = scripted([100, 200, 300, 400, 500, 600]);
    const w = await warmUntilSteady(s.round, { roundSize: 10, maxRounds: 4 });
    expect(w.rounds).toBe(4);
    expect(w.settled).toBe(false);
    expect(warmUpText(w, 'purchases')).toBe('warm-up 4 rounds of 10 purchases, still speeding up at the last ones');
  });

  it('runs at least three rounds even when the rate is flat from the start', async () => {
    const s = scripted([1000]);
    const w = await warmUntilSteady(s.round, { roundSize: 10, minRounds: 1 });
    expect(w.rounds).toBe(3);
    expect(warmUpText(w, 'pairs')).toBe('warm-up 3 rounds of 10 pairs, until two in a row were at most 5% faster than the best before them');
  });

  it('a larger gain stops earlier', async () => {
    const rates = [100, 150, 180, 200, 210, 215];
    const strict = await warmUntilSteady(scripted(rates).round, { roundSize: 10 });
    const loose = await warmUntilSteady(scripted(rates).round, { roundSize: 10, gain: 0.25 });
    expect(loose.rounds).toBeLessThan(strict.rounds);
  });
});

describe('percentiles', () => {
  it('nearest rank over an unsorted sample', () => {
    const xs = [5, 1, 4, 2, 3, 10, 9, 8, 7, 6];
    expect(percentile(xs, 50)).toBe(5);
    expect(percentile(xs, 99)).toBe(10);
    expect(percentile([], 50)).toBeNaN();
    expect(summarize(xs)).toEqual({ count: 10, medianMs: 5, p99Ms: 10, meanMs: 5.5 });
  });
});

describe('runConcurrently', () => {
  const ticks = (n: number) => new Promise<void>((resolve) => setTimeout(resolve, n));

  it('runs every operation once, and its busy window ends when the first worker finds no work left (the drain is not in it)', async () => {
    const byWorker: number[] = [];
    // equal operations: 4 workers, 10 operations; worker 2 is the first to run dry, after the 7th has finished
    const r = await runConcurrently(10, 4, async (w) => {
      byWorker.push(w);
      await ticks(5);
    });
    expect(r.samples).toHaveLength(10);
    expect(byWorker.slice(0, 4).sort()).toEqual([0, 1, 2, 3]);
    expect(r.busyCount).toBe(7);
    expect(r.busyMs).toBeGreaterThan(0);
    expect(r.busyMs).toBeLessThan(r.elapsedMs);
  });

  it('a crowd larger than the run was never all busy: the whole run is the window', async () => {
    const r = await runConcurrently(2, 5, () => ticks(2));
    expect(r.samples).toHaveLength(2);
    expect(r.busyCount).toBe(2);
    expect(r.busyMs).toBe(r.elapsedMs);
  });

  it('one worker: every operation is in the window', async () => {
    const r = await runConcurrently(3, 1, () => ticks(1));
    expect(r.busyCount).toBe(3);
    expect(r.busyMs).toBeLessThanOrEqual(r.elapsedMs);
  });
});

describe('runTimedSlice', () => {
  const ticks = (n: number) => new Promise<void>((resolve) => setTimeout(resolve, n));

  it('measures from the first call issued after the settling time: the calls before it and their time do not count', async () => {
    const beganAt: number[] = [];
    const t0 = performance.now();
    let samples = 0;
    const r = await runTimedSlice(
      2,
      30,
      40,
      async (i) => {
        beganAt[i] = performance.now() - t0;
        await ticks(2);
      },
      () => ({ n: samples++, at: performance.now() - t0 }),
    );
    expect(r.whole).toBe(false);
    // samples: the start, the window's (after the settling time), the end
    expect([r.before.n, r.after.n]).toEqual([1, 2]);
    expect(r.before.at).toBeGreaterThanOrEqual(30);
    // the calls counted are exactly those issued from the window's sample on
    const first = beganAt.length - r.calls;
    expect(first).toBeGreaterThan(0);
    expect(beganAt.slice(first).every((at) => at >= r.before.at)).toBe(true);
    expect(beganAt[first - 1]!).toBeLessThan(r.before.at);
    // the window is not the whole slice: it starts at the window's sample
    expect(r.ms).toBeGreaterThan(0);
    expect(r.ms).toBeLessThan(r.after.at);
  });

  it('a stall longer than the window: no call begins in it, so the whole slice counts from the start', async () => {
    let samples = 0;
    const r = await runTimedSlice(1, 5, 10, () => ticks(40), () => samples++);
    expect(r.whole).toBe(true);
    expect(r.before).toBe(0);
    expect(r.calls).toBe(1);
    // measured from the start, so the stalled call's time is in it (with wide slack: timers are not exact)
    expect(r.ms).toBeGreaterThan(20);
  });
});
