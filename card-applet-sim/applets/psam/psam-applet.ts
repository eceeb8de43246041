// The purchase security card (PSAM) of seed 003: derives each card's purchase key from the issuer's
// purchase masters, issues DEBIT with S2, verifies the card's S3, logs every purchase (unconfirmed when S2
// leaves, confirmed when S3 verifies), keeps collection totals and closes the log as MACed batches.
// Byte-level specification: docs/psam-applet.md. Layouts and MACs: src/crypto/purse-apdu.ts, purse-mac.ts.

import { timingSafeEqual } from 'node:crypto';
import { Applet, type ApduContext } from '../../os/applet.ts';
import { IsoException, SW } from '../../os/iso.ts';
import type { PersistentBytes } from '../../os/store.ts';
import { bcdToCardId, cardIdToBcd, decodeCurrency, encodeCurrency } from '../../../src/crypto/bcd.ts';
import { CryptoError } from '../../../src/crypto/errors.ts';
import { isAlgorithmId } from '../../../src/crypto/suites.ts';
import {
  BatchSel,
  CLA_ISO,
  CLA_PROPRIETARY,
  CloseP1,
  ListOp,
  ListSel,
  PSAM_AID,
  PsamInitP1,
  PsamIns,
  PurseStatus,
  STARTUP_LAYOUT,
  Sw,
  decodeBatchRecord,
  decodePsamInitPurchase,
  decodeVerifyS3Command,
  encodeBatchRecord,
  encodeBatchSummary,
  encodeDebitResult,
  encodePsamData,
  encodePsamInitPurchaseResponse,
  encodeTotals,
  type StartupData,
  type PurchaseParams,
} from '../../../src/crypto/purse-apdu.ts';
import {
  AUTH_CURRENCY,
  BATCH_RECORD_LAYOUT,
  BatchRecordStatus,
  TxType,
  batchMac,
  computeTotals,
  deriveCardKey,
  expectedPurchaseS3Fields,
  psamAdminMac,
  purchaseS2,
  PURCHASE_S3_LAYOUT,
  purchaseS3FieldsForRecord,
  purseMac,
  purseMacVerify,
  purchaseS3Input,
  type BatchRecord,
  type PurchaseS2Fields,
} from '../../../src/crypto/purse-mac.ts';

export { PSAM_AID };

/** Records per persistent page (50 bytes each: 51,200 bytes, under the 64 KiB field limit). */
export const PSAM_PAGE_RECORDS = 1024;
/** Pages per batch bank: the largest CAPACITY is PSAM_MAX_PAGES x PSAM_PAGE_RECORDS. */
export const PSAM_MAX_PAGES = 4;
export const PSAM_MAX_CAPACITY = PSAM_PAGE_RECORDS * PSAM_MAX_PAGES;
/** Purchase master table entry: BIN (3, BCD) || ALG || KVER || key (16). */
const MASTER_ENTRY = 21;
export const PSAM_MAX_MASTERS = 64;
export const PSAM_MAX_BLOCKED = 1024;
export const PSAM_MAX_CURRENCIES = 64;
/** READ LIST: entries per response. */
const LIST_CHUNK = { [ListSel.BLOCKED_CARDS]: 30, [ListSel.CURRENCIES]: 80 } as const;
const RECORD = BATCH_RECORD_LAYOUT.length;
const KNOWN_INS: ReadonlySet<number> = new Set(Object.values(PsamIns));
const offsetOf = (name: string): number => {
  let off = 0;
  for (const f of BATCH_RECORD_LAYOUT.fields) {
    if (f.name === name) return off;
    off += f.length;
  }
  throw new Error(`batch record has no field ${name}`);
};
const RECORD_STATUS_OFFSET = offsetOf('status');
const STARTUP_CID_OFFSET = STARTUP_LAYOUT.fields.slice(0, STARTUP_LAYOUT.fields.findIndex((f) => f.name === 'cardId')).reduce((n, f) => n + f.length, 0);
const RECORD_S3_OFFSET = offsetOf('s3');
const CONFIRMED_BYTE = Buffer.from([BatchRecordStatus.CONFIRMED]);
const U32_MAX = 0xffffffff;

export interface PsamPurchaseMaster {
  /** First 6 digits of the card ids this master serves. */
  bin: string;
  alg: number;
  keyVersion: number;
  /** The issuer's purchase master key (16 bytes). */
  key: Uint8Array;
}

