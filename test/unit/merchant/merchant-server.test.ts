// The merchant server without a payment server: the shop, the payment page's parameters (order MAC, TSK/ETSK),
// and the status endpoint's validation per variant, with results sealed here the way the payment server seals
// them. Goods are released once, only for a result that proves THIS order was paid.

import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { seal, verifyMacOf } from '../../../src/protocol/envelope.ts';
import { deriveTransactionKey, unwrapSessionKey } from '../../../src/protocol/keys.ts';
import { Label, type DebitResultPayload, type Order, type PaymentPage, type PaymentVariant } from '../../../src/protocol/payment-messages.ts';
import { MerchantConfigError, parseMerchantConfig, loadMerchantConfig } from '../../../src/server/merchant/config.ts';
import { createMerchantServer, type MerchantServer } from '../../../src/server/merchant/server.ts';
import { MERCHANT_ID, SHARED_KEY_HEX, merchantConfig } from '../client/helpers.ts';

const KEY = Buffer.from(SHARED_KEY_HEX, 'hex');
const servers: MerchantServer[] = [];
const tmp = mkdtempSync(join(tmpdir(), 'purselab-merchant-'));
afterAll(async () => {
  for (const s of servers) await s.close();
  rmSync(tmp, { recursive: true, force: true });
});

async function shop(o: { variant?: PaymentVariant; encrypted?: boolean; dbPath?: string } = {}) {
  const s = await createMerchantServer({ config: merchantConfig(o), logLevel: false, ...(o.dbPath ? { dbPath: o.dbPath } : {}) });
  servers.push(s);
  return s;
}

async function order(s: MerchantServer, body: object = { items: [{ sku: 'ebook-ts' }, { sku: 'song-01', quantity: 2 }] }) {
  const r = await s.app.inject({ method: 'POST', url: '/api/orders', payload: body });
  expect(r.statusCode, r.body).toBe(201);
  return r.json() as { txnId: string; amount: number; status: string; payUrl: string; statusUrl: string };
}

async function pageOf(s: MerchantServer, txnId: string): Promise<PaymentPage> {
  const r = await s.app.inject({ method: 'GET', url: `/orders/${txnId}/pay.json` });
  expect(r.statusCode).toBe(200);
  return r.json() as PaymentPage;
}

const result = (o: Order, over: Partial<DebitResultPayload> = {}): DebitResultPayload => ({
  type: o.kind === 'authentication' ? 'authentication-result' : 'debit-result',
  paymentId: `PAY-${o.txnId}`,
  merchantId: o.merchantId,
  txnId: o.txnId,
  status: 'approved',
  kind: o.kind,
  amount: o.amount,
  currency: o.currency,
  exponent: o.exponent,
  card: '999001******0017',
  cardCounter: 1,
  psamId: '9990020000000001',
  psamTxn: 1,
  verifiedBy: 'psam',
  completedAt: new Date().toISOString(),
  ...over,
});

const post = (s: MerchantServer, txnId: string, payload: unknown) => s.app.inject({ method: 'POST', url: `/api/orders/${txnId}/status`, payload: payload as object });
const statusOf = async (s: MerchantServer, txnId: string) => ((await s.app.inject({ method: 'GET', url: `/api/orders/${txnId}` })).json() as { status: string; released: boolean }).status;

