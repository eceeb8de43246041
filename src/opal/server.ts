// The OPAL server as one object: fastify (createServerApp) with JSON-schema-validated routes over the OPAL
// service, and the cardholder's web page. `purselab serve opal` and the tests start it the same way.
//
//   POST /v1/register        registration form -> { cardId (masked), bin }; one-time password by e-mail
//   POST /v1/login           { userId, password } -> { token, mustChangePassword, card }
//   POST /v1/logout          (Bearer token)
//   POST /v1/password        { currentPassword, newPassword }   (the only call a must-change session may make)
//   GET  /v1/balance         balance, currency, max balance / max load, expiry, counter (read by the applet)
//   GET  /v1/history         purchase, load and re-credit tables (newest first)
//   POST /v1/purchase/quote  { pageUrl } -> the merchant's amount and the card's balance
//   POST /v1/purchase        { pageUrl, amount, txnId? } -> payAtMerchant over the pseudo reader
//   POST /v1/load            { bankUrl, bankUser, bankPassword, amount } -> internetLoad over the pseudo reader
//   POST /v1/load/resume     { loadId, bankUser, bankPassword } -> finish an interrupted load (resumeInternetLoad)
//   POST /v1/admin/recredit  { cardId, purchaseId, reason } with header x-opal-admin-token
//   POST /v1/admin/recredit-claim  { claim } (the payment server's sealed RecreditClaim) with the admin header
//   GET  /v1/admin/recovery  what the restart recovery marked interrupted (admin header)

import { timingSafeEqual, createHash } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Hsm } from '../../hsm-bridge/hsm.ts';
import { paymentOps } from '../../hsm-bridge/payment.ts';
import { PurselabError } from '../errors.ts';
import { ENVELOPE_SCHEMA, type Envelope } from '../protocol/envelope.ts';
import { OpalError } from './errors.ts';
import { createServerApp, HttpError, listen } from '../server/app.ts';
import { GroupCommit } from '../store/group-commit.ts';
import { openSqlite, type SqliteDatabase } from '../store/sqlite.ts';
import { maskCardId } from '../terminal/amount.ts';
import { VirtualCardStore } from './card-store.ts';
import type { OpalConfig } from './config.ts';
import { killAt, type OpalCrashPoint } from './crash.ts';
import { HistoryStore } from './history.ts';
import { DirectoryMailer, type Mailer } from './mail.ts';
import { OPAL_COMPONENT, OPAL_MIGRATIONS } from './schema.ts';
import { OpalService, type RecoveryFinding } from './service.ts';
import { UserStore, type UserRow } from './users.ts';
import { PAGE_HTML, PAGE_JS } from './web-page.ts';

export interface OpalServerOptions {
  readonly config: OpalConfig;
  /** An opened HSM holding the record keys (and the issuer load masters, for re-credits). */
  readonly hsm: Hsm;
  /** SQLite file or ':memory:'. */
  readonly dbPath: string;
  readonly mailer?: Mailer;
  readonly logLevel?: string | false;
  readonly logStream?: NodeJS.WritableStream;
  /** The operator token for re-credits (default: the env var the config names). */
  readonly adminToken?: string;
  /** Test hook of the card store (crash between seal and write). */
  readonly beforeCardWrite?: (cardId: string, version: number) => void | Promise<void>;
  /** Test-only: SIGKILL this process at a crash point (PURSELAB_OPAL_CRASH_AT). */
  readonly crashAt?: OpalCrashPoint | undefined;
  /** The payment server's re-credit claim key (default: hex in the env var the config names). */
  readonly issuerLinkKey?: Buffer;
}

export interface OpalServer {
  readonly app: FastifyInstance;
  readonly service: OpalService;
  readonly db: SqliteDatabase;
  /** What the start-up recovery marked interrupted (flows a crash cut). */
  readonly recovered: readonly RecoveryFinding[];
  listen(host?: string, port?: number): Promise<string>;
  close(): Promise<void>;
}

/** HTTP status of each OPAL error (others: the app's default 422). */
const STATUS: Record<string, number> = {
  OPAL_LOGIN_FAILED: 401,
  OPAL_SESSION_INVALID: 401,
  OPAL_PASSWORD_CHANGE_REQUIRED: 403,
  OPAL_LOCKED: 423,
  OPAL_USER_EXISTS: 409,
  OPAL_CARD_BUSY: 409,
  OPAL_CARD_CONFLICT: 409,
  OPAL_REGISTRATION: 400,
  OPAL_PASSWORD_POLICY: 400,
  OPAL_BIN_UNKNOWN: 400,
  OPAL_CARD_NOT_FOUND: 404,
  OPAL_RECORD_TAMPERED: 500,
  OPAL_RECREDIT: 409,
  OPAL_RESUME: 409,
};

