// The payment flows of seed 003 FIGS. 5-9 and 16 on top of the PSAM pool and the store, independent of HTTP:
//   draw        known merchant, order MAC (the merchant's credential and the amount), expiry, replay, field
//               edit -> 'received' (saved) -> a PSAM (event psam-assigned; no save of its own: invisible outside)
//               -> INITIALIZE PURCHASE -> 'debit-issued' (saved, S2 handed out). Standard keeps the PSAM until
//               the result; the other variants release it at once (early release: the PSAM gave the expected S3).
//   outcome     the card's DEBIT answer -> 'debit-response-received' -> VERIFY S3 on the same PSAM (standard) or
//               comparison with the expected S3 -> 'completed' (+ ledger) | 'failed'; Debit Result C and M.
//   confirm     the same for trusted-agent / merchant-compare, where the S3 arrives after the fact.
//   abort       the client gave up before DEBIT: 'failed', PSAM released.
// Every state is saved before the step a crash could cut; recoverAfterRestart() and resolvePending() finish or
// clearly fail what a crash, a lost PSAM or a reclaimed hold left behind. The store commits the writes of
// concurrent payments together (group commit); each flow goes on only once its own write is committed.

import { createHash, timingSafeEqual } from 'node:crypto';
import { randomHex } from '../../random-pool.ts';
import { decodeDebitResponse, decodeStartupData, Sw, type DebitResponse, type StartupData } from '../../crypto/purse-apdu.ts';
import { AUTH_CURRENCY, TxType } from '../../crypto/purse-mac.ts';
import { PurselabError } from '../../errors.ts';
import { deriveTransactionKey, unwrapSessionKey } from '../../protocol/keys.ts';
import { MessageAuthError, open, seal, verifyMacOf, type Envelope } from '../../protocol/envelope.ts';
import {
  Label,
  type AbortRequest,
  type AbortResponse,
  type CardDebitOutcome,
  type ConfirmRequest,
  type DebitAuthorisation,
  type DebitIep,
  type DebitResponseRequest,
  type DebitResultPayload,
  type DebitResultResponse,
  type DrawBody,
  type DrawRequest,
  type DrawResponse,
  type ExpectedS3ForMerchant,
  type Order,
  type OrderKind,
} from '../../protocol/payment-messages.ts';
import { maskCardId } from '../../terminal/amount.ts';
import { CardStatusError } from '../../terminal/errors.ts';
import { psamInitializePurchase, psamVerifyS3, selectPsam } from '../../terminal/psam.ts';
import { dateTimeOf, locationBytes } from '../../terminal/purchase.ts';
import { badRequest, conflict, forbidden, HttpError, notFound, unauthorized } from '../app.ts';
import type { MerchantConfig, PaymentServerConfig } from './config.ts';
import type { PsamLease, PsamPool } from './psam-pool.ts';
import { drawBodyProblem, outcomeProblem } from './schemas.ts';
import { DuplicateTransactionError, type NewPayment, type PaymentRow, type PaymentState, type PaymentStore } from './store.ts';
import { LruCache } from '../../lru.ts';

/** Steps after which PURSELAB_PAYMENT_CRASH_AT kills the process (SIGKILL), for the crash tests. */
export const CRASH_POINTS = ['received', 'psam-assigned', 'debit-issued', 'debit-response-received', 'psam-verified', 'completed'] as const;
export type CrashPoint = (typeof CRASH_POINTS)[number];

export interface ServiceLog {
  info(o: object, m: string): void;
  warn(o: object, m: string): void;
  error(o: object, m: string): void;
}

export interface PaymentServiceOptions {
  readonly config: PaymentServerConfig;
  readonly store: PaymentStore;
  readonly pool: PsamPool;
  readonly log: ServiceLog;
  readonly now?: () => Date;
  readonly crashAt?: CrashPoint;
}

const KIND_TX: Record<OrderKind, number> = { purchase: TxType.PURCHASE, authentication: TxType.AUTHENTICATION, points: TxType.POINTS_DEBIT };

/** The reason code of a refusing SW (PSAM at INITIALIZE PURCHASE, or the card at DEBIT). */
export function reasonForSw(sw: number): string {
  switch (sw) {
    case Sw.INSUFFICIENT_VALUE:
      return 'INSUFFICIENT_FUNDS';
    case Sw.CARD_EXPIRED:
      return 'CARD_EXPIRED';
    case Sw.CURRENCY_MISMATCH:
      return 'CURRENCY_MISMATCH';
    case Sw.PURSE_BLOCKED:
      return 'CARD_BLOCKED';
    case Sw.CARD_ON_BLOCKED_LIST:
      return 'CARD_ON_BLOCKED_LIST';
    case Sw.CURRENCY_NOT_ACCEPTED:
      return 'CURRENCY_NOT_ACCEPTED';
    case Sw.COUNTER_EXHAUSTED:
      return 'CARD_COUNTER_EXHAUSTED';
    case Sw.AMOUNT_INVALID:
      return 'AMOUNT_INVALID';
    case Sw.PIN_REQUIRED:
      return 'PIN_REQUIRED';
    case Sw.LOG_FULL:
      return 'PSAM_LOG_FULL';
    case Sw.UNKNOWN_MASTER_KEY:
      return 'UNKNOWN_CARD_KEY';
    case Sw.SECURITY_NOT_SATISFIED:
      return 'S2_REFUSED';
    default:
      return 'CARD_REFUSED';
  }
}

