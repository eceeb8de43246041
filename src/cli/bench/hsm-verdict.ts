// The closing line of `purselab bench hsm`: the three targets judged together on the setting the docs
// recommend for this machine (PKCS#11 with processes = cores - 1, docs/hsm-bridge.md "Session processes"),
// so a reader need not pick it out of the per-target lines, several of which measure other settings.

import { SERIAL_WIRE_TARGET } from '../../../hsm-bridge/serial/bench.ts';
import type { BenchFigures } from './suite.ts';

/** PKCS#11 target: the backend's single-caller latency at most this many times the raw pkcs11js call's. */
export const PKCS11_OVERHEAD_TARGET = 1.3;
/** Concurrency target: with >= 4 callers, at least this share of the machine's cores busy. */
export const CORES_BUSY_SHARE = 0.9;
/** ... and with 4 callers, at least this many times the lone caller's ops/s (no loss from the concurrency). */
export const LONE_CALLER_SPEEDUP_TARGET = 1;

/** The PKCS#11 'auto' bench targets by session processes: the figure-key prefix each writes its verdicts under. */
export const PKCS11_BY_PROCESSES = [
  { processes: 0, key: 'pkcs11' },
  { processes: 1, key: 'pkcs11Process' },
  { processes: 2, key: 'pkcs11Processes' },
] as const;

/** The measured setting closest to processes = cores - 1 (the bench measures 0, 1 and 2). */
export function recommendedSetting(cores: number): (typeof PKCS11_BY_PROCESSES)[number] {
  const want = Math.max(0, cores - 1);
  return PKCS11_BY_PROCESSES[Math.min(want, PKCS11_BY_PROCESSES.length - 1)]!;
}

export interface TargetsVerdict {
  readonly line: string;
  readonly met: boolean;
}

/**
 * The three targets on the recommended setting, as far as this run measured them (a filtered run may leave
 * some out; they are then named as not measured and the whole is not met). Undefined when none was measured.
 */
export function targetsVerdict(figures: BenchFigures, cores: number): TargetsVerdict | undefined {
  const { processes, key } = recommendedSetting(cores);
  const wire = Object.entries(figures).find(([k]) => k.startsWith('serial') && k.endsWith('.wireTargetMet'))?.[1];
  const parts: [string, boolean | undefined][] = [
    [`PKCS#11 overhead <= ${PKCS11_OVERHEAD_TARGET}x the raw call`, figures[`${key}.ratioTargetMet`] as boolean | undefined],
    [`>= ${CORES_BUSY_SHARE * 100}% of the cores busy with >= 4 callers, at >= ${LONE_CALLER_SPEEDUP_TARGET.toFixed(2)}x the lone caller`, figures[`${key}.concurrencyTargetMet`] as boolean | undefined],
    [`serial within ${SERIAL_WIRE_TARGET}x of the wire time`, wire === undefined ? undefined : wire === 'met'],
  ];
  if (parts.every(([, v]) => v === undefined)) return undefined;
  const met = parts.every(([, v]) => v === true);
  const said = parts.map(([what, v]) => `${what}: ${v === undefined ? 'not measured' : v ? 'met' : 'NOT met'}`).join('; ');
  const setting = `processes=${processes} for ${cores} core${cores === 1 ? '' : 's'}, as docs/hsm-bridge.md recommends`;
  return { met, line: `  targets on this machine's setting (${setting}): ${said}; all: ${met ? 'met' : 'NOT met'}` };
}
