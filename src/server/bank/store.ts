// The bank server's store: funding accounts (customers and the issuer's float account), cardholder logins
// (scrypt hashes, never passwords), login sessions (hashed tokens), holds on accounts for loads, and the ledger
// of every balance change. A hold is placed, captured or released in one transaction each; a capture moves
// the amount from the customer's account to the float account in that same transaction, so money is neither
// created nor lost whatever is cut. Async interface, so a PostgreSQL version can replace it.

import { PurselabError } from '../../errors.ts';
import { openSqlite, type Migration, type SqliteDatabase } from '../../store/sqlite.ts';
import type { HoldState } from '../../protocol/load-messages.ts';

export interface AccountRow {
  readonly accountId: string;
  readonly number: string;
  readonly holder: string;
  /** MM/YY */
  readonly expiry: string;
  readonly kind: 'customer' | 'float';
  readonly balance: number;
  /** Sum of the account's holds still 'held'. */
  readonly held: number;
}

/** An account as the bank's configuration seeds it (no holds yet), with the cardholder's login if it has one. */
export interface SeedAccount extends Omit<AccountRow, 'held'> {
  readonly user?: { readonly name: string; readonly salt: string; readonly hash: string } | undefined;
}

export interface HoldRow {
  readonly txnId: string;
  readonly accountId: string;
  readonly user: string;
  readonly amount: number;
  readonly currency: number;
  readonly exponent: number;
  readonly state: HoldState;
  readonly loadServer: string;
  readonly createdAt: string;
  readonly expiresAt: string;
  readonly reason: string | undefined;
}

export interface BankTotals {
  /** Sum of customer balances. */
  readonly customers: number;
  readonly float: number;
  readonly holds: Readonly<Record<HoldState, number>>;
}

export class BankStoreError extends PurselabError {}

export interface BankStore {
  /** Create the accounts and logins that do not exist yet (balances of existing accounts are left alone). */
  seed(accounts: readonly SeedAccount[]): Promise<void>;
  login(user: string): Promise<{ accountId: string; salt: string; hash: string } | undefined>;
  createSession(tokenHash: string, user: string, expiresAt: string): Promise<void>;
  sessionUser(tokenHash: string, now: string): Promise<string | undefined>;
  account(accountId: string): Promise<AccountRow | undefined>;
  /** Place a hold; BankStoreError INSUFFICIENT_FUNDS (nothing changed) when balance - held < amount. */
  placeHold(h: Omit<HoldRow, 'state' | 'reason'>): Promise<void>;
  getHold(txnId: string): Promise<HoldRow | undefined>;
  /** held -> captured: account -= amount, float += amount, ledger rows. False when the hold is not 'held'. */
  capture(txnId: string, floatAccountId: string, reason: string, at: string): Promise<boolean>;
  /** held -> released. False when the hold is not 'held'. */
  release(txnId: string, reason: string, at: string): Promise<boolean>;
  /** Holds still 'held' whose expiry is before `now`. */
  expiredHolds(now: string): Promise<HoldRow[]>;
  totals(floatAccountId: string): Promise<BankTotals>;
  close(): Promise<void>;
}

