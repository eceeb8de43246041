// PKCS#11 session processes (Pkcs11HsmOptions.processes) on SoftHSM2: calls batched per event-loop turn to a
// child process over the binary protocol on two pipes, the main thread running one call per turn itself.
// Concurrent calls give the answers sequential ones give; an error in one call of a batch reaches only that
// caller, typed; a process killed (SIGKILL) under a batch fails exactly its unanswered calls with HSM_DEVICE,
// nothing is repeated, and the next calls work. Plus the wire codec on its own.

import { readlinkSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HsmBadInputError, HsmKeyNotFoundError, HsmKeyTypeError } from '../../../hsm-bridge/errors.ts';
import { opensslLegacyActive } from '../../../hsm-bridge/pkcs11/binding.ts';
import { Pkcs11Hsm } from '../../../hsm-bridge/pkcs11/pkcs11-hsm.ts';
import { createTempTokens, softhsmMissing } from '../../../hsm-bridge/pkcs11/softhsm-temp.ts';
import {
  FRAME_CALLS,
  FRAME_RESULTS,
  FrameReader,
  FrameSplitter,
  FrameWriter,
  METHOD_INDEX,
  readCall,
  readResult,
  writeCall,
  writeResult,
} from '../../../hsm-bridge/pkcs11/session-protocol.ts';
import { computeMac, diversifyCardKey, keyCheckValue } from '../../../src/crypto/index.ts';
import { CONFORMANCE_KEYS, loadConformanceKeys, REFS } from './conformance.ts';
import { fifoEnds } from './pkcs11-support/fifo-ends.ts';

const missing = softhsmMissing();
const skip = missing ?? (opensslLegacyActive() ? undefined : 'needs --openssl-legacy-provider in this worker (vitest.config.ts execArgv sets it)');
const rig = missing ? undefined : createTempTokens(['purselab-procs']);
afterAll(() => rig?.remove());

let cardSerial = 0;
const freshCards = (n: number): Buffer[] => Array.from({ length: n }, () => Buffer.from(`60555555${String(++cardSerial).padStart(8, '0')}`, 'hex'));
const desKey = (card: Buffer): Buffer => diversifyCardKey(CONFORMANCE_KEYS.desMaster, card, 'DES3-2KEY');
const aesKey = (card: Buffer): Buffer => diversifyCardKey(CONFORMANCE_KEYS.aesMaster, card, 'AES-128');
const DATA = Buffer.from('S1 input: amounts, counters, ids');

/** Wait until the current turn's calls have been shared out (the flush is a setImmediate queued before ours). */
const afterFlush = (): Promise<void> => new Promise((r) => setImmediate(r));

