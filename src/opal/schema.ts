// The OPAL server's SQLite schema (component 'opal'): virtual cards (sealed records with a version column),
// users (HSM-keyed index of the user id, scrypt password hash, lockout counters, sealed profile), login
// sessions (SHA-256 of the token only), and the history tables (purchase, load, re-credit) whose details are
// sealed too. Nothing here holds a balance, a key, a password or a funding account in clear.

import type { Migration } from '../store/sqlite.ts';

export const OPAL_COMPONENT = 'opal';

export const OPAL_MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'virtual cards, users, sessions, history',
    up: `
      CREATE TABLE opal_cards (
        card_id TEXT PRIMARY KEY CHECK (length(card_id) = 16),
        bin TEXT NOT NULL CHECK (length(bin) = 6 AND substr(card_id, 1, 6) = bin),
        version INTEGER NOT NULL CHECK (version >= 1),
        sealed BLOB NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
      );
      CREATE INDEX opal_cards_bin ON opal_cards (bin);
      CREATE TABLE opal_users (
        user_ref TEXT PRIMARY KEY,
        bin TEXT NOT NULL,
        card_id TEXT NOT NULL UNIQUE REFERENCES opal_cards (card_id),
        password_hash TEXT NOT NULL,
        otp_hash TEXT,
        must_change INTEGER NOT NULL DEFAULT 1,
        failed_logins INTEGER NOT NULL DEFAULT 0,
        locked_until INTEGER NOT NULL DEFAULT 0,
        profile BLOB NOT NULL,
        created_at TEXT NOT NULL
      );
      CREATE TABLE opal_sessions (
        token_hash TEXT PRIMARY KEY,
        user_ref TEXT NOT NULL REFERENCES opal_users (user_ref) ON DELETE CASCADE,
        expires_at INTEGER NOT NULL
      );
      CREATE TABLE opal_purchases (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        card_id TEXT NOT NULL REFERENCES opal_cards (card_id),
        bin TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('purchase', 'authentication', 'points')),
        status TEXT NOT NULL,
        at TEXT NOT NULL,
        sealed BLOB NOT NULL
      );
      CREATE INDEX opal_purchases_card ON opal_purchases (card_id, id);
      CREATE TABLE opal_loads (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        card_id TEXT NOT NULL REFERENCES opal_cards (card_id),
        bin TEXT NOT NULL,
        status TEXT NOT NULL,
        at TEXT NOT NULL,
        sealed BLOB NOT NULL
      );
      CREATE INDEX opal_loads_card ON opal_loads (card_id, id);
      CREATE TABLE opal_recredits (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        card_id TEXT NOT NULL REFERENCES opal_cards (card_id),
        bin TEXT NOT NULL,
        purchase_id INTEGER REFERENCES opal_purchases (id),
        status TEXT NOT NULL,
        at TEXT NOT NULL,
        sealed BLOB NOT NULL
      );
      CREATE INDEX opal_recredits_card ON opal_recredits (card_id, id);
    `,
  },
  {
    version: 2,
    name: 'recredit claims of the payment server (one re-credit per payment id)',
    up: `
      CREATE TABLE opal_recredit_claims (
        payment_id TEXT PRIMARY KEY,
        recredit_id INTEGER NOT NULL REFERENCES opal_recredits (id)
      );
    `,
  },
];
