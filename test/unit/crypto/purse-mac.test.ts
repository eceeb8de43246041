// The purchase and load MAC inputs (S1/S2/S3 and the rest): layout sizes and tags, totals, every byte of every
// input reaching the MAC, what S2 and S3 bind, and field validation.
import { describe, expect, it } from 'vitest';
import { ALG_3DES, ALG_AES, CryptoError, diversifyCardKey } from '../../../src/crypto/index.ts';
import { decodeLayout, type Layout } from '../../../src/crypto/layout.ts';
import {
  AUTH_CURRENCY,
  BATCH_HEADER_LAYOUT,
  BATCH_RECORD_LAYOUT,
  BatchRecordStatus,
  LOAD_S1_LAYOUT,
  LOAD_S2_LAYOUT,
  LOAD_S3_LAYOUT,
  LoadResult,
  LoadType,
  MacTag,
  PSAM_ADMIN_HEADER_LAYOUT,
  PURCHASE_S2_LAYOUT,
  PURCHASE_S3_LAYOUT,
  TOTALS_ENTRY_LAYOUT,
  TxType,
  UPDATE_PARAMETERS_LAYOUT,
  batchMac,
  batchMacInput,
  computeTotals,
  deriveCardKey,
  expectedPurchaseS3Fields,
  loadS1,
  loadS1Input,
  loadS2,
  loadS2FieldsFromS1,
  loadS2Input,
  loadS3,
  loadS3FieldsFor,
  loadS3Input,
  psamAdminInput,
  purchaseS2,
  purchaseS2Input,
  purchaseS3,
  purchaseS3FieldsForRecord,
  purchaseS3Input,
  purseMac,
  updateParametersInput,
  updateParametersMac,
  verifyBatchMac,
  verifyLoadS1,
  verifyLoadS2,
  verifyLoadS3,
  verifyPurchaseS2,
  verifyPurchaseS3,
  verifyUpdateParametersMac,
  type BatchRecord,
  type LoadS1Fields,
  type PurchaseS2Fields,
  type UpdateParametersFields,
} from '../../../src/crypto/purse-mac.ts';
import { hex, toHex } from './helpers.ts';

const LOC = Buffer.from('MERCH001');
const s2Fields = (alg: number): PurchaseS2Fields => ({
  txType: TxType.PURCHASE, alg, keyVersion: 1, cardId: '9990010000000017', counter: 41, psamId: '9990029000000001', psamTxn: 1001,
  amount: 420, currency: 978, exponent: 2, date: '20260115', time: '143005', location: LOC,
});
const s1Fields = (alg: number): LoadS1Fields => ({
  loadType: LoadType.LOAD, alg, keyVersion: 1, cardId: '9990010000000017', counter: 44, amount: 5000, currency: 978, exponent: 2,
  balance: 1330, maxBalance: 50000, expiry: '20281231', date: '20260116', time: '091500',
  loadTxnId: hex('4C44303030303031'), cardChallenge: hex('A1B2C3D4E5F60718'), lastLoadTxnId: Buffer.alloc(8), lastLoadCounter: 0, lastLoadAmount: 0,
});
const updFields = (alg: number): UpdateParametersFields => ({
  alg, keyVersion: 1, cardId: '9990010000000017', counter: 45, challenge: hex('1122334455667788'), flags: 0x03, maxBalance: 100000, expiry: '20301231', currency: 978, exponent: 2,
});
const records: BatchRecord[] = [
  { psamTxn: 1, txType: TxType.PURCHASE, status: BatchRecordStatus.CONFIRMED, alg: 1, keyVersion: 1, cardId: '9990010000000017', newCounter: 2, amount: 100, currency: 978, exponent: 2, date: '20260101', time: '000000', location: LOC, s3: Buffer.alloc(8, 1) },
  { psamTxn: 2, txType: TxType.PURCHASE, status: BatchRecordStatus.UNCONFIRMED, alg: 2, keyVersion: 1, cardId: '9990010000000025', newCounter: 9, amount: 50, currency: 978, exponent: 2, date: '20260101', time: '000001', location: LOC, s3: Buffer.alloc(8, 2) },
  { psamTxn: 3, txType: TxType.PURCHASE, status: BatchRecordStatus.CONFIRMED, alg: 1, keyVersion: 1, cardId: '9990010000000017', newCounter: 3, amount: 7, currency: 978, exponent: 2, date: '20260101', time: '000002', location: LOC, s3: Buffer.alloc(8, 3) },
  { psamTxn: 4, txType: TxType.AUTHENTICATION, status: BatchRecordStatus.CONFIRMED, alg: 1, keyVersion: 1, cardId: '9990010000000017', newCounter: 4, amount: 0, currency: AUTH_CURRENCY, exponent: 0, date: '20260101', time: '000003', location: LOC, s3: Buffer.alloc(8, 4) },
];
const key = hex('0123456789ABCDEFFEDCBA9876543210');