/**
 * pay_ + the time in seconds (8 hex digits) + 64 random bits: unguessable, and the ids of one second sit next to
 * each other in the store's indexes (random ids would scatter each write over the whole index).
 */
function newPaymentId(): string {
  const secs = Math.floor(Date.now() / 1000) >>> 0;
  return `pay_${secs.toString(16).padStart(8, '0')}${randomHex(8)}`;
}

const hexU = (b: Uint8Array) => Buffer.from(b).toString('hex').toUpperCase();

/**
 * Per-transaction keys of payments in flight: derived once at the draw, used again for the Debit Result. A small
 * LRU keyed by merchant and transaction id; the shared key is part of the entry, so a merchant whose key changes
 * (a new configuration) never gets an old derivation.
 */
class DerivedKeys {
  private readonly map: LruCache<string, { sharedKey: Buffer; key: Buffer }>;
  constructor(size: number) {
    this.map = new LruCache(size);
  }
  get(merchant: MerchantConfig, txnId: string): Buffer {
    const id = `${merchant.id}\0${txnId}`;
    const hit = this.map.get(id);
    if (hit && hit.sharedKey.equals(merchant.sharedKey)) return Buffer.from(hit.key);
    const key = deriveTransactionKey(merchant.sharedKey, merchant.id, txnId);
    this.map.set(id, { sharedKey: merchant.sharedKey, key: Buffer.from(key) });
    return key;
  }
}

export class PaymentService {
  private readonly config: PaymentServerConfig;
  private readonly store: PaymentStore;
  private readonly pool: PsamPool;
  private readonly log: ServiceLog;
  private readonly now: () => Date;
  private readonly crashAt: CrashPoint | undefined;
  /** Standard variant: the PSAM a payment holds from draw to result. */
  private readonly leases = new Map<string, PsamLease>();
  private readonly locks = new Map<string, Promise<unknown>>();
  private readonly background = new Set<Promise<unknown>>();
  private resolveTimer: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly derivedKeys = new DerivedKeys(1024);

  constructor(o: PaymentServiceOptions) {
    this.config = o.config;
    this.store = o.store;
    this.pool = o.pool;
    this.log = o.log;
    this.now = o.now ?? (() => new Date());
    this.crashAt = o.crashAt;
    this.pool.on('reclaimed', (lease: PsamLease) => this.track(this.onReclaimed(lease)));
    this.pool.on('in-service', () => this.track(this.resolvePending()));
  }

  // -------------------------------------------------------------------------------------------
  // plumbing

  private crash(point: CrashPoint): void {
    if (this.crashAt === point) {
      this.log.error({ point }, 'PURSELAB_PAYMENT_CRASH_AT: killing the payment server (test fault injection)');
      process.kill(process.pid, 'SIGKILL');
    }
  }

  /** Run `fn` with no other flow of the same payment in between. */
  private serial<T>(id: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(id) ?? Promise.resolve();
    const run = prev.then(fn, fn);
    const tail = run.catch(() => undefined);
    this.locks.set(id, tail);
    void tail.then(() => {
      if (this.locks.get(id) === tail) this.locks.delete(id);
    });
    return run;
  }

  private track(p: Promise<unknown>): void {
    const q = p.catch((e) => this.log.warn({ err: (e as Error).message }, 'background payment task failed (retried later)'));
    this.background.add(q);
    void q.finally(() => this.background.delete(q));
  }

  private merchantOf(id: string): MerchantConfig {
    const m = this.config.merchants.get(id);
    if (!m) throw forbidden('UNKNOWN_MERCHANT', `merchant '${id}' is not known to this payment server`);
    return m;
  }

  /** The per-transaction key (derived at the draw and again for the result: recent ones are kept, see DerivedKeys). */
  private derivedKey(p: { merchantId: string; txnId: string }): Buffer {
    return this.derivedKeys.get(this.merchantOf(p.merchantId), p.txnId);
  }

  private tskOf(p: PaymentRow, derived: Buffer): Buffer {
    if (!p.etsk) throw new HttpError(500, 'NO_SESSION_KEY', `payment ${p.paymentId} has no ETSK`);
    return unwrapSessionKey(derived, Buffer.from(p.etsk, 'hex'));
  }

