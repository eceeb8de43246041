// An OPAL deployment for `purselab bench opal` and the OPAL test suites: the shop (the payment server with a pool
// of emulated PSAMs, SQLite, and a merchant server pointing at it, whose payment page links to OPAL) and the OPAL
// server on a given HSM (SQLite), each on its own loopback port; plus helpers to register and log in cardholders
// and to create merchant orders. startShop and startOpalNode are the two halves (the bench runs each in its own
// worker thread: src/opal/world-worker.ts); startOpalWorld runs both in the calling thread.
// Only TEST keys (fixtures/keys/demo-issuer.json). Nothing here is used by `purselab serve opal` itself.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Hsm } from '../../hsm-bridge/hsm.ts';
import { issuePsamCard, loadPsamProfile } from '../../card-applet-sim/applets/psam/issuing.ts';
import { PSAM_MAX_CAPACITY } from '../../card-applet-sim/applets/psam/psam-applet.ts';
import type { SimulatedCard } from '../../card-applet-sim/os/card.ts';
import { loadIssuerKeySet } from '../crypto/key-set.ts';
import { listen } from '../server/app.ts';
import { requestJson } from '../server/http-client.ts';
import { parseMerchantConfig } from '../server/merchant/config.ts';
import { createMerchantServer, type MerchantServer } from '../server/merchant/server.ts';
import { parsePaymentConfig } from '../server/payment/config.ts';
import { createPaymentServer, type PaymentServer } from '../server/payment/server.ts';
import { EmulatorChannel } from '../transport/emulator-channel.ts';
import { parseOpalConfig } from './config.ts';
import { MemoryMailer } from './mail.ts';
import { createOpalServer, type OpalServer } from './server.ts';

const root = (rel: string) => fileURLToPath(new URL(`../../${rel}`, import.meta.url));

/** The shop of the world: its id and TEST key (shared with the payment server). */
export const WORLD_MERCHANT = { id: 'OPAL-SHOP', sharedKey: '0123456789ABCDEFFEDCBA9876543210' } as const;
/** The payment server's issuer link key (re-credit claims); TEST value. */
export const WORLD_ISSUER_LINK_KEY = '9999999999999999AAAAAAAAAAAAAAAA';
export const WORLD_CATALOGUE = [
  { sku: 'cent', name: 'One cent', price: 1, goods: 'token CENT' },
  { sku: 'ebook', name: 'E-book', price: 420, goods: 'download token EBOOK' },
];

export interface ShopOptions {
  /** Directory for payment.db and merchant.db. */
  readonly dir: string;
  readonly psams?: number;
  /** PSAM profile file (default fixtures/profiles/psam-3des.json). */
  readonly psamProfile?: string;
  /** Payment server: how often stored S3s are retried (default never), and timeouts (e.g. a short holdMs). */
  readonly paymentResolveEveryMs?: number;
  readonly paymentTimeouts?: Record<string, number>;
  /** The OPAL server the merchant's payment page links to ("Pay with OPAL virtual card"). */
  readonly opalUrl?: string;
}

/** The payment server and the merchant of the world. */
export type Shop = Omit<PaymentPart, 'close'> & MerchantPart;

export interface OpalNodeOptions {
  /** The OPAL HSM, opened, holding the record keys (and the issuer load masters for re-credits). */
  readonly hsm: Hsm;
  /** Directory for opal.db and the mail drop. */
  readonly dir: string;
  /** New virtual cards' balance (minor units). */
  readonly initialBalance?: number;
  readonly adminToken?: string;
  /** Cheap scrypt (N = 1024) for benchmarks that register many users; default the config's default. */
  readonly cheapPasswords?: boolean;
}

/** The OPAL server of the world, with its in-memory mailer. */
export interface OpalNode {
  readonly opal: OpalServer;
  readonly mailer: MemoryMailer;
  readonly opalUrl: string;
  /** Register a user, log in with the e-mailed one-time password, make the forced change; a logged-in session. */
  cardholder(userId: string): Promise<Cardholder>;
  close(): Promise<void>;
}

