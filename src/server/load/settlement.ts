// The load server's settlement log as totals, and the issuer's float position built on it
// (docs/bank-and-load-server.md "Conservation"). Every load that ends 'loaded' is logged once in
// load_settlements (txnId, bank id, value) in the transaction that makes it final: the sum per bank and
// currency is the e-value the issuer has issued onto cards through that bank, which it owes the cardholders
// and for which the bank holds the money in the issuer's float account. Read-only: `readSettlementTotals`
// opens the database file without writing (also while the load server runs, or after it was killed).

import Database from 'better-sqlite3';
import type { SqliteDatabase } from '../../store/sqlite.ts';

export interface SettlementTotal {
  readonly bankId: string;
  readonly currency: number;
  readonly exponent: number;
  /** Loads settled. */
  readonly count: number;
  /** Their value in minor units: e-value issued onto cards through this bank. */
  readonly amount: number;
}

const TOTALS_SQL = `SELECT bank_id, currency, exponent, COUNT(*) AS n, COALESCE(SUM(amount), 0) AS amount
  FROM load_settlements GROUP BY bank_id, currency, exponent ORDER BY bank_id, currency, exponent`;

/** Settlement totals per bank, currency and exponent from an open load store database. */
export function settlementTotalsOf(db: SqliteDatabase): SettlementTotal[] {
  const rows = db.prepare(TOTALS_SQL).all() as { bank_id: string; currency: number; exponent: number; n: number; amount: number }[];
  return rows.map((r) => ({ bankId: r.bank_id, currency: r.currency, exponent: r.exponent, count: r.n, amount: r.amount }));
}

/** The same, from the load server's database file, opened read-only. */
export function readSettlementTotals(dbPath: string): SettlementTotal[] {
  const db = new Database(dbPath, { readonly: true, fileMustExist: true });
  try {
    return settlementTotalsOf(db);
  } finally {
    db.close();
  }
}

/** E-value issued through `bankId` (in `currency` when given) according to the settlement log. */
export function issuedValue(totals: readonly SettlementTotal[], bankId: string, currency?: number): number {
  return totals.filter((t) => t.bankId === bankId && (currency === undefined || t.currency === currency)).reduce((s, t) => s + t.amount, 0);
}

/**
 * The issuer's net float position with one bank: the money in the bank's float account minus the e-value the
 * issuer has issued onto cards through that bank (its own settlement log, not the cards). A load moves X from a
 * customer account into the float account and X onto a card, and settles X: customers + cards + issuer float
 * stays constant exactly when money is conserved and every credited card is in the settlement log.
 */
export function issuerFloat(floatAccountBalance: number, issued: number): number {
  return floatAccountBalance - issued;
}