export const BANK_MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'accounts, logins, sessions, holds, ledger',
    up: `
      CREATE TABLE bank_accounts (
        account_id TEXT PRIMARY KEY,
        number TEXT NOT NULL,
        holder TEXT NOT NULL,
        expiry TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('customer', 'float')),
        balance INTEGER NOT NULL
      );
      CREATE TABLE bank_users (
        user TEXT PRIMARY KEY,
        account_id TEXT NOT NULL REFERENCES bank_accounts (account_id),
        salt TEXT NOT NULL,
        hash TEXT NOT NULL
      );
      CREATE TABLE bank_sessions (
        token_hash TEXT PRIMARY KEY,
        user TEXT NOT NULL REFERENCES bank_users (user),
        expires_at TEXT NOT NULL
      );
      CREATE TABLE bank_holds (
        txn_id TEXT PRIMARY KEY,
        account_id TEXT NOT NULL REFERENCES bank_accounts (account_id),
        user TEXT NOT NULL,
        amount INTEGER NOT NULL CHECK (amount > 0),
        currency INTEGER NOT NULL,
        exponent INTEGER NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('held', 'captured', 'released')),
        load_server TEXT NOT NULL,
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        resolved_at TEXT,
        reason TEXT
      );
      CREATE INDEX bank_holds_open ON bank_holds (state, expires_at);
      CREATE TABLE bank_ledger (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        txn_id TEXT NOT NULL,
        account_id TEXT NOT NULL REFERENCES bank_accounts (account_id),
        delta INTEGER NOT NULL,
        at TEXT NOT NULL
      );
    `,
  },
];

interface RawHold {
  txn_id: string;
  account_id: string;
  user: string;
  amount: number;
  currency: number;
  exponent: number;
  state: HoldState;
  load_server: string;
  created_at: string;
  expires_at: string;
  reason: string | null;
}

const holdOf = (r: RawHold): HoldRow => ({
  txnId: r.txn_id,
  accountId: r.account_id,
  user: r.user,
  amount: r.amount,
  currency: r.currency,
  exponent: r.exponent,
  state: r.state,
  loadServer: r.load_server,
  createdAt: r.created_at,
  expiresAt: r.expires_at,
  reason: r.reason ?? undefined,
});

export class SqliteBankStore implements BankStore {
  readonly db: SqliteDatabase;

  constructor(path: string) {
    this.db = openSqlite(path, { component: 'bank', migrations: BANK_MIGRATIONS });
  }

  async seed(accounts: readonly SeedAccount[]): Promise<void> {
    this.db.transaction(() => {
      const acc = this.db.prepare('INSERT INTO bank_accounts (account_id, number, holder, expiry, kind, balance) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (account_id) DO NOTHING');
      const usr = this.db.prepare('INSERT INTO bank_users (user, account_id, salt, hash) VALUES (?, ?, ?, ?) ON CONFLICT (user) DO NOTHING');
      for (const a of accounts) {
        acc.run(a.accountId, a.number, a.holder, a.expiry, a.kind, a.balance);
        if (a.user) usr.run(a.user.name, a.accountId, a.user.salt, a.user.hash);
      }
    })();
  }

  async login(user: string) {
    const r = this.db.prepare('SELECT account_id, salt, hash FROM bank_users WHERE user = ?').get(user) as { account_id: string; salt: string; hash: string } | undefined;
    return r ? { accountId: r.account_id, salt: r.salt, hash: r.hash } : undefined;
  }

  async createSession(tokenHash: string, user: string, expiresAt: string): Promise<void> {
    this.db.prepare('INSERT INTO bank_sessions (token_hash, user, expires_at) VALUES (?, ?, ?)').run(tokenHash, user, expiresAt);
  }

  async sessionUser(tokenHash: string, now: string): Promise<string | undefined> {
    const r = this.db.prepare('SELECT user FROM bank_sessions WHERE token_hash = ? AND expires_at > ?').get(tokenHash, now) as { user: string } | undefined;
    return r?.user;
  }

  async account(accountId: string): Promise<AccountRow | undefined> {
    const r = this.db
      .prepare(
        `SELECT a.*, COALESCE((SELECT SUM(amount) FROM bank_holds h WHERE h.account_id = a.account_id AND h.state = 'held'), 0) AS held
         FROM bank_accounts a WHERE a.account_id = ?`,
      )
      .get(accountId) as { account_id: string; number: string; holder: string; expiry: string; kind: 'customer' | 'float'; balance: number; held: number } | undefined;
    return r ? { accountId: r.account_id, number: r.number, holder: r.holder, expiry: r.expiry, kind: r.kind, balance: r.balance, held: r.held } : undefined;
  }

