// The conservation check of every load test (docs/bank-and-load-server.md "Conservation"), shared by the
// in-process world (harness.ts) and the multi-process rig world (e2e-world.ts):
//   money:   customer accounts + float account                         constant (money moves, never appears)
//   value:   customer accounts + card balances                         constant (the card gains what the account lost)
//   total:   customer accounts + card balances + issuer float          constant (the invariant, literally)
// where issuer float = float account - e-value issued onto cards according to the load server's settlement log
// (src/server/load/settlement.ts), never computed from the cards.

import { expect } from 'vitest';
import { issuedValue, issuerFloat, type SettlementTotal } from '../../../src/server/load/settlement.ts';

export interface LedgerTotals {
  readonly customers: number;
  /** Money in the bank's float account for the issuer. */
  readonly float: number;
  /** Card balances (the world's one card). */
  readonly card: number;
  /** E-value issued through this bank according to the load server's settlement log. */
  readonly issued: number;
  readonly issuerFloat: number;
  readonly money: number;
  readonly value: number;
  /** customers + cards + issuer float. */
  readonly total: number;
  /** Holds still 'held'. */
  readonly held: number;
}

export function ledgerTotals(o: { customers: number; float: number; card: number; settlements: readonly SettlementTotal[]; bankId: string; currency: number; held: number }): LedgerTotals {
  const issued = issuedValue(o.settlements, o.bankId, o.currency);
  const f = issuerFloat(o.float, issued);
  return {
    customers: o.customers,
    float: o.float,
    card: o.card,
    issued,
    issuerFloat: f,
    money: o.customers + o.float,
    value: o.customers + o.card,
    total: o.customers + o.card + f,
    held: o.held,
  };
}

/** Everything conserved since `start`; `loaded` = value that went from the account onto the card; no hold left held. */
export function expectConserved(start: LedgerTotals, now: LedgerTotals, loaded: number): void {
  expect(now.total, 'customer accounts + card balances + issuer float').toBe(start.total);
  expect(now.money, 'customer accounts + float account').toBe(start.money);
  expect(now.value, 'customer accounts + card balances').toBe(start.value);
  expect(now.card - start.card, 'card balance change').toBe(loaded);
  expect(now.float - start.float, 'float account change').toBe(loaded);
  expect(now.issued - start.issued, 'settled value').toBe(loaded);
  expect(now.held, 'holds left held').toBe(0);
}
