// GroupCommit (src/store/group-commit.ts) on a real SQLite database: the writes of one turn share one
// transaction, each caller settles with its own result after the commit, a failing write undoes only itself, and
// closeDatabase() commits what is queued before it closes.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { GroupCommit } from '../../../src/store/group-commit.ts';
import { openSqlite, type SqliteDatabase } from '../../../src/store/sqlite.ts';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const MIGRATIONS = [{ version: 1, name: 't', up: 'CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER NOT NULL)' }];

/** A database with one table, and a count of the top-level transactions run through it. */
function open() {
  const dir = mkdtempSync(join(tmpdir(), 'purselab-group-commit-'));
  dirs.push(dir);
  const path = join(dir, 'g.db');
  const db = openSqlite(path, { component: 'g', migrations: MIGRATIONS });
  const counted = { transactions: 0 };
  const proxy = new Proxy(db, {
    get(target, prop) {
      if (prop === 'transaction') {
        return (fn: (...a: unknown[]) => unknown) => {
          const tx = target.transaction(fn);
          return (...a: unknown[]) => {
            if (!target.inTransaction) counted.transactions++;
            return tx(...a);
          };
        };
      }
      const v = Reflect.get(target, prop) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  }) as SqliteDatabase;
  const insert = db.prepare('INSERT INTO t (k, v) VALUES (?, ?)');
  const rows = () => (db.prepare('SELECT k, v FROM t ORDER BY k').all() as { k: string; v: number }[]).map((r) => `${r.k}=${r.v}`);
  return { db, path, commits: new GroupCommit(proxy, 'the test store'), counted, insert, rows };
}

describe('GroupCommit', () => {
  it('runs the writes of one turn in one transaction and gives each caller its own result', async () => {
    const s = open();
    const results = await Promise.all([1, 2, 3, 4].map((i) => s.commits.write(() => Number(s.insert.run(`k${i}`, i).lastInsertRowid))));
    expect(results).toEqual([1, 2, 3, 4]);
    expect(s.counted.transactions).toBe(1);
    expect(s.rows()).toEqual(['k1=1', 'k2=2', 'k3=3', 'k4=4']);
    // The next turn is a transaction of its own.
    await s.commits.write(() => s.insert.run('k5', 5));
    expect(s.counted.transactions).toBe(2);
    s.db.close();
  });

  it('a caller is settled only once its write is committed', async () => {
    const s = open();
    let seenOutside: number | undefined;
    const p = s.commits.write(() => s.insert.run('a', 1)).then(() => {
      seenOutside = (s.db.prepare('SELECT COUNT(*) AS n FROM t').get() as { n: number }).n;
    });
    expect(s.rows()).toEqual([]); // nothing runs before the end of the turn
    await p;
    expect(seenOutside).toBe(1);
    expect(s.db.inTransaction).toBe(false);
    s.db.close();
  });

  it('a failing write rejects only its own caller and leaves nothing; the others are committed', async () => {
    const s = open();
    await s.commits.write(() => s.insert.run('dup', 0));
    const settled = await Promise.allSettled([
      s.commits.write(() => s.insert.run('x', 1)),
      s.commits.write(() => {
        s.insert.run('half', 2); // undone with the failing write below
        return s.insert.run('dup', 3); // UNIQUE violation
      }),
      s.commits.write(() => s.insert.run('y', 4)),
    ]);
    expect(settled.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect(String((settled[1] as PromiseRejectedResult).reason)).toMatch(/UNIQUE/);
    expect(s.rows()).toEqual(['dup=0', 'x=1', 'y=4']);
    s.db.close();
  });

  it('flush() commits the queued writes at once; a closed database refuses writes', async () => {
    const s = open();
    const p = s.commits.write(() => s.insert.run('q', 7));
    s.commits.flush();
    expect(s.rows()).toEqual(['q=7']);
    await p;
    s.db.close();
    await expect(s.commits.write(() => 1)).rejects.toThrow('the test store is closed');
  });

  it('closeDatabase() commits the queued writes, settles their callers, then closes the database', async () => {
    const s = open();
    const p = s.commits.write(() => Number(s.insert.run('c', 9).lastInsertRowid));
    s.commits.closeDatabase();
    expect(s.db.open).toBe(false);
    await expect(p).resolves.toBe(1);
    const again = openSqlite(s.path, { component: 'g', migrations: MIGRATIONS });
    expect(again.prepare('SELECT k, v FROM t').all()).toEqual([{ k: 'c', v: 9 }]);
    again.close();
    s.commits.closeDatabase(); // a second close is harmless
  });
});
