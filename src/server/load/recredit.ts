// Re-credit of a failed purchase at the load server (seed 003 L311: "different from a formal load command in
// that a user's card is being credited for a value that had earlier been taken off the card"). The payment
// server's RecreditClaim, sealed with the issuerLinkKey, is opened here and recorded once per paymentId in its
// own table; the card is then credited with the normal load commands (S1 verified by the HSM, S2, S3 verified,
// the zero-value request when the answer is negative or lost). A re-credit proven not credited may be tried
// again; a credited one never twice. Nothing here is settled with a bank: no bank paid for it.

import { randomBytes } from 'node:crypto';
import { LoadResult, LoadType } from '../../crypto/purse-mac.ts';
import { MessageAuthError, open, type Envelope } from '../../protocol/envelope.ts';
import { s1FieldsOfBody, type CardLoadResponse, type CreditIep, type LoadRequestBody, type RecreditOutcome, type RecreditTicket, type ZeroValueLoadRequest } from '../../protocol/load-messages.ts';
import { Label, type RecreditClaim } from '../../protocol/payment-messages.ts';
import { maskCardId } from '../../terminal/amount.ts';
import type { LoadIssuer } from '../../terminal/load.ts';
import { badRequest, conflict, forbidden, HttpError, notFound } from '../app.ts';
import { judgeZeroValue, verifiedCredit, zeroValueMismatch } from './judge.ts';
import type { LoadStore, RecreditRow } from './store.ts';

const unprocessable = (code: string, message: string) => new HttpError(422, code, message);
const pad = (n: number) => String(n).padStart(2, '0');

export class RecreditService {
  constructor(
    private readonly o: { store: LoadStore; issuer: LoadIssuer; issuerLinkKey: Buffer; now?: () => Date; log?: (event: string, detail: Record<string, unknown>) => void },
  ) {}

  private now(): Date {
    return this.o.now?.() ?? new Date();
  }

  private ticket(r: RecreditRow): RecreditTicket {
    return {
      paymentId: r.paymentId,
      recreditId: r.recreditId,
      state: r.state,
      amount: r.amount,
      currency: r.currency,
      exponent: r.exponent,
      date: r.date,
      time: r.time,
      card: maskCardId(r.cardId),
      ...(r.state === 's2-issued' && r.enquiryTxnId && r.request ? { enquiryTxnId: r.enquiryTxnId, counter: r.request.counter } : {}),
    };
  }

  /** Open and record a claim (idempotent per paymentId: the same ticket again). */
  async claim(env: Envelope): Promise<RecreditTicket> {
    let c: RecreditClaim;
    try {
      c = open(this.o.issuerLinkKey, Label.RECREDIT_CLAIM, env) as RecreditClaim;
    } catch (e) {
      if (e instanceof MessageAuthError) throw forbidden('CLAIM_NOT_AUTHENTIC', `the re-credit claim is not the payment server's (${e.message})`);
      throw e;
    }
    const ok =
      c && typeof c.paymentId === 'string' && /^[A-Za-z0-9._-]{1,64}$/.test(c.paymentId) && typeof c.cardId === 'string' && /^[0-9]{16}$/.test(c.cardId) &&
      Number.isInteger(c.amount) && c.amount > 0 && Number.isInteger(c.currency) && Number.isInteger(c.exponent);
    if (!ok) throw badRequest('BAD_CLAIM', 'the re-credit claim lacks a payment id, card id, amount or currency');
    const n = this.now();
    const fresh = await this.o.store.claimRecredit({
      paymentId: c.paymentId,
      recreditId: randomBytes(8).toString('hex').toUpperCase(),
      cardId: c.cardId,
      amount: c.amount,
      currency: c.currency,
      exponent: c.exponent,
      date: `${n.getUTCFullYear()}${pad(n.getUTCMonth() + 1)}${pad(n.getUTCDate())}`,
      time: `${pad(n.getUTCHours())}${pad(n.getUTCMinutes())}${pad(n.getUTCSeconds())}`,
      claim: c,
    });
    if (fresh) this.o.log?.('re-credit claimed', { paymentId: c.paymentId, card: maskCardId(c.cardId), amount: c.amount });
    return this.ticket((await this.o.store.getRecredit(c.paymentId))!);
  }

  async get(paymentId: string): Promise<RecreditTicket> {
    return this.ticket(await this.row(paymentId));
  }

