// OPAL with its HSM in SoftHSM2 (PKCS#11): a throw-away token initialised by `purselab hsm init --pkcs11 ...
// --token ...` (the record keys opal-record-enc/-mac generated inside the token), then end to end over loopback
// HTTP with the real payment, merchant, bank and load servers: registration, purchase, load, and a tampered,
// moved or rolled-back record detected and refused (the card is never used). The record keys stay in the token:
// the same database opened with another HSM (software, same issuer keys) cannot read a single card.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { opensslLegacyActive } from '../../../hsm-bridge/pkcs11/binding.ts';
import { Pkcs11Hsm } from '../../../hsm-bridge/pkcs11/pkcs11-hsm.ts';
import { createTempTokens, softhsmMissing } from '../../../hsm-bridge/pkcs11/softhsm-temp.ts';
import { paymentOps } from '../../../hsm-bridge/payment.ts';
import { requestJson, RemoteError } from '../../../src/server/http-client.ts';
import { startOpalWorld, type Cardholder, type OpalWorld } from '../../../src/opal/world.ts';
import { VirtualCardStore } from '../../../src/opal/card-store.ts';
import { ALICE, startWorld as startLoadWorld, type LoadWorld } from '../load-server/harness.ts';
import { repoPath, useDemoIssuer } from '../psam/helpers.ts';
import { openOpalDb, useOpalHsm } from './helpers.ts';

const run = promisify(execFile);
const missing = softhsmMissing() ?? (opensslLegacyActive() ? undefined : 'needs --openssl-legacy-provider in this worker');
const tokens = missing ? undefined : createTempTokens(['purselab-opal']);
afterAll(() => tokens?.remove());
const issuer = useDemoIssuer();
const otherHsm = useOpalHsm(); // a software HSM with the same issuer keys but its own record keys

