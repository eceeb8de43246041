// The merchant server's store: orders (with the fields their MACed ticket is rebuilt from) and releases of
// goods, one per order at most. An async interface, so a PostgreSQL version can replace the SQLite one
// without touching the routes. A release is one transaction: the release row and the order's status together.

import { LruCache } from '../../lru.ts';
import { GroupCommit } from '../../store/group-commit.ts';
import { openSqlite, type Migration, type SqliteDatabase } from '../../store/sqlite.ts';
import { PurselabError } from '../../errors.ts';
import type { OrderKind } from '../../protocol/payment-messages.ts';

export type OrderStatus = 'pending' | 'paid' | 'authenticated' | 'declined';

export interface OrderLine {
  readonly sku: string;
  readonly name: string;
  readonly quantity: number;
  /** Unit price, minor units. */
  readonly price: number;
}

export interface StoredOrder {
  readonly txnId: string;
  readonly kind: OrderKind;
  readonly amount: number;
  readonly currency: number;
  readonly exponent: number;
  readonly lines: readonly OrderLine[];
  /** FIG. 16: the benefit an authentication order claims. */
  readonly benefit: string | undefined;
  readonly description: string;
  readonly issuedAt: string;
  readonly expiresAt: string;
  /** FIG. 9: the transaction session key on this order's page (hex), so the page reads the same every time. */
  readonly tsk: string | undefined;
  readonly status: OrderStatus;
  /** Code of the last declined result (INSUFFICIENT_FUNDS, S3_INVALID ...). */
  readonly declineReason: string | undefined;
}

export interface Release {
  readonly txnId: string;
  readonly paymentId: string;
  readonly status: 'paid' | 'authenticated';
  readonly verifiedBy: string;
  /** Masked card number. */
  readonly card: string;
  readonly goods: string;
  readonly releasedAt: string;
}

export class MerchantStoreError extends PurselabError {}

export interface MerchantStore {
  createOrder(order: Omit<StoredOrder, 'status' | 'declineReason'>): Promise<void>;
  getOrder(txnId: string): Promise<StoredOrder | undefined>;
  /**
   * Release the goods of an order, once: the first call stores the release and returns { fresh: true }; later
   * calls return the stored release ({ fresh: false }). A paymentId already used by another order is refused
   * (MerchantStoreError PAYMENT_REUSED) and changes nothing.
   */
  release(r: Release): Promise<{ release: Release; fresh: boolean }>;
  /** Record an authentic declined result for a pending order (a released order is left as it is). */
  decline(txnId: string, reason: string): Promise<void>;
  getRelease(txnId: string): Promise<Release | undefined>;
  listReleases(): Promise<Release[]>;
  close(): Promise<void>;
}

export const MERCHANT_MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'orders and releases',
    up: `
      CREATE TABLE merchant_orders (
        txn_id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        amount INTEGER NOT NULL,
        currency INTEGER NOT NULL,
        exponent INTEGER NOT NULL,
        lines TEXT NOT NULL,
        benefit TEXT,
        description TEXT NOT NULL,
        issued_at TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        tsk TEXT,
        status TEXT NOT NULL DEFAULT 'pending',
        decline_reason TEXT
      );
      CREATE TABLE merchant_releases (
        txn_id TEXT PRIMARY KEY REFERENCES merchant_orders(txn_id),
        payment_id TEXT NOT NULL UNIQUE,
        status TEXT NOT NULL,
        verified_by TEXT NOT NULL,
        card TEXT NOT NULL,
        goods TEXT NOT NULL,
        released_at TEXT NOT NULL
      );`,
  },
];

interface OrderRow {
  txn_id: string;
  kind: OrderKind;
  amount: number;
  currency: number;
  exponent: number;
  lines: string;
  benefit: string | null;
  description: string;
  issued_at: string;
  expires_at: string;
  tsk: string | null;
  status: OrderStatus;
  decline_reason: string | null;
}

interface ReleaseRow {
  txn_id: string;
  payment_id: string;
  status: 'paid' | 'authenticated';
  verified_by: string;
  card: string;
  goods: string;
  released_at: string;
}

const orderOf = (r: OrderRow): StoredOrder => ({
  txnId: r.txn_id,
  kind: r.kind,
  amount: r.amount,
  currency: r.currency,
  exponent: r.exponent,
  lines: JSON.parse(r.lines) as OrderLine[],
  benefit: r.benefit ?? undefined,
  description: r.description,
  issuedAt: r.issued_at,
  expiresAt: r.expires_at,
  tsk: r.tsk ?? undefined,
  status: r.status,
  declineReason: r.decline_reason ?? undefined,
});