describe('shop and payment page', () => {
  it('catalogue as HTML and JSON; an order priced from the catalogue with a fresh 20-hex txnId', async () => {
    const s = await shop();
    const html = await s.app.inject({ method: 'GET', url: '/' });
    expect(html.headers['content-type']).toMatch(/text\/html/);
    expect(html.body).toContain('E-book');
    const cat = (await s.app.inject({ method: 'GET', url: '/api/catalogue' })).json() as { items: { sku: string; price: number }[] };
    expect(cat.items.map((i) => i.sku)).toEqual(['ebook-ts', 'song-01', 'big-box']);
    const a = await order(s);
    const b = await order(s);
    expect(a.amount).toBe(420 + 2 * 99);
    expect(a.status).toBe('pending');
    expect(a.txnId).toMatch(/^[0-9A-F]{20}$/);
    expect(b.txnId).not.toBe(a.txnId);
  });

  it('the page parameters: order MACed under the derived key, payment server, status URL; HTML carries the same', async () => {
    const s = await shop();
    const a = await order(s);
    const p = await pageOf(s, a.txnId);
    expect(p.ticket.order).toMatchObject({ merchantId: MERCHANT_ID, txnId: a.txnId, kind: 'purchase', amount: 618, currency: 978, exponent: 2 });
    expect(verifyMacOf(deriveTransactionKey(KEY, MERCHANT_ID, a.txnId), Label.ORDER, p.ticket.order, p.ticket.mac)).toBe(true);
    expect(verifyMacOf(deriveTransactionKey(KEY, MERCHANT_ID, 'F'.repeat(20)), Label.ORDER, p.ticket.order, p.ticket.mac)).toBe(false);
    expect(p.paymentServer).toBe('http://127.0.0.1:9');
    expect(p.statusUrl).toMatch(new RegExp(`/api/orders/${a.txnId}/status$`));
    expect(p.tsk).toBeUndefined();
    const viaAccept = await s.app.inject({ method: 'GET', url: `/orders/${a.txnId}/pay`, headers: { accept: 'application/json' } });
    expect(viaAccept.json()).toEqual(p);
    const html = await s.app.inject({ method: 'GET', url: `/orders/${a.txnId}/pay` });
    expect(html.body).toContain('<param name="cost" value="6.18">');
    expect(html.body).toContain(`<param name="txnId" value="${a.txnId}">`);
    expect(html.body).toContain(`<param name="orderMac" value="${p.ticket.mac}">`);
    expect(html.body).toContain('<param name="statusUrl"');
  });

  it('FIG. 9: TSK and ETSK on the page, ETSK unwraps to the TSK under the derived key; the page reads the same twice', async () => {
    const s = await shop({ encrypted: true });
    const a = await order(s);
    const p = await pageOf(s, a.txnId);
    expect(p.tsk).toMatch(/^[0-9a-f]{32}$/);
    expect(unwrapSessionKey(deriveTransactionKey(KEY, MERCHANT_ID, a.txnId), Buffer.from(p.etsk!, 'hex')).toString('hex')).toBe(p.tsk);
    expect(await pageOf(s, a.txnId)).toEqual(p);
    expect((await pageOf(s, (await order(s)).txnId)).tsk).not.toBe(p.tsk);
  });

  it('a FIG. 16 benefit order: authentication, amount 0 in the AUTH currency', async () => {
    const s = await shop();
    const a = await order(s, { benefit: 'lounge' });
    expect((await pageOf(s, a.txnId)).ticket.order).toMatchObject({ kind: 'authentication', amount: 0, currency: 999, exponent: 0 });
    expect((await s.app.inject({ method: 'GET', url: '/benefits' })).body).toContain('Lounge pass');
  });

  it('bad orders are refused and create nothing', async () => {
    const s = await shop();
    for (const body of [{ items: [{ sku: 'nope' }] }, { items: [] }, { items: [{ sku: 'song-01', quantity: 0 }] }, { items: [{ sku: 'song-01' }], benefit: 'lounge' }, {}, { items: [{ sku: 'song-01' }], extra: 1 }, { benefit: 'nope' }]) {
      const r = await s.app.inject({ method: 'POST', url: '/api/orders', payload: body });
      expect(r.statusCode, JSON.stringify(body)).toBe(400);
    }
    expect((await s.app.inject({ method: 'GET', url: '/api/orders/0123456789ABCDEF0123' })).statusCode).toBe(404);
    expect((await s.app.inject({ method: 'GET', url: '/api/orders/not-an-id' })).statusCode).toBe(400);
    expect(await s.store.listReleases()).toEqual([]);
  });
});