describe.skipIf(!!missing)(`OPAL with the record keys in SoftHSM2${missing ? ` (skipped: ${missing})` : ''}`, () => {
  let hsm: Pkcs11Hsm;
  let world: OpalWorld;
  let loads: LoadWorld;
  let alice: Cardholder;
  const PIN_ENV = 'PURSELAB_TEST_OPAL_PIN';

  beforeAll(async () => {
    const t = tokens!.token('purselab-opal');
    // The CLI, as an operator runs it (SOFTHSM2_CONF of this process points at the temp token store).
    const init = await run(process.execPath, ['--openssl-legacy-provider', repoPath('bin/purselab.js'), 'hsm', 'init', '--pkcs11', t.module, '--token', t.label, '--pin-env', PIN_ENV], { env: { ...process.env, [PIN_ENV]: t.pin }, timeout: 120_000 });
    expect(init.stdout).toMatch(/opal-record-enc/);
    hsm = new Pkcs11Hsm({ module: t.module, tokenLabel: t.label, pin: t.pin });
    await hsm.open();
    world = await startOpalWorld({ hsm, psams: 1, initialBalance: 5000 });
    loads = await startLoadWorld(issuer);
  }, 180_000);
  afterAll(async () => {
    await world?.close();
    await loads?.close();
    await hsm?.close();
  });

  const get = <T = any>(path: string, token: string) => requestJson<T>(`${world.opalUrl}${path}`, { headers: { authorization: `Bearer ${token}` } });
  const post = <T = any>(path: string, body: object, token: string) => requestJson<T>(`${world.opalUrl}${path}`, { method: 'POST', body, headers: { authorization: `Bearer ${token}` } });

  it('the record keys are in the token, generated there', async () => {
    const labels = (await hsm.listKeys()).map((k) => k.label);
    expect(labels).toEqual(expect.arrayContaining(['opal-record-enc', 'opal-record-mac', 'issuer-load-aes']));
  });

  it('registration: one-time password, forced change, a new card of 50.00 read through the pseudo reader', async () => {
    alice = await world.cardholder('alice.softhsm');
    expect(await get('/v1/balance', alice.token)).toMatchObject({ balance: 5000, counter: 0, currency: 978 });
    await expect(requestJson(`${world.opalUrl}/v1/login`, { method: 'POST', body: { userId: 'alice.softhsm', password: 'wrong password 1' } })).rejects.toMatchObject({ code: 'OPAL_LOGIN_FAILED' });
  });

  it('purchase at the merchant through the payment server', async () => {
    const pageUrl = await world.order('ebook');
    const r = await post('/v1/purchase', { pageUrl, amount: 420 }, alice.token);
    expect(r).toMatchObject({ status: 'paid', released: true, balanceBefore: 5000, balanceAfter: 4580 });
    expect(await get('/v1/balance', alice.token)).toMatchObject({ balance: 4580, counter: 1 });
  });

  it('load from the bank through the load server', async () => {
    const r = await post('/v1/load', { bankUrl: loads.bankUrl, bankUser: ALICE.user, bankPassword: ALICE.password, amount: '10.00' }, alice.token);
    expect(r).toMatchObject({ status: 'loaded', amount: 1000, balance: 5580 });
    expect(await get('/v1/balance', alice.token)).toMatchObject({ balance: 5580 });
  });

  it('a record altered, moved to another card or put back from before is refused and never used', async () => {
    const bob = await world.cardholder('bob.softhsm');
    const db = new Database(world.opal.db.name);
    const rows = () => db.prepare('SELECT card_id, version, sealed FROM opal_cards ORDER BY created_at').all() as { card_id: string; version: number; sealed: Buffer }[];
    const [a, b] = rows();
    const put = (cardId: string, sealed: Buffer, version: number) => db.prepare('UPDATE opal_cards SET sealed = ?, version = ? WHERE card_id = ?').run(sealed, version, cardId);
    const refused = async (token: string) => {
      const e = await get('/v1/balance', token).catch((x: unknown) => x);
      expect(e).toBeInstanceOf(RemoteError);
      expect((e as RemoteError).code).toBe('OPAL_RECORD_TAMPERED');
    };
    // One bit flipped in the ciphertext.
    const flipped = Buffer.from(a!.sealed);
    flipped.writeUInt8(flipped.readUInt8(40) ^ 0x01, 40);
    put(a!.card_id, flipped, a!.version);
    await refused(alice.token);
    // A purchase with the tampered card is refused before anything reaches the payment server.
    const pageUrl = await world.order('cent');
    await expect(post('/v1/purchase', { pageUrl, amount: 1 }, alice.token)).rejects.toMatchObject({ code: 'OPAL_RECORD_TAMPERED' });
    // Bob's valid record copied onto Alice's row (keys are per card id).
    put(a!.card_id, b!.sealed, b!.version);
    await refused(alice.token);
    put(a!.card_id, a!.sealed, a!.version);
    expect(await get('/v1/balance', alice.token)).toMatchObject({ balance: 5580 });
    // An old record of Bob's put back after he paid (its sealed version no longer matches the row).
    await post('/v1/purchase', { pageUrl: await world.order('cent'), amount: 1 }, bob.token);
    const now = rows()[1]!;
    put(b!.card_id, b!.sealed, now.version);
    await refused(bob.token);
    put(b!.card_id, now.sealed, now.version);
    expect(await get('/v1/balance', bob.token)).toMatchObject({ balance: 4999, counter: 1 });
    db.close();
  });

  it('the records cannot be opened without the token: another HSM with the same issuer keys reads nothing', async () => {
    const db = openOpalDb(world.opal.db.name);
    try {
      const store = new VirtualCardStore({ db, ops: paymentOps(otherHsm().hsm) });
      const ids = (db.prepare('SELECT card_id FROM opal_cards').all() as { card_id: string }[]).map((r) => r.card_id);
      expect(ids.length).toBe(2);
      for (const id of ids) await expect(store.load(id)).rejects.toMatchObject({ code: 'OPAL_RECORD_TAMPERED' });
    } finally {
      db.close();
    }
  });
});
