// Batches for the concentration point (seed 003 L230-237, docs/psam-applet.md CLOSE BATCH): close each PSAM's
// open batch, read its records, check the batch MAC with the acquirer key set (when configured) and the totals
// against the payment server's own ledger, export a collection file, and (with the acquirer's admin key)
// acknowledge it with PURGE BATCH so the PSAM can close the next one. A closed batch that was not purged is
// exported again instead of closing a new one.

import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { findMaster, loadIssuerKeySet, type IssuerKeySet } from '../../crypto/key-set.ts';
import { type BatchSummary } from '../../crypto/purse-apdu.ts';
import { BatchRecordStatus, batchRecordBytes, derivePsamKey, psamAdminMac, totalsEntryBytes, TxType, type BatchRecord } from '../../crypto/purse-mac.ts';
import { maskCardId } from '../../terminal/amount.ts';
import { closeBatch, purgeBatch, readBatch, readPsamData, rereadClosedBatch, verifyClosedBatch } from '../../terminal/psam.ts';
import type { PsamPool } from './psam-pool.ts';
import type { PaymentStore } from './store.ts';

export interface CollectionRecord {
  readonly psamTxn: number;
  readonly txType: number;
  readonly status: 'confirmed' | 'unconfirmed';
  readonly card: string;
  readonly newCounter: number;
  readonly amount: number;
  readonly currency: number;
  readonly exponent: number;
  readonly date: string;
  readonly time: string;
  /** The payment server's payment for this record, and its state. */
  readonly paymentId: string | null;
  readonly paymentState: string | null;
  /** The record exactly as the PSAM MACed it (hex): the concentration point re-checks the MAC over these. */
  readonly raw: string;
}

export interface Collection {
  readonly format: 'purselab-collection-v1';
  readonly psamId: string;
  readonly batchNumber: number;
  readonly closedAt: string;
  readonly recordCount: number;
  readonly totals: { txType: number; currency: number; exponent: number; count: number; sum: number; unconfirmedCount: number; unconfirmedSum: number; raw: string }[];
  readonly mac: string;
  readonly alg: number;
  readonly batchKeyVersion: number;
  /** true/false with an acquirer key set in the configuration; null without one (the concentration point checks). */
  readonly macVerified: boolean | null;
  /** Confirmed purchase/points records vs the ledger of approved payments. */
  readonly ledger: { readonly confirmedSum: number; readonly ledgerSum: number; readonly matches: boolean; readonly mismatches: string[] };
  readonly records: CollectionRecord[];
}

export interface BatchOutcome {
  readonly psamId: string;
  readonly status: 'exported' | 'awaiting-purge' | 'skipped';
  readonly message: string;
  readonly batchId?: number;
  readonly batchNumber?: number;
  readonly file?: string | null;
  readonly purged?: boolean;
  readonly collection?: Collection;
}

export interface BatchDeps {
  readonly pool: PsamPool;
  readonly store: PaymentStore;
  /** Acquirer key set file (batch and admin masters), or undefined. */
  readonly acquirerKeys: string | undefined;
  /** Directory for collection files (undefined: no files, the HTTP endpoint only). */
  readonly batchDir: string | undefined;
  readonly acquireMs: number;
}

/** Compare a closed batch with the ledger: every confirmed purchase/points record must be an approved payment of the same amount, and nothing else. */
async function checkLedger(store: PaymentStore, psamId: string, records: readonly BatchRecord[]) {
  const mismatches: string[] = [];
  const matched: string[] = [];
  let confirmedSum = 0;
  let ledgerSum = 0;
  const ledger = new Map((await store.ledger({ psamId })).map((l) => [l.psamTxn, l]));
  const out: { rec: BatchRecord; paymentId: string | null; state: string | null }[] = [];
  for (const r of records) {
    const p = await store.findByPsamTxn(psamId, r.psamTxn);
    out.push({ rec: r, paymentId: p?.paymentId ?? null, state: p?.state ?? null });
    const l = ledger.get(r.psamTxn);
    const confirmed = r.status === BatchRecordStatus.CONFIRMED;
    if (confirmed && r.txType !== TxType.AUTHENTICATION) confirmedSum += r.amount;
    if (l) {
      ledgerSum += l.amount;
      matched.push(l.paymentId);
      if (!confirmed) mismatches.push(`PSAM txn ${r.psamTxn}: approved payment ${l.paymentId} but the PSAM record is unconfirmed`);
      if (l.amount !== r.amount || l.currency !== r.currency || l.exponent !== r.exponent) mismatches.push(`PSAM txn ${r.psamTxn}: the ledger says ${l.amount}/${l.currency}/${l.exponent}, the PSAM ${r.amount}/${r.currency}/${r.exponent}`);
    } else if (confirmed && r.txType !== TxType.AUTHENTICATION) {
      mismatches.push(`PSAM txn ${r.psamTxn}: confirmed ${r.amount} with no approved payment in the ledger${p ? ` (payment ${p.paymentId} is ${p.state})` : ''}`);
    }
  }
  if (confirmedSum !== ledgerSum && mismatches.length === 0) mismatches.push(`confirmed sum ${confirmedSum} != ledger sum ${ledgerSum}`);
  return { confirmedSum, ledgerSum, matches: mismatches.length === 0, mismatches, matched, out };
}

