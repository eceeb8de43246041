// The payment store on embedded SQLite (src/store/sqlite.ts: WAL, migrations per component). Each method is one
// short transaction; a state transition checks the current state inside its write, so two racing requests
// cannot both move a payment. The SQL stays in this file (PaymentStore in store.ts is what the flows see).

import { GroupCommit } from '../../store/group-commit.ts';
import { openSqlite, type Migration, type SqliteDatabase } from '../../store/sqlite.ts';
import {
  DuplicateTransactionError,
  type BatchRecordRow,
  type LedgerEntry,
  type NewPayment,
  type PaymentEvent,
  type PaymentPatch,
  type PaymentRow,
  type PaymentState,
  type PaymentStore,
  type RecreditRecord,
} from './store.ts';

/** Payments still in flight (the partial index payments_open; a query must say this term to use it). */
const OPEN = "state NOT IN ('completed', 'failed')";
/** Completed payments whose PSAM record is not confirmed yet (partial index payments_unconfirmed). */
const UNCONFIRMED = "state = 'completed' AND psam_confirmed = 0";

export const PAYMENT_MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'payments, events, ledger, recredits, batches',
    up: `
      CREATE TABLE payments (
        payment_id TEXT PRIMARY KEY,
        merchant_id TEXT NOT NULL,
        txn_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        variant TEXT NOT NULL,
        encrypted INTEGER NOT NULL,
        amount INTEGER NOT NULL,
        currency INTEGER NOT NULL,
        exponent INTEGER NOT NULL,
        state TEXT NOT NULL,
        reason TEXT,
        card_id TEXT,
        card_counter INTEGER,
        startup TEXT,
        psam_id TEXT,
        psam_txn INTEGER,
        tx_type INTEGER,
        debit_data TEXT,
        expected_s3 TEXT,
        debit_response TEXT,
        etsk TEXT,
        psam_confirmed INTEGER NOT NULL DEFAULT 0,
        result_json TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        UNIQUE (merchant_id, txn_id)
      );
      CREATE INDEX payments_state ON payments (state);
      CREATE INDEX payments_psam ON payments (psam_id, psam_txn);
      CREATE TABLE payment_events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        payment_id TEXT,
        at TEXT NOT NULL,
        type TEXT NOT NULL,
        detail TEXT NOT NULL
      );
      CREATE INDEX payment_events_payment ON payment_events (payment_id);
      CREATE TABLE batches (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        psam_id TEXT NOT NULL,
        batch_number INTEGER NOT NULL,
        record_count INTEGER NOT NULL,
        confirmed_sum INTEGER NOT NULL,
        ledger_sum INTEGER NOT NULL,
        mac_verified INTEGER,
        ledger_matches INTEGER NOT NULL,
        file TEXT,
        collection_json TEXT NOT NULL,
        closed_at TEXT NOT NULL,
        UNIQUE (psam_id, batch_number)
      );
      CREATE TABLE ledger (
        payment_id TEXT PRIMARY KEY REFERENCES payments (payment_id),
        merchant_id TEXT NOT NULL,
        txn_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        amount INTEGER NOT NULL,
        currency INTEGER NOT NULL,
        exponent INTEGER NOT NULL,
        psam_id TEXT NOT NULL,
        psam_txn INTEGER NOT NULL,
        completed_at TEXT NOT NULL,
        batch_id INTEGER REFERENCES batches (id)
      );
      CREATE INDEX ledger_psam ON ledger (psam_id, batch_id);
      CREATE TABLE recredits (
        payment_id TEXT PRIMARY KEY REFERENCES payments (payment_id),
        amount INTEGER NOT NULL,
        currency INTEGER NOT NULL,
        exponent INTEGER NOT NULL,
        claim_json TEXT NOT NULL,
        issued_at TEXT NOT NULL
      );`,
  },
  {
    // Fewer pages per commit: event ids without AUTOINCREMENT (no sqlite_sequence row to rewrite on every event;
    // events are never deleted, so ids still only grow), and the state index only over payments still in flight
    // (small and hot, instead of one entry per payment ever made); the PSAM-confirmation scan gets its own
    // partial index.
    version: 2,
    name: 'events without AUTOINCREMENT, partial indexes for open and unconfirmed payments',
    up: `
      CREATE TABLE payment_events_v2 (
        id INTEGER PRIMARY KEY,
        payment_id TEXT,
        at TEXT NOT NULL,
        type TEXT NOT NULL,
        detail TEXT NOT NULL
      );
      INSERT INTO payment_events_v2 (id, payment_id, at, type, detail) SELECT id, payment_id, at, type, detail FROM payment_events;
      DROP TABLE payment_events;
      ALTER TABLE payment_events_v2 RENAME TO payment_events;
      CREATE INDEX payment_events_payment ON payment_events (payment_id);
      DROP INDEX payments_state;
      CREATE INDEX payments_open ON payments (state) WHERE ${OPEN};
      CREATE INDEX payments_unconfirmed ON payments (created_at) WHERE ${UNCONFIRMED};`,
  },
];

