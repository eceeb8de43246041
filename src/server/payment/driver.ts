// A merchant-and-cardholder driver for the payment server alone, for its tests and `purselab bench payment`:
// makes the merchant's MACed order ticket (and TSK/ETSK for FIG. 9), reads the card's start-up data, posts the
// draw request, sends the DEBIT to the card, and posts the card's answer. `post` is any transport (fastify
// inject, or HTTP over loopback). The full client terminal, with the merchant's page and status URL, is
// src/client (payAtMerchant); this driver skips the merchant server so the payment server can be measured and
// faulted on its own (forged S3, stop after the draw, ...).

import { randomHex } from '../../random-pool.ts';
import { encodeDebitResponse, type DebitResponse, type StartupData } from '../../crypto/purse-apdu.ts';
import { AUTH_CURRENCY } from '../../crypto/purse-mac.ts';
import { macOf, open, seal } from '../../protocol/envelope.ts';
import { deriveTransactionKey, newSessionKey, wrapSessionKey } from '../../protocol/keys.ts';
import { Label, type DebitIep, type DebitResultPayload, type DebitResultResponse, type DrawBody, type DrawRequest, type DrawResponse, type Order, type OrderKind, type OrderTicket } from '../../protocol/payment-messages.ts';
import { CardStatusError } from '../../terminal/errors.ts';
import { debitCard, initializeForPurchase } from '../../terminal/purse.ts';
import type { CardChannel } from '../../transport/channel.ts';

export interface DriverMerchant {
  readonly id: string;
  readonly sharedKey: Buffer;
  readonly encrypted: boolean;
}

export interface Posted {
  readonly status: number;
  readonly body: any; // eslint-disable-line @typescript-eslint/no-explicit-any
}
export type Post = (path: string, body: unknown) => Promise<Posted>;

export interface OrderSpec {
  readonly kind?: OrderKind;
  readonly amount?: number;
  readonly currency?: number;
  readonly exponent?: number;
  readonly txnId?: string;
  readonly ttlMs?: number;
  readonly now?: Date;
}

export interface MerchantSide {
  readonly order: Order;
  readonly ticket: OrderTicket;
  readonly derived: Buffer;
  readonly tsk?: Buffer;
  readonly etsk?: string;
}

/** The merchant's order, MACed under the derived key (and a TSK/ETSK pair for FIG. 9 merchants). */
export function merchantOrder(m: DriverMerchant, spec: OrderSpec = {}): MerchantSide {
  const kind = spec.kind ?? 'purchase';
  const now = spec.now ?? new Date();
  const txnId = spec.txnId ?? `T${randomHex(8)}`;
  const order: Order = {
    merchantId: m.id,
    txnId,
    kind,
    amount: kind === 'authentication' ? 0 : (spec.amount ?? 100),
    currency: kind === 'authentication' ? AUTH_CURRENCY : (spec.currency ?? (kind === 'points' ? 7001 : 978)),
    exponent: kind === 'purchase' ? (spec.exponent ?? 2) : 0,
    issuedAt: now.toISOString(),
    expiresAt: new Date(now.getTime() + (spec.ttlMs ?? 600_000)).toISOString(),
  };
  const derived = deriveTransactionKey(m.sharedKey, m.id, txnId);
  const ticket = { order, mac: macOf(derived, Label.ORDER, order) };
  if (!m.encrypted) return { order, ticket, derived };
  const tsk = newSessionKey();
  return { order, ticket, derived, tsk, etsk: wrapSessionKey(derived, tsk).toString('hex').toUpperCase() };
}

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex').toUpperCase();

/** The draw request for `side` with the card's ATR and start-up data (sealed under the TSK for FIG. 9). */
export function drawRequest(side: MerchantSide, card: { atr: Buffer; startupRaw: Buffer }, edit?: (body: { -readonly [K in keyof DrawBody]: DrawBody[K] }) => void): DrawRequest {
  const body = { ticket: side.ticket, card: { atr: hex(card.atr), startup: hex(card.startupRaw) } } as { -readonly [K in keyof DrawBody]: DrawBody[K] };
  edit?.(body);
  const { merchantId, txnId } = side.order;
  return side.tsk ? { merchantId, txnId, sealed: seal(side.tsk, Label.DRAW_REQUEST, body), etsk: side.etsk! } : { merchantId, txnId, draw: body };
}