/** Everything personalisation writes into a PSAM (before it is installed on a card). */
export interface PsamPersonalization {
  psamId: string;
  /** Suite of the PSAM's own batch and admin keys. */
  alg: number;
  batchKeyVersion: number;
  adminKeyVersion: number;
  /** The PSAM's batch and admin keys (already diversified by PSAMID from the acquirer masters). */
  batchKey: Uint8Array;
  adminKey: Uint8Array;
  purchaseMasters: readonly PsamPurchaseMaster[];
  /** Records a batch can hold (1..PSAM_MAX_CAPACITY). */
  capacity: number;
  acceptedCurrencies?: readonly { currency: number; exponent: number }[];
  blockedCards?: readonly string[];
  /** First PSAM transaction number (default 1). */
  nextTxn?: number;
  /** Number of the first open batch (default 1). */
  batchNumber?: number;
}

function sortedEntries(entries: Buffer[], size: number): Buffer {
  const uniq = new Map(entries.map((e) => [e.toString('hex'), e]));
  const out = [...uniq.values()].sort(Buffer.compare);
  return Buffer.concat(out, out.length * size);
}

/** Buffer.compare of table[offset, offset + size) with key (key.length === size here). */
function compareEntry(table: Buffer, offset: number, size: number, key: Uint8Array): number {
  const n = Math.min(size, key.length);
  for (let i = 0; i < n; i++) {
    const d = table[offset + i]! - key[i]!;
    if (d !== 0) return d < 0 ? -1 : 1;
  }
  return size === key.length ? 0 : size < key.length ? -1 : 1;
}

/** Binary search of a sorted table of fixed-size entries; returns the index or -(insertion point) - 1. */
function findEntry(table: Buffer, size: number, key: Uint8Array): number {
  let lo = 0;
  let hi = table.length / size - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const c = compareEntry(table, mid * size, size, key);
    if (c === 0) return mid;
    if (c < 0) lo = mid + 1;
    else hi = mid - 1;
  }
  return -lo - 1;
}

export class PsamApplet extends Applet {
  static override typeName = 'psam';

  // --- identity and keys
  readonly personalized = this.store.flag('personalized', false);
  readonly psamId = this.store.bytes('psamId', 8);
  readonly alg = this.store.number('alg', 0);
  readonly batchKeyVersion = this.store.number('kverB', 0);
  readonly adminKeyVersion = this.store.number('kverM', 0);
  readonly batchKey = this.store.bytes('batchKey', 16);
  readonly adminKey = this.store.bytes('adminKey', 16);
  /** Purchase master table (MASTER_ENTRY bytes each). */
  readonly masters = this.store.bytes('masters', 0, { maxLength: PSAM_MAX_MASTERS * MASTER_ENTRY });

  // --- counters and batches
  readonly nextTxn = this.store.number('nextTxn', 1);
  readonly batchNumber = this.store.number('batchNo', 1);
  readonly capacity = this.store.number('capacity', 0);
  /** Which bank (0/1) holds the open batch; the other holds the closed batch, if any. */
  readonly openBank = this.store.number('openBank', 0);
  readonly recordCount = this.store.number('nrec', 0);
  readonly closedBatchNumber = this.store.number('closedNo', 0);
  readonly closedRecordCount = this.store.number('closedNrec', 0);
  readonly closedMac = this.store.bytes('closedMac', 8);
  /** banks[b][page]: the records of one batch, PSAM_PAGE_RECORDS x 50 bytes per page. */
  readonly banks: PersistentBytes[][] = [0, 1].map((b) =>
    Array.from({ length: PSAM_MAX_PAGES }, (_, p) => this.store.bytes(`bank${b}.p${p}`, 0, { maxLength: PSAM_PAGE_RECORDS * RECORD })),
  );

  // --- lists (sorted ascending)
  readonly blocked = this.store.bytes('blocked', 0, { maxLength: PSAM_MAX_BLOCKED * 8 });
  readonly currencies = this.store.bytes('currencies', 0, { maxLength: PSAM_MAX_CURRENCIES * 3 });

  // --- transient: the GET CHALLENGE value, single use
  private readonly challenge = this.transientBytes(8, 'reset');
  private readonly challengeValid = this.transientNumber('reset');
  /** RAM cache of the last derived card purchase key (INITIALIZE PURCHASE derives it, VERIFY S3 reuses it). */
  private lastKey: { id: string; key: Buffer } | undefined;
  // --- transient: the expected S3 of the last INITIALIZE PURCHASE with its MAC input and key, so that the
  // VERIFY S3 that follows it compares instead of computing the same MAC again (cleared on deselect and reset)
  private readonly s3MemoValid = this.transientNumber('deselect');
  private readonly s3MemoAlg = this.transientNumber('deselect');
  private readonly s3MemoKey = this.transientBytes(16, 'deselect');
  private readonly s3MemoInput = this.transientBytes(PURCHASE_S3_LAYOUT.length, 'deselect');
  private readonly s3MemoMac = this.transientBytes(8, 'deselect');