  private async mustGet(paymentId: string): Promise<PaymentRow> {
    const p = await this.store.get(paymentId);
    if (!p) throw notFound('UNKNOWN_PAYMENT', `no payment ${paymentId}`);
    return p;
  }

  private releaseLease(paymentId: string): void {
    const l = this.leases.get(paymentId);
    if (l) {
      this.leases.delete(paymentId);
      this.pool.release(l);
    }
  }

  // -------------------------------------------------------------------------------------------
  // draw request (FIG. 11B steps 680-692)

  /** The order checks of the draw request; returns the decoded start-up data. */
  private editOrder(order: Order, body: DrawBody, req: DrawRequest, derived: Buffer): StartupData {
    if (order.merchantId !== req.merchantId || order.txnId !== req.txnId) throw badRequest('ORDER_MISMATCH', 'the order ticket is for another merchant or transaction than the draw request');
    if (!verifyMacOf(derived, Label.ORDER, order, body.ticket.mac)) throw unauthorized('ORDER_MAC_INVALID', `the order ticket of transaction ${order.txnId} does not carry merchant ${order.merchantId}'s MAC (altered amount or wrong merchant)`);
    const now = this.now().getTime();
    const issued = Date.parse(order.issuedAt);
    const expires = Date.parse(order.expiresAt);
    if (Number.isNaN(issued) || Number.isNaN(expires)) throw badRequest('BAD_ORDER', 'issuedAt and expiresAt must be ISO 8601 times');
    if (expires <= now) throw new HttpError(422, 'ORDER_EXPIRED', `the order expired at ${order.expiresAt}`);
    if (issued > now + this.config.timeouts.clockSkewMs) throw new HttpError(422, 'ORDER_NOT_YET_VALID', `the order is issued in the future (${order.issuedAt})`);
    if (expires <= issued) throw badRequest('BAD_ORDER', 'expiresAt must be after issuedAt');
    switch (order.kind) {
      case 'purchase':
        if (order.amount < 1) throw badRequest('BAD_ORDER', 'a purchase amount must be at least 1 minor unit');
        if (order.currency < 1 || order.currency > 998 || order.exponent > 4) throw badRequest('BAD_ORDER', 'a purchase currency must be ISO 4217 numeric 001-998 with exponent 0-4');
        break;
      case 'authentication':
        if (order.amount !== 0 || order.currency !== AUTH_CURRENCY || order.exponent !== 0) throw badRequest('BAD_ORDER', `an authentication is amount 0, currency ${AUTH_CURRENCY}, exponent 0`);
        break;
      case 'points':
        if (order.amount < 1 || order.exponent !== 0 || order.currency < 1) throw badRequest('BAD_ORDER', 'a points redemption is at least 1 point of a programme 0001-9999, exponent 0');
        break;
    }
    let startup: StartupData;
    try {
      startup = decodeStartupData(Buffer.from(body.card.startup, 'hex'));
    } catch (e) {
      throw badRequest('BAD_STARTUP', `the card's start-up data does not decode (${(e as Error).message})`);
    }
    if (order.kind === 'purchase' && (startup.currency !== order.currency || startup.exponent !== order.exponent)) {
      throw new HttpError(422, 'CURRENCY_MISMATCH', `the order is in currency ${order.currency}/${order.exponent}, the card holds ${startup.currency}/${startup.exponent}`);
    }
    if (order.kind === 'points' && startup.currency !== order.currency) throw new HttpError(422, 'CURRENCY_MISMATCH', `the order is for points programme ${order.currency}, the card's is ${startup.currency}`);
    return startup;
  }