  async placeHold(h: Omit<HoldRow, 'state' | 'reason'>): Promise<void> {
    this.db.transaction(() => {
      const a = this.db
        .prepare(`SELECT balance - COALESCE((SELECT SUM(amount) FROM bank_holds WHERE account_id = ? AND state = 'held'), 0) AS available FROM bank_accounts WHERE account_id = ?`)
        .get(h.accountId, h.accountId) as { available: number } | undefined;
      if (!a) throw new BankStoreError('NO_SUCH_ACCOUNT', `no account ${h.accountId}`);
      if (a.available < h.amount) throw new BankStoreError('INSUFFICIENT_FUNDS', 'not enough funds available on the account for this load');
      this.db
        .prepare(
          `INSERT INTO bank_holds (txn_id, account_id, user, amount, currency, exponent, state, load_server, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, 'held', ?, ?, ?)`,
        )
        .run(h.txnId, h.accountId, h.user, h.amount, h.currency, h.exponent, h.loadServer, h.createdAt, h.expiresAt);
    })();
  }

  async getHold(txnId: string): Promise<HoldRow | undefined> {
    const r = this.db.prepare('SELECT * FROM bank_holds WHERE txn_id = ?').get(txnId) as RawHold | undefined;
    return r ? holdOf(r) : undefined;
  }

  async capture(txnId: string, floatAccountId: string, reason: string, at: string): Promise<boolean> {
    return this.db.transaction(() => {
      const h = this.db.prepare(`SELECT * FROM bank_holds WHERE txn_id = ? AND state = 'held'`).get(txnId) as RawHold | undefined;
      if (!h) return false;
      this.db.prepare(`UPDATE bank_holds SET state = 'captured', resolved_at = ?, reason = ? WHERE txn_id = ? AND state = 'held'`).run(at, reason, txnId);
      const move = this.db.prepare('UPDATE bank_accounts SET balance = balance + ? WHERE account_id = ?');
      const ledger = this.db.prepare('INSERT INTO bank_ledger (txn_id, account_id, delta, at) VALUES (?, ?, ?, ?)');
      if (move.run(-h.amount, h.account_id).changes !== 1 || move.run(h.amount, floatAccountId).changes !== 1) {
        throw new BankStoreError('NO_SUCH_ACCOUNT', `capture ${txnId}: account or float account missing`);
      }
      ledger.run(txnId, h.account_id, -h.amount, at);
      ledger.run(txnId, floatAccountId, h.amount, at);
      return true;
    })();
  }

  async release(txnId: string, reason: string, at: string): Promise<boolean> {
    const r = this.db.prepare(`UPDATE bank_holds SET state = 'released', resolved_at = ?, reason = ? WHERE txn_id = ? AND state = 'held'`).run(at, reason, txnId);
    return r.changes === 1;
  }

  async expiredHolds(now: string): Promise<HoldRow[]> {
    return (this.db.prepare(`SELECT * FROM bank_holds WHERE state = 'held' AND expires_at < ? ORDER BY expires_at`).all(now) as RawHold[]).map(holdOf);
  }

  async totals(floatAccountId: string): Promise<BankTotals> {
    const c = this.db.prepare(`SELECT COALESCE(SUM(balance), 0) AS s FROM bank_accounts WHERE kind = 'customer'`).get() as { s: number };
    const f = this.db.prepare('SELECT balance FROM bank_accounts WHERE account_id = ?').get(floatAccountId) as { balance: number } | undefined;
    const holds: Record<HoldState, number> = { held: 0, captured: 0, released: 0 };
    for (const r of this.db.prepare('SELECT state, COUNT(*) AS n FROM bank_holds GROUP BY state').all() as { state: HoldState; n: number }[]) holds[r.state] = r.n;
    return { customers: c.s, float: f?.balance ?? 0, holds };
  }

  async close(): Promise<void> {
    this.db.close();
  }
}
