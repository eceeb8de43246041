// The PKCS#11 backend on SoftHSM2 in a temp token directory: the conformance suite (async and sync calls),
// the default 'auto' calls (a lone caller synchronous, concurrent callers on the *Async overloads with the
// same answers), keys made by OpenSC's pkcs11-tool, and the faults (missing module, wrong PIN, missing key, logged out,
// sessions closed, token removed), each a typed error, repaired on the next call, never silently repeated.
//
// SoftHSM2 inside Node uses Node's OpenSSL 3, whose single DES is in the legacy provider; derived 3DES card
// keys need it (docs/hsm-bridge.md). vitest.config.ts starts every worker with --openssl-legacy-provider;
// a worker without it skips the suites below and says why.

import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { acquireModule, moduleLoaded, opensslLegacyActive, pkcs11js, releaseModule, type Handle } from '../../../hsm-bridge/pkcs11/binding.ts';
import { TORN_OPEN_ATTEMPTS } from '../../../hsm-bridge/pkcs11/torn-token.ts';
import { Pkcs11Hsm, type Pkcs11HsmOptions } from '../../../hsm-bridge/pkcs11/pkcs11-hsm.ts';
import { computeMac, keyCheckValue, cbcEncrypt, diversifyCardKey } from '../../../src/crypto/index.ts';
import { HsmKeyNotFoundError } from '../../../hsm-bridge/errors.ts';
import { codeOf, CONFORMANCE_KEYS, loadConformanceKeys, REFS, runConformance } from './conformance.ts';
import { createTempTokens, pkcs11ToolMissing, softhsmMissing, type TempToken } from '../../../hsm-bridge/pkcs11/softhsm-temp.ts';

const missing = softhsmMissing();
const legacy = opensslLegacyActive();
const skip = missing ?? (legacy ? undefined : 'needs --openssl-legacy-provider in this worker (vitest.config.ts execArgv sets it)');

// Every token this file uses, made before the module is first initialised.
const rig = missing ? undefined : createTempTokens(['purselab-conf', 'purselab-conf-sync', 'purselab-faults', 'purselab-cfg']);
afterAll(() => rig?.remove());

const options = (t: TempToken, extra: Partial<Pkcs11HsmOptions> = {}): Pkcs11HsmOptions => ({ module: t.module, tokenLabel: t.label, pin: t.pin, ...extra });

// SoftHSM2 has no CKM_EXTRACT_KEY_FROM_KEY (stored-key ALG3) and cannot unwrap with CKM_DES3_ECB.
const caps = { storedKeyAlg3: false, des3KekImport: false };
runConformance('pkcs11 / SoftHSM2 (async calls, derived-key cache)', async () => new Pkcs11Hsm(options(rig!.token('purselab-conf'), { calls: 'async' })), caps, skip ? { skip } : {});
// A second, empty token: the conformance suite starts from no keys.
runConformance(
  'pkcs11 / SoftHSM2 (sync calls, no derived-key cache)',
  async () => new Pkcs11Hsm(options(rig!.token('purselab-conf-sync'), { calls: 'sync', derivedKeyCache: { max: 0 } })),
  caps,
  skip ? { skip } : {},
);

