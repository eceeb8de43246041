// The load server's store (seed 003 step 887, "load server DB"): one row per load (txnId) with its state, the
// logged Load Request, S2 and the enquiry challenge, the card's response and the final Load Result; an audit
// log of every message received; the settlement log (txnId, bank id, value) for the issuer's float; and the
// re-credits of failed purchases, kept apart from loads. Every state change is one conditional UPDATE in a
// transaction, so a crash leaves each load in exactly one state and a racing abort cannot slip past an S2.

import { openSqlite, type Migration, type SqliteDatabase } from '../../store/sqlite.ts';
import type { CardLoadResponse, LoadAuthorisation, LoadRequestBody, LoadResultPayload } from '../../protocol/load-messages.ts';
import { settlementTotalsOf, type SettlementTotal } from './settlement.ts';

/** received: logged, no S2 yet; s2-issued: the card may be credited; final: Load Result fixed (loaded or not). */
export type LoadState = 'received' | 's2-issued' | 'final';

/** A load as it is first logged: the bank's authorisation (without its expiry) and the card's request. */
export interface NewLoad extends Omit<LoadAuthorisation, 'expiresAt'> {
  /** Absent for a load the bank aborted before any request arrived. */
  readonly request: LoadRequestBody | undefined;
}

export interface LoadRow extends NewLoad {
  readonly state: LoadState;
  readonly s2: string | undefined;
  readonly enquiryTxnId: string | undefined;
  readonly response: CardLoadResponse | undefined;
  readonly outcome: LoadResultPayload | undefined;
}

export interface Settlement {
  readonly txnId: string;
  readonly bankId: string;
  readonly amount: number;
  readonly currency: number;
  readonly exponent: number;
  readonly settledAt: string;
}

/** claimed: accepted, no S2 out; s2-issued: the card may be credited; credited: done (once per paymentId). */
export type RecreditState = 'claimed' | 's2-issued' | 'credited';

export interface RecreditRow {
  readonly paymentId: string;
  /** The LTXID of the re-credit's load commands (16 hex digits). */
  readonly recreditId: string;
  readonly state: RecreditState;
  readonly cardId: string;
  readonly amount: number;
  readonly currency: number;
  readonly exponent: number;
  readonly date: string;
  readonly time: string;
  /** The opened RecreditClaim. */
  readonly claim: unknown;
  readonly request: LoadRequestBody | undefined;
  readonly s2: string | undefined;
  readonly enquiryTxnId: string | undefined;
  readonly outcome: { status: string; basis: string } | undefined;
}

export interface LoadStore {
  getLoad(txnId: string): Promise<LoadRow | undefined>;
  /** Store a received Load Request: insert, or replace a row still in 'received'. False when the row is further on. */
  receive(load: NewLoad): Promise<boolean>;
  /** received -> s2-issued (S2 saved before it leaves the server). False when the load is no longer 'received' (aborted). */
  issueS2(txnId: string, s2: string, enquiryTxnId: string): Promise<boolean>;
  saveResponse(txnId: string, response: CardLoadResponse): Promise<void>;
  /** -> final with the Load Result, from one of `from` (or a new row when `insert` is given); a 'loaded' result is settled in the same transaction. */
  finalize(txnId: string, outcome: LoadResultPayload, from: readonly LoadState[], insert?: NewLoad): Promise<boolean>;
  /** The card's load with S2 issued and no result yet, if any (another load for the card waits for its recovery). */
  unresolvedForCard(cardId: string): Promise<string | undefined>;
  log(txnId: string, event: string, detail: unknown): Promise<void>;
  logOf(txnId: string): Promise<{ event: string; detail: unknown; at: string }[]>;
  settlements(): Promise<Settlement[]>;
  /** The settlement log summed per bank, currency and exponent (settlement.ts: the e-value issued onto cards). */
  settlementTotals(): Promise<SettlementTotal[]>;
  /** Record a re-credit claim once per paymentId; false (nothing changed) when that paymentId was claimed before. */
  claimRecredit(r: Omit<RecreditRow, 'state' | 'request' | 's2' | 'enquiryTxnId' | 'outcome'>): Promise<boolean>;
  getRecredit(paymentId: string): Promise<RecreditRow | undefined>;
  /** claimed -> s2-issued with the S1 request (saved before S2 leaves). False when not 'claimed'. */
  recreditS2(paymentId: string, request: LoadRequestBody, s2: string, enquiryTxnId: string): Promise<boolean>;
  /** s2-issued -> credited (final) or back to claimed (the card was proven not credited: may be tried again). */
  recreditOutcome(paymentId: string, credited: boolean, outcome: { status: string; basis: string }): Promise<boolean>;
  close(): Promise<void>;
}

