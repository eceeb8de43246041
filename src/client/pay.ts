// The client terminal (seed 003 client code module 224, FIGS. 5-9 and 16): pay a merchant's order with the
// card in a CardChannel. The OPAL server runs this same code over its pseudo card reader (a CardChannel over a
// virtual card), so nothing here knows what is behind the channel.
//
//   1. read the payment page (order ticket, payment server, status URL, TSK/ETSK with FIG. 9)
//   2. card: SELECT, [VERIFY PIN], INITIALIZE FOR PURCHASE -> start-up data; ATR from the channel
//   3. check currency, expiry and balance against the order (step 608); show the amount, ask accept/cancel
//   4. POST /v1/draw (sealed under TSK with FIG. 9) -> Debit IEP with S2 (+ per-variant extras)
//   5. the DEBIT data must carry the merchant's amount, currency and exponent ("replace the amount with the
//      original amount", step 616): anything else is never passed to the card; the payment is aborted
//   6. card: DEBIT -> NEWCTR NEWBAL CVR S3 (a refusal: POST /v1/abort, nothing was debited)
//   7. standard / early-release: POST /v1/debit-response -> Debit Result C (for us) and M (for the merchant)
//      trusted-agent: compare S3 with the expected S3 here, then POST /v1/confirm
//      merchant-compare: POST /v1/confirm; the merchant compares S3 with the sealed expected S3
//   8. POST the result to the merchant's status URL -> goods released (or not)

import { timingSafeEqual } from 'node:crypto';
import { decodeDebitCommand, encodeDebitResponse, type DebitCommand, type DebitResponse, type StartupData } from '../crypto/purse-apdu.ts';
import { AUTH_CURRENCY, TxType } from '../crypto/purse-mac.ts';
import { PurselabError } from '../errors.ts';
import { open, seal, type Envelope } from '../protocol/envelope.ts';
import {
  Label,
  type AbortRequest,
  type CardDebitOutcome,
  type ConfirmRequest,
  type DebitIep,
  type DebitResultPayload,
  type DebitResultResponse,
  type DrawBody,
  type DrawRequest,
  type DrawResponse,
  type MerchantStatusRequest,
  type MerchantStatusResponse,
  type Order,
  type PaymentPage,
  type PaymentVariant,
} from '../protocol/payment-messages.ts';
import { RemoteError, requestJson } from '../server/http-client.ts';
import { maskCardId, showAmount } from '../terminal/amount.ts';
import { CardStatusError } from '../terminal/errors.ts';
import { dateTimeOf, refusalText } from '../terminal/purchase.ts';
import { debitCard, initializeForPurchase } from '../terminal/purse.ts';
import type { CardChannel } from '../transport/channel.ts';
import { loadPaymentPage } from './page.ts';

export type PayStep = 'page' | 'card' | 'confirm' | 'draw' | 'debit' | 'result' | 'merchant' | 'abort' | 'warning';

/** What the cardholder is asked to accept. */
export interface PaymentOffer {
  readonly merchantId: string;
  readonly txnId: string;
  readonly kind: Order['kind'];
  readonly amount: number;
  readonly currency: number;
  readonly exponent: number;
  /** "4.20 EUR", or "authentication (nothing is debited)". */
  readonly shown: string;
  readonly description: string;
  /** Masked card number. */
  readonly card: string;
  readonly balance: string;
}

export interface PayOptions {
  /** Accept (true) or cancel (false): the patent's "display and accept/cancel options". */
  readonly confirm: (offer: PaymentOffer) => boolean | Promise<boolean>;
  readonly onProgress?: (step: PayStep, message: string) => void;
  /** Cardholder PIN, for cards that require it (verified before INITIALIZE FOR PURCHASE). */
  readonly pin?: string;
  /** This terminal's id, for the payment server's log. */
  readonly terminalId?: string;
  /** Check currency, expiry and balance against the order before any draw request (step 608). Default true. */
  readonly precheck?: boolean;
  /** Per HTTP request (default 15 s). */
  readonly timeoutMs?: number;
  /** "Today" for the expiry check (tests). */
  readonly now?: () => Date;
}