  async draw(req: DrawRequest): Promise<DrawResponse> {
    const merchant = this.config.merchants.get(req.merchantId);
    if (!merchant) {
      await this.store.logEvent(null, 'draw-refused', { merchantId: req.merchantId, txnId: req.txnId, code: 'UNKNOWN_MERCHANT' });
      throw forbidden('UNKNOWN_MERCHANT', `merchant '${req.merchantId}' is not known to this payment server`);
    }
    const derived = this.derivedKeys.get(merchant, req.txnId);
    let body: DrawBody;
    let tsk: Buffer | undefined;
    let startup: StartupData;
    try {
      if (merchant.encrypted) {
        if (!req.sealed || !req.etsk || req.draw) throw badRequest('ENCRYPTION_REQUIRED', `merchant ${merchant.id} uses the encryption layer: send { sealed, etsk }, not a plain draw`);
        tsk = unwrapSessionKey(derived, Buffer.from(req.etsk, 'hex'));
        let opened: unknown;
        try {
          opened = open(tsk, Label.DRAW_REQUEST, req.sealed);
        } catch (e) {
          if (e instanceof MessageAuthError) throw unauthorized('DRAW_NOT_AUTHENTIC', 'the sealed draw request does not open with the TSK from ETSK (wrong key or altered)');
          throw e;
        }
        const problem = drawBodyProblem(opened);
        if (problem) throw badRequest('BAD_REQUEST', `sealed draw request: ${problem}`);
        body = opened as DrawBody;
      } else {
        if (!req.draw || req.sealed || req.etsk) throw badRequest('NOT_ENCRYPTED', `merchant ${merchant.id} does not use the encryption layer: send { draw }`);
        body = req.draw;
      }
      startup = this.editOrder(body.ticket.order, body, req, derived);
    } catch (e) {
      await this.store.logEvent(null, 'draw-refused', { merchantId: req.merchantId, txnId: req.txnId, code: (e as PurselabError).code ?? 'ERROR' });
      throw e;
    }
    const order = body.ticket.order;
    const paymentId = newPaymentId();
    const row = {
      paymentId,
      merchantId: merchant.id,
      txnId: order.txnId,
      kind: order.kind,
      variant: merchant.variant,
      encrypted: merchant.encrypted,
      amount: order.amount,
      currency: order.currency,
      exponent: order.exponent,
      cardId: startup.cardId,
      cardCounter: startup.counter,
      startup: body.card.startup.toUpperCase(),
      etsk: req.etsk ? req.etsk.toUpperCase() : null,
    };
    const event = { card: maskCardId(startup.cardId), counter: startup.counter, kind: order.kind, amount: order.amount, currency: order.currency, terminalId: body.terminalId ?? null, atr: body.card.atr.toUpperCase() };
    // The draw is saved before waiting for a PSAM; taking the PSAM is invisible outside the server, so the next
    // save is 'debit-issued' (with the psam-assigned event), after INITIALIZE PURCHASE. A crash in between leaves
    // 'received': failed at restart, nothing debited (S2 never left the server). The PSAM is held for less.
    await this.insertDraw(row, event, req);
    this.log.info({ paymentId, merchantId: merchant.id, txnId: order.txnId, kind: order.kind, amount: order.amount, card: maskCardId(startup.cardId) }, 'draw request received');
    this.crash('received');
    return this.serial(paymentId, () => this.issueDebit(paymentId, merchant, order, startup, Buffer.from(body.card.startup, 'hex'), derived, tsk));
  }

  /** Save the draw ('received'); a replayed transaction id is 409 DRAW_REPLAYED. */
  private async insertDraw(row: NewPayment, event: Record<string, unknown>, req: DrawRequest): Promise<void> {
    try {
      await this.store.insertReceived(row, event);
    } catch (e) {
      if (e instanceof DuplicateTransactionError) {
        await this.store.logEvent(null, 'draw-refused', { merchantId: req.merchantId, txnId: req.txnId, code: 'DRAW_REPLAYED' });
        throw conflict('DRAW_REPLAYED', e.message);
      }
      throw e;
    }
  }

  private async issueDebit(paymentId: string, merchant: MerchantConfig, order: Order, startup: StartupData, startupRaw: Buffer, derived: Buffer, tsk: Buffer | undefined): Promise<DrawResponse> {
    const failNow = async (from: PaymentState[], reason: string, detail: Record<string, unknown> = {}) => {
      await this.store.transition(paymentId, from, 'failed', { reason }, 'failed', { reason, ...detail });
    };
    let lease: PsamLease;
    try {
      lease = await this.pool.acquire(paymentId);
    } catch (e) {
      await failNow(['received'], (e as PurselabError).code ?? 'PSAM_UNAVAILABLE');
      throw e;
    }
    let keep = false;
    try {
      this.crash('psam-assigned');
      const early = merchant.variant !== 'standard';
      const txType = KIND_TX[order.kind];
      const { date, time } = dateTimeOf(this.now());
      let debit;
      try {
        debit = await this.pool.use(lease, async (ch) => {
          await selectPsam(ch);
          return psamInitializePurchase(ch, startupRaw, { txType, amount: order.amount, currency: order.currency, exponent: order.exponent, date, time, location: locationBytes(this.config.location) }, early);
        });
      } catch (e) {
        if (e instanceof CardStatusError) {
          const reason = reasonForSw(e.sw);
          await failNow(['received', 'psam-assigned'], reason, { psamId: lease.psamId, sw: e.sw.toString(16).toUpperCase() });
          throw new HttpError(reason === 'PSAM_LOG_FULL' ? 503 : 422, reason, `the PSAM refused the purchase: ${e.message}`);
        }
        await failNow(['received', 'psam-assigned'], (e as PurselabError).code ?? 'PSAM_ERROR', { psamId: lease.psamId });
        throw e;
      }
      const expectedS3 = debit.expectedS3 ? hexU(debit.expectedS3) : null;
      const iep: DebitIep = {
        paymentId,
        variant: merchant.variant,
        txType,
        debitData: hexU(debit.debitData),
        ...this.variantExtras(paymentId, merchant, order, startup, debit.debit.psamId, debit.debit.psamTxn, expectedS3, derived),
      };
      // Early release: the PSAM's part is done (it keeps the record open until the S3 is posted): free it now.
      if (early) this.pool.release(lease);
      await this.store.transition(
        paymentId,
        ['received', 'psam-assigned'],
        'debit-issued',
        { psamId: debit.debit.psamId, psamTxn: debit.debit.psamTxn, txType, debitData: iep.debitData, expectedS3 },
        'debit-issued',
        { psamId: debit.debit.psamId, psamTxn: debit.debit.psamTxn },
        undefined,
        [{ type: 'psam-assigned', detail: { state: 'psam-assigned', psamId: lease.psamId } }],
      );
      this.crash('debit-issued');
      if (!early) {
        this.leases.set(paymentId, lease);
        keep = true;
      }
      return tsk ? { paymentId, sealed: seal(tsk, Label.DEBIT_IEP, iep) } : { paymentId, debit: iep };
    } finally {
      if (!keep) this.pool.release(lease);
    }
  }