export const LOAD_MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'loads, audit log, settlements, re-credits',
    up: `
      CREATE TABLE load_loads (
        txn_id TEXT PRIMARY KEY,
        bank_id TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('received', 's2-issued', 'final')),
        amount INTEGER NOT NULL,
        currency INTEGER NOT NULL,
        exponent INTEGER NOT NULL,
        date TEXT NOT NULL,
        time TEXT NOT NULL,
        status_url TEXT NOT NULL,
        card_id TEXT,
        request TEXT,
        s2 TEXT,
        enquiry_txn_id TEXT,
        response TEXT,
        outcome TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
      );
      CREATE INDEX load_loads_card ON load_loads (card_id, state);
      CREATE TABLE load_log (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        txn_id TEXT NOT NULL,
        event TEXT NOT NULL,
        detail TEXT NOT NULL,
        at TEXT NOT NULL
      );
      CREATE INDEX load_log_txn ON load_log (txn_id);
      CREATE TABLE load_settlements (
        txn_id TEXT PRIMARY KEY REFERENCES load_loads (txn_id),
        bank_id TEXT NOT NULL,
        amount INTEGER NOT NULL,
        currency INTEGER NOT NULL,
        exponent INTEGER NOT NULL,
        settled_at TEXT NOT NULL
      );
      CREATE TABLE load_recredits (
        payment_id TEXT PRIMARY KEY,
        recredit_id TEXT NOT NULL UNIQUE,
        state TEXT NOT NULL CHECK (state IN ('claimed', 's2-issued', 'credited')),
        card_id TEXT NOT NULL,
        amount INTEGER NOT NULL,
        currency INTEGER NOT NULL,
        exponent INTEGER NOT NULL,
        date TEXT NOT NULL,
        time TEXT NOT NULL,
        claim TEXT NOT NULL,
        request TEXT,
        s2 TEXT,
        enquiry_txn_id TEXT,
        response TEXT,
        outcome TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
      );
    `,
  },
];

interface Raw {
  txn_id: string;
  bank_id: string;
  state: LoadState;
  amount: number;
  currency: number;
  exponent: number;
  date: string;
  time: string;
  status_url: string;
  request: string | null;
  s2: string | null;
  enquiry_txn_id: string | null;
  response: string | null;
  outcome: string | null;
}

const parse = <T>(s: string | null): T | undefined => (s === null ? undefined : (JSON.parse(s) as T));

function rowOf(r: Raw): LoadRow {
  return {
    txnId: r.txn_id,
    bankId: r.bank_id,
    state: r.state,
    amount: r.amount,
    currency: r.currency,
    exponent: r.exponent,
    date: r.date,
    time: r.time,
    statusUrl: r.status_url,
    request: parse(r.request),
    s2: r.s2 ?? undefined,
    enquiryTxnId: r.enquiry_txn_id ?? undefined,
    response: parse(r.response),
    outcome: parse(r.outcome),
  };
}

export class SqliteLoadStore implements LoadStore {
  readonly db: SqliteDatabase;
  private readonly now: () => string;

  constructor(path: string, options: { now?: () => string } = {}) {
    this.db = openSqlite(path, { component: 'load', migrations: LOAD_MIGRATIONS });
    this.now = options.now ?? (() => new Date().toISOString());
  }

  async getLoad(txnId: string): Promise<LoadRow | undefined> {
    const r = this.db.prepare('SELECT * FROM load_loads WHERE txn_id = ?').get(txnId) as Raw | undefined;
    return r ? rowOf(r) : undefined;
  }

