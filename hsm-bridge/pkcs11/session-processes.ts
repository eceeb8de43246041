// Session processes for a Pkcs11Hsm (Pkcs11HsmOptions.processes): child Node processes, each with its own
// PKCS#11 module instance, sessions and login (session-process.ts), to which concurrent per-transaction
// operations on derived card keys are handed whole. A call goes to the process with the fewest calls in
// flight (ties: by card, so a load's S1/S2/S3 meet their derived key in that process's cache). A process that
// exits fails its calls in flight with HSM_DEVICE (never repeated) and is started again on the next call.

import { fork, type ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { HsmDeviceError } from '../errors.ts';
import type { Pkcs11HsmOptions } from './pkcs11-hsm.ts';
import { revive, reviveError, type ServedMethod, type SessionReply, type SessionRequest } from './session-protocol.ts';

interface Pending {
  resolve(v: unknown): void;
  reject(e: unknown): void;
}

interface SessionProcess {
  readonly child: ChildProcess;
  readonly pending: Map<number, Pending>;
  readonly ready: Promise<void>;
  dead: boolean;
}

const ENTRY = fileURLToPath(new URL('./session-process.ts', import.meta.url));

/** Node flags for a child that runs TypeScript (tsx's loader) and SoftHSM2's single DES (legacy provider). */
function childExecArgv(): string[] {
  const tsx = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
  return ['--openssl-legacy-provider', '--import', tsx];
}

export class SessionProcesses {
  private readonly procs: (SessionProcess | undefined)[];
  private nextId = 1;
  private closed = false;

  constructor(
    private readonly options: Pkcs11HsmOptions,
    readonly count: number,
  ) {
    this.procs = new Array<SessionProcess | undefined>(count).fill(undefined);
  }

  /** Start every process and wait until each has opened the token. */
  async start(): Promise<void> {
    await Promise.all(this.procs.map((_, i) => this.proc(i).ready));
  }

  /** Process ids of the live processes. */
  get pids(): number[] {
    return this.procs.filter((p): p is SessionProcess => !!p && !p.dead && p.child.pid !== undefined).map((p) => p.child.pid!);
  }

  /** Calls in flight over all processes. */
  get inFlight(): number {
    let n = 0;
    for (const p of this.procs) n += p?.pending.size ?? 0;
    return n;
  }

  /** Run an Hsm method in a session process; `affinity` (e.g. a card id byte) breaks ties between equally busy processes. */
  call(method: ServedMethod, args: unknown[], affinity: number): Promise<unknown> {
    let best = affinity % this.count;
    let load = this.procs[best]?.pending.size ?? 0;
    for (let i = 0; i < this.count && load > 0; i++) {
      const l = this.procs[i]?.pending.size ?? 0;
      if (l < load) {
        best = i;
        load = l;
      }
    }
    const p = this.proc(best);
    return p.ready.then(() => this.request(p, { t: 'call', id: this.nextId++, method, args }));
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(
      this.procs.map(async (p) => {
        if (!p || p.dead) return;
        const gone = new Promise<void>((resolve) => p.child.once('exit', () => resolve()));
        p.child.disconnect();
        const t = setTimeout(() => p.child.kill('SIGKILL'), 3000);
        await gone;
        clearTimeout(t);
      }),
    );
  }

  private proc(i: number): SessionProcess {
    const have = this.procs[i];
    if (have && !have.dead) return have;
    if (this.closed) throw new HsmDeviceError('PKCS#11 session processes: closed');
    const child = fork(ENTRY, [], { execArgv: childExecArgv(), serialization: 'advanced', stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    const pending = new Map<number, Pending>();
    const p: SessionProcess = { child, pending, dead: false, ready: Promise.resolve() };
    child.on('message', (m: SessionReply) => {
      const w = pending.get(m.id);
      if (!w) return;
      pending.delete(m.id);
      if (m.ok) w.resolve(revive(m.value));
      else w.reject(reviveError(m.error));
    });
    const down = (why: string): void => {
      p.dead = true;
      for (const w of pending.values()) w.reject(new HsmDeviceError(`PKCS#11 session process ${why}; the call was not repeated, the next call starts a new process`));
      pending.clear();
    };
    child.on('exit', (code, signal) => down(`exited (${signal ?? `code ${String(code)}`})`));
    child.on('error', (e) => down(`failed: ${e.message}`));
    (p as { ready: Promise<void> }).ready = this.request(p, { t: 'open', id: this.nextId++, options: this.options }).then(() => undefined);
    // a process that cannot open the token is not kept: the next call tries a new one
    p.ready.catch(() => {
      p.dead = true;
      child.disconnect();
    });
    this.procs[i] = p;
    return p;
  }

  private request(p: SessionProcess, m: SessionRequest): Promise<unknown> {
    return new Promise((resolve, reject) => {
      if (p.dead) {
        reject(new HsmDeviceError('PKCS#11 session process is gone; the next call starts a new one'));
        return;
      }
      p.pending.set(m.id, { resolve, reject });
      p.child.send(m);
    });
  }
}
