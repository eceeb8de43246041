// `purselab payment report|recredit|batch`: the payment server operator's tools. report and recredit work on
// the database alone (the server may be down); batch asks a running server (--url) or opens the PSAM pool
// itself (--config, with the server stopped).

import { requestJson } from '../../server/http-client.ts';
import { closeBatches, type BatchOutcome } from '../../server/payment/batch.ts';
import { loadPaymentConfig } from '../../server/payment/config.ts';
import { PsamPool } from '../../server/payment/psam-pool.ts';
import { buildRecoveryReport, issueRecreditClaim, type RecoveryReport } from '../../server/payment/recovery.ts';
import { openPaymentStore } from '../../server/payment/store-sqlite.ts';
import { existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { showAmount } from '../../terminal/amount.ts';
import { emit, parseCommandArgs, refusePositionals, requireOption, UsageError, type CliCommand, type CliIo } from '../command.ts';

function dbOf(path: string | undefined): string {
  const db = requireOption(path, '--db PATH', 'the payment server\'s SQLite file');
  if (!existsSync(db)) throw new UsageError(`${db} does not exist`);
  return db;
}

function reportLines(r: RecoveryReport): string[] {
  const lines = [`payment report (${r.generatedAt}): ${Object.entries(r.counts).map(([k, v]) => `${k} ${v}`).join(', ') || 'no payments'}`];
  if (!r.entries.length) lines.push('  nothing to recover: every payment is completed or failed before a DEBIT');
  for (const e of r.entries) {
    lines.push(`  ${e.paymentId} ${e.merchantId}/${e.txnId} ${e.variant} ${e.state}${e.reason ? ` (${e.reason})` : ''}: ${showAmount(e.amount, e.currency, e.exponent, e.kind === 'points')}, card ${e.card ?? '?'} counter ${e.cardCounter ?? '?'}, PSAM ${e.psamId ?? '?'} txn ${e.psamTxn ?? '?'}`);
    lines.push(`      ${e.action}${e.recreditIssuedAt ? `; re-credit claim issued ${e.recreditIssuedAt}` : e.recreditEligible ? '; eligible for a re-credit claim (purselab payment recredit)' : ''}`);
  }
  if (r.unconfirmedPsamRecords) lines.push(`  ${r.unconfirmedPsamRecords} completed payment(s) wait to post their S3 to the PSAM`);
  if (r.recredits.length) lines.push(`  re-credit claims: ${r.recredits.length}, total ${r.recredits.reduce((a, x) => a + x.amount, 0)} minor units`);
  return lines;
}

export const paymentReportCommand: CliCommand = {
  name: 'payment report',
  summary: 'recovery report of a payment server database: debits without a result, stored S3s, re-credit claims',
  help: [
    'Usage: purselab payment report --db PATH [--json]',
    '',
    'Lists the payments that need attention: a DEBIT handed out with no result (debit-unknown), a card S3 stored',
    'but not yet verified by its PSAM, an S3 refused after the DEBIT; and the re-credit claims issued. Reads the',
    'database only (the server may be running or stopped). The same report: GET /v1/admin/recovery.',
    '',
    'Options:',
    '  --db PATH   the payment server\'s SQLite file',
    '  --json      machine-readable',
  ].join('\n'),
  async run(args, io) {
    const { values, positionals } = parseCommandArgs(args, { db: { type: 'string' }, json: { type: 'boolean', default: false } });
    refusePositionals(positionals);
    const store = openPaymentStore(dbOf(values.db));
    try {
      const r = await buildRecoveryReport(store);
      emit(io, values.json === true, r, () => reportLines(r));
      return 0;
    } finally {
      await store.close();
    }
  },
};

export const paymentRecreditCommand: CliCommand = {
  name: 'payment recredit',
  summary: 'issue the re-credit claim of a payment debited without a result (sealed for the issuer\'s load server)',
  help: [
    'Usage: purselab payment recredit --config FILE --db PATH PAYMENT_ID [--json]',
    '',
    'Issues the RecreditClaim of one payment from the recovery report (seed 003 L311): sealed with the',
    'issuerLinkKey of the configuration, one per payment (asking again returns the same claim), logged as a',
    're-credit, never as a load. Prints the sealed claim as JSON for the issuer\'s load server.',
  ].join('\n'),
  async run(args, io) {
    const { values, positionals } = parseCommandArgs(args, { config: { type: 'string' }, db: { type: 'string' }, json: { type: 'boolean', default: false } });
    if (positionals.length !== 1) throw new UsageError('give exactly one PAYMENT_ID');
    const config = loadPaymentConfig(requireOption(values.config, '--config FILE'));
    const store = openPaymentStore(dbOf(values.db));
    try {
      const c = await issueRecreditClaim(store, config.issuerLinkKey, positionals[0]!);
      emit(io, values.json === true, c, () => [`re-credit claim for ${c.paymentId}: ${c.amount} minor units (${c.created ? 'issued now' : `issued before, ${c.issuedAt}`})`, JSON.stringify(c.claim)]);
      return 0;
    } finally {
      await store.close();
    }
  },
};

function batchLines(bs: BatchOutcome[]): string[] {
  return bs.map((b) => `  PSAM ${b.psamId}: ${b.status}: ${b.message}${b.file ? ` -> ${b.file}` : ''}`);
}

async function batchViaPool(configPath: string, dbPath: string | undefined, purge: boolean | undefined, io: CliIo): Promise<BatchOutcome[]> {
  const config = loadPaymentConfig(configPath);
  const db = dbPath ?? config.db ?? resolve('payment.db');
  const store = openPaymentStore(db);
  const pool = new PsamPool({ psams: config.psams, timeouts: config.timeouts, watchPcsc: false });
  try {
    await pool.start();
    for (const p of pool.health()) io.out(`  ${p.id} ${p.reader}: ${p.inService ? `PSAM ${p.psamId}` : `out of service (${p.lastError})`}`);
    return await closeBatches({ pool, store, acquirerKeys: config.acquirerKeys, batchDir: config.batchDir ?? resolve(dirname(db), 'collections'), acquireMs: 10_000 }, purge === undefined ? {} : { purge });
  } finally {
    await pool.close();
    await store.close();
  }
}

export const paymentBatchCommand: CliCommand = {
  name: 'payment batch',
  summary: 'close the PSAM batches, check them against the ledger, export collection files for the concentration point',
  help: [
    'Usage: purselab payment batch --url URL [--token T] [--no-purge] [--json]',
    '       purselab payment batch --config FILE [--db PATH] [--no-purge] [--json]   (server stopped)',
    '',
    'Closes the open batch of every PSAM in service (CLOSE BATCH), reads its records, verifies the batch MAC with',
    'the acquirer key set of the configuration, compares the confirmed totals with the server\'s ledger, writes',
    'collections/collection-PSAMID-N.json and, with the acquirer admin key, acknowledges it (PURGE BATCH). A',
    'closed batch not yet acknowledged is exported again instead of closing a new one.',
    '',
    'Options:',
    '  --url URL       a running payment server (POST URL/v1/admin/batch)',
    '  --token T       its admin token, when configured',
    '  --config FILE   open the PSAMs of this configuration directly (the server must be stopped)',
    '  --db PATH       with --config: the SQLite file (default: the configuration\'s, else ./payment.db)',
    '  --no-purge      keep the closed batch in the PSAM (the concentration point acknowledges it later)',
    '  --json          machine-readable',
    'Exit status 1 when a batch MAC is wrong or the totals differ from the ledger.',
  ].join('\n'),
  async run(args, io) {
    const { values, positionals } = parseCommandArgs(args, {
      url: { type: 'string' },
      token: { type: 'string' },
      config: { type: 'string' },
      db: { type: 'string' },
      'no-purge': { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
    });
    refusePositionals(positionals);
    if (!values.url === !values.config) throw new UsageError('give --url URL (running server) or --config FILE (server stopped)');
    const purge = values['no-purge'] ? false : undefined;
    const batches = values.url
      ? (
          await requestJson<{ batches: BatchOutcome[] }>(`${values.url.replace(/\/+$/, '')}/v1/admin/batch`, {
            body: purge === undefined ? {} : { purge },
            timeoutMs: 60_000,
            ...(values.token ? { headers: { authorization: `Bearer ${values.token}` } } : {}),
          })
        ).batches
      : await batchViaPool(values.config!, values.db, purge, io);
    const summary = batches.map(({ collection, ...b }) => ({ ...b, ...(collection ? { macVerified: collection.macVerified, ledger: collection.ledger } : {}) }));
    emit(io, values.json === true, summary, () => ['payment batch:', ...batchLines(batches)]);
    const bad = batches.some((b) => b.collection && (b.collection.macVerified === false || !b.collection.ledger.matches));
    return bad ? 1 : 0;
  },
};
