// Full purchases between the purse applet and the PSAM applet, through EmulatorChannel (the CardChannel code
// path of PC/SC), with src/terminal's purchase(): standard, early release, authentication, points; refusals;
// tamper and replay at the PSAM; resolving a failure.
import { describe, expect, it } from 'vitest';
import { BatchRecordStatus, TxType } from '../../../src/crypto/purse-mac.ts';
import {
  authenticate,
  CardStatusError,
  closeBatch,
  debitCard,
  initializeForPurchase,
  psamInitializePurchase,
  psamVerifyS3,
  purchase,
  PurchaseError,
  readBatch,
  readPsamData,
  readPurse,
  readTotals,
  resolvePurchase,
  selectPsam,
  verifyClosedBatch,
  purgeBatch,
  manageBlockedList,
  readBlockedList,
  readCurrencyList,
  manageCurrencies,
} from '../../../src/terminal/index.ts';
import { A, CARD_PROFILES, EUR, LOC, M, NOW, PROGRAMME, TODAY, TamperChannel, adminMacFn, cardState, newCard, newPsam, psamKey, psamState } from '../psam/helpers.ts';

const at = { date: TODAY, time: NOW, location: LOC };

async function expectFailure(p: Promise<unknown>): Promise<PurchaseError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(PurchaseError);
    return e as PurchaseError;
  }
  throw new Error('expected a PurchaseError');
}

describe('purchase (standard): card + PSAM, both applets', () => {
  for (const [cardName, psamName] of [['des', 'des'], ['aes', 'des'], ['des', 'aes'], ['aes', 'aes']] as const) {
    it(`debits exactly the amount, counter + 1, PSAM verifies S3 and logs a confirmed record (card ${cardName}, PSAM ${psamName})`, async () => {
      const c = newCard(CARD_PROFILES[cardName], 1000);
      const p = await newPsam(psamName);
      const r = await purchase(c.ch, p.ch, { amount: 420, ...at });
      expect(r).toMatchObject({
        kind: 'purchase', variant: 'standard', txType: 1, cardId: c.cardId, psamId: p.psamId, psamTxn: 1, amount: 420, currency: EUR, exponent: 2,
        counterBefore: 0, newCounter: 1, balanceBefore: 1000, newBalance: 580, verifiedBy: 'psam', psamConfirmed: true,
      });
      expect(r.debitResult).toEqual({ psamId: p.psamId, psamTxn: 1, cardId: c.cardId, newCounter: 1, txType: 1, amount: 420, currency: EUR, exponent: 2, status: 1 });
      const purse = await readPurse(c.ch);
      expect(purse).toMatchObject({ balance: 580, counter: 1 });
      const [rec] = await readBatch(p.ch, 'open');
      expect(rec).toMatchObject({ psamTxn: 1, status: BatchRecordStatus.CONFIRMED, cardId: c.cardId, newCounter: 1, amount: 420, s3: r.s3 });
      expect(await readTotals(p.ch)).toEqual([{ txType: 1, currency: EUR, exponent: 2, count: 1, sum: 420, unconfirmedCount: 0, unconfirmedSum: 0 }]);
    });
  }

  it('a day of purchases: the PSAM totals equal the card balance decrease; the closed batch verifies at the concentration point', async () => {
    const c = newCard(CARD_PROFILES.des, 50_000);
    const p = await newPsam();
    const amounts = [420, 1999, 1, 250, 12_345, 7];
    for (const a of amounts) await purchase(c.ch, p.ch, { amount: a, ...at });
    await authenticate(c.ch, p.ch, at);
    const sum = amounts.reduce((x, y) => x + y, 0);
    expect((await readPurse(c.ch)).balance).toBe(50_000 - sum);
    const summary = await closeBatch(p.ch);
    expect(summary.totals).toEqual([
      { txType: 1, currency: EUR, exponent: 2, count: amounts.length, sum, unconfirmedCount: 0, unconfirmedSum: 0 },
      { txType: 2, currency: 999, exponent: 0, count: 1, sum: 0, unconfirmedCount: 0, unconfirmedSum: 0 },
    ]);
    const records = await readBatch(p.ch, 'closed');
    expect(records).toHaveLength(7);
    const key = psamKey('batch', p.psamId, 1);
    expect(verifyClosedBatch(summary, records, key, 1, 1)).toBe(true);
    // Altered on the way: an amount, or a total.
    expect(verifyClosedBatch(summary, records.map((r, i) => (i === 2 ? { ...r, amount: 2 } : r)), key, 1, 1)).toBe(false);
    expect(verifyClosedBatch({ ...summary, totals: summary.totals.map((t) => ({ ...t, sum: t.sum + 100 })) }, records, key, 1, 1)).toBe(false);
    // Acknowledge it (acquirer admin MAC) and start over.
    await purgeBatch(p.ch, summary.batchNumber, adminMacFn(psamKey('admin', p.psamId, 1)));
    expect(await readPsamData(p.ch)).toMatchObject({ closedBatchNumber: 0, batchNumber: 2 });
  });

  it('defaults: the card currency, now (UTC), location "PURSELAB"', async () => {
    const c = newCard(CARD_PROFILES.des, 1000);
    const p = await newPsam();
    const now = new Date(Date.UTC(2027, 5, 30, 23, 59, 58));
    const r = await purchase(c.ch, p.ch, { amount: 5, now });
    const [rec] = await readBatch(p.ch, 'open');
    expect(rec).toMatchObject({ date: '20270630', time: '235958', currency: EUR, exponent: 2, location: Buffer.from('PURSELAB') });
    expect(r.newBalance).toBe(995);
  });
});

