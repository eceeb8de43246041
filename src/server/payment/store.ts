// What the payment server keeps (payments with their state, the event log, the ledger of approved payments,
// re-credit claims, closed batches), as a narrow async interface: the flows only see this, so a PostgreSQL
// implementation can replace the SQLite one (sqlite-store.ts) without touching a flow.
//
// Payment states (saved BEFORE the step a crash could cut; docs/payment-server.md):
//   received -> psam-assigned -> debit-issued -> debit-response-received -> completed
//   (taking a PSAM is invisible outside the server: the flows now go from received straight to debit-issued,
//   logging the psam-assigned event in that write; the state remains for stores written by older versions)
//   any of them -> failed (clearly: nothing debited, or the card refused, or S3 did not verify)
//   debit-issued -> debit-unknown (S2 was handed out, no result was produced: the card may be debited;
//                                  in the recovery report, eligible for a re-credit claim)

import type { Order, PaymentVariant } from '../../protocol/payment-messages.ts';
import { PurselabError } from '../../errors.ts';

export type PaymentState = 'received' | 'psam-assigned' | 'debit-issued' | 'debit-response-received' | 'completed' | 'failed' | 'debit-unknown';
export const PAYMENT_STATES: readonly PaymentState[] = ['received', 'psam-assigned', 'debit-issued', 'debit-response-received', 'completed', 'failed', 'debit-unknown'];

/** What a payment is for: the merchant's order (transaction id, kind, amount, currency, exponent). */
export type OrderTerms = Pick<Order, 'merchantId' | 'txnId' | 'kind' | 'amount' | 'currency' | 'exponent'>;

export interface PaymentRow extends OrderTerms {
  readonly paymentId: string;
  readonly variant: PaymentVariant;
  readonly encrypted: boolean;
  readonly state: PaymentState;
  /** Why it failed / is unknown (a code such as INSUFFICIENT_FUNDS, S3_INVALID, HOLD_TIMEOUT). */
  readonly reason: string | null;
  /** The full card id (kept for re-credit claims; never logged: maskCardId). */
  readonly cardId: string | null;
  /** The card's counter in its start-up data (the debit makes it + 1). */
  readonly cardCounter: number | null;
  /** The card's start-up data (hex), for the PSAM. */
  readonly startup: string | null;
  readonly psamId: string | null;
  readonly psamTxn: number | null;
  readonly txType: number | null;
  readonly debitData: string | null;
  readonly expectedS3: string | null;
  /** The card's DEBIT response data (NEWCTR NEWBAL CVR S3), hex. */
  readonly debitResponse: string | null;
  /** FIG. 9: ETSK as received (the TSK is recovered from it with the derived key when needed). */
  readonly etsk: string | null;
  /** The PSAM's log record is confirmed (VERIFY S3 ran). */
  readonly psamConfirmed: boolean;
  /** The DebitResultResponse handed out (JSON), so a repeated request gets the same answer. */
  readonly resultJson: string | null;
  readonly createdAt: string;
  readonly updatedAt: string;
}

export type NewPayment = Pick<PaymentRow, 'paymentId' | 'merchantId' | 'txnId' | 'kind' | 'variant' | 'encrypted' | 'amount' | 'currency' | 'exponent' | 'cardId' | 'cardCounter' | 'startup' | 'etsk'>;

/** Fields a transition may set. */
export type PaymentPatch = Partial<Pick<PaymentRow, 'reason' | 'psamId' | 'psamTxn' | 'txType' | 'debitData' | 'expectedS3' | 'debitResponse' | 'psamConfirmed' | 'resultJson'>>;

export interface PaymentEvent {
  readonly id: number;
  readonly paymentId: string | null;
  readonly at: string;
  readonly type: string;
  readonly detail: Record<string, unknown>;
}

/** A completed payment as booked for collection: the order's what-and-how-much, and the PSAM record behind it. */
export interface LedgerEntry extends OrderTerms {
  readonly paymentId: string;
  readonly psamId: string;
  readonly psamTxn: number;
  readonly completedAt: string;
  /** The collection (closed PSAM batch) it went into. */
  readonly batchId: number | null;
}

export interface RecreditRecord {
  readonly paymentId: string;
  readonly amount: number;
  readonly currency: number;
  readonly exponent: number;
  /** The sealed RecreditClaim (JSON of the envelope). */
  readonly claimJson: string;
  readonly issuedAt: string;
}

export interface BatchRecordRow {
  readonly id: number;
  readonly psamId: string;
  readonly batchNumber: number;
  readonly recordCount: number;
  readonly confirmedSum: number;
  readonly ledgerSum: number;
  readonly macVerified: boolean | null;
  readonly ledgerMatches: boolean;
  readonly file: string | null;
  readonly collectionJson: string;
  readonly closedAt: string;
}

export class DuplicateTransactionError extends PurselabError {
  constructor(merchantId: string, txnId: string) {
    super('DRAW_REPLAYED', `merchant ${merchantId} already sent a draw request for transaction ${txnId}`);
  }
}

export interface PaymentStore {
  /** Insert a payment in state 'received' (DuplicateTransactionError when the merchant used the txnId before). */
  insertReceived(p: NewPayment, event: Record<string, unknown>): Promise<void>;
  /**
   * Move a payment to `to` if it is in one of `from` (checked inside the write), set `patch`, and log `eventType`.
   * With `ledger`, the ledger entry is written in the same transaction. False when the state did not match.
   */
  transition(
    paymentId: string,
    from: readonly PaymentState[],
    to: PaymentState,
    patch: PaymentPatch,
    eventType: string,
    detail?: Record<string, unknown>,
    ledger?: Omit<LedgerEntry, 'batchId'>,
    /** Events logged just before this one, in the same write (a step that needed no save of its own). */
    eventsBefore?: readonly { readonly type: string; readonly detail: Record<string, unknown> }[],
  ): Promise<boolean>;
  /** Set fields without a state change (e.g. psamConfirmed after a late VERIFY S3), with an event. */
  patch(paymentId: string, patch: PaymentPatch, eventType: string, detail?: Record<string, unknown>): Promise<void>;
  get(paymentId: string): Promise<PaymentRow | undefined>;
  findByPsamTxn(psamId: string, psamTxn: number): Promise<PaymentRow | undefined>;
  listByState(states: readonly PaymentState[]): Promise<PaymentRow[]>;
  /** Completed payments whose PSAM record is not confirmed yet (early-release variants). */
  listUnconfirmed(): Promise<PaymentRow[]>;
  countByState(): Promise<Record<string, number>>;
  logEvent(paymentId: string | null, type: string, detail?: Record<string, unknown>): Promise<void>;
  events(paymentId: string): Promise<PaymentEvent[]>;
  ledger(filter?: { psamId?: string; unbatched?: boolean }): Promise<LedgerEntry[]>;
  /** Record a claim; false when the payment already has one. */
  insertRecredit(r: RecreditRecord): Promise<boolean>;
  getRecredit(paymentId: string): Promise<RecreditRecord | undefined>;
  listRecredits(): Promise<RecreditRecord[]>;
  /** Save a closed batch and mark its ledger entries as collected; returns the batch id. */
  insertBatch(b: Omit<BatchRecordRow, 'id'>, ledgerPaymentIds: readonly string[]): Promise<number>;
  findBatch(psamId: string, batchNumber: number): Promise<BatchRecordRow | undefined>;
  getBatch(id: number): Promise<BatchRecordRow | undefined>;
  listBatches(): Promise<BatchRecordRow[]>;
  close(): Promise<void>;
}