describe('layouts: sizes and tags', () => {
  it('documented lengths', () => {
    expect(PURCHASE_S2_LAYOUT.length).toBe(50);
    expect(PURCHASE_S3_LAYOUT.length).toBe(37);
    expect(LOAD_S1_LAYOUT.length).toBe(74);
    expect(LOAD_S2_LAYOUT.length).toBe(46);
    expect(LOAD_S3_LAYOUT.length).toBe(44);
    expect(UPDATE_PARAMETERS_LAYOUT.length).toBe(35);
    expect(BATCH_HEADER_LAYOUT.length).toBe(17);
    expect(BATCH_RECORD_LAYOUT.length).toBe(50);
    expect(TOTALS_ENTRY_LAYOUT.length).toBe(24);
    expect(PSAM_ADMIN_HEADER_LAYOUT.length).toBe(22);
  });
  it('each MAC input starts with its own tag', () => {
    expect(purchaseS2Input(s2Fields(1))[0]).toBe(MacTag.PURCHASE_S2);
    expect(purchaseS3Input(expectedPurchaseS3Fields(s2Fields(1), 0))[0]).toBe(MacTag.PURCHASE_S3);
    expect(loadS1Input(s1Fields(1))[0]).toBe(MacTag.LOAD_S1);
    expect(loadS2Input(loadS2FieldsFromS1(s1Fields(1)))[0]).toBe(MacTag.LOAD_S2);
    expect(loadS3Input(loadS3FieldsFor(loadS2FieldsFromS1(s1Fields(1)), 0, 45, 6330))[0]).toBe(MacTag.LOAD_S3);
    expect(updateParametersInput(updFields(1))[0]).toBe(MacTag.UPDATE_PARAMETERS);
    expect(batchMacInput({ alg: 1, keyVersion: 1, psamId: '9990029000000001', batchNumber: 1 }, [])[0]).toBe(MacTag.BATCH);
    expect(new Set(Object.values(MacTag)).size).toBe(Object.values(MacTag).length);
  });
  it('purchase S2 produces the documented bytes (hand-assembled, independent of the layout table)', () => {
    const expected =
      '21' + '01' + '01' + '01' + '9990010000000017' + '00000029' + '9990029000000001' + '000003E9' + '000001A4' + '0978' + '02' + '20260115' + '143005' + '4D45524348303031';
    expect(toHex(purchaseS2Input(s2Fields(1)))).toBe(expected);
  });
  it('load S1 produces the documented bytes (hand-assembled)', () => {
    const expected =
      '41' + '01' + '02' + '01' + '9990010000000017' + '0000002C' + '00001388' + '0978' + '02' + '00000532' + '0000C350' + '20281231' + '20260116' + '091500' +
      '4C44303030303031' + 'A1B2C3D4E5F60718' + '0000000000000000' + '00000000' + '00000000';
    expect(toHex(loadS1Input(s1Fields(2)))).toBe(expected);
  });
  it('batch input = header || records || NTOT || totals', () => {
    const h = { alg: 1, keyVersion: 1, psamId: '9990029000000001', batchNumber: 7 };
    const input = batchMacInput(h, records);
    const totals = computeTotals(records);
    expect(input.length).toBe(17 + 50 * records.length + 1 + 24 * totals.length);
    expect(toHex(input.subarray(0, 17))).toBe('7101019990029000000001' + '00000007' + '0004');
    expect(input[17 + 50 * 4]).toBe(totals.length);
    const r0 = decodeLayout<BatchRecord>(BATCH_RECORD_LAYOUT, input.subarray(17, 67));
    expect(r0).toEqual(records[0]);
  });
  it('round-trips through the layout decoder', () => {
    const f = s2Fields(2);
    const d = decodeLayout<PurchaseS2Fields>(PURCHASE_S2_LAYOUT, purchaseS2Input(f));
    expect(d).toEqual(f);
    const l = s1Fields(1);
    expect(decodeLayout<LoadS1Fields>(LOAD_S1_LAYOUT, loadS1Input(l))).toEqual(l);
  });
});