type Row = Record<string, unknown>;

const COLUMNS: Record<keyof PaymentPatch, string> = {
  reason: 'reason',
  psamId: 'psam_id',
  psamTxn: 'psam_txn',
  txType: 'tx_type',
  debitData: 'debit_data',
  expectedS3: 'expected_s3',
  debitResponse: 'debit_response',
  psamConfirmed: 'psam_confirmed',
  resultJson: 'result_json',
};

function toPayment(r: Row): PaymentRow {
  return {
    paymentId: r.payment_id as string,
    merchantId: r.merchant_id as string,
    txnId: r.txn_id as string,
    kind: r.kind as PaymentRow['kind'],
    variant: r.variant as PaymentRow['variant'],
    encrypted: r.encrypted === 1,
    amount: r.amount as number,
    currency: r.currency as number,
    exponent: r.exponent as number,
    state: r.state as PaymentState,
    reason: (r.reason as string | null) ?? null,
    cardId: (r.card_id as string | null) ?? null,
    cardCounter: (r.card_counter as number | null) ?? null,
    startup: (r.startup as string | null) ?? null,
    psamId: (r.psam_id as string | null) ?? null,
    psamTxn: (r.psam_txn as number | null) ?? null,
    txType: (r.tx_type as number | null) ?? null,
    debitData: (r.debit_data as string | null) ?? null,
    expectedS3: (r.expected_s3 as string | null) ?? null,
    debitResponse: (r.debit_response as string | null) ?? null,
    etsk: (r.etsk as string | null) ?? null,
    psamConfirmed: r.psam_confirmed === 1,
    resultJson: (r.result_json as string | null) ?? null,
    createdAt: r.created_at as string,
    updatedAt: r.updated_at as string,
  };
}

const toLedger = (r: Row): LedgerEntry => ({
  paymentId: r.payment_id as string,
  merchantId: r.merchant_id as string,
  txnId: r.txn_id as string,
  kind: r.kind as LedgerEntry['kind'],
  amount: r.amount as number,
  currency: r.currency as number,
  exponent: r.exponent as number,
  psamId: r.psam_id as string,
  psamTxn: r.psam_txn as number,
  completedAt: r.completed_at as string,
  batchId: (r.batch_id as number | null) ?? null,
});

const toBatch = (r: Row): BatchRecordRow => ({
  id: r.id as number,
  psamId: r.psam_id as string,
  batchNumber: r.batch_number as number,
  recordCount: r.record_count as number,
  confirmedSum: r.confirmed_sum as number,
  ledgerSum: r.ledger_sum as number,
  macVerified: r.mac_verified === null ? null : r.mac_verified === 1,
  ledgerMatches: r.ledger_matches === 1,
  file: (r.file as string | null) ?? null,
  collectionJson: r.collection_json as string,
  closedAt: r.closed_at as string,
});

