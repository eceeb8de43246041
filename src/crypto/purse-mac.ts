// MAC inputs of the stored-value purse (IEP) and the purchase SAM (PSAM), byte by byte: the single
// definition that the purse applet, the PSAM applet and the HSM bridge all use.
// Specification and vectors: docs/purse-applet.md, docs/psam-applet.md.
//
// Every MAC input starts with a tag byte naming the MAC (domain separation), then the algorithm id
// and key version that picked the key, then the fields. MAC = the suite MAC of the card's (or the
// PSAM's) algorithm id over the input: 3DES suite = ISO 9797-1 alg 3 + padding method 2, 8 bytes;
// AES suite = CMAC, leftmost 8 bytes (src/crypto/suites.ts).

import { cardIdToBcd, type CardIdInput } from './bcd.ts';
import { diversifyCardKey } from './diversify.ts';
import { CryptoError } from './errors.ts';
import { encodeLayout, layout, layoutFields, type Layout, type LayoutValues } from './layout.ts';
import { suiteFor, suiteMac, suiteVerify } from './suites.ts';

// ---------------------------------------------------------------------------------------------
// Constants

/** First byte of each MAC input. */
export const MacTag = {
  PURCHASE_S2: 0x21,
  PURCHASE_S3: 0x23,
  LOAD_S1: 0x41,
  LOAD_S2: 0x42,
  LOAD_S3: 0x43,
  UPDATE_PARAMETERS: 0x61,
  BATCH: 0x71,
  PSAM_ADMIN: 0x72,
} as const;

/** Purchase-side transaction type (DEBIT P1, S2/S3 byte 1, batch records). */
export const TxType = {
  /** Monetary purchase: amount > 0 in the purse currency. */
  PURCHASE: 0x01,
  /** Zero-amount authentication (seed 003 FIG. 16): amount 0, currency AUTH_CURRENCY, exponent 0; balance unchanged, counter + 1. */
  AUTHENTICATION: 0x02,
  /** Loyalty points redemption from the points purse: amount = points, currency = points programme. */
  POINTS_DEBIT: 0x03,
} as const;
export type TxTypeValue = (typeof TxType)[keyof typeof TxType];

/** Load-side type (INITIALIZE FOR LOAD P1/P2 -> S1/S2/S3 byte 1). Bit 8 set = zero-value status enquiry. */
export const LoadType = {
  LOAD: 0x01,
  POINTS_LOAD: 0x02,
  /** Zero-value load request for failed-load recovery (monetary purse). */
  ENQUIRY: 0x81,
  /** Zero-value load request for failed-load recovery (points purse). */
  POINTS_ENQUIRY: 0x82,
} as const;
export type LoadTypeValue = (typeof LoadType)[keyof typeof LoadType];

/** ISO 4217 "999": no currency involved. The special authentication currency of seed 003. */
export const AUTH_CURRENCY = 999;

/** Purchase S3 result byte: S3 exists only for a completed debit, so it is always DEBITED. */
export const PurchaseResult = { DEBITED: 0x00 } as const;

/** Load S3 result byte (CREDIT FOR LOAD). Only CREDITED changes the balance and the counter. */
export const LoadResult = {
  CREDITED: 0x00,
  S2_INVALID: 0x01,
  MAX_BALANCE_EXCEEDED: 0x02,
  CARD_EXPIRED: 0x03,
  PURSE_BLOCKED: 0x04,
} as const;
export type LoadResultValue = (typeof LoadResult)[keyof typeof LoadResult];

/** Authentication-mode byte (start-up data AUTHMODE; purchase S3 CVR). */
export const AuthMode = {
  /** Cardholder PIN must be verified (VERIFY) in this session before INITIALIZE FOR PURCHASE. */
  PIN_REQUIRED: 0x01,
  /** The PIN was verified in this session. */
  PIN_VERIFIED: 0x02,
  /** The card has a loyalty points purse. */
  POINTS_PURSE: 0x04,
} as const;

/** UPDATE PARAMETERS flags byte. */
export const UpdateFlags = {
  SET_MAX_BALANCE: 0x01,
  SET_EXPIRY: 0x02,
  /** Currency and exponent; only with a zero balance. */
  SET_CURRENCY: 0x04,
  RESET_PIN_TRY_COUNTER: 0x08,
  BLOCK_PURSE: 0x10,
  UNBLOCK_PURSE: 0x20,
} as const;
export const UPDATE_FLAGS_MASK = 0x3f;

