// The PSAM applet, command by command (docs/psam-applet.md), with the card played by src/crypto/purse-mac.ts.
import { describe, expect, it } from 'vitest';
import { cardFromImage, cardToImage, loadCardImage, saveCardImage, SimulatedCard } from '../../../card-applet-sim/index.ts';
import { PsamApplet, PSAM_MAX_BLOCKED } from '../../../card-applet-sim/applets/psam/psam-applet.ts';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  A,
  EUR,
  LOC,
  M,
  NOW,
  PROGRAMME,
  TODAY,
  attachPsam,
  cardDebitAnswer,
  fakeCard,
  fakePurchase,
  newPsam,
  params,
  psamInit,
  psamKey,
  psamState,
  readData,
  tx,
  verifyS3,
  type TestPsam,
} from './helpers.ts';

const SW = A.Sw;
const FIXTURE_PSAM_KEYS = JSON.parse(readFileSync(new URL('../../../fixtures/keys/demo-issuer.json', import.meta.url), 'utf8')).psams as { psamId: string; usage: string; key: string }[];
const I = A.PsamIns;

async function challenge(p: TestPsam): Promise<Buffer> {
  const r = await tx(p.ch, 0x00, I.GET_CHALLENGE, 0, 0, undefined, 8);
  expect(r.sw).toBe(0x9000);
  expect(r.data).toHaveLength(8);
  return r.data;
}

/** A MACed management command: GET CHALLENGE, then the command with the admin MAC over `data`. */
async function admin(p: TestPsam, ins: number, p1: number, data: Buffer, key = p.adminKey, rnd?: Buffer): Promise<number> {
  const r = rnd ?? (await challenge(p));
  const mac = M.psamAdminMac(key, { alg: p.alg, keyVersion: 1, psamId: p.psamId, challenge: r, ins, p1, p2: 0, data });
  return (await tx(p.ch, 0x80, ins, p1, 0, Buffer.concat([data, mac]))).sw;
}

const bcd = (id: string) => Buffer.from(id, 'hex');
const cur = (c: number, e: number) => Buffer.concat([Buffer.from(String(c).padStart(4, '0'), 'hex'), Buffer.from([e])]);

async function readRecord(p: TestPsam, which: number, idx: number): Promise<{ sw: number; rec?: M.BatchRecord }> {
  const r = await tx(p.ch, 0x80, I.READ_BATCH_RECORD, which, 0, Buffer.from([idx >> 8, idx & 0xff]), 256);
  return r.sw === 0x9000 ? { sw: r.sw, rec: A.decodeBatchRecord(r.data) } : { sw: r.sw };
}

async function closeBatch(p: TestPsam, p1 = 0): Promise<{ sw: number; summary?: A.BatchSummary }> {
  const r = await tx(p.ch, 0x80, I.CLOSE_BATCH, p1, 0, undefined, 256);
  return r.sw === 0x9000 ? { sw: r.sw, summary: A.decodeBatchSummary(r.data) } : { sw: r.sw };
}

async function readAll(p: TestPsam, which: number, n: number): Promise<M.BatchRecord[]> {
  const out: M.BatchRecord[] = [];
  for (let i = 0; i < n; i++) out.push((await readRecord(p, which, i)).rec!);
  return out;
}

describe('identity and READ PSAM DATA', () => {
  it('answers SELECT with the FCI of the spec', async () => {
    const p = await newPsam();
    const r = await tx(p.ch, 0x00, 0xa4, 0x04, 0x00, A.PSAM_AID, 256);
    expect(r.sw).toBe(0x9000);
    expect(r.data.toString('hex').toUpperCase()).toBe(`6F14840D${A.PSAM_AID.toString('hex').toUpperCase()}A503800101`);
  });

  it('reads the personalised state (31 bytes)', async () => {
    const p = await newPsam();
    const r = await tx(p.ch, 0x80, I.READ_PSAM_DATA, 0, 0, undefined, 256);
    expect(r.data).toHaveLength(31);
    expect(A.decodePsamData(r.data)).toEqual({
      psamId: '9990029000000001', alg: 1, batchKeyVersion: 1, adminKeyVersion: 1, nextTxn: 1, batchNumber: 1,
      recordCount: 0, capacity: 1000, closedBatchNumber: 0, closedRecordCount: 0, pending: 0,
    });
  });

  it('holds the batch and admin keys the acquirer derives from PSAMID (KCVs of the key set)', async () => {
    for (const which of ['des', 'aes'] as const) {
      const p = await newPsam(which);
      const fx = (usage: string) => Buffer.from(FIXTURE_PSAM_KEYS.find((k) => k.psamId === p.psamId && k.usage === usage)!.key, 'hex');
      expect(p.applet.batchKey.get()).toEqual(fx('batch'));
      expect(p.applet.adminKey.get()).toEqual(fx('admin'));
    }
  });

  it('refuses other classes (6E00), unknown INS (6D00), bad P1/P2 (6A86) and Lc (6700)', async () => {
    const p = await newPsam();
    expect((await tx(p.ch, 0x84, I.READ_PSAM_DATA, 0, 0, undefined, 256)).sw).toBe(0x6e00);
    expect((await tx(p.ch, 0x80, I.GET_CHALLENGE, 0, 0, undefined, 8)).sw).toBe(0x6e00);
    expect((await tx(p.ch, 0x00, I.READ_PSAM_DATA, 0, 0, undefined, 256)).sw).toBe(0x6e00);
    expect((await tx(p.ch, 0x80, 0x3e, 0, 0, undefined, 256)).sw).toBe(0x6d00);
    expect((await tx(p.ch, 0x80, I.READ_PSAM_DATA, 1, 0, undefined, 256)).sw).toBe(0x6a86);
    expect((await tx(p.ch, 0x80, I.READ_PSAM_DATA, 0, 0, Buffer.from([1]), 256)).sw).toBe(0x6700);
    expect((await tx(p.ch, 0x00, I.GET_CHALLENGE, 0, 0, undefined, 4)).sw).toBe(0x6700);
  });

  it('a blank (unpersonalised) PSAM refuses every command with 6985', async () => {
    const card = new SimulatedCard();
    card.install(A.PSAM_AID, 'psam');
    card.select(A.PSAM_AID);
    expect(card.transmitHex('80 30 00 00 00')).toBe('6985');
    expect(card.transmitHex(`80 32 00 00 32 ${'00'.repeat(50)} 00`)).toBe('6985');
  });

  it('refuses a personalisation that does not fit', () => {
    expect(() => PsamApplet.personalized({ psamId: '9990029000000001', alg: 9, batchKeyVersion: 1, adminKeyVersion: 1, batchKey: Buffer.alloc(16), adminKey: Buffer.alloc(16), purchaseMasters: [], capacity: 10 })).toThrow(/algorithm/);
    expect(() => PsamApplet.personalized({ psamId: '9990029000000001', alg: 1, batchKeyVersion: 1, adminKeyVersion: 1, batchKey: Buffer.alloc(16), adminKey: Buffer.alloc(16), purchaseMasters: [], capacity: 0 })).toThrow(/capacity/);
  });
});

