// Group commit for a SQLite store: the writes asked for in the same turn of the event loop (the concurrent
// requests a server is handling) are applied in one transaction, and every caller's promise settles only after
// that COMMIT. So "saved before the next step" still holds for each caller (it cannot go on until its write is
// as durable as the database's synchronous setting makes it), while N concurrent writes pay for one commit
// (the WAL append of the pages they dirtied, written once) instead of N.
//
// When one write of a group throws (a replayed request's UNIQUE violation, say), the group is rolled back whole
// and redone with each write in its own SAVEPOINT, so the failing write undoes only itself and rejects its own
// caller; a write is plain SQL on this connection, so running it again after the rollback gives what running
// it once would have. Writes must not await inside `run`: it runs synchronously within the transaction.

import type { SqliteDatabase } from './sqlite.ts';

interface QueuedWrite {
  readonly run: () => unknown;
  readonly resolve: (v: unknown) => void;
  readonly reject: (e: unknown) => void;
}

export class GroupCommit {
  /** BEGIN/COMMIT at the top level, a SAVEPOINT when nested (better-sqlite3's transaction wrapper). */
  private readonly inTransaction: <T>(fn: () => T) => T;
  private queue: QueuedWrite[] = [];
  private flushScheduled = false;

  constructor(
    private readonly db: SqliteDatabase,
    /** For the error when the store is closed ('the payment store'). */
    private readonly what: string,
  ) {
    const tx = db.transaction((fn: () => unknown) => fn());
    this.inTransaction = tx as <T>(fn: () => T) => T;
  }

  /** Run `run` in the next group's transaction; resolves with its result once that transaction has committed. */
  write<T>(run: () => T): Promise<T> {
    if (!this.db.open) return Promise.reject(new Error(`${this.what} is closed`));
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ run, resolve: resolve as (v: unknown) => void, reject });
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  /** Commit what is queued (its callers settle), then close the database: a store's close(). */
  closeDatabase(): void {
    this.flush();
    if (this.db.open) this.db.close();
  }

  /** Apply and commit every queued write now. */
  flush(): void {
    this.flushScheduled = false;
    const batch = this.queue;
    if (!batch.length) return;
    this.queue = [];
    if (!this.db.open) {
      for (const w of batch) w.reject(new Error(`${this.what} is closed`));
      return;
    }
    if (batch.length === 1) {
      const w = batch[0]!;
      let v: unknown;
      try {
        v = this.inTransaction(w.run);
      } catch (e) {
        w.reject(e);
        return;
      }
      w.resolve(v);
      return;
    }
    // Fast path: the whole group in one transaction without savepoints.
    let values: unknown[] | undefined;
    try {
      values = this.inTransaction(() => batch.map((w) => w.run()));
    } catch {
      values = undefined;
    }
    if (values) {
      batch.forEach((w, i) => w.resolve(values[i]));
      return;
    }
    // A write failed: redo the group with a SAVEPOINT per write.
    const outcomes: { ok: boolean; v: unknown }[] = [];
    try {
      this.inTransaction(() => {
        for (const w of batch) {
          try {
            outcomes.push({ ok: true, v: this.inTransaction(w.run) });
          } catch (e) {
            outcomes.push({ ok: false, v: e });
          }
        }
      });
    } catch (e) {
      for (const w of batch) w.reject(e); // the COMMIT itself failed: nothing of the group is saved
      return;
    }
    batch.forEach((w, i) => (outcomes[i]!.ok ? w.resolve(outcomes[i]!.v) : w.reject(outcomes[i]!.v)));
  }
}
