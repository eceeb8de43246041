// The merchant server's routes (a fastify plugin): the shop (catalogue, benefits, orders), the payment page
// with the patent's page parameters (HTML, or the PaymentPage JSON), and the status URL that releases the
// goods once, only on a result that proves this order was paid (validate.ts). Every body and parameter is
// checked by a JSON schema that refuses unknown fields.

import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { ENVELOPE_SCHEMA } from '../../protocol/envelope.ts';
import type { MerchantStatusRequest, MerchantStatusResponse, PaymentPage } from '../../protocol/payment-messages.ts';
import { formatAmount } from '../../terminal/amount.ts';
import { conflict, notFound, badRequest } from '../app.ts';
import type { MerchantConfig } from './config.ts';
import { benefitsPage, cataloguePage, paymentPageHtml } from './html.ts';
import { newAuthenticationOrder, newPurchaseOrder, paymentPageOf, type OrderItemRequest } from './orders.ts';
import { MerchantStoreError, type MerchantStore, type StoredOrder } from './store.ts';
import { judgeStatus } from './validate.ts';

export interface MerchantRoutesOptions {
  readonly config: MerchantConfig;
  readonly store: MerchantStore;
  /** Clock for order stamps (tests). */
  readonly now?: () => Date;
}

const NO_QUERY = { querystring: { type: 'object', additionalProperties: false, properties: {} } } as const;
const TXN_ID = { type: 'string', pattern: '^[0-9A-F]{20}$' } as const;
const ID_PARAMS = { type: 'object', required: ['id'], additionalProperties: false, properties: { id: TXN_ID } } as const;
const HEX = (min: number, max: number) => ({ type: 'string', pattern: `^([0-9a-fA-F]{2}){${min},${max}}$` }) as const;

const ORDER_BODY = {
  type: 'object',
  additionalProperties: false,
  properties: {
    items: {
      type: 'array',
      minItems: 1,
      maxItems: 50,
      items: {
        type: 'object',
        required: ['sku'],
        additionalProperties: false,
        properties: { sku: { type: 'string', minLength: 1, maxLength: 32 }, quantity: { type: 'integer', minimum: 1, maximum: 99 } },
      },
    },
    benefit: { type: 'string', minLength: 1, maxLength: 32 },
  },
} as const;

const STATUS_BODY = {
  type: 'object',
  required: ['txnId', 'paymentId'],
  additionalProperties: false,
  properties: {
    txnId: TXN_ID,
    paymentId: { type: 'string', minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_.:-]+$' },
    resultM: ENVELOPE_SCHEMA,
    s3: HEX(8, 8),
    debitResponse: HEX(9, 64),
    authorisation: ENVELOPE_SCHEMA,
    expectedS3ForMerchant: ENVELOPE_SCHEMA,
  },
} as const;

const ORDER_VIEW = {
  type: 'object',
  additionalProperties: false,
  properties: {
    id: { type: 'string' },
    txnId: { type: 'string' },
    kind: { type: 'string' },
    status: { type: 'string' },
    released: { type: 'boolean' },
    amount: { type: 'integer' },
    currency: { type: 'integer' },
    exponent: { type: 'integer' },
    cost: { type: 'string' },
    description: { type: 'string' },
    benefit: { type: 'string' },
    declineReason: { type: 'string' },
    lines: { type: 'array', items: { type: 'object', additionalProperties: false, properties: { sku: { type: 'string' }, name: { type: 'string' }, quantity: { type: 'integer' }, price: { type: 'integer' } } } },
    expiresAt: { type: 'string' },
    payUrl: { type: 'string' },
    payJsonUrl: { type: 'string' },
    statusUrl: { type: 'string' },
  },
} as const;

