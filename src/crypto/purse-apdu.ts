// APDU contract of the purse (IEP) and PSAM applets: AIDs, INS codes, status words and the fixed
// command/response data records. The single definition shared by the applets (card-applet-sim) and
// the host protocols (src/terminal). Specification: docs/purse-applet.md, docs/psam-applet.md.

import { decodeLayout, encodeLayout, layout, type Layout, type LayoutValues } from './layout.ts';
import { BATCH_RECORD_LAYOUT, TOTALS_ENTRY_LAYOUT, type TotalsEntry } from './purse-mac.ts';
import { CryptoError } from './errors.ts';

// ---------------------------------------------------------------------------------------------
// Identity

/** F0 (proprietary RID, ISO/IEC 7816-5 category F) + "purselab" + "IEP". */
export const IEP_AID = Buffer.from('F070757273656C6162494550', 'hex');
/** F0 + "purselab" + "PSAM". */
export const PSAM_AID = Buffer.from('F070757273656C61625053414D', 'hex');

export const CLA_ISO = 0x00;
export const CLA_PROPRIETARY = 0x80;

export const IepIns = {
  VERIFY: 0x20, // CLA 00
  INITIALIZE_FOR_LOAD: 0x40,
  CREDIT_FOR_LOAD: 0x42,
  INITIALIZE_FOR_PURCHASE: 0x50,
  DEBIT: 0x54,
  UPDATE_PARAMETERS: 0x58,
  READ_PURSE_DATA: 0x5c,
  GET_CHALLENGE: 0x84, // CLA 00
} as const;

// INS 6X and 9X are invalid instruction codes (ISO/IEC 7816-3: they collide with T=0 procedure bytes and
// the card OS answers 6D00), so the PSAM's own commands live at 3X.
export const PsamIns = {
  READ_PSAM_DATA: 0x30,
  INITIALIZE_PURCHASE: 0x32,
  VERIFY_S3: 0x34,
  READ_BATCH_RECORD: 0x36,
  CLOSE_BATCH: 0x38,
  PURGE_BATCH: 0x3a,
  READ_TOTALS: 0x3c,
  MANAGE_BLOCKED_LIST: 0x70,
  MANAGE_CURRENCIES: 0x72,
  READ_LIST: 0x74,
  GET_CHALLENGE: 0x84, // CLA 00
} as const;

/** INITIALIZE FOR PURCHASE / INITIALIZE FOR LOAD P1: which purse. */
export const PurseP1 = { MONEY: 0x00, POINTS: 0x01 } as const;
/** INITIALIZE FOR LOAD P2. */
export const LoadP2 = { LOAD: 0x00, ENQUIRY: 0x01 } as const;
/** PSAM INITIALIZE PURCHASE P1. */
export const PsamInitP1 = { NORMAL: 0x00, EARLY_RELEASE: 0x01 } as const;
/** PSAM READ BATCH RECORD / READ TOTALS P1. */
export const BatchSel = { OPEN: 0x00, CLOSED: 0x01 } as const;
/** PSAM MANAGE BLOCKED LIST / MANAGE CURRENCIES P1. */
export const ListOp = { ADD: 0x01, REMOVE: 0x02, CLEAR: 0x03 } as const;
/** PSAM CLOSE BATCH P1. */
export const CloseP1 = { CLOSE: 0x00, REREAD: 0x01 } as const;
/** PSAM READ LIST P1. */
export const ListSel = { BLOCKED_CARDS: 0x01, CURRENCIES: 0x02 } as const;

/** VERIFY P2: the application PIN (ISO 7816-4 specific reference data). */
export const PIN_REFERENCE = 0x80;

/** VERIFY data: a plaintext ISO 9564-1 format-2 PIN block, `2N` + N digits (N = 4..12) + F padding, 8 bytes. */
export const PIN_BLOCK_LENGTH = 8;

export function encodePinBlock(pin: string): Buffer {
  if (typeof pin !== 'string' || !/^[0-9]{4,12}$/.test(pin)) throw new CryptoError('CRYPTO_FIELD', 'PIN must be 4..12 decimal digits');
  return Buffer.from(('2' + pin.length.toString(16) + pin).padEnd(2 * PIN_BLOCK_LENGTH, 'f'), 'hex');
}

