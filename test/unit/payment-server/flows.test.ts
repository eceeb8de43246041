// The payment server's flows through fastify inject, with emulated PSAMs and purse cards in-process: every
// variant of FIGS. 5-9, authentication (FIG. 16), the draw-request checks, idempotent results, and value
// conservation (card balances + PSAM totals + ledger).

import { createHash } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { open } from '../../../src/protocol/envelope.ts';
import { Label, type DebitAuthorisation, type DebitResultPayload, type ExpectedS3ForMerchant } from '../../../src/protocol/payment-messages.ts';
import { buy, drawRequest, merchantOrder } from '../../../src/server/payment/driver.ts';
import { initializeForPurchase } from '../../../src/terminal/purse.ts';
import { readBatch } from '../../../src/terminal/psam.ts';
import { EmulatorChannel } from '../../../src/transport/emulator-channel.ts';
import { balanceOf, MERCHANTS, newCard, psamSums, startWorld, type World } from './support.ts';

let w: World;
beforeEach(async () => {
  w = await startWorld({ psams: 2 });
});
afterEach(async () => {
  await w.close();
});

const ledgerSum = async () => (await w.server.store.ledger()).reduce((a, l) => a + l.amount, 0);

describe('standard variant (FIG. 5): one PSAM held from draw request to Debit Result', () => {
  it('debits the card, the PSAM verifies S3, Debit Result M opens under the derived key, the ledger books it', async () => {
    const { ch } = newCard(5000);
    const r = await buy(w.post, MERCHANTS.std, ch, { amount: 420 });
    expect(r.draw.status).toBe(200);
    expect(r.iep).toMatchObject({ variant: 'standard', txType: 1 });
    expect(r.result!.status).toBe(200);
    expect(r.result!.body).toMatchObject({ paymentId: r.paymentId, status: 'approved', resultC: { status: 'approved', verifiedBy: 'psam', amount: 420, card: '999001******0101'.slice(0, 6) + '******' + r.startup.cardId.slice(-4) } });
    expect(r.resultM).toMatchObject({ type: 'debit-result', status: 'approved', merchantId: 'shop-std', txnId: r.side.order.txnId, amount: 420, cardCounter: r.startup.counter + 1 });
    expect(w.server.pool.heldCount).toBe(0);
    expect(await balanceOf(ch)).toBe(5000 - 420);
    expect(await ledgerSum()).toBe(420);
    expect(await psamSums(w.psams)).toEqual({ confirmed: 420, unconfirmed: 0 });
    const p = await w.server.store.get(r.paymentId!);
    expect(p).toMatchObject({ state: 'completed', psamConfirmed: true });
    const events = (await w.server.store.events(r.paymentId!)).map((e) => e.type);
    expect(events).toEqual(['draw-received', 'psam-assigned', 'debit-issued', 'debit-response-received', 'completed']);
  });

  it('the same debit response again returns the same result; a different one is refused', async () => {
    const { ch } = newCard(5000);
    const r = await buy(w.post, MERCHANTS.std, ch, { amount: 100 });
    const again = await w.post('/v1/debit-response', { paymentId: r.paymentId, response: { paymentId: r.paymentId, sw: '9000', debitResponse: r.debitResponseHex } });
    expect(again.status).toBe(200);
    expect(again.body).toEqual(r.result!.body);
    const other = r.debitResponseHex!.slice(0, -2) + (r.debitResponseHex!.endsWith('00') ? '01' : '00');
    const diff = await w.post('/v1/debit-response', { paymentId: r.paymentId, response: { paymentId: r.paymentId, sw: '9000', debitResponse: other } });
    expect(diff).toMatchObject({ status: 409, body: { error: { code: 'RESULT_ALREADY_GIVEN' } } });
    expect(await ledgerSum()).toBe(100);
  });

  it('a forged S3 is declined (S3_INVALID): no ledger entry, the PSAM record stays unconfirmed, and it shows for re-credit', async () => {
    const { ch } = newCard(5000);
    const r = await buy(w.post, MERCHANTS.std, ch, { amount: 250, forgeS3: true });
    expect(r.result!.body.status).toBe('declined');
    expect(r.resultM).toMatchObject({ status: 'declined', reason: 'S3_INVALID' });
    expect(await ledgerSum()).toBe(0);
    expect(await balanceOf(ch)).toBe(4750); // the card was debited: the value is in the PSAM's unconfirmed record
    expect(await psamSums(w.psams)).toEqual({ confirmed: 0, unconfirmed: 250 });
    const report = (await w.get('/v1/admin/recovery')).body;
    expect(report.entries).toMatchObject([{ paymentId: r.paymentId, state: 'failed', reason: 'S3_INVALID', recreditEligible: true, amount: 250 }]);
    const claim = await w.post('/v1/admin/recredit', { paymentId: r.paymentId });
    expect(claim.status).toBe(200);
    expect(open(Buffer.from('9999999999999999AAAAAAAAAAAAAAAA', 'hex'), Label.RECREDIT_CLAIM, claim.body.claim)).toMatchObject({ paymentId: r.paymentId, cardId: r.startup.cardId, amount: 250, cardCounter: r.startup.counter + 1 });
    const twice = await w.post('/v1/admin/recredit', { paymentId: r.paymentId });
    expect(twice.body).toMatchObject({ created: false, claim: claim.body.claim });
    const late = await w.post('/v1/debit-response', { paymentId: r.paymentId, response: { paymentId: r.paymentId, sw: '9000', debitResponse: r.debitResponseHex } });
    expect(late.body).toEqual(r.result!.body); // the same request gets the same (declined) answer
  });

  it('the PSAM stays held between the draw response and the debit response', async () => {
    const { ch } = newCard(5000);
    const r = await buy(w.post, MERCHANTS.std, ch, { amount: 100, stopAfter: 'debit' });
    expect(w.server.pool.health().find((p) => p.heldBy === r.paymentId)).toMatchObject({ state: 'held' });
    expect(w.server.pool.heldCount).toBe(1);
  });

  it('a card refusing the DEBIT gives a declined result and frees the PSAM', async () => {
    const { ch } = newCard(5000);
    const side = merchantOrder(MERCHANTS.std, { amount: 100 });
    const { raw } = await initializeForPurchase(ch);
    const d = await w.post('/v1/draw', drawRequest(side, { atr: ch.atr, startupRaw: raw }));
    const res = await w.post('/v1/debit-response', { paymentId: d.body.paymentId, response: { paymentId: d.body.paymentId, sw: '6982' } });
    expect(res.body).toMatchObject({ status: 'declined', resultC: { reason: 'S2_REFUSED' } });
    expect(w.server.pool.heldCount).toBe(0);
  });
});