const toRecredit = (r: Row): RecreditRecord => ({
  paymentId: r.payment_id as string,
  amount: r.amount as number,
  currency: r.currency as number,
  exponent: r.exponent as number,
  claimJson: r.claim_json as string,
  issuedAt: r.issued_at as string,
});

const sqlValue = (v: unknown): unknown => (typeof v === 'boolean' ? (v ? 1 : 0) : v);

export class SqlitePaymentStore implements PaymentStore {
  readonly db: SqliteDatabase;
  private readonly stmt: {
    insert: import('better-sqlite3').Statement;
    event: import('better-sqlite3').Statement;
    get: import('better-sqlite3').Statement;
    getRecredit: import('better-sqlite3').Statement;
    ledgerInsert: import('better-sqlite3').Statement;
  };
  private readonly transitionCache = new Map<string, import('better-sqlite3').Statement>();
  private readonly patchCache = new Map<string, import('better-sqlite3').Statement>();
  /** Writes of the same turn share one transaction and one COMMIT (src/store/group-commit.ts). */
  private readonly commits: GroupCommit;

  constructor(path: string) {
    this.db = openSqlite(path, { component: 'payment', migrations: PAYMENT_MIGRATIONS });
    this.stmt = {
      insert: this.db.prepare(`INSERT INTO payments (payment_id, merchant_id, txn_id, kind, variant, encrypted, amount, currency, exponent, state,
        card_id, card_counter, startup, etsk, created_at, updated_at)
        VALUES (@paymentId, @merchantId, @txnId, @kind, @variant, @encrypted, @amount, @currency, @exponent, 'received',
        @cardId, @cardCounter, @startup, @etsk, @now, @now)`),
      event: this.db.prepare('INSERT INTO payment_events (payment_id, at, type, detail) VALUES (?, ?, ?, ?)'),
      get: this.db.prepare('SELECT * FROM payments WHERE payment_id = ?'),
      getRecredit: this.db.prepare('SELECT * FROM recredits WHERE payment_id = ?'),
      ledgerInsert: this.db.prepare(`INSERT INTO ledger (payment_id, merchant_id, txn_id, kind, amount, currency, exponent, psam_id, psam_txn, completed_at)
        VALUES (@paymentId, @merchantId, @txnId, @kind, @amount, @currency, @exponent, @psamId, @psamTxn, @completedAt)`),
    };
    this.commits = new GroupCommit(this.db, 'the payment store');
  }

  /** Run `run` in the next group commit; settles once it is committed (see GroupCommit). */
  private write<T>(run: () => T): Promise<T> {
    return this.commits.write(run);
  }

  private logSync(paymentId: string | null, type: string, detail: Record<string, unknown> = {}, at = new Date().toISOString()): void {
    this.stmt.event.run(paymentId, at, type, JSON.stringify(detail));
  }

  async insertReceived(p: NewPayment, event: Record<string, unknown>): Promise<void> {
    const now = new Date().toISOString();
    try {
      await this.write(() => {
        this.stmt.insert.run({ ...p, encrypted: p.encrypted ? 1 : 0, now });
        this.logSync(p.paymentId, 'draw-received', event, now);
      });
    } catch (e) {
      if ((e as { code?: string }).code === 'SQLITE_CONSTRAINT_UNIQUE' && /txn_id/.test((e as Error).message)) throw new DuplicateTransactionError(p.merchantId, p.txnId);
      throw e;
    }
  }

  private transitionStmt(nFrom: number, keys: readonly (keyof PaymentPatch)[]): import('better-sqlite3').Statement {
    const sig = `${nFrom}:${keys.join(',')}`;
    let s = this.transitionCache.get(sig);
    if (!s) {
      const sets = ['state = ?', 'updated_at = ?', ...keys.map((k) => `${COLUMNS[k]} = ?`)];
      s = this.db.prepare(`UPDATE payments SET ${sets.join(', ')} WHERE payment_id = ? AND state IN (${Array(nFrom).fill('?').join(', ')})`);
      this.transitionCache.set(sig, s);
    }
    return s;
  }

