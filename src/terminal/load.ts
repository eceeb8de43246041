// A load between a purse (card) and the issuer (seed 003 FIG. 17 / 18A-D): the card side runs here over a
// CardChannel; the issuer side (verify S1, generate S2, verify S3, read a zero-value enquiry) is a LoadIssuer,
// normally the HSM bridge's payment operations (issuerFromPaymentOps).
//
//   card:   INITIALIZE FOR LOAD -> S1 + the Load Request fields
//   issuer: verify S1 -> S2
//   card:   CREDIT FOR LOAD(S2) -> result code, NEWCTR, NEWBAL, S3
//   issuer: verify S3 (whatever the result code: a refusal is signed too)
//
// Failed-load recovery (docs/purse-applet.md): when the credit answer is lost or not trusted, recoverLoad asks
// the card for a zero-value load request with a fresh issuer challenge and lets the issuer read, from a verified
// S1, whether the original load was credited.

import { loadS2FieldsFromS1, type LoadS1Fields, type LoadS2Fields, type LoadS3Fields } from '../crypto/purse-mac.ts';
import { PurselabError } from '../errors.ts';
import type { CardChannel } from '../transport/channel.ts';
import { creditForLoad, initializeForLoad, LOAD_RESULT_TEXT, requestZeroValueLoad, type CardLoadCredit, type CardLoadInit, type LoadRequest } from './purse.ts';

/** The issuer's side of a load (a load server with its HSM). */
export interface LoadIssuer {
  /** Verify the card's S1 (LTYPE 01/02). */
  verifyS1(fields: LoadS1Fields, s1: Buffer): Promise<boolean>;
  /** The S2 that authorises the load whose S1 verified. */
  generateS2(fields: LoadS1Fields): Promise<Buffer>;
  /** Verify the card's S3 after CREDIT FOR LOAD. */
  verifyS3(fields: LoadS3Fields, s3: Buffer): Promise<boolean>;
  /** Verify a zero-value enquiry S1 (LTYPE 81/82); `credited` says whether `pendingLoadTxnId` is the card's last credited load. */
  verifyEnquiryS1(fields: LoadS1Fields, s1: Buffer, pendingLoadTxnId: Buffer): Promise<{ valid: boolean; credited?: boolean }>;
}

/** The structural part of hsm-bridge's PaymentOps that a LoadIssuer needs. */
export interface PaymentOpsLike {
  verifyS1(fields: LoadS1Fields, s1: Buffer): Promise<boolean>;
  generateS2(fields: LoadS2Fields): Promise<Buffer>;
  verifyS3(fields: LoadS3Fields, s3: Buffer): Promise<boolean>;
  verifyEnquiryS1(fields: LoadS1Fields, s1: Buffer, pendingLoadTxnId?: Buffer): Promise<{ valid: boolean; credited?: boolean }>;
}

/** A LoadIssuer over the HSM bridge's payment operations (`paymentOps(hsm)` of hsm-bridge/payment.ts). */
export function issuerFromPaymentOps(ops: PaymentOpsLike): LoadIssuer {
  return {
    verifyS1: (f, s1) => ops.verifyS1(f, s1),
    generateS2: (f) => ops.generateS2(loadS2FieldsFromS1(f)),
    verifyS3: (f, s3) => ops.verifyS3(f, s3),
    verifyEnquiryS1: (f, s1, pending) => ops.verifyEnquiryS1(f, s1, pending),
  };
}

export interface LoadResultInfo {
  readonly cardId: string;
  /** Card result code (00 credited, 01 S2 invalid, 02 max balance, 03 expired, 04 blocked). */
  readonly result: number;
  readonly resultText: string;
  readonly credited: boolean;
  /** The issuer verified the card's S3: the result code is the card's word. */
  readonly s3Verified: boolean;
  readonly amount: number;
  readonly counterBefore: number;
  readonly newCounter: number;
  readonly balanceBefore: number;
  readonly newBalance: number;
  readonly init: CardLoadInit;
  readonly credit: CardLoadCredit;
  readonly s2: Buffer;
}

export type LoadOutcome = 'refused' | 'credit-unknown';
export type LoadStage = 'card-init' | 'issuer-s1' | 'card-credit';

