// The serial backend over a real tty: a socat pty pair joins the bridge to `purselab hsm-sim` running as a
// separate process (node bin/purselab.js hsm-sim --serial ...). Interface operations, the payShield commands,
// and every line fault: each gives a typed error, the next command works, and the simulator's journal shows that
// nothing was executed twice.

import { SerialPort } from 'serialport';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setTimeout as sleep } from 'node:timers/promises';
import { join } from 'node:path';
import { keyCheckValue as kcvOf } from '../../../src/crypto/index.ts';
import { rsaOaepWrap } from '../../../hsm-bridge/wrap.ts';
import { SerialHsm } from '../../../hsm-bridge/serial/backend.ts';
import { pc } from '../../../hsm-bridge/serial/commands.ts';
import { encodeSerialFrame, SerialDeframer, wireTimeMs, type DeframeEvent } from '../../../hsm-bridge/serial/framing.ts';
import { SerialHsmError } from '../../../hsm-bridge/serial/errors.ts';
import { executions, ptyHostLine, readJournal, socatMissing, startPtyPair, startSim, tempDir, type PtyPair, type SimProcess } from './serial-support/rig.ts';

const why = socatMissing();
if (why) console.warn(`SKIPPED serial pty tests: ${why}`);

/**
 * How long a client's open() may wait for the simulator's first answer: generous, since CI runs this beside other
 * workers on 2 cores (a client with only its 1.5 s command timeout once failed to open there).
 */
const CONNECT_TIMEOUT_MS = 8000;
const CARD = Buffer.from('4761739001010010', 'hex');

/** Wait (up to 10 s) until `cond` holds. */
async function until(cond: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await sleep(20);
  }
}

/** Run `f`, return the error it throws (fails the test if it does not throw). */
async function failure(f: () => Promise<unknown>): Promise<SerialHsmError & { hsmCode?: string }> {
  try {
    await f();
  } catch (e) {
    return e as SerialHsmError;
  }
  throw new Error('expected an error');
}

