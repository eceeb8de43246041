// The client side of an Internet load (seed 003 FIG. 17/18, client code module 224) as a library function over
// any CardChannel (a PC/SC reader, the in-process emulator, or OPAL's pseudo reader): log in at the bank, show
// the load screen (max load = card maximum - balance), let the cardholder accept or cancel, get the hold and the
// applet parameters, run the card's load against the remote load server (runLoad with a RemoteLoadIssuer), and
// relay the sealed Load Result to the bank. A negative result code, an S3 the load server does not trust, or a
// lost CREDIT answer runs the negative-result handling: a zero-value Load Request with a new S1 (and the
// original S3). A load cut off anywhere can be finished later with resumeInternetLoad.

import { LoadResult } from '../crypto/purse-mac.ts';
import { PurselabError } from '../errors.ts';
import {
  type CardFacts,
  type HoldStatus,
  type LoadOutcomeMessage,
  type LoadPage,
  type LoadProgress,
  type LoadQuote,
} from '../protocol/load-messages.ts';
import { RemoteError, requestJson } from '../server/http-client.ts';
import { maskCardId, parseAmount, showAmount } from '../terminal/amount.ts';
import { LoadError, runLoad } from '../terminal/load.ts';
import { readPurse, requestZeroValueLoad, type CardLoadInit, type LoadRequest } from '../terminal/purse.ts';
import { TransportError } from '../transport/errors.ts';
import type { CardChannel } from '../transport/channel.ts';
import { DEFAULT_RETRY, RemoteLoadIssuer, requestWithRetry, type RetryPolicy } from './load-issuer.ts';

export interface LoadOffer {
  readonly quote: LoadQuote;
  readonly amount: number;
  /** Masked card number. */
  readonly card: string;
  /** "20.00 EUR" */
  readonly amountText: string;
}

export interface InternetLoadOptions {
  readonly bankUrl: string;
  readonly user: string;
  /** The bank password, or a bearer token of an earlier bankLogin (a cardholder loading several times). */
  readonly password: string | { readonly token: string };
  /** "20.00" in card currency units, or minor units as a number. */
  readonly amount: string | number;
  /** Accept (true) or cancel (false) the load screen; default: accept. */
  readonly confirm?: (offer: LoadOffer) => Promise<boolean>;
  readonly progress?: (line: string) => void;
  readonly retry?: RetryPolicy;
}

export interface InternetLoadResult {
  readonly txnId: string | undefined;
  /** loaded: card credited and account debited; not-loaded: neither; cancelled: nothing started. */
  readonly status: 'loaded' | 'not-loaded' | 'cancelled';
  readonly basis: string | undefined;
  readonly hold: HoldStatus | undefined;
  readonly card: string;
  readonly amount: number;
  readonly currency: number;
  readonly exponent: number;
  readonly balanceBefore: number;
  readonly balance: number;
}

/** The load was cut off before the bank saw its result: finish it with resumeInternetLoad(txnId). */
export class LoadUnfinishedError extends PurselabError {
  constructor(
    readonly txnId: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super('LOAD_UNFINISHED', message, options);
  }
}

class BankSession {
  constructor(
    readonly bankUrl: string,
    private readonly token: string,
    private readonly retry: RetryPolicy,
  ) {}
  static async login(bankUrl: string, user: string, password: string, retry: RetryPolicy): Promise<BankSession> {
    const base = bankUrl.replace(/\/+$/, '');
    return new BankSession(base, (await bankLogin(base, user, password, retry)).token, retry);
  }
  post<T>(path: string, body: unknown = {}): Promise<T> {
    return requestWithRetry<T>(`${this.bankUrl}${path}`, { body, headers: { authorization: `Bearer ${this.token}` } }, this.retry);
  }
}

