// The bank server's rules (seed 003 steps 871-875 and 892, bank server 860), apart from HTTP: cardholder login
// (scrypt), the load screen (max load = card maximum - card balance, never more than the funds available),
// the hold for the load amount with the client applet parameters (ticket MACed under the derived key, fresh
// session key and its wrapped copy for the load server), and the Load Result: opened with the key derived for
// THIS hold, it must name this hold's txnId, bank and amount; 'loaded' captures (account -> issuer float),
// 'not-loaded' releases, anything else (forged, another hold's, replayed) is refused and changes nothing.
// Cancel and the timeout sweep ask the load server, which aborts a load it has not yet authorised with an S2;
// a load whose S2 has left keeps its hold until the load server knows the outcome.

import { createHash, randomBytes, scrypt as scryptCb, timingSafeEqual } from 'node:crypto';
import { promisify } from 'node:util';
import { macOf, MessageAuthError, open, type Envelope } from '../../protocol/envelope.ts';
import { deriveTransactionKey, newSessionKey, wrapSessionKey } from '../../protocol/keys.ts';
import {
  LoadLabel,
  statusQueryPayload,
  type BankStatusAnswer,
  type CardFacts,
  type HoldStatus,
  type LoadAuthorisation,
  type LoadPage,
  type LoadQuote,
  type LoadResultPayload,
} from '../../protocol/load-messages.ts';
import { requestJson } from '../http-client.ts';
import { formatAmount } from '../../terminal/amount.ts';
import { forbidden, conflict, HttpError, notFound, unauthorized } from '../app.ts';
import type { BankConfig } from './config.ts';
import { BankStoreError, type BankStore, type HoldRow, type SeedAccount } from './store.ts';

const scrypt = promisify(scryptCb) as (password: string, salt: Buffer, keylen: number) => Promise<Buffer>;
const unprocessable = (code: string, message: string) => new HttpError(422, code, message);

/** scrypt(password, salt) -> { salt, hash } in hex. */
export async function hashPassword(password: string, salt: Buffer = randomBytes(16)): Promise<{ salt: string; hash: string }> {
  return { salt: salt.toString('hex'), hash: (await scrypt(password, salt, 32)).toString('hex') };
}

export const maskAccount = (n: string): string => `****${n.slice(-4)}`;
const tokenHash = (token: string) => createHash('sha256').update(token).digest('hex');
const pad = (n: number, w = 2) => String(n).padStart(w, '0');

export interface BankServiceOptions {
  readonly store: BankStore;
  readonly config: BankConfig;
  readonly now?: () => Date;
  readonly log?: (event: string, detail: Record<string, unknown>) => void;
  /** Override of the load server URL (tests, `serve bank --load-server`). */
  readonly loadServer?: string;
}

export class BankService {
  private readonly o: BankServiceOptions;
  private readonly now: () => Date;
  readonly loadServer: string;

  constructor(options: BankServiceOptions) {
    this.o = options;
    this.now = options.now ?? (() => new Date());
    this.loadServer = (options.loadServer ?? options.config.loadServer).replace(/\/+$/, '');
  }

  /** Create the configured accounts that do not exist yet (passwords hashed here). */
  async seed(): Promise<void> {
    const c = this.o.config;
    const rows: SeedAccount[] = [{ accountId: c.floatAccount.accountId, number: c.floatAccount.number, holder: `${c.name} issuer float`, expiry: '12/99', kind: 'float', balance: c.floatAccount.balance }];
    for (const a of c.accounts) {
      if (await this.o.store.login(a.user)) continue;
      rows.push({ accountId: a.accountId, number: a.number, holder: a.holder, expiry: a.expiry, kind: 'customer', balance: a.balance, user: { name: a.user, ...(await hashPassword(a.password)) } });
    }
    await this.o.store.seed(rows);
  }

  private derived(txnId: string): Buffer {
    return deriveTransactionKey(this.o.config.loadServerKey, this.o.config.bankId, txnId);
  }

  async login(user: string, password: string): Promise<{ token: string; expiresAt: string }> {
    const l = await this.o.store.login(user);
    // Same work whether or not the user exists.
    const got = await hashPassword(password, Buffer.from(l?.salt ?? '00'.repeat(16), 'hex'));
    if (!l || !timingSafeEqual(Buffer.from(got.hash, 'hex'), Buffer.from(l.hash, 'hex'))) throw unauthorized('LOGIN_FAILED', 'user or password is wrong');
    const token = randomBytes(32).toString('hex');
    const expiresAt = new Date(this.now().getTime() + this.o.config.sessionTtlSeconds * 1000).toISOString();
    await this.o.store.createSession(tokenHash(token), user, expiresAt);
    this.o.log?.('login', { user });
    return { token, expiresAt };
  }