describe('draw request checks (step 680): nothing changes on a refusal', () => {
  it('unknown merchant: 403', async () => {
    const { ch } = newCard();
    const r = await buy(w.post, { ...MERCHANTS.std, id: 'nobody' }, ch, { amount: 100 });
    expect(r.draw).toMatchObject({ status: 403, body: { error: { code: 'UNKNOWN_MERCHANT' } } });
  });

  it('a tampered amount fails the order MAC: 401, no payment, the card is not debited', async () => {
    const { ch } = newCard(5000);
    const side = merchantOrder(MERCHANTS.std, { amount: 1000 });
    const { raw } = await initializeForPurchase(ch);
    const req = drawRequest(side, { atr: ch.atr, startupRaw: raw }, (b) => {
      b.ticket = { ...b.ticket, order: { ...b.ticket.order, amount: 1 } };
    });
    const r = await w.post('/v1/draw', req);
    expect(r).toMatchObject({ status: 401, body: { error: { code: 'ORDER_MAC_INVALID' } } });
    expect(await w.server.store.countByState()).toEqual({});
    expect(await balanceOf(ch)).toBe(5000);
  });

  it('a replayed draw request (same merchant transaction id) is refused with 409', async () => {
    const { ch } = newCard(5000);
    const side = merchantOrder(MERCHANTS.std, { amount: 100 });
    const { raw } = await initializeForPurchase(ch);
    const req = drawRequest(side, { atr: ch.atr, startupRaw: raw });
    expect((await w.post('/v1/draw', req)).status).toBe(200);
    expect(await w.post('/v1/draw', req)).toMatchObject({ status: 409, body: { error: { code: 'DRAW_REPLAYED' } } });
  });

  it('an expired order, a bad authentication order, undecodable start-up data and unknown fields are refused', async () => {
    const { ch } = newCard(5000);
    expect((await buy(w.post, MERCHANTS.std, ch, { amount: 100, now: new Date(Date.now() - 3_600_000), ttlMs: 60_000 })).draw.body.error.code).toBe('ORDER_EXPIRED');
    expect((await buy(w.post, MERCHANTS.std, ch, { amount: 100, currency: 840 })).draw.body.error.code).toBe('CURRENCY_MISMATCH');
    const side = merchantOrder(MERCHANTS.std, { amount: 100 });
    const bad = drawRequest(side, { atr: ch.atr, startupRaw: Buffer.alloc(27, 0xff) });
    expect((await w.post('/v1/draw', bad)).body.error.code).toBe('BAD_STARTUP');
    expect((await w.post('/v1/draw', { ...drawRequest(side, { atr: ch.atr, startupRaw: Buffer.alloc(27) }), extra: 1 })).status).toBe(400);
    expect(await w.server.store.countByState()).toEqual({});
  });

  it('insufficient funds: the PSAM refuses, 422 INSUFFICIENT_FUNDS, the payment failed, no PSAM held', async () => {
    const { ch } = newCard(50);
    const r = await buy(w.post, MERCHANTS.std, ch, { amount: 100 });
    expect(r.draw).toMatchObject({ status: 422, body: { error: { code: 'INSUFFICIENT_FUNDS' } } });
    expect(await w.server.store.countByState()).toEqual({ failed: 1 });
    expect(w.server.pool.heldCount).toBe(0);
  });
});