/** Which card key (or PSAM key) each MAC is computed with. */
export type PurseKeyUsage = 'purchase' | 'load' | 'update' | 'batch' | 'admin';

// ---------------------------------------------------------------------------------------------
// Layouts

const common = {
  alg: ['alg', 'u8', 'ALG', 'algorithm id of the card (0x01 3DES, 0x02 AES)'],
  cid: ['cardId', 'id16', 'CID', 'card id: BIN (6) + purse number (10)'],
  amt: ['amount', 'u32', 'AMT', 'amount in minor units (points for points transactions)'],
  cur: ['currency', 'currency', 'CUR', 'ISO 4217 numeric currency; 0999 = authentication; points programme for points'],
  exp: ['exponent', 'u8', 'EXP', 'currency exponent (0 for authentication and points)'],
  date: ['date', 'date', 'DATE', 'transaction date'],
  time: ['time', 'time', 'TIME', 'transaction time'],
} as const;

export const PURCHASE_S2_LAYOUT = layout('purchaseS2', [
  ['tag', 'const', 'TAG', 'purchase S2', MacTag.PURCHASE_S2],
  ['txType', 'u8', 'TXTYPE', '01 purchase, 02 authentication, 03 points debit (= DEBIT P1)'],
  common.alg,
  ['keyVersion', 'u8', 'KVER', 'purchase key version (from start-up data)'],
  common.cid,
  ['counter', 'u32', 'CTR', 'card transaction counter before the debit (from start-up data)'],
  ['psamId', 'id16', 'PSAMID', 'PSAM identifier'],
  ['psamTxn', 'u32', 'PSAMTXN', 'PSAM transaction number'],
  common.amt,
  common.cur,
  common.exp,
  common.date,
  common.time,
  ['location', 'bytes', 'LOC', 'merchant/terminal location, opaque', 8],
]);

export const PURCHASE_S3_LAYOUT = layout('purchaseS3', [
  ['tag', 'const', 'TAG', 'purchase S3 (also the early-release expected S3)', MacTag.PURCHASE_S3],
  ['txType', 'u8', 'TXTYPE', 'as in S2'],
  common.alg,
  ['keyVersion', 'u8', 'KVER', 'purchase key version'],
  common.cid,
  ['newCounter', 'u32', 'NEWCTR', 'card transaction counter after the debit (= CTR + 1)'],
  ['psamId', 'id16', 'PSAMID', 'as in S2'],
  ['psamTxn', 'u32', 'PSAMTXN', 'as in S2'],
  common.amt,
  common.cur,
  common.exp,
  ['result', 'u8', 'RESULT', '00 = debited (the only value: no S3 without a debit)'],
  ['cvr', 'u8', 'CVR', 'AUTHMODE byte of the card at the debit (PIN required / verified)'],
]);

export const LOAD_S1_LAYOUT = layout('loadS1', [
  ['tag', 'const', 'TAG', 'load S1', MacTag.LOAD_S1],
  ['loadType', 'u8', 'LTYPE', '01 load, 02 points load, 81 / 82 zero-value enquiry'],
  common.alg,
  ['keyVersion', 'u8', 'KVER', 'load key version'],
  common.cid,
  ['counter', 'u32', 'CTR', 'card transaction counter (unchanged by INITIALIZE FOR LOAD)'],
  ['amount', 'u32', 'AMT', 'requested load amount (0 for an enquiry)'],
  ['currency', 'currency', 'CUR', 'purse currency (points: programme)'],
  common.exp,
  ['balance', 'u32', 'BAL', 'current balance (points: points balance)'],
  ['maxBalance', 'u32', 'MAXBAL', 'maximum balance (points: maximum points)'],
  ['expiry', 'date', 'EXPIRY', 'card expiry date (last valid day)'],
  ['date', 'date', 'DATE', 'date from the load request'],
  ['time', 'time', 'TIME', 'time from the load request'],
  ['loadTxnId', 'bytes', 'LTXID', 'load transaction id / issuer challenge, chosen by the load server', 8],
  ['cardChallenge', 'bytes', 'CRND', 'card random, fresh at every INITIALIZE FOR LOAD', 8],
  ['lastLoadTxnId', 'bytes', 'LASTLTXID', 'LTXID of the last CREDITED load (zeros if none)', 8],
  ['lastLoadCounter', 'u32', 'LASTLCTR', 'counter value after that credit (0 if none)'],
  ['lastLoadAmount', 'u32', 'LASTLAMT', 'amount of that credit (0 if none)'],
]);