  constructor(_params?: Buffer) {
    super();
  }

  /** A personalised PSAM, ready to install (`card.install(PSAM_AID, PsamApplet.personalized(p))`). */
  static personalized(p: PsamPersonalization): PsamApplet {
    const a = new PsamApplet();
    a.personalize(p);
    return a;
  }

  /** Write the personalisation data. Only before the applet is installed (a factory step, not an APDU). */
  personalize(p: PsamPersonalization): void {
    if (this.installed) throw new Error('PSAM personalisation happens before install');
    const fail = (m: string): never => {
      throw new Error(`PSAM personalisation: ${m}`);
    };
    const id = cardIdToBcd(p.psamId);
    if (!isAlgorithmId(p.alg)) fail(`unknown algorithm id ${p.alg}`);
    for (const [n, v] of [['batchKeyVersion', p.batchKeyVersion], ['adminKeyVersion', p.adminKeyVersion]] as const) {
      if (!Number.isInteger(v) || v < 0 || v > 255) fail(`${n} must be 0..255`);
    }
    if (p.batchKey.length !== 16 || p.adminKey.length !== 16) fail('batch and admin keys must be 16 bytes');
    if (!Number.isInteger(p.capacity) || p.capacity < 1 || p.capacity > PSAM_MAX_CAPACITY) fail(`capacity must be 1..${PSAM_MAX_CAPACITY}`);
    if (p.purchaseMasters.length > PSAM_MAX_MASTERS) fail(`at most ${PSAM_MAX_MASTERS} purchase masters`);
    const masters = p.purchaseMasters.map((m) => {
      if (!/^[0-9]{6}$/.test(m.bin)) fail(`master BIN must be 6 digits, got '${m.bin}'`);
      if (!isAlgorithmId(m.alg)) fail(`master for BIN ${m.bin}: unknown algorithm id ${m.alg}`);
      if (!Number.isInteger(m.keyVersion) || m.keyVersion < 0 || m.keyVersion > 255) fail('master key version must be 0..255');
      if (m.key.length !== 16) fail('master keys must be 16 bytes');
      return Buffer.concat([Buffer.from(m.bin, 'hex'), Buffer.from([m.alg, m.keyVersion]), Buffer.from(m.key)]);
    });
    const blocked = (p.blockedCards ?? []).map((c) => cardIdToBcd(c));
    if (blocked.length > PSAM_MAX_BLOCKED) fail(`at most ${PSAM_MAX_BLOCKED} blocked cards`);
    const curs = (p.acceptedCurrencies ?? []).map((c) => {
      if (!Number.isInteger(c.exponent) || c.exponent < 0 || c.exponent > 255) fail('currency exponent must be 0..255');
      return Buffer.concat([encodeCurrency(c.currency), Buffer.from([c.exponent])]);
    });
    if (curs.length > PSAM_MAX_CURRENCIES) fail(`at most ${PSAM_MAX_CURRENCIES} accepted currencies`);
    const nextTxn = p.nextTxn ?? 1;
    const batchNo = p.batchNumber ?? 1;
    if (!Number.isInteger(nextTxn) || nextTxn < 1 || nextTxn > U32_MAX) fail('nextTxn must be 1..FFFFFFFF');
    if (!Number.isInteger(batchNo) || batchNo < 1 || batchNo > U32_MAX) fail('batchNumber must be 1..FFFFFFFF');

    this.psamId.set(id);
    this.alg.set(p.alg);
    this.batchKeyVersion.set(p.batchKeyVersion);
    this.adminKeyVersion.set(p.adminKeyVersion);
    this.batchKey.set(p.batchKey);
    this.adminKey.set(p.adminKey);
    this.masters.set(Buffer.concat(masters));
    this.capacity.set(p.capacity);
    this.nextTxn.set(nextTxn);
    this.batchNumber.set(batchNo);
    this.openBank.set(0);
    this.recordCount.set(0);
    this.closedBatchNumber.set(0);
    this.closedRecordCount.set(0);
    this.blocked.set(sortedEntries(blocked, 8));
    this.currencies.set(sortedEntries(curs, 3));
    for (const bank of this.banks) {
      bank.forEach((page, i) => page.set(Buffer.alloc(Math.max(0, Math.min(PSAM_PAGE_RECORDS, p.capacity - i * PSAM_PAGE_RECORDS)) * RECORD)));
    }
    this.personalized.set(true);
  }

  override fci(): Uint8Array {
    const aid = this.system.aid;
    return Buffer.concat([Buffer.from([0x6f, aid.length + 7, 0x84, aid.length]), aid, Buffer.from([0xa5, 0x03, 0x80, 0x01, 0x01])]);
  }