describe('early-release variants (FIGS. 6-8): the PSAM is released with S2 and the expected S3', () => {
  it('early release: the payment server compares S3, then posts it to the same PSAM to confirm its record', async () => {
    const { ch } = newCard(5000);
    const r = await buy(w.post, MERCHANTS.er, ch, { amount: 300 });
    expect(w.server.pool.heldCount).toBe(0);
    expect(r.result!.body).toMatchObject({ status: 'approved', resultC: { verifiedBy: 'payment-server' } });
    await w.server.service.resolvePending();
    expect(await w.server.store.get(r.paymentId!)).toMatchObject({ state: 'completed', psamConfirmed: true });
    expect(await psamSums(w.psams)).toEqual({ confirmed: 300, unconfirmed: 0 });
  });

  it('trusted agent: the Debit IEP carries the expected S3 and a sealed authorisation; /v1/confirm books it', async () => {
    const { ch } = newCard(5000);
    const r = await buy(w.post, MERCHANTS.ta, ch, { amount: 200 });
    expect(r.iep!.expectedS3).toMatch(/^[0-9A-F]{16}$/);
    const auth = open(r.side.derived, Label.DEBIT_AUTHORISATION, r.iep!.authorisation!) as DebitAuthorisation;
    const s3 = (r.card as { s3: Buffer }).s3;
    expect(auth).toMatchObject({ paymentId: r.paymentId, amount: 200, s3Sha256: createHash('sha256').update(s3).digest('hex') });
    expect(r.iep!.expectedS3).toBe(s3.toString('hex').toUpperCase());
    expect(r.result!.body.status).toBe('approved');
    expect(await ledgerSum()).toBe(200);
  });

  it('merchant compare: the expected S3 is sealed for the merchant; a wrong S3 at /v1/confirm is declined', async () => {
    const { ch } = newCard(5000);
    const r = await buy(w.post, MERCHANTS.mc, ch, { amount: 150 });
    const x = open(r.side.derived, Label.EXPECTED_S3, r.iep!.expectedS3ForMerchant!) as ExpectedS3ForMerchant;
    expect(x).toMatchObject({ paymentId: r.paymentId, amount: 150, expectedS3: (r.card as { s3: Buffer }).s3.toString('hex').toUpperCase() });
    expect(r.result!.body.status).toBe('approved');
    const bad = await buy(w.post, MERCHANTS.mc, ch, { amount: 10, forgeS3: true });
    expect(bad.result!.body).toMatchObject({ status: 'declined', resultC: { reason: 'S3_INVALID' } });
    expect(await ledgerSum()).toBe(150);
  });
});

