// JSON schemas of the payment server's routes (fastify validates every body against them; unknown fields are
// refused), and the same checks for the payloads that arrive sealed (FIG. 9), which the schemas cannot see.

import { ENVELOPE_SCHEMA } from '../../protocol/envelope.ts';
import type { CardDebitOutcome, DrawBody } from '../../protocol/payment-messages.ts';
import { isObj, type Obj } from '../../config-fields.ts';

const hex = (min: number, max = min) => ({ type: 'string', pattern: `^([0-9a-fA-F]{2}){${min},${max}}$` }) as const;
const ID = { type: 'string', pattern: '^[A-Za-z0-9._:-]{1,64}$' } as const;
const PAYMENT_ID = { type: 'string', pattern: '^pay_[0-9a-f]{24}$' } as const;

export const ORDER_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['merchantId', 'txnId', 'kind', 'amount', 'currency', 'exponent', 'issuedAt', 'expiresAt'],
  properties: {
    merchantId: ID,
    txnId: ID,
    kind: { type: 'string', enum: ['purchase', 'authentication', 'points'] },
    amount: { type: 'integer', minimum: 0, maximum: 0xffffffff },
    currency: { type: 'integer', minimum: 0, maximum: 9999 },
    exponent: { type: 'integer', minimum: 0, maximum: 9 },
    issuedAt: { type: 'string', minLength: 10, maxLength: 40 },
    expiresAt: { type: 'string', minLength: 10, maxLength: 40 },
    description: { type: 'string', maxLength: 1000 },
  },
} as const;

export const DRAW_BODY_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['ticket', 'card'],
  properties: {
    ticket: {
      type: 'object',
      additionalProperties: false,
      required: ['order', 'mac'],
      properties: { order: ORDER_SCHEMA, mac: { type: 'string', pattern: '^[0-9a-fA-F]{16}$' } },
    },
    card: {
      type: 'object',
      additionalProperties: false,
      required: ['atr', 'startup'],
      properties: { atr: hex(2, 33), startup: hex(27) },
    },
    terminalId: { type: 'string', pattern: '^[\\x20-\\x7e]{1,64}$' },
  },
} as const;

export const DRAW_REQUEST_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['merchantId', 'txnId'],
  properties: { merchantId: ID, txnId: ID, draw: DRAW_BODY_SCHEMA, sealed: ENVELOPE_SCHEMA, etsk: hex(16) },
} as const;

export const OUTCOME_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['paymentId', 'sw'],
  properties: { paymentId: PAYMENT_ID, sw: { type: 'string', pattern: '^[0-9a-fA-F]{4}$' }, debitResponse: hex(17) },
} as const;

export const DEBIT_RESPONSE_REQUEST_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['paymentId'],
  properties: { paymentId: PAYMENT_ID, response: OUTCOME_SCHEMA, sealed: ENVELOPE_SCHEMA },
} as const;

export const CONFIRM_REQUEST_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['paymentId', 'debitResponse'],
  properties: { paymentId: PAYMENT_ID, debitResponse: hex(17), s3: hex(8) },
} as const;

export const ABORT_REQUEST_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['paymentId'],
  properties: { paymentId: PAYMENT_ID, reason: { type: 'string', pattern: '^[\\x20-\\x7e]{0,200}$' } },
} as const;

export const PAYMENT_ID_PARAMS = { type: 'object', additionalProperties: false, required: ['paymentId'], properties: { paymentId: PAYMENT_ID } } as const;
export const RECREDIT_REQUEST_SCHEMA = { type: 'object', additionalProperties: false, required: ['paymentId'], properties: { paymentId: PAYMENT_ID } } as const;
export const BATCH_REQUEST_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  properties: { purge: { type: 'boolean' } },
} as const;
export const BATCH_ID_PARAMS = { type: 'object', additionalProperties: false, required: ['batchId'], properties: { batchId: { type: 'string', pattern: '^[0-9]{1,12}$' } } } as const;

// ---------------------------------------------------------------------------------------------
// Sealed payloads: the same rules, checked by hand after the envelope opened.

const only = (o: Obj, keys: readonly string[]) => Object.keys(o).every((k) => keys.includes(k));
const matches = (v: unknown, re: RegExp) => typeof v === 'string' && re.test(v);
const intIn = (v: unknown, lo: number, hi: number) => Number.isInteger(v) && (v as number) >= lo && (v as number) <= hi;
const ID_RE = /^[A-Za-z0-9._:-]{1,64}$/;
const hexRe = (min: number, max = min) => new RegExp(`^([0-9a-fA-F]{2}){${min},${max}}$`);

/** The reason a sealed DrawBody does not have the shape of DRAW_BODY_SCHEMA, or undefined when it does. */
export function drawBodyProblem(v: unknown): string | undefined {
  if (!isObj(v) || !only(v, ['ticket', 'card', 'terminalId'])) return 'the draw body must be { ticket, card, terminalId? }';
  const t = v.ticket;
  if (!isObj(t) || !only(t, ['order', 'mac']) || !matches(t.mac, /^[0-9a-fA-F]{16}$/)) return 'ticket must be { order, mac (16 hex digits) }';
  const o = t.order;
  if (!isObj(o) || !only(o, [...ORDER_SCHEMA.required, 'description'])) return 'ticket.order has unknown fields or is not an object';
  if (!matches(o.merchantId, ID_RE) || !matches(o.txnId, ID_RE)) return 'ticket.order merchantId / txnId malformed';
  if (!['purchase', 'authentication', 'points'].includes(o.kind as string)) return 'ticket.order.kind must be purchase, authentication or points';
  if (!intIn(o.amount, 0, 0xffffffff) || !intIn(o.currency, 0, 9999) || !intIn(o.exponent, 0, 9)) return 'ticket.order amount / currency / exponent out of range';
  if (typeof o.issuedAt !== 'string' || typeof o.expiresAt !== 'string' || o.issuedAt.length > 40 || o.expiresAt.length > 40) return 'ticket.order issuedAt / expiresAt must be ISO 8601 strings';
  if (o.description !== undefined && (typeof o.description !== 'string' || o.description.length > 1000)) return 'ticket.order.description must be a string of at most 1000 characters';
  const c = v.card;
  if (!isObj(c) || !only(c, ['atr', 'startup']) || !matches(c.atr, hexRe(2, 33)) || !matches(c.startup, hexRe(27))) return 'card must be { atr (2-33 bytes hex), startup (27 bytes hex) }';
  if (v.terminalId !== undefined && !matches(v.terminalId, /^[\x20-\x7e]{1,64}$/)) return 'terminalId must be 1-64 printable characters';
  return undefined;
}

/** The reason a sealed CardDebitOutcome is malformed, or undefined. */
export function outcomeProblem(v: unknown): string | undefined {
  if (!isObj(v) || !only(v, ['paymentId', 'sw', 'debitResponse'])) return 'the card outcome must be { paymentId, sw, debitResponse? }';
  if (!matches(v.paymentId, /^pay_[0-9a-f]{24}$/) || !matches(v.sw, /^[0-9a-fA-F]{4}$/)) return 'paymentId / sw malformed';
  if (v.debitResponse !== undefined && !matches(v.debitResponse, hexRe(17))) return 'debitResponse must be 17 bytes hex';
  return undefined;
}

export type { CardDebitOutcome, DrawBody };