/** Log in at the bank once: the token goes in InternetLoadOptions.password for the loads that follow. */
export async function bankLogin(bankUrl: string, user: string, password: string, retry: RetryPolicy = DEFAULT_RETRY): Promise<{ token: string }> {
  return requestWithRetry<{ token: string }>(`${bankUrl.replace(/\/+$/, '')}/v1/login`, { body: { user, password } }, retry);
}

/** Relay a sealed Load Result to the bank's status URL; a result the bank already counted reads back the hold. */
async function relayToBank(statusUrl: string, bankUrl: string, txnId: string, outcome: LoadOutcomeMessage, retry: RetryPolicy): Promise<HoldStatus> {
  try {
    return await requestWithRetry<HoldStatus>(statusUrl, { body: { loadResult: outcome.loadResult } }, retry);
  } catch (e) {
    if (e instanceof RemoteError && e.code === 'LOAD_RESULT_REPLAYED') return requestJson<HoldStatus>(`${bankUrl.replace(/\/+$/, '')}/v1/loads/${txnId}`);
    throw e;
  }
}

/** The negative-result handling on the card: a zero-value Load Request with the enquiry challenge, judged by the load server. */
type Outcome = NonNullable<RemoteLoadIssuer['outcome']>;

/** A bank load's outcome carries the sealed Load Result. */
function forBank(o: Outcome): LoadOutcomeMessage {
  if (!o.loadResult) throw new PurselabError('NO_LOAD_RESULT', 'the load server gave no sealed Load Result');
  return o as LoadOutcomeMessage;
}

export async function zeroValueRecovery(card: CardChannel, issuer: RemoteLoadIssuer, original: LoadRequest, progress: (l: string) => void): Promise<Outcome> {
  if (!issuer.enquiryTxnId) throw new PurselabError('NO_ENQUIRY_CHALLENGE', 'no enquiry challenge from the load server');
  progress('  zero-value Load Request (new S1) to settle the outcome');
  const challenge = Buffer.from(issuer.enquiryTxnId, 'hex');
  let enquiry: CardLoadInit;
  try {
    enquiry = await requestZeroValueLoad(card, original, challenge);
  } catch (e) {
    if (!(e instanceof TransportError)) throw e;
    // The card lost power or was pulled during CREDIT: reset it (a card reset ends nothing a zero-value request needs) and ask once more.
    progress(`  card not answering (${e.message}): resetting it`);
    await card.reset({ cold: true });
    enquiry = await requestZeroValueLoad(card, original, challenge);
  }
  const verdict = await issuer.verifyEnquiryS1(enquiry.s1Fields, enquiry.s1);
  if (!verdict.valid || !issuer.outcome) throw new PurselabError('RECOVERY_UNVERIFIED', 'the load server could not verify the zero-value S1; run the load again with --resume');
  return issuer.outcome;
}

