// The load server's rules (seed 003 steps 877-899 and the negative-result handling), apart from HTTP: the
// routes in app.ts only validate JSON and call these. The issuer side is a LoadIssuer (src/terminal/load.ts)
// over the HSM bridge (issuerFromPaymentOps(paymentOps(hsm))): verify S1, generate S2 (Credit IEP), verify S3,
// verify a zero-value S1. Every step a crash could cut is saved first (store.ts); `crashAt` lets the tests
// kill the process at each of those points.
//
// Negative-result handling: the zero-value Load Request must repeat the original counter, card, currency,
// exponent, date and time (else rejected). The HSM verifies its new S1 against the values the card would hold
// had the load failed (original counter, balance and last-load record, the enquiry challenge): valid = the
// failure is real (not loaded, no settlement). Invalid = the result code is rewritten to success and the
// original S3 verified as a credit; without that S3 (answer lost) the S1 is verified over the card's reported
// state, whose last-load record says whether this load was credited. Nothing verifies: unresolved, retry.

import { randomBytes } from 'node:crypto';
import { LoadResult, LoadType } from '../../crypto/purse-mac.ts';
import { judgeZeroValue, verifiedCredit, zeroValueMismatch } from './judge.ts';
import { macOf, seal, verifyMacOf } from '../../protocol/envelope.ts';
import { deriveTransactionKey, unwrapSessionKey } from '../../protocol/keys.ts';
import {
  LoadLabel,
  s1FieldsOfBody,
  statusQueryPayload,
  type BankStatusAnswer,
  type BankStatusQuery,
  type CardLoadResponse,
  type CreditIepMessage,
  type LoadBasis,
  type LoadOutcomeMessage,
  type LoadProgress,
  type LoadRequestBody,
  type LoadRequestMessage,
  type LoadResultPayload,
  type ZeroValueLoadRequest,
} from '../../protocol/load-messages.ts';
import { maskCardId } from '../../terminal/amount.ts';
import type { LoadIssuer } from '../../terminal/load.ts';
import { badRequest, conflict, forbidden, HttpError, notFound } from '../app.ts';
import type { LoadServerConfig } from './config.ts';
import type { LoadRow, LoadStore } from './store.ts';

/** The points of a load where a crash is survivable and tested (PURSELAB_LOAD_CRASH_AT). */
export const CRASH_POINTS = ['received', 's1-verified', 's2-saved', 's3-verified', 'result-saved'] as const;
export type CrashPoint = (typeof CRASH_POINTS)[number];

export interface LoadServiceOptions {
  readonly store: LoadStore;
  readonly issuer: LoadIssuer;
  readonly config: LoadServerConfig;
  readonly now?: () => Date;
  /** Called at each crash point (tests: kill the process there). */
  readonly crashAt?: (point: CrashPoint) => void;
  /** Audit lines (pino child logger in the server); never keys or full card numbers. */
  readonly log?: (event: string, detail: Record<string, unknown>) => void;
}

const unprocessable = (code: string, message: string) => new HttpError(422, code, message);

export class LoadService {
  private readonly o: LoadServiceOptions;
  private readonly now: () => Date;

  constructor(options: LoadServiceOptions) {
    this.o = options;
    this.now = options.now ?? (() => new Date());
  }

  private bankKey(bankId: string): Buffer {
    const k = this.o.config.banks.get(bankId);
    if (!k) throw forbidden('UNKNOWN_BANK', `bank '${bankId}' is not known to this load server`);
    return k;
  }

  private derived(bankId: string, txnId: string): Buffer {
    return deriveTransactionKey(this.bankKey(bankId), bankId, txnId.toUpperCase());
  }

  private crash(point: CrashPoint): void {
    this.o.crashAt?.(point);
  }

  private audit(event: string, detail: Record<string, unknown>): void {
    this.o.log?.(event, detail);
  }

  private sealOutcome(row: { bankId: string; txnId: string }, outcome: LoadResultPayload): LoadOutcomeMessage {
    return { txnId: outcome.txnId, status: outcome.status, basis: outcome.basis, loadResult: seal(this.derived(row.bankId, row.txnId), LoadLabel.LOAD_RESULT, outcome) };
  }

  private outcomeOf(row: LoadRow, status: LoadResultPayload['status'], basis: LoadBasis, resultCode: number, cardCounter: number): LoadResultPayload {
    return {
      bankId: row.bankId,
      txnId: row.txnId,
      status,
      amount: row.amount,
      currency: row.currency,
      exponent: row.exponent,
      card: row.request ? maskCardId(row.request.cardId) : '',
      cardCounter,
      resultCode,
      basis,
      completedAt: this.now().toISOString(),
    };
  }

