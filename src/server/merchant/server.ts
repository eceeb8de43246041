// The merchant server as one object: a fastify app (createServerApp) with the merchant routes over a
// merchant store. `purselab serve merchant` and the tests start it the same way.

import type { FastifyInstance } from 'fastify';
import { createServerApp, listen } from '../app.ts';
import type { MerchantConfig } from './config.ts';
import { merchantRoutes } from './routes.ts';
import { openMerchantStore, type MerchantStore } from './store.ts';

export interface MerchantServerOptions {
  readonly config: MerchantConfig;
  /** SQLite file, or ':memory:' (default). */
  readonly dbPath?: string;
  /** Or a store made elsewhere (the server then does not close it). */
  readonly store?: MerchantStore;
  readonly logLevel?: string | false;
  readonly logStream?: NodeJS.WritableStream;
  readonly now?: () => Date;
}

export interface MerchantServer {
  readonly app: FastifyInstance;
  readonly store: MerchantStore;
  /** Listen and return the base URL (port 0: any free port). */
  listen(host?: string, port?: number): Promise<string>;
  close(): Promise<void>;
}

export async function createMerchantServer(options: MerchantServerOptions): Promise<MerchantServer> {
  const ownStore = options.store === undefined;
  const store = options.store ?? openMerchantStore(options.dbPath ?? ':memory:');
  const app = createServerApp({ name: 'merchant', logLevel: options.logLevel ?? 'info', ...(options.logStream ? { logStream: options.logStream } : {}) });
  await app.register(merchantRoutes, { config: options.config, store, ...(options.now ? { now: options.now } : {}) });
  await app.ready();
  let closed = false;
  return {
    app,
    store,
    listen: (host = '127.0.0.1', port = 0) => listen(app, host, port),
    async close() {
      if (closed) return;
      closed = true;
      await app.close();
      if (ownStore) await store.close();
    },
  };
}