describe.skipIf(!!skip)(`PKCS#11 backend on SoftHSM2${skip ? ` (skipped: ${skip})` : ''}`, () => {
  let t: TempToken;
  let hsm: Pkcs11Hsm;
  let lib: ReturnType<typeof acquireModule>;
  let P: ReturnType<typeof pkcs11js>;

  beforeAll(async () => {
    t = rig!.token('purselab-faults');
    hsm = new Pkcs11Hsm(options(t, { sessions: 3 }));
    await hsm.open();
    await loadConformanceKeys(hsm, caps);
    lib = acquireModule(t.module);
    P = pkcs11js();
  });
  afterAll(async () => {
    await hsm?.close();
    if (lib) releaseModule(t.module);
  });

  /** Run fn on a session of our own (as another application component would). */
  const withOwnSession = <T>(fn: (s: Handle) => T): T => {
    const s = lib.C_OpenSession(hsm.slotId!, P.CKF_SERIAL_SESSION | P.CKF_RW_SESSION);
    try {
      return fn(s);
    } finally {
      try {
        lib.C_CloseSession(s);
      } catch {
        /* closed by the test itself */
      }
    }
  };
  const attrs = (s: Handle, label: string, types: number[]): Buffer[] => {
    lib.C_FindObjectsInit(s, [{ type: P.CKA_LABEL, value: label }]);
    const [h] = lib.C_FindObjects(s, 1);
    lib.C_FindObjectsFinal(s);
    return lib.C_GetAttributeValue(s, h!, types.map((type) => ({ type }))).map((a) => a.value);
  };
  /** Secret-key session objects of the application: derived card keys (derive false) or master copies (derive true). */
  const sessionSecretKeys = (derive: boolean): number =>
    withOwnSession((s) => {
      lib.C_FindObjectsInit(s, [{ type: P.CKA_CLASS, value: P.CKO_SECRET_KEY }, { type: P.CKA_TOKEN, value: false }, { type: P.CKA_DERIVE, value: derive }]);
      const n = lib.C_FindObjects(s, 1000).length;
      lib.C_FindObjectsFinal(s);
      return n;
    });
  /** Count calls of a pkcs11js method while fn runs. */
  const counting = async <T>(method: 'C_GenerateKey' | 'C_GenerateKeyAsync' | 'C_Login' | 'C_DeriveKey' | 'C_DeriveKeyAsync' | 'C_CopyObject', fn: () => Promise<T>): Promise<{ calls: number; result: T | Error }> => {
    const target = lib as unknown as Record<string, (...a: unknown[]) => unknown>;
    const orig = target[method]!;
    let calls = 0;
    target[method] = (...a: unknown[]) => {
      calls++;
      return orig.apply(lib, a);
    };
    try {
      const result = await fn().catch((e: Error) => e);
      return { calls, result };
    } finally {
      target[method] = orig;
    }
  };

  it('creates keys sensitive, never extractable, private token objects with label and version in CKA_ID', async () => {
    await hsm.generateKey({ label: 'attr-check', version: 258 }, 'AES-128', ['mac']);
    const v = withOwnSession((s) => {
      return attrs(s, 'attr-check', [P.CKA_SENSITIVE, P.CKA_EXTRACTABLE, P.CKA_NEVER_EXTRACTABLE, P.CKA_TOKEN, P.CKA_PRIVATE, P.CKA_ID, P.CKA_VERIFY, P.CKA_DECRYPT]);
    });
    expect(v.map((b) => b.toString('hex'))).toEqual(['01', '00', '01', '01', '01', '0102', '01', '00']);
  });

  it('uses keys made by OpenSC pkcs11-tool under the same labels', async (ctx) => {
    const why = pkcs11ToolMissing();
    if (why) ctx.skip(why);
    const desFile = join(t.dir, 'des.bin');
    const aesFile = join(t.dir, 'aes.bin');
    writeFileSync(desFile, CONFORMANCE_KEYS.desMac);
    writeFileSync(aesFile, CONFORMANCE_KEYS.aesKey);
    const login = ['--login', '--pin', t.pin];
    t.pkcs11Tool([...login, '--write-object', desFile, '--type', 'secrkey', '--key-type', 'DES3:16', '--label', 'tool-des', '--id', '0001', '--sensitive']);
    t.pkcs11Tool([...login, '--write-object', aesFile, '--type', 'secrkey', '--key-type', 'AES:16', '--label', 'tool-aes', '--id', '0005', '--sensitive']);
    t.pkcs11Tool([...login, '--keygen', '--key-type', 'AES:16', '--label', 'tool-aes-gen', '--id', '0001']);

    const keys = await hsm.listKeys();
    expect(keys.find((k) => k.label === 'tool-des')).toEqual({ label: 'tool-des', version: 1, type: 'DES3-2KEY', usage: ['mac', 'encrypt', 'wrap'], kcv: keyCheckValue('DES3-2KEY', CONFORMANCE_KEYS.desMac).toString('hex').toUpperCase() });
    expect(keys.find((k) => k.label === 'tool-aes')).toMatchObject({ version: 5, type: 'AES-128', kcv: keyCheckValue('AES-128', CONFORMANCE_KEYS.aesKey).toString('hex').toUpperCase() });
    const d = Buffer.from('data for a key made by pkcs11-tool');
    expect(await hsm.macGenerate({ label: 'tool-des', version: 1 }, 'ISO9797-1-ALG1', d)).toEqual(computeMac('ISO9797-1-ALG1', CONFORMANCE_KEYS.desMac, d, 8));
    expect(await hsm.macGenerate({ label: 'tool-aes', version: 5 }, 'AES-CMAC', d)).toEqual(computeMac('AES-CMAC', CONFORMANCE_KEYS.aesKey, d, 16));
    const iv = Buffer.alloc(8, 3);
    const pt = Buffer.alloc(16, 9);
    expect(await hsm.encrypt({ label: 'tool-des', version: 1 }, 'CBC', iv, pt)).toEqual(cbcEncrypt('DES3-2KEY', CONFORMANCE_KEYS.desMac, iv, pt));
    // A key whose value nobody outside the token knows: consistent with itself.
    const gen = { label: 'tool-aes-gen', version: 1 };
    const mac = await hsm.macGenerate(gen, 'AES-CMAC', d);
    expect(await hsm.macVerify(gen, 'AES-CMAC', d, mac)).toBe(true);
    expect((await hsm.keyCheckValue(gen)).toString('hex').toUpperCase()).toBe(keys.find((k) => k.label === 'tool-aes-gen')!.kcv);
    // pkcs11-tool cannot set CKA_DERIVE on a secret key: such a key is no master, and the error says so.
    expect(await codeOf(hsm.keyCheckValue({ master: { label: 'tool-des', version: 1 }, cardId: Buffer.from('6012345678901234', 'hex') }))).toBe('HSM_KEY_USAGE');
  });

  it('names the missing mechanism', async () => {
    const e1 = await hsm.macGenerate(REFS.desMac, 'ISO9797-1-ALG3', Buffer.alloc(3)).catch((e) => e);
    expect(e1).toMatchObject({ code: 'HSM_MECHANISM_UNSUPPORTED', mechanism: 'CKM_EXTRACT_KEY_FROM_KEY' });
    const e2 = await hsm.importKey({ label: 'x', version: 1 }, 'AES-128', ['mac'], Buffer.alloc(16), REFS.desKek).catch((e) => e);
    expect(e2).toMatchObject({ code: 'HSM_MECHANISM_UNSUPPORTED', mechanism: 'CKM_DES3_ECB' });
    expect(e2.message).toContain('CKM_DES3_ECB');
  });

  it('missing key label: HSM_KEY_NOT_FOUND naming label and version', async () => {
    const e = await hsm.macGenerate({ label: 'no-such-key', version: 4 }, 'AES-CMAC', Buffer.alloc(1)).catch((x) => x);
    expect(e).toMatchObject({ code: 'HSM_KEY_NOT_FOUND', label: 'no-such-key', version: 4 });
    expect(e.message).toContain("'no-such-key' version 4");
  });

  it('logged out underneath: typed error, nothing repeated, the next call logs in and works', async () => {
    const ref = { label: 'after-logout', version: 1 };
    withOwnSession((s) => lib.C_Logout(s));
    // a lone caller: synchronous calls unless the backend is told 'async'
    const first = await counting(hsm.options.calls === 'async' ? 'C_GenerateKeyAsync' : 'C_GenerateKey', () => hsm.generateKey(ref, 'AES-128', ['mac']));
    expect((first.result as { code?: string }).code).toBe('HSM_NOT_LOGGED_IN');
    expect(first.calls).toBeLessThanOrEqual(1);
    const second = await counting('C_Login', () => hsm.macGenerate(REFS.aesKey, 'AES-CMAC', Buffer.from('ok')));
    expect(second.result).toEqual(computeMac('AES-CMAC', CONFORMANCE_KEYS.aesKey, Buffer.from('ok'), 16));
    expect(second.calls).toBe(1);
    // The failed generate was not silently done: the key is absent until asked again, then made once.
    expect((await hsm.listKeys()).some((k) => k.label === ref.label)).toBe(false);
    await hsm.generateKey(ref, 'AES-128', ['mac']);
    expect((await hsm.listKeys()).filter((k) => k.label === ref.label)).toHaveLength(1);
  });

  it('a derived-key op after logout fails typed, and works on the next call', async () => {
    const spec = { master: REFS.desMaster, cardId: Buffer.from('6012345678901234', 'hex') };
    const kcv = await hsm.keyCheckValue(spec); // now cached as session objects
    expect(hsm.masterCopies).toBeGreaterThanOrEqual(1);
    withOwnSession((s) => lib.C_Logout(s));
    expect(await codeOf(hsm.keyCheckValue(spec))).toBe('HSM_NOT_LOGGED_IN');
    expect(hsm.masterCopies).toBe(0); // the logout took the master copies with it: forgotten
    expect(await hsm.keyCheckValue(spec)).toEqual(kcv);
    expect(hsm.masterCopies).toBe(1); // a new copy of this one master, made after the new login
  });

  it('sessions closed underneath: HSM_SESSION_CLOSED, then new sessions and a new login', async () => {
    lib.C_CloseAllSessions(hsm.slotId!);
    expect(await codeOf(hsm.macGenerate(REFS.aesKey, 'AES-CMAC', Buffer.from('a')))).toBe('HSM_SESSION_CLOSED');
    expect(await hsm.macGenerate(REFS.aesKey, 'AES-CMAC', Buffer.from('a'))).toEqual(computeMac('AES-CMAC', CONFORMANCE_KEYS.aesKey, Buffer.from('a'), 16));
    expect((await hsm.health()).ok).toBe(true);
  });

  it('token removed (CKR_DEVICE_REMOVED): HSM_TOKEN_REMOVED, then the token is looked up again', async () => {
    const target = lib as unknown as Record<string, (...a: unknown[]) => unknown>;
    const orig = target.C_EncryptInit!;
    target.C_EncryptInit = () => {
      target.C_EncryptInit = orig;
      throw new P.Pkcs11Error('CKR_DEVICE_REMOVED:50', 0x32, 'C_EncryptInit');
    };
    expect(await codeOf(hsm.encrypt(REFS.aesKey, 'CBC', Buffer.alloc(16), Buffer.alloc(16)))).toBe('HSM_TOKEN_REMOVED');
    expect(await hsm.encrypt(REFS.aesKey, 'CBC', Buffer.alloc(16), Buffer.alloc(16))).toEqual(cbcEncrypt('AES-128', CONFORMANCE_KEYS.aesKey, Buffer.alloc(16), Buffer.alloc(16)));
  });

  it('keeps derived card keys as session objects only within its bound, and destroys them', async () => {
    const bounded = new Pkcs11Hsm(options(t, { derivedKeyCache: { max: 2, ttlMs: 60_000 } }));
    const none = new Pkcs11Hsm(options(t, { derivedKeyCache: { max: 0 } }));
    await bounded.open();
    await none.open();
    const sessionKeys = (): number => sessionSecretKeys(false);
    const base = sessionKeys();
    for (let i = 0; i < 6; i++) await none.macGenerate({ master: REFS.desMaster, cardId: Buffer.from(`601234567890000${i}`, 'hex') }, 'ISO9797-1-ALG3', Buffer.alloc(9));
    expect(sessionKeys()).toBe(base);
    for (let i = 0; i < 6; i++) await bounded.macGenerate({ master: REFS.desMaster, cardId: Buffer.from(`601234567890000${i}`, 'hex') }, 'ISO9797-1-ALG3', Buffer.alloc(9));
    expect(bounded.derivedKeysCached).toBe(2);
    expect(sessionKeys()).toBe(base + 4); // two cards x two single-DES halves
    await bounded.close();
    await none.close();
    expect(sessionKeys()).toBe(base);
  });

  it('stops keeping derived card keys while nobody reuses them, and keeps them again when reuse comes back', async () => {
    const h = new Pkcs11Hsm(options(t, { derivedKeyCache: { max: 8, ttlMs: 60_000 } }));
    await h.open();
    try {
      const cold = freshCards(256); // one window of lookups, none hitting
      for (const [i, c] of cold.entries()) {
        const kcv = await h.keyCheckValue({ master: REFS.aesMaster, cardId: c });
        if (i % 64 === 0) expect(kcv).toEqual(expectedKcv(c, true));
      }
      expect(h.keepingDerivedKeys).toBe(false);
      const kept = h.derivedKeysCached;
      expect(kept).toBeLessThanOrEqual(8);
      const [again] = freshCards(1);
      for (let i = 0; i < 256; i++) expect(await h.keyCheckValue({ master: REFS.aesMaster, cardId: again! })).toEqual(expectedKcv(again!, true));
      // the repeats hit the ghost of the first derivation: the next window keeps again, and the card is cached
      expect(h.keepingDerivedKeys).toBe(true);
      await h.keyCheckValue({ master: REFS.aesMaster, cardId: again! });
      expect(h.derivedKeysCached).toBe(Math.min(8, kept + 1));
    } finally {
      await h.close();
    }
  });

  it('session processes: concurrent derived-key operations run in child processes with the same answers; a killed one fails its call typed, once, and the next call works', async () => {
    const h = new Pkcs11Hsm(options(t, { processes: 2 }));
    await h.open();
    try {
      expect(h.sessionProcessPids).toHaveLength(2);
      const cards = freshCards(8);
      const before = h.callModes;
      const data = Buffer.from('S1 input under a derived key');
      const macs = await Promise.all(cards.map((c) => h.macGenerate({ master: REFS.desMaster, cardId: c }, 'ISO9797-1-ALG3', data)));
      expect(macs).toEqual(cards.map((c) => computeMac('ISO9797-1-ALG3', diversifyCardKey(CONFORMANCE_KEYS.desMaster, c, 'DES3-2KEY'), data, 8)));
      for (const m of macs) expect(Buffer.isBuffer(m)).toBe(true);
      expect(h.callModes.concurrent - before.concurrent).toBe(7);
      const verdicts = await Promise.all(cards.map((c, i) => h.macVerify({ master: REFS.desMaster, cardId: c }, 'ISO9797-1-ALG3', data, i % 2 ? macs[i]! : Buffer.alloc(8))));
      expect(verdicts).toEqual(cards.map((_, i) => i % 2 === 1));
      // typed errors come back as their own class
      const [, missing] = await Promise.all([
        h.keyCheckValue({ master: REFS.aesMaster, cardId: cards[0]! }),
        h.keyCheckValue({ master: { label: 'no-such-master', version: 3 }, cardId: cards[1]! }).catch((e: unknown) => e),
      ]);
      expect(missing).toBeInstanceOf(HsmKeyNotFoundError);
      expect(missing).toMatchObject({ code: 'HSM_KEY_NOT_FOUND', label: 'no-such-master', version: 3 });
      // a process killed under a call: that call fails HSM_DEVICE, nothing is repeated, the next calls work
      // (The processes are stopped first, so the calls they are sent are still theirs when the kill lands.)
      const pids = h.sessionProcessPids;
      for (const pid of pids) process.kill(pid, 'SIGSTOP');
      const fresh = freshCards(4);
      const calls = fresh.map((c) => h.keyCheckValue({ master: REFS.aesMaster, cardId: c }).catch((e: unknown) => e));
      await new Promise((r) => setImmediate(r)); // the turn's calls are shared out: all but one go to the stopped processes
      for (const pid of pids) process.kill(pid, 'SIGKILL');
      const results = await Promise.all(calls);
      expect(results.some((r) => (r as { code?: string }).code === 'HSM_DEVICE')).toBe(true);
      for (const [i, r] of results.entries()) if (Buffer.isBuffer(r)) expect(r).toEqual(expectedKcv(fresh[i]!, true));
      const again = await Promise.all(fresh.map((c) => h.keyCheckValue({ master: REFS.aesMaster, cardId: c })));
      expect(again).toEqual(fresh.map((c) => expectedKcv(c, true)));
    } finally {
      await h.close();
    }
    expect(h.sessionProcessPids).toEqual([]);
  });

  it('derives from one session copy per master key, never listed; without copies, or when the token refuses one, from the token object', async () => {
    const masterCopies = (): number => sessionSecretKeys(true);
    // a master the token must not copy (CKA_COPYABLE false), as another tool may have made it
    const noCopy = { label: 'nocopy-mk', version: 1 };
    withOwnSession((s) =>
      lib.C_CreateObject(s, [
        { type: P.CKA_CLASS, value: P.CKO_SECRET_KEY },
        { type: P.CKA_KEY_TYPE, value: P.CKK_DES2 },
        { type: P.CKA_TOKEN, value: true },
        { type: P.CKA_PRIVATE, value: true },
        { type: P.CKA_SENSITIVE, value: true },
        { type: P.CKA_DERIVE, value: true },
        { type: 0x171 /* CKA_COPYABLE */, value: false },
        { type: P.CKA_LABEL, value: noCopy.label },
        { type: P.CKA_ID, value: Buffer.from([0, 1]) },
        { type: P.CKA_VALUE, value: CONFORMANCE_KEYS.desMaster },
      ]),
    );
    const base = masterCopies();
    const listed = (await hsm.listKeys()).map((k) => `${k.label}/${k.version}`).sort();
    for (const copies of [true, false]) {
      const h = new Pkcs11Hsm(options(t, { derivedKeyCache: { max: 0 }, masterCopies: copies }));
      await h.open();
      try {
        const cards = freshCards(3);
        const run = async (): Promise<void> => {
          for (const c of cards) {
            expect(await h.keyCheckValue({ master: REFS.desMaster, cardId: c })).toEqual(expectedKcv(c, false));
            expect(await h.keyCheckValue({ master: REFS.aesMaster, cardId: c })).toEqual(expectedKcv(c, true));
            expect(await h.keyCheckValue({ master: noCopy, cardId: c })).toEqual(expectedKcv(c, false));
          }
        };
        const made = await counting('C_CopyObject', run);
        expect(made.result).toBeUndefined();
        // with copies: one per master (the refused one asked once, never again), none without
        expect(made.calls).toBe(copies ? 3 : 0);
        expect(h.masterCopies).toBe(copies ? 2 : 0);
        expect((await h.health()).detail).toContain(copies ? 'derivations from 2 master copies' : 'master copies off');
        expect(masterCopies()).toBe(base + (copies ? 2 : 0));
        expect((await h.listKeys()).map((k) => `${k.label}/${k.version}`).sort()).toEqual(listed);
      } finally {
        await h.close();
      }
      expect(masterCopies()).toBe(base); // the copies go with the backend's sessions
    }
  });

  it('a master copy that could not derive or is less protected than the master is destroyed, and the token object used', async () => {
    const target = lib as unknown as Record<string, (...a: unknown[]) => unknown>;
    const orig = target.C_CopyObject!;
    // a token that copies, but drops CKA_DERIVE from the copy
    target.C_CopyObject = (...a: unknown[]) => orig.call(lib, a[0], a[1], [...(a[2] as unknown[]), { type: P.CKA_DERIVE, value: false }]);
    const h = new Pkcs11Hsm(options(t, { derivedKeyCache: { max: 0 } }));
    await h.open();
    try {
      const base = sessionSecretKeys(false);
      const [card] = freshCards(1);
      expect(await h.keyCheckValue({ master: REFS.aesMaster, cardId: card! })).toEqual(expectedKcv(card!, true));
      expect(await h.keyCheckValue({ master: REFS.desMaster, cardId: card! })).toEqual(expectedKcv(card!, false));
      expect(h.masterCopies).toBe(0);
      expect(sessionSecretKeys(false)).toBe(base); // the unfit copies were destroyed, not left behind
    } finally {
      target.C_CopyObject = orig;
      await h.close();
    }
  });

  it('purselab hsm init / keys / health on the token', async () => {
    const { hsmInitCommand, DEFAULT_KEY_SET } = await import('../../../src/cli/commands/hsm-init.ts');
    const { hsmKeysCommand } = await import('../../../src/cli/commands/hsm-keys.ts');
    const { hsmHealthCommand } = await import('../../../src/cli/commands/hsm-health.ts');
    const lines: string[] = [];
    const io = { out: (l: string) => lines.push(l), err: (l: string) => lines.push(l) };
    process.env.PURSELAB_TEST_CLI_PIN = t.pin;
    const backend = ['--pkcs11', t.module, '--token', t.label, '--pin-env', 'PURSELAB_TEST_CLI_PIN'];
    expect(await hsmInitCommand.run(backend, io)).toBe(0);
    expect(lines.join('\n')).toContain('derivation check: 10/10');
    lines.length = 0;
    expect(await hsmKeysCommand.run([...backend, '--json'], io)).toBe(0);
    const keys = JSON.parse(lines.join('\n')) as { label: string; kcv: string }[];
    const set = JSON.parse((await import('node:fs')).readFileSync(DEFAULT_KEY_SET, 'utf8')) as { masterKeys: { label: string; kcv: string }[] };
    for (const m of set.masterKeys) expect(keys.find((k) => k.label === m.label)?.kcv).toBe(m.kcv);
    lines.length = 0;
    expect(await hsmHealthCommand.run(backend, io)).toBe(0);
    expect(lines[1]).toContain('single DES ok');
  });

  /** Fresh card ids (no derived-key cache hit) and the KCVs src/crypto gives for them under the clear masters. */
  let cardSerial = 0;
  const freshCards = (n: number): Buffer[] => Array.from({ length: n }, () => Buffer.from(`60987654${String(++cardSerial).padStart(8, '0')}`, 'hex'));
  const expectedKcv = (card: Buffer, aes: boolean): Buffer =>
    aes ? keyCheckValue('AES-128', diversifyCardKey(CONFORMANCE_KEYS.aesMaster, card, 'AES-128')) : keyCheckValue('DES3-2KEY', diversifyCardKey(CONFORMANCE_KEYS.desMaster, card, 'DES3-2KEY'));

  it("'auto' calls: a lone caller's derivations are synchronous calls", async () => {
    const cards = freshCards(3);
    const before = hsm.callModes;
    const asyncCalls = await counting('C_DeriveKeyAsync', async () => {
      const syncCalls = await counting('C_DeriveKey', async () => {
        for (const c of cards) expect(await hsm.keyCheckValue({ master: REFS.desMaster, cardId: c })).toEqual(expectedKcv(c, false));
      });
      expect(syncCalls.calls).toBe(2 * cards.length); // two single-DES halves per card
      return syncCalls;
    });
    expect(asyncCalls.calls).toBe(0);
    expect(hsm.callModes.concurrent).toBe(before.concurrent);
    expect(hsm.callModes.alone).toBe(before.alone + cards.length);
  });

  it("'auto' calls: concurrent callers go to the *Async overloads, at most one per pooled session, with the same answers", async () => {
    const des = freshCards(6);
    const aes = freshCards(6);
    const before = hsm.callModes;
    let maxOpen = 0;
    const target = lib as unknown as Record<string, (...a: unknown[]) => unknown>;
    const orig = target.C_DeriveKeyAsync!;
    target.C_DeriveKeyAsync = (...a: unknown[]) => {
      maxOpen = Math.max(maxOpen, hsm.poolStats!.inUse);
      return orig.apply(lib, a);
    };
    let results: Buffer[];
    try {
      const counted = await counting('C_DeriveKeyAsync', () =>
        Promise.all([...des.map((c) => hsm.keyCheckValue({ master: REFS.desMaster, cardId: c })), ...aes.map((c) => hsm.keyCheckValue({ master: REFS.aesMaster, cardId: c }))]),
      );
      expect(counted.calls).toBeGreaterThan(0);
      results = counted.result as Buffer[];
    } finally {
      target.C_DeriveKeyAsync = orig;
    }
    expect(results).toEqual([...des.map((c) => expectedKcv(c, false)), ...aes.map((c) => expectedKcv(c, true))]);
    // the first call found the token to itself (synchronous); the other eleven ran while others were in flight
    expect(hsm.callModes.alone - before.alone).toBe(1);
    expect(hsm.callModes.concurrent - before.concurrent).toBe(11);
    expect(maxOpen).toBeLessThanOrEqual(hsm.poolStats!.size); // 3 sessions for 12 callers: the rest waited
    // alone again: synchronous
    const [c] = freshCards(1);
    expect((await counting('C_DeriveKeyAsync', () => hsm.keyCheckValue({ master: REFS.aesMaster, cardId: c! }))).calls).toBe(0);
  });

  it("'auto' calls: logged out under concurrent callers: each gets a typed error, nothing repeated, then the next call works", async () => {
    const cards = freshCards(4);
    withOwnSession((s) => lib.C_Logout(s));
    const settled = await Promise.allSettled(cards.map((c) => hsm.macGenerate({ master: REFS.desMaster, cardId: c }, 'ISO9797-1-ALG3', Buffer.alloc(9))));
    const codes = settled.map((r) => (r.status === 'rejected' ? (r.reason as { code?: string }).code : 'fulfilled'));
    // the first finds the token logged out; the others either meet the same or find it logged in again by the next call
    expect(codes[0]).toBe('HSM_NOT_LOGGED_IN');
    for (const code of codes) expect(['HSM_NOT_LOGGED_IN', 'fulfilled']).toContain(code);
    for (const c of cards) {
      expect(await hsm.macGenerate({ master: REFS.desMaster, cardId: c }, 'ISO9797-1-ALG3', Buffer.alloc(9))).toEqual(
        computeMac('ISO9797-1-ALG3', diversifyCardKey(CONFORMANCE_KEYS.desMaster, c, 'DES3-2KEY'), Buffer.alloc(9), 8),
      );
    }
  });

  it('serves more concurrent callers than sessions, with the same answers', async () => {
    const d = Buffer.from('concurrent');
    const expected = computeMac('AES-CMAC', CONFORMANCE_KEYS.aesKey, d, 16);
    const results = await Promise.all(Array.from({ length: 20 }, () => hsm.macGenerate(REFS.aesKey, 'AES-CMAC', d)));
    for (const r of results) expect(r).toEqual(expected);
  });
});

