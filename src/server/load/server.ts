// The load server as one object for `purselab serve load`, the rig tests and the bench: store + issuer HSM
// (any hsm-bridge backend, through issuerFromPaymentOps) + service + routes, and a close that releases all.

import type { FastifyInstance } from 'fastify';
import { createHsm, describeConfig, type HsmConfig } from '../../../hsm-bridge/config.ts';
import type { Hsm } from '../../../hsm-bridge/hsm.ts';
import { paymentOps } from '../../../hsm-bridge/payment.ts';
import { issuerFromPaymentOps, type LoadIssuer } from '../../terminal/load.ts';
import { createLoadApp } from './app.ts';
import type { LoadServerConfig } from './config.ts';
import { CRASH_POINTS, LoadService, type CrashPoint } from './service.ts';
import { SqliteLoadStore } from './store.ts';
import { RecreditService } from './recredit.ts';

export const CRASH_ENV = 'PURSELAB_LOAD_CRASH_AT';

/** Test-only fault injection: PURSELAB_LOAD_CRASH_AT=point kills the process (SIGKILL) when a load reaches it. */
export function crashPointFromEnv(env: NodeJS.ProcessEnv = process.env): CrashPoint | undefined {
  const v = env[CRASH_ENV];
  if (!v) return undefined;
  if (!(CRASH_POINTS as readonly string[]).includes(v)) throw new Error(`${CRASH_ENV} must be one of ${CRASH_POINTS.join(', ')}`);
  return v as CrashPoint;
}

export interface LoadServer {
  readonly app: FastifyInstance;
  readonly service: LoadService;
  readonly store: SqliteLoadStore;
  readonly hsmDescription: string;
  close(): Promise<void>;
}

export interface LoadServerOptions {
  readonly config: LoadServerConfig;
  readonly dbPath: string;
  /** An HSM config to open, or an issuer already at hand (in-process tests). */
  readonly hsm: HsmConfig | { readonly issuer: LoadIssuer; readonly description: string };
  readonly logLevel?: string | false;
  readonly logStream?: NodeJS.WritableStream;
  readonly crashAt?: CrashPoint | undefined;
}

export async function createLoadServer(o: LoadServerOptions): Promise<LoadServer> {
  let hsm: Hsm | undefined;
  let issuer: LoadIssuer;
  let hsmDescription: string;
  if ('issuer' in o.hsm) {
    issuer = o.hsm.issuer;
    hsmDescription = o.hsm.description;
  } else {
    hsm = await createHsm(o.hsm);
    await hsm.open();
    issuer = issuerFromPaymentOps(paymentOps(hsm));
    hsmDescription = describeConfig(o.hsm);
  }
  const store = new SqliteLoadStore(o.dbPath);
  let app: FastifyInstance | undefined;
  const service = new LoadService({
    store,
    issuer,
    config: o.config,
    crashAt: (p) => {
      if (p === o.crashAt) process.kill(process.pid, 'SIGKILL');
    },
    log: (event, detail) => app?.log.info(detail, event),
  });
  const recredit = o.config.issuerLinkKey ? new RecreditService({ store, issuer, issuerLinkKey: o.config.issuerLinkKey, log: (event, detail) => app?.log.info(detail, event) }) : undefined;
  app = createLoadApp({ service, recredit, logLevel: o.logLevel ?? 'info', ...(o.logStream ? { logStream: o.logStream } : {}) });
  return {
    app,
    service,
    store,
    hsmDescription,
    async close() {
      await app.close();
      await store.close();
      await hsm?.close();
    },
  };
}
