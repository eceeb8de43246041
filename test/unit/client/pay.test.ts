// The client terminal (payAtMerchant) end to end in one process: a purse card and a PSAM in the card
// emulator (EmulatorChannel), the merchant server and a stub payment server on loopback HTTP. Every variant,
// FIG. 9, authentication, cancel, refusals, a tampered amount (never passed to the card) and a forged S3.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PAYMENT_VARIANTS, type PaymentPage, type PaymentVariant } from '../../../src/protocol/payment-messages.ts';
import { ClientPaymentError, payAtMerchant, type PayOptions, type PaymentOffer } from '../../../src/client/index.ts';
import { parsePaymentPage } from '../../../src/client/page.ts';
import { createMerchantServer, type MerchantServer } from '../../../src/server/merchant/server.ts';
import { readTotals } from '../../../src/terminal/psam.ts';
import { readPurse } from '../../../src/terminal/purse.ts';
import { newCard, newPsam, CARD_PROFILES, type TestCard, type TestPsam } from '../psam/helpers.ts';
import { forgeS3, InterposedChannel, merchantConfig, refuseDebit, SHARED_KEY_HEX } from './helpers.ts';
import { startStubPaymentServer, type StubPaymentServer } from './stub-payment-server.ts';

const KEY = Buffer.from(SHARED_KEY_HEX, 'hex');
let psam: TestPsam;
let pay: StubPaymentServer;
const shops = new Map<string, { server: MerchantServer; url: string }>();

const setups: { variant: PaymentVariant; encrypted: boolean }[] = PAYMENT_VARIANTS.flatMap((variant) => [
  { variant, encrypted: false },
  { variant, encrypted: true },
]);
const idOf = (s: { variant: PaymentVariant; encrypted: boolean }) => `SHOP-${s.variant}${s.encrypted ? '-enc' : ''}`.toUpperCase();

beforeAll(async () => {
  psam = await newPsam('des');
  pay = await startStubPaymentServer(setups.map((s) => ({ id: idOf(s), sharedKey: KEY, ...s })), psam.ch);
  for (const s of setups) {
    const server = await createMerchantServer({ config: merchantConfig({ ...s, merchantId: idOf(s), paymentServer: pay.url }), logLevel: false });
    shops.set(idOf(s), { server, url: await server.listen() });
  }
});

afterAll(async () => {
  await pay?.close();
  for (const s of shops.values()) await s.server.close();
});