/** The PIN digits of a format-2 PIN block; CRYPTO_FIELD (without the PIN in the message) when malformed. */
export function decodePinBlock(block: Uint8Array): string {
  const hex = Buffer.from(block.buffer, block.byteOffset, block.byteLength).toString('hex');
  const n = hex.length === 2 * PIN_BLOCK_LENGTH && hex[0] === '2' ? Number.parseInt(hex[1]!, 16) : -1;
  if (n < 4 || n > 12 || !/^[0-9]+$/.test(hex.slice(2, 2 + n)) || !/^f*$/.test(hex.slice(2 + n))) {
    throw new CryptoError('CRYPTO_FIELD', `PIN block: expected ${PIN_BLOCK_LENGTH} bytes '2N' + N digits (4..12) + F padding`);
  }
  return hex.slice(2, 2 + n);
}

// ---------------------------------------------------------------------------------------------
// Status words

export const Sw = {
  OK: 0x9000,
  WRONG_LENGTH: 0x6700,
  /** A MAC (S2, update MAC, admin MAC) did not verify. Nothing changed. */
  SECURITY_NOT_SATISFIED: 0x6982,
  PIN_BLOCKED: 0x6983,
  /** Wrong state: no INITIALIZE before DEBIT/CREDIT, no GET CHALLENGE before a MACed command, etc. */
  CONDITIONS_NOT_SATISFIED: 0x6985,
  WRONG_DATA: 0x6a80,
  /** A list (blocked cards, currencies) is full. */
  MEMORY_FULL: 0x6a84,
  WRONG_P1P2: 0x6a86,
  NOT_FOUND: 0x6a88,
  INS_NOT_SUPPORTED: 0x6d00,
  CLA_NOT_SUPPORTED: 0x6e00,
  /** 63Cx: PIN wrong, x tries left. */
  PIN_WRONG_BASE: 0x63c0,
  // purse-specific (also used by the PSAM for the same conditions)
  INSUFFICIENT_VALUE: 0x9401,
  CARD_EXPIRED: 0x9402,
  CURRENCY_MISMATCH: 0x9403,
  MAX_BALANCE_EXCEEDED: 0x9404,
  PURSE_BLOCKED: 0x9405,
  PIN_REQUIRED: 0x9406,
  COUNTER_EXHAUSTED: 0x9407,
  AMOUNT_INVALID: 0x9408,
  // PSAM-specific
  CARD_ON_BLOCKED_LIST: 0x9501,
  CURRENCY_NOT_ACCEPTED: 0x9502,
  S3_INVALID: 0x9503,
  LOG_FULL: 0x9504,
  NO_SUCH_TRANSACTION: 0x9505,
  CLOSED_BATCH_PENDING: 0x9506,
  UNKNOWN_MASTER_KEY: 0x9507,
  NO_CLOSED_BATCH: 0x9508,
} as const;

export function pinWrongSw(triesLeft: number): number {
  if (!Number.isInteger(triesLeft) || triesLeft < 0 || triesLeft > 15) throw new CryptoError('CRYPTO_FIELD', `tries left must be 0..15, got ${triesLeft}`);
  return Sw.PIN_WRONG_BASE | triesLeft;
}

/**
 * One meaning per status word for both applets (the status-word registry is global, so a code shared by
 * the IEP and the PSAM must read the same). IEP_STATUS_WORDS / PSAM_STATUS_WORDS are the codes each
 * applet can return, for src/apdu/status-words.ts registerStatusWords(table, 'purselab IEP' | 'purselab PSAM').
 */
export const PURSE_STATUS_WORDS: Readonly<Record<string, string>> = {
  '63CX': 'PIN wrong, X tries left',
  '6982': 'MAC (S2, update MAC or admin MAC) not valid; nothing changed',
  '6983': 'PIN blocked',
  '6985': 'command not allowed in the current state (missing INITIALIZE / GET CHALLENGE, closed batch, ...)',
  '6A84': 'list full (blocked cards / currencies)',
  '9401': 'insufficient value in the purse',
  '9402': 'card expired',
  '9403': 'currency (or points programme) does not match the purse',
  '9404': 'maximum balance would be exceeded',
  '9405': 'purse blocked',
  '9406': 'PIN required and not verified',
  '9407': 'card transaction counter exhausted',
  '9408': 'amount not allowed for this transaction type',
  '9501': 'card is on the blocked-card list',
  '9502': 'currency not accepted by this PSAM',
  '9503': 'S3 not valid: the card is not proven debited',
  '9504': 'transaction log full: close the batch',
  '9505': 'no such transaction in the open batch',
  '9506': 'a closed batch is not yet purged',
  '9507': 'no purchase master key for this BIN / algorithm / key version',
  '9508': 'no closed batch',
};

