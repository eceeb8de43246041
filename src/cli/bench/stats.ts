// Latency and throughput statistics for benchmarks: percentiles, concurrent runs and their busy window, timed slices
// that settle before they measure, the warm-up until a rate stops improving, rates and ratio formatting.

export interface LatencySummary {
  readonly count: number;
  readonly medianMs: number;
  readonly p99Ms: number;
  readonly meanMs: number;
}

/** Nearest-rank percentile of an unsorted sample (p in 0..100). */
export function percentile(samples: readonly number[], p: number): number {
  if (samples.length === 0) return NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank]!;
}

export function summarize(samplesMs: readonly number[]): LatencySummary {
  const sum = samplesMs.reduce((a, b) => a + b, 0);
  return {
    count: samplesMs.length,
    medianMs: percentile(samplesMs, 50),
    p99Ms: percentile(samplesMs, 99),
    meanMs: samplesMs.length ? sum / samplesMs.length : NaN,
  };
}

/** Time `count` sequential calls of `fn`, returning per-call latencies in milliseconds. */
export async function timeCalls(count: number, fn: (i: number) => Promise<unknown> | unknown): Promise<number[]> {
  const out: number[] = new Array(count);
  for (let i = 0; i < count; i++) {
    const t0 = process.hrtime.bigint();
    await fn(i);
    out[i] = Number(process.hrtime.bigint() - t0) / 1e6;
  }
  return out;
}

/** What runConcurrently measured. */
export interface ConcurrentRun {
  /** Per-operation latencies (ms), in the order they finished. */
  readonly samples: number[];
  /** From the start until the last operation finished. */
  readonly elapsedMs: number;
  /**
   * Operations finished, and the time, from the start until the first worker found no work left: the rate
   * while all the workers were busy, without the drain at the end (when the run is shorter than that, the
   * whole run).
   */
  readonly busyCount: number;
  readonly busyMs: number;
}

/** `concurrency` workers each running `fn` until `total` operations are done. */
export async function runConcurrently(total: number, concurrency: number, fn: (worker: number) => Promise<void>): Promise<ConcurrentRun> {
  const samples: number[] = [];
  let next = 0;
  // the first worker to run dry ends the busy window (one that found no work at all: none, the whole run is it)
  let busy: { count: number; ms: number } | undefined;
  const t0 = process.hrtime.bigint();
  const since = () => Number(process.hrtime.bigint() - t0) / 1e6;
  await Promise.all(
    Array.from({ length: concurrency }, async (_, w) => {
      while (next < total) {
        next++;
        const s = process.hrtime.bigint();
        await fn(w);
        samples.push(Number(process.hrtime.bigint() - s) / 1e6);
      }
      busy ??= { count: samples.length, ms: since() };
    }),
  );
  const elapsedMs = since();
  const window = busy && busy.count > 0 ? busy : { count: samples.length, ms: elapsedMs };
  return { samples, elapsedMs, busyCount: window.count, busyMs: window.ms };
}

/** What runTimedSlice measured: calls and time from `before` (a sample taken when the window opened) to `after`. */
export interface TimedSlice<S> {
  readonly calls: number;
  readonly ms: number;
  readonly before: S;
  readonly after: S;
  /** No call began between the settling time and the end (one long stall): the whole slice was measured. */
  readonly whole: boolean;
}

/**
 * `callers` callers each calling `call` (with a running index) for `settleMs` unmeasured, then for `ms`
 * measured, without a pause in between: the window opens at the first call issued after the settling time,
 * with a `sample()` there (CPU counters, say), and ends when the last caller's call has returned. When no call
 * begins inside the window (a stall longer than it), the whole slice counts, from a sample taken at the start.
 */
export async function runTimedSlice<S>(callers: number, settleMs: number, ms: number, call: (i: number) => Promise<unknown>, sample: () => S): Promise<TimedSlice<S>> {
  const start = sample();
  let t0 = process.hrtime.bigint();
  const settleUntil = performance.now() + settleMs;
  const until = settleUntil + ms;
  let next = 0;
  let from = 0;
  let before: S | undefined;
  await Promise.all(
    Array.from({ length: callers }, async () => {
      while (performance.now() < until) {
        if (before === undefined && performance.now() >= settleUntil) {
          before = sample();
          t0 = process.hrtime.bigint();
          from = next;
        }
        await call(next++);
      }
    }),
  );
  const elapsed = Number(process.hrtime.bigint() - t0) / 1e6;
  const after = sample();
  return { calls: next - from, ms: elapsed, before: before ?? start, after, whole: before === undefined };
}

/** How a warm-up ended: rounds run, their size, the last round's rate, and whether the rate had settled. */
export interface WarmUp {
  readonly rounds: number;
  readonly roundSize: number;
  readonly lastPerSec: number;
  /** Two rounds in a row came out at most `gain` faster than the best before them (false: stopped at maxRounds). */
  readonly settled: boolean;
  readonly gain: number;
}

export interface WarmUpOptions {
  /** Operations per round. */
  readonly roundSize: number;
  /** Stop once two rounds in a row are at most this much faster than the best before them (default 0.05: 5%). */
  readonly gain?: number;
  readonly minRounds?: number;
  readonly maxRounds?: number;
}

/**
 * Warm a flow up until its rate stops improving: rounds of `roundSize` operations (`round` runs them and
 * resolves with the elapsed milliseconds) until two rounds in a row come out at most `gain` faster than the best
 * round before them, after at least `minRounds` (default 3) and at most `maxRounds` (default 12). Until V8 has
 * compiled the hot code with its optimizing compiler (on background threads, which on this 2-core machine
 * compete with the measured threads) a flow runs well below its steady rate: `bench payment` measured after 400
 * purchases ran at about 1.4 ms CPU per purchase, after 4,000 at 1.1 ms.
 */
export async function warmUntilSteady(round: (n: number) => Promise<number>, options: WarmUpOptions): Promise<WarmUp> {
  const gain = options.gain ?? 0.05;
  const minRounds = Math.max(3, options.minRounds ?? 3);
  const maxRounds = Math.max(minRounds, options.maxRounds ?? 12);
  let rounds = 0;
  let best = 0;
  let flat = 0;
  let perSec = 0;
  while (rounds < maxRounds) {
    perSec = rate(options.roundSize, await round(options.roundSize));
    rounds++;
    flat = rounds > 1 && perSec <= best * (1 + gain) ? flat + 1 : 0;
    best = Math.max(best, perSec);
    if (rounds >= minRounds && flat >= 2) break;
  }
  return { rounds, roundSize: options.roundSize, lastPerSec: perSec, settled: flat >= 2, gain };
}

/** The warm-up in words, for the bench output. */
export const warmUpText = (w: WarmUp, what: string): string =>
  `warm-up ${w.rounds} rounds of ${w.roundSize} ${what}, ${w.settled ? `until two in a row were at most ${Math.round(w.gain * 100)}% faster than the best before them` : 'still speeding up at the last ones'}`;

/** Operations per second of a loop that ran `count` operations in `elapsedMs`. */
export const rate = (count: number, elapsedMs: number): number => (count * 1000) / elapsedMs;

export const fmt = (n: number, digits = 3): string =>
  Number.isFinite(n) ? (Math.abs(n) >= 100 ? n.toFixed(0) : n.toPrecision(digits)) : String(n);

/** "1.08x" style ratio of a measurement against its floor. */
export const ratio = (value: number, floor: number): string => `${(value / floor).toFixed(2)}x`;