  /** The card's S1 for the re-credit -> S2 (Credit IEP). */
  async s1(paymentId: string, q: LoadRequestBody): Promise<CreditIep> {
    const r = await this.row(paymentId);
    if (r.state === 's2-issued' && r.request?.s1 === q.s1.toUpperCase() && r.s2 && r.enquiryTxnId) return { txnId: r.recreditId, s2: r.s2, enquiryTxnId: r.enquiryTxnId };
    if (r.state !== 'claimed') throw conflict(r.state === 'credited' ? 'RECREDIT_DONE' : 'RECREDIT_IN_PROGRESS', `re-credit ${paymentId} is ${r.state}`);
    const bad = (what: string) => {
      throw unprocessable('LOAD_REQUEST_MISMATCH', `re-credit ${paymentId}: ${what}`);
    };
    if (q.cardId !== r.cardId) bad('not the card the claim names');
    if (q.loadType !== LoadType.LOAD || q.amount !== r.amount || q.currency !== r.currency || q.exponent !== r.exponent) bad('amount or currency differ from the claim');
    if (q.loadTxnId.toUpperCase() !== r.recreditId || q.date !== r.date || q.time !== r.time) bad('transaction id or time stamp differ from the ticket');
    if (q.balance + q.amount > q.maxBalance) throw unprocessable('ABOVE_MAX_BALANCE', `re-credit ${paymentId}: the card's maximum balance would be exceeded`);
    const f = s1FieldsOfBody(q);
    if (!(await this.o.issuer.verifyS1(f, Buffer.from(q.s1, 'hex')))) throw unprocessable('S1_INVALID', `the card's S1 does not verify: re-credit ${paymentId} not started`);
    const s2 = (await this.o.issuer.generateS2(f)).toString('hex').toUpperCase();
    const enquiryTxnId = randomBytes(8).toString('hex').toUpperCase();
    const request = { ...q, loadTxnId: q.loadTxnId.toUpperCase(), cardChallenge: q.cardChallenge.toUpperCase(), lastLoadTxnId: q.lastLoadTxnId.toUpperCase(), s1: q.s1.toUpperCase() };
    if (!(await this.o.store.recreditS2(paymentId, request, s2, enquiryTxnId))) throw conflict('RECREDIT_IN_PROGRESS', `re-credit ${paymentId} moved on meanwhile`);
    return { txnId: r.recreditId, s2, enquiryTxnId };
  }

  async response(paymentId: string, resp: CardLoadResponse): Promise<RecreditOutcome> {
    const r = await this.row(paymentId);
    if (r.state === 'credited') return this.outcome(r);
    if (r.state !== 's2-issued' || !r.request) throw conflict('NO_CREDIT_ISSUED', `re-credit ${paymentId} has no S2`);
    if (resp.result !== LoadResult.CREDITED) throw conflict('RECOVERY_REQUIRED', `the card answered result ${resp.result}: send the zero-value Load Request`);
    if (!(await verifiedCredit(this.o.issuer, s1FieldsOfBody(r.request), resp))) throw unprocessable('S3_INVALID', `S3 for re-credit ${paymentId} does not verify: send the zero-value Load Request`);
    return this.settle(r, true, 's3-verified');
  }

  async recovery(paymentId: string, z: ZeroValueLoadRequest): Promise<RecreditOutcome> {
    const r = await this.row(paymentId);
    if (r.state === 'credited') return this.outcome(r);
    if (r.state !== 's2-issued' || !r.request || !r.enquiryTxnId) throw conflict('NO_CREDIT_ISSUED', `re-credit ${paymentId} has no S2`);
    const orig = s1FieldsOfBody(r.request);
    const mismatch = zeroValueMismatch(orig, r.enquiryTxnId, z);
    if (mismatch.length) throw conflict('RECOVERY_MISMATCH', `zero-value request for re-credit ${paymentId} rejected: ${mismatch.join(', ')} differ`);
    const v = await judgeZeroValue(this.o.issuer, orig, r.enquiryTxnId, z);
    if (!v) throw unprocessable('RECOVERY_UNVERIFIED', `the zero-value S1 for re-credit ${paymentId} does not verify either way: retry`);
    return this.settle(r, v.status === 'loaded', v.basis);
  }

  private async settle(r: RecreditRow, credited: boolean, basis: RecreditOutcome['basis']): Promise<RecreditOutcome> {
    const outcome = { status: credited ? 'loaded' : 'not-loaded', basis };
    if (!(await this.o.store.recreditOutcome(r.paymentId, credited, outcome))) return this.outcome(await this.row(r.paymentId));
    this.o.log?.(credited ? 're-credited' : 're-credit not done (card proven not credited)', { paymentId: r.paymentId, amount: r.amount, basis });
    return { paymentId: r.paymentId, txnId: r.recreditId, status: credited ? 'loaded' : 'not-loaded', basis };
  }

  private outcome(r: RecreditRow): RecreditOutcome {
    return { paymentId: r.paymentId, txnId: r.recreditId, status: r.state === 'credited' ? 'loaded' : 'not-loaded', basis: (r.outcome?.basis ?? 's3-verified') as RecreditOutcome['basis'] };
  }

  private async row(paymentId: string): Promise<RecreditRow> {
    const r = await this.o.store.getRecredit(paymentId);
    if (!r) throw notFound('NO_SUCH_RECREDIT', `no re-credit claim for payment ${paymentId}`);
    return r;
  }
}