function pick(codes: readonly string[]): Readonly<Record<string, string>> {
  return Object.fromEntries(codes.map((c) => [c, PURSE_STATUS_WORDS[c]!]));
}

export const IEP_STATUS_WORDS = pick(['63CX', '6982', '6983', '6985', '9401', '9402', '9403', '9404', '9405', '9406', '9407', '9408']);
export const PSAM_STATUS_WORDS = pick(['6982', '6985', '6A84', '9401', '9402', '9403', '9405', '9407', '9408', '9501', '9502', '9503', '9504', '9505', '9506', '9507', '9508']);

// ---------------------------------------------------------------------------------------------
// IEP records

export const STARTUP_LAYOUT = layout('startup', [
  ['alg', 'u8', 'ALG', 'algorithm id (0x01 3DES, 0x02 AES)'],
  ['keyVersion', 'u8', 'KVER', 'purchase key version'],
  ['cardId', 'id16', 'CID', 'card id (BIN = purse provider, purse number = IEP id)'],
  ['expiry', 'date', 'EXPIRY', 'expiry date (last valid day)'],
  ['balance', 'u32', 'BAL', 'balance (P1=01: points balance)'],
  ['currency', 'currency', 'CUR', 'currency (P1=01: points programme)'],
  ['exponent', 'u8', 'EXP', 'currency exponent (P1=01: 00)'],
  ['authMode', 'u8', 'AUTHMODE', '01 PIN required, 02 PIN verified this session, 04 points purse present'],
  ['counter', 'u32', 'CTR', 'transaction counter'],
  ['status', 'u8', 'STATUS', '00 active, 01 blocked'],
]);

export type StartupData = LayoutValues<typeof STARTUP_LAYOUT>;

export const PurseStatus = { ACTIVE: 0x00, BLOCKED: 0x01 } as const;

export const PURSE_DATA_LAYOUT = layout('purseData', [
  ['cardId', 'id16', 'CID', 'card id'],
  ['alg', 'u8', 'ALG', 'algorithm id'],
  ['status', 'u8', 'STATUS', '00 active, 01 blocked'],
  ['authMode', 'u8', 'AUTHMODE', 'as in start-up data'],
  ['expiry', 'date', 'EXPIRY', 'expiry date'],
  ['currency', 'currency', 'CUR', 'purse currency'],
  ['exponent', 'u8', 'EXP', 'currency exponent'],
  ['balance', 'u32', 'BAL', 'balance'],
  ['maxBalance', 'u32', 'MAXBAL', 'maximum balance'],
  ['counter', 'u32', 'CTR', 'transaction counter'],
  ['purchaseKeyVersion', 'u8', 'KVER_P', 'purchase key version'],
  ['loadKeyVersion', 'u8', 'KVER_L', 'load key version'],
  ['updateKeyVersion', 'u8', 'KVER_U', 'update key version'],
  ['pointsProgramme', 'currency', 'PTPROG', 'points programme (0000 = no points purse)'],
  ['pointsBalance', 'u32', 'PTBAL', 'points balance'],
  ['pointsMax', 'u32', 'PTMAX', 'maximum points'],
  ['pinTriesLeft', 'u8', 'PINTRIES', 'PIN tries left (FF = no PIN)'],
  ['lastLoadTxnId', 'bytes', 'LASTLTXID', 'LTXID of the last credited load (zeros if none)', 8],
  ['lastLoadCounter', 'u32', 'LASTLCTR', 'counter after that credit'],
  ['lastLoadAmount', 'u32', 'LASTLAMT', 'amount of that credit'],
]);