export const LOAD_S2_LAYOUT = layout('loadS2', [
  ['tag', 'const', 'TAG', 'load S2 (issuer -> card)', MacTag.LOAD_S2],
  ['loadType', 'u8', 'LTYPE', '01 load, 02 points load (an enquiry has no S2)'],
  common.alg,
  ['keyVersion', 'u8', 'KVER', 'load key version'],
  common.cid,
  ['counter', 'u32', 'CTR', 'card counter from S1'],
  ['amount', 'u32', 'AMT', 'load amount from S1'],
  ['currency', 'currency', 'CUR', 'from S1'],
  common.exp,
  ['date', 'date', 'DATE', 'from S1'],
  ['time', 'time', 'TIME', 'from S1'],
  ['loadTxnId', 'bytes', 'LTXID', 'from S1', 8],
  ['cardChallenge', 'bytes', 'CRND', 'from S1: binds S2 to this one load session', 8],
]);

export const LOAD_S3_LAYOUT = layout('loadS3', [
  ['tag', 'const', 'TAG', 'load S3 (card -> issuer)', MacTag.LOAD_S3],
  ['loadType', 'u8', 'LTYPE', 'as in S2'],
  common.alg,
  ['keyVersion', 'u8', 'KVER', 'load key version'],
  common.cid,
  ['result', 'u8', 'RESULT', '00 credited, 01 S2 invalid, 02 max balance, 03 expired, 04 blocked'],
  ['newCounter', 'u32', 'NEWCTR', 'counter after CREDIT: CTR + 1 if credited, else CTR'],
  ['amount', 'u32', 'AMT', 'requested amount'],
  ['newBalance', 'u32', 'NEWBAL', 'balance after CREDIT'],
  ['currency', 'currency', 'CUR', 'as in S2'],
  common.exp,
  ['loadTxnId', 'bytes', 'LTXID', 'as in S2', 8],
  ['cardChallenge', 'bytes', 'CRND', 'as in S2', 8],
]);

export const UPDATE_PARAMETERS_LAYOUT = layout('updateParameters', [
  ['tag', 'const', 'TAG', 'UPDATE PARAMETERS', MacTag.UPDATE_PARAMETERS],
  common.alg,
  ['keyVersion', 'u8', 'KVER', 'update key version'],
  common.cid,
  ['counter', 'u32', 'CTR', 'card transaction counter (not changed by the update)'],
  ['challenge', 'bytes', 'RND', 'card challenge from GET CHALLENGE (single use)', 8],
  ['flags', 'u8', 'FLAGS', 'what to change: 01 max balance, 02 expiry, 04 currency, 08 reset PIN tries, 10 block, 20 unblock'],
  ['maxBalance', 'u32', 'MAXBAL', 'new maximum balance (ignored unless flag 01)'],
  ['expiry', 'date', 'EXPIRY', 'new expiry (ignored unless flag 02)'],
  ['currency', 'currency', 'CUR', 'new currency (ignored unless flag 04)'],
  ['exponent', 'u8', 'EXP', 'new exponent (ignored unless flag 04)'],
]);

export const BATCH_HEADER_LAYOUT = layout('batchHeader', [
  ['tag', 'const', 'TAG', 'PSAM batch MAC', MacTag.BATCH],
  ['alg', 'u8', 'ALG', 'algorithm id of the PSAM batch key'],
  ['keyVersion', 'u8', 'KVER', 'batch key version'],
  ['psamId', 'id16', 'PSAMID', 'PSAM identifier'],
  ['batchNumber', 'u32', 'BATCHNO', 'batch number (1, 2, ...)'],
  ['recordCount', 'u16', 'NREC', 'number of records that follow'],
]);

