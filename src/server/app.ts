// The fastify application every purselab server starts from: pino structured logs with secrets redacted,
// one JSON error shape ({ error: { code, message } }) for validation failures, our typed errors and
// surprises, and JSON-schema validation that refuses unknown fields. Each server registers its routes as a
// fastify plugin on top (encapsulated: its decorators and hooks stay its own).

import Fastify, { type FastifyError, type FastifyInstance, type FastifyServerOptions } from 'fastify';
import { PurselabError } from '../errors.ts';

/** An error with the HTTP status it maps to. Codes are stable; messages never carry keys, PINs or full card numbers. */
export class HttpError extends PurselabError {
  readonly status: number;
  constructor(status: number, code: string, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.status = status;
  }
}

export const badRequest = (code: string, message: string) => new HttpError(400, code, message);
export const unauthorized = (code: string, message: string) => new HttpError(401, code, message);
export const forbidden = (code: string, message: string) => new HttpError(403, code, message);
export const notFound = (code: string, message: string) => new HttpError(404, code, message);
export const conflict = (code: string, message: string) => new HttpError(409, code, message);
export const unavailable = (code: string, message: string) => new HttpError(503, code, message);

/** Paths pino replaces with "[redacted]" wherever they appear in a log line. */
export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["x-api-key"]',
  '*.password',
  '*.pin',
  '*.key',
  '*.sharedKey',
  '*.tsk',
  '*.sessionKey',
  '*.cvv2',
  '*.pan',
  '*.cardId',
];

/** An error as a log line shows it (errorForLog). */
export interface LoggedError {
  [field: string]: unknown;
  type: string;
  message: string;
  stack: string;
  code?: string;
  cause?: LoggedError;
}

/**
 * What a log line keeps of an error: its class, code, message, stack and cause, never the other data an error
 * object carries for its callers (a purse's start-up data with the full card id, a command's bytes): those
 * fields sit one level deeper than REDACT_PATHS reaches. The messages themselves never name keys, PINs or full
 * card numbers.
 */
export function errorForLog(e: unknown, depth = 0): LoggedError {
  if (!(e instanceof Error)) return { type: typeof e, message: String(e), stack: '' };
  const code = (e as { code?: unknown }).code;
  const cause = (e as { cause?: unknown }).cause;
  return {
    type: e.constructor?.name ?? e.name,
    message: e.message,
    stack: e.stack ?? '',
    ...(typeof code === 'string' ? { code } : {}),
    ...(cause !== undefined && depth < 3 ? { cause: errorForLog(cause, depth + 1) } : {}),
  };
}

export interface ServerAppOptions {
  /** Which server ('payment', 'merchant', ...): every log line carries it. */
  readonly name: string;
  /** pino level, or false for no logs (tests, benchmarks). Default 'info'. */
  readonly logLevel?: string | false;
  /** Where logs go (default stdout); a pino destination or any writable stream. */
  readonly logStream?: NodeJS.WritableStream;
  readonly bodyLimit?: number;
}

export function createServerApp(options: ServerAppOptions): FastifyInstance {
  const level = options.logLevel ?? 'info';
  const logger: FastifyServerOptions['logger'] =
    level === false
      ? false
      : {
          level,
          base: { server: options.name },
          redact: { paths: REDACT_PATHS, censor: '[redacted]' },
          serializers: { err: (e: Error) => errorForLog(e) },
          ...(options.logStream ? { stream: options.logStream } : {}),
        };
  const app = Fastify({
    logger,
    bodyLimit: options.bodyLimit ?? 256 * 1024,
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, allErrors: false } },
  });

  app.setErrorHandler((err: FastifyError | PurselabError | Error, req, reply) => {
    if ('validation' in err && err.validation) {
      return reply.status(400).send({ error: { code: 'BAD_REQUEST', message: err.message } });
    }
    if (err instanceof HttpError) {
      if (err.status >= 500) req.log.error({ code: err.code }, err.message);
      else req.log.info({ code: err.code }, err.message);
      return reply.status(err.status).send({ error: { code: err.code, message: err.message } });
    }
    if (err instanceof PurselabError) {
      req.log.warn({ code: err.code }, err.message);
      return reply.status(422).send({ error: { code: err.code, message: err.message } });
    }
    const status = (err as FastifyError).statusCode;
    if (typeof status === 'number' && status >= 400 && status < 500) {
      return reply.status(status).send({ error: { code: (err as FastifyError).code ?? 'BAD_REQUEST', message: err.message } });
    }
    req.log.error({ err }, 'unexpected error');
    return reply.status(500).send({ error: { code: 'INTERNAL', message: 'internal error (see the server log)' } });
  });
  app.setNotFoundHandler((req, reply) => reply.status(404).send({ error: { code: 'NOT_FOUND', message: `no route ${req.method} ${req.url}` } }));
  return app;
}

/** Listen on host:port (port 0: any free port) and return the base URL, e.g. http://127.0.0.1:8402. */
export async function listen(app: FastifyInstance, host: string, port: number): Promise<string> {
  await app.listen({ host, port });
  const addr = app.server.address();
  if (addr === null || typeof addr === 'string') return `http://${host}:${port}`;
  const h = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  return `http://${h}:${addr.port}`;
}

/**
 * Close the server (and then `cleanup`: pools, stores, HSM sessions) on SIGINT/SIGTERM, once; a second signal
 * exits at once. Returns a function that removes the handlers.
 */
export function closeOnSignals(app: FastifyInstance, cleanup: () => Promise<void> | void, io: { err: (line: string) => void }): () => void {
  let closing = false;
  const handler = (signal: NodeJS.Signals) => {
    if (closing) {
      io.err(`${signal} again: exiting now`);
      process.exit(130);
    }
    closing = true;
    io.err(`${signal}: closing (in-flight requests finish first)`);
    void (async () => {
      try {
        await app.close();
        await cleanup();
        process.exit(0);
      } catch (e) {
        io.err(`error while closing: ${(e as Error).message}`);
        process.exit(1);
      }
    })();
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  return () => {
    process.off('SIGINT', handler);
    process.off('SIGTERM', handler);
  };
}
