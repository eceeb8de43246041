// Test rig for the serial backend: a socat pty pair (a real tty on each side) and the simulator running as its
// own process (`node bin/purselab.js hsm-sim ...`), the way CI joins bridge and simulator (hsm-bridge/serial/lab.ts).

import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSimulator, type SimulatorProcess, type SimulatorProcessOptions } from '../../../../hsm-bridge/serial/lab.ts';
import type { JournalEntry } from '../../../../hsm-bridge/serial/simulator.ts';

export { ptyHostLine, socatMissing, startPtyPair, type PtyPair } from '../../../../hsm-bridge/serial/lab.ts';
export type SimProcess = SimulatorProcess;

export const SIM_MASTER = 'serial-test-lab-only';

export function tempDir(prefix = 'purselab-serial-'): { dir: string; cleanup(): void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Spawn the simulator with the tests' lab master passphrase, creating its key store. */
export function startSim(o: Omit<SimulatorProcessOptions, 'master'>): Promise<SimProcess> {
  return spawnSimulator({ ...o, master: SIM_MASTER });
}

export function readJournal(path: string): JournalEntry[] {
  if (!existsSync(path)) return [];
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as JournalEntry);
}

/** How many times the simulator executed commands with this code. */
export function executions(path: string, code: string): number {
  return readJournal(path).filter((e) => e.code === code && e.executed).length;
}
