// The PSAM pool under load and faults (busy, hold timeout, a PSAM pulled mid-transaction and put back), the
// payment server restarted on the same database (interrupted payments completed or clearly failed), and
// batches closed, checked against the ledger and exported.

import { existsSync, readFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { buy, outcomeRequest } from '../../../src/server/payment/driver.ts';
import { parsePaymentConfig } from '../../../src/server/payment/config.ts';
import { balanceOf, configJson, MERCHANTS, newCard, psamSums, startWorld, type World } from './support.ts';

let w: World | undefined;
afterEach(async () => {
  await w?.close();
  w = undefined;
});

describe('PSAM pool', () => {
  it('all PSAMs held: the next draw waits, then 503 PSAM_POOL_BUSY; nothing is debited, the payment failed', async () => {
    w = await startWorld({ psams: 2, timeouts: { acquireMs: 100 } });
    const a = await buy(w.post, MERCHANTS.std, newCard().ch, { amount: 1, stopAfter: 'draw' });
    const b = await buy(w.post, MERCHANTS.std, newCard().ch, { amount: 1, stopAfter: 'draw' });
    expect(new Set([a.iep!.debitData.slice(0, 16), b.iep!.debitData.slice(0, 16)]).size).toBe(2); // two different PSAMs
    const c = await buy(w.post, MERCHANTS.std, newCard().ch, { amount: 1 });
    expect(c.draw).toMatchObject({ status: 503, body: { error: { code: 'PSAM_POOL_BUSY' } } });
    expect(await w.server.store.countByState()).toMatchObject({ 'debit-issued': 2, failed: 1 });
  });

  it('a waiting draw gets the PSAM another payment releases', async () => {
    w = await startWorld({ psams: 1, timeouts: { acquireMs: 2000 } });
    const card1 = newCard(1000);
    const first = await buy(w.post, MERCHANTS.std, card1.ch, { amount: 5, stopAfter: 'debit' });
    const waiting = buy(w.post, MERCHANTS.std, newCard(1000).ch, { amount: 7 });
    await new Promise((r) => setTimeout(r, 50));
    await w.post('/v1/debit-response', outcomeRequest(first.side, first.paymentId!, { sw: '9000', debitResponse: first.debitResponseHex! }));
    expect((await waiting).result!.body.status).toBe('approved');
  });

  it('a PSAM held past the hold timeout is taken back: the payment becomes debit-unknown, a late S3 still completes it', async () => {
    w = await startWorld({ psams: 1, timeouts: { holdMs: 100 } });
    const { ch } = newCard(1000);
    const r = await buy(w.post, MERCHANTS.std, ch, { amount: 40, stopAfter: 'debit' });
    await new Promise((res) => setTimeout(res, 250));
    expect(w.server.pool.heldCount).toBe(0);
    expect(await w.server.store.get(r.paymentId!)).toMatchObject({ state: 'debit-unknown', reason: 'HOLD_TIMEOUT' });
    expect((await w.get('/v1/admin/recovery')).body.entries).toMatchObject([{ paymentId: r.paymentId, state: 'debit-unknown', recreditEligible: true }]);
    const late = await w.post('/v1/debit-response', outcomeRequest(r.side, r.paymentId!, { sw: '9000', debitResponse: r.debitResponseHex! }));
    expect(late.body).toMatchObject({ status: 'approved', resultC: { verifiedBy: 'psam' } });
    expect(await psamSums(w.psams)).toEqual({ confirmed: 40, unconfirmed: 0 });
  });

  it('a PSAM pulled mid-transaction: 503, out of service in /v1/health, the S3 is kept; back in the reader, the payment completes', async () => {
    w = await startWorld({ psams: 2 });
    const { ch } = newCard(1000);
    const r = await buy(w.post, MERCHANTS.std, ch, { amount: 60, stopAfter: 'debit' });
    const member = w.server.pool.health().find((p) => p.heldBy === r.paymentId)!;
    const index = Number(member.id.split('-')[1]);
    w.pulled.add(index);
    const res = await w.post('/v1/debit-response', outcomeRequest(r.side, r.paymentId!, { sw: '9000', debitResponse: r.debitResponseHex! }));
    expect(res).toMatchObject({ status: 503, body: { error: { code: 'PSAM_OUT_OF_SERVICE' } } });
    const h = (await w.get('/v1/health')).body;
    expect(h.status).toBe('degraded');
    expect(h.psams[index]).toMatchObject({ inService: false, state: 'out-of-service', heldBy: null });
    expect(await w.server.store.get(r.paymentId!)).toMatchObject({ state: 'debit-response-received' });
    // other payments use the other PSAM meanwhile
    expect((await buy(w.post, MERCHANTS.std, newCard(1000).ch, { amount: 1 })).result!.body.status).toBe('approved');
    w.pulled.delete(index);
    await w.server.pool.probeNow();
    expect((await w.get('/v1/health')).body.status).toBe('ok');
    await w.server.service.resolvePending();
    expect(await w.server.store.get(r.paymentId!)).toMatchObject({ state: 'completed', psamConfirmed: true });
    const again = await w.post('/v1/debit-response', outcomeRequest(r.side, r.paymentId!, { sw: '9000', debitResponse: r.debitResponseHex! }));
    expect(again.body.status).toBe('approved');
    expect(await balanceOf(ch)).toBe(940);
    expect(w.server.pool.heldCount).toBe(0);
  });
});

describe('restart on the same database', () => {
  it('cut before S2 went out: failed; after S2: debit-unknown and its late debit response completes it; stored S3: verified at start-up', async () => {
    w = await startWorld({ psams: 2 });
    const c1 = newCard(1000);
    const c2 = newCard(1000);
    const issued = await buy(w.post, MERCHANTS.std, c1.ch, { amount: 11, stopAfter: 'debit' });
    const withS3 = await buy(w.post, MERCHANTS.er, c2.ch, { amount: 22, stopAfter: 'debit' });
    // the early-release payment's S3 reached the store, then the server "crashed" before verifying it
    await w.server.store.transition(withS3.paymentId!, ['debit-issued'], 'debit-response-received', { debitResponse: withS3.debitResponseHex! }, 'debit-response-received');
    await w.server.store.insertReceived({ paymentId: 'pay_000000000000000000000001', merchantId: 'shop-std', txnId: 'cut', kind: 'purchase', variant: 'standard', encrypted: false, amount: 5, currency: 978, exponent: 2, cardId: null, cardCounter: null, startup: null, etsk: null }, {});
    await w.restart();
    expect(await w.server.store.get('pay_000000000000000000000001')).toMatchObject({ state: 'failed', reason: 'INTERRUPTED' });
    expect(await w.server.store.get(issued.paymentId!)).toMatchObject({ state: 'debit-unknown', reason: 'INTERRUPTED' });
    expect(await w.server.store.get(withS3.paymentId!)).toMatchObject({ state: 'completed' });
    const late = await w.post('/v1/debit-response', outcomeRequest(issued.side, issued.paymentId!, { sw: '9000', debitResponse: issued.debitResponseHex! }));
    expect(late.body.status).toBe('approved');
    await w.server.service.resolvePending();
    expect(await psamSums(w.psams)).toEqual({ confirmed: 33, unconfirmed: 0 });
    expect(w.server.pool.heldCount).toBe(0);
  });
});

describe('batches for the concentration point', () => {
  it('closes each PSAM batch, verifies its MAC, matches the ledger, writes the collection file, purges, and can close again', async () => {
    w = await startWorld({ psams: 2 });
    const { ch } = newCard(5000);
    for (const [m, amount] of [[MERCHANTS.std, 100], [MERCHANTS.er, 200], [MERCHANTS.std, 300]] as const) await buy(w.post, m, ch, { amount });
    await buy(w.post, MERCHANTS.std, ch, { kind: 'authentication' });
    await buy(w.post, MERCHANTS.std, ch, { amount: 50, forgeS3: true });
    const r = await w.post('/v1/admin/batch', {});
    expect(r.status).toBe(200);
    const batches = r.body.batches as { psamId: string; status: string; file: string; collection: { macVerified: boolean; ledger: { confirmedSum: number; ledgerSum: number; matches: boolean }; records: { status: string }[] } }[];
    expect(batches.map((b) => b.status)).toEqual(['exported', 'exported']);
    const total = batches.reduce((a, b) => a + b.collection.ledger.confirmedSum, 0);
    expect(total).toBe(600);
    for (const b of batches) {
      expect(b.collection.macVerified).toBe(true);
      expect(b.collection.ledger.matches).toBe(true);
      expect(existsSync(b.file)).toBe(true);
      expect(JSON.parse(readFileSync(b.file, 'utf8')).mac).toMatch(/^[0-9A-F]{16}$/);
    }
    expect(batches.flatMap((b) => b.collection.records).filter((x) => x.status === 'unconfirmed')).toHaveLength(1); // the forged S3
    expect((await w.server.store.ledger({ unbatched: true }))).toEqual([]);
    const list = (await w.get('/v1/admin/batches')).body.batches;
    expect(list).toHaveLength(2);
    expect((await w.get(`/v1/admin/batches/${list[0].id}`)).body.format).toBe('purselab-collection-v1');
    await buy(w.post, MERCHANTS.std, ch, { amount: 7 });
    const second = (await w.post('/v1/admin/batch', {})).body.batches as { status: string; collection: { ledger: { confirmedSum: number } } }[];
    expect(second.map((b) => b.status)).toEqual(['exported', 'exported']);
    expect(second.reduce((a, b) => a + b.collection.ledger.confirmedSum, 0)).toBe(7);
  });

  it('without purge the closed batch waits for the acknowledgement and is not closed twice', async () => {
    w = await startWorld({ psams: 1 });
    await buy(w.post, MERCHANTS.std, newCard(500).ch, { amount: 9 });
    expect((await w.post('/v1/admin/batch', { purge: false })).body.batches[0]).toMatchObject({ status: 'exported', purged: false });
    expect((await w.post('/v1/admin/batch', { purge: false })).body.batches[0]).toMatchObject({ status: 'awaiting-purge' });
    expect((await w.post('/v1/admin/batch', {})).body.batches[0]).toMatchObject({ status: 'exported', batchNumber: 2, purged: true });
  });
});

describe('configuration', () => {
  it('refuses unknown fields, bad keys, bad variants, duplicate merchants and readers, naming the field, never the key', () => {
    const base = configJson(1);
    const bad = (patch: object) => () => parsePaymentConfig({ ...base, ...patch }, 'cfg.json');
    expect(bad({ extra: 1 })).toThrow(/unknown field 'extra'/);
    expect(bad({ merchants: [{ id: 'a', sharedKey: 'ABCD', variant: 'standard' }] })).toThrow(/merchants\[0\].*32 hex digits/);
    expect(bad({ merchants: [{ id: 'a', sharedKey: base.merchants[0]!.sharedKey, variant: 'fast' }] })).toThrow(/variant must be one of/);
    expect(bad({ merchants: [base.merchants[0], base.merchants[0]] })).toThrow(/appears twice/);
    expect(bad({ psams: [{ reader: 'x' }, { reader: 'x' }] })).toThrow(/appears twice/);
    expect(bad({ merchants: [{ id: 'a', sharedKeyEnv: 'NOPE_NOT_SET', variant: 'standard' }] })).toThrow(/NOPE_NOT_SET is not set/);
    try {
      bad({ merchants: [{ id: 'a', sharedKey: 'Z'.repeat(32) }] })();
    } catch (e) {
      expect((e as Error).message).not.toContain('Z'.repeat(32));
    }
    const c = parsePaymentConfig({ ...base, merchants: [{ id: 'a', sharedKeyEnv: 'K' }], psams: [{ reader: 'emu:psam.img' }] }, 'cfg.json', '/etc/x', { K: base.merchants[0]!.sharedKey });
    expect(c.merchants.get('a')).toMatchObject({ variant: 'standard', encrypted: false });
    expect(c.psams[0]!.reader).toBe('emu:/etc/x/psam.img');
  });
});
