// Card side of the purse (IEP) protocols, as plain async functions over a CardChannel: the same code runs
// over a PC/SC reader and the in-process emulator. Commands and records: docs/purse-applet.md.
//
// Entry points (readPurse, initializeForPurchase, initializeForLoad, requestZeroValueLoad) SELECT the purse
// first unless told not to; follow-ups (debitCard, creditForLoad) never do, because SELECT ends the card's
// session.

import {
  CLA_ISO,
  CLA_PROPRIETARY,
  IEP_AID,
  IepIns,
  LoadP2,
  PIN_REFERENCE,
  PurseP1,
  decodeCreditResponse,
  decodeDebitResponse,
  decodeInitLoadResponse,
  decodePurseData,
  decodeStartupData,
  encodeInitLoadCommand,
  encodePinBlock,
  type DebitResponse,
  type InitLoadResponse,
  type PurseData,
  type StartupData,
} from '../crypto/purse-apdu.ts';
import {
  LoadResult,
  LoadType,
  loadS2FieldsFromS1,
  loadS3FieldsFor,
  type LoadS1Fields,
  type LoadS3Fields,
} from '../crypto/purse-mac.ts';
import { PurselabError } from '../errors.ts';
import { command as apdu } from '../apdu/command.ts';
import type { CardChannel } from '../transport/channel.ts';
import { CardStatusError, decodeResponse, exchange } from './errors.ts';

export type PurseKind = 'money' | 'points';

const p1Of = (purse: PurseKind): number => (purse === 'points' ? PurseP1.POINTS : PurseP1.MONEY);

export async function selectPurse(card: CardChannel): Promise<void> {
  await exchange(card, 'card', 'SELECT purse', apdu(CLA_ISO, 0xa4, 0x04, 0x00, IEP_AID, 256));
}

/** READ PURSE DATA: everything needed to show the card (no session, nothing changes). */
export async function readPurse(card: CardChannel, options: { select?: boolean } = {}): Promise<PurseData> {
  if (options.select !== false) await selectPurse(card);
  const data = await exchange(card, 'card', 'READ PURSE DATA', apdu(CLA_PROPRIETARY, IepIns.READ_PURSE_DATA, 0, 0, undefined, 256));
  return decodeResponse('card', 'READ PURSE DATA', data, decodePurseData);
}

export interface StartupInfo {
  readonly startup: StartupData;
  /** The 27 bytes exactly as the card sent them (the PSAM takes them verbatim). */
  readonly raw: Buffer;
}

/** INITIALIZE FOR PURCHASE: the start-up data (opens the card's purchase session). */
export async function initializeForPurchase(card: CardChannel, options: { purse?: PurseKind; select?: boolean; pin?: string | undefined } = {}): Promise<StartupInfo> {
  if (options.pin !== undefined) {
    // SELECT, VERIFY, then INITIALIZE FOR PURCHASE in the same selection (a VERIFY after it would end the session)
    await selectPurse(card);
    await verifyPin(card, options.pin);
  } else if (options.select !== false) await selectPurse(card);
  const raw = await exchange(card, 'card', 'INITIALIZE FOR PURCHASE', apdu(CLA_PROPRIETARY, IepIns.INITIALIZE_FOR_PURCHASE, p1Of(options.purse ?? 'money'), 0, undefined, 256));
  return { startup: decodeResponse('card', 'INITIALIZE FOR PURCHASE', raw, decodeStartupData), raw: Buffer.from(raw) };
}

export class PinError extends PurselabError {
  readonly triesLeft: number | undefined;
  readonly sw: number;
  constructor(sw: number, triesLeft: number | undefined, message: string) {
    super(sw === 0x6983 ? 'PIN_BLOCKED' : 'PIN_WRONG', message);
    this.sw = sw;
    this.triesLeft = triesLeft;
  }
}

/** VERIFY the cardholder PIN (before INITIALIZE FOR PURCHASE: a VERIFY ends the purchase session). */
export async function verifyPin(card: CardChannel, pin: string): Promise<void> {
  const r = await card.transmit(apdu(CLA_ISO, IepIns.VERIFY, 0x00, PIN_REFERENCE, encodePinBlock(pin)));
  if (r.sw === 0x9000) return;
  if ((r.sw & 0xfff0) === 0x63c0) throw new PinError(r.sw, r.sw & 0x0f, `wrong PIN: ${r.sw & 0x0f} tries left`);
  if (r.sw === 0x6983) throw new PinError(r.sw, 0, 'the PIN is blocked: the issuer must reset it');
  throw new CardStatusError('card', 'VERIFY', r.sw);
}

/** DEBIT with the PSAM's DEBIT data (42 bytes, verbatim); needs the session of initializeForPurchase. */
export async function debitCard(card: CardChannel, txType: number, debitData: Uint8Array): Promise<DebitResponse> {
  const data = await exchange(card, 'card', 'DEBIT', apdu(CLA_PROPRIETARY, IepIns.DEBIT, txType, 0, debitData, 256));
  return decodeResponse('card', 'DEBIT', data, decodeDebitResponse);
}

// ---------------------------------------------------------------------------------------------
// Load (card side)

