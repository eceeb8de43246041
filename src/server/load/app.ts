// The load server's HTTP routes (seed 003 FIG. 17, load server 862): JSON-schema validation on every body,
// then the rules of service.ts. Routes:
//   POST /v1/loads                      Load Request -> Credit IEP (S2)           (client / OPAL)
//   POST /v1/loads/:txnId/response      card's Load Response (S3) -> Load Result  (client / OPAL)
//   POST /v1/loads/:txnId/recovery      zero-value Load Request -> Load Result    (client / OPAL)
//   GET  /v1/loads/:txnId               progress, to resume an unfinished load
//   GET  /v1/loads/:txnId/result        the sealed Load Result of a final load
//   POST /v1/bank/loads/:txnId/status   the bank's cancel / timeout query (MACed)
//   POST /v1/recredit[/:paymentId/s1|response|recovery], GET /v1/recredit/:paymentId   re-credit (recredit.ts)
//   GET  /v1/health

import type { FastifyInstance } from 'fastify';
import {
  CARD_LOAD_RESPONSE_SCHEMA,
  LOAD_REQUEST_BODY_SCHEMA,
  LOAD_TICKET_SCHEMA,
  TXN_ID_SCHEMA,
  ZERO_VALUE_REQUEST_SCHEMA,
  type BankStatusQuery,
  type CardLoadResponse,
  type LoadRequestBody,
  type LoadRequestMessage,
  type ZeroValueLoadRequest,
} from '../../protocol/load-messages.ts';
import { ENVELOPE_SCHEMA, type Envelope } from '../../protocol/envelope.ts';
import { createServerApp } from '../app.ts';
import type { RecreditService } from './recredit.ts';
import type { LoadService } from './service.ts';

const TXN_PARAMS = { type: 'object', additionalProperties: false, required: ['txnId'], properties: { txnId: TXN_ID_SCHEMA } } as const;
const HEX16 = { type: 'string', pattern: '^[0-9a-fA-F]{16}$' } as const;

export interface LoadAppOptions {
  readonly service: LoadService;
  /** Re-credits of failed purchases (when the configuration has an issuerLinkKey). */
  readonly recredit?: RecreditService | undefined;
  readonly logLevel?: string | false;
  readonly logStream?: NodeJS.WritableStream;
}

export function createLoadApp(options: LoadAppOptions): FastifyInstance {
  const app = createServerApp({ name: 'load', logLevel: options.logLevel ?? 'info', ...(options.logStream ? { logStream: options.logStream } : {}) });
  const s = options.service;

  app.get('/v1/health', async () => ({ ok: true, server: 'load' }));

  app.post<{ Body: LoadRequestMessage }>(
    '/v1/loads',
    {
      schema: {
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['ticket', 'eSessionKey', 'request', 'mac'],
          properties: { ticket: LOAD_TICKET_SCHEMA, eSessionKey: { type: 'string', pattern: '^[0-9a-fA-F]{32}$' }, request: LOAD_REQUEST_BODY_SCHEMA, mac: HEX16 },
        },
      },
    },
    async (req) => s.loadRequest(req.body),
  );

  app.post<{ Params: { txnId: string }; Body: CardLoadResponse }>('/v1/loads/:txnId/response', { schema: { params: TXN_PARAMS, body: CARD_LOAD_RESPONSE_SCHEMA } }, async (req) =>
    s.cardResponse(req.params.txnId, req.body),
  );

  app.post<{ Params: { txnId: string }; Body: ZeroValueLoadRequest }>('/v1/loads/:txnId/recovery', { schema: { params: TXN_PARAMS, body: ZERO_VALUE_REQUEST_SCHEMA } }, async (req) =>
    s.recovery(req.params.txnId, req.body),
  );

  app.get<{ Params: { txnId: string } }>('/v1/loads/:txnId', { schema: { params: TXN_PARAMS } }, async (req) => s.progress(req.params.txnId));
  app.get<{ Params: { txnId: string } }>('/v1/loads/:txnId/result', { schema: { params: TXN_PARAMS } }, async (req) => s.result(req.params.txnId));

  app.post<{ Params: { txnId: string }; Body: BankStatusQuery }>(
    '/v1/bank/loads/:txnId/status',
    {
      schema: {
        params: TXN_PARAMS,
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['bankId', 'amount', 'currency', 'exponent', 'mac'],
          properties: {
            bankId: { type: 'string', pattern: '^[A-Za-z0-9._-]{1,32}$' },
            amount: { type: 'integer', minimum: 0, maximum: 0xffffffff },
            currency: { type: 'integer', minimum: 0, maximum: 9999 },
            exponent: { type: 'integer', minimum: 0, maximum: 9 },
            mac: HEX16,
          },
        },
      },
    },
    async (req) => s.bankStatus(req.params.txnId, req.body),
  );

  const r = options.recredit;
  if (r) {
    const PID = { type: 'object', additionalProperties: false, required: ['paymentId'], properties: { paymentId: { type: 'string', pattern: '^[A-Za-z0-9._-]{1,64}$' } } } as const;
    app.post<{ Body: { claim: Envelope } }>('/v1/recredit', { schema: { body: { type: 'object', additionalProperties: false, required: ['claim'], properties: { claim: ENVELOPE_SCHEMA } } } }, async (req) => r.claim(req.body.claim));
    app.get<{ Params: { paymentId: string } }>('/v1/recredit/:paymentId', { schema: { params: PID } }, async (req) => r.get(req.params.paymentId));
    app.post<{ Params: { paymentId: string }; Body: { request: LoadRequestBody } }>(
      '/v1/recredit/:paymentId/s1',
      { schema: { params: PID, body: { type: 'object', additionalProperties: false, required: ['request'], properties: { request: LOAD_REQUEST_BODY_SCHEMA } } } },
      async (req) => r.s1(req.params.paymentId, req.body.request),
    );
    app.post<{ Params: { paymentId: string }; Body: CardLoadResponse }>('/v1/recredit/:paymentId/response', { schema: { params: PID, body: CARD_LOAD_RESPONSE_SCHEMA } }, async (req) => r.response(req.params.paymentId, req.body));
    app.post<{ Params: { paymentId: string }; Body: ZeroValueLoadRequest }>('/v1/recredit/:paymentId/recovery', { schema: { params: PID, body: ZERO_VALUE_REQUEST_SCHEMA } }, async (req) =>
      r.recovery(req.params.paymentId, req.body),
    );
  }
  return app;
}