describe('totals', () => {
  it('per (TXTYPE, CUR, EXP), sorted, confirmed and unconfirmed apart', () => {
    expect(computeTotals(records)).toEqual([
      { txType: 1, currency: 978, exponent: 2, count: 2, sum: 107, unconfirmedCount: 1, unconfirmedSum: 50 },
      { txType: 2, currency: 999, exponent: 0, count: 1, sum: 0, unconfirmedCount: 0, unconfirmedSum: 0 },
    ]);
    expect(computeTotals([])).toEqual([]);
  });
});

// The tamper property: every single-byte change of a MAC input changes the MAC, and every field change
// changes the input at exactly that field's bytes.
function tamperEveryByte(alg: number, input: Buffer): void {
  const mac = purseMac(alg, key, input);
  for (let i = 0; i < input.length; i++) {
    for (const delta of [0x01, 0x80]) {
      const t = Buffer.from(input);
      t[i]! ^= delta;
      expect(purseMac(alg, key, t).equals(mac), `byte ${i} ^ ${delta}`).toBe(false);
    }
  }
}

function mutate(v: unknown, kind: string): unknown {
  if (Buffer.isBuffer(v)) {
    const b = Buffer.from(v);
    b[b.length - 1]! ^= 0x01;
    return b;
  }
  if (kind === 'id16') return (v as string).slice(0, 15) + (((Number((v as string)[15]) + 1) % 10).toString());
  if (kind === 'date') return (v as string) === '20260115' ? '20260116' : '20260115';
  if (kind === 'time') return (v as string) === '143005' ? '143006' : '143005';
  if (kind === 'currency') return (v as number) === 978 ? 840 : 978;
  return (v as number) === 0 ? 1 : (v as number) - 1;
}

function tamperEveryField(l: Layout, alg: number, fields: Record<string, unknown>, build: (f: any) => Buffer): void {
  const base = build(fields);
  const mac = purseMac(alg, key, base);
  let off = 0;
  for (const f of l.fields) {
    if (f.kind !== 'const' && f.name !== 'alg') {
      const changed = build({ ...fields, [f.name]: mutate(fields[f.name], f.kind) });
      // only this field's bytes differ
      for (let i = 0; i < base.length; i++) {
        const inField = i >= off && i < off + f.length;
        if (!inField) expect(changed[i], `${l.name}.${f.name} leaked into byte ${i}`).toBe(base[i]);
      }
      expect(changed.equals(base), `${l.name}.${f.name} not covered`).toBe(false);
      expect(purseMac(alg, key, changed).equals(mac), `${l.name}.${f.name} MAC unchanged`).toBe(false);
    }
    off += f.length;
  }
}

