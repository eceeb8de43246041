// CPU time (user + system) of a thread or process from Linux /proc, for the benchmarks' CPU figures: the
// calling thread, this process's main thread, another process (e.g. a PKCS#11 session process).

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

/** The calling thread's CPU time in ms (NaN where /proc/thread-self is not available). */
export function threadCpuMs(): number {
  return statCpuMs('/proc/thread-self/stat') ?? NaN;
}

/** This process's main thread's CPU time in ms (undefined where /proc is not available). */
export function mainThreadCpuMs(): number | undefined {
  return statCpuMs(`/proc/self/task/${process.pid}/stat`);
}

/** A process's CPU time in ms (undefined when it cannot be read, e.g. it has exited). */
export function processCpuMs(pid: number): number | undefined {
  return statCpuMs(`/proc/${pid}/stat`);
}