describe('status: standard Debit Result M', () => {
  it('releases the goods on an approved result for this order, once; a second valid post is idempotent', async () => {
    const s = await shop();
    const a = await order(s);
    const o = (await pageOf(s, a.txnId)).ticket.order;
    const resultM = seal(deriveTransactionKey(KEY, MERCHANT_ID, a.txnId), Label.DEBIT_RESULT_M, result(o));
    const r1 = await post(s, a.txnId, { txnId: a.txnId, paymentId: `PAY-${a.txnId}`, resultM });
    expect(r1.statusCode, r1.body).toBe(200);
    expect(r1.json()).toMatchObject({ txnId: a.txnId, released: true, status: 'paid', goods: '1 x download token EBOOK; 2 x download token SONG' });
    const r2 = await post(s, a.txnId, { txnId: a.txnId, paymentId: `PAY-${a.txnId}`, resultM });
    expect(r2.json()).toMatchObject({ released: true, status: 'paid', message: 'already released' });
    expect(await s.store.listReleases()).toHaveLength(1);
    expect(await statusOf(s, a.txnId)).toBe('paid');
  });

  it('refuses a forged result, a result for another order, and one whose amount differs; nothing changes', async () => {
    const s = await shop();
    const a = await order(s);
    const b = await order(s, { items: [{ sku: 'big-box' }] });
    const oa = (await pageOf(s, a.txnId)).ticket.order;
    const ob = (await pageOf(s, b.txnId)).ticket.order;
    const forged = seal(deriveTransactionKey(Buffer.alloc(16, 7), MERCHANT_ID, a.txnId), Label.DEBIT_RESULT_M, result(oa));
    expect((await post(s, a.txnId, { txnId: a.txnId, paymentId: `PAY-${a.txnId}`, resultM: forged })).json()).toMatchObject({ error: { code: 'RESULT_NOT_AUTHENTIC' } });
    // A genuine result of order A, replayed to order B.
    const ra = seal(deriveTransactionKey(KEY, MERCHANT_ID, a.txnId), Label.DEBIT_RESULT_M, result(oa));
    const replay = await post(s, b.txnId, { txnId: b.txnId, paymentId: `PAY-${a.txnId}`, resultM: ra });
    expect(replay.statusCode).toBe(403);
    expect((await post(s, b.txnId, { txnId: a.txnId, paymentId: `PAY-${a.txnId}`, resultM: ra })).json()).toMatchObject({ error: { code: 'TXN_MISMATCH' } });
    // Sealed with the right key but for another amount, or under another label (a Debit Result C).
    const kb = deriveTransactionKey(KEY, MERCHANT_ID, b.txnId);
    expect((await post(s, b.txnId, { txnId: b.txnId, paymentId: 'X', resultM: seal(kb, Label.DEBIT_RESULT_M, result(ob, { amount: 1, paymentId: 'X' })) })).json()).toMatchObject({ error: { code: 'RESULT_MISMATCH' } });
    expect((await post(s, b.txnId, { txnId: b.txnId, paymentId: `PAY-${b.txnId}`, resultM: seal(kb, Label.DEBIT_RESULT_C, result(ob)) })).statusCode).toBe(403);
    // A result whose paymentId is not the one posted.
    expect((await post(s, b.txnId, { txnId: b.txnId, paymentId: 'OTHER', resultM: seal(kb, Label.DEBIT_RESULT_M, result(ob)) })).statusCode).toBe(403);
    // No proof at all, unknown fields.
    expect((await post(s, b.txnId, { txnId: b.txnId, paymentId: 'X' })).json()).toMatchObject({ error: { code: 'PROOF_MISSING' } });
    expect((await post(s, b.txnId, { txnId: b.txnId, paymentId: 'X', resultM: ra, released: true })).statusCode).toBe(400);
    expect(await s.store.listReleases()).toEqual([]);
    expect(await statusOf(s, a.txnId)).toBe('pending');
    expect(await statusOf(s, b.txnId)).toBe('pending');
  });

  it('an authentic declined result marks the order declined and releases nothing; a payment id is good for one order only', async () => {
    const s = await shop();
    const a = await order(s);
    const oa = (await pageOf(s, a.txnId)).ticket.order;
    const ka = deriveTransactionKey(KEY, MERCHANT_ID, a.txnId);
    const r = await post(s, a.txnId, { txnId: a.txnId, paymentId: `PAY-${a.txnId}`, resultM: seal(ka, Label.DEBIT_RESULT_M, result(oa, { status: 'declined', reason: 'S3_INVALID' })) });
    expect(r.json()).toMatchObject({ released: false, status: 'declined' });
    expect(await statusOf(s, a.txnId)).toBe('declined');
    const b = await order(s);
    const c = await order(s);
    const ob = (await pageOf(s, b.txnId)).ticket.order;
    const oc = (await pageOf(s, c.txnId)).ticket.order;
    const same = { paymentId: 'PAY-SAME' };
    expect((await post(s, b.txnId, { txnId: b.txnId, paymentId: 'PAY-SAME', resultM: seal(deriveTransactionKey(KEY, MERCHANT_ID, b.txnId), Label.DEBIT_RESULT_M, result(ob, same)) })).statusCode).toBe(200);
    const dup = await post(s, c.txnId, { txnId: c.txnId, paymentId: 'PAY-SAME', resultM: seal(deriveTransactionKey(KEY, MERCHANT_ID, c.txnId), Label.DEBIT_RESULT_M, result(oc, same)) });
    expect(dup.json()).toMatchObject({ error: { code: 'PAYMENT_REUSED' } });
    expect(await statusOf(s, c.txnId)).toBe('pending');
  });

  it('authentication: an authentication-result releases the benefit with status authenticated; a debit-result does not', async () => {
    const s = await shop();
    const a = await order(s, { benefit: 'lounge' });
    const o = (await pageOf(s, a.txnId)).ticket.order;
    const k = deriveTransactionKey(KEY, MERCHANT_ID, a.txnId);
    expect((await post(s, a.txnId, { txnId: a.txnId, paymentId: 'P1', resultM: seal(k, Label.DEBIT_RESULT_M, result(o, { type: 'debit-result', paymentId: 'P1' })) })).statusCode).toBe(403);
    const r = await post(s, a.txnId, { txnId: a.txnId, paymentId: 'P1', resultM: seal(k, Label.DEBIT_RESULT_M, result(o, { paymentId: 'P1' })) });
    expect(r.json()).toMatchObject({ released: true, status: 'authenticated', goods: 'lounge pass L-1' });
  });
});

