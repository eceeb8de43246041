// The payment store on SQLite: schema migrations (a database written by migration 1 is brought to the current
// schema with its events kept in order; the in-flight / unconfirmed queries use the partial indexes) and group
// commit (writes of one event-loop turn share a transaction; a failing one undoes only itself).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { PAYMENT_MIGRATIONS, SqlitePaymentStore } from '../../../src/server/payment/store-sqlite.ts';
import { DuplicateTransactionError } from '../../../src/server/payment/store.ts';
import { openSqlite } from '../../../src/store/sqlite.ts';

const dirs: string[] = [];
afterEach(() => dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true })));
const dbPath = () => {
  const d = mkdtempSync(join(tmpdir(), 'purselab-paystore-'));
  dirs.push(d);
  return join(d, 'payment.db');
};

const payment = (n: number) => ({
  paymentId: `pay_${String(n).padStart(4, '0')}`,
  merchantId: 'SHOP',
  txnId: `T${n}`,
  kind: 'purchase' as const,
  variant: 'standard' as const,
  encrypted: false,
  amount: 100 + n,
  currency: 978,
  exponent: 2,
  cardId: '9990010000000017',
  cardCounter: n,
  startup: '00',
  etsk: null,
});

describe('payment store migrations', () => {
  it('upgrades a version-1 database: events kept with their ids and order, new ids follow on', async () => {
    const path = dbPath();
    const v1 = openSqlite(path, { component: 'payment', migrations: PAYMENT_MIGRATIONS.slice(0, 1) });
    v1.prepare(`INSERT INTO payments (payment_id, merchant_id, txn_id, kind, variant, encrypted, amount, currency, exponent, state, created_at, updated_at)
      VALUES ('pay_old', 'SHOP', 'T-old', 'purchase', 'standard', 0, 5, 978, 2, 'debit-issued', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z')`).run();
    const ev = v1.prepare('INSERT INTO payment_events (payment_id, at, type, detail) VALUES (?, ?, ?, ?)');
    ev.run('pay_old', '2026-01-01T00:00:00Z', 'draw-received', '{}');
    ev.run('pay_old', '2026-01-01T00:00:01Z', 'debit-issued', '{"state":"debit-issued"}');
    v1.close();

    const store = new SqlitePaymentStore(path);
    const version = store.db.prepare("SELECT MAX(version) AS v FROM schema_migrations WHERE component = 'payment'").get() as { v: number };
    expect(version.v).toBe(PAYMENT_MIGRATIONS.length);
    const indexes = (store.db.prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name IN ('payments', 'payment_events')").all() as { name: string }[]).map((r) => r.name);
    expect(indexes).toEqual(expect.arrayContaining(['payments_open', 'payments_unconfirmed', 'payment_events_payment']));
    expect(indexes).not.toContain('payments_state');
    const old = await store.events('pay_old');
    expect(old.map((e) => [e.id, e.type])).toEqual([
      [1, 'draw-received'],
      [2, 'debit-issued'],
    ]);
    await store.logEvent('pay_old', 'after-upgrade');
    expect((await store.events('pay_old')).map((e) => e.id)).toEqual([1, 2, 3]);
    expect((await store.listByState(['debit-issued'])).map((p) => p.paymentId)).toEqual(['pay_old']);
    await store.close();
  });

  it('in-flight and unconfirmed lists follow the state through completion', async () => {
    const store = new SqlitePaymentStore(dbPath());
    await store.insertReceived(payment(1), {});
    await store.insertReceived(payment(2), {});
    expect((await store.listByState(['received'])).map((p) => p.paymentId)).toEqual(['pay_0001', 'pay_0002']);
    await store.transition('pay_0001', ['received'], 'debit-issued', { psamId: 'P1', psamTxn: 1 }, 'debit-issued');
    await store.transition('pay_0001', ['debit-issued'], 'debit-response-received', { debitResponse: 'AA' }, 'debit-response-received');
    await store.transition('pay_0001', ['debit-response-received'], 'completed', { psamConfirmed: false }, 'completed');
    expect(await store.listByState(['received', 'debit-issued', 'debit-response-received'])).toHaveLength(1);
    expect((await store.listByState(['completed'])).map((p) => p.paymentId)).toEqual(['pay_0001']);
    expect((await store.listUnconfirmed()).map((p) => p.paymentId)).toEqual(['pay_0001']);
    await store.patch('pay_0001', { psamConfirmed: true }, 'psam-confirmed');
    expect(await store.listUnconfirmed()).toEqual([]);
    const plan = (sql: string) => (store.db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all() as { detail: string }[]).map((r) => r.detail).join(' ');
    expect(plan("SELECT * FROM payments WHERE state NOT IN ('completed', 'failed') AND state IN ('received')")).toContain('payments_open');
    expect(plan("SELECT * FROM payments WHERE state = 'completed' AND psam_confirmed = 0")).toContain('payments_unconfirmed');
    await store.close();
  });

  it('group commit: writes of one turn share a transaction; a failing write undoes only itself', async () => {
    const store = new SqlitePaymentStore(dbPath());
    await store.insertReceived(payment(1), {});
    // Same turn: a new payment, a replay of payment 1's transaction id (UNIQUE violation), another new one,
    // and a transition of payment 1.
    const results = await Promise.allSettled([
      store.insertReceived(payment(2), { n: 2 }),
      store.insertReceived({ ...payment(9), txnId: 'T1' }, { n: 9 }),
      store.insertReceived(payment(3), { n: 3 }),
      store.transition('pay_0001', ['received'], 'debit-issued', { psamId: 'P1', psamTxn: 1 }, 'debit-issued'),
    ]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled', 'fulfilled']);
    expect((results[1] as PromiseRejectedResult).reason).toBeInstanceOf(DuplicateTransactionError);
    expect((results[3] as PromiseFulfilledResult<boolean>).value).toBe(true);
    expect(await store.get('pay_0009')).toBeUndefined();
    expect((await store.events('pay_0009')).length).toBe(0);
    expect((await store.get('pay_0002'))?.state).toBe('received');
    expect((await store.get('pay_0003'))?.state).toBe('received');
    expect((await store.get('pay_0001'))?.state).toBe('debit-issued');
    expect((await store.events('pay_0002')).map((e) => e.type)).toEqual(['draw-received']);
    // A group without failures: every write is there, each caller got its own result.
    const ok = await Promise.all([store.transition('pay_0002', ['received'], 'failed', { reason: 'X' }, 'failed'), store.transition('pay_0003', ['debit-issued'], 'failed', { reason: 'X' }, 'failed')]);
    expect(ok).toEqual([true, false]);
    expect((await store.get('pay_0003'))?.state).toBe('received');
    await store.close();
  });
});
