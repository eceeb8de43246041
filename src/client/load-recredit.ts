// The card side of a re-credit (seed 003 L311): the payment server's sealed RecreditClaim is handed to the
// issuer's load server, and the card in `card` is credited with the normal load commands (runCardLoad with a
// RemoteLoadIssuer on the re-credit routes), including the zero-value request when the answer is negative or
// lost. Run again with the same claim to finish one that was cut off; a credited claim is never credited twice.

import { PurselabError } from '../errors.ts';
import type { Envelope } from '../protocol/envelope.ts';
import type { RecreditTicket } from '../protocol/load-messages.ts';
import { maskCardId, showAmount } from '../terminal/amount.ts';
import { readPurse, type LoadRequest } from '../terminal/purse.ts';
import type { CardChannel } from '../transport/channel.ts';
import { CancelHold, runCardLoad, zeroValueRecovery } from './load-client.ts';
import { DEFAULT_RETRY, RemoteLoadIssuer, requestWithRetry, type RetryPolicy } from './load-issuer.ts';

export interface RecreditResult {
  readonly paymentId: string;
  readonly status: 'credited' | 'not-credited' | 'refused';
  readonly basis: string;
  readonly amount: number;
  readonly currency: number;
  readonly exponent: number;
  readonly balanceBefore: number;
  readonly balance: number;
  readonly card: string;
}

export async function recreditCard(card: CardChannel, o: { loadServer: string; claim: Envelope; progress?: (l: string) => void; retry?: RetryPolicy }): Promise<RecreditResult> {
  const say = o.progress ?? (() => undefined);
  const retry = o.retry ?? DEFAULT_RETRY;
  const base = o.loadServer.replace(/\/+$/, '');
  const purse = await readPurse(card);
  const t = await requestWithRetry<RecreditTicket>(`${base}/v1/recredit`, { body: { claim: o.claim } }, retry);
  const done = (status: RecreditResult['status'], basis: string, balance: number): RecreditResult => ({ paymentId: t.paymentId, status, basis, amount: t.amount, currency: t.currency, exponent: t.exponent, balanceBefore: purse.balance, balance, card: maskCardId(purse.cardId) });
  say(`re-credit of payment ${t.paymentId}: ${showAmount(t.amount, t.currency, t.exponent)} onto card ${t.card} (${t.state})`);
  if (t.state === 'credited') return done('credited', 'already credited', purse.balance);
  if (maskCardId(purse.cardId) !== t.card) throw new PurselabError('WRONG_CARD', `the claim is for card ${t.card}, this is ${maskCardId(purse.cardId)}`);
  const issuer = new RemoteLoadIssuer({ loadServer: base, recredit: t }, retry);
  const q: LoadRequest = { amount: t.amount, currency: t.currency, exponent: t.exponent, date: t.date, time: t.time, loadTxnId: Buffer.from(t.recreditId, 'hex') };
  let outcome: NonNullable<RemoteLoadIssuer['outcome']>;
  if (t.state === 's2-issued' && t.enquiryTxnId && t.counter !== undefined) {
    issuer.enquiryTxnId = t.enquiryTxnId;
    issuer.original = { cardId: purse.cardId, counter: t.counter, currency: t.currency, exponent: t.exponent, date: t.date, time: t.time };
    outcome = await zeroValueRecovery(card, issuer, q, say);
  } else {
    try {
      outcome = await runCardLoad(card, issuer, q, say);
    } catch (e) {
      if (e instanceof CancelHold) return done('refused', e.code, (await readPurse(card)).balance);
      throw e;
    }
  }
  const after = (await readPurse(card)).balance;
  say(`re-credit ${outcome.status === 'loaded' ? 'done' : 'NOT done'} (${outcome.basis}); balance ${showAmount(after, purse.currency, purse.exponent)}`);
  return done(outcome.status === 'loaded' ? 'credited' : 'not-credited', outcome.basis, after);
}
