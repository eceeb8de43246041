// OPAL end to end over loopback HTTP: the real payment server (in-process PSAMs), merchant, bank and load servers,
// and OPAL with a virtual card: register, one-time password, forced change, balance, purchase (payAtMerchant over
// the pseudo reader), authentication (FIG. 16), load from the bank (internetLoad), history, and an operator
// re-credit of a failed debited purchase logged apart from loads.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listen } from '../../../src/server/app.ts';
import { createMerchantServer, type MerchantServer } from '../../../src/server/merchant/server.ts';
import { loadOpalConfig } from '../../../src/opal/config.ts';
import { createOpalServer, type OpalServer } from '../../../src/opal/server.ts';
import { MemoryMailer } from '../../../src/opal/mail.ts';
import { merchantConfig } from '../client/helpers.ts';
import { KEY_HEX, startWorld as startPaymentWorld, type World } from '../payment-server/support.ts';
import { ALICE, startWorld as startLoadWorld, type LoadWorld } from '../load-server/harness.ts';
import { repoPath, useDemoIssuer } from '../psam/helpers.ts';
import { useOpalHsm, useTempDir } from './helpers.ts';

const hsm = useOpalHsm();
const tmp = useTempDir();
const issuer = useDemoIssuer();
const ADMIN = 'operator-token-for-tests';

let payment: World;
let merchant: MerchantServer;
let merchantUrl: string;
let loads: LoadWorld;
let opal: OpalServer;
const mailer = new MemoryMailer();

beforeAll(async () => {
  payment = await startPaymentWorld({ psams: 1 });
  const paymentUrl = await listen(payment.server.app, '127.0.0.1', 0);
  merchant = await createMerchantServer({ config: merchantConfig({ paymentServer: paymentUrl, merchantId: 'shop-std', sharedKey: KEY_HEX.std }), logLevel: false });
  merchantUrl = await merchant.listen();
  loads = await startLoadWorld(issuer);
  opal = await createOpalServer({ config: loadOpalConfig(repoPath('fixtures/opal/opal-two-bins.json')), hsm: hsm().hsm, dbPath: join(tmp(), 'opal.db'), mailer, logLevel: false, adminToken: ADMIN });
}, 60_000);
afterAll(async () => {
  await opal?.close();
  await merchant?.close();
  await payment?.close();
  await loads?.close();
});