  process(apdu: ApduContext): Uint8Array | void {
    // The challenge is single use: any command consumes it (GET CHALLENGE then makes a new one).
    let rnd: Buffer | null = null;
    if (this.challengeValid.value) {
      rnd = Buffer.from(this.challenge);
      this.challengeValid.value = 0;
      this.challenge.fill(0);
    }
    if (apdu.cla !== CLA_PROPRIETARY && apdu.cla !== CLA_ISO) throw new IsoException(SW.CLA_NOT_SUPPORTED);
    if (apdu.ins === PsamIns.GET_CHALLENGE) {
      apdu.requireCla(CLA_ISO);
      return this.getChallenge(apdu);
    }
    apdu.requireCla(CLA_PROPRIETARY);
    if (!this.isKnownIns(apdu.ins)) throw new IsoException(SW.INS_NOT_SUPPORTED);
    if (!this.personalized.get()) throw new IsoException(Sw.CONDITIONS_NOT_SATISFIED);
    try {
      switch (apdu.ins) {
        case PsamIns.READ_PSAM_DATA:
          return this.readPsamData(apdu);
        case PsamIns.INITIALIZE_PURCHASE:
          return this.initializePurchase(apdu);
        case PsamIns.VERIFY_S3:
          return this.verifyS3(apdu);
        case PsamIns.READ_BATCH_RECORD:
          return this.readBatchRecord(apdu);
        case PsamIns.CLOSE_BATCH:
          return this.closeBatch(apdu);
        case PsamIns.PURGE_BATCH:
          return this.purgeBatch(apdu, rnd);
        case PsamIns.READ_TOTALS:
          return this.readTotals(apdu);
        case PsamIns.MANAGE_BLOCKED_LIST:
          return this.manageBlockedList(apdu, rnd);
        case PsamIns.MANAGE_CURRENCIES:
          return this.manageCurrencies(apdu, rnd);
        case PsamIns.READ_LIST:
          return this.readList(apdu);
      }
    } catch (e) {
      // A field that does not decode (BCD digit A-F, impossible date or time) is 6A80; nothing was written.
      if (e instanceof CryptoError) throw new IsoException(Sw.WRONG_DATA);
      throw e;
    }
    throw new IsoException(SW.INS_NOT_SUPPORTED);
  }

  private isKnownIns(ins: number): boolean {
    return ins !== PsamIns.GET_CHALLENGE && KNOWN_INS.has(ins);
  }

  // ---------------------------------------------------------------------------------------------
  // Commands

  private getChallenge(apdu: ApduContext): Buffer {
    apdu.requireP1P2(0, 0);
    if (apdu.lc !== 0 || apdu.le !== 8) throw new IsoException(SW.WRONG_LENGTH);
    this.system.randomFill(this.challenge);
    this.challengeValid.value = 1;
    return Buffer.from(this.challenge);
  }

  private readPsamData(apdu: ApduContext): Buffer {
    apdu.requireP1P2(0, 0);
    apdu.requireLc(0);
    return encodePsamData({
      psamId: bcdToCardId(this.psamId.view()),
      alg: this.alg.get(),
      batchKeyVersion: this.batchKeyVersion.get(),
      adminKeyVersion: this.adminKeyVersion.get(),
      nextTxn: Math.min(this.nextTxn.get(), U32_MAX),
      batchNumber: this.batchNumber.get(),
      recordCount: this.recordCount.get(),
      capacity: this.capacity.get(),
      closedBatchNumber: this.closedBatchNumber.get(),
      closedRecordCount: this.closedBatchNumber.get() ? this.closedRecordCount.get() : 0,
      pending: this.pendingCount(),
    });
  }