describe('encryption layer (FIG. 9)', () => {
  it('draw sealed under the TSK, Debit IEP sealed, Debit Result C under the TSK and M under the derived key', async () => {
    const { ch } = newCard(5000);
    const r = await buy(w.post, MERCHANTS.enc, ch, { amount: 120 });
    expect(r.draw.body.debit).toBeUndefined();
    expect(r.draw.body.sealed).toBeDefined();
    expect(r.result!.body.resultC).toBeUndefined();
    const c = open(r.side.tsk!, Label.DEBIT_RESULT_C, r.result!.body.resultCSealed) as DebitResultPayload;
    expect(c).toMatchObject({ status: 'approved', amount: 120 });
    expect(r.resultM).toMatchObject({ status: 'approved', amount: 120 });
    expect(() => open(r.side.tsk!, Label.DEBIT_RESULT_M, r.result!.body.resultM)).toThrow(/not authentic/);
  });

  it('an ETSK under the wrong key cannot open the draw: 401, nothing stored; a plain draw is refused', async () => {
    const { ch } = newCard(5000);
    const r = await buy(w.post, { ...MERCHANTS.enc, sharedKey: Buffer.alloc(16, 0x42) }, ch, { amount: 120 });
    expect(r.draw).toMatchObject({ status: 401, body: { error: { code: 'DRAW_NOT_AUTHENTIC' } } });
    const plain = await buy(w.post, { ...MERCHANTS.enc, encrypted: false }, ch, { amount: 120 });
    expect(plain.draw.body.error.code).toBe('ENCRYPTION_REQUIRED');
    expect(await w.server.store.countByState()).toEqual({});
  });
});

describe('authentication (FIG. 16)', () => {
  it('returns an authentication result, moves the counter, not the balance, and books nothing', async () => {
    const { ch } = newCard(5000);
    const r = await buy(w.post, MERCHANTS.std, ch, { kind: 'authentication' });
    expect(r.resultM).toMatchObject({ type: 'authentication-result', status: 'approved', amount: 0, kind: 'authentication' });
    expect(await balanceOf(ch)).toBe(5000);
    expect(await w.server.store.ledger()).toEqual([]);
    expect(await w.server.store.countByState()).toEqual({ completed: 1 });
  });
});

describe('abort', () => {
  it('the client gives up after the draw: failed, PSAM released, the debit response is then refused', async () => {
    const { ch } = newCard(5000);
    const r = await buy(w.post, MERCHANTS.std, ch, { amount: 100, stopAfter: 'draw' });
    expect(w.server.pool.heldCount).toBe(1);
    expect(await w.post('/v1/abort', { paymentId: r.paymentId, reason: 'cancelled' })).toMatchObject({ status: 200, body: { state: 'failed', reason: 'ABORTED' } });
    expect(w.server.pool.heldCount).toBe(0);
    expect((await w.post('/v1/debit-response', { paymentId: r.paymentId, response: { paymentId: r.paymentId, sw: '6985' } })).status).toBe(409);
  });
});

describe('value conservation over a mixed run', () => {
  it('card balances + PSAM confirmed and unconfirmed sums add up; ledger == confirmed', async () => {
    const cards = [newCard(3000), newCard(3000), newCard(3000)];
    const merchants = [MERCHANTS.std, MERCHANTS.er, MERCHANTS.ta, MERCHANTS.mc, MERCHANTS.enc];
    let n = 0;
    for (const m of merchants) for (const c of cards) await buy(w.post, m, c.ch, { amount: 10 + n++, forgeS3: n % 7 === 0 });
    await w.server.service.resolvePending();
    const balances = (await Promise.all(cards.map((c) => balanceOf(c.ch)))).reduce((a, b) => a + b, 0);
    const sums = await psamSums(w.psams);
    expect(balances + sums.confirmed + sums.unconfirmed).toBe(9000);
    expect(await ledgerSum()).toBe(sums.confirmed);
    expect(w.server.pool.heldCount).toBe(0);
  });
});

describe('health', () => {
  it('lists the pool: ids, PSAM ids, state, in service', async () => {
    const h = await w.get('/v1/health');
    expect(h.body).toMatchObject({ status: 'ok', held: 0, psams: [{ id: 'psam-0', psamId: '9990029000000001', state: 'idle', inService: true }, { id: 'psam-1', psamId: '9990029000000019', inService: true }] });
    const c = new EmulatorChannel(w.psams[0]!);
    expect(await readBatch(c, 'open')).toEqual([]);
  });
});