/** One transaction-log record of the PSAM (READ BATCH RECORD returns exactly these bytes). */
export const BATCH_RECORD_LAYOUT = layout('batchRecord', [
  ['psamTxn', 'u32', 'PSAMTXN', 'PSAM transaction number'],
  ['txType', 'u8', 'TXTYPE', '01 purchase, 02 authentication, 03 points debit'],
  ['status', 'u8', 'STATUS', '01 confirmed (S3 verified by the PSAM), 02 S2 issued, S3 not verified'],
  ['alg', 'u8', 'ALG', 'algorithm id of the card'],
  ['keyVersion', 'u8', 'KVER', 'purchase key version of the card'],
  ['cardId', 'id16', 'CID', 'card id'],
  ['newCounter', 'u32', 'NEWCTR', 'card counter after the debit (CTR + 1)'],
  ['amount', 'u32', 'AMT', 'amount'],
  ['currency', 'currency', 'CUR', 'currency / programme'],
  ['exponent', 'u8', 'EXP', 'exponent'],
  ['date', 'date', 'DATE', 'date from INITIALIZE PURCHASE'],
  ['time', 'time', 'TIME', 'time from INITIALIZE PURCHASE'],
  ['location', 'bytes', 'LOC', 'location', 8],
  ['s3', 'bytes', 'S3', 'the S3 verified (status 01) or the expected S3 (status 02)', 8],
]);

/** One totals entry: per (TXTYPE, CUR, EXP), sorted ascending by those three. */
export const TOTALS_ENTRY_LAYOUT = layout('totalsEntry', [
  ['txType', 'u8', 'TXTYPE', 'transaction type'],
  ['currency', 'currency', 'CUR', 'currency / programme'],
  ['exponent', 'u8', 'EXP', 'exponent'],
  ['count', 'u32', 'COUNT', 'number of confirmed records'],
  ['sum', 'u48', 'SUM', 'sum of confirmed amounts'],
  ['unconfirmedCount', 'u32', 'UCOUNT', 'number of unconfirmed (status 02) records'],
  ['unconfirmedSum', 'u48', 'USUM', 'sum of unconfirmed amounts'],
]);

export const PSAM_ADMIN_HEADER_LAYOUT = layout('psamAdminHeader', [
  ['tag', 'const', 'TAG', 'PSAM management command', MacTag.PSAM_ADMIN],
  ['alg', 'u8', 'ALG', 'algorithm id of the PSAM admin key'],
  ['keyVersion', 'u8', 'KVER', 'admin key version'],
  ['psamId', 'id16', 'PSAMID', 'PSAM identifier'],
  ['challenge', 'bytes', 'RND', 'PSAM challenge from GET CHALLENGE (single use)', 8],
  ['ins', 'u8', 'INS', 'INS of the command'],
  ['p1', 'u8', 'P1', 'P1 of the command'],
  ['p2', 'u8', 'P2', 'P2 of the command'],
]);

// ---------------------------------------------------------------------------------------------
// Typed fields

export type PurchaseS2Fields = LayoutValues<typeof PURCHASE_S2_LAYOUT>;

export type PurchaseS3Fields = LayoutValues<typeof PURCHASE_S3_LAYOUT>;

export type LoadS1Fields = LayoutValues<typeof LOAD_S1_LAYOUT>;

export type LoadS2Fields = LayoutValues<typeof LOAD_S2_LAYOUT>;

export type LoadS3Fields = LayoutValues<typeof LOAD_S3_LAYOUT>;

export type UpdateParametersFields = LayoutValues<typeof UPDATE_PARAMETERS_LAYOUT>;

export type BatchRecord = LayoutValues<typeof BATCH_RECORD_LAYOUT>;

export type TotalsEntry = LayoutValues<typeof TOTALS_ENTRY_LAYOUT>;

/** The batch MAC header fields but NREC, which batchMacInput counts from the records. */
export type BatchHeader = Omit<LayoutValues<typeof BATCH_HEADER_LAYOUT>, 'recordCount'>;

export type PsamAdminFields = LayoutValues<typeof PSAM_ADMIN_HEADER_LAYOUT> & {
  /** The command data without the trailing MAC. */
  data: Buffer;
};

export const BatchRecordStatus = { CONFIRMED: 0x01, UNCONFIRMED: 0x02 } as const;

// ---------------------------------------------------------------------------------------------
// MAC-input builders (pure)

function checkAlg(alg: number, what: string): void {
  try {
    suiteFor(alg);
  } catch (e) {
    throw new CryptoError('CRYPTO_FIELD', `${what}.alg: ${(e as Error).message}`);
  }
}

/** The MAC input of a layout's fields: the suite (alg) is checked, then the fields are encoded. */
const macInput =
  <L extends Layout>(l: L) =>
  (f: LayoutValues<L> & { alg: number }): Buffer => {
    checkAlg(f.alg, l.name);
    return encodeLayout(l, f);
  };

