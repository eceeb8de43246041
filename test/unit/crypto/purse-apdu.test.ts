// The purse and PSAM APDU vocabulary (src/crypto/purse-apdu.ts): identity constants, status words and the
// record codecs the card side and the host side share.
import { describe, expect, it } from 'vitest';
import { lookupSw, registerStatusWords, unregisterStatusWords } from '../../../src/apdu/status-words.ts';
import { CryptoError } from '../../../src/crypto/index.ts';
import * as A from '../../../src/crypto/purse-apdu.ts';
import { TxType } from '../../../src/crypto/purse-mac.ts';
import { hex, toHex } from './helpers.ts';

describe('identity', () => {
  it('AIDs', () => {
    expect(toHex(A.IEP_AID)).toBe('F070757273656C6162494550');
    expect(A.IEP_AID.subarray(1).toString('latin1')).toBe('purselabIEP');
    expect(toHex(A.PSAM_AID)).toBe('F070757273656C61625053414D');
    expect(A.PSAM_AID.subarray(1).toString('latin1')).toBe('purselabPSAM');
  });
  it('INS codes are distinct per applet', () => {
    expect(new Set(Object.values(A.IepIns)).size).toBe(Object.values(A.IepIns).length);
    expect(new Set(Object.values(A.PsamIns)).size).toBe(Object.values(A.PsamIns).length);
  });
  it('status-word tables register with the APDU layer', () => {
    registerStatusWords(A.IEP_STATUS_WORDS, 'purselab IEP');
    registerStatusWords(A.PSAM_STATUS_WORDS, 'purselab PSAM');
    try {
      expect(lookupSw(0x9401, 'purselab IEP').meaning).toMatch(/insufficient/);
      expect(lookupSw(0x9503, 'purselab PSAM').meaning).toMatch(/S3 not valid/);
      expect(lookupSw(0x63c2, 'purselab IEP').meaning).toMatch(/PIN wrong/);
    } finally {
      unregisterStatusWords('purselab IEP');
      unregisterStatusWords('purselab PSAM');
    }
    expect(A.pinWrongSw(2)).toBe(0x63c2);
    expect(() => A.pinWrongSw(16)).toThrow(CryptoError);
  });
  it('every application-specific SW constant is in a table', () => {
    for (const [name, sw] of Object.entries(A.Sw)) {
      const key = sw.toString(16).toUpperCase().padStart(4, '0');
      if (sw >= 0x9400 && sw < 0x9500) expect(A.IEP_STATUS_WORDS[key], name).toBeDefined();
      if (sw >= 0x9500 && sw < 0x9600) expect(A.PSAM_STATUS_WORDS[key], name).toBeDefined();
    }
  });
});