export class LoadError extends PurselabError {
  readonly outcome: LoadOutcome;
  readonly stage: LoadStage;
  readonly init: CardLoadInit | undefined;
  readonly s2: Buffer | undefined;
  constructor(outcome: LoadOutcome, stage: LoadStage, message: string, details: { init?: CardLoadInit | undefined; s2?: Buffer | undefined; cause?: unknown } = {}) {
    super(outcome === 'refused' ? 'LOAD_REFUSED' : 'LOAD_CREDIT_UNKNOWN', message, details.cause !== undefined ? { cause: details.cause } : undefined);
    this.outcome = outcome;
    this.stage = stage;
    this.init = details.init;
    this.s2 = details.s2;
  }
}

/** Run a load: S1 from the card, S2 from the issuer, S3 and the result code from the card, S3 checked by the issuer. */
export async function runLoad(card: CardChannel, issuer: LoadIssuer, q: LoadRequest): Promise<LoadResultInfo> {
  let init: CardLoadInit;
  try {
    init = await initializeForLoad(card, q);
  } catch (e) {
    throw new LoadError('refused', 'card-init', `the card refused the load request: ${(e as Error).message}; nothing was credited`, { cause: e });
  }
  if (!(await issuer.verifyS1(init.s1Fields, init.s1))) {
    throw new LoadError('refused', 'issuer-s1', 'the issuer refused the card: S1 does not verify; nothing was credited', { init });
  }
  const s2 = await issuer.generateS2(init.s1Fields);
  let credit: CardLoadCredit;
  try {
    credit = await creditForLoad(card, init, s2);
  } catch (e) {
    throw new LoadError('credit-unknown', 'card-credit', `no usable answer to CREDIT FOR LOAD (${(e as Error).message}): run the failed-load recovery (recoverLoad)`, { init, s2, cause: e });
  }
  const s3Verified = await issuer.verifyS3(credit.s3Fields, credit.s3);
  const r = init.response;
  return {
    cardId: r.cardId,
    result: credit.result,
    resultText: LOAD_RESULT_TEXT[credit.result] ?? `result ${credit.result}`,
    credited: credit.credited && s3Verified,
    s3Verified,
    amount: q.amount,
    counterBefore: r.counter,
    newCounter: credit.newCounter,
    balanceBefore: r.balance,
    newBalance: credit.newBalance,
    init,
    credit,
    s2,
  };
}

export interface LoadRecovery {
  /** The enquiry S1 verified: the answer is the card's word. */
  readonly verified: boolean;
  /** The original load reached the card (its LTXID is the card's last credited load). */
  readonly credited: boolean;
  /** The card's counter did not move since the original S1 (so a failure is final: the old S2 is dead). */
  readonly counterUnchanged: boolean;
  readonly enquiry: CardLoadInit;
  readonly summary: string;
}

/**
 * Failed-load recovery: a zero-value load request (fresh issuer challenge `enquiryTxnId`) and the issuer's
 * reading of it. `original` is the failed load's request; `originalInit` its INITIALIZE FOR LOAD result.
 */
export async function recoverLoad(card: CardChannel, issuer: LoadIssuer, original: LoadRequest, originalInit: CardLoadInit, enquiryTxnId: Uint8Array): Promise<LoadRecovery> {
  const enquiry = await requestZeroValueLoad(card, original, enquiryTxnId);
  const f = enquiry.s1Fields;
  const check = await issuer.verifyEnquiryS1(f, enquiry.s1, Buffer.from(original.loadTxnId));
  const counterUnchanged = f.counter === originalInit.s1Fields.counter;
  if (!check.valid) {
    return { verified: false, credited: false, counterUnchanged, enquiry, summary: 'the enquiry S1 does not verify: the outcome stays unresolved; retry, never guess' };
  }
  const credited = check.credited === true;
  const summary = credited
    ? `the load was credited (card counter ${f.lastLoadCounter}, amount ${f.lastLoadAmount}): settle it`
    : counterUnchanged
      ? 'the load did not happen and never can (the enquiry replaced the load session): do not debit the funding account'
      : `the load did not happen; the card counter moved on (${originalInit.s1Fields.counter} -> ${f.counter}): log for review`;
  return { verified: true, credited, counterUnchanged, enquiry, summary };
}