  /** The user of a bearer token; 401 otherwise. */
  async authenticate(authorization: string | undefined): Promise<string> {
    const m = /^Bearer ([0-9a-f]{64})$/.exec(authorization ?? '');
    const user = m ? await this.o.store.sessionUser(tokenHash(m[1]!), this.now().toISOString()) : undefined;
    if (!user) throw unauthorized('NOT_LOGGED_IN', 'log in first (POST /v1/login), or the session expired');
    return user;
  }

  private async accountOf(user: string) {
    const l = await this.o.store.login(user);
    const a = l && (await this.o.store.account(l.accountId));
    if (!a) throw notFound('NO_SUCH_ACCOUNT', `user ${user} has no account`);
    return a;
  }

  /** Step 873: the load screen for this card. */
  async quote(user: string, card: CardFacts): Promise<LoadQuote> {
    const c = this.o.config;
    if (card.currency !== c.currency || card.exponent !== c.exponent) throw unprocessable('CURRENCY_MISMATCH', `the card holds currency ${card.currency}/${card.exponent}; this bank loads ${c.currency}/${c.exponent}`);
    const a = await this.accountOf(user);
    const available = a.balance - a.held;
    return {
      account: maskAccount(a.number),
      accountExpiry: a.expiry,
      available,
      currentBalance: card.balance,
      maxLoad: Math.max(0, Math.min(card.maxBalance - card.balance, available)),
      currency: c.currency,
      exponent: c.exponent,
    };
  }

  /** Steps 874-875: hold the amount and hand out the client applet parameters. */
  async createLoad(user: string, amount: number, card: CardFacts, baseUrl: string): Promise<LoadPage> {
    const q = await this.quote(user, card);
    if (amount > card.maxBalance - card.balance) throw unprocessable('ABOVE_MAX_LOAD', `the card can take at most ${formatAmount(card.maxBalance - card.balance, card.exponent)} more (maximum balance ${formatAmount(card.maxBalance, card.exponent)})`);
    if (amount > q.available) throw unprocessable('INSUFFICIENT_FUNDS', 'not enough funds available on the account for this load');
    const a = await this.accountOf(user);
    const now = this.now();
    const txnId = randomBytes(8).toString('hex').toUpperCase();
    const c = this.o.config;
    const expiresAt = new Date(now.getTime() + c.holdTtlSeconds * 1000).toISOString();
    try {
      await this.o.store.placeHold({ txnId, accountId: a.accountId, user, amount, currency: c.currency, exponent: c.exponent, loadServer: this.loadServer, createdAt: now.toISOString(), expiresAt });
    } catch (e) {
      if (e instanceof BankStoreError && e.code === 'INSUFFICIENT_FUNDS') throw unprocessable(e.code, e.message);
      throw e;
    }
    const authorisation: LoadAuthorisation = {
      bankId: c.bankId,
      txnId,
      amount,
      currency: c.currency,
      exponent: c.exponent,
      date: `${now.getUTCFullYear()}${pad(now.getUTCMonth() + 1)}${pad(now.getUTCDate())}`,
      time: `${pad(now.getUTCHours())}${pad(now.getUTCMinutes())}${pad(now.getUTCSeconds())}`,
      statusUrl: `${(c.publicUrl ?? baseUrl).replace(/\/+$/, '')}/v1/loads/${txnId}/result`,
      expiresAt,
    };
    const derived = this.derived(txnId);
    const sessionKey = newSessionKey();
    this.o.log?.('hold placed', { txnId, user, amount, card: card.card });
    return {
      ticket: { authorisation, mac: macOf(derived, LoadLabel.LOAD_AUTHORISATION, authorisation) },
      loadServer: this.loadServer,
      sessionKey: sessionKey.toString('hex').toUpperCase(),
      eSessionKey: wrapSessionKey(derived, sessionKey).toString('hex').toUpperCase(),
      account: maskAccount(a.number),
      accountExpiry: a.expiry,
    };
  }