describe('tamper: every byte and every field of every MAC input changes the MAC', () => {
  for (const alg of [ALG_3DES, ALG_AES]) {
    const s2 = s2Fields(alg);
    const s3 = expectedPurchaseS3Fields(s2, 0x03);
    const l1 = s1Fields(alg);
    const l2 = loadS2FieldsFromS1(l1);
    const l3 = loadS3FieldsFor(l2, LoadResult.CREDITED, 45, 6330);
    const u = updFields(alg);
    it(`purchase S2 (alg ${alg})`, () => {
      tamperEveryByte(alg, purchaseS2Input(s2));
      tamperEveryField(PURCHASE_S2_LAYOUT, alg, s2 as any, purchaseS2Input);
    });
    it(`purchase S3 (alg ${alg})`, () => {
      tamperEveryByte(alg, purchaseS3Input(s3));
      tamperEveryField(PURCHASE_S3_LAYOUT, alg, s3 as any, purchaseS3Input);
    });
    it(`load S1 (alg ${alg})`, () => {
      tamperEveryByte(alg, loadS1Input(l1));
      tamperEveryField(LOAD_S1_LAYOUT, alg, l1 as any, loadS1Input);
    });
    it(`load S2 (alg ${alg})`, () => {
      tamperEveryByte(alg, loadS2Input(l2));
      tamperEveryField(LOAD_S2_LAYOUT, alg, l2 as any, loadS2Input);
    });
    it(`load S3 (alg ${alg})`, () => {
      tamperEveryByte(alg, loadS3Input(l3));
      tamperEveryField(LOAD_S3_LAYOUT, alg, l3 as any, loadS3Input);
    });
    it(`update parameters (alg ${alg})`, () => {
      tamperEveryByte(alg, updateParametersInput(u));
      tamperEveryField(UPDATE_PARAMETERS_LAYOUT, alg, u as any, updateParametersInput);
    });
    it(`batch (alg ${alg}): every byte; records, totals and their order are covered`, () => {
      const h = { alg, keyVersion: 1, psamId: '9990029000000001', batchNumber: 3 };
      tamperEveryByte(alg, batchMacInput(h, records));
      const mac = batchMac(key, h, records);
      expect(batchMac(key, h, [...records].reverse()).equals(mac)).toBe(false);
      expect(batchMac(key, h, records.slice(1)).equals(mac)).toBe(false);
      const doctored = computeTotals(records).map((t) => ({ ...t, sum: t.sum + 1 }));
      expect(batchMac(key, h, records, doctored).equals(mac)).toBe(false);
      const flipped = records.map((r, i) => (i === 1 ? { ...r, status: BatchRecordStatus.CONFIRMED } : r));
      expect(batchMac(key, h, flipped).equals(mac)).toBe(false);
      expect(verifyBatchMac(key, h, records, undefined, mac)).toBe(true);
    });
    it(`admin (alg ${alg})`, () => {
      tamperEveryByte(alg, psamAdminInput({ alg, keyVersion: 1, psamId: '9990029000000001', challenge: Buffer.alloc(8, 9), ins: 0x70, p1: 1, p2: 0, data: hex('9990010000000025') }));
    });
  }
});

