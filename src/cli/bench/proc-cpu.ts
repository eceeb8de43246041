// CPU time (user + system) of a thread or process, for the benchmarks' CPU figures: the calling thread, this
// process's main thread, this whole process (every thread: the servers' threads and V8's and libuv's helpers),
// another process (e.g. a PKCS#11 session process); and how long the calling thread was ready to run but waited
// for a free CPU (its run-queue wait). Linux /proc, except for this whole process (getrusage).

import { readFileSync } from 'node:fs';

/** utime + stime of a /proc/.../stat file, in ms (clock ticks of USER_HZ = 100); undefined when unreadable. */
function statCpuMs(path: string): number | undefined {
  try {
    const stat = readFileSync(path, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) * 10; // fields 14 and 15 (utime, stime), counted after the comm field
  } catch {
    return undefined;
  }
}

/**
 * A /proc schedstat line ("<on-CPU ns> <run-queue wait ns> <timeslices>") in ms: the time the task ran, and
 * the time it was ready to run while the scheduler ran something else; undefined when the line is not that.
 */
export function parseSchedstat(line: string): ThreadUsage | undefined {
  const f = line.trim().split(/\s+/);
  if (f.length < 3 || !f.every((x) => /^\d+$/.test(x))) return undefined;
  return { cpuMs: Number(f[0]) / 1e6, waitMs: Number(f[1]) / 1e6 };
}

/** What a thread has spent so far: CPU time, and run-queue wait (ms; NaN where /proc cannot tell). */
export interface ThreadUsage {
  readonly cpuMs: number;
  readonly waitMs: number;
}

/** The usage of a thread that cannot be read from here (not a thread of its own, or not measured). */
export const UNMEASURED_USAGE: ThreadUsage = { cpuMs: NaN, waitMs: NaN };

/**
 * A thread's CPU time and run-queue wait so far, from its schedstat under `taskDir` (ns, so a short run's CPU is
 * not rounded to 10 ms ticks as in stat); where there is no schedstat, CPU from stat and the wait NaN; both NaN
 * when neither can be read.
 */
function taskUsage(taskDir: string): ThreadUsage {
  try {
    const u = parseSchedstat(readFileSync(`${taskDir}/schedstat`, 'utf8'));
    if (u) return u;
  } catch {
    // no schedstat (kernel without CONFIG_SCHEDSTATS, or not Linux)
  }
  return { cpuMs: statCpuMs(`${taskDir}/stat`) ?? NaN, waitMs: NaN };
}

/** The calling thread's CPU time and run-queue wait so far (see taskUsage). */
export function threadUsage(): ThreadUsage {
  return taskUsage('/proc/thread-self');
}

/** This whole process's CPU time in ms so far: every thread of it, live or ended (getrusage, µs). */
export function ownProcessCpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

/** This process's main thread's CPU time in ms, from any thread (see taskUsage; undefined where /proc is not available). */
export function mainThreadCpuMs(): number | undefined {
  const ms = taskUsage(`/proc/self/task/${process.pid}`).cpuMs;
  return Number.isNaN(ms) ? undefined : ms;
}

/** A process's CPU time in ms (undefined when it cannot be read, e.g. it has exited). */
export function processCpuMs(pid: number): number | undefined {
  return statCpuMs(`/proc/${pid}/stat`);
}