  private variantExtras(paymentId: string, merchant: MerchantConfig, order: Order, startup: StartupData, psamId: string, psamTxn: number, expectedS3: string | null, derived: Buffer): Partial<DebitIep> {
    if (merchant.variant === 'trusted-agent') {
      const a: DebitAuthorisation = {
        type: order.kind === 'authentication' ? 'authentication-result' : 'debit-result',
        paymentId,
        merchantId: merchant.id,
        txnId: order.txnId,
        kind: order.kind,
        amount: order.amount,
        currency: order.currency,
        exponent: order.exponent,
        card: maskCardId(startup.cardId),
        psamId,
        psamTxn,
        completedAt: this.now().toISOString(),
        s3Sha256: createHash('sha256').update(Buffer.from(expectedS3!, 'hex')).digest('hex'),
      };
      return { expectedS3: expectedS3!, authorisation: seal(derived, Label.DEBIT_AUTHORISATION, a) };
    }
    if (merchant.variant === 'merchant-compare') {
      const x: ExpectedS3ForMerchant = { paymentId, merchantId: merchant.id, txnId: order.txnId, amount: order.amount, currency: order.currency, exponent: order.exponent, expectedS3: expectedS3! };
      return { expectedS3ForMerchant: seal(derived, Label.EXPECTED_S3, x) };
    }
    return {};
  }

  // -------------------------------------------------------------------------------------------
  // debit response / confirm (FIG. 11D steps 622-632)

  async debitResponse(req: DebitResponseRequest): Promise<DebitResultResponse> {
    return this.serial(req.paymentId, async () => {
      const p = await this.mustGet(req.paymentId);
      let outcome: CardDebitOutcome;
      if (p.encrypted) {
        if (!req.sealed || req.response) throw badRequest('ENCRYPTION_REQUIRED', 'this payment uses the encryption layer: send { paymentId, sealed }');
        let opened: unknown;
        try {
          opened = open(this.tskOf(p, this.derivedKey(p)), Label.DEBIT_RESPONSE, req.sealed);
        } catch (e) {
          if (e instanceof MessageAuthError) throw unauthorized('DEBIT_RESPONSE_NOT_AUTHENTIC', 'the sealed debit response does not open with the TSK of this payment');
          throw e;
        }
        const problem = outcomeProblem(opened);
        if (problem) throw badRequest('BAD_REQUEST', `sealed debit response: ${problem}`);
        outcome = opened as CardDebitOutcome;
      } else {
        if (!req.response || req.sealed) throw badRequest('NOT_ENCRYPTED', 'this payment does not use the encryption layer: send { paymentId, response }');
        outcome = req.response;
      }
      if (outcome.paymentId !== req.paymentId) throw badRequest('PAYMENT_MISMATCH', 'the card outcome names another payment');
      return this.applyOutcome(p, outcome);
    });
  }

  async confirm(req: ConfirmRequest): Promise<DebitResultResponse> {
    const dr = req.debitResponse.toUpperCase();
    if (req.s3 !== undefined && dr.slice(18) !== req.s3.toUpperCase()) throw badRequest('S3_MISMATCH', 's3 is not the S3 inside debitResponse');
    await this.mustGet(req.paymentId);
    return this.serial(req.paymentId, async () => this.applyOutcome(await this.mustGet(req.paymentId), { paymentId: req.paymentId, sw: '9000', debitResponse: dr }));
  }