const releaseOf = (r: ReleaseRow): Release => ({
  txnId: r.txn_id,
  paymentId: r.payment_id,
  status: r.status,
  verifiedBy: r.verified_by,
  card: r.card,
  goods: r.goods,
  releasedAt: r.released_at,
});

class SqliteMerchantStore implements MerchantStore {
  private readonly db: SqliteDatabase;
  private readonly q;
  /** Writes of the same turn share one transaction and one COMMIT (src/store/group-commit.ts). */
  private readonly commits: GroupCommit;
  /**
   * Orders created here, as stored, until their status changes (a release or decline drops the entry, so the
   * next read is the row): a purchase reads its order twice (the page, the status check) right after making it.
   * As the payment store, this assumes one merchant server per database.
   */
  private readonly recent = new LruCache<string, StoredOrder>(1024);

  constructor(db: SqliteDatabase) {
    this.db = db;
    this.commits = new GroupCommit(db, 'the merchant store');
    this.q = {
      insertOrder: db.prepare(
        `INSERT INTO merchant_orders (txn_id, kind, amount, currency, exponent, lines, benefit, description, issued_at, expires_at, tsk)
         VALUES (@txn_id, @kind, @amount, @currency, @exponent, @lines, @benefit, @description, @issued_at, @expires_at, @tsk)`,
      ),
      order: db.prepare('SELECT * FROM merchant_orders WHERE txn_id = ?'),
      release: db.prepare('SELECT * FROM merchant_releases WHERE txn_id = ?'),
      releaseByPayment: db.prepare('SELECT * FROM merchant_releases WHERE payment_id = ?'),
      insertRelease: db.prepare(
        `INSERT INTO merchant_releases (txn_id, payment_id, status, verified_by, card, goods, released_at)
         VALUES (@txn_id, @payment_id, @status, @verified_by, @card, @goods, @released_at)`,
      ),
      setStatus: db.prepare('UPDATE merchant_orders SET status = ? WHERE txn_id = ?'),
      decline: db.prepare(`UPDATE merchant_orders SET status = 'declined', decline_reason = ? WHERE txn_id = ? AND status IN ('pending', 'declined')`),
      releases: db.prepare('SELECT * FROM merchant_releases ORDER BY released_at, txn_id'),
    };
  }

  async createOrder(o: Omit<StoredOrder, 'status' | 'declineReason'>): Promise<void> {
    const row = {
      txn_id: o.txnId,
      kind: o.kind,
      amount: o.amount,
      currency: o.currency,
      exponent: o.exponent,
      lines: JSON.stringify(o.lines),
      benefit: o.benefit ?? null,
      description: o.description,
      issued_at: o.issuedAt,
      expires_at: o.expiresAt,
      tsk: o.tsk ?? null,
    };
    await this.commits.write(() => this.q.insertOrder.run(row));
    this.recent.set(o.txnId, orderOf({ ...row, status: 'pending', decline_reason: null }));
  }

  async getOrder(txnId: string): Promise<StoredOrder | undefined> {
    const kept = this.recent.get(txnId);
    if (kept) return kept;
    const r = this.q.order.get(txnId) as OrderRow | undefined;
    return r && orderOf(r);
  }

  async release(r: Release): Promise<{ release: Release; fresh: boolean }> {
    this.recent.delete(r.txnId);
    return this.commits.write(() => {
      const existing = this.q.release.get(r.txnId) as ReleaseRow | undefined;
      if (existing) return { release: releaseOf(existing), fresh: false };
      const other = this.q.releaseByPayment.get(r.paymentId) as ReleaseRow | undefined;
      if (other) throw new MerchantStoreError('PAYMENT_REUSED', `payment ${r.paymentId} already paid for another order`);
      this.q.insertRelease.run({ txn_id: r.txnId, payment_id: r.paymentId, status: r.status, verified_by: r.verifiedBy, card: r.card, goods: r.goods, released_at: r.releasedAt });
      this.q.setStatus.run(r.status, r.txnId);
      return { release: r, fresh: true };
    });
  }

  async decline(txnId: string, reason: string): Promise<void> {
    this.recent.delete(txnId);
    await this.commits.write(() => this.q.decline.run(reason, txnId));
  }

  async getRelease(txnId: string): Promise<Release | undefined> {
    const r = this.q.release.get(txnId) as ReleaseRow | undefined;
    return r && releaseOf(r);
  }

  async listReleases(): Promise<Release[]> {
    return (this.q.releases.all() as ReleaseRow[]).map(releaseOf);
  }

  async close(): Promise<void> {
    this.commits.closeDatabase();
  }
}

/** The merchant store in a SQLite file (or ':memory:'). */
export function openMerchantStore(path: string): MerchantStore {
  return new SqliteMerchantStore(openSqlite(path, { component: 'merchant', migrations: MERCHANT_MIGRATIONS }));
}