describe('record codecs', () => {
  const startup: A.StartupData = {
    alg: 1, keyVersion: 1, cardId: '9990010000000017', expiry: '20281231', balance: 1330, currency: 978, exponent: 2, authMode: 0x01, counter: 41, status: 0,
  };
  it('start-up data: 27 bytes, documented offsets', () => {
    const b = A.encodeStartupData(startup);
    expect(b.length).toBe(27);
    expect(toHex(b)).toBe('0101' + '9990010000000017' + '20281231' + '00000532' + '0978' + '02' + '01' + '00000029' + '00');
    expect(A.decodeStartupData(b)).toEqual(startup);
  });
  it('every fixed record round-trips and has the documented length', () => {
    const cases: [string, (v: any) => Buffer, (b: Uint8Array) => any, any, number][] = [
      ['debitCommand', A.encodeDebitCommand, A.decodeDebitCommand, { psamId: '9990029000000001', psamTxn: 7, amount: 420, currency: 978, exponent: 2, date: '20260115', time: '143005', location: Buffer.from('MERCH001'), s2: Buffer.alloc(8, 0xaa) }, 42],
      ['debitResponse', A.encodeDebitResponse, A.decodeDebitResponse, { newCounter: 42, newBalance: 910, cvr: 1, s3: Buffer.alloc(8, 0xbb) }, 17],
      ['initLoadCommand', A.encodeInitLoadCommand, A.decodeInitLoadCommand, { amount: 5000, currency: 978, exponent: 2, date: '20260116', time: '091500', loadTxnId: Buffer.alloc(8, 1) }, 22],
      ['initLoadResponse', A.encodeInitLoadResponse, A.decodeInitLoadResponse, { cardId: '9990010000000017', alg: 2, keyVersion: 3, counter: 44, balance: 1330, maxBalance: 50000, currency: 978, exponent: 2, expiry: '20281231', cardChallenge: Buffer.alloc(8, 2), lastLoadTxnId: Buffer.alloc(8), lastLoadCounter: 0, lastLoadAmount: 0, s1: Buffer.alloc(8, 3) }, 61],
      ['creditCommand', A.encodeCreditCommand, A.decodeCreditCommand, { s2: Buffer.alloc(8, 4) }, 8],
      ['creditResponse', A.encodeCreditResponse, A.decodeCreditResponse, { result: 0, newCounter: 45, newBalance: 6330, s3: Buffer.alloc(8, 5) }, 17],
      ['updateCommand', A.encodeUpdateCommand, A.decodeUpdateCommand, { flags: 3, maxBalance: 100000, expiry: '20301231', currency: 978, exponent: 2, mac: Buffer.alloc(8, 6) }, 20],
      ['purseData', A.encodePurseData, A.decodePurseData, { cardId: '9990010000000017', alg: 1, status: 0, authMode: 5, expiry: '20281231', currency: 978, exponent: 2, balance: 1, maxBalance: 2, counter: 3, purchaseKeyVersion: 1, loadKeyVersion: 2, updateKeyVersion: 3, pointsProgramme: 7001, pointsBalance: 4, pointsMax: 5, pinTriesLeft: 0xff, lastLoadTxnId: Buffer.alloc(8, 7), lastLoadCounter: 6, lastLoadAmount: 7 }, 60],
      ['psamData', A.encodePsamData, A.decodePsamData, { psamId: '9990029000000001', alg: 2, batchKeyVersion: 1, adminKeyVersion: 1, nextTxn: 1001, batchNumber: 12, recordCount: 3, capacity: 1000, closedBatchNumber: 0, closedRecordCount: 0, pending: 1 }, 31],
      ['purchaseParams', A.encodePurchaseParams, A.decodePurchaseParams, { txType: TxType.POINTS_DEBIT, amount: 250, currency: 7001, exponent: 0, date: '20260115', time: '150000', location: Buffer.alloc(8, 0x20) }, 23],
      ['verifyS3', A.encodeVerifyS3Command, A.decodeVerifyS3Command, { psamTxn: 1001, newCounter: 42, cvr: 0, s3: Buffer.alloc(8, 8) }, 17],
      ['debitResult', A.encodeDebitResult, A.decodeDebitResult, { psamId: '9990029000000001', psamTxn: 1001, cardId: '9990010000000017', newCounter: 42, txType: 1, amount: 420, currency: 978, exponent: 2, status: 1 }, 33],
      ['purge', A.encodePurgeCommand, A.decodePurgeCommand, { batchNumber: 12, mac: Buffer.alloc(8, 9) }, 12],
    ];
    for (const [name, enc, dec, v, len] of cases) {
      const b = enc(v);
      expect(b.length, name).toBe(len);
      expect(dec(b), name).toEqual(v);
      expect(() => dec(b.subarray(1)), name).toThrow(CryptoError);
    }
  });
  it('PSAM INITIALIZE PURCHASE data = start-up bytes verbatim || parameters', () => {
    const params: A.PurchaseParams = { txType: 1, amount: 420, currency: 978, exponent: 2, date: '20260115', time: '143005', location: Buffer.from('MERCH001') };
    const raw = A.encodeStartupData(startup);
    const d = A.encodePsamInitPurchase(raw, params);
    expect(d.length).toBe(50);
    expect(d.subarray(0, 27).equals(raw)).toBe(true);
    expect(A.decodePsamInitPurchase(d)).toEqual({ startup, params });
    expect(A.encodePsamInitPurchase(startup, params).equals(d)).toBe(true);
    expect(() => A.encodePsamInitPurchase(raw.subarray(1), params)).toThrow(CryptoError);
    expect(() => A.decodePsamInitPurchase(d.subarray(1))).toThrow(CryptoError);
  });
  it('PSAM INITIALIZE PURCHASE response with and without the expected S3', () => {
    const debit: A.DebitCommand = { psamId: '9990029000000001', psamTxn: 7, amount: 420, currency: 978, exponent: 2, date: '20260115', time: '143005', location: Buffer.from('MERCH001'), s2: Buffer.alloc(8, 1) };
    const normal = A.encodePsamInitPurchaseResponse(debit);
    expect(normal.length).toBe(42);
    expect(A.decodePsamInitPurchaseResponse(normal)).toEqual({ debit });
    const early = A.encodePsamInitPurchaseResponse(debit, Buffer.alloc(8, 2));
    expect(early.length).toBe(50);
    expect(A.decodePsamInitPurchaseResponse(early)).toEqual({ debit, expectedS3: Buffer.alloc(8, 2) });
    expect(() => A.decodePsamInitPurchaseResponse(early.subarray(1))).toThrow(CryptoError);
  });
  it('totals and batch summary', () => {
    const totals = [
      { txType: 1, currency: 978, exponent: 2, count: 2, sum: 2 ** 40, unconfirmedCount: 1, unconfirmedSum: 50 },
      { txType: 3, currency: 7001, exponent: 0, count: 1, sum: 250, unconfirmedCount: 0, unconfirmedSum: 0 },
    ];
    const t = A.encodeTotals(totals);
    expect(t.length).toBe(1 + 48);
    expect(A.decodeTotals(t)).toEqual(totals);
    expect(() => A.decodeTotals(t.subarray(0, 30))).toThrow(CryptoError);
    const s: A.BatchSummary = { psamId: '9990029000000001', batchNumber: 12, recordCount: 3, totals, mac: Buffer.alloc(8, 0xcc) };
    const b = A.encodeBatchSummary(s);
    expect(b.length).toBe(15 + 48 + 8);
    expect(A.decodeBatchSummary(b)).toEqual(s);
    expect(() => A.decodeBatchSummary(b.subarray(0, b.length - 1))).toThrow(CryptoError);
  });
  it('decoders reject bad BCD and impossible dates with CRYPTO_FIELD', () => {
    const b = A.encodeStartupData(startup);
    const badCid = Buffer.from(b);
    badCid[2] = 0xaa;
    expect(() => A.decodeStartupData(badCid)).toThrow(/cardId/);
    const badDate = Buffer.from(b);
    badDate.set(hex('20281331'), 10);
    expect(() => A.decodeStartupData(badDate)).toThrow(/expiry/);
  });
});