describe('INITIALIZE PURCHASE', () => {
  it('returns the DEBIT data with the S2 of the spec and logs an unconfirmed record in one transaction', async () => {
    const p = await newPsam('des', { nextTxn: 1001 });
    const card = fakeCard();
    const r = await psamInit(p, card);
    expect(r.sw).toBe(0x9000);
    expect(r.data).toHaveLength(42);
    const { debit, expectedS3 } = A.decodePsamInitPurchaseResponse(r.data);
    expect(expectedS3).toBeUndefined();
    expect(debit).toMatchObject({ psamId: '9990029000000001', psamTxn: 1001, amount: 420, currency: EUR, exponent: 2, date: TODAY, time: NOW, location: LOC });
    // The first purchase vector of docs/purse-applet.md (card 9990010000000017, CTR 41, PSAMTXN 1001).
    expect(debit.s2.toString('hex').toUpperCase()).toBe('A8F78A787229C25C');
    const d = await readData(p);
    expect(d).toMatchObject({ nextTxn: 1002, recordCount: 1, pending: 1 });
    const { rec } = await readRecord(p, 0, 0);
    expect(rec).toMatchObject({ psamTxn: 1001, txType: 1, status: 2, alg: 1, keyVersion: 1, cardId: card.cardId, newCounter: 42, amount: 420, currency: EUR, exponent: 2, date: TODAY, time: NOW });
    // The record holds the expected S3 (the vector "purchase S3 = early-release expected S3").
    expect(rec!.s3.toString('hex').toUpperCase()).toBe('B4474B3C4F135D1C');
  });

  it('early release (P1 01) also returns the expected S3, equal to what a genuine card produces', async () => {
    for (const [which, alg, cardId, s2, s3] of [
      ['des', 1, '9990010000000017', 'A8F78A787229C25C', 'B4474B3C4F135D1C'],
      ['des', 2, '9990010000000025', 'F29DCF4E5E1C77CF', '974A41A2E15F5A01'],
    ] as const) {
      const p = await newPsam(which, { nextTxn: 1001 });
      const card = fakeCard({ alg, cardId });
      const r = await psamInit(p, card, {}, 1);
      expect(r.sw).toBe(0x9000);
      expect(r.data).toHaveLength(50);
      const { debit, expectedS3 } = A.decodePsamInitPurchaseResponse(r.data);
      expect(debit.s2.toString('hex').toUpperCase()).toBe(s2);
      expect(expectedS3!.toString('hex').toUpperCase()).toBe(s3);
      expect(cardDebitAnswer(card, debit).s3).toEqual(expectedS3);
    }
  });

  it('takes the card start-up data verbatim: PSAMTXN grows by one per transaction and is never reused', async () => {
    const p = await newPsam();
    const card = fakeCard();
    const txns: number[] = [];
    for (let i = 0; i < 5; i++) txns.push((await fakePurchase(p, card, { amount: 10 })).debit.psamTxn);
    expect(txns).toEqual([1, 2, 3, 4, 5]);
    // A refused INITIALIZE does not use a number.
    expect((await psamInit(p, card, { amount: 999_999 })).sw).toBe(SW.INSUFFICIENT_VALUE);
    expect((await fakePurchase(p, card, { amount: 10 })).debit.psamTxn).toBe(6);
  });

  // Each refusal: the SW of the spec, and nothing persistent changes.
  const refusals: [string, Partial<A.StartupData>, Partial<A.PurchaseParams>, number, Partial<{ p1: number; blocked: string; currencies: { currency: number; exponent: number }[]; capacity: number }>?][] = [
    ['TXTYPE 00', {}, { txType: 0 }, SW.WRONG_DATA],
    ['TXTYPE 04', {}, { txType: 4 }, SW.WRONG_DATA],
    ['unknown card ALG', { alg: 3 }, {}, SW.UNKNOWN_MASTER_KEY],
    ['card on the blocked list', {}, {}, SW.CARD_ON_BLOCKED_LIST, { blocked: '9990010000000017' }],
    ['purse blocked', { status: 1 }, {}, SW.PURSE_BLOCKED],
    ['purchase of 0', {}, { amount: 0 }, SW.AMOUNT_INVALID],
    ['authentication with an amount', {}, { txType: 2, amount: 1, currency: 999, exponent: 0 }, SW.AMOUNT_INVALID],
    ['authentication in EUR', {}, { txType: 2, amount: 0, currency: EUR, exponent: 0 }, SW.AMOUNT_INVALID],
    ['authentication with an exponent', {}, { txType: 2, amount: 0, currency: 999, exponent: 2 }, SW.AMOUNT_INVALID],
    ['points debit of 0', { currency: PROGRAMME, exponent: 0 }, { txType: 3, amount: 0, currency: PROGRAMME, exponent: 0 }, SW.AMOUNT_INVALID],
    ['currency differs from the card', {}, { currency: 840 }, SW.CURRENCY_MISMATCH],
    ['exponent differs from the card', {}, { exponent: 3 }, SW.CURRENCY_MISMATCH],
    ['currency not accepted', { currency: 840 }, { currency: 840 }, SW.CURRENCY_NOT_ACCEPTED],
    ['points programme differs', { currency: PROGRAMME, exponent: 0 }, { txType: 3, amount: 5, currency: 7002, exponent: 0 }, SW.CURRENCY_MISMATCH],
    ['points with an exponent', { currency: PROGRAMME, exponent: 0 }, { txType: 3, amount: 5, currency: PROGRAMME, exponent: 2 }, SW.CURRENCY_MISMATCH],
    ['points programme not accepted', { currency: 7002, exponent: 0 }, { txType: 3, amount: 5, currency: 7002, exponent: 0 }, SW.CURRENCY_NOT_ACCEPTED],
    ['expired at the transaction date', { expiry: '20260114' }, {}, SW.CARD_EXPIRED],
    ['amount above the balance', { balance: 419 }, {}, SW.INSUFFICIENT_VALUE],
    ['counter exhausted', { counter: 0xffffffff }, {}, SW.COUNTER_EXHAUSTED],
    ['no master for the BIN', { cardId: '9990020000000017' }, {}, SW.UNKNOWN_MASTER_KEY],
    ['no master for the key version', { keyVersion: 2 }, {}, SW.UNKNOWN_MASTER_KEY],
    ['log full', {}, {}, SW.LOG_FULL, { capacity: 1 }],
  ];
  for (const [name, s, q, sw, extra] of refusals) {
    it(`${name}: ${sw.toString(16).toUpperCase()}, nothing changes`, async () => {
      const p = await newPsam('des', {
        ...(extra?.blocked ? { blockedCards: [extra.blocked] } : {}),
        ...(extra?.capacity ? { capacity: extra.capacity } : {}),
      });
      const card = fakeCard(s);
      if (extra?.capacity) await fakePurchase(p, fakeCard(), { amount: 1 });
      const before = psamState(p);
      expect((await psamInit(p, card, q)).sw).toBe(sw);
      expect(psamState(p)).toBe(before);
    });
  }

  it('the checks run in the order of the spec (blocked list before purse status before amount before currency ...)', async () => {
    const p = await newPsam('des', { blockedCards: ['9990010000000017'] });
    const bad = { status: 1, expiry: '20200101', balance: 0 };
    expect((await psamInit(p, fakeCard(bad), { amount: 0, currency: 840 })).sw).toBe(SW.CARD_ON_BLOCKED_LIST);
    const q = await newPsam();
    expect((await psamInit(q, fakeCard(bad), { amount: 0, currency: 840 })).sw).toBe(SW.PURSE_BLOCKED);
    expect((await psamInit(q, fakeCard({ ...bad, status: 0 }), { amount: 0, currency: 840 })).sw).toBe(SW.AMOUNT_INVALID);
    expect((await psamInit(q, fakeCard({ ...bad, status: 0 }), { currency: 840 })).sw).toBe(SW.CURRENCY_MISMATCH);
    expect((await psamInit(q, fakeCard({ ...bad, status: 0 }), {})).sw).toBe(SW.CARD_EXPIRED);
    expect((await psamInit(q, fakeCard({ balance: 0 }), {})).sw).toBe(SW.INSUFFICIENT_VALUE);
  });

  it('length, encodings and P1/P2: 6700, 6A80, 6A86, nothing changes', async () => {
    const p = await newPsam();
    const before = psamState(p);
    const good = A.encodePsamInitPurchase(fakeCard().startup, params());
    expect((await tx(p.ch, 0x80, I.INITIALIZE_PURCHASE, 0, 0, good.subarray(0, 49), 256)).sw).toBe(0x6700);
    expect((await tx(p.ch, 0x80, I.INITIALIZE_PURCHASE, 0, 0, Buffer.concat([good, Buffer.from([0])]), 256)).sw).toBe(0x6700);
    expect((await tx(p.ch, 0x80, I.INITIALIZE_PURCHASE, 2, 0, good, 256)).sw).toBe(0x6a86);
    expect((await tx(p.ch, 0x80, I.INITIALIZE_PURCHASE, 0, 1, good, 256)).sw).toBe(0x6a86);
    for (const [at, v] of [[2, 0xaa], [12, 0x20], [18, 0x0a], [27 + 5, 0xf9], [27 + 10, 0x13], [27 + 11, 0x32], [27 + 12, 0x24]] as const) {
      const bad = Buffer.from(good);
      bad[at] = v; // CID digit A, EXPIRY month 20, card CUR nibble A, CUR F9, DATE month 13, day 32, hour 24
      expect((await tx(p.ch, 0x80, I.INITIALIZE_PURCHASE, 0, 0, bad, 256)).sw, `byte ${at}`).toBe(0x6a80);
    }
    expect(psamState(p)).toBe(before);
  });

  it('authentications are logged with amount 0 as their own totals entry (02, 0999, 00)', async () => {
    const p = await newPsam();
    const card = fakeCard();
    await fakePurchase(p, card, { txType: 2, amount: 0, currency: 999, exponent: 0 });
    await fakePurchase(p, card, { amount: 100 });
    const t = A.decodeTotals((await tx(p.ch, 0x80, I.READ_TOTALS, 0, 0, undefined, 256)).data);
    expect(t).toEqual([
      { txType: 1, currency: EUR, exponent: 2, count: 1, sum: 100, unconfirmedCount: 0, unconfirmedSum: 0 },
      { txType: 2, currency: 999, exponent: 0, count: 1, sum: 0, unconfirmedCount: 0, unconfirmedSum: 0 },
    ]);
  });

  it('points debits use the programme and exponent 0', async () => {
    const p = await newPsam();
    const card = fakeCard({ currency: PROGRAMME, exponent: 0, balance: 500, authMode: 4 });
    const { result } = await fakePurchase(p, card, { txType: 3, amount: 250, currency: PROGRAMME, exponent: 0 });
    expect(result).toMatchObject({ txType: 3, amount: 250, currency: PROGRAMME, exponent: 0, status: 1 });
  });
});