/** Run one Internet load onto the card in `card`. */
export async function internetLoad(card: CardChannel, o: InternetLoadOptions): Promise<InternetLoadResult> {
  const say = o.progress ?? (() => undefined);
  const retry = o.retry ?? DEFAULT_RETRY;
  const purse = await readPurse(card);
  const masked = maskCardId(purse.cardId);
  const amount = typeof o.amount === 'number' ? o.amount : parseAmount(o.amount, purse.exponent, '--amount');
  const facts: CardFacts = { balance: purse.balance, maxBalance: purse.maxBalance, currency: purse.currency, exponent: purse.exponent, card: masked };
  say(`card ${masked}: balance ${showAmount(purse.balance, purse.currency, purse.exponent)}, maximum ${showAmount(purse.maxBalance, purse.currency, purse.exponent)}`);
  const bank = typeof o.password === 'string' ? await BankSession.login(o.bankUrl, o.user, o.password, retry) : new BankSession(o.bankUrl.replace(/\/+$/, ''), o.password.token, retry);
  const quote = await bank.post<LoadQuote>('/v1/loads/quote', { card: facts });
  say(`bank: account ${quote.account} (expires ${quote.accountExpiry}), available ${showAmount(quote.available, quote.currency, quote.exponent)}, max load ${showAmount(quote.maxLoad, quote.currency, quote.exponent)}`);
  const base = { card: masked, amount, currency: purse.currency, exponent: purse.exponent, balanceBefore: purse.balance };
  const offer: LoadOffer = { quote, amount, card: masked, amountText: showAmount(amount, purse.currency, purse.exponent) };
  if (o.confirm && !(await o.confirm(offer))) {
    say('cancelled: nothing was held or loaded');
    return { ...base, txnId: undefined, status: 'cancelled', basis: undefined, hold: undefined, balance: purse.balance };
  }
  const page = await bank.post<LoadPage>('/v1/loads', { amount, card: facts });
  const a = page.ticket.authorisation;
  say(`hold placed: load ${a.txnId}, ${offer.amountText} from ${page.account}`);
  const issuer = new RemoteLoadIssuer(page, retry);
  const q: LoadRequest = { amount, currency: a.currency, exponent: a.exponent, date: a.date, time: a.time, loadTxnId: Buffer.from(a.txnId, 'hex') };

  let outcome: LoadOutcomeMessage;
  try {
    outcome = forBank(await runCardLoad(card, issuer, q, say));
  } catch (e) {
    if (e instanceof CancelHold) {
      const hold = await bank.post<HoldStatus>(`/v1/loads/${a.txnId}/cancel`);
      say(`not loaded (${e.message}); hold ${hold.state}`);
      return { ...base, txnId: a.txnId, status: 'not-loaded', basis: e.code, hold, balance: (await readPurse(card)).balance };
    }
    throw new LoadUnfinishedError(a.txnId, `load ${a.txnId} was cut off (${(e as Error).message}): finish it with purselab load ${o.bankUrl} --resume ${a.txnId}`, { cause: e });
  }
  return finish(card, o.bankUrl, a.statusUrl, a.txnId, outcome, base, retry, say);
}

/** The load was refused before any S2: nothing can be credited (the caller gives the hold or claim back). */
export class CancelHold extends PurselabError {}

/** The card side: S1 -> S2 -> CREDIT -> S3, and the zero-value request whenever the result is not a verified credit. */
export async function runCardLoad(card: CardChannel, issuer: RemoteLoadIssuer, q: LoadRequest, say: (l: string) => void): Promise<Outcome> {
  try {
    const r = await runLoad(card, issuer, q);
    say(`card: CREDIT FOR LOAD -> result ${r.resultText}, S3 ${r.s3Verified ? 'verified by the issuer' : 'not accepted as a credit'}`);
    if (r.credited && issuer.outcome) return issuer.outcome;
    if (r.result !== LoadResult.CREDITED) say(`  negative result code ${r.result}: negative-result handling`);
    return await zeroValueRecovery(card, issuer, q, say);
  } catch (e) {
    if (e instanceof LoadError && e.outcome === 'refused') {
      throw new CancelHold(e.stage === 'card-init' ? 'CARD_REFUSED' : (issuer.refusal ?? 'S1_INVALID'), e.message);
    }
    if (e instanceof LoadError && e.outcome === 'credit-unknown') {
      say(`  no answer to CREDIT FOR LOAD: negative-result handling`);
      return zeroValueRecovery(card, issuer, q, say);
    }
    throw e;
  }
}

async function finish(
  card: CardChannel,
  bankUrl: string,
  statusUrl: string,
  txnId: string,
  outcome: LoadOutcomeMessage,
  base: Omit<InternetLoadResult, 'txnId' | 'status' | 'basis' | 'hold' | 'balance'>,
  retry: RetryPolicy,
  say: (l: string) => void,
): Promise<InternetLoadResult> {
  say(`load server: ${outcome.status} (${outcome.basis}); Load Result to the bank`);
  let hold: HoldStatus;
  try {
    hold = await relayToBank(statusUrl, bankUrl, txnId, outcome, retry);
  } catch (e) {
    throw new LoadUnfinishedError(txnId, `the bank did not take the Load Result of ${txnId} (${(e as Error).message}): finish with --resume ${txnId}`, { cause: e });
  }
  say(`bank: hold ${hold.state}`);
  const balance = (await readPurse(card)).balance;
  return { ...base, txnId, status: outcome.status, basis: outcome.basis, hold, balance };
}