describe('purchase (early release, seed 003 FIGS. 6-8)', () => {
  it('the PSAM returns the expected S3 with S2; the host compares; S3 is posted afterwards to confirm the record', async () => {
    const c = newCard(CARD_PROFILES.aes, 1000);
    const p = await newPsam();
    const psamLog = new TamperChannel(p.ch);
    const r = await purchase(c.ch, psamLog, { amount: 420, variant: 'early-release', ...at });
    expect(r).toMatchObject({ variant: 'early-release', verifiedBy: 'expected-s3', psamConfirmed: true, newBalance: 580 });
    expect(r.expectedS3).toEqual(r.s3);
    expect(psamLog.log.map((l) => l.ins)).toEqual([0xa4, A.PsamIns.INITIALIZE_PURCHASE, A.PsamIns.VERIFY_S3]);
    expect((await readBatch(p.ch, 'open'))[0]!.status).toBe(BatchRecordStatus.CONFIRMED);
  });

  it('without posting S3 the PSAM is released after INITIALIZE PURCHASE and its record stays unconfirmed with the expected S3', async () => {
    const c = newCard(CARD_PROFILES.des, 1000);
    const p = await newPsam();
    const psamLog = new TamperChannel(p.ch);
    const r = await purchase(c.ch, psamLog, { amount: 100, variant: 'early-release', postS3: false, ...at });
    expect(r).toMatchObject({ verifiedBy: 'expected-s3', psamConfirmed: false, newBalance: 900 });
    expect(psamLog.log.map((l) => l.ins)).toEqual([0xa4, A.PsamIns.INITIALIZE_PURCHASE]);
    const [rec] = await readBatch(p.ch, 'open');
    expect(rec).toMatchObject({ status: BatchRecordStatus.UNCONFIRMED, s3: r.s3 });
    expect(await readTotals(p.ch)).toEqual([{ txType: 1, currency: EUR, exponent: 2, count: 0, sum: 0, unconfirmedCount: 1, unconfirmedSum: 100 }]);
    // Posted later (e.g. by OPAL or the merchant after its own comparison): confirmed.
    await selectPsam(p.ch);
    const dr = await psamVerifyS3(p.ch, { psamTxn: r.psamTxn, newCounter: r.newCounter, cvr: r.startup.authMode, s3: r.s3 });
    expect(dr.status).toBe(1);
  });

  it('a card S3 that differs from the expected S3 is not a proven debit (debited-unverified, s3-compare)', async () => {
    const c = newCard(CARD_PROFILES.des, 1000);
    const p = await newPsam();
    const card = new TamperChannel(c.ch);
    card.onResponse = (cmd, r) => (cmd.ins === A.IepIns.DEBIT && r.sw === 0x9000 ? { ...r, data: Buffer.concat([r.data.subarray(0, 16), Buffer.from([r.data[16]! ^ 1])]) } : r);
    const e = await expectFailure(purchase(card, p.ch, { amount: 100, variant: 'early-release', ...at }));
    expect(e).toMatchObject({ outcome: 'debited-unverified', stage: 's3-compare', cardDebited: 'yes', psamTxn: 1 });
    expect((await readBatch(p.ch, 'open'))[0]!.status).toBe(BatchRecordStatus.UNCONFIRMED);
  });
});

