// Helpers for the real-rig suites (host -> pcsclite -> pcscd -> vpcd -> emulator): detect the rig,
// skip with a visible reason (or fail, under PURSELAB_REQUIRE_RIG=1), start/stop emulator processes,
// run the CLI, wait for reader state.

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'vitest';
import { TransportError } from '../../src/transport/errors.ts';
import { cardIn, listReaders, noCardIn, waitForCards, waitForReader, type PcscReaderInfo } from '../../src/transport/pcsc.ts';
import { allowedSlots, VPCD_SLOTS } from '../../src/transport/pcsc-vpcd.ts';

export { allowedSlots };

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const CLI = join(REPO, 'bin/purselab.js');

export interface RigState {
  readonly ok: boolean;
  /** Why the rig cannot be used (empty when ok). */
  readonly reason: string;
  readonly readers: PcscReaderInfo[];
  /** vpcd slots whose reader exists (port and reader name). */
  readonly slots: { reader: string; port: number }[];
}

/** Is pcscd reachable through pcsclite, with vpcd readers? */
export async function detectRig(minSlots = 2): Promise<RigState> {
  let readers: PcscReaderInfo[];
  try {
    readers = await listReaders({ timeoutMs: 3000 });
  } catch (e) {
    const why = e instanceof TransportError ? e.message : String(e);
    return { ok: false, reason: `${why} (start the rig: bash .ci/rig-up.sh)`, readers: [], slots: [] };
  }
  const names = new Set(readers.map((r) => r.name));
  const slots = VPCD_SLOTS.filter((s) => names.has(s.reader)).map((s) => ({ ...s }));
  if (slots.length < minSlots) {
    return {
      ok: false,
      reason: `pcscd runs but has ${slots.length} of the ${minSlots} vpcd readers this suite needs (readers: ${[...names].join(', ') || 'none'}; start the rig: bash .ci/rig-up.sh)`,
      readers,
      slots,
    };
  }
  return { ok: true, reason: '', readers, slots };
}

/**
 * describe() that runs only with the rig. Without it: skipped, with the reason in the suite name and
 * on stderr; under PURSELAB_REQUIRE_RIG=1 (CI) a failing test instead, so CI never passes silently.
 */
export function describeRig(name: string, rig: RigState, fn: () => void): void {
  if (rig.ok) {
    describe(name, fn);
    return;
  }
  if (process.env.PURSELAB_REQUIRE_RIG === '1') {
    describe(name, () => {
      it('needs the real pcscd + vpcd rig', () => {
        throw new Error(`PURSELAB_REQUIRE_RIG=1 but the rig is not usable: ${rig.reason}`);
      });
    });
    return;
  }
  console.warn(`[rig] SKIPPED '${name}': ${rig.reason}`);
  describe.skip(`${name} [SKIPPED: ${rig.reason}]`, fn);
}

/** Slots whose reader has no card now (free for this suite's emulators). */
export async function freeSlots(count: number): Promise<{ reader: string; port: number }[]> {
  const readers = await listReaders({ timeoutMs: 3000 });
  const free = allowedSlots().filter((s) => readers.some((r) => r.name === s.reader && !r.cardPresent));
  if (free.length < count) {
    const busy = readers.filter((r) => r.cardPresent).map((r) => r.name);
    throw new Error(`need ${count} free vpcd slots, found ${free.length} (cards already in: ${busy.join(', ')}; a stray emulator still running?)`);
  }
  return free.slice(0, count).map((s) => ({ ...s }));
}

