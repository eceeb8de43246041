// The whole machine's CPU time over a window, from Linux /proc/stat: how much of the vCPUs' time was busy, idle,
// or stolen (the hypervisor running something else on them while this guest wanted to run). The benches print
// it beside their rates: on the shared 2-vCPU machine this project is measured on, anything from 0 to 57% of the
// time was stolen during the `bench opal` runs of one morning (2026-11-22), and a rate measured while much is
// stolen says as much about the neighbours as about the code.

import { readFileSync } from 'node:fs';

/** Clock ticks (USER_HZ) spent by all CPUs together since boot, or over a window (the difference of two). */
export interface MachineCpuTicks {
  /** user + nice + system + irq + softirq (guest time is inside user). */
  readonly busy: number;
  /** idle + iowait. */
  readonly idle: number;
  /** steal: the vCPUs wanted to run and the hypervisor ran something else. */
  readonly steal: number;
}

export const NO_TICKS: MachineCpuTicks = { busy: 0, idle: 0, steal: 0 };

/** The aggregate "cpu" line of a /proc/stat text; undefined when there is none or it is malformed. */
export function parseProcStat(text: string): MachineCpuTicks | undefined {
  const line = text.split('\n').find((l) => /^cpu\s/.test(l));
  if (!line) return undefined;
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  if (f.length < 8 || f.some((n) => !Number.isFinite(n) || n < 0)) return undefined;
  const [user, nice, system, idle, iowait, irq, softirq, steal] = f as [number, number, number, number, number, number, number, number];
  return { busy: user + nice + system + irq + softirq, idle: idle + iowait, steal };
}

/** The machine's ticks now (undefined where /proc/stat cannot be read: not Linux). */
export function machineCpuNow(): MachineCpuTicks | undefined {
  try {
    return parseProcStat(readFileSync('/proc/stat', 'utf8'));
  } catch {
    return undefined;
  }
}

/** `sum` plus the window from `before` to `after` (unchanged when either end could not be read). */
export function addWindow(sum: MachineCpuTicks, before: MachineCpuTicks | undefined, after: MachineCpuTicks | undefined): MachineCpuTicks {
  if (!before || !after) return sum;
  return { busy: sum.busy + after.busy - before.busy, idle: sum.idle + after.idle - before.idle, steal: sum.steal + after.steal - before.steal };
}

/** The window from `before` to now (empty when either end cannot be read). */
export function machineCpuSince(before: MachineCpuTicks | undefined): MachineCpuTicks {
  return addWindow(NO_TICKS, before, machineCpuNow());
}

/** Fewer ticks than this (half a second of two vCPUs at USER_HZ 100) are too coarse for a share. */
export const MIN_WINDOW_TICKS = 100;

/** Percentages of the window's total; undefined for a window shorter than MIN_WINDOW_TICKS. */
export function machineShares(t: MachineCpuTicks): { busyPct: number; idlePct: number; stealPct: number } | undefined {
  const total = t.busy + t.idle + t.steal;
  if (!(total >= MIN_WINDOW_TICKS)) return undefined;
  const pct = (n: number) => Math.round((1000 * n) / total) / 10;
  return { busyPct: pct(t.busy), idlePct: pct(t.idle), stealPct: pct(t.steal) };
}

export type MachineShares = NonNullable<ReturnType<typeof machineShares>>;

/** "busy 58%, idle 22%, stolen by the hypervisor 20%". */
export function sharesText(s: MachineShares): string {
  return `busy ${s.busyPct.toFixed(0)}%, idle ${s.idlePct.toFixed(0)}%, stolen by the hypervisor ${s.stealPct.toFixed(0)}%`;
}

/** The shares of a window as text, or undefined for a window too short to say. */
export function machineSharesText(t: MachineCpuTicks): string | undefined {
  const s = machineShares(t);
  return s && sharesText(s);
}