  /** Final: store the outcome (and the settlement for 'loaded') and return it sealed; a row already final keeps its first outcome. */
  private async finish(row: LoadRow, outcome: LoadResultPayload): Promise<LoadOutcomeMessage> {
    const done = await this.o.store.finalize(row.txnId, outcome, ['received', 's2-issued']);
    const final = done ? outcome : (await this.o.store.getLoad(row.txnId))?.outcome;
    if (!final) throw conflict('LOAD_STATE', `load ${row.txnId} changed state meanwhile; ask again`);
    await this.o.store.log(row.txnId, 'load-result', { status: final.status, basis: final.basis, resultCode: final.resultCode });
    this.audit('load result', { txnId: row.txnId, bankId: row.bankId, status: final.status, basis: final.basis, amount: final.amount });
    if (done) this.crash('result-saved');
    return this.sealOutcome(row, final);
  }

  // -------------------------------------------------------------------------------------------
  // Load Request -> Credit IEP (steps 878-880, 895-899)

  async loadRequest(msg: LoadRequestMessage): Promise<CreditIepMessage> {
    const a = msg.ticket.authorisation;
    const txnId = a.txnId.toUpperCase();
    const derived = this.derived(a.bankId, txnId);
    if (!verifyMacOf(derived, LoadLabel.LOAD_AUTHORISATION, a, msg.ticket.mac)) throw forbidden('TICKET_NOT_AUTHENTIC', `the load ticket for ${txnId} is not the bank's (MAC mismatch)`);
    let sessionKey: Buffer;
    try {
      sessionKey = unwrapSessionKey(derived, Buffer.from(msg.eSessionKey, 'hex'));
    } catch {
      throw badRequest('BAD_SESSION_KEY', 'eSessionKey is not a wrapped session key');
    }
    if (!verifyMacOf(sessionKey, LoadLabel.LOAD_REQUEST, msg.request, msg.mac)) throw forbidden('REQUEST_NOT_AUTHENTIC', `the Load Request for ${txnId} fails its session MAC`);
    const q = msg.request;
    this.edit(q, a, txnId);
    if (Date.parse(a.expiresAt) < this.now().getTime()) throw unprocessable('TICKET_EXPIRED', `the load ticket for ${txnId} expired at ${a.expiresAt}`);

    const existing = await this.o.store.getLoad(txnId);
    if (existing?.state === 's2-issued' && existing.request && existing.request.s1 === q.s1.toUpperCase() && existing.s2 && existing.enquiryTxnId) {
      return this.creditIep(sessionKey, txnId, existing.s2, existing.enquiryTxnId); // the answer was lost: same S1, same S2
    }
    if (existing && existing.state !== 'received') {
      throw conflict(existing.state === 'final' ? 'LOAD_FINAL' : 'LOAD_IN_PROGRESS', existing.state === 'final' ? `load ${txnId} is already final (${existing.outcome?.status})` : `load ${txnId} already has an S2: recover it with the zero-value Load Request`);
    }
    const pending = await this.o.store.unresolvedForCard(q.cardId);
    if (pending && pending !== txnId) throw conflict('UNRESOLVED_LOAD', `card ${maskCardId(q.cardId)} has an unresolved load ${pending}: recover it first`);

    const request: LoadRequestBody = { ...q, loadTxnId: q.loadTxnId.toUpperCase(), cardChallenge: q.cardChallenge.toUpperCase(), lastLoadTxnId: q.lastLoadTxnId.toUpperCase(), s1: q.s1.toUpperCase() };
    const fresh = { txnId, bankId: a.bankId, amount: a.amount, currency: a.currency, exponent: a.exponent, date: a.date, time: a.time, statusUrl: a.statusUrl, request };
    if (!(await this.o.store.receive(fresh))) throw conflict('LOAD_STATE', `load ${txnId} moved on meanwhile`);
    await this.o.store.log(txnId, 'load-request', { card: maskCardId(q.cardId), amount: q.amount, counter: q.counter, balance: q.balance, alg: q.alg, date: q.date, time: q.time });
    this.audit('load request', { txnId, bankId: a.bankId, card: maskCardId(q.cardId), amount: q.amount });
    this.crash('received');

    const row = (await this.o.store.getLoad(txnId))!;
    const fields = s1FieldsOfBody(request);
    if (!(await this.o.issuer.verifyS1(fields, Buffer.from(q.s1, 'hex')))) {
      await this.finish(row, this.outcomeOf(row, 'not-loaded', 's1-refused', -1, q.counter));
      throw unprocessable('S1_INVALID', `the card's S1 does not verify at the issuer HSM: load ${txnId} refused, nothing credited`);
    }
    this.crash('s1-verified');
    const s2 = (await this.o.issuer.generateS2(fields)).toString('hex').toUpperCase();
    const enquiryTxnId = randomBytes(8).toString('hex').toUpperCase();
    if (!(await this.o.store.issueS2(txnId, s2, enquiryTxnId))) throw conflict('LOAD_ABORTED', `load ${txnId} was cancelled by the bank before S2: nothing can be credited`);
    await this.o.store.log(txnId, 's2-issued', {});
    this.crash('s2-saved');
    return this.creditIep(sessionKey, txnId, s2, enquiryTxnId);
  }