describe('status: the other variants', () => {
  const S3 = Buffer.from('0011223344556677', 'hex');
  const debitResponse = (s3: Buffer) => Buffer.concat([Buffer.from('00000001000007D000', 'hex'), s3]).toString('hex');

  it('trusted-agent: the authorisation for this order and sha256(S3) equal to its s3Sha256; another S3 is refused', async () => {
    const s = await shop({ variant: 'trusted-agent' });
    const a = await order(s);
    const o = (await pageOf(s, a.txnId)).ticket.order;
    const k = deriveTransactionKey(KEY, MERCHANT_ID, a.txnId);
    const { status: _s, verifiedBy: _v, cardCounter: _c, ...rest } = result(o);
    const authorisation = seal(k, Label.DEBIT_AUTHORISATION, { ...rest, s3Sha256: createHash('sha256').update(S3).digest('hex') });
    const base = { txnId: a.txnId, paymentId: `PAY-${a.txnId}`, authorisation };
    const wrong = Buffer.from(S3);
    wrong[0]! ^= 1;
    expect((await post(s, a.txnId, { ...base, s3: wrong.toString('hex') })).json()).toMatchObject({ error: { code: 'S3_MISMATCH' } });
    expect((await post(s, a.txnId, { ...base, s3: S3.toString('hex'), debitResponse: debitResponse(wrong) })).json()).toMatchObject({ error: { code: 'BAD_PROOF' } });
    expect((await post(s, a.txnId, { txnId: a.txnId, paymentId: base.paymentId, s3: S3.toString('hex') })).json()).toMatchObject({ error: { code: 'PROOF_MISSING' } });
    expect(await statusOf(s, a.txnId)).toBe('pending');
    const ok = await post(s, a.txnId, { ...base, s3: S3.toString('hex'), debitResponse: debitResponse(S3) });
    expect(ok.json()).toMatchObject({ released: true, status: 'paid' });
  });

  it('merchant-compare: the sealed expected S3 for this order equals the card S3 (routine 366); a replay to another order does not open', async () => {
    const s = await shop({ variant: 'merchant-compare' });
    const a = await order(s);
    const b = await order(s);
    const o = (await pageOf(s, a.txnId)).ticket.order;
    const k = deriveTransactionKey(KEY, MERCHANT_ID, a.txnId);
    const expected = seal(k, Label.EXPECTED_S3, { paymentId: 'PA', merchantId: MERCHANT_ID, txnId: a.txnId, amount: o.amount, currency: o.currency, exponent: o.exponent, expectedS3: S3.toString('hex') });
    const wrong = Buffer.from(S3);
    wrong[7]! ^= 0x80;
    expect((await post(s, a.txnId, { txnId: a.txnId, paymentId: 'PA', s3: wrong.toString('hex'), expectedS3ForMerchant: expected })).json()).toMatchObject({ error: { code: 'S3_MISMATCH' } });
    expect((await post(s, b.txnId, { txnId: b.txnId, paymentId: 'PA', s3: S3.toString('hex'), expectedS3ForMerchant: expected })).json()).toMatchObject({ error: { code: 'RESULT_NOT_AUTHENTIC' } });
    // A genuine Debit Result M that says declined wins over a matching S3.
    const declined = seal(k, Label.DEBIT_RESULT_M, result(o, { paymentId: 'PA', status: 'declined', reason: 'S3_INVALID' }));
    expect((await post(s, a.txnId, { txnId: a.txnId, paymentId: 'PA', s3: S3.toString('hex'), expectedS3ForMerchant: expected, resultM: declined })).json()).toMatchObject({ released: false, status: 'declined' });
    const ok = await post(s, a.txnId, { txnId: a.txnId, paymentId: 'PA', s3: S3.toString('hex'), expectedS3ForMerchant: expected });
    expect(ok.json()).toMatchObject({ released: true, status: 'paid' });
    expect(await statusOf(s, b.txnId)).toBe('pending');
  });
});