function keyFor(keys: IssuerKeySet | undefined, usage: 'batch' | 'admin', alg: number, version: number, psamId: string): Buffer | undefined {
  if (!keys) return undefined;
  const m = findMaster(keys, usage, alg, version);
  return m ? derivePsamKey(m.key, psamId, alg) : undefined;
}

/** Close (or re-export) the batch of every PSAM in service. */
export async function closeBatches(deps: BatchDeps, options: { purge?: boolean } = {}): Promise<BatchOutcome[]> {
  const keys = deps.acquirerKeys ? loadIssuerKeySet(deps.acquirerKeys) : undefined;
  const results: BatchOutcome[] = [];
  for (const psamId of deps.pool.psamIds()) {
    const lease = await deps.pool.acquire(`batch:${psamId}`, { psamId, timeoutMs: deps.acquireMs });
    try {
      results.push(await deps.pool.use(lease, (ch) => closeOne(deps, ch, psamId, keys, options.purge ?? keys !== undefined)));
    } catch (e) {
      results.push({ psamId, status: 'skipped', message: (e as Error).message });
    } finally {
      deps.pool.release(lease);
    }
  }
  return results;
}

async function closeOne(deps: BatchDeps, ch: import('../../transport/channel.ts').CardChannel, psamId: string, keys: IssuerKeySet | undefined, purge: boolean): Promise<BatchOutcome> {
  const info = await readPsamData(ch);
  const adminKey = keyFor(keys, 'admin', info.alg, info.adminKeyVersion, psamId);
  if (info.closedBatchNumber !== 0) {
    const done = await deps.store.findBatch(psamId, info.closedBatchNumber);
    if (done) {
      if (!purge || !adminKey) return { psamId, status: 'awaiting-purge', batchNumber: info.closedBatchNumber, message: `batch ${info.closedBatchNumber} was exported (id ${done.id}) and awaits the concentration point's acknowledgement (PURGE BATCH)`, batchId: done.id };
      await purgeBatch(ch, info.closedBatchNumber, (f) => psamAdminMac(adminKey, f));
      return closeOne(deps, ch, psamId, keys, purge);
    }
  }
  const summary: BatchSummary = info.closedBatchNumber !== 0 ? await rereadClosedBatch(ch) : await closeBatch(ch);
  const records = await readBatch(ch, 'closed');
  const batchKey = keyFor(keys, 'batch', info.alg, info.batchKeyVersion, psamId);
  const macVerified = batchKey ? verifyClosedBatch(summary, records, batchKey, info.alg, info.batchKeyVersion) : null;
  const check = await checkLedger(deps.store, psamId, records);
  const closedAt = new Date().toISOString();
  const collection: Collection = {
    format: 'purselab-collection-v1',
    psamId,
    batchNumber: summary.batchNumber,
    closedAt,
    recordCount: summary.recordCount,
    totals: summary.totals.map((t) => ({ ...t, raw: totalsEntryBytes(t).toString('hex').toUpperCase() })),
    mac: summary.mac.toString('hex').toUpperCase(),
    alg: info.alg,
    batchKeyVersion: info.batchKeyVersion,
    macVerified,
    ledger: { confirmedSum: check.confirmedSum, ledgerSum: check.ledgerSum, matches: check.matches, mismatches: check.mismatches },
    records: check.out.map(({ rec, paymentId, state }) => ({
      psamTxn: rec.psamTxn,
      txType: rec.txType,
      status: rec.status === BatchRecordStatus.CONFIRMED ? 'confirmed' : 'unconfirmed',
      card: maskCardId(rec.cardId),
      newCounter: rec.newCounter,
      amount: rec.amount,
      currency: rec.currency,
      exponent: rec.exponent,
      date: rec.date,
      time: rec.time,
      paymentId,
      paymentState: state,
      raw: batchRecordBytes(rec).toString('hex').toUpperCase(),
    })),
  };
  let file: string | null = null;
  if (deps.batchDir) {
    mkdirSync(deps.batchDir, { recursive: true });
    file = join(deps.batchDir, `collection-${psamId}-${summary.batchNumber}.json`);
    writeFileSync(`${file}.tmp`, `${JSON.stringify(collection, null, 2)}\n`);
    renameSync(`${file}.tmp`, file);
  }
  const batchId = await deps.store.insertBatch(
    { psamId, batchNumber: summary.batchNumber, recordCount: summary.recordCount, confirmedSum: check.confirmedSum, ledgerSum: check.ledgerSum, macVerified, ledgerMatches: check.matches, file, collectionJson: JSON.stringify(collection), closedAt },
    check.matched,
  );
  let purged = false;
  if (purge && adminKey) {
    await purgeBatch(ch, summary.batchNumber, (f) => psamAdminMac(adminKey, f));
    purged = true;
  }
  return {
    psamId,
    status: 'exported',
    batchId,
    batchNumber: summary.batchNumber,
    file,
    purged,
    collection,
    message: `batch ${summary.batchNumber}: ${summary.recordCount} records, confirmed ${check.confirmedSum}, ledger ${check.ledgerSum}${check.matches ? ' (match)' : ` (MISMATCH: ${check.mismatches.length})`}, MAC ${macVerified === null ? 'not checked (no acquirer keys)' : macVerified ? 'verified' : 'WRONG'}${purged ? ', purged' : ''}`,
  };
}
