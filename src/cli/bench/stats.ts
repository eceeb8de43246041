// Latency and throughput statistics for benchmarks: percentiles, rates, and ratio formatting.

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

/** `concurrency` workers each running `fn` until `total` operations are done; per-operation latencies (ms) and the elapsed time. */
export async function runConcurrently(total: number, concurrency: number, fn: (worker: number) => Promise<void>): Promise<{ samples: number[]; elapsedMs: number }> {
  const samples: number[] = [];
  let next = 0;
  const t0 = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: concurrency }, async (_, w) => {
      while (next < total) {
        next++;
        const s = process.hrtime.bigint();
        await fn(w);
        samples.push(Number(process.hrtime.bigint() - s) / 1e6);
      }
    }),
  );
  return { samples, elapsedMs: Number(process.hrtime.bigint() - t0) / 1e6 };
}

/** Operations per second of a loop that ran `count` operations in `elapsedMs`. */
export const rate = (count: number, elapsedMs: number): number => (count * 1000) / elapsedMs;

export const fmt = (n: number, digits = 3): string =>
  Number.isFinite(n) ? (Math.abs(n) >= 100 ? n.toFixed(0) : n.toPrecision(digits)) : String(n);

/** "1.08x" style ratio of a measurement against its floor. */
export const ratio = (value: number, floor: number): string => `${(value / floor).toFixed(2)}x`;
