// After a crash, a lost PSAM or a client that never came back: which payments need a person (the recovery
// report), and the re-credit claim for a card that was debited without a Debit Result reaching the merchant
// (seed 003 L311): a RecreditClaim sealed with the key shared with the issuer's load server, one per payment,
// logged as a re-credit (never as a load). Works on the store alone, so `purselab payment report --db` can
// run while the server is down.

import { Label, type RecreditClaim } from '../../protocol/payment-messages.ts';
import { seal, type Envelope } from '../../protocol/envelope.ts';
import { maskCardId } from '../../terminal/amount.ts';
import { conflict } from '../app.ts';
import type { PaymentRow, PaymentStore, RecreditRecord } from './store.ts';

export interface RecoveryEntry {
  readonly paymentId: string;
  readonly merchantId: string;
  readonly txnId: string;
  readonly variant: string;
  readonly kind: string;
  readonly state: string;
  readonly reason: string | null;
  readonly amount: number;
  readonly currency: number;
  readonly exponent: number;
  /** Masked. */
  readonly card: string | null;
  /** The card's counter after the debit in question (start-up CTR + 1). */
  readonly cardCounter: number | null;
  readonly psamId: string | null;
  readonly psamTxn: number | null;
  readonly updatedAt: string;
  /** What an operator should know / do. */
  readonly action: string;
  readonly recreditEligible: boolean;
  readonly recreditIssuedAt: string | null;
}

export interface RecoveryReport {
  readonly generatedAt: string;
  readonly counts: Record<string, number>;
  /** Payments whose card may be debited without a Debit Result reaching the merchant, or whose S3 awaits its PSAM. */
  readonly entries: RecoveryEntry[];
  /** Completed payments whose PSAM log record is not confirmed yet (the S3 is kept and posted when the PSAM is back). */
  readonly unconfirmedPsamRecords: number;
  readonly recredits: { paymentId: string; amount: number; currency: number; exponent: number; issuedAt: string }[];
}

/** A card debited (or possibly debited) with no approved result: debit unknown, or S3 refused after the DEBIT. */
export function recreditEligible(p: PaymentRow): boolean {
  if (p.kind === 'authentication' || p.amount === 0 || p.cardId === null || p.psamTxn === null) return false;
  return p.state === 'debit-unknown' || (p.state === 'failed' && p.reason === 'S3_INVALID');
}

function actionFor(p: PaymentRow): string {
  if (p.state === 'debit-response-received') return "the card's S3 is stored: it is verified with its PSAM when that PSAM is in service (automatic)";
  if (p.state === 'debit-unknown') return 'S2 was handed out but no result was produced: the card may be debited; the client can still post the debit response, or issue a re-credit claim';
  return "the card's S3 did not verify after a DEBIT: if the card was debited (its counter), issue a re-credit claim";
}

export async function buildRecoveryReport(store: PaymentStore, now = new Date()): Promise<RecoveryReport> {
  const rows = [...(await store.listByState(['debit-unknown', 'debit-response-received'])), ...(await store.listByState(['failed'])).filter((p) => p.reason === 'S3_INVALID')];
  const recredits = await store.listRecredits();
  const issued = new Map(recredits.map((r) => [r.paymentId, r.issuedAt]));
  return {
    generatedAt: now.toISOString(),
    counts: await store.countByState(),
    entries: rows.map((p) => ({
      paymentId: p.paymentId,
      merchantId: p.merchantId,
      txnId: p.txnId,
      variant: p.variant,
      kind: p.kind,
      state: p.state,
      reason: p.reason,
      amount: p.amount,
      currency: p.currency,
      exponent: p.exponent,
      card: p.cardId ? maskCardId(p.cardId) : null,
      cardCounter: p.cardCounter === null ? null : p.cardCounter + 1,
      psamId: p.psamId,
      psamTxn: p.psamTxn,
      updatedAt: p.updatedAt,
      action: actionFor(p),
      recreditEligible: recreditEligible(p) && !issued.has(p.paymentId),
      recreditIssuedAt: issued.get(p.paymentId) ?? null,
    })),
    unconfirmedPsamRecords: (await store.listUnconfirmed()).length,
    recredits: recredits.map((r) => ({ paymentId: r.paymentId, amount: r.amount, currency: r.currency, exponent: r.exponent, issuedAt: r.issuedAt })),
  };
}

export interface IssuedRecredit {
  readonly paymentId: string;
  readonly amount: number;
  readonly currency: number;
  readonly exponent: number;
  readonly issuedAt: string;
  /** seal(issuerLinkKey, RECREDIT_CLAIM, RecreditClaim): for the issuer's load server. */
  readonly claim: Envelope;
  /** False when the claim was issued before (the same claim is returned: one per payment). */
  readonly created: boolean;
}

/** Issue (or return the already issued) re-credit claim of one payment. 409 when it is not eligible. */
export async function issueRecreditClaim(store: PaymentStore, issuerLinkKey: Buffer | undefined, paymentId: string, now = new Date()): Promise<IssuedRecredit> {
  const existing = await store.getRecredit(paymentId);
  if (existing) return fromRecord(existing, false);
  if (!issuerLinkKey) throw conflict('NO_ISSUER_LINK', 'no issuerLinkKey in the configuration: re-credit claims cannot be sealed');
  const p = await store.get(paymentId);
  if (!p) throw conflict('UNKNOWN_PAYMENT', `no payment ${paymentId}`);
  if (!recreditEligible(p)) throw conflict('RECREDIT_NOT_ELIGIBLE', `payment ${paymentId} is ${p.state}${p.reason ? ` (${p.reason})` : ''}: only a card debited without an approved result can be credited back`);
  const claim: RecreditClaim = {
    paymentId: p.paymentId,
    merchantId: p.merchantId,
    txnId: p.txnId,
    cardId: p.cardId!,
    amount: p.amount,
    currency: p.currency,
    exponent: p.exponent,
    cardCounter: p.cardCounter! + 1,
    psamId: p.psamId!,
    psamTxn: p.psamTxn!,
    reason: p.reason ?? p.state,
    issuedAt: now.toISOString(),
  };
  const record: RecreditRecord = { paymentId, amount: p.amount, currency: p.currency, exponent: p.exponent, claimJson: JSON.stringify(seal(issuerLinkKey, Label.RECREDIT_CLAIM, claim)), issuedAt: claim.issuedAt };
  if (!(await store.insertRecredit(record))) return fromRecord((await store.getRecredit(paymentId))!, false);
  return fromRecord(record, true);
}

function fromRecord(r: RecreditRecord, created: boolean): IssuedRecredit {
  return { paymentId: r.paymentId, amount: r.amount, currency: r.currency, exponent: r.exponent, issuedAt: r.issuedAt, claim: JSON.parse(r.claimJson) as Envelope, created };
}