describe.skipIf(why !== undefined)(`serial backend over a socat pty pair to hsm-sim in its own process${why ? ` (skipped: ${why})` : ''}`, () => {
  let tmp: ReturnType<typeof tempDir>;
  let pty: PtyPair;
  let sim: SimProcess;
  let hsm: SerialHsm;
  let journal: string;
  let keystore: string;
  let n = 0;
  const label = (what: string): string => `${what}-${++n}`;

  const startSimulator = async (): Promise<SimProcess> => startSim({ serial: pty.simPath, keystore, journal, allowFaults: true });

  beforeAll(async () => {
    tmp = tempDir();
    journal = join(tmp.dir, 'journal.jsonl');
    keystore = join(tmp.dir, 'sim.store');
    pty = await startPtyPair(tmp.dir);
    sim = await startSimulator();
    hsm = new SerialHsm({ line: ptyHostLine(pty), timeoutMs: 3000, retries: 0, connectTimeoutMs: CONNECT_TIMEOUT_MS });
    await hsm.open();
  }, 60_000);

  afterAll(async () => {
    await hsm?.close();
    await sim?.stop();
    await pty?.kill();
    tmp?.cleanup();
  });

  it('refuses to work before open() with HSM_NOT_OPEN', async () => {
    const closed = new SerialHsm({ line: { kind: 'serial', path: pty.hostPath } });
    expect((await failure(() => closed.randomBytes(4))).code).toBe('HSM_NOT_OPEN');
  });

  it('NC diagnostics is health(): LMK check value and firmware number', async () => {
    const d = await hsm.diagnostics();
    expect(d.lmkCheck).toMatch(/^[0-9A-F]{16}$/);
    expect(d.firmware).toBe('PL-SIM-01');
    const h = await hsm.health();
    expect(h).toMatchObject({ ok: true, backend: 'serial' });
    expect(h.detail).toContain(d.lmkCheck);
  });

  it('A0 generates a key under the LMK and BU gives its check value (6H and 16H)', async () => {
    const tak = await hsm.generateKeyUnderLmk('003');
    expect(tak.keyUnderLmk).toMatch(/^U[0-9A-F]{32}$/);
    expect(tak.kcv).toMatch(/^[0-9A-F]{6}$/);
    expect(await hsm.keyCheckValueOfToken(tak.keyUnderLmk, { keyType: '003' })).toBe(tak.kcv);
    // 16H needs a key the HSM may encrypt with: a ZEK (00A) may, a TAK may not (error 29).
    const zek = await hsm.generateKeyUnderLmk('00A');
    const long = await hsm.keyCheckValueOfToken(zek.keyUnderLmk, { long: true });
    expect(long).toMatch(/^[0-9A-F]{16}$/);
    expect(long.startsWith(zek.kcv)).toBe(true);
    expect(await failure(() => hsm.keyCheckValueOfToken(tak.keyUnderLmk, { long: true }))).toMatchObject({ code: 'HSM_ERROR', hsmCode: '29' });
    expect(await failure(() => hsm.keyCheckValueOfToken('U' + '0'.repeat(32)))).toMatchObject({ code: 'HSM_ERROR', hsmCode: '10' });
    expect(await failure(() => hsm.generateKeyUnderLmk('0ZZ'))).toMatchObject({ code: 'HSM_ERROR', hsmCode: '04' });
  });

  it('runs every operation of the Hsm interface', async () => {
    const mk = { label: label('issuer-mk'), version: 1 };
    const info = await hsm.generateKey(mk, 'DES3-2KEY', ['mac', 'derive']);
    expect(info).toMatchObject({ label: mk.label, version: 1, type: 'DES3-2KEY', usage: ['mac', 'derive'] });
    expect((await hsm.listKeys()).filter((k) => k.label === mk.label)).toEqual([info]);
    expect((await hsm.keyCheckValue(mk)).toString('hex').toUpperCase()).toBe(info.kcv);

    const cardKey = { master: mk, cardId: CARD };
    for (const alg of ['ISO9797-1-ALG1', 'ISO9797-1-ALG3'] as const) {
      const mac = await hsm.macGenerate(cardKey, alg, Buffer.from('S1 data'));
      expect(mac).toHaveLength(8);
      expect(await hsm.macVerify(cardKey, alg, Buffer.from('S1 data'), mac)).toBe(true);
      expect(await hsm.macVerify(cardKey, alg, Buffer.from('S1 dat4'), mac)).toBe(false);
      expect(await hsm.macVerify(cardKey, alg, Buffer.from('S1 data'), mac.subarray(0, 4))).toBe(true);
    }
    expect(await hsm.keyCheckValue(cardKey)).toHaveLength(3);

    const aes = { label: label('aes'), version: 2 };
    await hsm.generateKey(aes, 'AES-128', ['mac', 'encrypt']);
    const cmac = await hsm.macGenerate(aes, 'AES-CMAC', Buffer.alloc(100, 7));
    expect(cmac).toHaveLength(16);
    expect(await hsm.macVerify(aes, 'AES-CMAC', Buffer.alloc(100, 7), cmac)).toBe(true);
    const iv = Buffer.alloc(16, 1);
    const plain = Buffer.from('0123456789abcdef0123456789abcdef');
    const ct = await hsm.encrypt(aes, 'CBC', iv, plain);
    expect(ct.equals(plain)).toBe(false);
    expect(await hsm.decrypt(aes, 'CBC', iv, ct)).toEqual(plain);

    const r = await hsm.randomBytes(32);
    expect(r).toHaveLength(32);

    // RSA: a transport key pair, a key imported under it (wrapped on the host side, never clear on the line).
    const rsa = { label: label('transport'), version: 1 };
    const { publicKeyDer } = await hsm.generateRsaKeyPair(rsa, 2048);
    const sig = await hsm.sign(rsa, Buffer.from('record'));
    expect(sig).toHaveLength(256);
    expect(await hsm.verify(rsa, Buffer.from('record'), sig)).toBe(true);
    expect(await hsm.verify(rsa, Buffer.from('recorD'), sig)).toBe(false);
    const clear = Buffer.from('00112233445566778899AABBCCDDEEFF', 'hex');
    const imported = await hsm.importKey({ label: label('imported'), version: 1 }, 'AES-128', ['encrypt'], rsaOaepWrap(publicKeyDer, clear), rsa);
    expect(imported.kcv).toBe(kcvOf('AES-128', clear).toString('hex').toUpperCase());
  }, 60_000);

  it('relays interface errors with the software backend\'s codes', async () => {
    const k = { label: label('k'), version: 1 };
    await hsm.generateKey(k, 'DES3-2KEY', ['encrypt']);
    expect(await failure(() => hsm.keyCheckValue({ label: 'no-such-key', version: 9 }))).toMatchObject({ code: 'HSM_KEY_NOT_FOUND', hsmCode: 'P0' });
    expect(await failure(() => hsm.generateKey(k, 'DES3-2KEY', ['encrypt']))).toMatchObject({ code: 'HSM_KEY_EXISTS', hsmCode: 'P1' });
    expect(await failure(() => hsm.macGenerate(k, 'ISO9797-1-ALG3', Buffer.from('x')))).toMatchObject({ code: 'HSM_KEY_USAGE', hsmCode: '29' });
    expect(await failure(() => hsm.macGenerate(k, 'AES-CMAC', Buffer.from('x')))).toMatchObject({ code: 'HSM_KEY_USAGE' });
    expect(await failure(() => hsm.encrypt(k, 'CBC', Buffer.alloc(7), Buffer.alloc(8)))).toMatchObject({ code: 'HSM_BAD_INPUT', hsmCode: '15' });
    expect(await failure(() => hsm.generateKey({ label: 'bad label!', version: 1 }, 'AES-128', ['mac']))).toMatchObject({ code: 'HSM_BAD_INPUT' });
    // Arguments the wire cannot carry fail before the line, with the same code.
    expect(await failure(() => hsm.generateKey({ label: 'x', version: -1 }, 'AES-128', ['mac']))).toMatchObject({ code: 'HSM_BAD_INPUT' });
  });

  it('payment operations are native: one host command each, executed inside the HSM', async () => {
    await hsm.generateKey({ label: 'opal-record-enc', version: 1 }, 'AES-128', ['derive']);
    await hsm.generateKey({ label: 'opal-record-mac', version: 1 }, 'AES-128', ['derive']);
    const before = { qm: executions(journal, 'qm'), qo: executions(journal, 'qo'), pm: executions(journal, 'pm'), pq: executions(journal, 'pq') };
    const record = Buffer.from('{"balance":500}');
    const sealed = await hsm.payment.sealRecord('9990010000000017', record);
    expect(await hsm.payment.openRecord('9990010000000017', sealed)).toEqual(record);
    expect((await failure(() => hsm.payment.openRecord('9990010000000025', sealed))).code).toBe('HSM_RECORD_INTEGRITY');
    expect(executions(journal, 'qm')).toBe(before.qm + 1);
    expect(executions(journal, 'qo')).toBe(before.qo + 2);
    expect(executions(journal, 'pm') + executions(journal, 'pq')).toBe(before.pm + before.pq);
  });

  // ---- faults ------------------------------------------------------------------------------------------------

  /** Arm a fault for the next generateKey, run it, and check: typed error, executed once, next command fine. */
  async function generateUnderFault(kind: 'garble' | 'bad-lrc' | 'bad-header' | 'noise' | 'drop', code: string): Promise<void> {
    const ref = { label: label(kind), version: 1 };
    const before = executions(journal, 'pc');
    const resentBefore = hsm.client.stats.resent;
    await hsm.armSimulatorFault({ kind, match: 'pc' });
    const e = await failure(() => hsm.generateKey(ref, 'DES3-2KEY', ['mac']));
    expect(e).toBeInstanceOf(SerialHsmError);
    expect(e.code, e.message).toBe(code);
    expect(e.outcomeUnknown).toBe(true);
    expect(executions(journal, 'pc')).toBe(before + 1);
    expect(hsm.client.stats.resent).toBe(resentBefore);
    // The key was made once; the caller can see it (and must, before trying again under that label).
    expect((await hsm.listKeys()).filter((k) => k.label === ref.label)).toHaveLength(1);
    const next = { label: label('after-' + kind), version: 1 };
    await hsm.generateKey(next, 'AES-128', ['mac']);
    expect(executions(journal, 'pc')).toBe(before + 2);
  }

  it('garbled answer: GARBLED, executed once, next command works', () => generateUnderFault('garble', 'GARBLED'));
  it('wrong LRC on the answer: BAD_LRC', () => generateUnderFault('bad-lrc', 'BAD_LRC'));
  it('wrong header on the answer: BAD_HEADER', () => generateUnderFault('bad-header', 'BAD_HEADER'));
  it('line noise instead of an answer: GARBLED', () => generateUnderFault('noise', 'GARBLED'));
  it('no answer: TIMEOUT', () => generateUnderFault('drop', 'TIMEOUT'));

  it('a late answer after a timeout is discarded by header, not taken for the next command', async () => {
    const staleBefore = hsm.client.stats.stale;
    await hsm.armSimulatorFault({ kind: 'delay', ms: 4500, match: 'pq' }); // longer than the 3 s timeout
    expect((await failure(() => hsm.randomBytes(8))).code).toBe('TIMEOUT');
    // The simulator is still busy answering late: the next command waits its turn on the line.
    const mac = await hsm.macGenerate({ master: { label: 'no-such', version: 1 }, cardId: CARD }, 'ISO9797-1-ALG3', Buffer.from('x')).catch((e) => e);
    expect(mac.code).toBe('HSM_KEY_NOT_FOUND');
    expect(hsm.client.stats.stale).toBe(staleBefore + 1);
  });

  it('idempotent commands are resent after a lost answer; generate never is', async () => {
    const resending = new SerialHsm({ line: ptyHostLine(pty), timeoutMs: 1500, retries: 2, connectTimeoutMs: CONNECT_TIMEOUT_MS });
    await hsm.close();
    try {
      await resending.open();
      const k = { label: label('retry'), version: 1 };
      await resending.generateKey(k, 'DES3-2KEY', ['mac']);
      const mac = await resending.macGenerate(k, 'ISO9797-1-ALG3', Buffer.from('m'));
      const pkBefore = executions(journal, 'pk');
      await resending.armSimulatorFault({ kind: 'drop', match: 'pk' });
      expect(await resending.macVerify(k, 'ISO9797-1-ALG3', Buffer.from('m'), mac)).toBe(true);
      expect(executions(journal, 'pk')).toBe(pkBefore + 2); // the documented resend of an idempotent command
      expect(resending.client.stats.resent).toBe(1);
      const pcBefore = executions(journal, 'pc');
      await resending.armSimulatorFault({ kind: 'drop', match: 'pc' });
      expect((await failure(() => resending.generateKey({ label: label('once'), version: 1 }, 'AES-128', ['mac']))).code).toBe('TIMEOUT');
      expect(executions(journal, 'pc')).toBe(pcBefore + 1);
      expect(resending.client.stats.resent).toBe(1);
    } finally {
      await resending.close();
      await hsm.open();
    }
  }, 30_000);

  it('simulator killed mid-command: TIMEOUT; after a restart the next command works; nothing ran twice', async () => {
    const ref = { label: label('mid-kill'), version: 1 };
    const before = executions(journal, 'pc');
    await hsm.armSimulatorFault({ kind: 'delay', ms: 5000, match: 'pc' }); // executes, then sits on the answer
    const pending = failure(() => hsm.generateKey(ref, 'DES3-2KEY', ['mac']));
    await until(() => executions(journal, 'pc') === before + 1, 'the simulator executed the command');
    await sim.stop('SIGKILL');
    const e = await pending;
    expect(e.code, e.message).toBe('TIMEOUT');
    expect(e.outcomeUnknown).toBe(true);
    sim = await startSimulator();
    expect((await hsm.listKeys()).filter((k) => k.label === ref.label)).toHaveLength(1);
    expect(executions(journal, 'pc')).toBe(before + 1);
    // die-before: the command never ran, and is not run after the restart either.
    const ref2 = { label: label('died-before'), version: 1 };
    await hsm.armSimulatorFault({ kind: 'die-before', match: 'pc' });
    expect((await failure(() => hsm.generateKey(ref2, 'DES3-2KEY', ['mac']))).code).toBe('TIMEOUT');
    expect((await sim.exited).code).toBe(75);
    sim = await startSimulator();
    expect((await hsm.listKeys()).filter((k) => k.label === ref2.label)).toHaveLength(0);
    expect(readJournal(journal).filter((j) => j.code === 'pc' && j.fault === 'die-before')).toHaveLength(1);
    expect(executions(journal, 'pc')).toBe(before + 1);
  }, 60_000);

  it('pty closed under a command: LINE_DOWN; the line comes back, the client reconnects, next command works', async () => {
    const ref = { label: label('pty-closed'), version: 1 };
    const before = executions(journal, 'pc');
    const reconnects = hsm.client.stats.reconnects;
    await hsm.armSimulatorFault({ kind: 'delay', ms: 8000, match: 'pc' });
    // A long timeout for this one command: only the line going down may end it (a loaded machine can take a
    // while to generate the key, fsync the key store and tear the pty pair down).
    const pending = failure(() => hsm.client.execute(pc, { ref, type: 'DES3-2KEY', usage: ['mac'] }, { timeoutMs: 20_000 }));
    await until(() => executions(journal, 'pc') === before + 1, 'the simulator executed the command');
    await pty.kill();
    const e = await pending;
    expect(e.code, e.message).toBe('LINE_DOWN');
    expect(e.outcomeUnknown).toBe(true);
    // While the line is down, a command waits for it (connectTimeoutMs) rather than failing at once.
    // Same paths; the simulator reopens its side by itself. Promise.all keeps the queued command's rejection handled.
    const [bytes, restarted] = await Promise.all([hsm.randomBytes(4), startPtyPair(tmp.dir)]);
    pty = restarted;
    expect(bytes).toHaveLength(4);
    expect(hsm.client.stats.reconnects).toBe(reconnects + 1);
    expect(executions(journal, 'pc')).toBe(before + 1);
    expect((await hsm.listKeys()).filter((k) => k.label === ref.label)).toHaveLength(1);
  }, 60_000);

  it('answers at the line\'s speed: a round trip takes at least the bytes\' wire time at 115200 baud', async () => {
    await hsm.diagnostics();
    const t0 = performance.now();
    for (let i = 0; i < 5; i++) await hsm.diagnostics();
    const perCall = (performance.now() - t0) / 5;
    const wire = wireTimeMs(9 + 36, 115200); // NC frame 9 bytes, ND frame 36 bytes
    // Never faster than the line (the benchmark measures how close to it; a loaded machine only adds).
    expect(perCall).toBeGreaterThanOrEqual(wire * 0.98);
  });

  // ---- the simulator's side of bad requests, with a raw tty (no client in the way) ------------------------------

  it('simulator: bad LRC gets error 90 and is not executed; noise, short and unknown frames per the document', async () => {
    await hsm.close();
    const port = new SerialPort({ path: pty.hostPath, baudRate: 115200, autoOpen: false });
    await new Promise<void>((r, j) => port.open((e) => (e ? j(e) : r())));
    const deframer = new SerialDeframer();
    const inbox: DeframeEvent[] = [];
    port.on('data', (d: Buffer) => inbox.push(...deframer.push(d)));
    const exchange = async (bytes: Buffer, expectAnswer = true): Promise<string | undefined> => {
      inbox.length = 0;
      port.write(bytes);
      const deadline = Date.now() + (expectAnswer ? 3000 : 400);
      while (Date.now() < deadline && !inbox.some((e) => e.kind === 'frame')) await sleep(10);
      const f = inbox.find((e) => e.kind === 'frame');
      return f && f.kind === 'frame' ? f.message.toString('latin1') : undefined;
    };
    try {
      const pqBefore = executions(journal, 'pq');
      const bad = encodeSerialFrame(Buffer.from('R001pq0004', 'latin1'));
      bad[bad.length - 1] = bad[bad.length - 1]! ^ 0x01;
      expect(await exchange(bad)).toBe('R001pr90');
      expect(executions(journal, 'pq')).toBe(pqBefore);
      // noise before a frame is dropped, the frame answered
      expect(await exchange(Buffer.concat([Buffer.from([0xff, 0x41, 0x13]), encodeSerialFrame(Buffer.from('R002NC', 'latin1'))]))).toMatch(/^R002ND00[0-9A-F]{16}PL-SIM-01$/);
      // too short to hold header + code: ignored
      expect(await exchange(encodeSerialFrame(Buffer.from('R00', 'latin1')), false)).toBeUndefined();
      // unknown command: 68; bad fields: 15; non-printable: 15; trailer echoed
      expect(await exchange(encodeSerialFrame(Buffer.from('R003QQ', 'latin1')))).toBe('R003QR68');
      expect(await exchange(encodeSerialFrame(Buffer.from('R004pq12', 'latin1')))).toMatch(/^R004pr15/);
      expect(await exchange(encodeSerialFrame(Buffer.from([0x52, 0x30, 0x30, 0x35, 0x70, 0x71, 0x80])))).toBe('R005pr15');
      expect(await exchange(encodeSerialFrame(Buffer.concat([Buffer.from('R006NC', 'latin1'), Buffer.from([0x19]), Buffer.from('TR', 'latin1')])))).toMatch(/\x19TR$/);
      // a host with a longer header than the simulator's gets answers it cannot match (BAD_HEADER on the client)
      expect(await exchange(encodeSerialFrame(Buffer.from('R00007NC', 'latin1')))).toBe('R0000868');
    } finally {
      await new Promise<void>((r) => port.close(() => r()));
      await hsm.open();
    }
  }, 30_000);
});
