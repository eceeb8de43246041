// The embedded SQL store: open a SQLite file (better-sqlite3) in WAL mode and bring its schema up to date
// with numbered migrations, per component, in one transaction each. Every server's own store module
// (payment, merchant, bank, load, OPAL) builds on this and keeps its SQL to itself; the flows only see
// those modules' async interfaces, so a PostgreSQL implementation can replace them without touching a flow.
//
// Durability: WAL with synchronous=NORMAL survives a killed process (SIGKILL) without losing a committed
// transaction; only an OS crash or power cut can drop the last commits. PURSELAB_SQLITE_SYNC=full makes
// every commit fsync (durable across power loss, several times slower).

import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { PurselabError } from '../errors.ts';

export type SqliteDatabase = Database.Database;

export interface Migration {
  /** 1, 2, 3 ... in order, per component; never renumber or edit one that has shipped. */
  readonly version: number;
  readonly name: string;
  /** SQL (several statements allowed) or a function for data migrations. */
  readonly up: string | ((db: SqliteDatabase) => void);
}

export interface OpenSqliteOptions {
  /** Name of the schema owner ('payment', 'merchant', ...): migrations are tracked per component. */
  readonly component: string;
  readonly migrations: readonly Migration[];
  /** 'normal' (default) or 'full'; default from PURSELAB_SQLITE_SYNC. */
  readonly sync?: 'normal' | 'full';
}

export class StoreError extends PurselabError {}

/** ':memory:' or a file path (its directory is created). */
export function openSqlite(path: string, options: OpenSqliteOptions): SqliteDatabase {
  if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
  let db: SqliteDatabase;
  try {
    db = new Database(path);
  } catch (e) {
    throw new StoreError('STORE_OPEN', `cannot open the database ${path}: ${(e as Error).message}`, { cause: e });
  }
  const sync = options.sync ?? (process.env.PURSELAB_SQLITE_SYNC === 'full' ? 'full' : 'normal');
  db.pragma('journal_mode = WAL');
  db.pragma(`synchronous = ${sync === 'full' ? 'FULL' : 'NORMAL'}`);
  db.pragma('foreign_keys = ON');
  db.pragma('busy_timeout = 5000');
  migrate(db, options.component, options.migrations);
  return db;
}

/** Apply the component's migrations newer than the database's; refuse a database from a newer purselab. */
export function migrate(db: SqliteDatabase, component: string, migrations: readonly Migration[]): number {
  db.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
    component TEXT NOT NULL, version INTEGER NOT NULL, name TEXT NOT NULL, applied_at TEXT NOT NULL,
    PRIMARY KEY (component, version))`);
  migrations.forEach((m, i) => {
    if (m.version !== i + 1) throw new StoreError('STORE_MIGRATIONS', `${component} migration '${m.name}' has version ${m.version}, expected ${i + 1}`);
  });
  const row = db.prepare('SELECT MAX(version) AS v FROM schema_migrations WHERE component = ?').get(component) as { v: number | null };
  const current = row.v ?? 0;
  if (current > migrations.length) {
    throw new StoreError('STORE_TOO_NEW', `the ${component} schema in this database is version ${current}, this purselab knows ${migrations.length}: use a newer purselab`);
  }
  const record = db.prepare('INSERT INTO schema_migrations (component, version, name, applied_at) VALUES (?, ?, ?, ?)');
  let applied = 0;
  for (const m of migrations.slice(current)) {
    db.transaction(() => {
      if (typeof m.up === 'string') db.exec(m.up);
      else m.up(db);
      record.run(component, m.version, m.name, new Date().toISOString());
    })();
    applied++;
  }
  return applied;
}

/** The schema version of a component (0 when none of its migrations ran). */
export function schemaVersion(db: SqliteDatabase, component: string): number {
  const row = db.prepare('SELECT MAX(version) AS v FROM schema_migrations WHERE component = ?').get(component) as { v: number | null } | undefined;
  return row?.v ?? 0;
}