export type OpalWorldOptions = Omit<ShopOptions, 'dir' | 'opalUrl'> &
  Omit<OpalNodeOptions, 'dir'> & {
    /** Directory for the databases (default: a temp directory removed by close()). */
    readonly dir?: string;
  };

export interface Cardholder {
  readonly userId: string;
  readonly password: string;
  readonly token: string;
}

export interface OpalWorld extends Shop, OpalNode {
  readonly dir: string;
  close(): Promise<void>;
}

export const WORLD_PASSWORD = 'Bench-pass 2026';
const NEW_PASSWORD = 'Bench-pass 2027';

/** Run closers in reverse order, ignoring their errors. */
async function closeAll(closers: Array<() => Promise<void>>): Promise<void> {
  for (const c of closers.reverse()) await c().catch(() => undefined);
}

/** Finish setting up something `close` takes down: when that fails, close it (ignoring its errors) and rethrow. */
async function closedOnFailure<T>(close: () => Promise<void>, finish: () => Promise<T>): Promise<T> {
  try {
    return await finish();
  } catch (e) {
    await close().catch(() => undefined);
    throw e;
  }
}

/** The world's payment server (its PSAMs emulated in-process). */
export interface PaymentPart {
  readonly payment: PaymentServer;
  readonly psams: readonly SimulatedCard[];
  readonly paymentUrl: string;
  close(): Promise<void>;
}

export async function startPaymentPart(o: ShopOptions): Promise<PaymentPart> {
  const keys = loadIssuerKeySet(root('fixtures/keys/demo-issuer.json'));
  const psamProfile = loadPsamProfile(o.psamProfile ?? root('fixtures/profiles/psam-3des.json'));
  const psams = Array.from({ length: o.psams ?? 4 }, (_, i) => issuePsamCard({ ...psamProfile, psamId: `99900290000${String(20000 + i)}`, capacity: PSAM_MAX_CAPACITY }, keys).card);
  const paymentConfig = parsePaymentConfig(
    {
      merchants: [{ id: WORLD_MERCHANT.id, name: 'OPAL world shop', sharedKey: WORLD_MERCHANT.sharedKey, variant: 'standard' }],
      psams: psams.map((_, i) => ({ reader: `world:${i}` })),
      issuerLinkKey: WORLD_ISSUER_LINK_KEY,
      acquirerKeys: root('fixtures/keys/demo-issuer.json'),
      timeouts: { acquireMs: 10_000, ...o.paymentTimeouts },
    },
    'OPAL world payment config',
    o.dir,
  );
  const payment = await createPaymentServer({
    config: paymentConfig,
    dbPath: join(o.dir, 'payment.db'),
    logLevel: false,
    watchPcsc: false,
    resolveEveryMs: o.paymentResolveEveryMs ?? 0,
    openPsam: async (r) => new EmulatorChannel(psams[Number(r.split(':')[1])]!),
  });
  return closedOnFailure(
    () => payment.close(),
    async () => ({ payment, psams, paymentUrl: await listen(payment.app, '127.0.0.1', 0), close: () => payment.close() }),
  );
}

/** The world's merchant, selling through the payment server at `paymentUrl`. */
export interface MerchantPart {
  readonly merchant: MerchantServer;
  readonly merchantUrl: string;
  /** A new order at the merchant; its payment page URL. */
  order(sku?: string): Promise<string>;
  close(): Promise<void>;
}

export async function startMerchantPart(o: Pick<ShopOptions, 'dir' | 'opalUrl'> & { readonly paymentUrl: string }): Promise<MerchantPart> {
  const merchant = await createMerchantServer({
    config: parseMerchantConfig(
      {
        merchantId: WORLD_MERCHANT.id,
        name: 'OPAL world shop',
        sharedKey: WORLD_MERCHANT.sharedKey,
        variant: 'standard',
        encrypted: false,
        paymentServer: o.paymentUrl,
        ...(o.opalUrl ? { opalServer: o.opalUrl } : {}),
        currency: 978,
        exponent: 2,
        catalogue: WORLD_CATALOGUE,
        benefits: [{ id: 'lounge', name: 'Lounge pass', goods: 'lounge pass L-1' }],
      },
      'OPAL world merchant config',
      o.dir,
    ),
    dbPath: join(o.dir, 'merchant.db'),
    logLevel: false,
  });
  return closedOnFailure(() => merchant.close(), async () => {
    const merchantUrl = await merchant.listen();
    return {
      merchant,
      merchantUrl,
      async order(sku = 'cent') {
        const r = await requestJson<{ payUrl: string }>(`${merchantUrl}/api/orders`, { method: 'POST', body: { items: [{ sku, quantity: 1 }] } });
        return r.payUrl;
      },
      close: () => merchant.close(),
    };
  });
}

