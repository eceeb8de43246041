// The client terminal and the merchant server against the real payment server (src/server/payment), all in one
// process: in-process PSAMs behind the payment server's pool, in-process cards, loopback HTTP. The contract
// check before the rig suite runs the same flows over pcscd + vpcd with the CLI.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClientPaymentError, payAtMerchant, type PayOptions } from '../../../src/client/index.ts';
import { PAYMENT_VARIANTS, type PaymentVariant } from '../../../src/protocol/payment-messages.ts';
import { parsePaymentConfig } from '../../../src/server/payment/config.ts';
import { createPaymentServer, type PaymentServer } from '../../../src/server/payment/server.ts';
import { listen } from '../../../src/server/app.ts';
import { createMerchantServer, type MerchantServer } from '../../../src/server/merchant/server.ts';
import { readTotals } from '../../../src/terminal/psam.ts';
import { readPurse } from '../../../src/terminal/purse.ts';
import { newCard, newPsam, CARD_PROFILES, type TestPsam } from '../psam/helpers.ts';
import { forgeS3, InterposedChannel, merchantConfig, SHARED_KEY_HEX } from './helpers.ts';

const setups: { variant: PaymentVariant; encrypted: boolean }[] = PAYMENT_VARIANTS.flatMap((variant) => [
  { variant, encrypted: false },
  { variant, encrypted: true },
]);
const idOf = (s: { variant: PaymentVariant; encrypted: boolean }) => `SHOP-${s.variant}${s.encrypted ? '-enc' : ''}`.toUpperCase();

let psam: TestPsam;
let payment: PaymentServer;
let paymentUrl: string;
const shops = new Map<string, { server: MerchantServer; url: string }>();
const yes: PayOptions = { confirm: () => true };

beforeAll(async () => {
  psam = await newPsam('des');
  const config = parsePaymentConfig(
    { merchants: setups.map((s) => ({ id: idOf(s), sharedKey: SHARED_KEY_HEX, ...s })), psams: [{ reader: 'unit PSAM' }] },
    'unit test',
  );
  payment = await createPaymentServer({ config, dbPath: ':memory:', logLevel: false, openPsam: async () => psam.ch, watchPcsc: false, resolveEveryMs: 0 });
  paymentUrl = await listen(payment.app, '127.0.0.1', 0);
  for (const s of setups) {
    const server = await createMerchantServer({ config: merchantConfig({ ...s, merchantId: idOf(s), paymentServer: paymentUrl }), logLevel: false });
    shops.set(idOf(s), { server, url: await server.listen() });
  }
});

afterAll(async () => {
  for (const s of shops.values()) await s.server.close();
  await payment?.close();
});

async function orderAt(shopId: string, body: object = { items: [{ sku: 'ebook-ts' }] }): Promise<{ txnId: string; payUrl: string }> {
  const res = await fetch(`${shops.get(shopId)!.url}/api/orders`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return (await res.json()) as { txnId: string; payUrl: string };
}

describe('payAtMerchant with the payment server', () => {
  for (const s of setups) {
    it(`${s.variant}${s.encrypted ? ' + FIG. 9' : ''}: paid, goods released, the PSAM's total and the card agree`, async () => {
      const card = newCard(CARD_PROFILES.des, 2000);
      const before = (await readTotals(psam.ch)).reduce((n, t) => n + t.sum, 0);
      const o = await orderAt(idOf(s));
      const r = await payAtMerchant(o.payUrl, card.ch, yes);
      expect(r).toMatchObject({ status: 'paid', released: true, variant: s.variant, balanceAfter: 1580 });
      expect((await readPurse(card.ch)).balance).toBe(1580);
      expect((await readTotals(psam.ch)).reduce((n, t) => n + t.sum, 0)).toBe(before + 420);
    });
  }

  it('authentication (FIG. 16): authenticated, nothing debited', async () => {
    const card = newCard(CARD_PROFILES.des, 2000);
    const o = await orderAt('SHOP-STANDARD-ENC', { benefit: 'lounge' });
    expect(await payAtMerchant(o.payUrl, card.ch, yes)).toMatchObject({ status: 'authenticated', released: true, balanceAfter: 2000 });
  });

  it('forged S3: declined by the payment server, nothing released', async () => {
    const card = new InterposedChannel(newCard(CARD_PROFILES.des, 2000).ch);
    card.after = forgeS3;
    const o = await orderAt('SHOP-STANDARD');
    const r = await payAtMerchant(o.payUrl, card, yes).catch((e) => e as ClientPaymentError);
    expect(r).toMatchObject({ status: 'declined', released: false, reason: 'S3_INVALID' });
  });

  it('a replayed draw (same page twice) and insufficient funds at the PSAM are refused; nothing debited', async () => {
    const card = newCard(CARD_PROFILES.des, 2000);
    const o = await orderAt('SHOP-EARLY-RELEASE');
    await payAtMerchant(o.payUrl, card.ch, yes);
    expect(await payAtMerchant(o.payUrl, card.ch, yes).catch((e) => e)).toMatchObject({ code: 'DRAW_REPLAYED', cardDebited: 'no' });
    const big = await orderAt('SHOP-STANDARD', { items: [{ sku: 'big-box' }] });
    expect(await payAtMerchant(big.payUrl, card.ch, { ...yes, precheck: false }).catch((e) => e)).toMatchObject({ code: 'INSUFFICIENT_FUNDS', cardDebited: 'no' });
    expect((await readPurse(card.ch)).balance).toBe(1580);
  });
});