  private patchStmt(keys: readonly (keyof PaymentPatch)[]): import('better-sqlite3').Statement {
    const sig = keys.join(',');
    let s = this.patchCache.get(sig);
    if (!s) {
      s = this.db.prepare(`UPDATE payments SET updated_at = ?, ${keys.map((k) => `${COLUMNS[k]} = ?`).join(', ')} WHERE payment_id = ?`);
      this.patchCache.set(sig, s);
    }
    return s;
  }

  async transition(
    paymentId: string,
    from: readonly PaymentState[],
    to: PaymentState,
    patch: PaymentPatch,
    eventType: string,
    detail: Record<string, unknown> = {},
    ledger?: Omit<LedgerEntry, 'batchId'>,
    eventsBefore: readonly { readonly type: string; readonly detail: Record<string, unknown> }[] = [],
  ): Promise<boolean> {
    const keys = (Object.keys(patch) as (keyof PaymentPatch)[]).filter((k) => patch[k] !== undefined);
    const now = new Date().toISOString();
    return this.write(() => {
      const r = this.transitionStmt(from.length, keys).run(to, now, ...keys.map((k) => sqlValue(patch[k])), paymentId, ...from);
      if (r.changes !== 1) return false;
      for (const e of eventsBefore) this.logSync(paymentId, e.type, e.detail, now);
      this.logSync(paymentId, eventType, { state: to, ...detail }, now);
      if (ledger) this.stmt.ledgerInsert.run(ledger);
      return true;
    });
  }

  async patch(paymentId: string, patch: PaymentPatch, eventType: string, detail: Record<string, unknown> = {}): Promise<void> {
    const keys = (Object.keys(patch) as (keyof PaymentPatch)[]).filter((k) => patch[k] !== undefined);
    const now = new Date().toISOString();
    await this.write(() => {
      if (keys.length) this.patchStmt(keys).run(now, ...keys.map((k) => sqlValue(patch[k])), paymentId);
      this.logSync(paymentId, eventType, detail, now);
    });
  }

  async get(paymentId: string): Promise<PaymentRow | undefined> {
    const r = this.stmt.get.get(paymentId) as Row | undefined;
    return r ? toPayment(r) : undefined;
  }

  async findByPsamTxn(psamId: string, psamTxn: number): Promise<PaymentRow | undefined> {
    const r = this.db.prepare('SELECT * FROM payments WHERE psam_id = ? AND psam_txn = ?').get(psamId, psamTxn) as Row | undefined;
    return r ? toPayment(r) : undefined;
  }

  async listByState(states: readonly PaymentState[]): Promise<PaymentRow[]> {
    if (!states.length) return [];
    const inFlight = states.every((s) => s !== 'completed' && s !== 'failed');
    const rows = this.db.prepare(`SELECT * FROM payments WHERE ${inFlight ? `${OPEN} AND ` : ''}state IN (${states.map(() => '?').join(', ')}) ORDER BY created_at, payment_id`).all(...states) as Row[];
    return rows.map(toPayment);
  }

  async listUnconfirmed(): Promise<PaymentRow[]> {
    const rows = this.db.prepare(`SELECT * FROM payments WHERE ${UNCONFIRMED} ORDER BY created_at`).all() as Row[];
    return rows.map(toPayment);
  }

  async countByState(): Promise<Record<string, number>> {
    const rows = this.db.prepare('SELECT state, COUNT(*) AS n FROM payments GROUP BY state').all() as { state: string; n: number }[];
    return Object.fromEntries(rows.map((r) => [r.state, r.n]));
  }

  async logEvent(paymentId: string | null, type: string, detail: Record<string, unknown> = {}): Promise<void> {
    const at = new Date().toISOString();
    await this.write(() => this.logSync(paymentId, type, detail, at));
  }

