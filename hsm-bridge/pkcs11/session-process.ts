// A PKCS#11 session process: one Pkcs11Hsm with synchronous calls, serving whole operations for a parent
// Pkcs11Hsm (Pkcs11HsmOptions.processes, hsm-bridge/pkcs11/session-processes.ts). Its own module instance,
// sessions and login: SoftHSM2 in one process does not run faster on more threads, but it does in more
// processes.
//
// It has one job, so it does it without an event loop in the way: it reads whatever frames of calls the
// parent has written to fd 3 with a blocking read (asleep in the kernel until the parent writes), runs their
// calls on its sessions, writing each call's result as soon as it has it (so the parent can issue that
// caller's next call while this process works on the rest: it keeps work queued here and this process
// busy), and reads again (session-protocol.ts). It leaves when the parent closes its end (end of file: the
// parent closed it, or died).

import { readSync, writeSync } from 'node:fs';
import { Pkcs11Hsm, type Pkcs11HsmOptions } from './pkcs11-hsm.ts';
import { FRAME_CALLS, FRAME_OPEN, FRAME_RESULTS, FrameReader, FrameWriter, describeError, jsonFrame, readCall, readJson, writeResult } from './session-protocol.ts';

const FD = 3;

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
      if (code !== 'EAGAIN' && code !== 'EINTR') return false; // (the socket is blocking: EAGAIN is not expected)
    }
  }
}

/** The complete frames' payloads (type byte first) in inbuf from `from`, and where the unread rest starts. */
function completeFrames(from: number): { frames: Buffer[]; rest: number } {
  const frames: Buffer[] = [];
  let at = from;
  while (have - at >= 4) {
    const n = inbuf.readUInt32BE(at);
    if (have - at - 4 < n) break;
    frames.push(inbuf.subarray(at + 4, at + 4 + n));
    at += 4 + n;
  }
  return { frames, rest: at };
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
      at += writeSync(FD, b, at, b.length - at);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'EAGAIN' && code !== 'EINTR') throw e;
    }
  }
}

const out = new FrameWriter(FRAME_RESULTS);

/** One call's result to the parent at once (not after the whole batch: the parent can issue that caller's next call meanwhile). */
function answer(id: number, ok: boolean, value: unknown): void {
  out.reset();
  writeResult(out, id, ok, value);
  writeFrame(out.finish());
}

/** Run the calls of one frame; a promise when some did not finish synchronously. */
function runCalls(hsm: Pkcs11Hsm, frame: Buffer): Promise<unknown> | undefined {
  const r = new FrameReader(frame);
  r.at = 1;
  let later: Promise<void>[] | undefined;
  while (!r.done) {
    const c = readCall(r);
    try {
      const v = hsm.serve(c.method, c.label, c.version, c.cardId, c.alg, c.data, c.mac);
      // (its arguments are views of inbuf: nothing more is read until it is done)
      if (v instanceof Promise) {
        (later ??= []).push(
          v.then(
            (x) => answer(c.id, true, x),
            (e: unknown) => answer(c.id, false, e),
          ),
        );
      } else answer(c.id, true, v);
    } catch (e) {
      answer(c.id, false, e);
    }
  }
  return later && Promise.all(later);
}

async function serve(): Promise<void> {
  let first: Buffer | undefined;
  let rest = 0;
  while (!first) {
    if (!readMore()) return;
    const got = completeFrames(0);
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
      const got = completeFrames(0);
      for (const f of got.frames) {
        if (f[0] !== FRAME_CALLS) continue;
        const later = runCalls(hsm, f);
        if (later) await later;
      }
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