describe.skipIf(!!missing)(`PKCS#11 configuration faults${missing ? ` (skipped: ${missing})` : ''}`, () => {
  let t: TempToken;
  beforeAll(() => {
    t = rig!.token('purselab-cfg');
  });

  it('missing module file: HSM_MODULE_NOT_FOUND', async () => {
    const e = await new Pkcs11Hsm({ module: '/nonexistent/libnothing.so', tokenLabel: 'x', pin: '1' }).open().catch((x) => x);
    expect(e).toMatchObject({ code: 'HSM_MODULE_NOT_FOUND', modulePath: '/nonexistent/libnothing.so' });
  });

  it('a file that is no PKCS#11 module: HSM_MODULE_LOAD', async () => {
    const f = join(t.dir, 'not-a-module.so');
    writeFileSync(f, 'nope');
    expect(await codeOf(new Pkcs11Hsm({ module: f, tokenLabel: 'x', pin: '1' }).open())).toBe('HSM_MODULE_LOAD');
  });

  it('wrong PIN: HSM_PIN_INCORRECT; no PIN: HSM_PIN_MISSING; unknown token: HSM_TOKEN_NOT_FOUND listing the tokens', async () => {
    expect(await codeOf(new Pkcs11Hsm(options(t, { pin: '000000' })).open())).toBe('HSM_PIN_INCORRECT');
    const env = 'PURSELAB_TEST_PIN_UNSET';
    delete process.env[env];
    expect(await codeOf(new Pkcs11Hsm({ module: t.module, tokenLabel: t.label, pinEnv: env }).open())).toBe('HSM_PIN_MISSING');
    process.env[env] = t.pin;
    const ok = new Pkcs11Hsm({ module: t.module, tokenLabel: t.label, pinEnv: env });
    await ok.open();
    await ok.close();
    // the module is this process's alone: a missing token could be a torn look (torn-token.ts), so the module
    // is initialised anew and the token looked for again, a few times, before the error
    expect(moduleLoaded(t.module)).toBe(false);
    const alone = new Pkcs11Hsm(options(t, { tokenLabel: 'no-such-token' }));
    const e = await alone.open().catch((x) => x);
    expect(e.code).toBe('HSM_TOKEN_NOT_FOUND');
    expect(e.message).toContain(`'${t.label}'`);
    expect(alone.tokenRescans).toBe(TORN_OPEN_ATTEMPTS - 1);
    expect(moduleLoaded(t.module)).toBe(false);
    // someone else here holds the module: initialising it anew is not ours to do, so the error comes at once
    acquireModule(t.module);
    try {
      const shared = new Pkcs11Hsm(options(t, { tokenLabel: 'no-such-token' }));
      expect(await codeOf(shared.open())).toBe('HSM_TOKEN_NOT_FOUND');
      expect(shared.tokenRescans).toBe(0);
    } finally {
      releaseModule(t.module);
    }
  });

  it('refuses calls before open', async () => {
    expect(await codeOf(new Pkcs11Hsm(options(t)).listKeys())).toBe('HSM_NOT_OPEN');
  });
});