  private statusOf(h: HoldRow): HoldStatus {
    return { txnId: h.txnId, state: h.state, amount: h.amount, currency: h.currency, exponent: h.exponent, loadServer: h.loadServer, ...(h.reason ? { reason: h.reason } : {}) };
  }

  async hold(txnId: string): Promise<HoldStatus> {
    const h = await this.o.store.getHold(txnId.toUpperCase());
    if (!h) throw notFound('NO_SUCH_LOAD', `no load ${txnId}`);
    return this.statusOf(h);
  }

  /** Step 892: register a Load Result relayed by the client (or fetched from the load server). */
  async loadResult(txnId: string, env: Envelope): Promise<HoldStatus> {
    const id = txnId.toUpperCase();
    const h = await this.o.store.getHold(id);
    if (!h) throw notFound('NO_SUCH_LOAD', `no load ${id}`);
    let p: LoadResultPayload;
    try {
      p = open(this.derived(id), LoadLabel.LOAD_RESULT, env) as LoadResultPayload;
    } catch (e) {
      if (e instanceof MessageAuthError) {
        this.o.log?.('load result refused', { txnId: id, why: 'not authentic' });
        throw forbidden('LOAD_RESULT_NOT_AUTHENTIC', `the Load Result for ${id} is not the load server's (${e.message})`);
      }
      throw e;
    }
    if (p?.txnId !== id || p.bankId !== this.o.config.bankId || p.amount !== h.amount || p.currency !== h.currency || p.exponent !== h.exponent || (p.status !== 'loaded' && p.status !== 'not-loaded')) {
      throw forbidden('LOAD_RESULT_MISMATCH', `the Load Result does not match load ${id}`);
    }
    if (h.state !== 'held') throw conflict('LOAD_RESULT_REPLAYED', `load ${id} is already ${h.state}: a Load Result counts once`);
    const at = this.now().toISOString();
    const done = p.status === 'loaded' ? await this.o.store.capture(id, this.o.config.floatAccount.accountId, `loaded (${p.basis})`, at) : await this.o.store.release(id, `not loaded (${p.basis})`, at);
    if (!done) throw conflict('LOAD_RESULT_REPLAYED', `load ${id} was resolved meanwhile: a Load Result counts once`);
    this.o.log?.(p.status === 'loaded' ? 'hold captured' : 'hold released', { txnId: id, amount: h.amount, basis: p.basis });
    return this.statusOf((await this.o.store.getHold(id))!);
  }

  /** Ask the load server about a held load: final -> capture/release; pending or unreachable -> keep the hold. */
  async resolve(h: HoldRow): Promise<HoldStatus> {
    const q = { bankId: this.o.config.bankId, amount: h.amount, currency: h.currency, exponent: h.exponent };
    let answer: BankStatusAnswer;
    try {
      answer = await requestJson<BankStatusAnswer>(`${h.loadServer}/v1/bank/loads/${h.txnId}/status`, {
        body: { ...q, mac: macOf(this.derived(h.txnId), LoadLabel.LOAD_STATUS_QUERY, statusQueryPayload(h.txnId, q)) },
        timeoutMs: 10_000,
      });
    } catch (e) {
      this.o.log?.('load server not reachable; hold kept', { txnId: h.txnId, code: (e as { code?: string }).code });
      return this.statusOf(h);
    }
    if (answer.state === 'final') {
      try {
        return await this.loadResult(h.txnId, answer.loadResult);
      } catch (e) {
        if (e instanceof HttpError && e.code === 'LOAD_RESULT_REPLAYED') return this.hold(h.txnId);
        throw e;
      }
    }
    this.o.log?.('load still pending at the load server; hold kept', { txnId: h.txnId });
    return this.statusOf(h);
  }

  /** The cardholder gives up a load (before or after a refusal): resolved through the load server. */
  async cancel(user: string, txnId: string): Promise<HoldStatus> {
    const h = await this.o.store.getHold(txnId.toUpperCase());
    if (!h || h.user !== user) throw notFound('NO_SUCH_LOAD', `no load ${txnId} of yours`);
    if (h.state !== 'held') return this.statusOf(h);
    return this.resolve(h);
  }

  /** Background sweep: every hold past its expiry is resolved through the load server. Returns how many were looked at. */
  async sweep(): Promise<number> {
    const due = await this.o.store.expiredHolds(this.now().toISOString());
    for (const h of due) await this.resolve(h);
    return due.length;
  }
}