export function tempDir(prefix = 'purselab-rig-'): { path: string; remove: () => void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

export { cardIn, noCardIn, waitForReader };

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** A child process with its output collected. */
export class Proc {
  readonly child: ChildProcess;
  stdout = '';
  stderr = '';
  readonly exited: Promise<Exit>;
  private done = false;

  constructor(cmd: string, args: string[], options: { input?: string; env?: NodeJS.ProcessEnv } = {}) {
    this.child = spawn(cmd, args, { cwd: REPO, env: { ...process.env, ...options.env }, stdio: ['pipe', 'pipe', 'pipe'] });
    this.child.stdout!.setEncoding('utf8').on('data', (d: string) => (this.stdout += d));
    this.child.stderr!.setEncoding('utf8').on('data', (d: string) => (this.stderr += d));
    this.exited = new Promise((resolve) => {
      this.child.on('exit', (code, signal) => {
        this.done = true;
        resolve({ code, signal });
      });
    });
    if (options.input !== undefined) this.child.stdin!.end(options.input);
    else this.child.stdin!.end();
    live.add(this);
    void this.exited.then(() => live.delete(this));
  }

  get running(): boolean {
    return !this.done;
  }

  /** Resolves when `text` appears in stdout or stderr (rejects on exit or timeout). */
  waitForOutput(text: string | RegExp, timeoutMs = 15_000): Promise<void> {
    const has = () => (typeof text === 'string' ? (this.stdout + this.stderr).includes(text) : text.test(this.stdout + this.stderr));
    return new Promise((resolve, reject) => {
      const t0 = Date.now();
      const tick = () => {
        if (has()) return resolve();
        if (this.done) return reject(new Error(`process exited before printing ${String(text)}; stdout: ${this.stdout} stderr: ${this.stderr}`));
        if (Date.now() - t0 > timeoutMs) return reject(new Error(`no ${String(text)} within ${timeoutMs} ms; stdout: ${this.stdout} stderr: ${this.stderr}`));
        setTimeout(tick, 25);
      };
      tick();
    });
  }

  /** Send a signal and wait for the exit (SIGKILL after timeoutMs). */
  async stop(signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 10_000): Promise<Exit> {
    if (!this.done) this.child.kill(signal);
    const t = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
    const r = await this.exited;
    clearTimeout(t);
    return r;
  }
}

const live = new Set<Proc>();

/** Kill whatever a suite left running (call from afterAll). */
export async function killAll(): Promise<void> {
  await Promise.all([...live].map((p) => p.stop('SIGKILL', 2000)));
}

/** `node bin/purselab.js ARGS`, as a Proc. */
export function purselab(args: string[], options: { input?: string; env?: NodeJS.ProcessEnv } = {}): Proc {
  return new Proc(process.execPath, [CLI, ...args], options);
}

/** Run the CLI to completion (kills it after timeoutMs: a hang is a failure, not a stuck suite). */
export async function runCli(args: string[], options: { input?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}) {
  const p = purselab(args, options);
  const t0 = Date.now();
  const timer = setTimeout(() => p.child.kill('SIGKILL'), options.timeoutMs ?? 20_000);
  const exit = await p.exited;
  clearTimeout(timer);
  return { ...exit, stdout: p.stdout, stderr: p.stderr, ms: Date.now() - t0 };
}

/** Start `purselab emulate ARGS` and wait until every vpcd session is open and every reader shows its card. */
export async function startEmulator(args: string[], readers: string[], timeoutMs = 20_000): Promise<Proc> {
  const p = purselab(['emulate', ...args]);
  try {
    await p.waitForOutput(new RegExp(`(vpcd session open for [^\\n]*\\n[^]*){${readers.length}}`), timeoutMs);
    const missing = await waitForCards(readers, timeoutMs);
    if (missing !== undefined) throw new Error(`the emulated card did not appear in '${missing}' within ${timeoutMs} ms`);
  } catch (e) {
    await p.stop('SIGKILL');
    throw new Error(`${(e as Error).message}; emulate said: ${p.stdout} ${p.stderr}`);
  }
  return p;
}

/** Start a fixture card process (test/rig/fixtures/*.ts, run through tsx) and wait for its card. */
export async function startFixture(file: string, args: string[], reader: string, timeoutMs = 20_000): Promise<Proc> {
  const p = new Proc(process.execPath, ['--import', 'tsx', join(REPO, 'test/rig/fixtures', file), ...args]);
  try {
    await p.waitForOutput('session', timeoutMs);
    if (!(await waitForReader(reader, cardIn, timeoutMs))) throw new Error(`the card did not appear in '${reader}' within ${timeoutMs} ms`);
  } catch (e) {
    await p.stop('SIGKILL');
    throw new Error(`fixture ${file}: ${(e as Error).message}: ${p.stdout} ${p.stderr}`);
  }
  return p;
}

/** Pull a card: kill its process and wait until pcscd has noticed (so the next test starts clean). */
export async function pull(p: Proc, reader: string, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
  await p.stop(signal);
  if (!(await waitForReader(reader, noCardIn, 10_000))) throw new Error(`'${reader}' still shows a card after its emulator exited`);
}