export type PurseData = LayoutValues<typeof PURSE_DATA_LAYOUT>;

export const DEBIT_COMMAND_LAYOUT = layout('debitCommand', [
  ['psamId', 'id16', 'PSAMID', 'PSAM identifier'],
  ['psamTxn', 'u32', 'PSAMTXN', 'PSAM transaction number'],
  ['amount', 'u32', 'AMT', 'amount (0 for authentication)'],
  ['currency', 'currency', 'CUR', 'currency / 0999 / programme'],
  ['exponent', 'u8', 'EXP', 'exponent'],
  ['date', 'date', 'DATE', 'date'],
  ['time', 'time', 'TIME', 'time'],
  ['location', 'bytes', 'LOC', 'location', 8],
  ['s2', 'bytes', 'S2', 'PSAM signature S2', 8],
]);

export type DebitCommand = LayoutValues<typeof DEBIT_COMMAND_LAYOUT>;

export const DEBIT_RESPONSE_LAYOUT = layout('debitResponse', [
  ['newCounter', 'u32', 'NEWCTR', 'counter after the debit'],
  ['newBalance', 'u32', 'NEWBAL', 'balance after the debit (not MACed)'],
  ['cvr', 'u8', 'CVR', 'AUTHMODE at the debit'],
  ['s3', 'bytes', 'S3', 'card signature S3', 8],
]);

export type DebitResponse = LayoutValues<typeof DEBIT_RESPONSE_LAYOUT>;

export const INIT_LOAD_COMMAND_LAYOUT = layout('initLoadCommand', [
  ['amount', 'u32', 'AMT', 'load amount (0 with P2 = 01)'],
  ['currency', 'currency', 'CUR', 'currency (points: programme)'],
  ['exponent', 'u8', 'EXP', 'exponent'],
  ['date', 'date', 'DATE', 'date of the load request'],
  ['time', 'time', 'TIME', 'time of the load request'],
  ['loadTxnId', 'bytes', 'LTXID', 'load transaction id / issuer challenge', 8],
]);

export type InitLoadCommand = LayoutValues<typeof INIT_LOAD_COMMAND_LAYOUT>;

export const INIT_LOAD_RESPONSE_LAYOUT = layout('initLoadResponse', [
  ['cardId', 'id16', 'CID', 'card id'],
  ['alg', 'u8', 'ALG', 'algorithm id'],
  ['keyVersion', 'u8', 'KVER', 'load key version'],
  ['counter', 'u32', 'CTR', 'transaction counter'],
  ['balance', 'u32', 'BAL', 'balance (points: points balance)'],
  ['maxBalance', 'u32', 'MAXBAL', 'maximum balance (points: maximum points)'],
  ['currency', 'currency', 'CUR', 'currency (points: programme)'],
  ['exponent', 'u8', 'EXP', 'exponent'],
  ['expiry', 'date', 'EXPIRY', 'expiry date'],
  ['cardChallenge', 'bytes', 'CRND', 'card random for this load session', 8],
  ['lastLoadTxnId', 'bytes', 'LASTLTXID', 'LTXID of the last credited load', 8],
  ['lastLoadCounter', 'u32', 'LASTLCTR', 'counter after that credit'],
  ['lastLoadAmount', 'u32', 'LASTLAMT', 'amount of that credit'],
  ['s1', 'bytes', 'S1', 'card signature S1', 8],
]);

export type InitLoadResponse = LayoutValues<typeof INIT_LOAD_RESPONSE_LAYOUT>;

export const CREDIT_COMMAND_LAYOUT = layout('creditCommand', [['s2', 'bytes', 'S2', 'issuer signature S2', 8]]);

export type CreditCommand = LayoutValues<typeof CREDIT_COMMAND_LAYOUT>;

export const CREDIT_RESPONSE_LAYOUT = layout('creditResponse', [
  ['result', 'u8', 'RESULT', '00 credited, 01 S2 invalid, 02 max balance, 03 expired, 04 blocked'],
  ['newCounter', 'u32', 'NEWCTR', 'counter after CREDIT'],
  ['newBalance', 'u32', 'NEWBAL', 'balance after CREDIT'],
  ['s3', 'bytes', 'S3', 'card signature S3', 8],
]);

