// The benches' whole-machine CPU window (src/cli/bench/machine-cpu.ts): the aggregate line of /proc/stat split
// into busy, idle and stolen ticks, windows added up, and the shares printed beside a rate.

import { describe, expect, it } from 'vitest';
import { addWindow, machineCpuNow, machineCpuSince, machineShares, machineSharesText, MIN_WINDOW_TICKS, NO_TICKS, parseProcStat } from '../../../src/cli/bench/machine-cpu.ts';

// user nice system idle iowait irq softirq steal guest guest_nice
const STAT = (user: number, idle: number, steal: number) =>
  [`cpu  ${user} 5 20 ${idle} 3 0 2 ${steal} 0 0`, 'cpu0 1 2 3 4 5 6 7 8 0 0', 'intr 12345', 'ctxt 999', ''].join('\n');

describe('parseProcStat', () => {
  it('reads the aggregate cpu line: busy = user + nice + system + irq + softirq, idle = idle + iowait, steal', () => {
    expect(parseProcStat(STAT(100, 400, 70))).toEqual({ busy: 100 + 5 + 20 + 0 + 2, idle: 400 + 3, steal: 70 });
  });

  it('ignores the per-CPU lines and refuses a text without a well-formed aggregate line', () => {
    expect(parseProcStat('cpu0 1 2 3 4 5 6 7 8\n')).toBeUndefined();
    expect(parseProcStat('cpu  1 2 3\n')).toBeUndefined();
    expect(parseProcStat('cpu  1 2 x 4 5 6 7 8\n')).toBeUndefined();
  });

  it('reads this machine where /proc/stat exists', () => {
    const now = machineCpuNow();
    if (process.platform !== 'linux') return expect(now).toBeUndefined();
    expect(now!.busy + now!.idle).toBeGreaterThan(0);
  });
});

describe('windows and shares', () => {
  it('adds the difference of each window, and leaves the sum alone when an end is missing', () => {
    const a = parseProcStat(STAT(100, 400, 70))!;
    const b = parseProcStat(STAT(160, 420, 90))!;
    const once = addWindow(NO_TICKS, a, b);
    expect(once).toEqual({ busy: 60, idle: 20, steal: 20 });
    expect(addWindow(once, a, b)).toEqual({ busy: 120, idle: 40, steal: 40 });
    expect(addWindow(once, undefined, b)).toBe(once);
  });

  it('a window since a reading reaches now, and is empty without one', () => {
    expect(machineCpuSince(undefined)).toEqual(NO_TICKS);
    const now = machineCpuNow();
    if (!now) return expect(machineCpuSince(NO_TICKS)).toEqual(NO_TICKS);
    // since an all-zero reading: at least the busy time counted up to the reading just taken (busy only: the
    // kernel's idle and iowait counters can step back a little)
    expect(machineCpuSince(NO_TICKS).busy).toBeGreaterThanOrEqual(now.busy);
  });

  it('gives percentages of the window, one decimal, and text for the report', () => {
    expect(machineShares({ busy: 600, idle: 200, steal: 200 })).toEqual({ busyPct: 60, idlePct: 20, stealPct: 20 });
    expect(machineShares({ busy: 100, idle: 100, steal: 100 })).toEqual({ busyPct: 33.3, idlePct: 33.3, stealPct: 33.3 });
    expect(machineSharesText({ busy: 580, idle: 220, steal: 200 })).toBe('busy 58%, idle 22%, stolen by the hypervisor 20%');
  });

  it('says nothing of a window too short for ticks of 10 ms to mean anything', () => {
    expect(machineShares(NO_TICKS)).toBeUndefined();
    expect(machineShares({ busy: MIN_WINDOW_TICKS - 1, idle: 0, steal: 0 })).toBeUndefined();
    expect(machineShares({ busy: MIN_WINDOW_TICKS, idle: 0, steal: 0 })).toEqual({ busyPct: 100, idlePct: 0, stealPct: 0 });
    expect(machineSharesText({ busy: 50, idle: 20, steal: 20 })).toBeUndefined();
  });
});
