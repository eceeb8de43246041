// A PKCS#11 session process: one Pkcs11Hsm with synchronous calls, serving whole operations for a parent
// Pkcs11Hsm (Pkcs11HsmOptions.processes, hsm-bridge/pkcs11/session-processes.ts). Its own module instance,
// sessions and login: SoftHSM2 in one process does not run faster on more threads, but it does in more
// processes.
//
// It has one job, so it does it without an event loop in the way: it reads whatever frames of calls the
// parent has written to fd 3 (a pipe; the results go back on fd 4, pipe-pair.ts) with a blocking read
// (asleep in the kernel until the parent writes), runs their calls on its sessions, writing results as it
// goes (see runCalls), and reads again (session-protocol.ts). It leaves when the parent closes its end (end
// of file: the parent closed it, or died).

import { readSync, writeSync } from 'node:fs';
import { Pkcs11Hsm, type Pkcs11HsmOptions } from './pkcs11-hsm.ts';
import { FRAME_CALLS, FRAME_OPEN, FRAME_RESULTS, FrameReader, FrameWriter, completeFrames, describeError, jsonFrame, readCall, readJson, writeResult, type WireCall } from './session-protocol.ts';

/** Calls come in on fd 3; results go out on fd 4 (two pipes, pipe-pair.ts) or on fd 3 too (a socket pair). */
const FD = 3;
const OUT_FD = process.argv[2] === 'pipes' ? 4 : 3;

/** Bytes read from the parent: inbuf[0, have). */
let inbuf = Buffer.allocUnsafe(64 * 1024);
let have = 0;

/**
 * Read what the parent has written so far (asleep in the kernel while there is nothing), appended to inbuf;
 * false at end of file (the parent closed its end or died).
 */
function readMore(): boolean {
  if (have === inbuf.length) {
    const b = Buffer.allocUnsafe(inbuf.length * 2);
    inbuf.copy(b, 0, 0, have);
    inbuf = b;
  }
  for (;;) {
    try {
      const r = readSync(FD, inbuf, have, inbuf.length - have, null);
      if (r === 0) return false;
      have += r;
      return true;
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'EAGAIN' && code !== 'EINTR') return false; // (the descriptor is blocking: EAGAIN is not expected)
    }
  }
}

/** Drop the frames handled: move the unread rest to the front. */
function consumed(rest: number): void {
  if (rest === 0) return;
  inbuf.copy(inbuf, 0, rest, have);
  have -= rest;
}

function writeFrame(b: Buffer): void {
  let at = 0;
  while (at < b.length) {
    try {
      at += writeSync(OUT_FD, b, at, b.length - at);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'EAGAIN' && code !== 'EINTR') throw e;
    }
  }
}

/** Results not written yet (one frame). */
const out = new FrameWriter(FRAME_RESULTS);
let unsent = 0;

function result(id: number, ok: boolean, value: unknown): void {
  writeResult(out, id, ok, value);
  unsent++;
}

function sendResults(): void {
  if (!unsent) return;
  writeFrame(out.finish());
  out.reset();
  unsent = 0;
}

/**
 * Run the calls of the frames read. Results go out once at least two wait and as many as there are calls
 * left to run (after the first half, then the next quarter, ...), and at the end: the parent can issue
 * those callers' next calls while this process works on the rest, so new work often arrives before it runs
 * out, and the messages (each a write here and a read there, ~10-25 us of CPU on a 2-vCPU VM when they wake
 * the other side) stay few. (Measured with 4 callers, ops/s and cores busy: results only at the end of a
 * batch 61-63k/s at 1.70 cores; after each call once half the rest 50-63k/s at 1.92; this rule 59-63k/s
 * at 1.83-1.90, and the most with 8 callers.) A promise when some call did not finish synchronously (its
 * arguments are views of inbuf: nothing more is read until it is done).
 */
function runCalls(hsm: Pkcs11Hsm, frames: Buffer[]): Promise<unknown> | undefined {
  const calls: WireCall[] = [];
  for (const f of frames) {
    if (f[0] !== FRAME_CALLS) continue;
    const r = new FrameReader(f);
    r.at = 1;
    while (!r.done) calls.push(readCall(r));
  }
  let later: Promise<void>[] | undefined;
  for (let i = 0; i < calls.length; i++) {
    const c = calls[i]!;
    try {
      const v = hsm.serve(c.method, c.label, c.version, c.cardId, c.alg, c.data, c.mac);
      if (v instanceof Promise) {
        (later ??= []).push(
          v.then(
            (x) => result(c.id, true, x),
            (e: unknown) => result(c.id, false, e),
          ),
        );
      } else result(c.id, true, v);
    } catch (e) {
      result(c.id, false, e);
    }
    const left = calls.length - 1 - i;
    if (left === 0 || (unsent >= 2 && unsent >= left)) sendResults();
  }
  if (!later) return undefined;
  return Promise.all(later).then(sendResults);
}

async function serve(): Promise<void> {
  let first: Buffer | undefined;
  let rest = 0;
  while (!first) {
    if (!readMore()) return;
    const got = completeFrames(inbuf, have);
    first = got.frames[0];
    rest = first ? 4 + first.length : 0;
  }
  if (first[0] !== FRAME_OPEN) return;
  let hsm: Pkcs11Hsm;
  try {
    const options = readJson(Object.assign(new FrameReader(first), { at: 1 })) as Pkcs11HsmOptions;
    hsm = new Pkcs11Hsm({ ...options, calls: 'sync', processes: 0 });
    await hsm.open();
  } catch (e) {
    writeFrame(jsonFrame(FRAME_OPEN, { error: describeError(e) }));
    return;
  }
  consumed(rest);
  writeFrame(jsonFrame(FRAME_OPEN, {}));
  try {
    for (;;) {
      const got = completeFrames(inbuf, have);
      const later = runCalls(hsm, got.frames);
      if (later) await later;
      consumed(got.rest);
      if (!readMore()) return;
    }
  } finally {
    await hsm.close();
  }
}

for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => undefined); // the parent decides when we go
serve().then(
  () => process.exit(0),
  (e: unknown) => {
    process.stderr.write(`PKCS#11 session process: ${describeError(e).message}\n`);
    process.exit(1);
  },
);
