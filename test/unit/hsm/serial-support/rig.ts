// Test rig for the serial backend: a socat pty pair (a real tty on each side) and the simulator running as its
// own process (`node bin/purselab.js hsm-sim ...`), the way CI joins bridge and simulator. No in-process shortcut.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { JournalEntry } from '../../../../hsm-bridge/serial/simulator.ts';

export const REPO = resolve(import.meta.dirname, '../../../..');
export const SIM_MASTER = 'serial-test-lab-only';

/** Why the pty tests cannot run here, or undefined when they can. */
export function socatMissing(): string | undefined {
  const r = spawnSync('socat', ['-V'], { stdio: 'ignore' });
  return r.error || r.status !== 0 ? 'socat is not installed (apt-get install socat): the serial pty tests need a pty pair' : undefined;
}

export function tempDir(prefix = 'purselab-serial-'): { dir: string; cleanup(): void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

async function waitFor(cond: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

export interface PtyPair {
  /** The host (bridge) side. */
  readonly hostPath: string;
  /** The simulator side. */
  readonly simPath: string;
  readonly proc: ChildProcess;
  /** Tear the pair down (both ttys go away: the line drops). */
  kill(): Promise<void>;
}

/** socat pty,raw,echo=0,link=DIR/host pty,raw,echo=0,link=DIR/sim */
export async function startPtyPair(dir: string, name = 'line'): Promise<PtyPair> {
  const hostPath = join(dir, `${name}-host`);
  const simPath = join(dir, `${name}-sim`);
  const proc = spawn('socat', [`pty,raw,echo=0,link=${hostPath}`, `pty,raw,echo=0,link=${simPath}`], { stdio: 'ignore' });
  await waitFor(() => existsSync(hostPath) && existsSync(simPath), 5000, 'socat pty links');
  return {
    hostPath,
    simPath,
    proc,
    kill: async () => {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      const gone = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGTERM');
      await gone;
      await waitFor(() => !existsSync(hostPath) && !existsSync(simPath), 5000, 'socat links removed');
    },
  };
}

export interface SimOptions {
  readonly serial?: string;
  readonly baud?: number;
  readonly tcp?: number;
  readonly keystore: string;
  readonly create?: boolean;
  readonly journal?: string;
  readonly allowFaults?: boolean;
  readonly instant?: boolean;
  readonly extra?: readonly string[];
}

export interface SimProcess {
  readonly proc: ChildProcess;
  /** TCP port the simulator listens on (TCP mode). */
  readonly port: number;
  readonly stderr: () => string;
  /** Stop it with a signal and wait for the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Spawn `node bin/purselab.js hsm-sim ...` and wait for its "ready" line. */
export async function startSim(o: SimOptions): Promise<SimProcess> {
  const args = ['bin/purselab.js', 'hsm-sim', '--keystore', o.keystore];
  if (o.serial) args.push('--serial', o.serial, ...(o.baud ? ['--baud', String(o.baud)] : []));
  if (o.tcp !== undefined) args.push('--tcp', String(o.tcp));
  if (o.create ?? true) args.push('--create');
  if (o.journal) args.push('--journal', o.journal);
  if (o.allowFaults) args.push('--allow-faults');
  if (o.instant) args.push('--instant');
  args.push(...(o.extra ?? []));
  const proc = spawn(process.execPath, args, { cwd: REPO, env: { ...process.env, PURSELAB_HSM_SIM_MASTER: SIM_MASTER }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => proc.once('exit', (code, signal) => r({ code, signal })));
  let dead = false;
  void exited.then(() => (dead = true));
  await waitFor(() => /ready on/.test(out) || dead, 30_000, `hsm-sim ready (stderr: ${err})`);
  if (dead) throw new Error(`hsm-sim exited before it was ready: ${err}`);
  const port = Number(/tcp [^:]+:(\d+)/.exec(out)?.[1] ?? 0);
  return {
    proc,
    port,
    stderr: () => err,
    exited,
    stop: async (signal: NodeJS.Signals = 'SIGTERM') => {
      if (!dead) proc.kill(signal);
      return (await exited).code;
    },
  };
}

export function readJournal(path: string): JournalEntry[] {
  if (!existsSync(path)) return [];
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as JournalEntry);
}

/** How many times the simulator executed commands with this code (optionally: with this header). */
export function executions(path: string, code: string): number {
  return readJournal(path).filter((e) => e.code === code && e.executed).length;
}