describe('authentication and points', () => {
  it('zero-amount authentication: counter + 1, S3 verified, balance unchanged, logged as TXTYPE 02 / 0999 (no payment)', async () => {
    const c = newCard(CARD_PROFILES.des, 1000);
    const p = await newPsam();
    const r = await authenticate(c.ch, p.ch, at);
    expect(r).toMatchObject({ kind: 'authentication', txType: TxType.AUTHENTICATION, amount: 0, currency: 999, exponent: 0, newCounter: 1, newBalance: 1000, psamConfirmed: true });
    expect(await readPurse(c.ch)).toMatchObject({ balance: 1000, counter: 1 });
    expect(await readTotals(p.ch)).toEqual([{ txType: 2, currency: 999, exponent: 0, count: 1, sum: 0, unconfirmedCount: 0, unconfirmedSum: 0 }]);
  });

  it('points debit with the cardholder PIN: points purse down by exactly the points, money untouched', async () => {
    const c = newCard(CARD_PROFILES.loyalty, 1000);
    c.applet.pointsBalance.set(500);
    const p = await newPsam();
    const r = await purchase(c.ch, p.ch, { kind: 'points', amount: 250, pin: '1234', ...at });
    expect(r).toMatchObject({ txType: 3, amount: 250, currency: PROGRAMME, exponent: 0, balanceBefore: 500, newBalance: 250, psamConfirmed: true });
    expect(await readPurse(c.ch)).toMatchObject({ balance: 1000, pointsBalance: 250, counter: 1 });
    // Money purchase on the same card, PIN again (the PIN is per session).
    const m = await purchase(c.ch, p.ch, { amount: 100, pin: '1234', ...at });
    expect(m.newBalance).toBe(900);
    // Without the PIN the card refuses the DEBIT (9406); nothing is debited.
    const e = await expectFailure(purchase(c.ch, p.ch, { amount: 100, ...at }));
    expect(e).toMatchObject({ outcome: 'refused', stage: 'card-debit', sw: 0x9406, cardDebited: 'no' });
    expect(e.message).toMatch(/PIN/);
    // A wrong PIN stops before anything.
    const w = await expectFailure(purchase(c.ch, p.ch, { amount: 100, pin: '9999', ...at }));
    expect(w).toMatchObject({ outcome: 'refused', stage: 'card-init' });
    expect(w.message).toMatch(/wrong PIN: 2 tries left/);
    expect((await readPurse(c.ch)).balance).toBe(900);
  });
});

describe('refusals: typed, one line, nothing debited', () => {
  it('insufficient funds (PSAM 9401 on the start-up data)', async () => {
    const c = newCard(CARD_PROFILES.des, 100);
    const p = await newPsam();
    const before = cardState(c);
    const psamBefore = psamState(p);
    const e = await expectFailure(purchase(c.ch, p.ch, { amount: 420, ...at }));
    expect(e).toMatchObject({ code: 'PURCHASE_REFUSED', outcome: 'refused', stage: 'psam-init', sw: 0x9401, cardDebited: 'no' });
    expect(e.message).toBe('insufficient funds: the card holds 1.00 EUR, the purchase is 4.20 EUR; nothing was debited');
    expect(cardState(c)).toBe(before);
    expect(psamState(p)).toBe(psamBefore);
  });

  it('expired card, wrong currency, currency not accepted, blocked card, blocked purse', async () => {
    const p = await newPsam();
    const expired = newCard({ ...CARD_PROFILES.des, expiry: '20251231' }, 1000);
    expect(await expectFailure(purchase(expired.ch, p.ch, { amount: 1, ...at }))).toMatchObject({ sw: 0x9402, message: expect.stringMatching(/^card expired \(last valid day 20251231\)/) });
    const c = newCard(CARD_PROFILES.des, 1000);
    expect(await expectFailure(purchase(c.ch, p.ch, { amount: 1, currency: 840, ...at }))).toMatchObject({ sw: 0x9403, message: expect.stringMatching(/currency mismatch: the purchase is in USD, the card holds 10.00 EUR/) });
    const usd = newCard({ ...CARD_PROFILES.des, currency: 840 }, 1000);
    expect(await expectFailure(purchase(usd.ch, p.ch, { amount: 1, ...at }))).toMatchObject({ sw: 0x9502, message: expect.stringMatching(/does not accept USD/) });
    await manageBlockedList(p.ch, 'add', c.cardId, adminMacFn(psamKey('admin', p.psamId, 1)));
    expect(await readBlockedList(p.ch)).toEqual([c.cardId]);
    expect(await expectFailure(purchase(c.ch, p.ch, { amount: 1, ...at }))).toMatchObject({ sw: 0x9501, message: expect.stringMatching(/blocked-card list/) });
    await manageBlockedList(p.ch, 'remove', c.cardId, adminMacFn(psamKey('admin', p.psamId, 1)));
    await manageCurrencies(p.ch, 'add', { currency: 840, exponent: 2 }, adminMacFn(psamKey('admin', p.psamId, 1)));
    expect(await readCurrencyList(p.ch)).toEqual([{ currency: 840, exponent: 2 }, { currency: EUR, exponent: 2 }, { currency: PROGRAMME, exponent: 0 }]);
    expect((await purchase(usd.ch, p.ch, { amount: 1, ...at })).newBalance).toBe(999);
    c.applet.status.set(1);
    expect(await expectFailure(purchase(c.ch, p.ch, { amount: 1, ...at }))).toMatchObject({ sw: 0x9405, message: expect.stringMatching(/purse is blocked/) });
    expect((await readPurse(c.ch)).balance).toBe(1000);
  });

  it('a bad amount is refused before any APDU', async () => {
    const c = newCard(CARD_PROFILES.des, 1000);
    const p = await newPsam();
    const card = new TamperChannel(c.ch);
    await expect(purchase(card, p.ch, { amount: 0 })).rejects.toMatchObject({ code: 'BAD_AMOUNT' });
    await expect(purchase(card, p.ch, { amount: 4.2 })).rejects.toMatchObject({ code: 'BAD_AMOUNT' });
    await expect(purchase(card, p.ch, { amount: 2 ** 32 })).rejects.toMatchObject({ code: 'BAD_AMOUNT' });
    await expect(purchase(card, p.ch, { amount: 1, location: 'TOO LONG!' })).rejects.toMatchObject({ code: 'BAD_LOCATION' });
    expect(card.log).toEqual([]);
  });
});