export const purchaseS2Input = macInput(PURCHASE_S2_LAYOUT);

export const purchaseS3Input = macInput(PURCHASE_S3_LAYOUT);

/**
 * The S3 a card will produce for a genuine debit of exactly the S2 transaction: what the PSAM
 * returns as the early-release "expected S3" and what it verifies the card's S3 against.
 * `cvr` = the AUTHMODE byte from the card's start-up data.
 */
export function expectedPurchaseS3Fields(s2: PurchaseS2Fields, cvr: number): PurchaseS3Fields {
  if (s2.counter >= 0xffffffff) throw new CryptoError('CRYPTO_FIELD', 'purchaseS3.newCounter: the card counter is exhausted');
  return purchaseS3Of(s2, s2.psamId, s2.counter + 1, cvr);
}

/** The PURCHASE_S3_LAYOUT record (its fields in layout order) from a purchase's S2 fields or log record. */
function purchaseS3Of(t: Omit<PurchaseS3Fields, 'psamId' | 'newCounter' | 'result' | 'cvr'>, psamId: string, newCounter: number, cvr: number): PurchaseS3Fields {
  return {
    txType: t.txType,
    alg: t.alg,
    keyVersion: t.keyVersion,
    cardId: t.cardId,
    newCounter,
    psamId,
    psamTxn: t.psamTxn,
    amount: t.amount,
    currency: t.currency,
    exponent: t.exponent,
    result: PurchaseResult.DEBITED,
    cvr,
  };
}

export const loadS1Input = macInput(LOAD_S1_LAYOUT);

export const loadS2Input = macInput(LOAD_S2_LAYOUT);

/** The S2 fields that answer an S1 (issuer side), straight from the S1 fields. */
export function loadS2FieldsFromS1(s1: LoadS1Fields): LoadS2Fields {
  return layoutFields(LOAD_S2_LAYOUT, s1);
}

export const loadS3Input = macInput(LOAD_S3_LAYOUT);

/** The S3 fields the card produces for a CREDIT FOR LOAD of the session `s2`, given its outcome. */
export function loadS3FieldsFor(s2: LoadS2Fields, result: number, newCounter: number, newBalance: number): LoadS3Fields {
  return layoutFields(LOAD_S3_LAYOUT, { ...s2, result, newCounter, newBalance });
}

export const updateParametersInput = macInput(UPDATE_PARAMETERS_LAYOUT);

export function batchRecordBytes(r: BatchRecord): Buffer {
  return encodeLayout(BATCH_RECORD_LAYOUT, r);
}

export function totalsEntryBytes(t: TotalsEntry): Buffer {
  return encodeLayout(TOTALS_ENTRY_LAYOUT, t);
}

function totalsKey(t: { txType: number; currency: number; exponent: number }): number {
  return t.txType * 0x1000000 + t.currency * 0x100 + t.exponent;
}

/**
 * Totals of a batch from its records: one entry per (TXTYPE, CUR, EXP) present, sorted ascending.
 * Confirmed records (status 01) count in COUNT/SUM, unconfirmed (02) in UCOUNT/USUM.
 */
export function computeTotals(records: readonly BatchRecord[]): TotalsEntry[] {
  const map = new Map<number, TotalsEntry>();
  for (const r of records) {
    const k = totalsKey(r);
    let t = map.get(k);
    if (!t) {
      t = { txType: r.txType, currency: r.currency, exponent: r.exponent, count: 0, sum: 0, unconfirmedCount: 0, unconfirmedSum: 0 };
      map.set(k, t);
    }
    if (r.status === BatchRecordStatus.CONFIRMED) {
      t.count++;
      t.sum += r.amount;
    } else {
      t.unconfirmedCount++;
      t.unconfirmedSum += r.amount;
    }
  }
  return [...map.entries()].sort((a, b) => a[0] - b[0]).map(([, t]) => t);
}

/**
 * The S3 fields of a logged purchase: what VERIFY S3 checks the card's S3 against (`cvr` from the card's DEBIT response).
 */
export function purchaseS3FieldsForRecord(r: BatchRecord, psamId: string, cvr: number): PurchaseS3Fields {
  return purchaseS3Of(r, psamId, r.newCounter, cvr);
}

/**
 * Batch MAC input: header || NREC records (50 bytes each, log order) || NTOT (1) || totals (24 bytes each).
 * `totals` defaults to computeTotals(records); the PSAM's own totals must equal it.
 */