  private creditIep(sessionKey: Buffer, txnId: string, s2: string, enquiryTxnId: string): CreditIepMessage {
    const creditIep = { txnId, s2, enquiryTxnId };
    return { creditIep, mac: macOf(sessionKey, LoadLabel.CREDIT_IEP, creditIep) };
  }

  /** Step 895: the syntactic edit. The Load Request must be the bank's load, for a money purse, within the card's maximum. */
  private edit(q: LoadRequestBody, a: LoadRequestMessage['ticket']['authorisation'], txnId: string): void {
    const bad = (what: string) => {
      throw unprocessable('LOAD_REQUEST_MISMATCH', `Load Request ${txnId}: ${what}`);
    };
    if (q.loadType !== LoadType.LOAD) bad(`load type ${q.loadType} is not a money load (01)`);
    if (q.loadTxnId.toUpperCase() !== txnId) bad('the card was given another transaction id');
    if (q.amount !== a.amount) bad(`amount ${q.amount} is not the bank's ${a.amount}`);
    if (q.currency !== a.currency || q.exponent !== a.exponent) bad('currency or exponent differ from the bank\'s');
    if (q.date !== a.date || q.time !== a.time) bad('date/time differ from the bank time stamp');
    const cur = this.o.config.currencies;
    if (cur.length && !cur.includes(q.currency)) bad(`currency ${q.currency} is not issued here`);
    if (q.balance + q.amount > q.maxBalance) throw unprocessable('ABOVE_MAX_BALANCE', `Load Request ${txnId}: balance + amount would exceed the card's maximum balance`);
    if (q.expiry < q.date) throw unprocessable('CARD_EXPIRED', `Load Request ${txnId}: the card expired`);
  }

  // -------------------------------------------------------------------------------------------
  // Load Response (S3) -> Load Result (steps 883-890)

  async cardResponse(txnId: string, resp: CardLoadResponse): Promise<LoadOutcomeMessage> {
    const row = await this.row(txnId);
    if (row.state === 'final') return this.sealOutcome(row, row.outcome!);
    if (row.state !== 's2-issued' || !row.request) throw conflict('NO_CREDIT_ISSUED', `load ${txnId} has no S2: nothing to answer`);
    await this.o.store.saveResponse(txnId, resp);
    await this.o.store.log(txnId, 'load-response', { result: resp.result, newCounter: resp.newCounter });
    if (resp.result !== LoadResult.CREDITED) {
      throw conflict('RECOVERY_REQUIRED', `the card answered result ${resp.result} for load ${txnId}: send the zero-value Load Request (negative-result handling)`);
    }
    const ok = await verifiedCredit(this.o.issuer, s1FieldsOfBody(row.request), resp);
    if (!ok) {
      await this.o.store.log(txnId, 's3-invalid', {});
      throw unprocessable('S3_INVALID', `S3 for load ${txnId} does not verify: the result is not trusted; send the zero-value Load Request`);
    }
    this.crash('s3-verified');
    return this.finish(row, this.outcomeOf(row, 'loaded', 's3-verified', resp.result, resp.newCounter));
  }

  // -------------------------------------------------------------------------------------------
  // Negative-result handling (L629-634)