  private initializePurchase(apdu: ApduContext): Buffer {
    if (apdu.p1 !== PsamInitP1.NORMAL && apdu.p1 !== PsamInitP1.EARLY_RELEASE) throw new IsoException(SW.INCORRECT_P1P2);
    apdu.requireP1P2(undefined, 0);
    // 1. length, field encodings, TXTYPE
    apdu.requireLc(50);
    const { startup: s, params: q } = decodePsamInitPurchase(apdu.data);
    if (q.txType !== TxType.PURCHASE && q.txType !== TxType.AUTHENTICATION && q.txType !== TxType.POINTS_DEBIT) throw new IsoException(Sw.WRONG_DATA);
    // 2. room in the log
    const n = this.recordCount.get();
    if (n >= this.capacity.get()) throw new IsoException(Sw.LOG_FULL);
    // 3. the card's algorithm
    if (!isAlgorithmId(s.alg)) throw new IsoException(Sw.UNKNOWN_MASTER_KEY);
    // 4. blocked-card list
    // (the CID bytes of the start-up data, already checked to be BCD by the decode above)
    if (findEntry(this.blocked.view(), 8, apdu.data.subarray(STARTUP_CID_OFFSET, STARTUP_CID_OFFSET + 8)) >= 0) throw new IsoException(Sw.CARD_ON_BLOCKED_LIST);
    // 5. purse status
    if (s.status !== PurseStatus.ACTIVE) throw new IsoException(Sw.PURSE_BLOCKED);
    // 6. amount rules
    this.checkAmount(q);
    // 7. currency
    this.checkCurrency(s, q);
    // 8. expiry (DATE is the last valid day or earlier)
    if (q.date > s.expiry) throw new IsoException(Sw.CARD_EXPIRED);
    // 9. value
    if (q.amount > s.balance) throw new IsoException(Sw.INSUFFICIENT_VALUE);
    // 10. counter
    if (s.counter >= U32_MAX) throw new IsoException(Sw.COUNTER_EXHAUSTED);
    // 11. the purchase master for this BIN / ALG / KVER
    const master = this.findMaster(s.cardId.slice(0, 6), s.alg, s.keyVersion);
    if (!master) throw new IsoException(Sw.UNKNOWN_MASTER_KEY);
    const txn = this.nextTxn.get();
    if (txn > U32_MAX) throw new IsoException(Sw.CONDITIONS_NOT_SATISFIED); // transaction numbers used up: never reuse one

    const psamId = bcdToCardId(this.psamId.view());
    const key = this.cardKey(master, s.cardId, s.alg, s.keyVersion);
    const s2Fields: PurchaseS2Fields = {
      txType: q.txType,
      alg: s.alg,
      keyVersion: s.keyVersion,
      cardId: s.cardId,
      counter: s.counter,
      psamId,
      psamTxn: txn,
      amount: q.amount,
      currency: q.currency,
      exponent: q.exponent,
      date: q.date,
      time: q.time,
      location: q.location,
    };
    const s2 = purchaseS2(key, s2Fields);
    const s3Fields = expectedPurchaseS3Fields(s2Fields, s.authMode);
    const s3Input = purchaseS3Input(s3Fields);
    const expectedS3 = purseMac(s.alg, key, s3Input);
    const record = encodeBatchRecord({
      psamTxn: txn,
      txType: q.txType,
      status: BatchRecordStatus.UNCONFIRMED,
      alg: s.alg,
      keyVersion: s.keyVersion,
      cardId: s.cardId,
      newCounter: s3Fields.newCounter,
      amount: q.amount,
      currency: q.currency,
      exponent: q.exponent,
      date: q.date,
      time: q.time,
      location: q.location,
      s3: expectedS3,
    });
    // 12. one transaction: the transaction number and the unconfirmed record, before S2 leaves the PSAM.
    const { page, offset } = this.slot(this.openBank.get(), n);
    this.system.atomically(() => {
      this.nextTxn.set(txn + 1);
      page.write(offset, record);
      this.recordCount.set(n + 1);
    });
    this.rememberS3(s.alg, key, s3Input, expectedS3);
    const debit = { psamId, psamTxn: txn, amount: q.amount, currency: q.currency, exponent: q.exponent, date: q.date, time: q.time, location: q.location, s2 };
    return encodePsamInitPurchaseResponse(debit, apdu.p1 === PsamInitP1.EARLY_RELEASE ? expectedS3 : undefined);
  }

  private checkAmount(q: PurchaseParams): void {
    const ok =
      q.txType === TxType.AUTHENTICATION ? q.amount === 0 && q.currency === AUTH_CURRENCY && q.exponent === 0 : q.amount >= 1;
    if (!ok) throw new IsoException(Sw.AMOUNT_INVALID);
  }

  private checkCurrency(s: StartupData, q: PurchaseParams): void {
    if (q.txType === TxType.PURCHASE) {
      if (q.currency !== s.currency || q.exponent !== s.exponent) throw new IsoException(Sw.CURRENCY_MISMATCH);
      if (!this.accepts(q.currency, q.exponent)) throw new IsoException(Sw.CURRENCY_NOT_ACCEPTED);
    } else if (q.txType === TxType.POINTS_DEBIT) {
      if (q.currency !== s.currency || q.exponent !== 0) throw new IsoException(Sw.CURRENCY_MISMATCH);
      if (!this.accepts(q.currency, 0)) throw new IsoException(Sw.CURRENCY_NOT_ACCEPTED);
    }
  }

  private accepts(currency: number, exponent: number): boolean {
    const key = Buffer.allocUnsafe(3);
    key[0] = ((Math.floor(currency / 1000) % 10) << 4) | (Math.floor(currency / 100) % 10);
    key[1] = ((Math.floor(currency / 10) % 10) << 4) | (currency % 10);
    key[2] = exponent;
    return findEntry(this.currencies.view(), 3, key) >= 0;
  }