export type CreditResponse = LayoutValues<typeof CREDIT_RESPONSE_LAYOUT>;

export const UPDATE_COMMAND_LAYOUT = layout('updateCommand', [
  ['flags', 'u8', 'FLAGS', 'what to change'],
  ['maxBalance', 'u32', 'MAXBAL', 'new maximum balance'],
  ['expiry', 'date', 'EXPIRY', 'new expiry'],
  ['currency', 'currency', 'CUR', 'new currency'],
  ['exponent', 'u8', 'EXP', 'new exponent'],
  ['mac', 'bytes', 'MAC', 'update MAC', 8],
]);

export type UpdateCommand = LayoutValues<typeof UPDATE_COMMAND_LAYOUT>;

// ---------------------------------------------------------------------------------------------
// PSAM records

export const PSAM_DATA_LAYOUT = layout('psamData', [
  ['psamId', 'id16', 'PSAMID', 'PSAM identifier (16 digits)'],
  ['alg', 'u8', 'ALG', 'algorithm id of the PSAM batch and admin keys'],
  ['batchKeyVersion', 'u8', 'KVER_B', 'batch key version'],
  ['adminKeyVersion', 'u8', 'KVER_M', 'admin key version'],
  ['nextTxn', 'u32', 'NEXTTXN', 'next PSAM transaction number'],
  ['batchNumber', 'u32', 'BATCHNO', 'open batch number'],
  ['recordCount', 'u16', 'NREC', 'records in the open batch'],
  ['capacity', 'u16', 'CAPACITY', 'records a batch can hold'],
  ['closedBatchNumber', 'u32', 'CLOSEDNO', 'closed, not purged batch (0 = none)'],
  ['closedRecordCount', 'u16', 'CLOSEDNREC', 'records in it'],
  ['pending', 'u16', 'PENDING', 'unconfirmed (status 02) records in the open batch'],
]);

export type PsamData = LayoutValues<typeof PSAM_DATA_LAYOUT>;

/** Purchase parameters appended to the card's start-up data in PSAM INITIALIZE PURCHASE. */
export const PURGE_COMMAND_LAYOUT = layout('purgeCommand', [
  ['batchNumber', 'u32', 'BATCHNO', 'the closed batch being acknowledged'],
  ['mac', 'bytes', 'MAC', 'admin MAC (INS 3A) over BATCHNO', 8],
]);

export type PurgeCommand = LayoutValues<typeof PURGE_COMMAND_LAYOUT>;

export const PURCHASE_PARAMS_LAYOUT = layout('purchaseParams', [
  ['txType', 'u8', 'TXTYPE', '01 purchase, 02 authentication, 03 points debit'],
  ['amount', 'u32', 'AMT', 'amount'],
  ['currency', 'currency', 'CUR', 'currency / 0999 / programme'],
  ['exponent', 'u8', 'EXP', 'exponent'],
  ['date', 'date', 'DATE', 'date'],
  ['time', 'time', 'TIME', 'time'],
  ['location', 'bytes', 'LOC', 'location', 8],
]);

export type PurchaseParams = LayoutValues<typeof PURCHASE_PARAMS_LAYOUT>;

export const VERIFY_S3_COMMAND_LAYOUT = layout('verifyS3Command', [
  ['psamTxn', 'u32', 'PSAMTXN', 'which transaction'],
  ['newCounter', 'u32', 'NEWCTR', 'from the card DEBIT response'],
  ['cvr', 'u8', 'CVR', 'from the card DEBIT response'],
  ['s3', 'bytes', 'S3', 'from the card DEBIT response', 8],
]);

export type VerifyS3Command = LayoutValues<typeof VERIFY_S3_COMMAND_LAYOUT>;

export const DEBIT_RESULT_LAYOUT = layout('debitResult', [
  ['psamId', 'id16', 'PSAMID', 'PSAM identifier'],
  ['psamTxn', 'u32', 'PSAMTXN', 'PSAM transaction number'],
  ['cardId', 'id16', 'CID', 'card id'],
  ['newCounter', 'u32', 'NEWCTR', 'card counter after the debit'],
  ['txType', 'u8', 'TXTYPE', 'transaction type'],
  ['amount', 'u32', 'AMT', 'amount'],
  ['currency', 'currency', 'CUR', 'currency'],
  ['exponent', 'u8', 'EXP', 'exponent'],
  ['status', 'u8', 'STATUS', '01 confirmed'],
]);