  private insertRow(l: NewLoad, state: LoadState, now: string): void {
    this.db
      .prepare(
        `INSERT INTO load_loads (txn_id, bank_id, state, amount, currency, exponent, date, time, status_url, card_id, request, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(l.txnId, l.bankId, state, l.amount, l.currency, l.exponent, l.date, l.time, l.statusUrl, l.request?.cardId ?? null, l.request ? JSON.stringify(l.request) : null, now, now);
  }

  async receive(l: NewLoad): Promise<boolean> {
    return this.db.transaction(() => {
      const now = this.now();
      const cur = this.db.prepare('SELECT state FROM load_loads WHERE txn_id = ?').get(l.txnId) as { state: LoadState } | undefined;
      if (!cur) {
        this.insertRow(l, 'received', now);
        return true;
      }
      if (cur.state !== 'received') return false;
      this.db
        .prepare(`UPDATE load_loads SET card_id = ?, request = ?, updated_at = ? WHERE txn_id = ? AND state = 'received'`)
        .run(l.request?.cardId ?? null, l.request ? JSON.stringify(l.request) : null, now, l.txnId);
      return true;
    })();
  }

  async issueS2(txnId: string, s2: string, enquiryTxnId: string): Promise<boolean> {
    const r = this.db
      .prepare(`UPDATE load_loads SET state = 's2-issued', s2 = ?, enquiry_txn_id = ?, updated_at = ? WHERE txn_id = ? AND state = 'received'`)
      .run(s2, enquiryTxnId, this.now(), txnId);
    return r.changes === 1;
  }

  async saveResponse(txnId: string, response: CardLoadResponse): Promise<void> {
    this.db.prepare('UPDATE load_loads SET response = ?, updated_at = ? WHERE txn_id = ?').run(JSON.stringify(response), this.now(), txnId);
  }

  async finalize(txnId: string, outcome: LoadResultPayload, from: readonly LoadState[], insert?: NewLoad): Promise<boolean> {
    return this.db.transaction(() => {
      const now = this.now();
      let states: readonly LoadState[] = from;
      if (!this.db.prepare('SELECT 1 FROM load_loads WHERE txn_id = ?').get(txnId)) {
        if (!insert) return false;
        this.insertRow(insert, 'received', now);
        states = ['received'];
      }
      const marks = states.map(() => '?').join(', ');
      const r = this.db
        .prepare(`UPDATE load_loads SET state = 'final', outcome = ?, updated_at = ? WHERE txn_id = ? AND state IN (${marks})`)
        .run(JSON.stringify(outcome), now, txnId, ...states);
      if (r.changes !== 1) return false;
      if (outcome.status === 'loaded') {
        this.db
          .prepare('INSERT INTO load_settlements (txn_id, bank_id, amount, currency, exponent, settled_at) VALUES (?, ?, ?, ?, ?, ?)')
          .run(txnId, outcome.bankId, outcome.amount, outcome.currency, outcome.exponent, now);
      }
      return true;
    })();
  }

  async unresolvedForCard(cardId: string): Promise<string | undefined> {
    const r = this.db.prepare(`SELECT txn_id FROM load_loads WHERE card_id = ? AND state = 's2-issued' LIMIT 1`).get(cardId) as { txn_id: string } | undefined;
    return r?.txn_id;
  }

  async log(txnId: string, event: string, detail: unknown): Promise<void> {
    this.db.prepare('INSERT INTO load_log (txn_id, event, detail, at) VALUES (?, ?, ?, ?)').run(txnId, event, JSON.stringify(detail ?? null), this.now());
  }

  async logOf(txnId: string): Promise<{ event: string; detail: unknown; at: string }[]> {
    const rows = this.db.prepare('SELECT event, detail, at FROM load_log WHERE txn_id = ? ORDER BY id').all(txnId) as { event: string; detail: string; at: string }[];
    return rows.map((r) => ({ event: r.event, detail: JSON.parse(r.detail) as unknown, at: r.at }));
  }

  async settlements(): Promise<Settlement[]> {
    const rows = this.db.prepare('SELECT * FROM load_settlements ORDER BY settled_at, txn_id').all() as { txn_id: string; bank_id: string; amount: number; currency: number; exponent: number; settled_at: string }[];
    return rows.map((r) => ({ txnId: r.txn_id, bankId: r.bank_id, amount: r.amount, currency: r.currency, exponent: r.exponent, settledAt: r.settled_at }));
  }

  async settlementTotals(): Promise<SettlementTotal[]> {
    return settlementTotalsOf(this.db);
  }

  async claimRecredit(r: Omit<RecreditRow, 'state' | 'request' | 's2' | 'enquiryTxnId' | 'outcome'>): Promise<boolean> {
    const now = this.now();
    const res = this.db
      .prepare(
        `INSERT INTO load_recredits (payment_id, recredit_id, state, card_id, amount, currency, exponent, date, time, claim, created_at, updated_at)
         VALUES (?, ?, 'claimed', ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (payment_id) DO NOTHING`,
      )
      .run(r.paymentId, r.recreditId, r.cardId, r.amount, r.currency, r.exponent, r.date, r.time, JSON.stringify(r.claim), now, now);
    return res.changes === 1;
  }

  async getRecredit(paymentId: string): Promise<RecreditRow | undefined> {
    const r = this.db.prepare('SELECT * FROM load_recredits WHERE payment_id = ?').get(paymentId) as Record<string, string | number | null> | undefined;
    if (!r) return undefined;
    return {
      paymentId: r.payment_id as string,
      recreditId: r.recredit_id as string,
      state: r.state as RecreditState,
      cardId: r.card_id as string,
      amount: r.amount as number,
      currency: r.currency as number,
      exponent: r.exponent as number,
      date: r.date as string,
      time: r.time as string,
      claim: JSON.parse(r.claim as string) as unknown,
      request: parse(r.request as string | null),
      s2: (r.s2 as string | null) ?? undefined,
      enquiryTxnId: (r.enquiry_txn_id as string | null) ?? undefined,
      outcome: parse(r.outcome as string | null),
    };
  }

  async recreditS2(paymentId: string, request: LoadRequestBody, s2: string, enquiryTxnId: string): Promise<boolean> {
    const r = this.db
      .prepare(`UPDATE load_recredits SET state = 's2-issued', request = ?, s2 = ?, enquiry_txn_id = ?, updated_at = ? WHERE payment_id = ? AND state = 'claimed'`)
      .run(JSON.stringify(request), s2, enquiryTxnId, this.now(), paymentId);
    return r.changes === 1;
  }

  async recreditOutcome(paymentId: string, credited: boolean, outcome: { status: string; basis: string }): Promise<boolean> {
    const r = this.db
      .prepare(`UPDATE load_recredits SET state = ?, outcome = ?, updated_at = ? WHERE payment_id = ? AND state = 's2-issued'`)
      .run(credited ? 'credited' : 'claimed', JSON.stringify(outcome), this.now(), paymentId);
    return r.changes === 1;
  }

  async close(): Promise<void> {
    this.db.close();
  }
}
