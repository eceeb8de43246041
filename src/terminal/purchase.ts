// A purchase between a purse (card) and a PSAM, seed 003 FIG. 11D in "dumb terminal" mode, and the
// early-release variant of FIGS. 6-8. Both channels are plain CardChannels: two PC/SC readers, two emulated
// cards, or one of each.
//
//   card: SELECT, [VERIFY PIN], INITIALIZE FOR PURCHASE -> start-up data
//   PSAM: SELECT, INITIALIZE PURCHASE(start-up data + amount ...) -> DEBIT data with S2 [+ expected S3]
//   card: DEBIT -> NEWCTR NEWBAL CVR S3
//   PSAM: VERIFY S3 -> debit result             (early release: compare S3 with the expected S3 first)
//
// Failures are PurchaseError with what happened to the value: refused (nothing debited), debit-unknown (the
// DEBIT got no answer) or debited-unverified (the card answered the DEBIT, S3 is not proven). resolvePurchase
// then tells from the card's counter and the PSAM log whether the card was debited, and confirms the PSAM
// record when the card's S3 is at hand.

import { timingSafeEqual } from 'node:crypto';
import { Sw, type DebitCommand, type DebitResponse, type DebitResult, type StartupData } from '../crypto/purse-apdu.ts';
import { AUTH_CURRENCY, BatchRecordStatus, TxType, type BatchRecord } from '../crypto/purse-mac.ts';
import { PurselabError } from '../errors.ts';
import type { CardChannel } from '../transport/channel.ts';
import { showAmount } from './amount.ts';
import { CardStatusError } from './errors.ts';
import { psamInitializePurchase, psamVerifyS3, readBatch, selectPsam } from './psam.ts';
import { debitCard, initializeForPurchase, readPurse, type PurseKind } from './purse.ts';

export type PurchaseVariant = 'standard' | 'early-release';
export type PurchaseKind = 'purchase' | 'authentication' | 'points';

export interface PurchaseOptions {
  /** Minor units (points for kind 'points'); ignored for 'authentication' (always 0). */
  amount?: number;
  /** The merchant's currency and exponent; default the card's (start-up data). */
  currency?: number;
  exponent?: number;
  /** YYYYMMDD / HHMMSS; default `now` (UTC). */
  date?: string;
  time?: string;
  now?: Date;
  /** 8 bytes, or up to 8 ASCII characters (padded with spaces). Default "PURSELAB". */
  location?: Uint8Array | string;
  variant?: PurchaseVariant;
  kind?: PurchaseKind;
  /** Cardholder PIN, verified before INITIALIZE FOR PURCHASE. */
  pin?: string;
  /** Early release: post the card's S3 to the PSAM afterwards to confirm its log record (default true). */
  postS3?: boolean;
}

export interface PurchaseResult {
  readonly kind: PurchaseKind;
  readonly variant: PurchaseVariant;
  readonly txType: number;
  readonly cardId: string;
  readonly psamId: string;
  readonly psamTxn: number;
  readonly amount: number;
  readonly currency: number;
  readonly exponent: number;
  readonly counterBefore: number;
  readonly newCounter: number;
  readonly balanceBefore: number;
  readonly newBalance: number;
  readonly s2: Buffer;
  readonly s3: Buffer;
  readonly expectedS3?: Buffer;
  /** Who proved the debit: the PSAM (VERIFY S3) or the host's comparison with the expected S3 (early release). */
  readonly verifiedBy: 'psam' | 'expected-s3';
  /** The PSAM's log record is confirmed (always with 'psam'; with early release once S3 was posted). */
  readonly psamConfirmed: boolean;
  /** The PSAM's debit result (when VERIFY S3 ran and succeeded). */
  readonly debitResult?: DebitResult;
  readonly startup: StartupData;
}

export type PurchaseOutcome = 'refused' | 'debit-unknown' | 'debited-unverified';
export type PurchaseStage = 'card-init' | 'psam-init' | 'card-debit' | 's3-compare' | 'psam-verify';