  /** The card's outcome for payment `p` (read inside serial(), so it is the current row). */
  private async applyOutcome(p: PaymentRow, outcome: CardDebitOutcome): Promise<DebitResultResponse> {
    const id = p.paymentId;
    const sw = outcome.sw.toUpperCase();
    const dr = outcome.debitResponse?.toUpperCase();
    if (p.resultJson) {
      const same = sw === '9000' ? p.debitResponse === dr : p.debitResponse === null;
      if (same) return JSON.parse(p.resultJson) as DebitResultResponse;
      throw conflict('RESULT_ALREADY_GIVEN', `payment ${id} already has its result (${p.state}); a different card outcome is refused`);
    }
    // A re-credit claim exists only for a payment that went debit-unknown (or failed): none to look for before.
    if (p.state !== 'debit-issued' && (await this.store.getRecredit(id))) throw conflict('RECREDIT_ISSUED', `payment ${id} was given up and a re-credit claim issued for it`);
    if (!['debit-issued', 'debit-unknown', 'debit-response-received'].includes(p.state)) {
      throw conflict('WRONG_STATE', `payment ${id} is ${p.state}${p.reason ? ` (${p.reason})` : ''}: no card outcome expected`);
    }
    if (sw !== '9000') {
      if (p.state === 'debit-response-received') throw conflict('WRONG_STATE', `payment ${id} already has the card's debit response`);
      const reason = reasonForSw(parseInt(sw, 16));
      const result = this.buildResult(p, this.payload(p, 'declined', 'payment-server', p.cardCounter ?? 0, reason));
      const ok = await this.store.transition(id, ['debit-issued', 'debit-unknown'], 'failed', { reason, resultJson: JSON.stringify(result) }, 'card-refused', { sw, reason });
      this.releaseLease(id);
      if (!ok) throw conflict('WRONG_STATE', `payment ${id} changed state meanwhile`);
      this.log.info({ paymentId: id, reason }, 'payment declined: the card refused the DEBIT');
      return result;
    }
    if (!dr) throw badRequest('NO_DEBIT_RESPONSE', 'SW 9000 must come with the debit response data (NEWCTR NEWBAL CVR S3)');
    const resp = decodeDebitResponse(Buffer.from(dr, 'hex'));
    if (p.state === 'debit-response-received') {
      if (p.debitResponse !== dr) throw conflict('DEBIT_RESPONSE_DIFFERS', `payment ${id} already has a different debit response`);
    } else {
      await this.store.transition(id, ['debit-issued', 'debit-unknown'], 'debit-response-received', { debitResponse: dr }, 'debit-response-received', { newCounter: resp.newCounter });
      this.crash('debit-response-received');
    }
    return this.verifyAndComplete({ ...p, state: 'debit-response-received', debitResponse: dr }, resp);
  }

  /** Prove the debit (PSAM VERIFY S3 for standard; the expected S3 otherwise), then complete or fail. */
  private async verifyAndComplete(p: PaymentRow, resp: DebitResponse): Promise<DebitResultResponse> {
    if (p.variant === 'standard') {
      let lease = this.leases.get(p.paymentId);
      const fresh = !lease || !lease.valid;
      if (fresh) lease = await this.pool.acquire(p.paymentId, { psamId: p.psamId! });
      this.leases.delete(p.paymentId);
      try {
        await this.pool.use(lease!, async (ch) => {
          if (fresh) await selectPsam(ch);
          await psamVerifyS3(ch, { psamTxn: p.psamTxn!, newCounter: resp.newCounter, cvr: resp.cvr, s3: resp.s3 });
        });
      } catch (e) {
        if (e instanceof CardStatusError && e.sw === Sw.S3_INVALID) return this.failAfterDebit(p, 'S3_INVALID');
        if (e instanceof CardStatusError && e.sw === Sw.NO_SUCH_TRANSACTION) {
          await this.store.transition(p.paymentId, ['debit-response-received'], 'debit-unknown', { reason: 'PSAM_RECORD_CLOSED' }, 'debit-unknown', { reason: 'PSAM_RECORD_CLOSED' });
          throw conflict('PSAM_RECORD_CLOSED', `the PSAM's record of payment ${p.paymentId} is no longer in its open batch: the debit is settled from the batch`);
        }
        throw e; // PSAM away: the S3 stays stored, resolvePending() finishes it
      } finally {
        this.pool.release(lease!);
      }
      this.crash('psam-verified');
      return this.complete(p, resp, 'psam', true);
    }
    const expected = Buffer.from(p.expectedS3 ?? '', 'hex');
    const match = expected.length === 8 && resp.newCounter === (p.cardCounter ?? -2) + 1 && timingSafeEqual(resp.s3, expected);
    if (!match) return this.failAfterDebit(p, 'S3_INVALID');
    const result = await this.complete(p, resp, 'payment-server', false);
    this.track(this.postS3(p.paymentId));
    return result;
  }

