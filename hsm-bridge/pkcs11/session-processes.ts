// Session processes for a Pkcs11Hsm (Pkcs11HsmOptions.processes): child Node processes, each with its own
// PKCS#11 module instance, sessions and login (session-process.ts), to which concurrent per-transaction
// operations on derived card keys are handed whole, with the parent's own main thread as one more worker.
//
// A call handed here waits for the end of this turn of the event loop (setImmediate); then the turn's calls
// are shared out: the main thread keeps one (it runs it right there, synchronously, after the others have
// been sent), and the others go to the processes, each getting ONE frame (session-protocol.ts) with its share,
// to the process with the fewest calls in flight first (ties: by card, so a load's S1/S2/S3 meet their derived
// key in that process's cache). With several callers awaiting, the calls they issue when a reply resolves
// them are issued in the same turn, so batches form by themselves; and since the main thread keeps one call
// per turn, it always has work while a process has some, which a machine with N cores uses with N - 1
// processes (docs/hsm-bridge.md).
//
// A process that exits fails every call sent to it and not answered with HSM_DEVICE, never repeated; it is
// started again at the next turn with calls, and until one is ready again the calls run on the main thread.

import { spawn, type ChildProcess } from 'node:child_process';
import { writeSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { Socket } from 'node:net';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { HsmDeviceError } from '../errors.ts';
import type { MacAlgorithm } from '../hsm.ts';
import { openPipePair } from './pipe-pair.ts';
import type { Pkcs11HsmOptions } from './pkcs11-hsm.ts';
import {
  FRAME_CALLS,
  FRAME_OPEN,
  FRAME_RESULTS,
  FrameReader,
  FrameSplitter,
  FrameWriter,
  jsonFrame,
  readJson,
  readResult,
  reviveError,
  writeCall,
  type ErrorDescription,
} from './session-protocol.ts';

interface Pending {
  resolve(v: unknown): void;
  reject(e: unknown): void;
}

/** Runs a call on the main thread: Pkcs11Hsm.serve (a value, or a promise when it could not finish now). */
export type LocalRunner = (method: number, label: string, version: number, cardId: Buffer, alg: MacAlgorithm | undefined, data: Buffer | undefined, mac: Buffer | undefined) => unknown;

interface SessionProcess {
  readonly child: ChildProcess;
  /** Where the calls go (the pipe's writing end, or the socket pair). */
  readonly calls: Socket;
  /** Where the results come from (the other pipe, or the same socket pair). */
  readonly results: Socket;
  /** The writing end as a file descriptor (undefined where the platform hides it). */
  readonly fd: number | undefined;
  /** Calls sent and not answered, by id. */
  readonly pending: Map<number, Pending>;
  /** The child has opened the token. */
  opened: boolean;
  dead: boolean;
  readonly ready: Promise<void>;
}

/** Entries per queued call: id, method, label, version, cardId, alg, data, mac, resolve, reject. */
const Q = 10;

const ENTRY = fileURLToPath(new URL('./session-process.ts', import.meta.url));

/** Node flags for a child that runs TypeScript (tsx's loader) and SoftHSM2's single DES (legacy provider). */
export function childExecArgv(): string[] {
  const tsx = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
  return ['--openssl-legacy-provider', '--import', tsx];
}

export class SessionProcesses {
  private readonly procs: (SessionProcess | undefined)[];
  private nextId = 1;
  private closed = false;
  /** This turn's calls, flat (Q entries per call), and whether the flush is scheduled. */
  private queue: unknown[] = [];
  private flushing = false;
  private readonly flushTurn = (): void => this.flush();
  private readonly counts = { calls: 0, batches: 0, local: 0 };
  /** Calls handed here and not answered yet (queued, on the main thread, or in a process). */
  inFlight = 0;

  constructor(
    private readonly options: Pkcs11HsmOptions,
    readonly count: number,
    private readonly local: LocalRunner,
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

  /** Calls handed here, the frames (batches) that carried some of them to processes, and those run on the main thread. */
  get stats(): { calls: number; batches: number; local: number } {
    return { ...this.counts };
  }

  /**
   * Run a served method (session-protocol.ts METHOD_INDEX) on a derived card key, in a process or on the main
   * thread at the end of this turn; the arguments are already checked.
   */
  call(method: number, label: string, version: number, cardId: Buffer, alg: MacAlgorithm | 0, data: Buffer | 0, mac: Buffer | 0): Promise<unknown> {
    if (this.closed) return Promise.reject(new HsmDeviceError('PKCS#11 session processes: closed'));
    this.inFlight++;
    this.counts.calls++;
    if (!this.flushing) {
      this.flushing = true;
      setImmediate(this.flushTurn);
    }
    return new Promise((resolve, reject) => {
      this.queue.push(this.nextId++, method, label, version, cardId, alg, data, mac, resolve, reject);
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(
      this.procs.map(async (p) => {
        if (!p || p.dead) return;
        const gone = new Promise<void>((resolve) => p.child.once('exit', () => resolve()));
        p.calls.end();
        const t = setTimeout(() => p.child.kill('SIGKILL'), 3000);
        await gone;
        clearTimeout(t);
      }),
    );
  }

  /** End of the turn: send each process its share in one frame, then run the main thread's call. */
  private flush(): void {
    this.flushing = false;
    const q = this.queue;
    this.queue = [];
    // the processes that can take calls now (a dead one is started again; it takes calls once it has opened)
    const ready: SessionProcess[] = [];
    if (!this.closed) {
      for (let i = 0; i < this.count; i++) {
        const p = this.proc(i);
        if (p.opened) ready.push(p);
      }
    }
    // the main thread keeps the first call; the rest go to the processes, one at a time to the least busy
    if (!ready.length) {
      for (let i = 0; i < q.length; i += Q) this.runHere(q, i); // no process ready: every call runs here
      return;
    }
    if (q.length > Q) {
      const frames = new Map<SessionProcess, FrameWriter>();
      for (let at = Q; at < q.length; at += Q) {
        const card = q[at + 4] as Buffer;
        let best = ready[card[card.length - 1]! % ready.length]!;
        for (const p of ready) if (p.pending.size < best.pending.size) best = p;
        const id = q[at] as number;
        let w = frames.get(best);
        if (!w) frames.set(best, (w = new FrameWriter(FRAME_CALLS)));
        writeCall(w, id, q[at + 1] as number, q[at + 2] as string, q[at + 3] as number, card, q[at + 5] as MacAlgorithm | 0, q[at + 6] as Buffer | 0, q[at + 7] as Buffer | 0);
        best.pending.set(id, { resolve: q[at + 8] as Pending['resolve'], reject: q[at + 9] as Pending['reject'] });
      }
      for (const [p, w] of frames) {
        this.counts.batches++;
        this.write(p, w.finish());
      }
    }
    this.runHere(q, 0);
  }

  /**
   * Write a frame to a process: straight to the file descriptor when it takes it all now (no stream write
   * request per frame: measured ~5 us of the main thread each), else through the stream (which queues).
   */
  private write(p: SessionProcess, frame: Buffer): void {
    const fd = p.fd;
    if (fd !== undefined && p.calls.writableLength === 0) {
      try {
        const n = writeSync(fd, frame);
        if (n === frame.length) return;
        frame = frame.subarray(n);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EAGAIN') return; // the child is gone: its exit says so
      }
    }
    p.calls.write(frame);
  }

  /** Run the queued call at q[i] on the main thread. */
  private runHere(q: unknown[], i: number): void {
    const resolve = q[i + 8] as Pending['resolve'];
    const reject = q[i + 9] as Pending['reject'];
    this.counts.local++;
    let v: unknown;
    try {
      const data = q[i + 6];
      const mac = q[i + 7];
      v = this.local(q[i + 1] as number, q[i + 2] as string, q[i + 3] as number, q[i + 4] as Buffer, (q[i + 5] || undefined) as MacAlgorithm | undefined, data === 0 ? undefined : (data as Buffer), mac === 0 ? undefined : (mac as Buffer));
    } catch (e) {
      this.inFlight--;
      reject(e);
      return;
    }
    if (v instanceof Promise) {
      v.then(
        (x) => {
          this.inFlight--;
          resolve(x);
        },
        (e: unknown) => {
          this.inFlight--;
          reject(e);
        },
      );
    } else {
      this.inFlight--;
      resolve(v);
    }
  }

  private proc(i: number): SessionProcess {
    const have = this.procs[i];
    if (have && !have.dead) return have;
    if (this.closed) throw new HsmDeviceError('PKCS#11 session processes: closed');
    // two pipes (pipe-pair.ts: cheaper per message), or Node's socket pair where FIFOs cannot be made
    const pipes = openPipePair();
    const child = spawn(process.execPath, [...childExecArgv(), ENTRY, pipes ? 'pipes' : 'socket'], {
      stdio: ['ignore', 'inherit', 'inherit', pipes ? pipes.childReads : 'pipe', pipes ? pipes.childWrites : 'ignore'],
    });
    pipes?.closeChildEnds();
    const results = pipes ? pipes.results : (child.stdio[3] as Socket);
    const calls = pipes ? pipes.calls : results;
    let opened: (v: undefined) => void = () => undefined;
    let failed: (e: unknown) => void = () => undefined;
    const ready = new Promise<void>((resolve, reject) => {
      opened = resolve;
      failed = reject;
    });
    const fd = pipes ? pipes.callsFd : (calls as unknown as { _handle?: { fd?: number } })._handle?.fd;
    const p: SessionProcess = { child, calls, results, fd: typeof fd === 'number' && fd >= 0 ? fd : undefined, pending: new Map(), opened: false, dead: false, ready };
    const frames = new FrameSplitter();
    results.on('data', (chunk: Buffer) => {
      for (const f of frames.push(chunk)) {
        if (f[0] === FRAME_RESULTS) this.answered(p, f);
        else if (f[0] === FRAME_OPEN) {
          const r = new FrameReader(f);
          r.at = 1;
          const m = readJson(r) as { error?: ErrorDescription };
          if (m.error) failed(reviveError(m.error));
          else {
            p.opened = true;
            opened(undefined);
          }
        }
      }
    });
    results.on('error', () => undefined); // the child's exit says what happened
    if (pipes) pipes.calls.on('error', () => undefined);
    const down = (why: string): void => {
      p.dead = true;
      pipes?.calls.destroy(); // (the results pipe reads end of file and closes by itself)
      failed(new HsmDeviceError(`PKCS#11 session process ${why} before it opened the token`));
      const waiting = [...p.pending.values()];
      p.pending.clear();
      this.inFlight -= waiting.length;
      const e = new HsmDeviceError(`PKCS#11 session process ${why}; the call was not repeated, the next call starts a new process`);
      for (const w of waiting) w.reject(e);
    };
    child.on('exit', (code, signal) => down(`exited (${signal ?? `code ${String(code)}`})`));
    child.on('error', (e) => down(`failed: ${e.message}`));
    // a process that cannot open the token is not kept: the next turn tries a new one
    ready.catch(() => {
      p.dead = true;
      calls.end();
    });
    calls.write(jsonFrame(FRAME_OPEN, this.options));
    this.procs[i] = p;
    return p;
  }

  /** A results frame: each call's value or typed error to its caller. */
  private answered(p: SessionProcess, f: Buffer): void {
    const r = new FrameReader(f);
    r.at = 1;
    while (!r.done) {
      const { id, ok, value } = readResult(r);
      const w = p.pending.get(id);
      if (!w) continue;
      p.pending.delete(id);
      this.inFlight--;
      if (ok) w.resolve(value);
      else w.reject(value);
    }
  }
}