describe('VERIFY S3', () => {
  it('confirms the record with the card S3 and returns the debit result (33 bytes)', async () => {
    const p = await newPsam();
    const card = fakeCard({ authMode: 3 });
    const { debit } = A.decodePsamInitPurchaseResponse((await psamInit(p, card)).data);
    const v = cardDebitAnswer(card, debit);
    const r = await verifyS3(p, v);
    expect(r.sw).toBe(0x9000);
    expect(r.data).toHaveLength(33);
    expect(A.decodeDebitResult(r.data)).toEqual({ psamId: p.psamId, psamTxn: 1, cardId: card.cardId, newCounter: 42, txType: 1, amount: 420, currency: EUR, exponent: 2, status: 1 });
    const { rec } = await readRecord(p, 0, 0);
    expect(rec).toMatchObject({ status: 1, s3: v.s3 });
    expect((await readData(p)).pending).toBe(0);
  });

  it('is idempotent for the S3 already confirmed', async () => {
    const p = await newPsam();
    const card = fakeCard();
    const { v, result } = await fakePurchase(p, card);
    const before = psamState(p);
    const again = await verifyS3(p, v);
    expect(again.sw).toBe(0x9000);
    expect(A.decodeDebitResult(again.data)).toEqual(result);
    expect(psamState(p)).toBe(before);
  });

  it('a forged S3 (any single bit) is 9503 and leaves the record unconfirmed; the genuine S3 still confirms it later', async () => {
    const p = await newPsam();
    const card = fakeCard();
    const { debit } = A.decodePsamInitPurchaseResponse((await psamInit(p, card)).data);
    const v = cardDebitAnswer(card, debit);
    const before = psamState(p);
    for (let bit = 0; bit < 64; bit++) {
      const s3 = Buffer.from(v.s3);
      s3[bit >> 3]! ^= 1 << (bit & 7);
      expect((await verifyS3(p, { ...v, s3 })).sw).toBe(SW.S3_INVALID);
    }
    expect((await verifyS3(p, { ...v, newCounter: 43 })).sw).toBe(SW.S3_INVALID);
    expect((await verifyS3(p, { ...v, cvr: 2 })).sw).toBe(SW.S3_INVALID);
    expect(psamState(p)).toBe(before);
    expect((await verifyS3(p, v)).sw).toBe(0x9000);
  });

  it('an S3 made with another card key, or for another transaction, is 9503 (replay)', async () => {
    const p = await newPsam();
    const card = fakeCard();
    const first = await fakePurchase(p, card);
    const { debit } = A.decodePsamInitPurchaseResponse((await psamInit(p, card)).data);
    // Replay the first transaction's S3 and counter for the second transaction.
    expect((await verifyS3(p, { ...first.v, psamTxn: debit.psamTxn })).sw).toBe(SW.S3_INVALID);
    const other = fakeCard({ cardId: '9990010000000025', alg: 2 });
    const wrongKey = { ...cardDebitAnswer(card, debit) };
    wrongKey.s3 = M.purchaseS3(other.key, M.purchaseS3FieldsForRecord((await readRecord(p, 0, 1)).rec!, p.psamId, 0));
    expect((await verifyS3(p, wrongKey)).sw).toBe(SW.S3_INVALID);
    expect((await readRecord(p, 0, 1)).rec!.status).toBe(2);
  });

  it('unknown transaction 9505, Lc 6700, P1/P2 6A86', async () => {
    const p = await newPsam();
    const card = fakeCard();
    const { v } = await fakePurchase(p, card);
    expect((await verifyS3(p, { ...v, psamTxn: 2 })).sw).toBe(SW.NO_SUCH_TRANSACTION);
    expect((await verifyS3(p, { ...v, psamTxn: 0 })).sw).toBe(SW.NO_SUCH_TRANSACTION);
    expect((await tx(p.ch, 0x80, I.VERIFY_S3, 0, 0, A.encodeVerifyS3Command(v).subarray(1), 256)).sw).toBe(0x6700);
    expect((await tx(p.ch, 0x80, I.VERIFY_S3, 1, 0, A.encodeVerifyS3Command(v), 256)).sw).toBe(0x6a86);
    const empty = await newPsam();
    expect((await verifyS3(empty, v)).sw).toBe(SW.NO_SUCH_TRANSACTION);
  });

  it('a record whose batch is closed can no longer be confirmed (9505)', async () => {
    const p = await newPsam();
    const card = fakeCard();
    const { debit } = A.decodePsamInitPurchaseResponse((await psamInit(p, card)).data);
    expect((await closeBatch(p)).sw).toBe(0x9000);
    expect((await verifyS3(p, cardDebitAnswer(card, debit))).sw).toBe(SW.NO_SUCH_TRANSACTION);
  });
});

