// The issuer's judgement of a card's answers, shared by loads (service.ts) and re-credits (recredit.ts):
// whether a positive Load Response is a verified credit, and the negative-result handling of seed 003
// (L629-634) on a zero-value Load Request. Pure rules over a LoadIssuer (the HSM); no store, no HTTP.

import { LoadResult, LoadType, loadS2FieldsFromS1, loadS3FieldsFor, type LoadS1Fields } from '../../crypto/purse-mac.ts';
import { s1FieldsOfBody, type CardLoadResponse, type LoadBasis, type LoadStatus, type ZeroValueLoadRequest } from '../../protocol/load-messages.ts';
import type { LoadIssuer } from '../../terminal/load.ts';

/** A positive Load Response is a credit when NEWCTR/NEWBAL are the credit's and the HSM verifies S3 over them. */
export async function verifiedCredit(issuer: LoadIssuer, orig: LoadS1Fields, resp: CardLoadResponse): Promise<boolean> {
  if (resp.result !== LoadResult.CREDITED || resp.newCounter !== orig.counter + 1 || resp.newBalance !== orig.balance + orig.amount) return false;
  return issuer.verifyS3(loadS3FieldsFor(loadS2FieldsFromS1(orig), resp.result, resp.newCounter, resp.newBalance), Buffer.from(resp.s3, 'hex'));
}

/** What differs between a zero-value Load Request and the original (seed 003: counter, card, currency, exponent, date/time). */
export function zeroValueMismatch(orig: LoadS1Fields, enquiryTxnId: string, z: ZeroValueLoadRequest): string[] {
  const o = z.original;
  const zv = z.zeroValue;
  return [
    o.counter !== orig.counter && 'transaction counter',
    o.cardId !== orig.cardId && 'card number',
    (o.currency !== orig.currency || o.exponent !== orig.exponent) && 'currency/exponent',
    (o.date !== orig.date || o.time !== orig.time) && 'date/time',
    (zv.cardId !== orig.cardId || zv.currency !== orig.currency || zv.exponent !== orig.exponent || zv.date !== orig.date || zv.time !== orig.time) && 'zero-value request fields',
    (zv.loadType !== LoadType.ENQUIRY || zv.amount !== 0) && 'zero-value request type/amount',
    zv.loadTxnId.toUpperCase() !== enquiryTxnId.toUpperCase() && 'enquiry challenge',
  ].filter((x): x is string => typeof x === 'string');
}

export interface ZeroValueVerdict {
  readonly status: LoadStatus;
  readonly basis: LoadBasis;
  readonly resultCode: number;
  readonly cardCounter: number;
  /** Set when the card moved on since the original (logged for review). */
  readonly review?: string;
}

/**
 * The verdict on a zero-value Load Request whose fields matched (zeroValueMismatch empty), or undefined when
 * nothing verifies (unresolved: retry, never guess):
 *   1. the new S1 against the values the card would hold had the load failed -> valid: not loaded;
 *   2. invalid: the result code is rewritten to success and the original S3 verified as a credit -> loaded;
 *   3. no such S3 (answer lost) or it fails: the S1 over the card's reported state; its last-load record says
 *      whether this load was credited.
 */
export async function judgeZeroValue(issuer: LoadIssuer, orig: LoadS1Fields, enquiryTxnId: string, z: ZeroValueLoadRequest): Promise<ZeroValueVerdict | undefined> {
  const zv = z.zeroValue;
  const s1 = Buffer.from(zv.s1, 'hex');
  const pending = Buffer.from(orig.loadTxnId);
  const ifFailed: LoadS1Fields = { ...orig, loadType: LoadType.ENQUIRY, amount: 0, loadTxnId: Buffer.from(enquiryTxnId, 'hex'), cardChallenge: Buffer.from(zv.cardChallenge, 'hex') };
  if ((await issuer.verifyEnquiryS1(ifFailed, s1, pending)).valid) {
    return { status: 'not-loaded', basis: 'zero-value-failed', resultCode: z.response?.result ?? -1, cardCounter: orig.counter };
  }
  if (z.response && (await verifiedCredit(issuer, orig, { ...z.response, result: LoadResult.CREDITED, newCounter: orig.counter + 1, newBalance: orig.balance + orig.amount }))) {
    return { status: 'loaded', basis: 's3-rewritten', resultCode: LoadResult.CREDITED, cardCounter: orig.counter + 1 };
  }
  const observed = await issuer.verifyEnquiryS1(s1FieldsOfBody(zv), s1, pending);
  if (!observed.valid) return undefined;
  const credited = observed.credited === true && zv.lastLoadCounter === orig.counter + 1 && zv.lastLoadAmount === orig.amount;
  if (credited) return { status: 'loaded', basis: 'zero-value-credited', resultCode: LoadResult.CREDITED, cardCounter: zv.lastLoadCounter };
  return {
    status: 'not-loaded',
    basis: 'zero-value-failed',
    resultCode: z.response?.result ?? -1,
    cardCounter: zv.counter,
    ...(zv.counter !== orig.counter ? { review: `card counter moved on since the load (${orig.counter} -> ${zv.counter})` } : {}),
  };
}
