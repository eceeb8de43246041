// HTTP routes of the payment server (fastify plugin; every body validated by its JSON schema):
//   POST /v1/draw            DrawRequest -> DrawResponse
//   POST /v1/debit-response  DebitResponseRequest -> DebitResultResponse (idempotent)
//   POST /v1/confirm         ConfirmRequest -> DebitResultResponse (trusted-agent, merchant-compare)
//   POST /v1/abort           AbortRequest -> AbortResponse
//   GET  /v1/health          the PSAM pool and payment counts
//   admin (Bearer token when configured): GET /v1/admin/recovery, POST /v1/admin/recredit,
//   GET /v1/admin/payments/:paymentId, POST /v1/admin/batch, GET /v1/admin/batches, GET /v1/admin/batches/:batchId

import { timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { AbortRequest, ConfirmRequest, DebitResponseRequest, DrawRequest } from '../../protocol/payment-messages.ts';
import { maskCardId } from '../../terminal/amount.ts';
import { notFound, unauthorized } from '../app.ts';
import { closeBatches, type BatchDeps } from './batch.ts';
import type { PaymentServerConfig } from './config.ts';
import type { PsamPool } from './psam-pool.ts';
import { buildRecoveryReport, issueRecreditClaim } from './recovery.ts';
import {
  ABORT_REQUEST_SCHEMA,
  BATCH_ID_PARAMS,
  BATCH_REQUEST_SCHEMA,
  CONFIRM_REQUEST_SCHEMA,
  DEBIT_RESPONSE_REQUEST_SCHEMA,
  DRAW_REQUEST_SCHEMA,
  PAYMENT_ID_PARAMS,
  RECREDIT_REQUEST_SCHEMA,
} from './schemas.ts';
import type { PaymentService } from './service.ts';
import type { PaymentStore } from './store.ts';

export interface PaymentRouteDeps {
  readonly config: PaymentServerConfig;
  readonly service: PaymentService;
  readonly pool: PsamPool;
  readonly store: PaymentStore;
  readonly batch: BatchDeps;
}

export async function paymentRoutes(app: FastifyInstance, deps: PaymentRouteDeps): Promise<void> {
  const { service, pool, store, config } = deps;

  app.post('/v1/draw', { schema: { body: DRAW_REQUEST_SCHEMA } }, async (req) => service.draw(req.body as DrawRequest));
  app.post('/v1/debit-response', { schema: { body: DEBIT_RESPONSE_REQUEST_SCHEMA } }, async (req) => service.debitResponse(req.body as DebitResponseRequest));
  app.post('/v1/confirm', { schema: { body: CONFIRM_REQUEST_SCHEMA } }, async (req) => service.confirm(req.body as ConfirmRequest));
  app.post('/v1/abort', { schema: { body: ABORT_REQUEST_SCHEMA } }, async (req) => service.abort(req.body as AbortRequest));

  app.get('/v1/health', async () => {
    const psams = pool.health();
    const inService = psams.filter((p) => p.inService).length;
    return {
      status: inService === 0 ? 'down' : inService < psams.length ? 'degraded' : 'ok',
      psams,
      held: pool.heldCount,
      merchants: [...config.merchants.values()].map((m) => ({ id: m.id, name: m.name, variant: m.variant, encrypted: m.encrypted })),
      payments: await store.countByState(),
    };
  });

  // Admin routes: loopback operators, or a Bearer token when adminToken is configured.
  const admin = async (req: FastifyRequest, _reply: FastifyReply) => {
    if (!config.adminToken) return;
    const got = Buffer.from(/^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1] ?? '');
    const want = Buffer.from(config.adminToken);
    if (got.length !== want.length || !timingSafeEqual(got, want)) throw unauthorized('ADMIN_TOKEN', 'the admin routes need Authorization: Bearer <adminToken>');
  };

  app.get('/v1/admin/recovery', { preHandler: admin }, async () => buildRecoveryReport(store));
  app.post('/v1/admin/recredit', { preHandler: admin, schema: { body: RECREDIT_REQUEST_SCHEMA } }, async (req) => issueRecreditClaim(store, config.issuerLinkKey, (req.body as { paymentId: string }).paymentId));
  app.get('/v1/admin/payments/:paymentId', { preHandler: admin, schema: { params: PAYMENT_ID_PARAMS } }, async (req) => {
    const id = (req.params as { paymentId: string }).paymentId;
    const p = await store.get(id);
    if (!p) throw notFound('UNKNOWN_PAYMENT', `no payment ${id}`);
    const { cardId, etsk: _etsk, startup: _startup, resultJson: _r, ...rest } = p;
    return { ...rest, card: cardId ? maskCardId(cardId) : null, events: await store.events(id) };
  });
  app.post('/v1/admin/batch', { preHandler: admin, schema: { body: BATCH_REQUEST_SCHEMA } }, async (req) => {
    await service.resolvePending();
    const purge = (req.body as { purge?: boolean } | undefined)?.purge;
    return { batches: await closeBatches(deps.batch, purge === undefined ? {} : { purge }) };
  });
  app.get('/v1/admin/batches', { preHandler: admin }, async () => ({
    batches: (await store.listBatches()).map(({ collectionJson: _c, ...b }) => b),
  }));
  app.get('/v1/admin/batches/:batchId', { preHandler: admin, schema: { params: BATCH_ID_PARAMS } }, async (req) => {
    const b = await store.getBatch(Number((req.params as { batchId: string }).batchId));
    if (!b) throw notFound('UNKNOWN_BATCH', 'no such batch');
    return JSON.parse(b.collectionJson) as unknown;
  });
}