describe('tamper and replay at the PSAM', () => {
  it('a forged S3 is refused by the PSAM (9503): debited-unverified, the record stays unconfirmed, the genuine S3 confirms it', async () => {
    const c = newCard(CARD_PROFILES.des, 1000);
    const p = await newPsam();
    const psam = new TamperChannel(p.ch);
    let genuine: Buffer | undefined;
    psam.onCommand = (cmd) => {
      if (cmd.ins !== A.PsamIns.VERIFY_S3) return cmd;
      genuine = Buffer.from(cmd.data);
      const data = Buffer.from(cmd.data);
      data[16]! ^= 0x01; // last byte of S3
      return { ...cmd, data };
    };
    const e = await expectFailure(purchase(c.ch, psam, { amount: 420, ...at }));
    expect(e).toMatchObject({ code: 'PURCHASE_UNVERIFIED', outcome: 'debited-unverified', stage: 'psam-verify', sw: 0x9503, cardDebited: 'yes', psamTxn: 1 });
    expect((await readBatch(p.ch, 'open'))[0]!.status).toBe(BatchRecordStatus.UNCONFIRMED);
    // The host resolves it with the card's real S3 (from the failure): the record is confirmed.
    const res = await resolvePurchase(c.ch, p.ch, e);
    expect(res).toMatchObject({ cardDebited: true, confirmed: true, confirmedNow: true, balance: 580 });
    expect(A.encodeVerifyS3Command({ psamTxn: 1, newCounter: e.debitResponse!.newCounter, cvr: e.debitResponse!.cvr, s3: e.debitResponse!.s3 })).toEqual(genuine);
  });

  it('a replayed S3 (an earlier purchase of the same card) does not confirm a new transaction', async () => {
    const c = newCard(CARD_PROFILES.des, 1000);
    const p = await newPsam();
    const first = await purchase(c.ch, p.ch, { amount: 100, ...at });
    // Second purchase: the card's DEBIT answer is replaced by the first one (a replayed Debit Response).
    const card = new TamperChannel(c.ch);
    const old = A.encodeDebitResponse({ newCounter: first.newCounter, newBalance: first.newBalance, cvr: 0, s3: first.s3 });
    card.onResponse = (cmd, r) => (cmd.ins === A.IepIns.DEBIT ? { data: old, sw: 0x9000 } : r);
    const e = await expectFailure(purchase(card, p.ch, { amount: 100, ...at }));
    expect(e).toMatchObject({ outcome: 'debited-unverified', sw: 0x9503 });
    // Straight at the PSAM: first transaction's S3 and counter for the second transaction.
    await selectPsam(p.ch);
    await expect(psamVerifyS3(p.ch, { psamTxn: 2, newCounter: first.newCounter + 1, cvr: 0, s3: first.s3 })).rejects.toMatchObject({ sw: 0x9503 });
    const recs = await readBatch(p.ch, 'open');
    expect(recs.map((r) => r.status)).toEqual([1, 2]);
  });

  it('a replayed DEBIT (same S2) is refused by the card; a DEBIT altered on the way is refused (6982); nothing moves', async () => {
    const c = newCard(CARD_PROFILES.des, 1000);
    const p = await newPsam();
    const { raw } = await initializeForPurchase(c.ch);
    await selectPsam(p.ch);
    const params = { txType: 1, amount: 100, currency: EUR, exponent: 2, date: TODAY, time: NOW, location: LOC };
    const d = await psamInitializePurchase(p.ch, raw, params);
    // Amount raised on the way to the card.
    const altered = Buffer.from(d.debitData);
    altered[15] = 0xff;
    await expect(debitCard(c.ch, 1, altered)).rejects.toMatchObject({ sw: 0x6982 });
    // One attempt per session: even the genuine DEBIT now needs a new INITIALIZE.
    await expect(debitCard(c.ch, 1, d.debitData)).rejects.toMatchObject({ sw: 0x6985 });
    await initializeForPurchase(c.ch);
    const ok = await debitCard(c.ch, 1, d.debitData);
    expect(ok.newBalance).toBe(900);
    await expect(debitCard(c.ch, 1, d.debitData)).rejects.toBeInstanceOf(CardStatusError);
    await initializeForPurchase(c.ch);
    await expect(debitCard(c.ch, 1, d.debitData)).rejects.toMatchObject({ sw: 0x6982 });
    expect((await readPurse(c.ch)).balance).toBe(900);
  });

  it('a DEBIT answer lost on the way: debit-unknown; resolvePurchase reads the card counter and the PSAM log', async () => {
    const c = newCard(CARD_PROFILES.des, 1000);
    const p = await newPsam();
    const card = new TamperChannel(c.ch);
    card.onResponse = (cmd, r) => (cmd.ins === A.IepIns.DEBIT ? undefined : r);
    const e = await expectFailure(purchase(card, p.ch, { amount: 300, ...at }));
    expect(e).toMatchObject({ code: 'PURCHASE_DEBIT_UNKNOWN', outcome: 'debit-unknown', stage: 'card-debit', cardDebited: 'unknown', psamTxn: 1 });
    const res = await resolvePurchase(c.ch, p.ch, e);
    expect(res).toMatchObject({ cardDebited: true, confirmed: false, balance: 700, counter: 1, recordIn: 'open' });
    expect(res.record).toMatchObject({ psamTxn: 1, amount: 300, status: BatchRecordStatus.UNCONFIRMED, newCounter: 1 });
    expect(res.summary).toMatch(/debited .* unconfirmed/);
  });

  it('a refused DEBIT leaves an unconfirmed PSAM record and no debit; resolvePurchase says so', async () => {
    const c = newCard(CARD_PROFILES.des, 1000);
    const p = await newPsam();
    const card = new TamperChannel(c.ch);
    card.onCommand = (cmd) => (cmd.ins === A.IepIns.DEBIT ? { ...cmd, data: Buffer.concat([cmd.data.subarray(0, 41), Buffer.from([cmd.data[41]! ^ 0x80])]) } : cmd);
    const e = await expectFailure(purchase(card, p.ch, { amount: 300, ...at }));
    expect(e).toMatchObject({ outcome: 'refused', stage: 'card-debit', sw: 0x6982, cardDebited: 'no' });
    const res = await resolvePurchase(c.ch, p.ch, e);
    expect(res).toMatchObject({ cardDebited: false, confirmed: false, balance: 1000 });
    expect(res.record!.status).toBe(BatchRecordStatus.UNCONFIRMED);
  });
});

describe('purse-mac vectors through the real applets', () => {
  it('the card and the PSAM produce the purchase vectors of docs/purse-applet.md', async () => {
    const c = newCard(CARD_PROFILES.des, 10_000);
    c.applet.counter.set(41);
    const p = await newPsam('des', { nextTxn: 1001 });
    const r = await purchase(c.ch, p.ch, { amount: 420, ...at });
    expect(r.s2.toString('hex').toUpperCase()).toBe('A8F78A787229C25C');
    expect(r.s3.toString('hex').toUpperCase()).toBe('B4474B3C4F135D1C');
    expect(M.purchaseS3Input).toBeDefined();
  });
});