describe('batches: READ BATCH RECORD, READ TOTALS, CLOSE BATCH', () => {
  async function threeRecords(p: TestPsam) {
    const des = fakeCard();
    const aes = fakeCard({ cardId: '9990010000000025', alg: 2, counter: 6 });
    const pts = fakeCard({ currency: PROGRAMME, exponent: 0, balance: 1000, counter: 42, authMode: 4 });
    await fakePurchase(p, des, { amount: 420 });
    expect((await psamInit(p, aes, { amount: 1999, time: '143510' })).sw).toBe(0x9000); // S2 issued, never confirmed
    await fakePurchase(p, pts, { txType: 3, amount: 250, currency: PROGRAMME, exponent: 0, time: '150000' });
  }

  it('keeps working totals: confirmed in COUNT/SUM, unconfirmed in UCOUNT/USUM, one entry per (TXTYPE, CUR, EXP)', async () => {
    const p = await newPsam();
    await threeRecords(p);
    const t = A.decodeTotals((await tx(p.ch, 0x80, I.READ_TOTALS, 0, 0, undefined, 256)).data);
    expect(t).toEqual([
      { txType: 1, currency: EUR, exponent: 2, count: 1, sum: 420, unconfirmedCount: 1, unconfirmedSum: 1999 },
      { txType: 3, currency: PROGRAMME, exponent: 0, count: 1, sum: 250, unconfirmedCount: 0, unconfirmedSum: 0 },
    ]);
    expect((await readData(p))).toMatchObject({ recordCount: 3, pending: 1 });
    expect((await readRecord(p, 0, 3)).sw).toBe(SW.NOT_FOUND);
    expect((await readRecord(p, 1, 0)).sw).toBe(SW.NO_CLOSED_BATCH);
    expect((await tx(p.ch, 0x80, I.READ_TOTALS, 1, 0, undefined, 256)).sw).toBe(SW.NO_CLOSED_BATCH);
    expect((await tx(p.ch, 0x80, I.READ_BATCH_RECORD, 2, 0, Buffer.alloc(2), 256)).sw).toBe(0x6a86);
    expect((await tx(p.ch, 0x80, I.READ_BATCH_RECORD, 0, 0, Buffer.alloc(3), 256)).sw).toBe(0x6700);
  });

  it('CLOSE BATCH: the summary carries the totals and a batch MAC the concentration point verifies with its own key', async () => {
    for (const which of ['des', 'aes'] as const) {
      const p = await newPsam(which, { batchNumber: 12 });
      await threeRecords(p);
      const { sw, summary } = await closeBatch(p);
      expect(sw).toBe(0x9000);
      expect(summary).toMatchObject({ psamId: p.psamId, batchNumber: 12, recordCount: 3 });
      const records = await readAll(p, 1, 3);
      expect(summary!.totals).toEqual(M.computeTotals(records));
      const key = psamKey('batch', p.psamId, p.alg); // the acquirer's derivation, not the PSAM's
      const h = { alg: p.alg, keyVersion: 1, psamId: p.psamId, batchNumber: 12 };
      expect(M.verifyBatchMac(key, h, records, summary!.totals, summary!.mac)).toBe(true);
      // The open batch is new and empty; the closed one is kept until purged.
      expect(await readData(p)).toMatchObject({ batchNumber: 13, recordCount: 0, closedBatchNumber: 12, closedRecordCount: 3, pending: 0, nextTxn: 4 });
      expect(A.decodeTotals((await tx(p.ch, 0x80, I.READ_TOTALS, 1, 0, undefined, 256)).data)).toEqual(summary!.totals);
      expect(A.decodeTotals((await tx(p.ch, 0x80, I.READ_TOTALS, 0, 0, undefined, 256)).data)).toEqual([]);
    }
  });

  it('an altered batch (record, totals, number, order) fails the batch MAC', async () => {
    const p = await newPsam();
    await threeRecords(p);
    const { summary } = await closeBatch(p);
    const records = await readAll(p, 1, 3);
    const key = psamKey('batch', p.psamId, p.alg);
    const h = { alg: 1, keyVersion: 1, psamId: p.psamId, batchNumber: 1 };
    const ok = (rs: M.BatchRecord[], t = summary!.totals, hh = h) => M.verifyBatchMac(key, hh, rs, t, summary!.mac);
    expect(ok(records)).toBe(true);
    expect(ok(records.map((r, i) => (i === 0 ? { ...r, amount: r.amount + 1 } : r)))).toBe(false);
    expect(ok(records.map((r, i) => (i === 1 ? { ...r, status: 1 } : r)))).toBe(false);
    expect(ok(records.map((r, i) => (i === 0 ? { ...r, cardId: '9990010000000033' } : r)))).toBe(false);
    expect(ok(records.slice(0, 2))).toBe(false);
    expect(ok([records[1]!, records[0]!, records[2]!])).toBe(false);
    expect(ok(records, summary!.totals.map((t, i) => (i === 0 ? { ...t, sum: t.sum - 1 } : t)))).toBe(false);
    expect(ok(records, summary!.totals, { ...h, batchNumber: 2 })).toBe(false);
    // Any single bit of the summary's MAC.
    const mac = Buffer.from(summary!.mac);
    mac[3]! ^= 0x10;
    expect(M.verifyBatchMac(key, h, records, summary!.totals, mac)).toBe(false);
  });

  it('an empty batch may be closed; a second close before the purge is 9506; P1 01 re-reads the same summary', async () => {
    const p = await newPsam();
    const first = await closeBatch(p);
    expect(first.summary).toMatchObject({ batchNumber: 1, recordCount: 0, totals: [] });
    expect(M.verifyBatchMac(p.batchKey, { alg: 1, keyVersion: 1, psamId: p.psamId, batchNumber: 1 }, [], [], first.summary!.mac)).toBe(true);
    const before = psamState(p);
    expect((await closeBatch(p)).sw).toBe(SW.CLOSED_BATCH_PENDING);
    expect((await closeBatch(p, 1)).summary).toEqual(first.summary);
    expect(psamState(p)).toBe(before);
    expect((await closeBatch(p, 2)).sw).toBe(0x6a86);
    const fresh = await newPsam();
    expect((await closeBatch(fresh, 1)).sw).toBe(SW.NO_CLOSED_BATCH);
  });

  it('summaries longer than 256 bytes come through GET RESPONSE', async () => {
    const p = await newPsam('des', { acceptedCurrencies: Array.from({ length: 12 }, (_, i) => ({ currency: 900 + i, exponent: 2 })) });
    for (let i = 0; i < 12; i++) await fakePurchase(p, fakeCard({ currency: 900 + i }), { currency: 900 + i, amount: 1 + i });
    const { summary } = await closeBatch(p);
    expect(summary!.totals).toHaveLength(12);
    expect(M.verifyBatchMac(p.batchKey, { alg: 1, keyVersion: 1, psamId: p.psamId, batchNumber: 1 }, await readAll(p, 1, 12), summary!.totals, summary!.mac)).toBe(true);
  });

  it('a batch fills up to its capacity (9504), across persistent pages', async () => {
    const p = await newPsam('des', { capacity: 1030 });
    const card = fakeCard({ balance: 1_000_000 });
    for (let i = 0; i < 1030; i++) expect((await psamInit(p, card, { amount: 1 })).sw).toBe(0x9000);
    expect((await psamInit(p, card, { amount: 1 })).sw).toBe(SW.LOG_FULL);
    const r = await readRecord(p, 0, 1029);
    expect(r.rec!.psamTxn).toBe(1030);
    // The log's last record sits on the second page and is still confirmable.
    const d = await readData(p);
    expect(d).toMatchObject({ recordCount: 1030, pending: 1030 });
    const { summary } = await closeBatch(p);
    expect(summary!.totals[0]).toMatchObject({ unconfirmedCount: 1030, unconfirmedSum: 1030 });
    expect((await psamInit(p, card, { amount: 1 })).sw).toBe(0x9000);
  });
});