  private findMaster(bin: string, alg: number, keyVersion: number): Buffer | undefined {
    const t = this.masters.view();
    const b = Buffer.from(bin, 'hex');
    for (let off = 0; off + MASTER_ENTRY <= t.length; off += MASTER_ENTRY) {
      if (t[off + 3] === alg && t[off + 4] === keyVersion && t[off] === b[0] && t[off + 1] === b[1] && t[off + 2] === b[2] && b.length === 3) {
        const key = Buffer.allocUnsafe(16);
        for (let i = 0; i < 16; i++) key[i] = t[off + 5 + i]!;
        return key;
      }
    }
    return undefined;
  }

  private verifyS3(apdu: ApduContext): Buffer {
    apdu.requireP1P2(0, 0);
    apdu.requireLc(17);
    const v = decodeVerifyS3Command(apdu.data);
    const found = this.findOpenRecord(v.psamTxn);
    if (!found) throw new IsoException(Sw.NO_SUCH_TRANSACTION);
    const { record: r, page, offset } = found;
    if (v.newCounter !== r.newCounter) throw new IsoException(Sw.S3_INVALID);
    const master = this.findMaster(r.cardId.slice(0, 6), r.alg, r.keyVersion);
    if (!master) throw new IsoException(Sw.UNKNOWN_MASTER_KEY);
    const psamId = bcdToCardId(this.psamId.view());
    const key = this.cardKey(master, r.cardId, r.alg, r.keyVersion);
    const s3Input = purchaseS3Input(purchaseS3FieldsForRecord(r, psamId, v.cvr));
    const remembered = this.rememberedS3(r.alg, key, s3Input);
    const s3Ok = remembered ? v.s3.length === remembered.length && timingSafeEqual(remembered, v.s3) : purseMacVerify(r.alg, key, s3Input, v.s3);
    if (!s3Ok) throw new IsoException(Sw.S3_INVALID);
    if (r.status === BatchRecordStatus.CONFIRMED) {
      // Idempotent for the S3 already confirmed; any other S3 does not confirm this record again.
      if (!timingSafeEqual(r.s3, v.s3)) throw new IsoException(Sw.S3_INVALID);
    } else {
      // One transaction: STATUS := 01 and S3 := the card's S3 (record offsets 5 and 42).
      this.system.atomically(() => {
        page.write(offset + RECORD_STATUS_OFFSET, CONFIRMED_BYTE);
        page.write(offset + RECORD_S3_OFFSET, v.s3);
      });
    }
    return encodeDebitResult({
      psamId,
      psamTxn: r.psamTxn,
      cardId: r.cardId,
      newCounter: r.newCounter,
      txType: r.txType,
      amount: r.amount,
      currency: r.currency,
      exponent: r.exponent,
      status: BatchRecordStatus.CONFIRMED,
    });
  }

  private readBatchRecord(apdu: ApduContext): Buffer {
    if (apdu.p1 !== BatchSel.OPEN && apdu.p1 !== BatchSel.CLOSED) throw new IsoException(SW.INCORRECT_P1P2);
    apdu.requireP1P2(undefined, 0);
    apdu.requireLc(2);
    const { bank, count } = this.batchSel(apdu.p1);
    const idx = apdu.data.readUInt16BE(0);
    if (idx >= count) throw new IsoException(Sw.NOT_FOUND);
    return Buffer.from(this.recordBytes(bank, idx));
  }

  private closeBatch(apdu: ApduContext): Buffer {
    if (apdu.p1 !== CloseP1.CLOSE && apdu.p1 !== CloseP1.REREAD) throw new IsoException(SW.INCORRECT_P1P2);
    apdu.requireP1P2(undefined, 0);
    apdu.requireLc(0);
    const psamId = bcdToCardId(this.psamId.view());
    if (apdu.p1 === CloseP1.REREAD) {
      if (!this.closedBatchNumber.get()) throw new IsoException(Sw.NO_CLOSED_BATCH);
      const records = this.records(1 - this.openBank.get(), this.closedRecordCount.get());
      return encodeBatchSummary({ psamId, batchNumber: this.closedBatchNumber.get(), recordCount: records.length, totals: computeTotals(records), mac: this.closedMac.get() });
    }
    if (this.closedBatchNumber.get()) throw new IsoException(Sw.CLOSED_BATCH_PENDING);
    const bank = this.openBank.get();
    const batchNo = this.batchNumber.get();
    if (batchNo >= U32_MAX) throw new IsoException(Sw.CONDITIONS_NOT_SATISFIED);
    const records = this.records(bank, this.recordCount.get());
    const totals = computeTotals(records);
    const mac = batchMac(this.batchKey.view(), { alg: this.alg.get(), keyVersion: this.batchKeyVersion.get(), psamId, batchNumber: batchNo }, records, totals);
    this.system.atomically(() => {
      this.closedBatchNumber.set(batchNo);
      this.closedRecordCount.set(records.length);
      this.closedMac.set(mac);
      this.openBank.set(1 - bank);
      this.recordCount.set(0);
      this.batchNumber.set(batchNo + 1);
    });
    return encodeBatchSummary({ psamId, batchNumber: batchNo, recordCount: records.length, totals, mac });
  }