export type DebitResult = LayoutValues<typeof DEBIT_RESULT_LAYOUT>;

export const BATCH_SUMMARY_HEADER_LAYOUT = layout('batchSummaryHeader', [
  ['psamId', 'id16', 'PSAMID', 'PSAM identifier'],
  ['batchNumber', 'u32', 'BATCHNO', 'the batch just closed'],
  ['recordCount', 'u16', 'NREC', 'records in it'],
  ['totalsCount', 'u8', 'NTOT', 'totals entries that follow (24 bytes each), then the 8-byte batch MAC'],
]);

export interface BatchSummary {
  psamId: string;
  batchNumber: number;
  recordCount: number;
  totals: TotalsEntry[];
  mac: Buffer;
}

export const CURRENCY_ENTRY_LAYOUT = layout('currencyEntry', [
  ['currency', 'currency', 'CUR', 'currency or points programme'],
  ['exponent', 'u8', 'EXP', 'exponent'],
]);

// ---------------------------------------------------------------------------------------------
// Codecs

const codec = <L extends Layout>(l: L) =>
  [(v: LayoutValues<L>): Buffer => encodeLayout(l, v), (b: Uint8Array): LayoutValues<L> => decodeLayout<LayoutValues<L>>(l, b)] as const;

export const [encodeStartupData, decodeStartupData] = codec(STARTUP_LAYOUT);
export const [encodePurseData, decodePurseData] = codec(PURSE_DATA_LAYOUT);
export const [encodeDebitCommand, decodeDebitCommand] = codec(DEBIT_COMMAND_LAYOUT);
export const [encodeDebitResponse, decodeDebitResponse] = codec(DEBIT_RESPONSE_LAYOUT);
export const [encodeInitLoadCommand, decodeInitLoadCommand] = codec(INIT_LOAD_COMMAND_LAYOUT);
export const [encodeInitLoadResponse, decodeInitLoadResponse] = codec(INIT_LOAD_RESPONSE_LAYOUT);
export const [encodeCreditCommand, decodeCreditCommand] = codec(CREDIT_COMMAND_LAYOUT);
export const [encodeCreditResponse, decodeCreditResponse] = codec(CREDIT_RESPONSE_LAYOUT);
export const [encodeUpdateCommand, decodeUpdateCommand] = codec(UPDATE_COMMAND_LAYOUT);
export const [encodePsamData, decodePsamData] = codec(PSAM_DATA_LAYOUT);
export const [encodePurchaseParams, decodePurchaseParams] = codec(PURCHASE_PARAMS_LAYOUT);
export const [encodeVerifyS3Command, decodeVerifyS3Command] = codec(VERIFY_S3_COMMAND_LAYOUT);
export const [encodeDebitResult, decodeDebitResult] = codec(DEBIT_RESULT_LAYOUT);
export const [encodeBatchRecord, decodeBatchRecord] = codec(BATCH_RECORD_LAYOUT);
export const [encodeTotalsEntry, decodeTotalsEntry] = codec(TOTALS_ENTRY_LAYOUT);
export const [encodePurgeCommand, decodePurgeCommand] = codec(PURGE_COMMAND_LAYOUT);

/** PSAM INITIALIZE PURCHASE data: the card's start-up data (27 bytes, verbatim) || purchase parameters (23 bytes). */
export function encodePsamInitPurchase(startup: StartupData | Uint8Array, params: PurchaseParams): Buffer {
  let s: Buffer;
  if (startup instanceof Uint8Array) {
    decodeStartupData(startup); // validates length and encodings; the bytes are passed on verbatim
    s = Buffer.from(startup);
  } else {
    s = encodeStartupData(startup);
  }
  return Buffer.concat([s, encodePurchaseParams(params)]);
}