const str = (min: number, max: number, pattern?: string) => ({ type: 'string', minLength: min, maxLength: max, ...(pattern ? { pattern } : {}) });
const body = (props: Record<string, object>, required: string[]) => ({ body: { type: 'object', additionalProperties: false, required, properties: props } });
const URL_PATTERN = '^https?://';

export async function createOpalServer(o: OpalServerOptions): Promise<OpalServer> {
  const { config, hsm } = o;
  const db = openSqlite(o.dbPath, { component: OPAL_COMPONENT, migrations: OPAL_MIGRATIONS });
  const ops = paymentOps(hsm);
  const app = createServerApp({ name: 'opal', logLevel: o.logLevel ?? 'info', ...(o.logStream ? { logStream: o.logStream } : {}) });
  const commits = new GroupCommit(db, 'the OPAL database');
  const cards = new VirtualCardStore({ db, ops, commits, ...(o.beforeCardWrite ? { beforeWrite: o.beforeCardWrite } : {}) });
  const users = new UserStore({ db, hsm, ops, scrypt: config.scrypt, lockout: config.lockout, sessionSeconds: config.sessionSeconds });
  const history = new HistoryStore(db, ops, commits);
  const linkHex = config.issuerLinkKeyEnv ? process.env[config.issuerLinkKeyEnv] : undefined;
  if (linkHex !== undefined && !/^([0-9A-Fa-f]{32}|[0-9A-Fa-f]{48})$/.test(linkHex)) throw new OpalError('OPAL_CONFIG', `${config.issuerLinkKeyEnv} must hold the issuer link key as 32 or 48 hex digits`);
  const issuerLinkKey = o.issuerLinkKey ?? (linkHex ? Buffer.from(linkHex, 'hex') : undefined);
  const service = new OpalService({ config, hsm, ops, cards, users, history, mailer: o.mailer ?? new DirectoryMailer(config.mailDir), log: app.log, crash: killAt(o.crashAt), issuerLinkKey });
  const adminToken = o.adminToken ?? (config.adminTokenEnv ? process.env[config.adminTokenEnv] : undefined);
  const recovered = await service.recoverInterrupted();
  const requireAdmin = (req: FastifyRequest): void => {
    const given = req.headers['x-opal-admin-token'];
    const h = (v: string) => createHash('sha256').update(v).digest();
    if (!adminToken || typeof given !== 'string' || !timingSafeEqual(h(given), h(adminToken))) throw new HttpError(403, 'OPAL_ADMIN', 'this operator call needs the operator token (header x-opal-admin-token)');
  };

  // OPAL errors get their HTTP status; the app's error handler does the rest.
  const run = async <T>(fn: () => Promise<T>): Promise<T> => {
    try {
      return await fn();
    } catch (e) {
      if (e instanceof PurselabError && !(e instanceof HttpError) && STATUS[e.code] !== undefined) throw new HttpError(STATUS[e.code]!, e.code, e.message, { cause: e });
      throw e;
    }
  };
  const token = (req: FastifyRequest): string => {
    const h = req.headers.authorization;
    const m = typeof h === 'string' ? /^Bearer ([A-Za-z0-9_-]{20,100})$/.exec(h) : null;
    if (!m) throw new HttpError(401, 'OPAL_SESSION_INVALID', 'not logged in: send Authorization: Bearer TOKEN');
    return m[1]!;
  };
  const user = (req: FastifyRequest, allowMustChange = false): UserRow => {
    const u = users.session(token(req));
    if (u.mustChange && !allowMustChange) throw new HttpError(403, 'OPAL_PASSWORD_CHANGE_REQUIRED', 'change the one-time password first (POST /v1/password)');
    return u;
  };

  await app.register(async (r) => {
    r.get('/', async (_req, reply) => reply.type('text/html; charset=utf-8').send(PAGE_HTML));
    r.get('/app.js', async (_req, reply) => reply.type('application/javascript; charset=utf-8').send(PAGE_JS));

    r.post(
      '/v1/register',
      {
        schema: body(
          {
            userId: str(4, 64),
            fundingAccount: str(12, 25),
            fundingExpiry: str(5, 7),
            cvv2: str(3, 4),
            billingAddress: str(5, 200),
            email: str(5, 254),
            password: str(1, 128),
            bin: str(6, 6, '^[0-9]{6}$'),
          },
          ['userId', 'fundingAccount', 'fundingExpiry', 'cvv2', 'billingAddress', 'email', 'password'],
        ),
      },
      async (req) =>
        run(async () => {
          const reg = await service.register(req.body as Parameters<OpalService['register']>[0]);
          return { card: maskCardId(reg.cardId), bin: reg.bin, message: 'registered: a one-time password was e-mailed to you; log in with it and change it' };
        }),
    );
    r.post('/v1/login', { schema: body({ userId: str(1, 64), password: str(1, 128) }, ['userId', 'password']) }, async (req) =>
      run(async () => {
        const b = req.body as { userId: string; password: string };
        const l = await users.login(b.userId, b.password);
        return { token: l.token, expiresAt: new Date(l.expiresAt).toISOString(), mustChangePassword: l.mustChange, card: maskCardId(l.cardId), bin: l.bin };
      }),
    );
    r.post('/v1/logout', async (req) => run(async () => (users.logout(token(req)), { ok: true })));
    r.post('/v1/password', { schema: body({ currentPassword: str(1, 128), newPassword: str(1, 128) }, ['currentPassword', 'newPassword']) }, async (req) =>
      run(async () => {
        const b = req.body as { currentPassword: string; newPassword: string };
        user(req, true);
        await users.changePassword(token(req), b.currentPassword, b.newPassword);
        return { ok: true };
      }),
    );
    r.get('/v1/balance', async (req) => run(() => service.balance(user(req))));
    r.get('/v1/history', async (req) => run(() => service.history(user(req))));
    r.post('/v1/purchase/quote', { schema: body({ pageUrl: str(8, 2048, URL_PATTERN) }, ['pageUrl']) }, async (req) =>
      run(() => service.purchaseQuote(user(req), (req.body as { pageUrl: string }).pageUrl)),
    );
    r.post(
      '/v1/purchase',
      { schema: body({ pageUrl: str(8, 2048, URL_PATTERN), amount: { type: 'integer', minimum: 0, maximum: 0xffffffff }, txnId: str(1, 64) }, ['pageUrl', 'amount']) },
      async (req) => run(() => service.purchase(user(req), req.body as { pageUrl: string; amount: number; txnId?: string })),
    );
    r.post(
      '/v1/load',
      { schema: body({ bankUrl: str(8, 2048, URL_PATTERN), bankUser: str(1, 64), bankPassword: str(1, 128), amount: str(1, 16, '^[0-9]+(\\.[0-9]+)?$') }, ['bankUrl', 'bankUser', 'bankPassword', 'amount']) },
      async (req) => run(() => service.load(user(req), req.body as { bankUrl: string; bankUser: string; bankPassword: string; amount: string })),
    );
    r.post(
      '/v1/admin/recredit',
      { schema: body({ cardId: str(16, 16, '^[0-9]{16}$'), purchaseId: { type: 'integer', minimum: 1 }, reason: str(3, 200) }, ['cardId', 'purchaseId', 'reason']) },
      async (req) =>
        run(async () => {
          requireAdmin(req);
          return service.recredit(req.body as { cardId: string; purchaseId: number; reason: string });
        }),
    );
    r.post(
      '/v1/admin/recredit-claim',
      { schema: body({ claim: ENVELOPE_SCHEMA }, ['claim']) },
      async (req) =>
        run(async () => {
          requireAdmin(req);
          return service.recreditFromClaim((req.body as { claim: Envelope }).claim);
        }),
    );
    r.get('/v1/admin/recovery', async (req) =>
      run(async () => {
        requireAdmin(req);
        return { interrupted: recovered };
      }),
    );
    r.post(
      '/v1/load/resume',
      { schema: body({ loadId: { type: 'integer', minimum: 1 }, bankUser: str(1, 64), bankPassword: str(1, 128) }, ['loadId', 'bankUser', 'bankPassword']) },
      async (req) => run(() => service.resumeLoad(user(req), req.body as { loadId: number; bankUser: string; bankPassword: string })),
    );
  });
  await app.ready();
  let closed = false;
  return {
    app,
    service,
    db,
    recovered,
    listen: (host = '127.0.0.1', port = 0) => listen(app, host, port),
    async close() {
      if (closed) return;
      closed = true;
      await app.close();
      commits.closeDatabase();
    },
  };
}
