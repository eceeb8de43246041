// Orders and the payment page (seed 003 step 606 / 808): the merchant makes a unique transaction id, prices
// the order from its catalogue, MACs it under the per-transaction key derived from key 402 (OrderTicket), and
// with the FIG. 9 layer adds a fresh TSK and ETSK = TSK under the derived key. The page is rebuilt from the
// stored order each time it is asked for, so it reads the same every time.

import { randomHex } from '../../random-pool.ts';
import { AUTH_CURRENCY } from '../../crypto/purse-mac.ts';
import { MAX_AMOUNT } from '../../terminal/amount.ts';
import { macOf } from '../../protocol/envelope.ts';
import { deriveTransactionKey, newSessionKey, wrapSessionKey } from '../../protocol/keys.ts';
import { Label, type Order, type PaymentPage } from '../../protocol/payment-messages.ts';
import { badRequest } from '../app.ts';
import type { MerchantConfig } from './config.ts';
import type { OrderLine, StoredOrder } from './store.ts';

export interface OrderItemRequest {
  readonly sku: string;
  readonly quantity?: number;
}

/** A fresh transaction id: 20 hex digits (80 random bits), unique per merchant. */
export function newTxnId(): string {
  return randomHex(10).toUpperCase();
}

type NewOrder = Omit<StoredOrder, 'status' | 'declineReason'>;

function stamp(config: MerchantConfig, now: Date): { issuedAt: string; expiresAt: string; txnId: string; tsk: string | undefined } {
  return {
    txnId: newTxnId(),
    issuedAt: now.toISOString(),
    expiresAt: new Date(now.getTime() + config.orderTtlSeconds * 1000).toISOString(),
    tsk: config.encrypted ? newSessionKey().toString('hex') : undefined,
  };
}

/** A purchase of catalogue items (each sku once, quantity 1..99). BAD_ORDER for unknown skus or a total over the card's range. */
export function newPurchaseOrder(config: MerchantConfig, items: readonly OrderItemRequest[], now = new Date()): NewOrder {
  if (items.length === 0) throw badRequest('BAD_ORDER', 'an order needs at least one item');
  const seen = new Set<string>();
  const lines: OrderLine[] = items.map((it) => {
    const c = config.catalogue.find((x) => x.sku === it.sku);
    if (!c) throw badRequest('BAD_ORDER', `no item '${it.sku}' in the catalogue`);
    if (seen.has(it.sku)) throw badRequest('BAD_ORDER', `item '${it.sku}' appears twice: give a quantity instead`);
    seen.add(it.sku);
    return { sku: c.sku, name: c.name, quantity: it.quantity ?? 1, price: c.price };
  });
  const amount = lines.reduce((s, l) => s + l.price * l.quantity, 0);
  if (amount > MAX_AMOUNT) throw badRequest('BAD_ORDER', 'the order total is larger than a card can hold');
  const description = `${config.name}: ${lines.map((l) => `${l.quantity} x ${l.name}`).join(', ')}`.slice(0, 200);
  return { ...stamp(config, now), kind: 'purchase', amount, currency: config.currency, exponent: config.exponent, lines, benefit: undefined, description };
}

/** FIG. 16: claiming a benefit is a zero-amount authentication in the AUTH currency; no payment record. */
export function newAuthenticationOrder(config: MerchantConfig, benefitId: string, now = new Date()): NewOrder {
  const b = config.benefits.find((x) => x.id === benefitId);
  if (!b) throw badRequest('BAD_ORDER', `no benefit '${benefitId}'`);
  return { ...stamp(config, now), kind: 'authentication', amount: 0, currency: AUTH_CURRENCY, exponent: 0, lines: [], benefit: b.id, description: `${config.name}: claim ${b.name}`.slice(0, 200) };
}

/** The contract's Order for a stored order. */
export function orderOf(config: MerchantConfig, o: StoredOrder): Order {
  return {
    merchantId: config.merchantId,
    txnId: o.txnId,
    kind: o.kind,
    amount: o.amount,
    currency: o.currency,
    exponent: o.exponent,
    issuedAt: o.issuedAt,
    expiresAt: o.expiresAt,
    description: o.description,
  };
}

export const transactionKey = (config: MerchantConfig, txnId: string): Buffer => deriveTransactionKey(config.sharedKey, config.merchantId, txnId);

/** The page parameters: the MACed order, the payment server, the status URL, and TSK/ETSK with FIG. 9. */
export function paymentPageOf(config: MerchantConfig, o: StoredOrder, baseUrl: string): PaymentPage {
  const derived = transactionKey(config, o.txnId);
  const order = orderOf(config, o);
  const page: PaymentPage = {
    ticket: { order, mac: macOf(derived, Label.ORDER, order) },
    paymentServer: config.paymentServer,
    statusUrl: `${baseUrl}/api/orders/${o.txnId}/status`,
  };
  if (!o.tsk) return page;
  const tsk = Buffer.from(o.tsk, 'hex');
  return { ...page, tsk: o.tsk, etsk: wrapSessionKey(derived, tsk).toString('hex') };
}
