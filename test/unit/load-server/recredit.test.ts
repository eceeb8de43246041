// Re-credit of a failed purchase (seed 003 L311) at the load server: a RecreditClaim sealed with the issuer
// link key credits the named card through the normal load commands, once per paymentId, in its own table
// (never a settlement, never a bank hold); a forged claim or another card changes nothing; a lost or refused
// credit is settled by the zero-value request and can be tried again.

import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { recreditCard } from '../../../src/client/load-recredit.ts';
import { IepIns } from '../../../src/crypto/purse-apdu.ts';
import { seal } from '../../../src/protocol/envelope.ts';
import { Label, type RecreditClaim } from '../../../src/protocol/payment-messages.ts';
import { readPurse } from '../../../src/terminal/purse.ts';
import { CARD_PROFILES, newCard, TamperChannel, useDemoIssuer } from '../psam/helpers.ts';
import { LOAD_CONFIG, startWorld, type LoadWorld } from './harness.ts';

const issuer = useDemoIssuer();
const FAST = { attempts: 2, delayMs: 5 };
let w: LoadWorld;
beforeEach(async () => {
  w = await startWorld(issuer);
});
afterEach(async () => w.close());

const claimFor = (cardId: string, paymentId = 'P-1001', key = LOAD_CONFIG.issuerLinkKey!) => {
  const c: RecreditClaim = { paymentId, merchantId: 'shop-1', txnId: 'T-1', cardId, amount: 420, currency: 978, exponent: 2, cardCounter: 3, psamId: '9990020000000011', psamTxn: 7, reason: 'no Debit Result', issuedAt: new Date().toISOString() };
  return seal(key, Label.RECREDIT_CLAIM, c);
};

describe('re-credit', () => {
  it('credits the card once per paymentId, logged apart from loads', async () => {
    const claim = claimFor(w.card.cardId);
    const r = await recreditCard(w.card.ch, { loadServer: w.loadUrl, claim, retry: FAST });
    expect(r).toMatchObject({ status: 'credited', basis: 's3-verified', balanceBefore: 1000, balance: 1420 });
    const again = await recreditCard(w.card.ch, { loadServer: w.loadUrl, claim, retry: FAST });
    expect(again).toMatchObject({ status: 'credited', basis: 'already credited', balance: 1420 });
    expect((await w.loadStore.getRecredit('P-1001'))?.state).toBe('credited');
    expect(await w.loadStore.settlements()).toEqual([]);
    expect((await w.totals()).holds).toEqual({ held: 0, captured: 0, released: 0 });
  });

  it('a claim not sealed with the issuer link key is refused and recorded nowhere', async () => {
    const forged = claimFor(w.card.cardId, 'P-2', Buffer.alloc(16, 0x11));
    await expect(recreditCard(w.card.ch, { loadServer: w.loadUrl, claim: forged, retry: FAST })).rejects.toMatchObject({ status: 403, code: 'CLAIM_NOT_AUTHENTIC' });
    expect(await w.loadStore.getRecredit('P-2')).toBeUndefined();
    expect((await readPurse(w.card.ch)).balance).toBe(1000);
  });

  it('the claim names another card: this card is not credited', async () => {
    const other = newCard(CARD_PROFILES.des, 0);
    await expect(recreditCard(w.card.ch, { loadServer: w.loadUrl, claim: claimFor(other.cardId, 'P-3'), retry: FAST })).rejects.toMatchObject({ code: 'WRONG_CARD' });
    expect((await readPurse(w.card.ch)).balance).toBe(1000);
  });

  it('the CREDIT answer lost: the zero-value request finds the credit; a forged S2: not credited, and a retry credits once', async () => {
    const lost = new TamperChannel(w.card.ch);
    lost.onResponse = (c, r) => (c.ins === IepIns.CREDIT_FOR_LOAD ? undefined : r);
    expect(await recreditCard(lost, { loadServer: w.loadUrl, claim: claimFor(w.card.cardId, 'P-4'), retry: FAST })).toMatchObject({ status: 'credited', basis: 'zero-value-credited', balance: 1420 });

    const forged = new TamperChannel(w.card.ch);
    forged.onCommand = (c) => (c.ins === IepIns.CREDIT_FOR_LOAD ? { ...c, data: Buffer.alloc(8, 0x5a) } : c);
    const claim = claimFor(w.card.cardId, 'P-5');
    expect(await recreditCard(forged, { loadServer: w.loadUrl, claim, retry: FAST })).toMatchObject({ status: 'not-credited', basis: 'zero-value-failed', balance: 1420 });
    expect((await w.loadStore.getRecredit('P-5'))?.state).toBe('claimed');
    expect(await recreditCard(w.card.ch, { loadServer: w.loadUrl, claim, retry: FAST })).toMatchObject({ status: 'credited', balance: 1840 });
    expect(await recreditCard(w.card.ch, { loadServer: w.loadUrl, claim, retry: FAST })).toMatchObject({ status: 'credited', basis: 'already credited', balance: 1840 });
  });
});
