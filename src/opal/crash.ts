// Test-only fault injection for OPAL (like the load server's PURSELAB_LOAD_CRASH_AT): PURSELAB_OPAL_CRASH_AT=point
// makes `purselab serve opal` SIGKILL itself when a flow reaches that point. The points cut a purchase and a load
// where a crash can really happen: after the history row is written and before the card is touched, around the
// store write of the card's DEBIT / CREDIT FOR LOAD (record sealed but not stored; stored but the response not
// yet handed back), and after the flow finished but before its history row says so.

export const OPAL_CRASH_POINTS = [
  'purchase-started',
  'debit-before-save',
  'debit-after-save',
  'purchase-done',
  'load-started',
  'credit-before-save',
  'credit-after-save',
  'load-done',
] as const;
export type OpalCrashPoint = (typeof OPAL_CRASH_POINTS)[number];
export type CrashHook = (point: OpalCrashPoint) => void;

export const OPAL_CRASH_ENV = 'PURSELAB_OPAL_CRASH_AT';

export function opalCrashPointFromEnv(env: NodeJS.ProcessEnv = process.env): OpalCrashPoint | undefined {
  const v = env[OPAL_CRASH_ENV];
  if (!v) return undefined;
  if (!(OPAL_CRASH_POINTS as readonly string[]).includes(v)) throw new Error(`${OPAL_CRASH_ENV} must be one of ${OPAL_CRASH_POINTS.join(', ')}`);
  return v as OpalCrashPoint;
}

/** The hook that kills this process at `point` (nothing else: the kill is the test). */
export function killAt(point: OpalCrashPoint | undefined): CrashHook | undefined {
  if (!point) return undefined;
  return (p) => {
    if (p === point) process.kill(process.pid, 'SIGKILL');
  };
}