  private purgeBatch(apdu: ApduContext, rnd: Buffer | null): void {
    apdu.requireP1P2(0, 0);
    if (!rnd) throw new IsoException(Sw.CONDITIONS_NOT_SATISFIED);
    apdu.requireLc(12);
    this.checkAdminMac(apdu, rnd);
    const closed = this.closedBatchNumber.get();
    if (!closed) throw new IsoException(Sw.NO_CLOSED_BATCH);
    if (apdu.data.readUInt32BE(0) !== closed) throw new IsoException(Sw.WRONG_DATA);
    this.system.atomically(() => {
      this.closedBatchNumber.set(0);
      this.closedRecordCount.set(0);
    });
  }

  private readTotals(apdu: ApduContext): Buffer {
    if (apdu.p1 !== BatchSel.OPEN && apdu.p1 !== BatchSel.CLOSED) throw new IsoException(SW.INCORRECT_P1P2);
    apdu.requireP1P2(undefined, 0);
    apdu.requireLc(0);
    const { bank, count } = this.batchSel(apdu.p1);
    return encodeTotals(computeTotals(this.records(bank, count)));
  }

  private manageBlockedList(apdu: ApduContext, rnd: Buffer | null): void {
    this.manageList(apdu, rnd, this.blocked, 8, PSAM_MAX_BLOCKED, (entry) => cardIdToBcd(entry));
  }

  private manageCurrencies(apdu: ApduContext, rnd: Buffer | null): void {
    this.manageList(apdu, rnd, this.currencies, 3, PSAM_MAX_CURRENCIES, (entry) => {
      decodeCurrency(entry.subarray(0, 2)); // BCD check (6A80)
      return Buffer.from(entry);
    });
  }

  /** MANAGE BLOCKED LIST / MANAGE CURRENCIES: admin-MACed add, remove, clear on a sorted table. */
  private manageList(apdu: ApduContext, rnd: Buffer | null, table: PersistentBytes, size: number, max: number, check: (entry: Buffer) => Buffer): void {
    if (apdu.p1 !== ListOp.ADD && apdu.p1 !== ListOp.REMOVE && apdu.p1 !== ListOp.CLEAR) throw new IsoException(SW.INCORRECT_P1P2);
    apdu.requireP1P2(undefined, 0);
    if (!rnd) throw new IsoException(Sw.CONDITIONS_NOT_SATISFIED);
    apdu.requireLc(apdu.p1 === ListOp.CLEAR ? 8 : size + 8);
    this.checkAdminMac(apdu, rnd);
    if (apdu.p1 === ListOp.CLEAR) {
      this.system.atomically(() => table.set(Buffer.alloc(0)));
      return;
    }
    const entry = check(apdu.data.subarray(0, size));
    const t = table.view();
    const at = findEntry(t, size, entry);
    if (apdu.p1 === ListOp.ADD) {
      if (at >= 0) return; // already present: 9000, nothing changes
      if (t.length / size >= max) throw new IsoException(Sw.MEMORY_FULL);
      const ins = -at - 1;
      const next = Buffer.concat([t.subarray(0, ins * size), entry, t.subarray(ins * size)]);
      this.system.atomically(() => table.set(next));
    } else {
      if (at < 0) throw new IsoException(Sw.NOT_FOUND);
      const next = Buffer.concat([t.subarray(0, at * size), t.subarray((at + 1) * size)]);
      this.system.atomically(() => table.set(next));
    }
  }

  private readList(apdu: ApduContext): Buffer {
    if (apdu.p1 !== ListSel.BLOCKED_CARDS && apdu.p1 !== ListSel.CURRENCIES) throw new IsoException(SW.INCORRECT_P1P2);
    apdu.requireP1P2(undefined, 0);
    apdu.requireLc(2);
    const size = apdu.p1 === ListSel.BLOCKED_CARDS ? 8 : 3;
    const t = (apdu.p1 === ListSel.BLOCKED_CARDS ? this.blocked : this.currencies).view();
    const total = t.length / size;
    const idx = apdu.data.readUInt16BE(0);
    if (idx > total) throw new IsoException(Sw.NOT_FOUND);
    const n = Math.min(LIST_CHUNK[apdu.p1], total - idx);
    const head = Buffer.alloc(2);
    head.writeUInt16BE(total, 0);
    return Buffer.concat([head, t.subarray(idx * size, (idx + n) * size)]);
  }