/** The Debit IEP out of a DrawResponse (opened with the TSK for FIG. 9). */
export function debitIepOf(side: MerchantSide, r: DrawResponse): DebitIep {
  if (r.debit) return r.debit;
  if (r.sealed && side.tsk) return open(side.tsk, Label.DEBIT_IEP, r.sealed) as DebitIep;
  throw new Error('no Debit IEP in the draw response');
}

/** The debit-response request for the card's answer. */
export function outcomeRequest(side: MerchantSide, paymentId: string, outcome: { sw: string; debitResponse?: string }) {
  const o = { paymentId, ...outcome };
  return side.tsk ? { paymentId, sealed: seal(side.tsk, Label.DEBIT_RESPONSE, o) } : { paymentId, response: o };
}

export interface BuyOptions extends OrderSpec {
  /** Replace the card's S3 by 8 other bytes before posting it (a forged S3). */
  readonly forgeS3?: boolean;
  /** Stop after the draw response, or after the card's DEBIT (nothing posted). */
  readonly stopAfter?: 'draw' | 'debit';
}

export interface BuyResult {
  readonly side: MerchantSide;
  readonly startup: StartupData;
  readonly draw: Posted;
  readonly paymentId?: string;
  readonly iep?: DebitIep;
  /** The card's DEBIT answer, or the SW of its refusal. */
  readonly card?: DebitResponse | { sw: number };
  readonly debitResponseHex?: string;
  readonly result?: Posted;
  /** Debit Result M opened with the merchant's derived key (what the merchant accepts). */
  readonly resultM?: DebitResultPayload;
}

/** One payment: order, card start-up data, draw, DEBIT, result (standard / early-release: debit-response; others: confirm). */
export async function buy(post: Post, m: DriverMerchant, card: CardChannel, options: BuyOptions = {}): Promise<BuyResult> {
  const side = merchantOrder(m, options);
  const { startup, raw } = await initializeForPurchase(card, { purse: side.order.kind === 'points' ? 'points' : 'money' });
  const draw = await post('/v1/draw', drawRequest(side, { atr: card.atr, startupRaw: raw }));
  if (draw.status !== 200) return { side, startup, draw };
  const paymentId = (draw.body as DrawResponse).paymentId;
  const iep = debitIepOf(side, draw.body as DrawResponse);
  if (options.stopAfter === 'draw') return { side, startup, draw, paymentId, iep };
  let resp: DebitResponse;
  try {
    resp = await debitCard(card, iep.txType, Buffer.from(iep.debitData, 'hex'));
  } catch (e) {
    if (!(e instanceof CardStatusError)) throw e;
    const sw = e.sw;
    if (options.stopAfter === 'debit') return { side, startup, draw, paymentId, iep, card: { sw } };
    const result = await post('/v1/debit-response', outcomeRequest(side, paymentId, { sw: sw.toString(16).toUpperCase().padStart(4, '0') }));
    return { side, startup, draw, paymentId, iep, card: { sw }, result, ...resultMOf(side, result) };
  }
  const posted = options.forgeS3 ? { ...resp, s3: Buffer.from(resp.s3.map((b) => b ^ 0x5a)) } : resp;
  const debitResponseHex = hex(encodeDebitResponse(posted));
  if (options.stopAfter === 'debit') return { side, startup, draw, paymentId, iep, card: resp, debitResponseHex };
  const result =
    iep.variant === 'trusted-agent' || iep.variant === 'merchant-compare'
      ? await post('/v1/confirm', { paymentId, debitResponse: debitResponseHex })
      : await post('/v1/debit-response', outcomeRequest(side, paymentId, { sw: '9000', debitResponse: debitResponseHex }));
  return { side, startup, draw, paymentId, iep, card: resp, debitResponseHex, result, ...resultMOf(side, result) };
}

function resultMOf(side: MerchantSide, r: Posted): { resultM?: DebitResultPayload } {
  if (r.status !== 200) return {};
  return { resultM: open(side.derived, Label.DEBIT_RESULT_M, (r.body as DebitResultResponse).resultM) as DebitResultPayload };
}
