// Host side of the PSAM (purchase security card): plain async functions over a CardChannel.
// Commands and records: docs/psam-applet.md.

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
  decodeBatchRecord,
  decodeBatchSummary,
  decodeDebitResult,
  decodePsamData,
  decodePsamInitPurchaseResponse,
  decodeTotals,
  encodePsamInitPurchase,
  encodePurchaseParams,
  STARTUP_LAYOUT,
  encodePurgeCommand,
  encodeVerifyS3Command,
  type BatchSummary,
  type DebitCommand,
  type DebitResult,
  type PsamData,
  type PurchaseParams,
  type VerifyS3Command,
} from '../crypto/purse-apdu.ts';
import { encodeCurrency, decodeCurrency, cardIdToBcd, bcdToCardId } from '../crypto/bcd.ts';
import { verifyBatchMac, type BatchRecord, type PsamAdminFields, type TotalsEntry } from '../crypto/purse-mac.ts';
import { command as apdu } from '../apdu/command.ts';
import type { CardChannel } from '../transport/channel.ts';
import { decodeResponse, exchange, ResponseFormatError } from './errors.ts';

export type BatchWhich = 'open' | 'closed';
const sel = (w: BatchWhich): number => (w === 'open' ? BatchSel.OPEN : BatchSel.CLOSED);
const idx2 = (i: number): Buffer => Buffer.from([(i >> 8) & 0xff, i & 0xff]);

export async function selectPsam(psam: CardChannel): Promise<void> {
  await exchange(psam, 'psam', 'SELECT PSAM', apdu(CLA_ISO, 0xa4, 0x04, 0x00, PSAM_AID, 256));
}

export async function readPsamData(psam: CardChannel, options: { select?: boolean } = {}): Promise<PsamData> {
  if (options.select !== false) await selectPsam(psam);
  const d = await exchange(psam, 'psam', 'READ PSAM DATA', apdu(CLA_PROPRIETARY, PsamIns.READ_PSAM_DATA, 0, 0, undefined, 256));
  return decodeResponse('psam', 'READ PSAM DATA', d, decodePsamData);
}

export interface PsamDebit {
  /** DEBIT command data for the card (42 bytes, verbatim). */
  readonly debitData: Buffer;
  readonly debit: DebitCommand;
  /** Early release only: the S3 a genuine debit will produce. */
  readonly expectedS3?: Buffer;
}

/** INITIALIZE PURCHASE: the card's start-up data (verbatim) + purchase parameters -> DEBIT data with S2. */
export async function psamInitializePurchase(psam: CardChannel, startupRaw: Uint8Array, params: PurchaseParams, earlyRelease = false): Promise<PsamDebit> {
  // The start-up data goes on verbatim; it was decoded (validated) when the card sent it.
  const data = startupRaw.length === STARTUP_LAYOUT.length ? Buffer.concat([startupRaw, encodePurchaseParams(params)]) : encodePsamInitPurchase(startupRaw, params);
  const name = 'INITIALIZE PURCHASE';
  const d = await exchange(psam, 'psam', name, apdu(CLA_PROPRIETARY, PsamIns.INITIALIZE_PURCHASE, earlyRelease ? PsamInitP1.EARLY_RELEASE : PsamInitP1.NORMAL, 0, data, 256));
  const r = decodeResponse('psam', name, d, decodePsamInitPurchaseResponse);
  if (earlyRelease !== (r.expectedS3 !== undefined)) {
    throw new ResponseFormatError(`PSAM ${name}: ${earlyRelease ? 'no expected S3 in the early-release answer' : 'an expected S3 that was not asked for'}`);
  }
  const debitData = Buffer.from(d.subarray(0, 42));
  return r.expectedS3 ? { debitData, debit: r.debit, expectedS3: r.expectedS3 } : { debitData, debit: r.debit };
}

/** VERIFY S3: the debit result when the card's S3 proves the debit (9503 otherwise). */
export async function psamVerifyS3(psam: CardChannel, v: VerifyS3Command): Promise<DebitResult> {
  const d = await exchange(psam, 'psam', 'VERIFY S3', apdu(CLA_PROPRIETARY, PsamIns.VERIFY_S3, 0, 0, encodeVerifyS3Command(v), 256));
  return decodeResponse('psam', 'VERIFY S3', d, decodeDebitResult);
}

export async function readBatchRecord(psam: CardChannel, which: BatchWhich, index: number): Promise<BatchRecord> {
  const d = await exchange(psam, 'psam', 'READ BATCH RECORD', apdu(CLA_PROPRIETARY, PsamIns.READ_BATCH_RECORD, sel(which), 0, idx2(index), 256));
  return decodeResponse('psam', 'READ BATCH RECORD', d, decodeBatchRecord);
}

/** Every record of the open or the closed batch, in log order. */
export async function readBatch(psam: CardChannel, which: BatchWhich, options: { select?: boolean } = {}): Promise<BatchRecord[]> {
  const info = await readPsamData(psam, options);
  const n = which === 'open' ? info.recordCount : info.closedBatchNumber ? info.closedRecordCount : 0;
  const out: BatchRecord[] = [];
  for (let i = 0; i < n; i++) out.push(await readBatchRecord(psam, which, i));
  return out;
}

export async function readTotals(psam: CardChannel, which: BatchWhich = 'open'): Promise<TotalsEntry[]> {
  const d = await exchange(psam, 'psam', 'READ TOTALS', apdu(CLA_PROPRIETARY, PsamIns.READ_TOTALS, sel(which), 0, undefined, 256));
  return decodeResponse('psam', 'READ TOTALS', d, decodeTotals);
}