describe('PURGE BATCH and the management commands (admin MAC, single-use challenge)', () => {
  async function closed(p: TestPsam) {
    await fakePurchase(p, fakeCard());
    return (await closeBatch(p)).summary!;
  }
  const purge = (p: TestPsam, n: number, key?: Buffer, rnd?: Buffer) => admin(p, I.PURGE_BATCH, 0, Buffer.from([n >>> 24, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff]), key, rnd);

  it('purges the closed batch with the acquirer MAC; then a new close works', async () => {
    const p = await newPsam();
    await closed(p);
    expect(await purge(p, 1)).toBe(0x9000);
    expect(await readData(p)).toMatchObject({ closedBatchNumber: 0, closedRecordCount: 0, batchNumber: 2 });
    expect((await readRecord(p, 1, 0)).sw).toBe(SW.NO_CLOSED_BATCH);
    expect((await closeBatch(p)).summary).toMatchObject({ batchNumber: 2 });
  });

  it('refuses without a challenge (6985), with a wrong MAC (6982), another batch (6A80), no closed batch (9508); nothing changes', async () => {
    const p = await newPsam();
    const n = Buffer.from([0, 0, 0, 1]);
    expect((await tx(p.ch, 0x80, I.PURGE_BATCH, 0, 0, Buffer.concat([n, Buffer.alloc(8)]))).sw).toBe(0x6985);
    expect(await purge(p, 1)).toBe(SW.NO_CLOSED_BATCH);
    await closed(p);
    const before = psamState(p);
    expect(await purge(p, 1, psamKey('admin', '9990029000000019', 1))).toBe(0x6982);
    expect(await purge(p, 1, p.batchKey)).toBe(0x6982);
    expect(await purge(p, 2)).toBe(0x6a80);
    await challenge(p);
    expect((await tx(p.ch, 0x80, I.PURGE_BATCH, 0, 0, n)).sw).toBe(0x6700);
    expect(psamState(p)).toBe(before);
  });

  it('the challenge is single use: consumed by any command, whatever its outcome', async () => {
    const p = await newPsam();
    await closed(p);
    // A MAC over a challenge that another command consumed.
    const rnd = await challenge(p);
    await readData(p);
    expect(await purge(p, 1, undefined, rnd)).toBe(0x6985);
    // A failed attempt consumes it too: the same (now valid) MAC cannot be retried.
    const rnd2 = await challenge(p);
    expect(await purge(p, 9, undefined, rnd2)).toBe(0x6a80);
    expect(await purge(p, 1, undefined, rnd2)).toBe(0x6985);
    // A challenge does not survive a reset.
    const rnd3 = await challenge(p);
    await p.ch.reset();
    await tx(p.ch, 0x00, 0xa4, 0x04, 0x00, A.PSAM_AID, 256);
    expect(await purge(p, 1, undefined, rnd3)).toBe(0x6985);
    expect(await purge(p, 1)).toBe(0x9000);
  });

  it('MANAGE BLOCKED LIST: add (idempotent), refuse the card at INITIALIZE PURCHASE, remove, clear; READ LIST pages', async () => {
    const p = await newPsam();
    const card = '9990010000000017';
    expect(await admin(p, I.MANAGE_BLOCKED_LIST, 1, bcd(card))).toBe(0x9000);
    expect(await admin(p, I.MANAGE_BLOCKED_LIST, 1, bcd(card))).toBe(0x9000);
    expect((await psamInit(p, fakeCard())).sw).toBe(SW.CARD_ON_BLOCKED_LIST);
    expect(await admin(p, I.MANAGE_BLOCKED_LIST, 2, bcd(card))).toBe(0x9000);
    expect(await admin(p, I.MANAGE_BLOCKED_LIST, 2, bcd(card))).toBe(SW.NOT_FOUND);
    expect((await psamInit(p, fakeCard())).sw).toBe(0x9000);
    // 40 cards: READ LIST gives 30, then the rest, ascending.
    const ids = Array.from({ length: 40 }, (_, i) => `99900100000${String(99999 - i * 7).padStart(5, '0')}`);
    for (const id of ids) expect(await admin(p, I.MANAGE_BLOCKED_LIST, 1, bcd(id))).toBe(0x9000);
    const page1 = await tx(p.ch, 0x80, I.READ_LIST, 1, 0, Buffer.from([0, 0]), 256);
    expect(page1.data.readUInt16BE(0)).toBe(40);
    expect(page1.data.length).toBe(2 + 30 * 8);
    const page2 = await tx(p.ch, 0x80, I.READ_LIST, 1, 0, Buffer.from([0, 30]), 256);
    expect(page2.data.length).toBe(2 + 10 * 8);
    const listed = [page1, page2].flatMap((r) => Array.from({ length: (r.data.length - 2) / 8 }, (_, i) => r.data.subarray(2 + i * 8, 10 + i * 8).toString('hex')));
    expect(listed).toEqual([...ids].sort());
    expect((await tx(p.ch, 0x80, I.READ_LIST, 1, 0, Buffer.from([0, 40]), 256)).data).toEqual(Buffer.from([0, 40]));
    expect((await tx(p.ch, 0x80, I.READ_LIST, 1, 0, Buffer.from([0, 41]), 256)).sw).toBe(SW.NOT_FOUND);
    expect(await admin(p, I.MANAGE_BLOCKED_LIST, 3, Buffer.alloc(0))).toBe(0x9000);
    expect((await tx(p.ch, 0x80, I.READ_LIST, 1, 0, Buffer.from([0, 0]), 256)).data).toEqual(Buffer.from([0, 0]));
  });

  it('MANAGE BLOCKED LIST refusals: no challenge 6985, wrong MAC 6982, Lc 6700, bad CID 6A80, full 6A84; nothing changes', async () => {
    const p = await newPsam();
    expect((await tx(p.ch, 0x80, I.MANAGE_BLOCKED_LIST, 1, 0, Buffer.alloc(16))).sw).toBe(0x6985);
    const before = psamState(p);
    expect(await admin(p, I.MANAGE_BLOCKED_LIST, 1, bcd('9990010000000017'), p.batchKey)).toBe(0x6982);
    // A MAC for "remove" does not add (P1 is MACed), nor does a MAC for another card.
    const rnd = await challenge(p);
    const macRemove = M.psamAdminMac(p.adminKey, { alg: 1, keyVersion: 1, psamId: p.psamId, challenge: rnd, ins: I.MANAGE_BLOCKED_LIST, p1: 2, p2: 0, data: bcd('9990010000000017') });
    expect((await tx(p.ch, 0x80, I.MANAGE_BLOCKED_LIST, 1, 0, Buffer.concat([bcd('9990010000000017'), macRemove]))).sw).toBe(0x6982);
    expect(await admin(p, I.MANAGE_BLOCKED_LIST, 1, Buffer.from('999001000000001A', 'hex'))).toBe(0x6a80);
    await challenge(p);
    expect((await tx(p.ch, 0x80, I.MANAGE_BLOCKED_LIST, 1, 0, Buffer.alloc(15))).sw).toBe(0x6700);
    expect(await admin(p, I.MANAGE_BLOCKED_LIST, 4, bcd('9990010000000017'))).toBe(0x6a86);
    expect(psamState(p)).toBe(before);
    const full = await newPsam('des', { blockedCards: Array.from({ length: PSAM_MAX_BLOCKED }, (_, i) => `9990050000${String(i).padStart(6, '0')}`) });
    const fullBefore = psamState(full);
    expect(await admin(full, I.MANAGE_BLOCKED_LIST, 1, bcd('9990010000000017'))).toBe(SW.MEMORY_FULL);
    expect(await admin(full, I.MANAGE_BLOCKED_LIST, 1, bcd('9990050000000000'))).toBe(0x9000); // already present
    expect(psamState(full)).toBe(fullBefore);
  });

  it('MANAGE CURRENCIES: remove EUR -> 9502; add it back; READ LIST shows CUR || EXP ascending', async () => {
    const p = await newPsam();
    expect(await admin(p, I.MANAGE_CURRENCIES, 2, cur(EUR, 2))).toBe(0x9000);
    expect((await psamInit(p, fakeCard())).sw).toBe(SW.CURRENCY_NOT_ACCEPTED);
    expect(await admin(p, I.MANAGE_CURRENCIES, 2, cur(EUR, 2))).toBe(SW.NOT_FOUND);
    expect(await admin(p, I.MANAGE_CURRENCIES, 1, cur(EUR, 2))).toBe(0x9000);
    expect(await admin(p, I.MANAGE_CURRENCIES, 1, cur(840, 2))).toBe(0x9000);
    expect((await psamInit(p, fakeCard())).sw).toBe(0x9000);
    const r = await tx(p.ch, 0x80, I.READ_LIST, 2, 0, Buffer.from([0, 0]), 256);
    expect(r.data.toString('hex').toUpperCase()).toBe('0003' + '084002' + '097802' + '700100');
    expect(await admin(p, I.MANAGE_CURRENCIES, 1, Buffer.from('0A7802', 'hex'))).toBe(0x6a80);
    expect(await admin(p, I.MANAGE_CURRENCIES, 3, Buffer.alloc(0))).toBe(0x9000);
    expect((await psamInit(p, fakeCard())).sw).toBe(SW.CURRENCY_NOT_ACCEPTED);
    // Authentications need no accepted currency.
    expect((await psamInit(p, fakeCard(), { txType: 2, amount: 0, currency: 999, exponent: 0 })).sw).toBe(0x9000);
  });
});