describe.skipIf(!!skip)(`PKCS#11 session processes on SoftHSM2${skip ? ` (skipped: ${skip})` : ''}`, () => {
  let hsm: Pkcs11Hsm;

  beforeAll(async () => {
    const t = rig!.token('purselab-procs');
    hsm = new Pkcs11Hsm({ module: t.module, tokenLabel: t.label, pin: t.pin, processes: 1 });
    await hsm.open();
    await loadConformanceKeys(hsm, { storedKeyAlg3: false, des3KekImport: false });
  });
  afterAll(async () => {
    await hsm?.close();
    expect(hsm.sessionProcessPids).toEqual([]);
    // no pipe end left open here, after a process was killed and replaced and both were closed
    for (let i = 0; i < 100 && fifoEnds(process.pid) > 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(fifoEnds(process.pid)).toBe(0);
  });

  it('falls back to a socket pair on fd 3 where mkfifo cannot run, with the same answers', async () => {
    const t = rig!.token('purselab-procs');
    const path = process.env.PATH;
    process.env.PATH = '/nonexistent';
    const other = new Pkcs11Hsm({ module: t.module, tokenLabel: t.label, pin: t.pin, processes: 1 });
    try {
      await other.open(); // the process starts here, while mkfifo is out of reach
    } finally {
      process.env.PATH = path;
    }
    try {
      const [pid] = other.sessionProcessPids;
      expect(readlinkSync(`/proc/${pid}/fd/3`)).toMatch(/^socket:/);
      const cards = freshCards(12);
      const before = other.sessionProcessStats!;
      const kcvs = await Promise.all(cards.map((c) => other.keyCheckValue({ master: REFS.desMaster, cardId: c })));
      expect(kcvs).toEqual(cards.map((c) => keyCheckValue('DES3-2KEY', desKey(c))));
      expect(other.sessionProcessStats!.batches).toBeGreaterThan(before.batches); // the process did take calls
    } finally {
      await other.close();
    }
  });

  it('talks to its process over two pipes: calls in on its fd 3, results out on its fd 4', () => {
    const [pid] = hsm.sessionProcessPids;
    const link = (fd: number): string => readlinkSync(`/proc/${pid}/fd/${fd}`);
    expect(link(3)).toMatch(/\/purselab-hsm-[^/]+\/calls \(deleted\)$/);
    expect(link(4)).toMatch(/\/purselab-hsm-[^/]+\/results \(deleted\)$/);
    expect(fifoEnds(process.pid)).toBe(2); // the parent's writing and reading ends, nothing else
  });

  it('many concurrent calls give the answers sequential calls give, in batches shared between the process and the main thread', async () => {
    const cards = freshCards(24);
    const run = (c: Buffer, i: number): Promise<unknown> => {
      const des = { master: REFS.desMaster, cardId: c };
      const aes = { master: REFS.aesMaster, cardId: c };
      switch (i % 4) {
        case 0:
          return hsm.macGenerate(des, 'ISO9797-1-ALG3', DATA);
        case 1:
          return hsm.macGenerate(aes, 'AES-CMAC', DATA);
        case 2:
          return hsm.keyCheckValue(des);
        default:
          return hsm.macVerify(aes, 'AES-CMAC', DATA, computeMac('AES-CMAC', aesKey(c), DATA, 16).subarray(0, i % 8 === 3 ? 8 : 4));
      }
    };
    const expected = cards.map((c, i) => {
      switch (i % 4) {
        case 0:
          return computeMac('ISO9797-1-ALG3', desKey(c), DATA, 8);
        case 1:
          return computeMac('AES-CMAC', aesKey(c), DATA, 16);
        case 2:
          return keyCheckValue('DES3-2KEY', desKey(c));
        default:
          return true;
      }
    });
    const sequential: unknown[] = [];
    for (const [i, c] of cards.entries()) sequential.push(await run(c, i));
    expect(sequential).toEqual(expected);

    const before = hsm.sessionProcessStats!;
    // 8 callers, each issuing its next call when its last one is answered: batches form by themselves
    const concurrent: unknown[] = new Array(cards.length);
    let next = 0;
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        for (let i = next++; i < cards.length; i = next++) concurrent[i] = await run(cards[i]!, i);
      }),
    );
    expect(concurrent).toEqual(expected);
    for (const [i, v] of concurrent.entries()) if (i % 4 !== 3) expect(Buffer.isBuffer(v)).toBe(true);
    const after = hsm.sessionProcessStats!;
    const handed = after.calls - before.calls;
    const local = after.local - before.local;
    const frames = after.batches - before.batches;
    expect(handed).toBeGreaterThanOrEqual(cards.length - 1); // the first call of the burst runs the lone way
    expect(local).toBeGreaterThan(0);
    expect(handed - local).toBeGreaterThan(0); // some ran in the process ...
    expect(frames).toBeLessThan(handed - local); // ... several to a message
  });

  it('an error in one call of a batch reaches only its caller, as its own typed class', async () => {
    const cards = freshCards(6);
    const calls = [
      hsm.keyCheckValue({ master: REFS.aesMaster, cardId: cards[0]! }), // runs the lone way (first of the burst)
      hsm.keyCheckValue({ master: REFS.aesMaster, cardId: cards[1]! }), // the main thread's call of the turn
      hsm.keyCheckValue({ master: { label: 'no-such-master', version: 7 }, cardId: cards[2]! }),
      hsm.macGenerate({ master: REFS.aesMaster, cardId: cards[3]! }, 'ISO9797-1-ALG3', DATA),
      hsm.keyCheckValue({ master: REFS.desMaster, cardId: cards[4]! }),
      hsm.macGenerate({ master: REFS.desMaster, cardId: cards[5]! }, 'ISO9797-1-ALG3', DATA),
    ].map((p) => p.then((v) => ({ v }), (e: unknown) => ({ e })));
    const before = hsm.sessionProcessStats!;
    const got = await Promise.all(calls);
    // values for the good calls, rejections for the bad ones
    expect(got.map((x) => ('e' in x ? 'rejected' : 'resolved'))).toEqual(['resolved', 'resolved', 'rejected', 'rejected', 'resolved', 'resolved']);
    const r = got.map((x) => ('e' in x ? x.e : x.v));
    const after = hsm.sessionProcessStats!;
    expect(after.calls - before.calls).toBe(0); // (all handed over before `before` was read)
    // one ran on the main thread, the other four (the failing ones among them) in the process, in one message
    expect(after.local - before.local).toBe(1);
    expect(after.batches - before.batches).toBe(1);
    expect(r[0]).toEqual(keyCheckValue('AES-128', aesKey(cards[0]!)));
    expect(r[1]).toEqual(keyCheckValue('AES-128', aesKey(cards[1]!)));
    expect(r[2]).toBeInstanceOf(HsmKeyNotFoundError);
    expect(r[2]).toMatchObject({ code: 'HSM_KEY_NOT_FOUND', label: 'no-such-master', version: 7 });
    expect(r[3]).toBeInstanceOf(HsmKeyTypeError);
    expect((r[3] as Error).message).toMatch(/ISO9797-1-ALG3/);
    expect(r[4]).toEqual(keyCheckValue('DES3-2KEY', desKey(cards[4]!)));
    expect(r[5]).toEqual(computeMac('ISO9797-1-ALG3', desKey(cards[5]!), DATA, 8));
    // bad input is refused here, before any hand-over, with the same error as without processes
    await expect(hsm.macVerify({ master: REFS.aesMaster, cardId: Buffer.alloc(3) }, 'AES-CMAC', DATA, Buffer.alloc(8))).rejects.toBeInstanceOf(HsmBadInputError);
  });

  it('a process killed (SIGKILL) under a batch fails exactly its unanswered calls with HSM_DEVICE, once; the next calls work', async () => {
    const [pid] = hsm.sessionProcessPids;
    expect(pid).toBeDefined();
    // freshly derived 3DES keys: ~0.3 ms of token work each, so the batch is still running when the kill lands
    const cards = freshCards(40);
    const calls = cards.map((c) => hsm.keyCheckValue({ master: REFS.desMaster, cardId: c }).then((v) => ({ v }), (e: unknown) => ({ e })));
    await afterFlush();
    process.kill(pid!, 'SIGKILL');
    const results = await Promise.all(calls);
    const failed = results.filter((r) => 'e' in r);
    expect(failed.length).toBeGreaterThan(0);
    for (const f of failed) expect((f as { e: { code?: string; message: string } }).e).toMatchObject({ code: 'HSM_DEVICE', message: expect.stringMatching(/not repeated/) });
    // the calls that did not fail have the right answers (the lone one, the main thread's, those answered in time)
    for (const [i, r] of results.entries()) if ('v' in r) expect(r.v).toEqual(keyCheckValue('DES3-2KEY', desKey(cards[i]!)));
    expect(results.length - failed.length).toBeGreaterThanOrEqual(2);

    // the next calls work at once (on the main thread while a new process starts) ...
    const again = freshCards(6);
    expect(await Promise.all(again.map((c) => hsm.keyCheckValue({ master: REFS.aesMaster, cardId: c })))).toEqual(again.map((c) => keyCheckValue('AES-128', aesKey(c))));
    // ... and a new process takes calls again once it has opened the token
    const deadline = Date.now() + 20_000;
    let handedToProcess = 0;
    while (Date.now() < deadline && handedToProcess === 0) {
      const before = hsm.sessionProcessStats!;
      const more = freshCards(6);
      expect(await Promise.all(more.map((c) => hsm.keyCheckValue({ master: REFS.desMaster, cardId: c })))).toEqual(more.map((c) => keyCheckValue('DES3-2KEY', desKey(c))));
      const after = hsm.sessionProcessStats!;
      handedToProcess = after.batches - before.batches;
      if (!handedToProcess) await new Promise((r) => setTimeout(r, 100));
    }
    expect(handedToProcess).toBeGreaterThan(0);
    expect(hsm.sessionProcessPids).toHaveLength(1);
    expect(hsm.sessionProcessPids[0]).not.toBe(pid);
  });
});