describe('S2 / S3 semantics', () => {
  for (const alg of [ALG_3DES, ALG_AES]) {
    const master = alg === ALG_3DES ? key : hex('2B7E151628AED2A6ABF7158809CF4F3C');
    const cardKey = deriveCardKey(master, '9990010000000017', alg);
    it(`the card's S3 for a genuine debit equals the PSAM's expected S3 (alg ${alg})`, () => {
      const s2 = s2Fields(alg);
      const mac2 = purchaseS2(cardKey, s2);
      expect(verifyPurchaseS2(cardKey, s2, mac2)).toBe(true);
      // card side: after verifying S2 it builds S3 from its own new counter
      const cardS3 = purchaseS3(cardKey, { ...s2Fields(alg), newCounter: s2.counter + 1, result: 0, cvr: 0 } as any);
      const expected = purchaseS3(cardKey, expectedPurchaseS3Fields(s2, 0));
      expect(toHex(cardS3)).toBe(toHex(expected));
      expect(verifyPurchaseS3(cardKey, expectedPurchaseS3Fields(s2, 0), cardS3)).toBe(true);
      // a different CVR or counter is not the expected S3
      expect(verifyPurchaseS3(cardKey, expectedPurchaseS3Fields(s2, 2), cardS3)).toBe(false);
      expect(verifyPurchaseS3(cardKey, expectedPurchaseS3Fields({ ...s2, counter: 42 }, 0), cardS3)).toBe(false);
    });
    it(`VERIFY S3 from a log record recomputes the same S3 (alg ${alg})`, () => {
      const s2 = s2Fields(alg);
      const exp = expectedPurchaseS3Fields(s2, 0x01);
      const rec: BatchRecord = {
        psamTxn: s2.psamTxn, txType: s2.txType, status: 2, alg, keyVersion: 1, cardId: s2.cardId, newCounter: 42, amount: s2.amount,
        currency: s2.currency, exponent: s2.exponent, date: s2.date, time: s2.time, location: s2.location, s3: purchaseS3(cardKey, exp),
      };
      expect(purchaseS3FieldsForRecord(rec, s2.psamId, 0x01)).toEqual(exp);
    });
    it(`S2 from one card does not verify for another card, nor under another key version (alg ${alg})`, () => {
      const other = deriveCardKey(master, '9990010000000025', alg);
      const s2 = s2Fields(alg);
      const mac = purchaseS2(cardKey, s2);
      expect(verifyPurchaseS2(other, { ...s2, cardId: '9990010000000025' }, mac)).toBe(false);
      expect(verifyPurchaseS2(cardKey, { ...s2, keyVersion: 2 }, mac)).toBe(false);
      expect(verifyPurchaseS2(cardKey, s2, mac.subarray(0, 4))).toBe(false);
    });
    it(`load: S1 -> S2 -> S3 round trip; S2 bound to the card challenge (alg ${alg})`, () => {
      const s1 = s1Fields(alg);
      const m1 = loadS1(cardKey, s1);
      expect(verifyLoadS1(cardKey, s1, m1)).toBe(true);
      const s2 = loadS2FieldsFromS1(s1);
      const m2 = loadS2(cardKey, s2);
      expect(verifyLoadS2(cardKey, s2, m2)).toBe(true);
      expect(verifyLoadS2(cardKey, { ...s2, cardChallenge: hex('0000000000000001') }, m2)).toBe(false);
      const s3 = loadS3FieldsFor(s2, LoadResult.CREDITED, 45, 6330);
      const m3 = loadS3(cardKey, s3);
      expect(verifyLoadS3(cardKey, s3, m3)).toBe(true);
      expect(verifyLoadS3(cardKey, loadS3FieldsFor(s2, LoadResult.S2_INVALID, 44, 1330), m3)).toBe(false);
      // S1 and S2 and S3 never collide, even over equal fields (domain tags)
      expect(toHex(m1)).not.toBe(toHex(m2));
    });
    it(`failed-load enquiry: the issuer can tell failure from hidden success (alg ${alg})`, () => {
      const original = s1Fields(alg);
      const enquiryFail: LoadS1Fields = { ...original, loadType: LoadType.ENQUIRY, amount: 0, loadTxnId: hex('5245433030303031'), cardChallenge: hex('0102030405060708') };
      const enquiryOk: LoadS1Fields = { ...enquiryFail, counter: 45, balance: 6330, lastLoadTxnId: original.loadTxnId, lastLoadCounter: 45, lastLoadAmount: 5000 };
      const macFail = loadS1(cardKey, enquiryFail);
      const macOk = loadS1(cardKey, enquiryOk);
      // a card that was loaded cannot produce an S1 that claims the failure state
      expect(verifyLoadS1(cardKey, enquiryFail, macOk)).toBe(false);
      expect(verifyLoadS1(cardKey, enquiryOk, macFail)).toBe(false);
      // an enquiry S1 is not a load S1 (LTYPE), and is fresh per issuer challenge
      expect(verifyLoadS1(cardKey, { ...enquiryFail, loadType: LoadType.LOAD }, macFail)).toBe(false);
      expect(verifyLoadS1(cardKey, { ...enquiryFail, loadTxnId: hex('5245433030303032') }, macFail)).toBe(false);
    });
    it(`update MAC (alg ${alg})`, () => {
      const f = updFields(alg);
      const m = updateParametersMac(cardKey, f);
      expect(verifyUpdateParametersMac(cardKey, f, m)).toBe(true);
      expect(verifyUpdateParametersMac(cardKey, { ...f, challenge: Buffer.alloc(8) }, m)).toBe(false);
    });
  }
  it('keys differ per usage when masters differ (diversification is per master)', () => {
    const k1 = diversifyCardKey(key, '9990010000000017', 'DES3-2KEY');
    const k2 = diversifyCardKey(hex('00112233445566778899AABBCCDDEEFF'), '9990010000000017', 'DES3-2KEY');
    expect(toHex(k1)).not.toBe(toHex(k2));
  });
});