/** CLOSE BATCH: the open batch becomes the closed batch; returns its summary with the batch MAC. */
export async function closeBatch(psam: CardChannel): Promise<BatchSummary> {
  const d = await exchange(psam, 'psam', 'CLOSE BATCH', apdu(CLA_PROPRIETARY, PsamIns.CLOSE_BATCH, CloseP1.CLOSE, 0, undefined, 256));
  return decodeResponse('psam', 'CLOSE BATCH', d, decodeBatchSummary);
}

/** CLOSE BATCH P1 = 01: the closed batch's summary again (after a lost response); changes nothing. */
export async function rereadClosedBatch(psam: CardChannel): Promise<BatchSummary> {
  const d = await exchange(psam, 'psam', 'CLOSE BATCH (re-read)', apdu(CLA_PROPRIETARY, PsamIns.CLOSE_BATCH, CloseP1.REREAD, 0, undefined, 256));
  return decodeResponse('psam', 'CLOSE BATCH (re-read)', d, decodeBatchSummary);
}

/**
 * The concentration point's check of a closed batch: the batch MAC over the records and the totals the PSAM
 * reported (`batchKey` = the PSAM's batch key, derived by the acquirer HSM from PSAMID).
 */
export function verifyClosedBatch(summary: BatchSummary, records: readonly BatchRecord[], batchKey: Uint8Array, alg: number, keyVersion: number): boolean {
  if (records.length !== summary.recordCount) return false;
  return verifyBatchMac(batchKey, { alg, keyVersion, psamId: summary.psamId, batchNumber: summary.batchNumber }, records, summary.totals, summary.mac);
}

export async function getChallenge(psam: CardChannel): Promise<Buffer> {
  const d = await exchange(psam, 'psam', 'GET CHALLENGE', apdu(CLA_ISO, PsamIns.GET_CHALLENGE, 0, 0, undefined, 8));
  if (d.length !== 8) throw new ResponseFormatError(`PSAM GET CHALLENGE: expected 8 bytes, got ${d.length}`);
  return d;
}

/** The acquirer's admin MAC (admin key, `psamAdminMac` of purse-mac.ts), usually computed in its HSM. */
export type AdminMacFn = (fields: PsamAdminFields) => Buffer | Promise<Buffer>;

async function adminCommand(psam: CardChannel, name: string, ins: number, p1: number, data: Buffer, mac: AdminMacFn): Promise<void> {
  const info = await readPsamData(psam, { select: false });
  const rnd = await getChallenge(psam);
  const m = await mac({ alg: info.alg, keyVersion: info.adminKeyVersion, psamId: info.psamId, challenge: rnd, ins, p1, p2: 0, data });
  await exchange(psam, 'psam', name, apdu(CLA_PROPRIETARY, ins, p1, 0, Buffer.concat([data, m])));
}

/** PURGE BATCH: the concentration point acknowledges the closed batch; the PSAM forgets it. */
export async function purgeBatch(psam: CardChannel, batchNumber: number, mac: AdminMacFn): Promise<void> {
  const data = encodePurgeCommand({ batchNumber, mac: Buffer.alloc(8) }).subarray(0, 4);
  await adminCommand(psam, 'PURGE BATCH', PsamIns.PURGE_BATCH, 0, Buffer.from(data), mac);
}

export type ListOperation = 'add' | 'remove' | 'clear';
const opP1 = (op: ListOperation): number => (op === 'add' ? ListOp.ADD : op === 'remove' ? ListOp.REMOVE : ListOp.CLEAR);

export async function manageBlockedList(psam: CardChannel, op: ListOperation, cardId: string | undefined, mac: AdminMacFn): Promise<void> {
  const data = op === 'clear' ? Buffer.alloc(0) : cardIdToBcd(cardId ?? '');
  await adminCommand(psam, 'MANAGE BLOCKED LIST', PsamIns.MANAGE_BLOCKED_LIST, opP1(op), data, mac);
}

export async function manageCurrencies(psam: CardChannel, op: ListOperation, entry: { currency: number; exponent: number } | undefined, mac: AdminMacFn): Promise<void> {
  const data = op === 'clear' || !entry ? Buffer.alloc(0) : Buffer.concat([encodeCurrency(entry.currency), Buffer.from([entry.exponent])]);
  await adminCommand(psam, 'MANAGE CURRENCIES', PsamIns.MANAGE_CURRENCIES, opP1(op), data, mac);
}

/** READ LIST: the whole blocked-card list. */
export async function readBlockedList(psam: CardChannel): Promise<string[]> {
  return (await readList(psam, ListSel.BLOCKED_CARDS, 8)).map((e) => bcdToCardId(e));
}

/** READ LIST: the whole accepted-currency list. */
export async function readCurrencyList(psam: CardChannel): Promise<{ currency: number; exponent: number }[]> {
  return (await readList(psam, ListSel.CURRENCIES, 3)).map((e) => ({ currency: decodeCurrency(e.subarray(0, 2)), exponent: e[2]! }));
}

async function readList(psam: CardChannel, p1: number, size: number): Promise<Buffer[]> {
  const out: Buffer[] = [];
  for (;;) {
    const d = await exchange(psam, 'psam', 'READ LIST', apdu(CLA_PROPRIETARY, PsamIns.READ_LIST, p1, 0, idx2(out.length), 256));
    if (d.length < 2 || (d.length - 2) % size !== 0) throw new ResponseFormatError(`PSAM READ LIST: malformed response of ${d.length} bytes`);
    const total = d.readUInt16BE(0);
    const n = (d.length - 2) / size;
    for (let i = 0; i < n; i++) out.push(Buffer.from(d.subarray(2 + i * size, 2 + (i + 1) * size)));
    if (out.length >= total || n === 0) return out;
  }
}
