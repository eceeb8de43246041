// Assemble a payment server: store + PSAM pool + flows + routes on the common fastify app. Used by
// `purselab serve payment`, the tests (inject, or listen on port 0) and `purselab bench payment`.

import { dirname, resolve } from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { CardChannel } from '../../transport/channel.ts';
import { createServerApp } from '../app.ts';
import type { BatchDeps } from './batch.ts';
import type { PaymentServerConfig } from './config.ts';
import { PsamPool } from './psam-pool.ts';
import { paymentRoutes } from './routes.ts';
import { CRASH_POINTS, PaymentService, type CrashPoint } from './service.ts';
import { openPaymentStore } from './store-sqlite.ts';
import type { PaymentStore } from './store.ts';

export interface PaymentServerOptions {
  readonly config: PaymentServerConfig;
  /** SQLite path (':memory:' for tests); default config.db, else ./payment.db. */
  readonly dbPath?: string;
  readonly logLevel?: string | false;
  readonly logStream?: NodeJS.WritableStream;
  /** How PSAM channels are opened (tests: in-process EmulatorChannels). */
  readonly openPsam?: (reader: string, timeoutMs: number) => Promise<CardChannel>;
  readonly watchPcsc?: boolean;
  readonly now?: () => Date;
  /** Fault injection for crash tests (also PURSELAB_PAYMENT_CRASH_AT). */
  readonly crashAt?: CrashPoint;
  /** How often stored S3s / unconfirmed PSAM records are retried (ms; 0 = never). Default 5000. */
  readonly resolveEveryMs?: number;
}

export interface PaymentServer {
  readonly app: FastifyInstance;
  readonly service: PaymentService;
  readonly pool: PsamPool;
  readonly store: PaymentStore;
  readonly dbPath: string;
  /** Close the HTTP server, wait for background work, close PSAM channels and the store. */
  close(): Promise<void>;
}

export function crashPointFromEnv(env: NodeJS.ProcessEnv = process.env): CrashPoint | undefined {
  const v = env.PURSELAB_PAYMENT_CRASH_AT;
  if (!v) return undefined;
  if (!(CRASH_POINTS as readonly string[]).includes(v)) throw new Error(`PURSELAB_PAYMENT_CRASH_AT must be one of ${CRASH_POINTS.join(', ')}`);
  return v as CrashPoint;
}

export async function createPaymentServer(o: PaymentServerOptions): Promise<PaymentServer> {
  const { config } = o;
  const dbPath = o.dbPath ?? config.db ?? resolve('payment.db');
  const app = createServerApp({ name: 'payment', logLevel: o.logLevel ?? 'info', ...(o.logStream ? { logStream: o.logStream } : {}) });
  const log = app.log;
  const store = openPaymentStore(dbPath);
  const pool = new PsamPool({ psams: config.psams, timeouts: config.timeouts, ...(o.openPsam ? { open: o.openPsam } : {}), ...(o.watchPcsc !== undefined ? { watchPcsc: o.watchPcsc } : {}), log });
  const service = new PaymentService({ config, store, pool, log, ...(o.now ? { now: o.now } : {}), ...(o.crashAt ? { crashAt: o.crashAt } : {}) });
  const batch: BatchDeps = {
    pool,
    store,
    acquirerKeys: config.acquirerKeys,
    batchDir: config.batchDir ?? (dbPath === ':memory:' ? undefined : resolve(dirname(dbPath), 'collections')),
    acquireMs: Math.max(config.timeouts.acquireMs, 10_000),
  };
  try {
    await pool.start();
    await service.recoverAfterRestart();
  } catch (e) {
    await pool.close();
    await store.close();
    throw e;
  }
  const every = o.resolveEveryMs ?? 5_000;
  if (every > 0) service.startResolver(every);
  await app.register(async (scope) => paymentRoutes(scope, { config, service, pool, store, batch }));
  let closed = false;
  return {
    app,
    service,
    pool,
    store,
    dbPath,
    async close() {
      if (closed) return;
      closed = true;
      await app.close();
      await service.close();
      await pool.close();
      await store.close();
    },
  };
}