export interface PayResult {
  /** paid / authenticated: the merchant released the goods; declined: the payment server declined; cancelled: nothing happened. */
  readonly status: 'paid' | 'authenticated' | 'declined' | 'cancelled';
  readonly released: boolean;
  readonly goods?: string;
  readonly message: string;
  readonly merchantId: string;
  readonly txnId: string;
  readonly paymentId?: string;
  readonly variant?: PaymentVariant;
  readonly kind: Order['kind'];
  readonly amount: number;
  readonly currency: number;
  readonly exponent: number;
  /** Masked card number. */
  readonly card: string;
  readonly balanceBefore: number;
  readonly balanceAfter: number;
  readonly counter: number;
  readonly psamId?: string;
  readonly psamTxn?: number;
  /** Debit Result C as the payment server sent it to us (when it did). */
  readonly resultC?: DebitResultPayload;
  readonly reason?: string;
}

/** A payment that could not complete; `cardDebited` says what happened to the value. */
export class ClientPaymentError extends PurselabError {
  readonly cardDebited: 'no' | 'yes' | 'unknown';
  readonly stage: PayStep;
  readonly paymentId: string | undefined;
  constructor(code: string, stage: PayStep, cardDebited: 'no' | 'yes' | 'unknown', message: string, paymentId?: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.stage = stage;
    this.cardDebited = cardDebited;
    this.paymentId = paymentId;
  }
}

const KIND_TX: Record<Order['kind'], number> = { purchase: TxType.PURCHASE, authentication: TxType.AUTHENTICATION, points: TxType.POINTS_DEBIT };
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex').toUpperCase();

export function showOrderAmount(o: Pick<Order, 'kind' | 'amount' | 'currency' | 'exponent'>): string {
  return o.kind === 'authentication' ? 'authentication (nothing is debited)' : showAmount(o.amount, o.currency, o.exponent, o.kind === 'points');
}

/**
 * Step 608's checks of the card against the order, before anything is sent anywhere: the reason the card
 * cannot pay, or undefined.
 */
export function precheckCard(s: StartupData, o: Order, today: string): string | undefined {
  if (s.status !== 0) return 'the purse is blocked';
  if (today > s.expiry) return `card expired (last valid day ${s.expiry})`;
  if (o.kind === 'authentication') return undefined;
  const points = o.kind === 'points';
  if (!points && (s.currency !== o.currency || s.exponent !== o.exponent)) {
    return `currency mismatch: the order is in ${showOrderAmount(o).split(' ').slice(1).join(' ')}, the card holds ${showAmount(s.balance, s.currency, s.exponent)}`;
  }
  if (points && s.currency !== o.currency) return `the card's points programme is ${s.currency}, the order is in programme ${o.currency}`;
  if (s.balance < o.amount) return `insufficient funds: the card holds ${showAmount(s.balance, s.currency, s.exponent, points)}, the ${o.kind === 'points' ? 'redemption' : 'purchase'} is ${showOrderAmount(o)}`;
  return undefined;
}

/**
 * The DEBIT data the payment server sent must be for exactly the merchant's order: TxType for its kind, its
 * amount, currency and exponent. Returns what differs, or undefined.
 */
export function debitDiffersFromOrder(txType: number, d: DebitCommand, o: Order): string | undefined {
  if (txType !== KIND_TX[o.kind]) return `transaction type ${txType} for a ${o.kind} order`;
  const cur = o.kind === 'authentication' ? AUTH_CURRENCY : o.currency;
  const exp = o.kind === 'purchase' ? o.exponent : 0;
  if (d.amount !== o.amount || d.currency !== cur || d.exponent !== exp) {
    return `the debit is for ${showAmount(d.amount, d.currency, d.exponent, o.kind === 'points')}, the merchant's order is ${showOrderAmount(o)}`;
  }
  return undefined;
}

