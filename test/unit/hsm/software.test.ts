// The software backend: the conformance suite (in memory and on a key-store file), and the key store itself.

import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { SoftwareHsm } from '../../../hsm-bridge/software/software-hsm.ts';
import { aesKeyWrap } from '../../../hsm-bridge/wrap.ts';
import { codeOf, CONFORMANCE_KEYS, runConformance } from './conformance.ts';

const dir = mkdtempSync(join(tmpdir(), 'purselab-swhsm-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
// Cheap scrypt for tests; the default (2^15) is for real stores.
const scrypt = { N: 1 << 10, r: 8, p: 1 };
let n = 0;
const storePath = (): string => join(dir, `store-${++n}.json`);

const caps = { storedKeyAlg3: true, des3KekImport: true };
runConformance('software (in memory)', async () => SoftwareHsm.inMemory(), caps);
runConformance('software (key-store file)', async () => new SoftwareHsm({ path: storePath(), create: true, passphrase: 'conformance', scrypt }), caps);

describe('software key store', () => {
  it('keeps keys across close and open, encrypted on disk', async () => {
    const path = storePath();
    const a = new SoftwareHsm({ path, create: true, passphrase: 'pw-1', scrypt });
    await a.open();
    const info = await a.generateKey({ label: 'persist', version: 3 }, 'AES-128', ['mac']);
    const mac = await a.macGenerate({ label: 'persist', version: 3 }, 'AES-CMAC', Buffer.from('x'));
    await a.close();

    const text = readFileSync(path, 'utf8');
    expect(text).toContain('purselab-hsm-keystore');
    expect(text).not.toContain('persist'); // labels are inside the ciphertext too
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(existsSync(`${path}.lock`)).toBe(false);

    const b = new SoftwareHsm({ path, passphrase: 'pw-1' });
    await b.open();
    expect(await b.listKeys()).toEqual([info]);
    expect(await b.macGenerate({ label: 'persist', version: 3 }, 'AES-CMAC', Buffer.from('x'))).toEqual(mac);
    await b.close();
  });

  it('refuses a wrong passphrase, a missing store, a corrupt store and no passphrase', async () => {
    const path = storePath();
    const a = new SoftwareHsm({ path, create: true, passphrase: 'right', scrypt });
    await a.open();
    await a.close();
    expect(await codeOf(new SoftwareHsm({ path, passphrase: 'wrong' }).open())).toBe('HSM_STORE_PASSPHRASE');
    expect(await codeOf(new SoftwareHsm({ path: join(dir, 'nope.json'), passphrase: 'x' }).open())).toBe('HSM_STORE_MISSING');
    const bad = join(dir, 'bad.json');
    writeFileSync(bad, '{"format":"something else"}');
    expect(await codeOf(new SoftwareHsm({ path: bad, passphrase: 'x' }).open())).toBe('HSM_STORE_CORRUPT');
    const env = 'PURSELAB_TEST_MASTER_UNSET';
    delete process.env[env];
    expect(await codeOf(new SoftwareHsm({ path, passphraseEnv: env, prompt: false }).open())).toBe('HSM_MASTER_MISSING');
    process.env[env] = 'right';
    const c = new SoftwareHsm({ path, passphraseEnv: env, prompt: false });
    await c.open();
    await c.close();
  });

  it('detects a tampered header or body', async () => {
    const path = storePath();
    const a = new SoftwareHsm({ path, create: true, passphrase: 'pw', scrypt });
    await a.open();
    await a.generateKey({ label: 'k', version: 1 }, 'DES3-2KEY', ['mac']);
    await a.close();
    const body = JSON.parse(readFileSync(path, 'utf8'));
    const ct = Buffer.from(body.ciphertext, 'base64');
    ct[5]! ^= 1;
    writeFileSync(path, JSON.stringify({ ...body, ciphertext: ct.toString('base64') }));
    expect(await codeOf(new SoftwareHsm({ path, passphrase: 'pw' }).open())).toBe('HSM_STORE_PASSPHRASE');
    writeFileSync(path, JSON.stringify({ ...body, kdf: { ...body.kdf, N: body.kdf.N * 2 } }));
    expect(await codeOf(new SoftwareHsm({ path, passphrase: 'pw' }).open())).toBe('HSM_STORE_PASSPHRASE');
  });

  it('lets two processes (two instances) add keys to one store without losing either', async () => {
    const path = storePath();
    const a = new SoftwareHsm({ path, create: true, passphrase: 'pw', scrypt });
    await a.open();
    const b = new SoftwareHsm({ path, passphrase: 'pw' });
    await b.open();
    await Promise.all([
      ...[1, 2, 3].map((v) => a.generateKey({ label: 'from-a', version: v }, 'AES-128', ['mac'])),
      ...[1, 2, 3].map((v) => b.generateKey({ label: 'from-b', version: v }, 'AES-128', ['mac'])),
    ]);
    expect((await a.listKeys()).map((k) => `${k.label}/${k.version}`)).toEqual(['from-a/1', 'from-a/2', 'from-a/3', 'from-b/1', 'from-b/2', 'from-b/3']);
    // b sees a's keys too (it re-reads the store before saying "not found")
    expect((await b.macGenerate({ label: 'from-a', version: 2 }, 'AES-CMAC', Buffer.alloc(3))).length).toBe(16);
    expect(await codeOf(b.generateKey({ label: 'from-a', version: 1 }, 'AES-128', ['mac']))).toBe('HSM_KEY_EXISTS');
    await a.close();
    await b.close();
  });

  it('derived card keys: kept per master and card, never mixed up, and the same as a fresh HSM derives', async () => {
    const path = storePath();
    const hsm = new SoftwareHsm({ path, create: true, passphrase: 'pw', scrypt });
    await hsm.open();
    await hsm.generateKey({ label: 'master', version: 1 }, 'AES-128', ['derive']);
    await hsm.generateKey({ label: 'master', version: 2 }, 'AES-128', ['derive']);
    const card = (n: number) => Buffer.from(`99900100000000${String(n).padStart(2, '0')}`, 'hex');
    const data = Buffer.from('the same data');
    const mac = (version: number, n: number) => hsm.macGenerate({ master: { label: 'master', version }, cardId: card(n) }, 'AES-CMAC', data);
    // Interleaved: two masters, two cards, each asked twice.
    const first = [await mac(1, 1), await mac(2, 1), await mac(1, 2), await mac(2, 2)];
    const again = [await mac(1, 1), await mac(2, 1), await mac(1, 2), await mac(2, 2)];
    expect(again).toEqual(first);
    expect(new Set(first.map((m) => m.toString('hex'))).size).toBe(4);
    // A second instance on the same store (nothing cached) derives the same keys.
    const fresh = new SoftwareHsm({ path, passphrase: 'pw' });
    await fresh.open();
    const freshMac = (version: number, n: number) => fresh.macGenerate({ master: { label: 'master', version }, cardId: card(n) }, 'AES-CMAC', data);
    expect([await freshMac(1, 1), await freshMac(2, 1), await freshMac(1, 2), await freshMac(2, 2)]).toEqual(first);
    // A key added by the other instance: the first one re-reads the store and forgets (zeroes) the card keys it
    // kept; what it derives next is still right, and so after a close and open.
    await fresh.generateKey({ label: 'other', version: 1 }, 'AES-128', ['mac']);
    expect((await hsm.listKeys()).map((k) => k.label)).toContain('other');
    expect([await mac(1, 1), await mac(2, 1), await mac(1, 2), await mac(2, 2)]).toEqual(first);
    await hsm.close();
    await hsm.open();
    expect([await mac(1, 1), await mac(2, 2)]).toEqual([first[0], first[3]]);
    await fresh.close();
    await hsm.close();
  });

  it('refuses to work before open and after close', async () => {
    const h = SoftwareHsm.inMemory();
    expect(await codeOf(h.listKeys())).toBe('HSM_NOT_OPEN');
    await h.open();
    expect(await codeOf(h.importKey({ label: 'k', version: 1 }, 'AES-128', ['mac'], aesKeyWrap(CONFORMANCE_KEYS.kek, CONFORMANCE_KEYS.aesKey), { label: 'kek', version: 1 }))).toBe('HSM_KEY_NOT_FOUND');
    await h.close();
    expect(await codeOf(h.randomBytes(4))).toBe('HSM_NOT_OPEN');
    expect((await h.health()).ok).toBe(false);
  });
});