/** What went wrong and what it means for the value. */
export class PurchaseError extends PurselabError {
  /** refused: nothing was debited. debit-unknown: the DEBIT got no answer. debited-unverified: the card reported the debit, S3 is not proven. */
  readonly outcome: PurchaseOutcome;
  readonly stage: PurchaseStage;
  /** Whether the card's balance went down: 'no', 'yes' (the card answered the DEBIT) or 'unknown'. */
  readonly cardDebited: 'no' | 'yes' | 'unknown';
  /** SW of the refusing command, when a device refused. */
  readonly sw: number | undefined;
  readonly startup: StartupData | undefined;
  readonly psamTxn: number | undefined;
  readonly debit: DebitCommand | undefined;
  readonly debitResponse: DebitResponse | undefined;
  readonly expectedS3: Buffer | undefined;
  constructor(
    outcome: PurchaseOutcome,
    stage: PurchaseStage,
    message: string,
    details: {
      sw?: number | undefined;
      startup?: StartupData | undefined;
      debit?: DebitCommand | undefined;
      debitResponse?: DebitResponse | undefined;
      expectedS3?: Buffer | undefined;
      cause?: unknown;
    } = {},
  ) {
    const code = outcome === 'refused' ? 'PURCHASE_REFUSED' : outcome === 'debit-unknown' ? 'PURCHASE_DEBIT_UNKNOWN' : 'PURCHASE_UNVERIFIED';
    super(code, message, details.cause !== undefined ? { cause: details.cause } : undefined);
    this.outcome = outcome;
    this.stage = stage;
    this.cardDebited = outcome === 'refused' ? 'no' : outcome === 'debit-unknown' ? 'unknown' : 'yes';
    this.sw = details.sw;
    this.startup = details.startup;
    this.debit = details.debit;
    this.psamTxn = details.debit?.psamTxn;
    this.debitResponse = details.debitResponse;
    this.expectedS3 = details.expectedS3;
  }
}

const KIND_TX: Record<PurchaseKind, number> = { purchase: TxType.PURCHASE, authentication: TxType.AUTHENTICATION, points: TxType.POINTS_DEBIT };

function two(n: number): string {
  return String(n).padStart(2, '0');
}

export function dateTimeOf(d: Date): { date: string; time: string } {
  return {
    date: `${d.getUTCFullYear()}${two(d.getUTCMonth() + 1)}${two(d.getUTCDate())}`,
    time: `${two(d.getUTCHours())}${two(d.getUTCMinutes())}${two(d.getUTCSeconds())}`,
  };
}

/** LOC: 8 opaque bytes; a string is ASCII, padded with spaces. */
export function locationBytes(loc: Uint8Array | string | undefined): Buffer {
  if (loc === undefined) return Buffer.from('PURSELAB', 'ascii');
  if (typeof loc !== 'string') {
    if (loc.length !== 8) throw new PurselabError('BAD_LOCATION', `location must be 8 bytes, got ${loc.length}`);
    return Buffer.from(loc);
  }
  if (!/^[\x20-\x7e]{0,8}$/.test(loc)) throw new PurselabError('BAD_LOCATION', `location '${loc}' must be at most 8 printable ASCII characters`);
  return Buffer.from(loc.padEnd(8, ' '), 'ascii');
}

/** A readable reason for a refusal, with the amounts when they explain it. */
export function refusalText(e: CardStatusError, s: StartupData | undefined, amount: number, currency: number, exponent: number, points: boolean): string {
  const amt = showAmount(amount, currency, exponent, points);
  const bal = s ? showAmount(s.balance, s.currency, s.exponent, points) : undefined;
  switch (e.sw) {
    case Sw.INSUFFICIENT_VALUE:
      return `insufficient funds: the card holds ${bal ?? 'less'}, the purchase is ${amt}`;
    case Sw.CARD_EXPIRED:
      return `card expired${s ? ` (last valid day ${s.expiry})` : ''}`;
    case Sw.CURRENCY_MISMATCH:
      return `currency mismatch: the purchase is in ${amt.split(' ').slice(1).join(' ')}, the card holds ${bal ?? 'another currency'}`;
    case Sw.PURSE_BLOCKED:
      return 'the purse is blocked';
    case Sw.CARD_ON_BLOCKED_LIST:
      return 'the card is on the PSAM blocked-card list';
    case Sw.CURRENCY_NOT_ACCEPTED:
      return `this PSAM does not accept ${amt.split(' ').slice(1).join(' ')}`;
    case Sw.PIN_REQUIRED:
      return 'the card requires its PIN (--pin)';
    case Sw.LOG_FULL:
      return 'the PSAM transaction log is full: close the batch';
    default:
      return e.message;
  }
}

/**
 * Run one purchase (or zero-amount authentication, or points debit) between `card` and `psam`.
 * Resolves only when the debit is proven (PSAM VERIFY S3, or the expected S3 for early release).
 */