/** Pay (or authenticate for) the order on `pageUrlOrPage` with the card on `card`. */
export async function payAtMerchant(pageUrlOrPage: string | PaymentPage, card: CardChannel, options: PayOptions): Promise<PayResult> {
  const progress = options.onProgress ?? (() => undefined);
  const timeoutMs = options.timeoutMs ?? 15_000;

  // 1. The page.
  const page = await loadPaymentPage(pageUrlOrPage, timeoutMs);
  const order = page.ticket.order;
  const tsk = page.tsk ? Buffer.from(page.tsk, 'hex') : undefined;
  const server = page.paymentServer.replace(/\/+$/, '');
  progress('page', `order ${order.txnId} from merchant ${order.merchantId}: ${showOrderAmount(order)}${tsk ? ' (FIG. 9 encryption layer)' : ''}`);

  // 2. The card.
  let startup: StartupData;
  let raw: Buffer;
  try {
    ({ startup, raw } = await initializeForPurchase(card, { purse: order.kind === 'points' ? 'points' : 'money', pin: options.pin }));
  } catch (e) {
    throw new ClientPaymentError('CARD_NOT_READY', 'card', 'no', `the card could not start the payment: ${(e as Error).message}; nothing was debited`, undefined, { cause: e });
  }
  const masked = maskCardId(startup.cardId);
  const points = order.kind === 'points';
  const balance = showAmount(startup.balance, startup.currency, startup.exponent, points);
  progress('card', `card ${masked}, balance ${balance}, counter ${startup.counter}`);
  const base = { merchantId: order.merchantId, txnId: order.txnId, kind: order.kind, amount: order.amount, currency: order.currency, exponent: order.exponent, card: masked, balanceBefore: startup.balance };

  // 3. Checks, then accept / cancel.
  if (options.precheck !== false) {
    const why = precheckCard(startup, order, dateTimeOf((options.now ?? (() => new Date()))()).date);
    if (why) throw new ClientPaymentError('CARD_CANNOT_PAY', 'card', 'no', `${why}; nothing was debited`);
  }
  const offer: PaymentOffer = { merchantId: order.merchantId, txnId: order.txnId, kind: order.kind, amount: order.amount, currency: order.currency, exponent: order.exponent, shown: showOrderAmount(order), description: order.description ?? '', card: masked, balance };
  if (!(await options.confirm(offer))) {
    progress('confirm', 'cancelled by the cardholder: nothing was sent, nothing debited');
    return { ...base, status: 'cancelled', released: false, message: 'cancelled by the cardholder', balanceAfter: startup.balance, counter: startup.counter };
  }
  progress('confirm', 'accepted by the cardholder');

  // 4. The draw request.
  const body: DrawBody = { ticket: page.ticket, card: { atr: hex(card.atr), startup: hex(raw) }, ...(options.terminalId ? { terminalId: options.terminalId } : {}) };
  const draw: DrawRequest = tsk
    ? { merchantId: order.merchantId, txnId: order.txnId, sealed: seal(tsk, Label.DRAW_REQUEST, body), etsk: page.etsk! }
    : { merchantId: order.merchantId, txnId: order.txnId, draw: body };
  let drawn: DrawResponse;
  try {
    drawn = await requestJson<DrawResponse>(`${server}/v1/draw`, { body: draw, timeoutMs });
  } catch (e) {
    const why = e instanceof RemoteError ? `${e.message}${e.status ? ` (${e.code})` : ''}` : (e as Error).message;
    throw new ClientPaymentError(e instanceof RemoteError && e.status ? e.code : 'DRAW_FAILED', 'draw', 'no', `the payment server refused the draw request: ${why}; nothing was debited`, undefined, { cause: e });
  }
  const paymentId = drawn.paymentId;
  const abort = async (reason: string): Promise<void> => {
    const req: AbortRequest = { paymentId, reason };
    try {
      await requestJson(`${server}/v1/abort`, { body: req, timeoutMs });
      progress('abort', `payment ${paymentId} aborted at the payment server (${reason})`);
    } catch (e) {
      progress('warning', `could not abort payment ${paymentId} at the payment server: ${(e as Error).message}`);
    }
  };

  // 5. The Debit IEP: opened (FIG. 9), and for exactly this order.
  let debit: DebitIep;
  let dc: DebitCommand;
  try {
    debit = drawn.debit ?? (drawn.sealed && tsk ? (open(tsk, Label.DEBIT_IEP, drawn.sealed) as DebitIep) : (undefined as never));
    if (!debit || typeof debit !== 'object' || typeof debit.debitData !== 'string') throw new PurselabError('BAD_DEBIT_IEP', 'no Debit IEP in the answer');
    if (debit.paymentId !== paymentId) throw new PurselabError('BAD_DEBIT_IEP', 'the Debit IEP is for another payment');
    dc = decodeDebitCommand(Buffer.from(debit.debitData, 'hex'));
  } catch (e) {
    await abort('bad-debit-iep');
    throw new ClientPaymentError('BAD_DEBIT_IEP', 'draw', 'no', `the payment server's Debit IEP is not usable (${(e as Error).message}): aborted, nothing was debited`, paymentId, { cause: e });
  }
  const differs = debitDiffersFromOrder(debit.txType, dc, order);
  if (differs) {
    await abort('amount-mismatch');
    throw new ClientPaymentError('AMOUNT_MISMATCH', 'draw', 'no', `refused: ${differs}; the card was not asked to debit anything, the payment is aborted`, paymentId);
  }
  const variant = debit.variant;
  if (variant === 'trusted-agent' && (!debit.expectedS3 || !/^[0-9a-fA-F]{16}$/.test(debit.expectedS3) || !debit.authorisation)) {
    await abort('bad-debit-iep');
    throw new ClientPaymentError('BAD_DEBIT_IEP', 'draw', 'no', 'the trusted-agent Debit IEP lacks the expected S3 or the authorisation: aborted, nothing was debited', paymentId);
  }
  if (variant === 'merchant-compare' && !debit.expectedS3ForMerchant) {
    await abort('bad-debit-iep');
    throw new ClientPaymentError('BAD_DEBIT_IEP', 'draw', 'no', 'the merchant-compare Debit IEP lacks the sealed expected S3: aborted, nothing was debited', paymentId);
  }
  progress('draw', `payment ${paymentId} (${variant}): PSAM ${dc.psamId} transaction ${dc.psamTxn} signed the debit of ${showOrderAmount(order)}`);

  // 6. The card debits.
  let resp: DebitResponse;
  try {
    resp = await debitCard(card, debit.txType, Buffer.from(debit.debitData, 'hex'));
  } catch (e) {
    if (e instanceof CardStatusError) {
      const why = refusalText(e, startup, order.amount, dc.currency, dc.exponent, points);
      await abort(`card-refused ${e.sw.toString(16).toUpperCase().padStart(4, '0')}`);
      throw new ClientPaymentError('CARD_REFUSED', 'debit', 'no', `the card refused the debit: ${why}; nothing was debited`, paymentId, { cause: e });
    }
    throw new ClientPaymentError('DEBIT_UNKNOWN', 'debit', 'unknown', `no answer from the card to the DEBIT (${(e as Error).message}): the card may or may not be debited; payment ${paymentId} is resolved by the payment server's recovery`, paymentId, { cause: e });
  }
  const debitResponse = hex(encodeDebitResponse(resp));
  const s3 = hex(resp.s3);
  progress('debit', `card debited: balance ${showAmount(resp.newBalance, startup.currency, startup.exponent, points)}, counter ${resp.newCounter}`);
  const after = { ...base, paymentId, variant, balanceAfter: resp.newBalance, counter: resp.newCounter, psamId: dc.psamId, psamTxn: dc.psamTxn };

  // 7. The result, per variant.
  const statusReq: { -readonly [K in keyof MerchantStatusRequest]: MerchantStatusRequest[K] } = { txnId: order.txnId, paymentId };
  let resultC: DebitResultPayload | undefined;
  let declined: string | undefined;
  const takeResult = (r: DebitResultResponse) => {
    statusReq.resultM = r.resultM;
    if (r.resultC) resultC = r.resultC;
    else if (r.resultCSealed && tsk) {
      try {
        resultC = open(tsk, Label.DEBIT_RESULT_C, r.resultCSealed) as DebitResultPayload;
      } catch {
        progress('warning', 'Debit Result C does not open under the session key');
      }
    }
    if (r.status !== 'approved') declined = resultC?.reason ?? 'DECLINED';
  };
  if (variant === 'trusted-agent' || variant === 'merchant-compare') {
    let proven = true;
    if (variant === 'trusted-agent') {
      // FIG. 7 step 732: this terminal is the trusted agent that compares S3.
      const expected = Buffer.from(debit.expectedS3!, 'hex');
      proven = resp.newCounter === startup.counter + 1 && timingSafeEqual(resp.s3, expected);
      progress('result', proven ? 'the card\'s S3 equals the expected S3' : 'the card\'s S3 does NOT equal the expected S3');
    }
    const confirm: ConfirmRequest = { paymentId, debitResponse, s3 };
    try {
      takeResult(await requestJson<DebitResultResponse>(`${server}/v1/confirm`, { body: confirm, timeoutMs }));
      progress('result', `payment server: ${declined ? `declined (${declined})` : 'confirmed'}`);
    } catch (e) {
      progress('warning', `the payment server did not take the confirmation (${(e as Error).message}); the merchant checks the S3 itself`);
    }
    if (!proven) throw new ClientPaymentError('S3_MISMATCH', 'result', 'yes', `the card's S3 is not the expected S3: the debit of ${showOrderAmount(order)} is not proven (payment ${paymentId}); the merchant is not told it was paid`, paymentId);
    statusReq.s3 = s3;
    statusReq.debitResponse = debitResponse;
    if (variant === 'trusted-agent') statusReq.authorisation = debit.authorisation as Envelope;
    else statusReq.expectedS3ForMerchant = debit.expectedS3ForMerchant as Envelope;
  } else {
    const outcome: CardDebitOutcome = { paymentId, sw: '9000', debitResponse };
    const req = tsk ? { paymentId, sealed: seal(tsk, Label.DEBIT_RESPONSE, outcome) } : { paymentId, response: outcome };
    try {
      takeResult(await requestJson<DebitResultResponse>(`${server}/v1/debit-response`, { body: req, timeoutMs }));
    } catch (e) {
      throw new ClientPaymentError('RESULT_UNKNOWN', 'result', 'yes', `the card was debited but the payment server gave no Debit Result (${(e as Error).message}); payment ${paymentId} is resolved by its recovery`, paymentId, { cause: e });
    }
    progress('result', declined ? `the payment server declined: ${declined}` : `Debit Result: approved${resultC ? ` (verified by ${resultC.verifiedBy})` : ''}`);
  }

  // 8. The merchant.
  let m: MerchantStatusResponse;
  try {
    m = await requestJson<MerchantStatusResponse>(page.statusUrl, { body: statusReq, timeoutMs });
  } catch (e) {
    if (declined) return { ...after, status: 'declined', released: false, reason: declined, message: `declined by the payment server (${declined})`, ...(resultC ? { resultC } : {}) };
    throw new ClientPaymentError('MERCHANT_REFUSED', 'merchant', 'yes', `the card was debited but the merchant did not release the goods: ${(e as Error).message} (payment ${paymentId})`, paymentId, { cause: e });
  }
  progress('merchant', m.message);
  if (declined || !m.released) {
    return { ...after, status: 'declined', released: false, reason: declined ?? m.status, message: m.message, ...(resultC ? { resultC } : {}) };
  }
  return { ...after, status: order.kind === 'authentication' ? 'authenticated' : 'paid', released: true, ...(m.goods !== undefined ? { goods: m.goods } : {}), message: m.message, ...(resultC ? { resultC } : {}) };
}
