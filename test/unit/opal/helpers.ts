// Shared helpers for the OPAL unit suites: an in-memory software HSM holding the TEST issuer masters and the
// OPAL record keys (hsm init's initKeys), a SQLite OPAL store in a temp directory, and virtual cards issued from
// the fixture profiles.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { paymentOps, type PaymentOps } from '../../../hsm-bridge/payment.ts';
import { SoftwareHsm } from '../../../hsm-bridge/software/software-hsm.ts';
import { initKeys } from '../../../src/cli/commands/hsm-init.ts';
import { openSqlite, type SqliteDatabase } from '../../../src/store/sqlite.ts';
import { OPAL_COMPONENT, OPAL_MIGRATIONS } from '../../../src/opal/schema.ts';
import { VirtualCardStore, type CardStoreOptions } from '../../../src/opal/card-store.ts';
import { issuePurseCard, type PurseProfile } from '../../../card-applet-sim/applets/purse/issuing.ts';
import { CARD_PROFILES, KEYS } from '../psam/helpers.ts';

export interface OpalHsm {
  hsm: SoftwareHsm;
  ops: PaymentOps;
}

/** An in-memory software HSM with the TEST masters and the record keys, for the enclosing describe. */
export function useOpalHsm(): () => OpalHsm {
  let h: OpalHsm | undefined;
  beforeAll(async () => {
    const hsm = SoftwareHsm.inMemory();
    await hsm.open();
    await initKeys(hsm, KEYS, true);
    h = { hsm, ops: paymentOps(hsm) };
  });
  afterAll(async () => h?.hsm.close());
  return () => {
    if (!h) throw new Error('useOpalHsm: opened in beforeAll; use it inside a test');
    return h;
  };
}

/** A temp directory removed after the enclosing describe. */
export function useTempDir(prefix = 'purselab-opal-'): () => string {
  let dir: string | undefined;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), prefix));
  });
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });
  return () => dir!;
}

export function openOpalDb(path: string): SqliteDatabase {
  return openSqlite(path, { component: OPAL_COMPONENT, migrations: OPAL_MIGRATIONS });
}

export function newStore(db: SqliteDatabase, ops: PaymentOps, extra: Partial<CardStoreOptions> = {}): VirtualCardStore {
  return new VirtualCardStore({ db, ops, ...extra });
}

let nextPurse = 1000;
/** Issue a purse card (fixture profile, TEST keys) with a fresh purse number and store it as a virtual card. */
export async function storeNewCard(store: VirtualCardStore, balance = 10_000, profile: PurseProfile = CARD_PROFILES.aes): Promise<string> {
  const issued = issuePurseCard(profile, KEYS, { balance, purseNumber: String(nextPurse++).padStart(10, '0') });
  await store.create(issued.cardId, issued.card);
  return issued.cardId;
}