describe('store and configuration', () => {
  it('orders and releases survive a restart (SQLite file)', async () => {
    const dbPath = join(tmp, 'shop.db');
    const s1 = await shop({ dbPath });
    const a = await order(s1);
    const o = (await pageOf(s1, a.txnId)).ticket.order;
    await post(s1, a.txnId, { txnId: a.txnId, paymentId: 'P9', resultM: seal(deriveTransactionKey(KEY, MERCHANT_ID, a.txnId), Label.DEBIT_RESULT_M, result(o, { paymentId: 'P9' })) });
    await s1.close();
    const s2 = await shop({ dbPath });
    expect(await statusOf(s2, a.txnId)).toBe('paid');
    expect(await s2.store.listReleases()).toMatchObject([{ txnId: a.txnId, paymentId: 'P9', status: 'paid' }]);
  });

  it('the fixture configuration loads; bad configurations name the field, never the key', () => {
    const c = loadMerchantConfig('fixtures/merchant/merchant.json');
    expect(c).toMatchObject({ merchantId: 'DEMO-SHOP-01', variant: 'standard', currency: 978 });
    expect(c.catalogue.length).toBeGreaterThan(2);
    const good = { merchantId: 'M1', sharedKey: SHARED_KEY_HEX, paymentServer: 'http://x', currency: 978, catalogue: [{ sku: 'a', name: 'A', price: 1, goods: 'g' }] };
    expect(() => parseMerchantConfig(good, 'f', '.')).not.toThrow();
    const bad: [object, RegExp][] = [
      [{ ...good, sharedKey: 'abc' }, /sharedKey/],
      [{ ...good, variant: 'fast' }, /variant/],
      [{ ...good, paymentServer: 'ftp://x' }, /paymentServer/],
      [{ ...good, catalogue: [] }, /catalogue/],
      [{ ...good, extra: 1 }, /extra: unknown field/],
      [{ ...good, sharedKey: undefined, sharedKeyEnv: 'PURSELAB_NO_SUCH_VAR' }, /PURSELAB_NO_SUCH_VAR is not set/],
    ];
    for (const [cfg, re] of bad) {
      const e = (() => {
        try {
          parseMerchantConfig(cfg, 'f', '.');
        } catch (x) {
          return x as Error;
        }
        return undefined;
      })();
      expect(e).toBeInstanceOf(MerchantConfigError);
      expect(e!.message).toMatch(re);
      expect(e!.message).not.toContain(SHARED_KEY_HEX);
    }
  });
});