export function decodePsamInitPurchase(data: Uint8Array): { startup: StartupData; params: PurchaseParams } {
  const n = STARTUP_LAYOUT.length + PURCHASE_PARAMS_LAYOUT.length;
  if (data.length !== n) throw new CryptoError('CRYPTO_FIELD', `psamInitPurchase: expected ${n} bytes, got ${data.length}`);
  return {
    startup: decodeStartupData(data.subarray(0, STARTUP_LAYOUT.length)),
    params: decodePurchaseParams(data.subarray(STARTUP_LAYOUT.length)),
  };
}

/** PSAM INITIALIZE PURCHASE response: DEBIT command data (42 bytes) [|| expected S3 (8) with P1 = 01]. */
export function decodePsamInitPurchaseResponse(data: Uint8Array): { debit: DebitCommand; expectedS3?: Buffer } {
  const n = DEBIT_COMMAND_LAYOUT.length;
  if (data.length === n) return { debit: decodeDebitCommand(data) };
  if (data.length === n + 8) return { debit: decodeDebitCommand(data.subarray(0, n)), expectedS3: Buffer.from(data.subarray(n)) };
  throw new CryptoError('CRYPTO_FIELD', `psamInitPurchaseResponse: expected ${n} or ${n + 8} bytes, got ${data.length}`);
}

export function encodePsamInitPurchaseResponse(debit: DebitCommand, expectedS3?: Uint8Array): Buffer {
  const d = encodeDebitCommand(debit);
  if (expectedS3 === undefined) return d;
  if (expectedS3.length !== 8) throw new CryptoError('CRYPTO_FIELD', `expected S3 must be 8 bytes, got ${expectedS3.length}`);
  return Buffer.concat([d, expectedS3]);
}

/** Totals as returned by READ TOTALS: NTOT (1) || entries (24 each). */
export function encodeTotals(totals: readonly TotalsEntry[]): Buffer {
  if (totals.length > 0xff) throw new CryptoError('CRYPTO_FIELD', `at most 255 totals entries, got ${totals.length}`);
  return Buffer.concat([Buffer.from([totals.length]), ...totals.map(encodeTotalsEntry)]);
}

export function decodeTotals(data: Uint8Array): TotalsEntry[] {
  const n = data[0];
  const size = TOTALS_ENTRY_LAYOUT.length;
  if (n === undefined || data.length !== 1 + n * size) {
    throw new CryptoError('CRYPTO_FIELD', `totals: length ${data.length} does not match NTOT ${n ?? '(missing)'}`);
  }
  const out: TotalsEntry[] = [];
  for (let i = 0; i < n; i++) out.push(decodeTotalsEntry(data.subarray(1 + i * size, 1 + (i + 1) * size)));
  return out;
}

/** CLOSE BATCH response: PSAMID BATCHNO NREC NTOT || totals || batch MAC (8). */
export function encodeBatchSummary(s: BatchSummary): Buffer {
  if (s.mac.length !== 8) throw new CryptoError('CRYPTO_FIELD', `batch MAC must be 8 bytes, got ${s.mac.length}`);
  const head = encodeLayout(BATCH_SUMMARY_HEADER_LAYOUT, { ...s, totalsCount: s.totals.length });
  return Buffer.concat([head, ...s.totals.map(encodeTotalsEntry), s.mac]);
}

export function decodeBatchSummary(data: Uint8Array): BatchSummary {
  const hl = BATCH_SUMMARY_HEADER_LAYOUT.length;
  if (data.length < hl + 8) throw new CryptoError('CRYPTO_FIELD', `batchSummary: too short (${data.length} bytes)`);
  const h = decodeLayout<{ psamId: string; batchNumber: number; recordCount: number; totalsCount: number }>(BATCH_SUMMARY_HEADER_LAYOUT, data.subarray(0, hl));
  const size = TOTALS_ENTRY_LAYOUT.length;
  if (data.length !== hl + h.totalsCount * size + 8) {
    throw new CryptoError('CRYPTO_FIELD', `batchSummary: length ${data.length} does not match NTOT ${h.totalsCount}`);
  }
  const totals: TotalsEntry[] = [];
  for (let i = 0; i < h.totalsCount; i++) totals.push(decodeTotalsEntry(data.subarray(hl + i * size, hl + (i + 1) * size)));
  return { psamId: h.psamId, batchNumber: h.batchNumber, recordCount: h.recordCount, totals, mac: Buffer.from(data.subarray(data.length - 8)) };
}