  private payload(p: PaymentRow, status: 'approved' | 'declined', verifiedBy: 'psam' | 'payment-server', cardCounter: number, reason?: string): DebitResultPayload {
    return {
      type: p.kind === 'authentication' ? 'authentication-result' : 'debit-result',
      paymentId: p.paymentId,
      merchantId: p.merchantId,
      txnId: p.txnId,
      status,
      ...(reason ? { reason } : {}),
      kind: p.kind,
      amount: p.amount,
      currency: p.currency,
      exponent: p.exponent,
      card: p.cardId ? maskCardId(p.cardId) : '',
      cardCounter,
      psamId: p.psamId ?? '',
      psamTxn: p.psamTxn ?? 0,
      verifiedBy,
      completedAt: this.now().toISOString(),
    };
  }

  /** Debit Result M (always sealed under the derived key) and Debit Result C (plain, or under the TSK with FIG. 9). */
  private buildResult(p: PaymentRow, payload: DebitResultPayload): DebitResultResponse {
    const derived = this.derivedKey(p);
    const resultM: Envelope = seal(derived, Label.DEBIT_RESULT_M, payload);
    if (p.encrypted) return { paymentId: p.paymentId, status: payload.status, resultCSealed: seal(this.tskOf(p, derived), Label.DEBIT_RESULT_C, payload), resultM };
    return { paymentId: p.paymentId, status: payload.status, resultC: payload, resultM };
  }

  private async complete(p: PaymentRow, resp: DebitResponse, verifiedBy: 'psam' | 'payment-server', psamConfirmed: boolean): Promise<DebitResultResponse> {
    const payload = this.payload(p, 'approved', verifiedBy, resp.newCounter);
    const result = this.buildResult(p, payload);
    const ledger =
      p.kind === 'authentication'
        ? undefined
        : { paymentId: p.paymentId, merchantId: p.merchantId, txnId: p.txnId, kind: p.kind, amount: p.amount, currency: p.currency, exponent: p.exponent, psamId: p.psamId!, psamTxn: p.psamTxn!, completedAt: payload.completedAt };
    const ok = await this.store.transition(p.paymentId, ['debit-response-received'], 'completed', { resultJson: JSON.stringify(result), psamConfirmed, reason: null }, 'completed', { verifiedBy, psamConfirmed, newCounter: resp.newCounter }, ledger);
    if (!ok) {
      const again = await this.mustGet(p.paymentId);
      if (again.resultJson) return JSON.parse(again.resultJson) as DebitResultResponse;
      throw conflict('WRONG_STATE', `payment ${p.paymentId} is ${again.state}`);
    }
    this.crash('completed');
    this.log.info({ paymentId: p.paymentId, kind: p.kind, amount: p.amount, verifiedBy }, p.kind === 'authentication' ? 'authentication completed (no payment record)' : 'payment completed');
    return result;
  }

  private async failAfterDebit(p: PaymentRow, reason: string): Promise<DebitResultResponse> {
    const result = this.buildResult(p, this.payload(p, 'declined', p.variant === 'standard' ? 'psam' : 'payment-server', p.cardCounter ?? 0, reason));
    await this.store.transition(p.paymentId, ['debit-response-received'], 'failed', { reason, resultJson: JSON.stringify(result) }, 'failed', { reason });
    this.log.warn({ paymentId: p.paymentId, reason }, "payment declined: the card's S3 did not prove the debit");
    return result;
  }

  /** Early-release variants: post the card's S3 to the PSAM that issued S2, to confirm its log record. */
  private async postS3(paymentId: string): Promise<boolean> {
    return this.serial(paymentId, async () => {
      const p = await this.store.get(paymentId);
      if (!p || p.state !== 'completed' || p.psamConfirmed || !p.debitResponse || !p.psamId || p.psamTxn === null) return false;
      if (!this.pool.inService(p.psamId)) return false;
      const resp = decodeDebitResponse(Buffer.from(p.debitResponse, 'hex'));
      const lease = await this.pool.acquire(paymentId, { psamId: p.psamId });
      try {
        await this.pool.use(lease, async (ch) => {
          await selectPsam(ch);
          await psamVerifyS3(ch, { psamTxn: p.psamTxn!, newCounter: resp.newCounter, cvr: resp.cvr, s3: resp.s3 });
        });
      } catch (e) {
        this.pool.release(lease);
        if (e instanceof CardStatusError) await this.store.logEvent(paymentId, 'psam-confirm-refused', { sw: e.sw.toString(16).toUpperCase() });
        throw e;
      }
      this.pool.release(lease); // the PSAM's part is done: it need not wait for the write below
      await this.store.patch(paymentId, { psamConfirmed: true }, 'psam-confirmed', { psamId: p.psamId, psamTxn: p.psamTxn });
      return true;
    });
  }

  // -------------------------------------------------------------------------------------------
  // abort, reclaim, recovery