describe('persistence and atomicity', () => {
  it('the state survives a card image (save, load, continue)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'psam-'));
    try {
      const p = await newPsam();
      const card = fakeCard();
      await fakePurchase(p, card);
      const { debit } = A.decodePsamInitPurchaseResponse((await psamInit(p, card)).data);
      saveCardImage(p.card, join(dir, 'psam.img'));
      const q = await attachPsam(loadCardImage(join(dir, 'psam.img')));
      expect(psamState(q)).toBe(psamState(p));
      expect((await verifyS3(q, cardDebitAnswer(card, debit))).sw).toBe(0x9000);
      expect(await readData(q)).toMatchObject({ nextTxn: 3, recordCount: 2, pending: 0 });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  // Cut power at every persistent write of a command: afterwards the PSAM holds exactly the old or the new state.
  async function tearEvery(name: string, setup: (p: TestPsam) => Promise<void>, command: (p: TestPsam) => Promise<unknown>) {
    const base = await newPsam();
    await setup(base);
    const image = cardToImage(base.card);
    const oldState = psamState(base);
    const done = await attachPsam(cardFromImage(image));
    await command(done);
    const newState = psamState(done);
    expect(newState, `${name} changes the state`).not.toBe(oldState);
    let k = 1;
    for (; ; k++) {
      const p = await attachPsam(cardFromImage(image));
      p.card.armPowerLoss(k);
      await command(p).catch(() => undefined);
      if (p.card.isPowered) {
        p.card.disarmPowerLoss();
        break;
      }
      p.card.powerOn();
      const s = psamState(p);
      expect([oldState, newState], `${name}: cut at write ${k}`).toContain(s);
      // The PSAM works after the reboot.
      expect(A.decodePsamData((await (await attachPsam(p.card)).ch.transmit({ cla: 0x80, ins: I.READ_PSAM_DATA, p1: 0, p2: 0, data: Buffer.alloc(0), le: 256 })).data).psamId).toBe(p.psamId);
    }
    expect(k, `${name} has write points`).toBeGreaterThan(1);
    return k - 1;
  }

  it('INITIALIZE PURCHASE, VERIFY S3, CLOSE BATCH, PURGE BATCH and list management are atomic at every write', async () => {
    const card = fakeCard();
    let debit: A.DebitCommand | undefined;
    const n1 = await tearEvery('INITIALIZE PURCHASE', async () => undefined, (p) => psamInit(p, card));
    const n2 = await tearEvery(
      'VERIFY S3',
      async (p) => {
        debit = A.decodePsamInitPurchaseResponse((await psamInit(p, card)).data).debit;
      },
      (p) => verifyS3(p, cardDebitAnswer(card, debit!)),
    );
    const n3 = await tearEvery('CLOSE BATCH', async (p) => void (await fakePurchase(p, fakeCard())), (p) => closeBatch(p));
    const n4 = await tearEvery(
      'PURGE BATCH',
      async (p) => {
        await fakePurchase(p, fakeCard());
        await closeBatch(p);
      },
      (p) => admin(p, I.PURGE_BATCH, 0, Buffer.from([0, 0, 0, 1])),
    );
    const n5 = await tearEvery('MANAGE BLOCKED LIST', async () => undefined, (p) => admin(p, I.MANAGE_BLOCKED_LIST, 1, bcd('9990010000000017')));
    // The write points docs/psam-applet.md lists (Implementation notes).
    expect([n1, n2, n3, n4, n5]).toEqual([4, 3, 7, 3, 2]);
  });
});

describe('fuzz: random and mutated APDUs (seeded)', () => {
  it('100,000 APDUs: never an exception escaping the applet, always a valid SW, no state change without a valid command', async () => {
    let seed = 0x5eed1234;
    const rnd = () => {
      seed ^= seed << 13;
      seed ^= seed >>> 17;
      seed ^= seed << 5;
      return (seed >>> 0) / 0x100000000;
    };
    const byte = () => Math.floor(rnd() * 256);
    const p = await newPsam();
    const card = fakeCard({ balance: 1_000_000 });
    const valid = [
      A.encodePsamInitPurchase(card.startup, params()),
      A.encodeVerifyS3Command({ psamTxn: 1, newCounter: 42, cvr: 0, s3: Buffer.alloc(8) }),
      Buffer.from([0, 0]),
      Buffer.concat([bcd('9990010000000017'), Buffer.alloc(8)]),
    ];
    const insList = Object.values(I);
    const guarded = () => JSON.stringify({ b: p.applet.blocked.get(), c: p.applet.currencies.get(), k: p.applet.batchKey.get(), m: p.applet.masters.get(), closed: p.applet.closedBatchNumber.get() });
    const keysBefore = guarded();
    let changes = 0;
    for (let i = 0; i < 100_000; i++) {
      let apdu: Buffer;
      if (rnd() < 0.5) {
        const n = Math.floor(rnd() * 60);
        apdu = Buffer.from(Array.from({ length: 4 + n }, byte));
        if (rnd() < 0.7) apdu[0] = rnd() < 0.8 ? 0x80 : 0x00;
        if (rnd() < 0.7) apdu[1] = insList[Math.floor(rnd() * insList.length)]!;
      } else {
        const ins = insList[Math.floor(rnd() * insList.length)]!;
        const data = Buffer.from(valid[Math.floor(rnd() * valid.length)]!);
        for (let m = Math.floor(rnd() * 4); m > 0; m--) data[Math.floor(rnd() * data.length)] = byte();
        apdu = Buffer.concat([Buffer.from([ins === I.GET_CHALLENGE ? 0 : 0x80, ins, Math.floor(rnd() * 3), rnd() < 0.9 ? 0 : byte(), data.length]), data, Buffer.from([0])]);
      }
      const before = p.applet.recordCount.get();
      const r = p.card.transmit(apdu);
      const sw = r.length >= 2 ? r.readUInt16BE(r.length - 2) : -1;
      const okSw = sw !== 0x6f00 && ((sw >> 8 >= 0x61 && sw >> 8 <= 0x6f) || (sw >> 8 >= 0x90 && sw >> 8 <= 0x9f));
      if (!okSw) expect.fail(`APDU ${apdu.toString('hex')} answered ${r.toString('hex')}`);
      if (p.applet.recordCount.get() !== before) {
        changes++;
        if (apdu[1] !== I.INITIALIZE_PURCHASE || sw !== 0x9000) expect.fail(`APDU ${apdu.toString('hex')} changed the log (SW ${sw.toString(16)})`);
      }
      if (p.applet.recordCount.get() >= 50) p.applet.recordCount.set(0); // raw reset: keep the log short (totals scan it)
    }
    expect(p.card.events.filter((e) => e.type === 'applet-exception')).toEqual([]);
    expect(guarded()).toBe(keysBefore);
    expect(changes).toBeGreaterThan(0);
  });
});
