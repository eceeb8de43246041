// The OPAL transaction database (the patent's 272): a purchase table, a load table and a re-credit table (a
// re-credit is logged apart from a load). Each row's clear columns are only what is needed to find it (card,
// BIN, kind, status, time); the full transaction (amounts, balances, merchant, page, results) is sealed by the
// HSM under the card's record keys. A row is written 'started' before a flow touches the card and updated
// when it ends, so a crash leaves a visible unfinished row.

import type { Statement } from 'better-sqlite3';
import type { PaymentOps } from '../../hsm-bridge/payment.ts';
import { GroupCommit } from '../store/group-commit.ts';
import type { SqliteDatabase } from '../store/sqlite.ts';
import { OpalError } from './errors.ts';

export type HistoryTable = 'purchase' | 'load' | 'recredit';
const TABLES: Record<HistoryTable, string> = { purchase: 'opal_purchases', load: 'opal_loads', recredit: 'opal_recredits' };

export interface HistoryEntry {
  readonly table: HistoryTable;
  readonly id: number;
  readonly kind: string;
  readonly status: string;
  readonly at: string;
  readonly detail: Record<string, unknown>;
}

export class HistoryStore {
  private readonly ins: Record<HistoryTable, Statement<unknown[]>>;
  private readonly upd: Record<HistoryTable, Statement<unknown[]>>;
  private readonly list: Record<HistoryTable, Statement<unknown[]>>;
  private readonly one: Record<HistoryTable, Statement<unknown[]>>;
  private readonly commits: GroupCommit;

  constructor(
    private readonly db: SqliteDatabase,
    private readonly ops: PaymentOps,
    /** Shared with the other stores on this database, so a turn's writes go in one COMMIT (default: its own). */
    commits?: GroupCommit,
  ) {
    this.commits = commits ?? new GroupCommit(db, 'the OPAL history');
    this.ins = {
      purchase: db.prepare('INSERT INTO opal_purchases (card_id, bin, kind, status, at, sealed) VALUES (?, ?, ?, ?, ?, ?)'),
      load: db.prepare("INSERT INTO opal_loads (card_id, bin, status, at, sealed) VALUES (?, ?, ?, ?, ?)"),
      recredit: db.prepare('INSERT INTO opal_recredits (card_id, bin, purchase_id, status, at, sealed) VALUES (?, ?, ?, ?, ?, ?)'),
    };
    this.upd = Object.fromEntries(Object.entries(TABLES).map(([k, t]) => [k, db.prepare(`UPDATE ${t} SET status = ?, sealed = ? WHERE id = ? AND card_id = ?`)])) as Record<HistoryTable, Statement<unknown[]>>;
    this.list = Object.fromEntries(
      Object.entries(TABLES).map(([k, t]) => [k, db.prepare(`SELECT * FROM ${t} WHERE card_id = ? AND bin = ? ORDER BY id DESC LIMIT ?`)]),
    ) as Record<HistoryTable, Statement<unknown[]>>;
    this.one = Object.fromEntries(Object.entries(TABLES).map(([k, t]) => [k, db.prepare(`SELECT * FROM ${t} WHERE id = ? AND card_id = ?`)])) as Record<HistoryTable, Statement<unknown[]>>;
  }

  /** Write a 'started' row; returns its id. */
  async start(table: HistoryTable, cardId: string, kind: string, detail: Record<string, unknown>, purchaseId?: number): Promise<number> {
    const sealed = await this.seal(cardId, detail);
    const at = new Date().toISOString();
    const bin = cardId.slice(0, 6);
    const r = await this.commits.write(() =>
      table === 'purchase'
        ? this.ins.purchase.run(cardId, bin, kind, 'started', at, sealed)
        : table === 'load'
          ? this.ins.load.run(cardId, bin, 'started', at, sealed)
          : this.ins.recredit.run(cardId, bin, purchaseId ?? null, 'started', at, sealed),
    );
    return Number(r.lastInsertRowid);
  }

  /** Set a row's final status and sealed detail. */
  async finish(table: HistoryTable, id: number, cardId: string, status: string, detail: Record<string, unknown>): Promise<void> {
    const sealed = await this.seal(cardId, detail);
    await this.commits.write(() => this.upd[table].run(status, sealed, id, cardId));
  }

  /** Re-seal a row's detail, keeping its status (a flow recording what it learnt, e.g. the load's txn id). */
  async note(table: HistoryTable, id: number, cardId: string, status: string, detail: Record<string, unknown>): Promise<void> {
    await this.finish(table, id, cardId, status, detail);
  }

  /** Rows still 'started' (their flow was cut by a crash), opened in the HSM. */
  async unfinished(table: HistoryTable): Promise<Array<HistoryEntry & { cardId: string }>> {
    const rows = this.db.prepare(`SELECT * FROM ${TABLES[table]} WHERE status = 'started' ORDER BY id`).all() as DbRow[];
    const out: Array<HistoryEntry & { cardId: string }> = [];
    for (const row of rows) out.push({ ...(await this.decode(table, row)), cardId: row.card_id });
    return out;
  }

  async get(table: HistoryTable, id: number, cardId: string): Promise<HistoryEntry> {
    const row = this.one[table].get(id, cardId) as DbRow | undefined;
    if (!row) throw new OpalError('OPAL_CARD_NOT_FOUND', `no ${table} ${id} on this card`);
    return this.decode(table, row);
  }

  /** The newest rows of each table for one card (in its BIN partition), opened in the HSM. */
  async recent(cardId: string, bin: string, limit = 50): Promise<Record<HistoryTable, HistoryEntry[]>> {
    const out = { purchase: [], load: [], recredit: [] } as Record<HistoryTable, HistoryEntry[]>;
    for (const table of Object.keys(TABLES) as HistoryTable[]) {
      for (const row of this.list[table].all(cardId, bin, limit) as DbRow[]) out[table].push(await this.decode(table, row));
    }
    return out;
  }

  /** Is a re-credit already recorded for this purchase? */
  recreditOf(purchaseId: number): { id: number; status: string } | undefined {
    return this.db.prepare("SELECT id, status FROM opal_recredits WHERE purchase_id = ? AND status != 'failed'").get(purchaseId) as { id: number; status: string } | undefined;
  }

  private async decode(table: HistoryTable, row: DbRow): Promise<HistoryEntry> {
    const plain = await this.ops.openRecord(row.card_id, row.sealed);
    return { table, id: row.id, kind: row.kind ?? table, status: row.status, at: row.at, detail: JSON.parse(plain.toString('utf8')) as Record<string, unknown> };
  }

  private seal(cardId: string, detail: Record<string, unknown>): Promise<Buffer> {
    return this.ops.sealRecord(cardId, Buffer.from(JSON.stringify(detail), 'utf8'));
  }
}

interface DbRow {
  id: number;
  card_id: string;
  kind?: string;
  status: string;
  at: string;
  sealed: Buffer;
}