let token = '';
async function call(method: 'GET' | 'POST', url: string, payload?: object, headers: Record<string, string> = {}): Promise<{ status: number; body: any }> {
  const r = await opal.app.inject({ method, url, ...(payload ? { payload } : {}), headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...headers } });
  return { status: r.statusCode, body: r.json() };
}
async function newOrder(body: object): Promise<string> {
  const r = await fetch(`${merchantUrl}/api/orders`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  expect(r.status).toBe(201);
  return ((await r.json()) as { payUrl: string }).payUrl;
}

describe('OPAL flows end to end', () => {
  it('register, first login with the one-time password, forced change, balance', async () => {
    const reg = await call('POST', '/v1/register', { userId: 'alice.opal', fundingAccount: '4111111111111111', fundingExpiry: '09/29', cvv2: '123', billingAddress: '1 Test Street', email: 'alice@example.org', password: 'Chosen-pass 2026' });
    expect(reg.status).toBe(200);
    expect(reg.body.card).toMatch(/^999001\*{6}\d{4}$/);
    expect((await call('POST', '/v1/register', { userId: 'x' })).status).toBe(400);
    const otp = /one-time password: (\S+)/.exec(mailer.sent.at(-1)!.text)![1]!;
    const l = await call('POST', '/v1/login', { userId: 'alice.opal', password: otp });
    expect(l.body.mustChangePassword).toBe(true);
    token = l.body.token;
    expect((await call('GET', '/v1/balance')).body.error.code).toBe('OPAL_PASSWORD_CHANGE_REQUIRED');
    expect((await call('POST', '/v1/password', { currentPassword: 'Chosen-pass 2026', newPassword: 'New-pass 2027' })).status).toBe(200);
    const b = await call('GET', '/v1/balance');
    expect(b.body).toMatchObject({ balance: 5000, currency: 978, exponent: 2, maxBalance: 50_000, maxLoad: 45_000, counter: 0 });
    expect((await call('GET', '/v1/balance', undefined, { authorization: 'Bearer not-a-valid-token-at-all-xx' })).status).toBe(401);
  });

  it('purchase at the merchant: quote, confirm, paid; a changed amount is refused and debits nothing', async () => {
    const pageUrl = await newOrder({ items: [{ sku: 'ebook-ts', quantity: 1 }] });
    const q = await call('POST', '/v1/purchase/quote', { pageUrl });
    expect(q.body).toMatchObject({ merchantId: 'shop-std', amount: 420, currency: 978, balance: { balance: 5000 } });
    const bad = await call('POST', '/v1/purchase', { pageUrl, amount: 100, txnId: q.body.txnId });
    expect(bad.body.status).toBe('cancelled');
    const p = await call('POST', '/v1/purchase', { pageUrl, amount: 420, txnId: q.body.txnId });
    expect(p.status).toBe(200);
    expect(p.body).toMatchObject({ status: 'paid', released: true, amount: 420, balanceBefore: 5000, balanceAfter: 4580 });
    expect((await call('GET', '/v1/balance')).body).toMatchObject({ balance: 4580, counter: 1 });
  });

  it('authentication (FIG. 16): nothing debited, the counter moves', async () => {
    const pageUrl = await newOrder({ benefit: 'lounge' });
    const p = await call('POST', '/v1/purchase', { pageUrl, amount: 0 });
    expect(p.body).toMatchObject({ status: 'authenticated', released: true });
    expect((await call('GET', '/v1/balance')).body).toMatchObject({ balance: 4580, counter: 2 });
  });

  it('load from the bank through the load server', async () => {
    const r = await call('POST', '/v1/load', { bankUrl: loads.bankUrl, bankUser: ALICE.user, bankPassword: ALICE.password, amount: '20.00' });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.body).toMatchObject({ status: 'loaded', amount: 2000, balance: 6580 });
    expect((await call('GET', '/v1/balance')).body).toMatchObject({ balance: 6580 });
  });

  it('history lists the purchase and load tables; an operator re-credit of a failed debited purchase is logged apart', async () => {
    const h = (await call('GET', '/v1/history')).body;
    expect(h.purchase.map((e: { status: string }) => e.status)).toEqual(['authenticated', 'paid', 'cancelled']);
    expect(h.load.map((e: { status: string }) => e.status)).toEqual(['loaded']);
    // A purchase that failed after the card was debited (as the pay library reports it).
    const user = opal.service.d.users.session(token);
    const id = await opal.service.d.history.start('purchase', user.cardId, 'purchase', { confirmedAmount: 300 });
    await opal.service.d.history.finish('purchase', id, user.cardId, 'failed', { confirmedAmount: 300, cardDebited: 'yes', code: 'RESULT_UNKNOWN' });
    expect((await call('POST', '/v1/admin/recredit', { cardId: user.cardId, purchaseId: id, reason: 'payment server lost' })).status).toBe(403);
    const rc = await call('POST', '/v1/admin/recredit', { cardId: user.cardId, purchaseId: id, reason: 'payment server lost' }, { 'x-opal-admin-token': ADMIN });
    expect(rc.body).toMatchObject({ amount: 300, newBalance: 6880 });
    const again = await call('POST', '/v1/admin/recredit', { cardId: user.cardId, purchaseId: id, reason: 'twice' }, { 'x-opal-admin-token': ADMIN });
    expect(again.status).toBe(400);
    const paidId = h.purchase[1].id;
    expect((await call('POST', '/v1/admin/recredit', { cardId: user.cardId, purchaseId: paidId, reason: 'not failed' }, { 'x-opal-admin-token': ADMIN })).status).toBe(400);
    const h2 = (await call('GET', '/v1/history')).body;
    expect(h2.recredit).toHaveLength(1);
    expect(h2.recredit[0]).toMatchObject({ status: 'credited', detail: { purchaseId: id, amount: 300 } });
    expect(h2.load).toHaveLength(1);
    expect((await call('GET', '/v1/balance')).body).toMatchObject({ balance: 6880 });
  });
});