  async events(paymentId: string): Promise<PaymentEvent[]> {
    const rows = this.db.prepare('SELECT * FROM payment_events WHERE payment_id = ? ORDER BY id').all(paymentId) as Row[];
    return rows.map((r) => ({ id: r.id as number, paymentId: r.payment_id as string, at: r.at as string, type: r.type as string, detail: JSON.parse(r.detail as string) as Record<string, unknown> }));
  }

  async ledger(filter: { psamId?: string; unbatched?: boolean } = {}): Promise<LedgerEntry[]> {
    const where: string[] = [];
    const args: unknown[] = [];
    if (filter.psamId !== undefined) {
      where.push('psam_id = ?');
      args.push(filter.psamId);
    }
    if (filter.unbatched) where.push('batch_id IS NULL');
    const rows = this.db.prepare(`SELECT * FROM ledger ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY completed_at, payment_id`).all(...args) as Row[];
    return rows.map(toLedger);
  }

  async insertRecredit(r: RecreditRecord): Promise<boolean> {
    return this.write(() => {
      const res = this.db.prepare('INSERT OR IGNORE INTO recredits (payment_id, amount, currency, exponent, claim_json, issued_at) VALUES (?, ?, ?, ?, ?, ?)').run(r.paymentId, r.amount, r.currency, r.exponent, r.claimJson, r.issuedAt);
      if (res.changes !== 1) return false;
      this.logSync(r.paymentId, 'recredit-claim-issued', { amount: r.amount, currency: r.currency, exponent: r.exponent, note: 'a re-credit of a debited card, not a load' });
      return true;
    });
  }

  async getRecredit(paymentId: string): Promise<RecreditRecord | undefined> {
    const r = this.stmt.getRecredit.get(paymentId) as Row | undefined;
    return r ? toRecredit(r) : undefined;
  }

  async listRecredits(): Promise<RecreditRecord[]> {
    return (this.db.prepare('SELECT * FROM recredits ORDER BY issued_at').all() as Row[]).map(toRecredit);
  }

  async insertBatch(b: Omit<BatchRecordRow, 'id'>, ledgerPaymentIds: readonly string[]): Promise<number> {
    return this.write(() => {
      const r = this.db
        .prepare(`INSERT INTO batches (psam_id, batch_number, record_count, confirmed_sum, ledger_sum, mac_verified, ledger_matches, file, collection_json, closed_at)
          VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
        .run(b.psamId, b.batchNumber, b.recordCount, b.confirmedSum, b.ledgerSum, b.macVerified === null ? null : b.macVerified ? 1 : 0, b.ledgerMatches ? 1 : 0, b.file, b.collectionJson, b.closedAt);
      const id = Number(r.lastInsertRowid);
      const mark = this.db.prepare('UPDATE ledger SET batch_id = ? WHERE payment_id = ? AND batch_id IS NULL');
      for (const p of ledgerPaymentIds) mark.run(id, p);
      this.logSync(null, 'batch-closed', { psamId: b.psamId, batchNumber: b.batchNumber, records: b.recordCount, confirmedSum: b.confirmedSum, ledgerSum: b.ledgerSum, ledgerMatches: b.ledgerMatches });
      return id;
    });
  }

  async findBatch(psamId: string, batchNumber: number): Promise<BatchRecordRow | undefined> {
    const r = this.db.prepare('SELECT * FROM batches WHERE psam_id = ? AND batch_number = ?').get(psamId, batchNumber) as Row | undefined;
    return r ? toBatch(r) : undefined;
  }

  async getBatch(id: number): Promise<BatchRecordRow | undefined> {
    const r = this.db.prepare('SELECT * FROM batches WHERE id = ?').get(id) as Row | undefined;
    return r ? toBatch(r) : undefined;
  }

  async listBatches(): Promise<BatchRecordRow[]> {
    return (this.db.prepare('SELECT * FROM batches ORDER BY id').all() as Row[]).map(toBatch);
  }

  async close(): Promise<void> {
    this.commits.closeDatabase();
  }
}

export function openPaymentStore(path: string): PaymentStore {
  return new SqlitePaymentStore(path);
}