describe('field validation', () => {
  it('bad values throw CRYPTO_FIELD naming the field', () => {
    const base = s2Fields(1);
    const cases: [Partial<PurchaseS2Fields>, RegExp][] = [
      [{ amount: -1 }, /purchaseS2\.amount/],
      [{ amount: 2 ** 32 }, /purchaseS2\.amount/],
      [{ amount: 1.5 }, /purchaseS2\.amount/],
      [{ counter: 2 ** 32 }, /purchaseS2\.counter/],
      [{ cardId: '123' }, /purchaseS2\.cardId/],
      [{ psamId: '99900290000000AA' }, /purchaseS2\.psamId/],
      [{ currency: 10000 }, /currency/],
      [{ date: '20260230' }, /date/],
      [{ time: '246000' }, /time/],
      [{ location: Buffer.alloc(7) }, /purchaseS2\.location/],
      [{ txType: 256 }, /purchaseS2\.txType/],
    ];
    for (const [patch, re] of cases) {
      expect(() => purchaseS2Input({ ...base, ...patch } as PurchaseS2Fields)).toThrow(CryptoError);
      expect(() => purchaseS2Input({ ...base, ...patch } as PurchaseS2Fields)).toThrow(re);
    }
  });
  it('calendar dates: leap years and month lengths', () => {
    for (const ok of ['20240229', '20000229', '20261231', '20260430']) expect(() => purchaseS2Input({ ...s2Fields(1), date: ok })).not.toThrow();
    for (const bad of ['20230229', '21000229', '20260431', '20261301', '20260100', '2026011', '2026011A', '+2026011']) {
      expect(() => purchaseS2Input({ ...s2Fields(1), date: bad }), bad).toThrow(CryptoError);
    }
    for (const ok of ['000000', '235959']) expect(() => purchaseS2Input({ ...s2Fields(1), time: ok })).not.toThrow();
    for (const bad of ['240000', '236000', '235960', '23595', '2359-9']) expect(() => purchaseS2Input({ ...s2Fields(1), time: bad }), bad).toThrow(CryptoError);
    for (const bad of ['999001000000001', '99900100000000170', '9990010000O00017']) expect(() => purchaseS2Input({ ...s2Fields(1), cardId: bad }), bad).toThrow(CryptoError);
    expect(toHex(purchaseS2Input({ ...s2Fields(1), cardId: hex('9990010000000017') as any }))).toBe(toHex(purchaseS2Input(s2Fields(1))));
  });
  it('currency BCD: every 4-digit code encodes as its digits', () => {
    for (const c of [0, 1, 9, 10, 99, 100, 978, 999, 1000, 7001, 9999]) {
      const b = purchaseS2Input({ ...s2Fields(1), currency: c });
      expect(b.subarray(32, 34).toString('hex')).toBe(c.toString().padStart(4, '0'));
    }
    expect(() => purchaseS2Input({ ...s2Fields(1), currency: 12.5 })).toThrow(CryptoError);
  });
  it('unknown algorithm ids are refused in every builder', () => {
    expect(() => purchaseS2Input({ ...s2Fields(1), alg: 3 })).toThrow(/unknown algorithm identifier 0x03/);
    expect(() => loadS1Input({ ...s1Fields(1), alg: 0 })).toThrow(CryptoError);
    expect(() => purseMac(9, key, Buffer.alloc(1))).toThrow(/unknown algorithm identifier/);
  });
  it('expected S3 refuses an exhausted counter', () => {
    expect(() => expectedPurchaseS3Fields({ ...s2Fields(1), counter: 0xffffffff }, 0)).toThrow(CryptoError);
  });
  it('a missing field is an error, not silently zero', () => {
    const { location: _omit, ...partial } = s2Fields(1);
    expect(() => purchaseS2Input(partial as PurchaseS2Fields)).toThrow(/location/);
  });
});