async function orderAt(shopId: string, body: unknown = { items: [{ sku: 'ebook-ts' }] }): Promise<{ txnId: string; payUrl: string; payJsonUrl: string }> {
  const res = await fetch(`${shops.get(shopId)!.url}/api/orders`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  expect(res.status).toBe(201);
  return (await res.json()) as { txnId: string; payUrl: string; payJsonUrl: string };
}

async function orderStatus(shopId: string, txnId: string) {
  return (await (await fetch(`${shops.get(shopId)!.url}/api/orders/${txnId}`)).json()) as { status: string; released: boolean };
}

const yes: PayOptions = { confirm: () => true };
const balanceOf = async (c: TestCard) => (await readPurse(c.ch)).balance;
const paidTotal = async () => (await readTotals(psam.ch)).reduce((s, t) => s + t.sum, 0);

describe('payAtMerchant over in-process cards and loopback HTTP', () => {
  for (const s of setups) {
    it(`${s.variant}${s.encrypted ? ' + FIG. 9' : ''}: the card pays the order's amount, the merchant releases the goods`, async () => {
      const card = newCard(CARD_PROFILES.des, 2000);
      const shop = idOf(s);
      const o = await orderAt(shop, { items: [{ sku: 'ebook-ts' }, { sku: 'song-01' }] });
      const before = await paidTotal();
      const steps: string[] = [];
      let offered: PaymentOffer | undefined;
      const r = await payAtMerchant(o.payUrl, card.ch, {
        confirm: (offer) => {
          offered = offer;
          return true;
        },
        onProgress: (step, msg) => steps.push(`${step}: ${msg}`),
        terminalId: 'unit-test',
      });
      expect(offered).toMatchObject({ amount: 519, shown: '5.19 EUR', card: '999001******0017', balance: '20.00 EUR' });
      expect(r).toMatchObject({ status: 'paid', released: true, variant: s.variant, amount: 519, balanceBefore: 2000, balanceAfter: 1481, goods: '1 x download token EBOOK; 1 x download token SONG' });
      expect(await balanceOf(card)).toBe(1481);
      expect((await orderStatus(shop, o.txnId)).status).toBe('paid');
      expect(await paidTotal()).toBe(before + 519); // the PSAM's record is confirmed in every variant
      expect(steps.join('\n')).not.toMatch(/9990010000000017/); // card number only masked
      if (s.variant === 'standard' || s.variant === 'early-release') expect(r.resultC).toMatchObject({ status: 'approved', txnId: o.txnId, amount: 519 });
    });
  }

  it('FIG. 16: a benefit claim authenticates the card; nothing is debited, the counter moves, the benefit is released', async () => {
    const card = newCard(CARD_PROFILES.des, 2000);
    const o = await orderAt('SHOP-STANDARD', { benefit: 'lounge' });
    const r = await payAtMerchant(o.payUrl, card.ch, yes);
    expect(r).toMatchObject({ status: 'authenticated', released: true, amount: 0, goods: 'lounge pass L-1', balanceAfter: 2000, counter: 1 });
    expect(await balanceOf(card)).toBe(2000);
  });

  it('the HTML payment page works as well as the JSON one', async () => {
    const card = newCard(CARD_PROFILES.des, 2000);
    const o = await orderAt('SHOP-STANDARD');
    const html = await (await fetch(o.payUrl, { headers: { accept: 'text/html' } })).text();
    const page = parsePaymentPage(html, 'text/html');
    expect(page.ticket.order.txnId).toBe(o.txnId);
    expect(await payAtMerchant(page, card.ch, yes)).toMatchObject({ status: 'paid', released: true });
  });

  it('cancel: nothing is sent to the payment server and nothing is debited', async () => {
    const card = newCard(CARD_PROFILES.des, 2000);
    const o = await orderAt('SHOP-STANDARD');
    const draws = pay.calls.filter((c) => c === 'draw').length;
    const r = await payAtMerchant(o.payUrl, card.ch, { confirm: () => false });
    expect(r).toMatchObject({ status: 'cancelled', released: false });
    expect(pay.calls.filter((c) => c === 'draw').length).toBe(draws);
    expect(await balanceOf(card)).toBe(2000);
    expect((await orderStatus('SHOP-STANDARD', o.txnId)).status).toBe('pending');
  });

  it('insufficient funds: refused at the terminal before any draw request (step 608), or by the PSAM when the check is skipped', async () => {
    const card = newCard(CARD_PROFILES.des, 500);
    const o = await orderAt('SHOP-STANDARD', { items: [{ sku: 'big-box' }] });
    const draws = pay.calls.filter((c) => c === 'draw').length;
    const e = (await payAtMerchant(o.payUrl, card.ch, yes).catch((x) => x)) as ClientPaymentError;
    expect(e).toBeInstanceOf(ClientPaymentError);
    expect(e).toMatchObject({ code: 'CARD_CANNOT_PAY', cardDebited: 'no' });
    expect(e.message).toBe('insufficient funds: the card holds 5.00 EUR, the purchase is 99.00 EUR; nothing was debited');
    expect(pay.calls.filter((c) => c === 'draw').length).toBe(draws);
    const e2 = (await payAtMerchant(o.payUrl, card.ch, { ...yes, precheck: false }).catch((x) => x)) as ClientPaymentError;
    expect(e2).toMatchObject({ code: 'INSUFFICIENT_FUNDS', stage: 'draw', cardDebited: 'no' });
    expect(await balanceOf(card)).toBe(500);
  });

  it('a card that refuses the DEBIT: the payment is aborted at the payment server with a clear message', async () => {
    const card = new InterposedChannel(newCard(CARD_PROFILES.des, 2000).ch);
    card.before = refuseDebit(0x9402);
    const o = await orderAt('SHOP-STANDARD');
    const e = (await payAtMerchant(o.payUrl, card, yes).catch((x) => x)) as ClientPaymentError;
    expect(e).toMatchObject({ code: 'CARD_REFUSED', cardDebited: 'no' });
    expect(e.message).toMatch(/^the card refused the debit: card expired \(last valid day \d{8}\); nothing was debited$/);
    expect(pay.calls.at(-1)).toBe('abort:card-refused 9402');
    expect(pay.payments.get(e.paymentId!)!.state).toBe('aborted');
  });

  it('tampered amount: a Debit IEP for another amount never reaches the card; the payment is aborted', async () => {
    const inner = newCard(CARD_PROFILES.des, 2000);
    const card = new InterposedChannel(inner.ch);
    const o = await orderAt('SHOP-STANDARD');
    pay.tamper.amountDelta = 100;
    try {
      const e = (await payAtMerchant(o.payUrl, card, yes).catch((x) => x)) as ClientPaymentError;
      expect(e).toMatchObject({ code: 'AMOUNT_MISMATCH', cardDebited: 'no' });
      expect(e.message).toBe("refused: the debit is for 5.20 EUR, the merchant's order is 4.20 EUR; the card was not asked to debit anything, the payment is aborted");
    } finally {
      pay.tamper.amountDelta = 0;
    }
    expect(card.debits()).toHaveLength(0);
    expect(pay.calls.at(-1)).toBe('abort:amount-mismatch');
    expect(await balanceOf(inner)).toBe(2000);
    expect((await orderStatus('SHOP-STANDARD', o.txnId)).status).toBe('pending');
  });

  it('a client that alters the amount on the page: the payment server refuses the order MAC, nothing is debited', async () => {
    const card = newCard(CARD_PROFILES.des, 2000);
    const o = await orderAt('SHOP-STANDARD');
    const page = (await (await fetch(o.payJsonUrl)).json()) as PaymentPage;
    const altered: PaymentPage = { ...page, ticket: { ...page.ticket, order: { ...page.ticket.order, amount: 1 } } };
    const e = (await payAtMerchant(altered, card.ch, yes).catch((x) => x)) as ClientPaymentError;
    expect(e).toMatchObject({ code: 'ORDER_MAC_INVALID', stage: 'draw', cardDebited: 'no' });
    expect(await balanceOf(card)).toBe(2000);
  });

  it('forged S3 (standard): the payment server declines, the merchant releases nothing', async () => {
    const inner = newCard(CARD_PROFILES.des, 2000);
    const card = new InterposedChannel(inner.ch);
    card.after = forgeS3;
    const o = await orderAt('SHOP-STANDARD');
    const r = await payAtMerchant(o.payUrl, card, yes);
    expect(r).toMatchObject({ status: 'declined', released: false, reason: 'S3_INVALID' });
    expect((await orderStatus('SHOP-STANDARD', o.txnId))).toMatchObject({ status: 'declined', released: false });
  });

  it('forged S3 (trusted-agent): the terminal itself finds the mismatch and does not tell the merchant it was paid', async () => {
    const card = new InterposedChannel(newCard(CARD_PROFILES.des, 2000).ch);
    card.after = forgeS3;
    const o = await orderAt('SHOP-TRUSTED-AGENT');
    const e = (await payAtMerchant(o.payUrl, card, yes).catch((x) => x)) as ClientPaymentError;
    expect(e).toMatchObject({ code: 'S3_MISMATCH', cardDebited: 'yes' });
    expect((await orderStatus('SHOP-TRUSTED-AGENT', o.txnId)).status).toBe('pending');
  });

  it('forged S3 (merchant-compare): the payment server declines and the merchant does not release', async () => {
    const card = new InterposedChannel(newCard(CARD_PROFILES.des, 2000).ch);
    card.after = forgeS3;
    const o = await orderAt('SHOP-MERCHANT-COMPARE');
    const r = await payAtMerchant(o.payUrl, card, yes);
    expect(r).toMatchObject({ status: 'declined', released: false });
    expect((await orderStatus('SHOP-MERCHANT-COMPARE', o.txnId)).released).toBe(false);
  });

  it('a replayed payment page (same txnId): the payment server refuses the second draw, the card is not debited twice', async () => {
    const card = newCard(CARD_PROFILES.des, 2000);
    const o = await orderAt('SHOP-STANDARD');
    await payAtMerchant(o.payUrl, card.ch, yes);
    const e = (await payAtMerchant(o.payUrl, card.ch, yes).catch((x) => x)) as ClientPaymentError;
    expect(e).toMatchObject({ code: 'DRAW_REPLAYED', cardDebited: 'no' });
    expect(await balanceOf(card)).toBe(2000 - 420);
  });

  it('an unreachable payment server: a clear error and nothing debited', async () => {
    const server = await createMerchantServer({ config: merchantConfig({ paymentServer: 'http://127.0.0.1:9' }), logLevel: false });
    const url = await server.listen();
    try {
      const card = newCard(CARD_PROFILES.des, 2000);
      const res = await fetch(`${url}/api/orders`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ items: [{ sku: 'song-01' }] }) });
      const o = (await res.json()) as { payUrl: string };
      const e = (await payAtMerchant(o.payUrl, card.ch, yes).catch((x) => x)) as ClientPaymentError;
      expect(e).toMatchObject({ code: 'DRAW_FAILED', cardDebited: 'no' });
      expect(await balanceOf(card)).toBe(2000);
    } finally {
      await server.close();
    }
  });
});