export async function purchase(card: CardChannel, psam: CardChannel, options: PurchaseOptions): Promise<PurchaseResult> {
  const kind = options.kind ?? 'purchase';
  const variant = options.variant ?? 'standard';
  const txType = KIND_TX[kind];
  const purse: PurseKind = kind === 'points' ? 'points' : 'money';
  const points = kind === 'points';
  const when = options.date !== undefined && options.time !== undefined ? { date: options.date, time: options.time } : { ...dateTimeOf(options.now ?? new Date()), ...(options.date ? { date: options.date } : {}), ...(options.time ? { time: options.time } : {}) };
  const location = locationBytes(options.location);
  if (kind !== 'authentication' && (options.amount === undefined || !Number.isInteger(options.amount) || options.amount < 1 || options.amount > 0xffffffff)) {
    throw new PurselabError('BAD_AMOUNT', `the amount must be a whole number of minor units 1..4294967295, got ${String(options.amount)}`);
  }

  // 1. The card's start-up data.
  let startup: StartupData;
  let raw: Buffer;
  try {
    ({ startup, raw } = await initializeForPurchase(card, { purse, pin: options.pin }));
  } catch (e) {
    throw new PurchaseError('refused', 'card-init', `the card could not start the purchase: ${(e as Error).message}; nothing was debited`, {
      sw: e instanceof CardStatusError ? e.sw : undefined,
      cause: e,
    });
  }
  const amount = kind === 'authentication' ? 0 : options.amount!;
  const currency = kind === 'authentication' ? AUTH_CURRENCY : kind === 'points' ? startup.currency : (options.currency ?? startup.currency);
  const exponent = kind === 'purchase' ? (options.exponent ?? startup.exponent) : 0;

  // 2. The PSAM checks the card and issues DEBIT with S2 (and logs an unconfirmed record).
  let debitData: Buffer;
  let debit: DebitCommand;
  let expectedS3: Buffer | undefined;
  try {
    await selectPsam(psam);
    ({ debitData, debit, expectedS3 } = await psamInitializePurchase(psam, raw, { txType, amount, currency, exponent, date: when.date, time: when.time, location }, variant === 'early-release'));
  } catch (e) {
    const why = e instanceof CardStatusError ? refusalText(e, startup, amount, currency, exponent, points) : `the PSAM did not issue the DEBIT: ${(e as Error).message}`;
    throw new PurchaseError('refused', 'psam-init', `${why}; nothing was debited`, { sw: e instanceof CardStatusError ? e.sw : undefined, startup, cause: e });
  }

  // 3. The card verifies S2 and debits.
  let resp: DebitResponse;
  try {
    resp = await debitCard(card, txType, debitData);
  } catch (e) {
    if (e instanceof CardStatusError) {
      throw new PurchaseError('refused', 'card-debit', `the card refused the debit: ${refusalText(e, startup, amount, currency, exponent, points)}; nothing was debited (PSAM transaction ${debit.psamTxn} stays unconfirmed)`, {
        sw: e.sw,
        startup,
        debit,
        expectedS3,
        cause: e,
      });
    }
    throw new PurchaseError('debit-unknown', 'card-debit', `no answer to the DEBIT (${(e as Error).message}): the card may or may not be debited; resolve with the card's counter (PSAM transaction ${debit.psamTxn})`, {
      startup,
      debit,
      expectedS3,
      cause: e,
    });
  }

  const base = {
    kind,
    variant,
    txType,
    cardId: startup.cardId,
    psamId: debit.psamId,
    psamTxn: debit.psamTxn,
    amount,
    currency,
    exponent,
    counterBefore: startup.counter,
    newCounter: resp.newCounter,
    balanceBefore: startup.balance,
    newBalance: resp.newBalance,
    s2: debit.s2,
    s3: resp.s3,
    startup,
  };
  const verify = () => psamVerifyS3(psam, { psamTxn: debit.psamTxn, newCounter: resp.newCounter, cvr: resp.cvr, s3: resp.s3 });

  // 4a. Early release: the host compares the card's S3 with the expected S3, then posts S3 to the PSAM.
  if (expectedS3) {
    const match = resp.newCounter === startup.counter + 1 && resp.s3.length === expectedS3.length && timingSafeEqual(resp.s3, expectedS3);
    if (!match) {
      throw new PurchaseError('debited-unverified', 's3-compare', `the card's S3 does not match the PSAM's expected S3: the debit is not proven (PSAM transaction ${debit.psamTxn})`, {
        startup,
        debit,
        debitResponse: resp,
        expectedS3,
      });
    }
    if (options.postS3 === false) return { ...base, expectedS3, verifiedBy: 'expected-s3', psamConfirmed: false };
    try {
      const debitResult = await verify();
      return { ...base, expectedS3, verifiedBy: 'expected-s3', psamConfirmed: true, debitResult };
    } catch {
      // The purchase is proven by the comparison; the PSAM record stays unconfirmed until S3 is posted again.
      return { ...base, expectedS3, verifiedBy: 'expected-s3', psamConfirmed: false };
    }
  }

  // 4b. Standard: the PSAM verifies S3 and confirms its record.
  try {
    const debitResult = await verify();
    return { ...base, verifiedBy: 'psam', psamConfirmed: true, debitResult };
  } catch (e) {
    const why = e instanceof CardStatusError ? `the PSAM refused the card's S3 (${e.message})` : `no answer from the PSAM to VERIFY S3 (${(e as Error).message})`;
    throw new PurchaseError('debited-unverified', 'psam-verify', `${why}: the card reports a debit of ${showAmount(amount, currency, exponent, points)} that is not proven (PSAM transaction ${debit.psamTxn})`, {
      sw: e instanceof CardStatusError ? e.sw : undefined,
      startup,
      debit,
      debitResponse: resp,
      cause: e,
    });
  }
}