/** The payment server, then the merchant selling through it. */
export async function startShop(o: ShopOptions): Promise<Shop> {
  const payment = await startPaymentPart(o);
  return closedOnFailure(
    () => payment.close(),
    async () => {
      const merchant = await startMerchantPart({ dir: o.dir, paymentUrl: payment.paymentUrl, ...(o.opalUrl ? { opalUrl: o.opalUrl } : {}) });
      return { ...payment, ...merchant, close: () => closeAll([() => payment.close(), () => merchant.close()]) };
    },
  );
}

export async function startOpalNode(o: OpalNodeOptions): Promise<OpalNode> {
  const config = parseOpalConfig(
    {
      issuers: [{ bin: '999001', profile: root('fixtures/profiles/demo-aes.json'), keys: root('fixtures/keys/demo-issuer.json'), initialBalance: o.initialBalance ?? 10_000 }],
      ...(o.cheapPasswords ? { scrypt: { N: 1024, r: 8, p: 1 } } : {}),
      mailDir: join(o.dir, 'mail'),
    },
    'OPAL world config',
    o.dir,
  );
  const mailer = new MemoryMailer();
  const opal = await createOpalServer({ config, hsm: o.hsm, dbPath: join(o.dir, 'opal.db'), mailer, logLevel: false, ...(o.adminToken ? { adminToken: o.adminToken } : {}) });
  return closedOnFailure(() => opal.close(), async () => {
    const opalUrl = await opal.listen('127.0.0.1', 0);
    const post = <T>(path: string, body: object, token?: string) => requestJson<T>(`${opalUrl}${path}`, { method: 'POST', body, ...(token ? { headers: { authorization: `Bearer ${token}` } } : {}) });
    return {
      opal,
      mailer,
      opalUrl,
      async cardholder(userId) {
        await post('/v1/register', { userId, fundingAccount: '4111111111111111', fundingExpiry: '09/39', cvv2: '123', billingAddress: '1 Bench Street', email: `${userId}@example.org`, password: WORLD_PASSWORD });
        const mail = [...mailer.sent].reverse().find((m) => m.to === `${userId}@example.org`);
        const otp = mail && /one-time password: (\S+)/.exec(mail.text)?.[1];
        if (!otp) throw new Error(`no one-time password mailed to ${userId}`);
        const first = await post<{ token: string }>('/v1/login', { userId, password: otp });
        await post('/v1/password', { currentPassword: WORLD_PASSWORD, newPassword: NEW_PASSWORD }, first.token);
        return { userId, password: NEW_PASSWORD, token: first.token };
      },
      close: () => opal.close(),
    };
  });
}

/** OPAL, then the shop whose payment page links to it, all in the calling thread. */
export async function startOpalWorld(o: OpalWorldOptions): Promise<OpalWorld> {
  const ownDir = o.dir === undefined;
  const dir = o.dir ?? mkdtempSync(join(tmpdir(), 'purselab-opal-world-'));
  const closers: Array<() => Promise<void>> = [];
  const close = async () => {
    await closeAll(closers);
    if (ownDir) rmSync(dir, { recursive: true, force: true });
  };
  try {
    const node = await startOpalNode({ ...o, dir });
    closers.push(() => node.close());
    const shop = await startShop({ ...o, dir, opalUrl: node.opalUrl });
    closers.push(() => shop.close());
    return { ...shop, ...node, dir, close };
  } catch (e) {
    await close();
    throw e;
  }
}