/**
 * Finish a load that was cut off: the bank's hold names the load server; a final load server result is relayed;
 * a load with S2 issued is settled with a zero-value request on this card; a load that never got an S2 is
 * cancelled at the bank (which aborts it at the load server).
 */
export async function resumeInternetLoad(card: CardChannel, o: { bankUrl: string; user: string; password: string; txnId: string; progress?: (l: string) => void; retry?: RetryPolicy }): Promise<InternetLoadResult> {
  const say = o.progress ?? (() => undefined);
  const retry = o.retry ?? DEFAULT_RETRY;
  const bankUrl = o.bankUrl.replace(/\/+$/, '');
  const txnId = o.txnId.toUpperCase();
  const purse = await readPurse(card);
  const hold = await requestWithRetry<HoldStatus>(`${bankUrl}/v1/loads/${txnId}`, {}, retry);
  const base = { card: maskCardId(purse.cardId), amount: hold.amount, currency: hold.currency, exponent: hold.exponent, balanceBefore: purse.balance };
  if (hold.state !== 'held') {
    say(`load ${txnId}: the bank already ${hold.state} it`);
    return { ...base, txnId, status: hold.state === 'captured' ? 'loaded' : 'not-loaded', basis: hold.reason, hold, balance: purse.balance };
  }
  const ls = hold.loadServer.replace(/\/+$/, '');
  let progress: LoadProgress | undefined;
  try {
    progress = await requestWithRetry<LoadProgress>(`${ls}/v1/loads/${txnId}`, {}, retry);
  } catch (e) {
    if (!(e instanceof RemoteError && e.code === 'NO_SUCH_LOAD')) throw e;
  }
  say(`load ${txnId}: load server state ${progress?.state ?? 'unknown (never reached it)'}`);
  const statusUrl = progress?.statusUrl || `${bankUrl}/v1/loads/${txnId}/result`;
  if (progress?.state === 'final') {
    const outcome = await requestWithRetry<LoadOutcomeMessage>(`${ls}/v1/loads/${txnId}/result`, {}, retry);
    return finish(card, bankUrl, statusUrl, txnId, outcome, base, retry, say);
  }
  if (progress?.state === 's2-issued' && progress.enquiryTxnId) {
    if (maskCardId(purse.cardId) !== progress.card) throw new PurselabError('WRONG_CARD', `load ${txnId} was for card ${progress.card}, this is ${maskCardId(purse.cardId)}`);
    const issuer = new RemoteLoadIssuer({ loadServer: ls, sessionKey: '', eSessionKey: '', ticket: { authorisation: { txnId } as never, mac: '' } }, retry);
    issuer.enquiryTxnId = progress.enquiryTxnId;
    issuer.original = { cardId: purse.cardId, counter: progress.counter, currency: progress.currency, exponent: progress.exponent, date: progress.date, time: progress.time };
    const q: LoadRequest = { amount: progress.amount, currency: progress.currency, exponent: progress.exponent, date: progress.date, time: progress.time, loadTxnId: Buffer.from(txnId, 'hex') };
    const outcome = forBank(await zeroValueRecovery(card, issuer, q, say));
    return finish(card, bankUrl, statusUrl, txnId, outcome, base, retry, say);
  }
  const bank = await BankSession.login(bankUrl, o.user, o.password, retry);
  const h = await bank.post<HoldStatus>(`/v1/loads/${txnId}/cancel`);
  say(`load ${txnId} never got an S2: cancelled; hold ${h.state}`);
  return { ...base, txnId, status: h.state === 'captured' ? 'loaded' : 'not-loaded', basis: 'cancelled', hold: h, balance: purse.balance };
}