export async function merchantRoutes(app: FastifyInstance, opts: MerchantRoutesOptions): Promise<void> {
  const { config, store } = opts;
  const now = opts.now ?? (() => new Date());
  const base = (req: FastifyRequest): string => config.publicUrl ?? `${req.protocol}://${req.host}`;

  const load = async (id: string): Promise<StoredOrder> => {
    const o = await store.getOrder(id);
    if (!o) throw notFound('NO_SUCH_ORDER', `no order ${id}`);
    return o;
  };

  const view = async (req: FastifyRequest, o: StoredOrder) => {
    const b = base(req);
    const released = (await store.getRelease(o.txnId)) !== undefined;
    return {
      id: o.txnId,
      txnId: o.txnId,
      kind: o.kind,
      status: o.status,
      released,
      amount: o.amount,
      currency: o.currency,
      exponent: o.exponent,
      cost: formatAmount(o.amount, o.exponent),
      description: o.description,
      ...(o.benefit ? { benefit: o.benefit } : {}),
      ...(o.declineReason ? { declineReason: o.declineReason } : {}),
      lines: [...o.lines],
      expiresAt: o.expiresAt,
      payUrl: `${b}/orders/${o.txnId}/pay`,
      payJsonUrl: `${b}/orders/${o.txnId}/pay.json`,
      statusUrl: `${b}/api/orders/${o.txnId}/status`,
    };
  };

  const goodsOf = (o: StoredOrder): string =>
    o.kind === 'authentication'
      ? (config.benefits.find((b) => b.id === o.benefit)?.goods ?? `benefit ${o.benefit ?? ''}`)
      : o.lines.map((l) => `${l.quantity} x ${config.catalogue.find((c) => c.sku === l.sku)?.goods ?? l.name}`).join('; ');

  const html = (reply: FastifyReply, body: string) => reply.type('text/html; charset=utf-8').send(body);

  app.get('/', { schema: NO_QUERY }, async (_req, reply) => html(reply, cataloguePage(config)));
  app.get('/benefits', { schema: NO_QUERY }, async (_req, reply) => html(reply, benefitsPage(config)));

  app.get('/api/health', { schema: { ...NO_QUERY, response: { 200: { type: 'object', properties: { ok: { type: 'boolean' }, merchantId: { type: 'string' } } } } } }, async () => ({
    ok: true,
    merchantId: config.merchantId,
  }));

  app.get('/api/catalogue', { schema: NO_QUERY }, async () => ({
    merchantId: config.merchantId,
    name: config.name,
    currency: config.currency,
    exponent: config.exponent,
    items: config.catalogue.map((c) => ({ sku: c.sku, name: c.name, price: c.price, cost: formatAmount(c.price, config.exponent) })),
    benefits: config.benefits.map((b) => ({ id: b.id, name: b.name })),
  }));

  app.post<{ Body: { items?: OrderItemRequest[]; benefit?: string } }>('/api/orders', { schema: { body: ORDER_BODY, response: { 201: ORDER_VIEW } } }, async (req, reply) => {
    const { items, benefit } = req.body;
    if ((items === undefined) === (benefit === undefined)) throw badRequest('BAD_ORDER', 'give either items (a purchase) or benefit (an authentication), not both or neither');
    const o = items ? newPurchaseOrder(config, items, now()) : newAuthenticationOrder(config, benefit!, now());
    await store.createOrder(o);
    const stored = (await store.getOrder(o.txnId))!;
    req.log.info({ txnId: o.txnId, kind: o.kind, amount: o.amount, currency: o.currency }, 'order created');
    return reply.status(201).send(await view(req, stored));
  });

  app.get<{ Params: { id: string } }>('/api/orders/:id', { schema: { params: ID_PARAMS, response: { 200: ORDER_VIEW } } }, async (req) => view(req, await load(req.params.id)));

  const page = async (req: FastifyRequest<{ Params: { id: string } }>): Promise<{ order: StoredOrder; page: PaymentPage }> => {
    const order = await load(req.params.id);
    return { order, page: paymentPageOf(config, order, base(req)) };
  };
  app.get<{ Params: { id: string } }>('/orders/:id/pay', { schema: { params: ID_PARAMS } }, async (req, reply) => {
    const p = await page(req);
    const accept = req.headers.accept ?? '';
    if (/application\/json/i.test(accept) && !/text\/html/i.test(accept)) return p.page;
    return html(reply, paymentPageHtml(config, p.order, p.page));
  });
  app.get<{ Params: { id: string } }>('/orders/:id/pay.json', { schema: { params: ID_PARAMS } }, async (req) => (await page(req)).page);

  app.post<{ Params: { id: string }; Body: MerchantStatusRequest }>('/api/orders/:id/status', { schema: { params: ID_PARAMS, body: STATUS_BODY } }, async (req): Promise<MerchantStatusResponse> => {
    const order = await load(req.params.id);
    const body = req.body;
    if (body.txnId !== order.txnId) throw badRequest('TXN_MISMATCH', `the result names transaction ${body.txnId}, posted to order ${order.txnId}`);
    const verdict = judgeStatus(config, order, body);
    const txnId = order.txnId;
    if (verdict.outcome === 'declined') {
      const released = await store.getRelease(txnId);
      if (released) return { txnId, released: true, status: released.status, goods: released.goods, message: 'already released' };
      await store.decline(txnId, verdict.reason);
      req.log.info({ txnId, paymentId: verdict.paymentId, reason: verdict.reason }, 'payment declined: nothing released');
      return { txnId, released: false, status: 'declined', message: `payment declined (${verdict.reason}): nothing released` };
    }
    const status = order.kind === 'authentication' ? 'authenticated' : 'paid';
    try {
      const { release, fresh } = await store.release({ txnId, paymentId: verdict.paymentId, status, verifiedBy: verdict.verifiedBy, card: verdict.card, goods: goodsOf(order), releasedAt: now().toISOString() });
      if (fresh) req.log.info({ txnId, paymentId: verdict.paymentId, status, verifiedBy: verdict.verifiedBy }, 'goods released');
      return { txnId, released: true, status: release.status, goods: release.goods, message: fresh ? (status === 'paid' ? 'paid: goods released' : 'authenticated: benefit released') : 'already released' };
    } catch (e) {
      if (e instanceof MerchantStoreError && e.code === 'PAYMENT_REUSED') throw conflict('PAYMENT_REUSED', e.message);
      throw e;
    }
  });
}