  async abort(req: AbortRequest): Promise<AbortResponse> {
    await this.mustGet(req.paymentId);
    return this.serial(req.paymentId, async () => {
      const p = await this.mustGet(req.paymentId);
      if (p.state === 'failed') return { paymentId: p.paymentId, state: 'failed', reason: p.reason ?? 'FAILED' };
      if (!['received', 'psam-assigned', 'debit-issued', 'debit-unknown'].includes(p.state)) throw conflict('WRONG_STATE', `payment ${p.paymentId} is ${p.state}: it cannot be aborted`);
      if (await this.store.getRecredit(p.paymentId)) throw conflict('RECREDIT_ISSUED', `payment ${p.paymentId} has a re-credit claim`);
      const ok = await this.store.transition(p.paymentId, ['received', 'psam-assigned', 'debit-issued', 'debit-unknown'], 'failed', { reason: 'ABORTED' }, 'aborted', { clientReason: req.reason ?? '' });
      this.releaseLease(p.paymentId);
      if (!ok) throw conflict('WRONG_STATE', `payment ${p.paymentId} changed state meanwhile`);
      return { paymentId: p.paymentId, state: 'failed', reason: 'ABORTED' };
    });
  }

  private async onReclaimed(lease: PsamLease): Promise<void> {
    await this.serial(lease.paymentId, async () => {
      if (this.leases.get(lease.paymentId) === lease) this.leases.delete(lease.paymentId);
      const p = await this.store.get(lease.paymentId);
      if (!p) return;
      if (p.state === 'received' || p.state === 'psam-assigned') await this.store.transition(p.paymentId, [p.state], 'failed', { reason: 'HOLD_TIMEOUT' }, 'failed', { reason: 'HOLD_TIMEOUT' });
      else if (p.state === 'debit-issued') await this.store.transition(p.paymentId, ['debit-issued'], 'debit-unknown', { reason: 'HOLD_TIMEOUT' }, 'debit-unknown', { reason: 'HOLD_TIMEOUT' });
    });
  }

  /**
   * At start-up: nothing is in flight, so a payment cut before S2 was handed out failed (nothing debited); one cut
   * after S2 went out is 'debit-unknown' (its debit response may still come); stored S3s are verified.
   */
  async recoverAfterRestart(): Promise<{ failed: number; unknown: number; resolved: number }> {
    let failed = 0;
    let unknown = 0;
    for (const p of await this.store.listByState(['received', 'psam-assigned'])) {
      if (await this.store.transition(p.paymentId, [p.state], 'failed', { reason: 'INTERRUPTED' }, 'failed', { reason: 'INTERRUPTED', note: 'cut before S2 was handed out: nothing debited' })) failed++;
    }
    for (const p of await this.store.listByState(['debit-issued'])) {
      if (await this.store.transition(p.paymentId, ['debit-issued'], 'debit-unknown', { reason: 'INTERRUPTED' }, 'debit-unknown', { reason: 'INTERRUPTED' })) unknown++;
    }
    const resolved = await this.resolvePending();
    if (failed + unknown + resolved) this.log.warn({ failed, unknown, resolved }, 'recovered payments interrupted by a restart');
    return { failed, unknown, resolved };
  }

  /** Verify stored S3s whose PSAM is in service, and post S3s not yet confirmed at their PSAM. Returns how many finished. */
  async resolvePending(): Promise<number> {
    if (this.closed) return 0;
    let n = 0;
    for (const p of await this.store.listByState(['debit-response-received'])) {
      if (!p.psamId || !this.pool.inService(p.psamId)) continue;
      try {
        // one already being finished (a flow, or a resolver run started by the PSAM coming back) is waited for
        await this.serial(p.paymentId, async () => {
          const q = await this.mustGet(p.paymentId);
          if (q.state !== 'debit-response-received' || !q.debitResponse) return;
          await this.verifyAndComplete(q, decodeDebitResponse(Buffer.from(q.debitResponse, 'hex')));
          n++;
        });
      } catch (e) {
        this.log.warn({ paymentId: p.paymentId, err: (e as Error).message }, 'stored S3 not verified yet');
      }
    }
    for (const p of await this.store.listUnconfirmed()) {
      if (!p.psamId || !this.pool.inService(p.psamId)) continue;
      try {
        if (await this.postS3(p.paymentId)) n++;
      } catch (e) {
        this.log.warn({ paymentId: p.paymentId, err: (e as Error).message }, 'S3 not posted to its PSAM yet');
      }
    }
    return n;
  }

  /** Run resolvePending() every `ms`. */
  startResolver(ms: number): void {
    this.resolveTimer = setInterval(() => this.track(this.resolvePending()), ms);
    this.resolveTimer.unref();
  }

  /** Wait for background work (S3 posts); stop the resolver. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.resolveTimer) clearInterval(this.resolveTimer);
    await Promise.allSettled([...this.background]);
    for (const id of [...this.leases.keys()]) this.releaseLease(id);
  }

  get heldLeases(): number {
    return this.leases.size;
  }
}

export { PurselabError };