  // ---------------------------------------------------------------------------------------------
  // Helpers

  /** Keep the expected S3 just computed (transient memory) for the VERIFY S3 of the same transaction. */
  private rememberS3(alg: number, key: Buffer, input: Buffer, mac: Buffer): void {
    if (key.length !== 16 || input.length !== this.s3MemoInput.length || mac.length !== 8) return;
    this.s3MemoAlg.value = alg;
    this.s3MemoKey.set(key);
    this.s3MemoInput.set(input);
    this.s3MemoMac.set(mac);
    this.s3MemoValid.value = 1;
  }

  /**
   * The MAC remembered for exactly this algorithm, key and MAC input (the S3 the card must produce), or
   * undefined: then the caller computes it. A pure memo: the MAC is a function of these three alone.
   */
  private rememberedS3(alg: number, key: Buffer, input: Buffer): Buffer | undefined {
    if (this.s3MemoValid.value !== 1 || this.s3MemoAlg.value !== alg) return undefined;
    if (!key.equals(this.s3MemoKey) || !input.equals(this.s3MemoInput)) return undefined;
    return this.s3MemoMac;
  }

  /** The card's purchase key, derived from the master by card id (the last one is kept in RAM). */
  private cardKey(master: Buffer, cardId: string, alg: number, keyVersion: number): Buffer {
    const id = `${cardId}:${alg}:${keyVersion}`;
    if (this.lastKey?.id === id) return this.lastKey.key;
    const key = deriveCardKey(master, cardId, alg);
    this.lastKey = { id, key };
    return key;
  }

  private checkAdminMac(apdu: ApduContext, rnd: Buffer): void {
    const data = apdu.data.subarray(0, apdu.lc - 8);
    const mac = apdu.data.subarray(apdu.lc - 8);
    const fields = {
      alg: this.alg.get(),
      keyVersion: this.adminKeyVersion.get(),
      psamId: bcdToCardId(this.psamId.view()),
      challenge: rnd,
      ins: apdu.ins,
      p1: apdu.p1,
      p2: apdu.p2,
      data: Buffer.from(data),
    };
    const expected = psamAdminMac(this.adminKey.view(), fields);
    if (!timingSafeEqual(expected, mac)) throw new IsoException(Sw.SECURITY_NOT_SATISFIED);
  }

  private batchSel(p1: number): { bank: number; count: number } {
    if (p1 === BatchSel.OPEN) return { bank: this.openBank.get(), count: this.recordCount.get() };
    if (!this.closedBatchNumber.get()) throw new IsoException(Sw.NO_CLOSED_BATCH);
    return { bank: 1 - this.openBank.get(), count: this.closedRecordCount.get() };
  }

  private slot(bank: number, idx: number): { page: PersistentBytes; offset: number } {
    const page = this.banks[bank]![Math.floor(idx / PSAM_PAGE_RECORDS)]!;
    return { page, offset: (idx % PSAM_PAGE_RECORDS) * RECORD };
  }

  private recordBytes(bank: number, idx: number): Buffer {
    const { page, offset } = this.slot(bank, idx);
    return page.view().subarray(offset, offset + RECORD);
  }

  private records(bank: number, count: number): BatchRecord[] {
    const out: BatchRecord[] = [];
    for (let i = 0; i < count; i++) out.push(decodeBatchRecord(this.recordBytes(bank, i)));
    return out;
  }

  private pendingCount(): number {
    const bank = this.openBank.get();
    let n = 0;
    for (let i = 0, count = this.recordCount.get(); i < count; i++) if (this.recordBytes(bank, i)[RECORD_STATUS_OFFSET] === BatchRecordStatus.UNCONFIRMED) n++;
    return n;
  }

  /** The open-batch record of a PSAM transaction: records are consecutive in PSAMTXN within a batch. */
  private findOpenRecord(psamTxn: number): { record: BatchRecord; page: PersistentBytes; offset: number } | undefined {
    const n = this.recordCount.get();
    if (n === 0) return undefined;
    const bank = this.openBank.get();
    const first = this.recordBytes(bank, 0).readUInt32BE(0);
    const idx = psamTxn - first;
    if (idx < 0 || idx >= n) return undefined;
    const bytes = this.recordBytes(bank, idx);
    if (bytes.readUInt32BE(0) !== psamTxn) return undefined;
    const { page, offset } = this.slot(bank, idx);
    return { record: decodeBatchRecord(bytes), page, offset };
  }
}