/** Zero-amount authentication (seed 003 FIG. 16): counter + 1, S3, balance unchanged; logged by the PSAM as TXTYPE 02. */
export function authenticate(card: CardChannel, psam: CardChannel, options: Omit<PurchaseOptions, 'kind' | 'amount' | 'currency' | 'exponent'> = {}): Promise<PurchaseResult> {
  return purchase(card, psam, { ...options, kind: 'authentication' });
}

// ---------------------------------------------------------------------------------------------
// After a failure: what happened?

export interface PurchaseResolution {
  /** The card's balance went down for this transaction (its counter reached the transaction's NEWCTR). */
  readonly cardDebited: boolean;
  readonly counter: number;
  readonly balance: number;
  readonly pointsBalance: number;
  /** The PSAM's log record of this card transaction (CID, NEWCTR), if the PSAM issued an S2 for it. */
  readonly record: BatchRecord | undefined;
  readonly recordIn: 'open' | 'closed' | undefined;
  /** The record is confirmed (now or before). */
  readonly confirmed: boolean;
  /** This call confirmed it (VERIFY S3 with the card's S3 from the failure). */
  readonly confirmedNow: boolean;
  readonly summary: string;
}

/**
 * Tell what happened to a failed purchase after both devices are back (e.g. after a power loss): reads the
 * card's counter and balance and the PSAM's record of the transaction (by card id and NEWCTR = CTR + 1), and,
 * when the card was debited and its S3 is known, posts it with VERIFY S3 so the record is confirmed.
 */
export async function resolvePurchase(card: CardChannel, psam: CardChannel, failure: PurchaseError | { startup: StartupData; debit?: DebitCommand; debitResponse?: DebitResponse }): Promise<PurchaseResolution> {
  const startup = failure.startup;
  if (!startup) throw new PurselabError('CANNOT_RESOLVE', 'the purchase failed before the card sent its start-up data: nothing to resolve (nothing was debited)');
  const newCounter = startup.counter + 1;
  const purse = await readPurse(card);
  const counter = purse.counter;
  const balance = purse.balance;
  const pointsBalance = purse.pointsBalance;
  const cardDebited = counter >= newCounter;

  await selectPsam(psam);
  let record: BatchRecord | undefined;
  let recordIn: 'open' | 'closed' | undefined;
  for (const which of ['open', 'closed'] as const) {
    const rs = await readBatch(psam, which, { select: false });
    record = rs.find((r) => r.cardId === startup.cardId && r.newCounter === newCounter && (failure.debit === undefined || r.psamTxn === failure.debit.psamTxn));
    if (record) {
      recordIn = which;
      break;
    }
  }
  let confirmed = record?.status === BatchRecordStatus.CONFIRMED;
  let confirmedNow = false;
  const dr = failure.debitResponse;
  if (record && recordIn === 'open' && !confirmed && cardDebited && dr && dr.newCounter === newCounter) {
    try {
      await psamVerifyS3(psam, { psamTxn: record.psamTxn, newCounter: dr.newCounter, cvr: dr.cvr, s3: dr.s3 });
      confirmed = confirmedNow = true;
    } catch (e) {
      if (!(e instanceof CardStatusError)) throw e;
    }
  }
  const summary = !cardDebited
    ? `the card was not debited (counter ${counter})${record ? `; PSAM transaction ${record.psamTxn} stays unconfirmed and is not collected` : ''}`
    : record
      ? confirmed
        ? `the card was debited and PSAM transaction ${record.psamTxn} is confirmed${confirmedNow ? ' now' : ''}`
        : `the card was debited (counter ${counter}); PSAM transaction ${record.psamTxn} is unconfirmed (S3 lost): settle it against the card counter and the expected S3 in the batch`
      : `the card counter is ${counter} but the PSAM has no record of this transaction`;
  return { cardDebited, counter, balance, pointsBalance, record, recordIn, confirmed, confirmedNow, summary };
}
