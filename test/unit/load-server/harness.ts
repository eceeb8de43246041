// A whole load world in one process for the load tests: the bank server and the load server on loopback HTTP
// (port 0), SQLite stores (files in a temp dir, so a "restart" reopens them), the issuer on the software HSM
// with the TEST masters (or any LoadIssuer), and a purse card on the in-process emulator. `totals()` feeds the
// conservation check (conservation.ts): customer accounts, float account, card balance, the load server's
// settled value (issuer float = float account - settled), and holds by state.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { listen } from '../../../src/server/app.ts';
import { createBankApp } from '../../../src/server/bank/app.ts';
import { loadBankConfig, type BankConfig } from '../../../src/server/bank/config.ts';
import { BankService } from '../../../src/server/bank/service.ts';
import { SqliteBankStore } from '../../../src/server/bank/store.ts';
import { createLoadApp } from '../../../src/server/load/app.ts';
import { loadLoadConfig } from '../../../src/server/load/config.ts';
import { LoadService, type CrashPoint } from '../../../src/server/load/service.ts';
import { SqliteLoadStore } from '../../../src/server/load/store.ts';
import { RecreditService } from '../../../src/server/load/recredit.ts';
import type { LoadIssuer } from '../../../src/terminal/load.ts';
import { readPurse } from '../../../src/terminal/purse.ts';
import { CARD_PROFILES, newCard, repoPath, type TestCard } from '../psam/helpers.ts';
import { ledgerTotals, type LedgerTotals } from './conservation.ts';

export const BANK_CONFIG = loadBankConfig(repoPath('fixtures/bank/demo-bank.json'));
export const LOAD_CONFIG = loadLoadConfig(repoPath('fixtures/load/demo-load.json'));
export const ALICE = { user: 'alice', password: 'alice-demo-pw' };

export class Crash extends Error {
  constructor(readonly point: CrashPoint) {
    super(`crash at ${point}`);
  }
}

export interface LoadWorld {
  readonly dir: string;
  bankUrl: string;
  loadUrl: string;
  bank: BankService;
  bankStore: SqliteBankStore;
  loadService: LoadService;
  loadStore: SqliteLoadStore;
  card: TestCard;
  /** Set to make the load server "crash" (throw, close its store without finishing) at that point. */
  crashAt: CrashPoint | undefined;
  /** Reopen the load server on its SQLite file (a restart) on the same port. */
  restartLoad(): Promise<void>;
  totals(): Promise<LedgerTotals & { holds: Record<string, number> }>;
  close(): Promise<void>;
}

export async function startWorld(issuer: LoadIssuer, options: { cardBalance?: number; bankConfig?: Partial<BankConfig> } = {}): Promise<LoadWorld> {
  const dir = mkdtempSync(join(tmpdir(), 'purselab-load-'));
  const cfg: BankConfig = { ...BANK_CONFIG, ...options.bankConfig };
  let loadApp: FastifyInstance;
  let port = 0;
  const w = {
    dir,
    crashAt: undefined as CrashPoint | undefined,
    card: newCard(CARD_PROFILES.aes, options.cardBalance ?? 1000),
  } as LoadWorld;
  const openLoad = async () => {
    w.loadStore = new SqliteLoadStore(join(dir, 'load.db'));
    w.loadService = new LoadService({
      store: w.loadStore,
      issuer,
      config: LOAD_CONFIG,
      crashAt: (p) => {
        if (w.crashAt === p) {
          w.crashAt = undefined;
          throw new Crash(p);
        }
      },
    });
    const recredit = new RecreditService({ store: w.loadStore, issuer, issuerLinkKey: LOAD_CONFIG.issuerLinkKey! });
    loadApp = createLoadApp({ service: w.loadService, recredit, logLevel: false });
    w.loadUrl = await listen(loadApp, '127.0.0.1', port);
    port = Number(new URL(w.loadUrl).port);
  };
  await openLoad();
  w.restartLoad = async () => {
    await loadApp.close();
    await w.loadStore.close();
    await openLoad();
  };
  w.bankStore = new SqliteBankStore(join(dir, 'bank.db'));
  w.bank = new BankService({ store: w.bankStore, config: cfg, loadServer: w.loadUrl });
  await w.bank.seed();
  const bankApp = createBankApp({ service: w.bank, sweepIntervalSeconds: 0, logLevel: false });
  w.bankUrl = await listen(bankApp, '127.0.0.1', 0);
  w.totals = async () => {
    const t = await w.bankStore.totals(cfg.floatAccount.accountId);
    if (!w.card.card.isPowered) w.card.card.powerOn();
    const p = await readPurse(w.card.ch);
    const settlements = await w.loadStore.settlementTotals();
    return { ...ledgerTotals({ customers: t.customers, float: t.float, card: p.balance, settlements, bankId: cfg.bankId, currency: cfg.currency, held: t.holds.held }), holds: t.holds };
  };
  w.close = async () => {
    await bankApp.close();
    await loadApp.close();
    await w.bankStore.close();
    await w.loadStore.close();
    rmSync(dir, { recursive: true, force: true });
  };
  return w;
}