  async recovery(txnId: string, z: ZeroValueLoadRequest): Promise<LoadOutcomeMessage> {
    const row = await this.row(txnId);
    if (row.state === 'final') return this.sealOutcome(row, row.outcome!);
    if (row.state !== 's2-issued' || !row.request || !row.enquiryTxnId) throw conflict('NO_CREDIT_ISSUED', `load ${txnId} never had an S2: the card cannot have been credited (cancel it at the bank)`);
    const orig = s1FieldsOfBody(row.request);
    const mismatch = zeroValueMismatch(orig, row.enquiryTxnId, z);
    if (mismatch.length) {
      await this.o.store.log(txnId, 'recovery-rejected', { mismatch });
      throw conflict('RECOVERY_MISMATCH', `zero-value Load Request for ${txnId} rejected: ${mismatch.join(', ')} differ from the original`);
    }
    if (z.response) await this.o.store.saveResponse(txnId, z.response);
    await this.o.store.log(txnId, 'zero-value-request', { result: z.response?.result ?? null, counter: z.zeroValue.counter });
    const v = await judgeZeroValue(this.o.issuer, orig, row.enquiryTxnId, z);
    if (!v) {
      await this.o.store.log(txnId, 'recovery-unverified', {});
      throw unprocessable('RECOVERY_UNVERIFIED', `the zero-value S1 for ${txnId} does not verify either way: the load stays unresolved; run the recovery again`);
    }
    if (v.review) await this.o.store.log(txnId, 'review', { reason: v.review });
    return this.finish(row, this.outcomeOf(row, v.status, v.basis, v.resultCode, v.cardCounter));
  }

  // -------------------------------------------------------------------------------------------
  // Bank side and progress

  /** The bank asks (cancel, timeout): a final result, 'pending' once S2 left, or - before S2 - the load is aborted now. */
  async bankStatus(txnId: string, q: BankStatusQuery): Promise<BankStatusAnswer> {
    const id = txnId.toUpperCase();
    const derived = this.derived(q.bankId, id);
    if (!verifyMacOf(derived, LoadLabel.LOAD_STATUS_QUERY, statusQueryPayload(id, q), q.mac)) throw forbidden('QUERY_NOT_AUTHENTIC', `status query for ${id} fails its MAC`);
    const row = await this.o.store.getLoad(id);
    if (row && row.bankId !== q.bankId) throw forbidden('UNKNOWN_BANK', `load ${id} is not this bank's`);
    if (row?.state === 'final') return { state: 'final', loadResult: this.sealOutcome(row, row.outcome!).loadResult };
    if (row?.state === 's2-issued') return { state: 'pending' };
    const base = row ?? { txnId: id, bankId: q.bankId, state: 'received' as const, amount: q.amount, currency: q.currency, exponent: q.exponent, date: '', time: '', statusUrl: '', request: undefined, s2: undefined, enquiryTxnId: undefined, response: undefined, outcome: undefined };
    const outcome = this.outcomeOf(base, 'not-loaded', 'aborted', -1, 0);
    const insert = row ? undefined : { txnId: id, bankId: q.bankId, amount: q.amount, currency: q.currency, exponent: q.exponent, date: '', time: '', statusUrl: '', request: undefined };
    if (!(await this.o.store.finalize(id, outcome, ['received'], insert))) {
      const again = await this.o.store.getLoad(id);
      if (again?.state === 'final') return { state: 'final', loadResult: this.sealOutcome(again, again.outcome!).loadResult };
      return { state: 'pending' };
    }
    await this.o.store.log(id, 'aborted-by-bank', {});
    this.audit('load aborted by the bank', { txnId: id, bankId: q.bankId });
    return { state: 'final', loadResult: this.sealOutcome(base, outcome).loadResult };
  }

  async progress(txnId: string): Promise<LoadProgress> {
    const row = await this.row(txnId);
    return {
      txnId: row.txnId,
      state: row.state,
      amount: row.amount,
      currency: row.currency,
      exponent: row.exponent,
      date: row.date,
      time: row.time,
      counter: row.request?.counter ?? 0,
      card: row.request ? maskCardId(row.request.cardId) : '',
      ...(row.state === 's2-issued' && row.enquiryTxnId ? { enquiryTxnId: row.enquiryTxnId } : {}),
      statusUrl: row.statusUrl,
    };
  }

  /** The sealed Load Result of a final load (for a client resuming after a lost answer). */
  async result(txnId: string): Promise<LoadOutcomeMessage> {
    const row = await this.row(txnId);
    if (row.state !== 'final') throw conflict('LOAD_NOT_FINAL', `load ${txnId} is not final yet (${row.state})`);
    return this.sealOutcome(row, row.outcome!);
  }

  private async row(txnId: string): Promise<LoadRow> {
    const row = await this.o.store.getLoad(txnId.toUpperCase());
    if (!row) throw notFound('NO_SUCH_LOAD', `no load ${txnId}`);
    return row;
  }
}