describe('session-process wire codec', () => {
  it('round-trips calls and results, frames cut anywhere in the byte stream', () => {
    const w = new FrameWriter(FRAME_CALLS, 8); // small: it must grow
    const card = Buffer.from('6012345678901234', 'hex');
    const data = Buffer.alloc(300, 0xa5);
    writeCall(w, 7, METHOD_INDEX.macVerify, 'issuer-load-aes', 513, card, 'AES-CMAC', data, Buffer.from('01020304', 'hex'));
    writeCall(w, 8, METHOD_INDEX.keyCheckValue, 'm', 0, card, 0, 0, 0);
    const calls = w.finish();
    const r = new FrameReader(calls.subarray(4));
    expect(r.u8()).toBe(FRAME_CALLS);
    expect(readCall(r)).toEqual({ id: 7, method: 0, label: 'issuer-load-aes', version: 513, cardId: card, alg: 'AES-CMAC', data, mac: Buffer.from('01020304', 'hex') });
    expect(readCall(r)).toEqual({ id: 8, method: 2, label: 'm', version: 0, cardId: card, alg: undefined, data: undefined, mac: undefined });
    expect(r.done).toBe(true);

    const out = new FrameWriter(FRAME_RESULTS);
    writeResult(out, 1, true, true);
    writeResult(out, 2, true, false);
    writeResult(out, 3, true, Buffer.from('cafe', 'hex'));
    writeResult(out, 4, false, new HsmKeyNotFoundError('gone', 3));
    const results = out.finish();
    // both frames in one stream, delivered in awkward pieces
    const stream = Buffer.concat([calls, results]);
    const split = new FrameSplitter();
    const frames: Buffer[] = [];
    for (let at = 0; at < stream.length; at += 5) frames.push(...split.push(stream.subarray(at, at + 5)));
    expect(frames.map((f) => f[0])).toEqual([FRAME_CALLS, FRAME_RESULTS]);
    const rr = new FrameReader(frames[1]!);
    rr.at = 1;
    expect(readResult(rr)).toEqual({ id: 1, ok: true, value: true });
    expect(readResult(rr)).toEqual({ id: 2, ok: true, value: false });
    expect(readResult(rr)).toEqual({ id: 3, ok: true, value: Buffer.from('cafe', 'hex') });
    const e = readResult(rr);
    expect(e).toMatchObject({ id: 4, ok: false });
    expect(e.value).toBeInstanceOf(HsmKeyNotFoundError);
    expect(e.value).toMatchObject({ code: 'HSM_KEY_NOT_FOUND', label: 'gone', version: 3 });
    expect(rr.done).toBe(true);
  });
});
