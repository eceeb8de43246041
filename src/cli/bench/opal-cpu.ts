// The per-thread CPU figures of bench opal: which threads are measured, CPU ms per purchase of each and of the
// rest of the process ("other threads"), and the text of the CPU and run-queue wait lines under a run. Apart
// from opal.ts so that these small pure functions can be tested without loading the servers.

import { fmt } from './stats.ts';

/** The threads measured one by one: the main thread, and the worker threads the servers run in. */
export const CPU_THREADS = ['main', 'payment', 'merchant', 'shop', 'opal'] as const;
/** What the CPU figures name: those threads, then the rest of the process ('other'). */
export const CPU_PARTS = [...CPU_THREADS, 'other'] as const;
const PART_LABEL: Partial<Record<(typeof CPU_PARTS)[number], string>> = { other: 'other threads' };

/** Per part over one run (NaN for a thread not measured, or not a thread of its own): CPU ms per purchase. */
export type ThreadCpu = Record<(typeof CPU_PARTS)[number], number>;
/** Per measured thread over one run: the share of the run, in %, it was ready to run but waited for a free vCPU. */
export type ThreadWait = Record<(typeof CPU_THREADS)[number], number>;

/**
 * CPU ms per purchase of each measured thread, and of the rest of the process: its whole CPU time less what
 * the measured threads used (V8's helper threads, libuv's pool).
 */
export function cpuPerPurchase(threadMs: readonly number[], processMs: number, purchases: number): ThreadCpu {
  const measured = threadMs.reduce((sum, ms) => (Number.isFinite(ms) ? sum + ms : sum), 0);
  const parts = [...threadMs, processMs - measured];
  return Object.fromEntries(CPU_PARTS.map((k, i) => [k, parts[i]! / purchases])) as ThreadCpu;
}

/** The CPU line's figures: each part measured, in order, with its CPU ms per purchase. */
export const cpuText = (c: ThreadCpu): string =>
  CPU_PARTS
    .filter((k) => Number.isFinite(c[k]))
    .map((k) => `${PART_LABEL[k] ?? k} ${fmt(c[k])}`)
    .join(', ');

/** The run-queue wait line under a run, or undefined when no thread's wait could be read. */
export function waitText(w: ThreadWait): string | undefined {
  const known = CPU_THREADS.filter((k) => Number.isFinite(w[k]));
  if (!known.length) return undefined;
  return `(the share of the run each thread was ready to run but waited for a vCPU: ${known.map((k) => `${k} ${w[k].toFixed(0)}%`).join(', ')})`;
}
