// Lab rig for the serial HSM line: a socat pty pair (a real tty at each end) and `purselab hsm-sim` as its own
// process, the way a lab HSM hangs off a serial line. Used by the benchmark and the tests; no in-process shortcut.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { SerialLine } from './backend.ts';

/** The repository root (bin/purselab.js lives there). */
export const REPO_ROOT = resolve(import.meta.dirname, '../..');

/** Why a pty pair cannot be made here (socat missing), or undefined when it can. */
export function socatMissing(): string | undefined {
  const r = spawnSync('socat', ['-V'], { stdio: 'ignore' });
  return r.error || r.status !== 0 ? 'socat is not installed (apt-get install socat): a serial pty pair needs it' : undefined;
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
  /** Tear the pair down: both ttys go away, the line drops. */
  kill(): Promise<void>;
}

/** `socat pty,raw,echo=0,link=DIR/NAME-host pty,raw,echo=0,link=DIR/NAME-sim`, once both links exist. */
export async function startPtyPair(dir: string, name = 'line'): Promise<PtyPair> {
  const hostPath = join(dir, `${name}-host`);
  const simPath = join(dir, `${name}-sim`);
  const proc = spawn('socat', [`pty,raw,echo=0,link=${hostPath}`, `pty,raw,echo=0,link=${simPath}`], { stdio: 'ignore' });
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  await waitFor(() => (existsSync(hostPath) && existsSync(simPath)) || proc.exitCode !== null, 5000, 'socat pty links');
  if (proc.exitCode !== null) throw new Error(`socat exited (${proc.exitCode}) before making ${hostPath}`);
  return {
    hostPath,
    simPath,
    proc,
    kill: async () => {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGTERM');
        await exited;
      }
      await waitFor(() => !existsSync(hostPath) && !existsSync(simPath), 5000, 'socat links removed');
    },
  };
}

/**
 * How long a partial frame may go quiet on a pty line between two processes on this machine (the simulator's
 * --inter-char-ms and the host line's interCharTimeoutMs) in the lab setups here: the tests and the benches. A
 * real line allows 50 ms; the simulator paces its answers with timers, and on a shared 2-core VM a process can
 * be held off the CPU for longer than that in the middle of a frame.
 */
export const PTY_QUIET_MS = 1000;

/** The host end of a pty pair as a serial line, with the lab's quiet spell (PTY_QUIET_MS). */
export function ptyHostLine(pty: PtyPair, baudRate = 115200): SerialLine {
  return { kind: 'serial', path: pty.hostPath, baudRate, interCharTimeoutMs: PTY_QUIET_MS };
}

export interface SimulatorProcessOptions {
  readonly serial?: string;
  readonly baud?: number;
  readonly tcp?: number;
  readonly keystore: string;
  /** The simulator's master passphrase (lab only; goes in PURSELAB_HSM_SIM_MASTER). */
  readonly master: string;
  readonly create?: boolean;
  readonly journal?: string;
  readonly allowFaults?: boolean;
  readonly instant?: boolean;
  readonly extra?: readonly string[];
}

export interface SimulatorProcess {
  readonly proc: ChildProcess;
  /** TCP port the simulator listens on (TCP mode), else 0. */
  readonly port: number;
  stderr(): string;
  /** Send a signal (default SIGTERM) and wait for the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** How long a spawned simulator may take to say it is ready (tsx compiles the CLI first; slow on a loaded machine). */
export const SIM_READY_MS = 30_000;

/** Spawn `node bin/purselab.js hsm-sim ...` (on a serial line, with the lab's quiet spell PTY_QUIET_MS) and wait for its "ready" line. */
export async function spawnSimulator(o: SimulatorProcessOptions): Promise<SimulatorProcess> {
  const args = ['bin/purselab.js', 'hsm-sim', '--keystore', o.keystore];
  if (o.serial) args.push('--serial', o.serial, ...(o.baud ? ['--baud', String(o.baud)] : []), '--inter-char-ms', String(PTY_QUIET_MS));
  if (o.tcp !== undefined) args.push('--tcp', String(o.tcp));
  if (o.create ?? true) args.push('--create');
  if (o.journal) args.push('--journal', o.journal);
  if (o.allowFaults) args.push('--allow-faults');
  if (o.instant) args.push('--instant');
  args.push(...(o.extra ?? []));
  const proc = spawn(process.execPath, args, { cwd: REPO_ROOT, env: { ...process.env, PURSELAB_HSM_SIM_MASTER: o.master }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  let dead = false;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) =>
    proc.once('exit', (code, signal) => {
      dead = true;
      r({ code, signal });
    }),
  );
  await waitFor(() => /ready on/.test(out) || dead, SIM_READY_MS, `hsm-sim ready (stderr: ${err})`);
  if (dead) throw new Error(`hsm-sim exited before it was ready: ${err.trim()}`);
  return {
    proc,
    port: Number(/tcp [^:]+:(\d+)/.exec(out)?.[1] ?? 0),
    stderr: () => err,
    exited,
    stop: async (signal: NodeJS.Signals = 'SIGTERM') => {
      if (!dead) proc.kill(signal);
      return (await exited).code;
    },
  };
}
