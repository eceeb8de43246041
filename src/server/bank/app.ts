// The bank server's HTTP routes (seed 003 FIG. 17, bank server 860): JSON-schema validation on every body,
// then the rules of service.ts, and the background sweep that resolves expired holds. Routes:
//   POST /v1/login                     cardholder login -> bearer token
//   POST /v1/loads/quote      (login)  card balance/currency/maximum -> the load screen (max load)
//   POST /v1/loads            (login)  amount + card facts -> hold + LoadPage (client applet parameters)
//   POST /v1/loads/:txnId/cancel (login) give up a load (resolved through the load server)
//   POST /v1/loads/:txnId/result       the status URL: the sealed Load Result -> capture or release
//   GET  /v1/loads/:txnId              hold state
//   GET  /v1/health

import type { FastifyInstance, FastifyRequest } from 'fastify';
import { ENVELOPE_SCHEMA, type Envelope } from '../../protocol/envelope.ts';
import { TXN_ID_SCHEMA, type CardFacts } from '../../protocol/load-messages.ts';
import { createServerApp } from '../app.ts';
import type { BankService } from './service.ts';

const TXN_PARAMS = { type: 'object', additionalProperties: false, required: ['txnId'], properties: { txnId: TXN_ID_SCHEMA } } as const;
const CARD_FACTS = {
  type: 'object',
  additionalProperties: false,
  required: ['balance', 'maxBalance', 'currency', 'exponent', 'card'],
  properties: {
    balance: { type: 'integer', minimum: 0, maximum: 0xffffffff },
    maxBalance: { type: 'integer', minimum: 0, maximum: 0xffffffff },
    currency: { type: 'integer', minimum: 0, maximum: 9999 },
    exponent: { type: 'integer', minimum: 0, maximum: 9 },
    card: { type: 'string', pattern: '^[0-9]{6}\\*{6}[0-9]{4}$' },
  },
} as const;

export interface BankAppOptions {
  readonly service: BankService;
  /** Seconds between sweeps of expired holds (0: no sweep). */
  readonly sweepIntervalSeconds: number;
  readonly logLevel?: string | false;
  readonly logStream?: NodeJS.WritableStream;
}

const baseUrlOf = (req: FastifyRequest) => `${req.protocol}://${req.headers.host ?? req.hostname}`;

export function createBankApp(options: BankAppOptions): FastifyInstance {
  const app = createServerApp({ name: 'bank', logLevel: options.logLevel ?? 'info', ...(options.logStream ? { logStream: options.logStream } : {}) });
  const s = options.service;
  const user = (req: FastifyRequest) => s.authenticate(req.headers.authorization);

  app.get('/v1/health', async () => ({ ok: true, server: 'bank' }));

  app.post<{ Body: { user: string; password: string } }>(
    '/v1/login',
    { schema: { body: { type: 'object', additionalProperties: false, required: ['user', 'password'], properties: { user: { type: 'string', minLength: 1, maxLength: 64 }, password: { type: 'string', minLength: 1, maxLength: 256 } } } } },
    async (req) => s.login(req.body.user, req.body.password),
  );

  app.post<{ Body: { card: CardFacts } }>(
    '/v1/loads/quote',
    { schema: { body: { type: 'object', additionalProperties: false, required: ['card'], properties: { card: CARD_FACTS } } } },
    async (req) => s.quote(await user(req), req.body.card),
  );

  app.post<{ Body: { amount: number; card: CardFacts } }>(
    '/v1/loads',
    {
      schema: {
        body: { type: 'object', additionalProperties: false, required: ['amount', 'card'], properties: { amount: { type: 'integer', minimum: 1, maximum: 0xffffffff }, card: CARD_FACTS } },
      },
    },
    async (req) => s.createLoad(await user(req), req.body.amount, req.body.card, baseUrlOf(req)),
  );

  app.post<{ Params: { txnId: string } }>('/v1/loads/:txnId/cancel', { schema: { params: TXN_PARAMS } }, async (req) => s.cancel(await user(req), req.params.txnId));

  app.post<{ Params: { txnId: string }; Body: { loadResult: Envelope } }>(
    '/v1/loads/:txnId/result',
    { schema: { params: TXN_PARAMS, body: { type: 'object', additionalProperties: false, required: ['loadResult'], properties: { loadResult: ENVELOPE_SCHEMA } } } },
    async (req) => s.loadResult(req.params.txnId, req.body.loadResult),
  );

  app.get<{ Params: { txnId: string } }>('/v1/loads/:txnId', { schema: { params: TXN_PARAMS } }, async (req) => s.hold(req.params.txnId));

  if (options.sweepIntervalSeconds > 0) {
    let running = false;
    const timer = setInterval(() => {
      if (running) return;
      running = true;
      s.sweep()
        .then((n) => (n ? app.log.info({ holds: n }, 'swept expired holds') : undefined))
        .catch((e: Error) => app.log.error({ err: e }, 'hold sweep failed'))
        .finally(() => (running = false));
    }, options.sweepIntervalSeconds * 1000);
    timer.unref();
    app.addHook('onClose', async () => clearInterval(timer));
  }
  return app;
}