export interface LoadRequest {
  /** Minor units (points for the points purse). */
  amount: number;
  currency: number;
  exponent: number;
  /** YYYYMMDD and HHMMSS of the load request. */
  date: string;
  time: string;
  /** The load server's transaction id / challenge (8 bytes, fresh and unpredictable). */
  loadTxnId: Uint8Array;
  purse?: PurseKind;
}

export interface CardLoadInit {
  readonly purse: PurseKind;
  readonly enquiry: boolean;
  /** The card's INITIALIZE FOR LOAD response. */
  readonly response: InitLoadResponse;
  readonly s1: Buffer;
  /** Every field S1 covers: with `s1`, what the load server (issuer HSM) verifies. */
  readonly s1Fields: LoadS1Fields;
}

function s1FieldsOf(r: InitLoadResponse, q: LoadRequest, loadType: number): LoadS1Fields {
  return {
    loadType,
    alg: r.alg,
    keyVersion: r.keyVersion,
    cardId: r.cardId,
    counter: r.counter,
    amount: q.amount,
    currency: r.currency,
    exponent: r.exponent,
    balance: r.balance,
    maxBalance: r.maxBalance,
    expiry: r.expiry,
    date: q.date,
    time: q.time,
    loadTxnId: Buffer.from(q.loadTxnId),
    cardChallenge: r.cardChallenge,
    lastLoadTxnId: r.lastLoadTxnId,
    lastLoadCounter: r.lastLoadCounter,
    lastLoadAmount: r.lastLoadAmount,
  };
}

async function initLoad(card: CardChannel, q: LoadRequest, enquiry: boolean, select: boolean): Promise<CardLoadInit> {
  if (select) await selectPurse(card);
  const purse = q.purse ?? 'money';
  const name = enquiry ? 'INITIALIZE FOR LOAD (zero-value enquiry)' : 'INITIALIZE FOR LOAD';
  const cmd = encodeInitLoadCommand({ ...q, loadTxnId: Buffer.from(q.loadTxnId) });
  const data = await exchange(card, 'card', name, apdu(CLA_PROPRIETARY, IepIns.INITIALIZE_FOR_LOAD, p1Of(purse), enquiry ? LoadP2.ENQUIRY : LoadP2.LOAD, cmd, 256));
  const response = decodeResponse('card', name, data, decodeInitLoadResponse);
  const loadType = (purse === 'points' ? LoadType.POINTS_LOAD : LoadType.LOAD) | (enquiry ? 0x80 : 0);
  return { purse, enquiry, response, s1: response.s1, s1Fields: s1FieldsOf(response, q, loadType) };
}

/** INITIALIZE FOR LOAD: S1 and the fields of the Load Request (opens the card's load session). */
export function initializeForLoad(card: CardChannel, q: LoadRequest, options: { select?: boolean } = {}): Promise<CardLoadInit> {
  if (!(q.amount > 0)) throw new PurselabError('BAD_AMOUNT', 'a load amount must be at least 1 minor unit (the zero-value request is requestZeroValueLoad)');
  return initLoad(card, q, false, options.select !== false);
}

/**
 * The zero-value load request of the failed-load recovery (INITIALIZE FOR LOAD, P2 = 01): a fresh S1 over the
 * card's current counter, balance and last credited load. `original` is the failed load's request (its currency,
 * exponent, date and time are repeated); `enquiryTxnId` is the load server's fresh random challenge.
 */
export function requestZeroValueLoad(card: CardChannel, original: LoadRequest, enquiryTxnId: Uint8Array, options: { select?: boolean } = {}): Promise<CardLoadInit> {
  return initLoad(card, { ...original, amount: 0, loadTxnId: enquiryTxnId }, true, options.select !== false);
}

export interface CardLoadCredit {
  /** LoadResult: 00 credited, 01 S2 invalid, 02 max balance, 03 expired, 04 blocked. */
  readonly result: number;
  readonly credited: boolean;
  readonly newCounter: number;
  readonly newBalance: number;
  readonly s3: Buffer;
  /** Every field S3 covers: with `s3`, what the issuer verifies. */
  readonly s3Fields: LoadS3Fields;
}

export const LOAD_RESULT_TEXT: Readonly<Record<number, string>> = {
  [LoadResult.CREDITED]: 'credited',
  [LoadResult.S2_INVALID]: 'S2 not valid',
  [LoadResult.MAX_BALANCE_EXCEEDED]: 'maximum balance would be exceeded',
  [LoadResult.CARD_EXPIRED]: 'card expired',
  [LoadResult.PURSE_BLOCKED]: 'purse blocked',
};

/** CREDIT FOR LOAD with the issuer's S2; needs the session of initializeForLoad. The card answers 9000 for every result code. */
export async function creditForLoad(card: CardChannel, init: CardLoadInit, s2: Uint8Array): Promise<CardLoadCredit> {
  const data = await exchange(card, 'card', 'CREDIT FOR LOAD', apdu(CLA_PROPRIETARY, IepIns.CREDIT_FOR_LOAD, p1Of(init.purse), 0, s2, 256));
  const r = decodeResponse('card', 'CREDIT FOR LOAD', data, decodeCreditResponse);
  const s3Fields = loadS3FieldsFor(loadS2FieldsFromS1(init.s1Fields), r.result, r.newCounter, r.newBalance);
  return { result: r.result, credited: r.result === LoadResult.CREDITED, newCounter: r.newCounter, newBalance: r.newBalance, s3: r.s3, s3Fields };
}