export function batchMacInput(h: BatchHeader, records: readonly BatchRecord[], totals: readonly TotalsEntry[] = computeTotals(records)): Buffer {
  checkAlg(h.alg, 'batch');
  if (records.length > 0xffff) throw new CryptoError('CRYPTO_FIELD', `batch: at most 65535 records, got ${records.length}`);
  if (totals.length > 0xff) throw new CryptoError('CRYPTO_FIELD', `batch: at most 255 totals entries, got ${totals.length}`);
  const parts: Buffer[] = [encodeLayout(BATCH_HEADER_LAYOUT, { ...h, recordCount: records.length })];
  for (const r of records) parts.push(batchRecordBytes(r));
  parts.push(Buffer.from([totals.length]));
  for (const t of totals) parts.push(totalsEntryBytes(t));
  return Buffer.concat(parts);
}

export function psamAdminInput(f: PsamAdminFields): Buffer {
  checkAlg(f.alg, 'psamAdmin');
  if (!(f.data instanceof Uint8Array)) throw new CryptoError('CRYPTO_FIELD', 'psamAdmin.data must be bytes');
  return Buffer.concat([encodeLayout(PSAM_ADMIN_HEADER_LAYOUT, f), f.data]);
}

// ---------------------------------------------------------------------------------------------
// Keys and MACs

/** A card's key of one usage: diversified from the issuer master of that usage by the card id (suite of `alg`). */
export function deriveCardKey(masterKey: Uint8Array, cardId: CardIdInput, alg: number): Buffer {
  return diversifyCardKey(masterKey, cardId, suiteFor(alg).keyType);
}

/** A PSAM's batch or admin key: diversified from the acquirer master by the 16-digit PSAM id (same scheme as cards). */
export function derivePsamKey(masterKey: Uint8Array, psamId: CardIdInput, alg: number): Buffer {
  return diversifyCardKey(masterKey, cardIdToBcd(psamId), suiteFor(alg).keyType);
}

/** The 8-byte suite MAC over a MAC input. */
export function purseMac(alg: number, key: Uint8Array, input: Uint8Array): Buffer {
  return suiteMac(alg, key, input);
}

/** Constant-time verification of an 8-byte suite MAC; wrong length = invalid. */
export function purseMacVerify(alg: number, key: Uint8Array, input: Uint8Array, mac: Uint8Array): boolean {
  return suiteVerify(alg, key, input, mac);
}

/** The MAC of a kind and its constant-time check, over the kind's MAC input, with the suite of `f.alg`. */
const macPair = <F extends { alg: number }>(input: (f: F) => Buffer) =>
  [
    (key: Uint8Array, f: F): Buffer => purseMac(f.alg, key, input(f)),
    (key: Uint8Array, f: F, mac: Uint8Array): boolean => purseMacVerify(f.alg, key, input(f), mac),
  ] as const;

export const [purchaseS2, verifyPurchaseS2] = macPair(purchaseS2Input);
export const [purchaseS3, verifyPurchaseS3] = macPair(purchaseS3Input);
export const [loadS1, verifyLoadS1] = macPair(loadS1Input);
export const [loadS2, verifyLoadS2] = macPair(loadS2Input);
export const [loadS3, verifyLoadS3] = macPair(loadS3Input);
export const [updateParametersMac, verifyUpdateParametersMac] = macPair(updateParametersInput);
export const [psamAdminMac, verifyPsamAdminMac] = macPair(psamAdminInput);
export const batchMac = (key: Uint8Array, h: BatchHeader, records: readonly BatchRecord[], totals?: readonly TotalsEntry[]): Buffer =>
  purseMac(h.alg, key, batchMacInput(h, records, totals));
export const verifyBatchMac = (key: Uint8Array, h: BatchHeader, records: readonly BatchRecord[], totals: readonly TotalsEntry[] | undefined, mac: Uint8Array): boolean =>
  purseMacVerify(h.alg, key, batchMacInput(h, records, totals), mac);

/** Which key each MAC uses (for the HSM bridge and the docs). */
export const MAC_KEY_USAGE: Readonly<Record<string, PurseKeyUsage>> = {
  purchaseS2: 'purchase',
  purchaseS3: 'purchase',
  loadS1: 'load',
  loadS2: 'load',
  loadS3: 'load',
  updateParameters: 'update',
  batch: 'batch',
  psamAdmin: 'admin',
};
