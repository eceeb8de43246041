// `purselab bench load`: Internet loads end to end in one process - the bank and the load server on loopback
// HTTP with their SQLite stores, the issuer HSM, and N cardholders each loading 1.00 onto their own emulated
// card (internetLoad over an EmulatorChannel, logged in once) - loads/s and p99 per HSM backend (software,
// PKCS#11 SoftHSM2, serial simulator at 115200 baud over a socat pty) and per N. Beside each, the floor
// measured in the same run on the same HSM: the raw HSM work of one load (verify S1, generate S2, verify S3)
// done by N callers with nothing else, as loads/s. SoftHSM2 needs --openssl-legacy-provider: without it the
// suite measures in a child Node started with it.

import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Hsm } from '../../../hsm-bridge/hsm.ts';
import { paymentOps } from '../../../hsm-bridge/payment.ts';
import { opensslLegacyActive } from '../../../hsm-bridge/pkcs11/binding.ts';
import { Pkcs11Hsm } from '../../../hsm-bridge/pkcs11/pkcs11-hsm.ts';
import { createTempTokens, softhsmMissing } from '../../../hsm-bridge/pkcs11/softhsm-temp.ts';
import { serialTarget } from '../../../hsm-bridge/serial/bench.ts';
import { SoftwareHsm } from '../../../hsm-bridge/software/software-hsm.ts';
import { issuePurseCard, loadPurseProfile } from '../../../card-applet-sim/applets/purse/issuing.ts';
import { bankLogin, internetLoad } from '../../client/load-client.ts';
import { loadIssuerKeySet } from '../../crypto/key-set.ts';
import { loadS2FieldsFromS1, loadS3FieldsFor } from '../../crypto/purse-mac.ts';
import { listen } from '../../server/app.ts';
import { createBankApp } from '../../server/bank/app.ts';
import { loadBankConfig } from '../../server/bank/config.ts';
import { BankService } from '../../server/bank/service.ts';
import { SqliteBankStore } from '../../server/bank/store.ts';
import { loadLoadConfig } from '../../server/load/config.ts';
import { createLoadServer } from '../../server/load/server.ts';
import { issuerFromPaymentOps, type LoadIssuer } from '../../terminal/load.ts';
import { initializeForLoad } from '../../terminal/purse.ts';
import { EmulatorChannel } from '../../transport/emulator-channel.ts';
import { initKeys } from '../commands/hsm-init.ts';
import { fmt, runConcurrently, summarize } from './stats.ts';
import { measureInLegacyChild } from './legacy-child.ts';
import type { BenchContext, BenchFigures as Figures, BenchSuite } from './suite.ts';

const repo = (rel: string) => fileURLToPath(new URL(`../../../${rel}`, import.meta.url));
const keySet = () => loadIssuerKeySet(repo('fixtures/keys/demo-issuer.json'));

interface Backend {
  readonly name: string;
  open(): Promise<{ hsm: Hsm; close(): Promise<void> } | { skip: string }>;
}

const BACKENDS: Backend[] = [
  {
    name: 'software',
    async open() {
      const hsm = SoftwareHsm.inMemory();
      await hsm.open();
      await initKeys(hsm, keySet(), false);
      return { hsm, close: () => hsm.close() };
    },
  },
  {
    name: 'pkcs11 SoftHSM2',
    async open() {
      const why = softhsmMissing();
      if (why) return { skip: why };
      const t = createTempTokens(['purselab-bench-load']);
      const hsm = new Pkcs11Hsm({ module: t.module, tokenLabel: 'purselab-bench-load', pin: t.tokens[0]!.pin, calls: 'async', sessions: 8 });
      await hsm.open();
      await initKeys(hsm, keySet(), false);
      return {
        hsm,
        close: async () => {
          await hsm.close();
          t.remove();
        },
      };
    },
  },
  {
    name: 'serial pty 115200',
    async open() {
      const t = serialTarget({ baudRate: 115200, ops: [], loadKeys: (h) => initKeys(h, keySet(), false) });
      const o = await t.open();
      return 'skip' in o ? o : { hsm: o.hsm, close: () => o.close() };
    },
  },
];

async function measureBackend(ctx: BenchContext, b: Backend, figures: Figures, lines: string[]): Promise<void> {
  const opened = await b.open();
  if ('skip' in opened) {
    figures[`${b.name}.skipped`] = opened.skip;
    lines.push(`  ${b.name}: skipped (${opened.skip})`);
    return;
  }
  const dir = mkdtempSync(join(tmpdir(), 'purselab-bench-load-'));
  const issuer: LoadIssuer = issuerFromPaymentOps(paymentOps(opened.hsm));
  const load = await createLoadServer({ config: loadLoadConfig(repo('fixtures/load/demo-load.json')), dbPath: join(dir, 'load.db'), hsm: { issuer, description: b.name }, logLevel: false });
  const bankStore = new SqliteBankStore(join(dir, 'bank.db'));
  let bankApp: ReturnType<typeof createBankApp> | undefined;
  try {
    const loadUrl = await listen(load.app, '127.0.0.1', 0);
    const bank = new BankService({ store: bankStore, config: loadBankConfig(repo('fixtures/bank/demo-bank.json')), loadServer: loadUrl });
    await bank.seed();
    bankApp = createBankApp({ service: bank, sweepIntervalSeconds: 0, logLevel: false });
    const bankUrl = await listen(bankApp, '127.0.0.1', 0);
    const token = await bankLogin(bankUrl, 'alice', 'alice-demo-pw');
    const profile = loadPurseProfile(repo('fixtures/profiles/demo-aes.json'));
    const keys = keySet();
    let cardNo = 0;
    const levels = ctx.scale < 1 ? [1, 4] : [1, 4, 8];
    for (const n of levels) {
      const total = Math.max(n * 3, Math.round((b.name.startsWith('serial') ? 40 : 120) * ctx.scale));
      const cards = Array.from({ length: n }, () => {
        const { card } = issuePurseCard({ ...profile, purseNumber: String(1_000_000 + ++cardNo).padStart(10, '0') }, keys, { balance: 0, card: { randomSeed: `bench-${cardNo}` } });
        return new EmulatorChannel(card);
      });
      // One S1 per card for the floor: the HSM work of a load is verify S1 + generate S2 + verify S3.
      const inits = await Promise.all(cards.map((ch) => initializeForLoad(ch, { amount: 100, currency: 978, exponent: 2, date: '20260101', time: '120000', loadTxnId: randomBytes(8) })));
      const s3 = Buffer.alloc(8);
      const floor = await runConcurrently(total, n, async (w) => {
        const init = inits[w]!;
        await issuer.verifyS1(init.s1Fields, init.s1);
        await issuer.generateS2(init.s1Fields);
        await issuer.verifyS3(loadS3FieldsFor(loadS2FieldsFromS1(init.s1Fields), 0, init.s1Fields.counter + 1, init.s1Fields.balance + 100), s3);
      });
      await runConcurrently(n, n, (w) => internetLoad(cards[w]!, { bankUrl, user: 'alice', password: token, amount: 100 }).then(() => undefined)); // warm-up
      const run = await runConcurrently(total, n, async (w) => {
        const r = await internetLoad(cards[w]!, { bankUrl, user: 'alice', password: token, amount: 100 });
        if (r.status !== 'loaded') throw new Error(`bench load: ${r.status} (${r.basis})`);
      });
      const l = summarize(run.samples);
      const f = summarize(floor.samples);
      const lps = (total * 1000) / run.elapsedMs;
      const flps = (total * 1000) / floor.elapsedMs;
      const p = `${b.name}.n${n}`;
      figures[`${p}.loadsPerSec`] = Number(lps.toFixed(1));
      figures[`${p}.medianMs`] = Number(l.medianMs.toFixed(2));
      figures[`${p}.p99Ms`] = Number(l.p99Ms.toFixed(2));
      figures[`${p}.floorLoadsPerSec`] = Number(flps.toFixed(1));
      figures[`${p}.floorP99Ms`] = Number(f.p99Ms.toFixed(2));
      figures[`${p}.shareOfFloor`] = Number((lps / flps).toFixed(3));
      lines.push(
        `  ${b.name.padEnd(18)} ${String(n).padStart(2)} cardholder(s) ${fmt(lps).padStart(6)} loads/s, median ${fmt(l.medianMs)} ms, p99 ${fmt(l.p99Ms)} ms | floor (HSM S1+S2+S3 only) ${fmt(flps).padStart(6)} loads/s, p99 ${fmt(f.p99Ms)} ms | ${((lps / flps) * 100).toFixed(1)}% of floor`,
      );
    }
  } finally {
    await bankApp?.close();
    await load.close();
    await bankStore.close();
    await opened.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

export const loadBench: BenchSuite = {
  name: 'load',
  summary: 'Internet loads (bank + load server + issuer HSM, N cardholders): loads/s and p99 per HSM backend, beside the raw HSM work per load',
  async run(ctx) {
    const print = (f: Figures) => {
      if (!ctx.json) for (const line of String(f.lines).split('\n')) ctx.io.out(line);
    };
    if (!opensslLegacyActive() && !process.env.PURSELAB_BENCH_LOAD_CHILD && !softhsmMissing()) {
      const f = measureInLegacyChild(ctx, 'load', { PURSELAB_BENCH_LOAD_CHILD: '1' });
      print(f);
      return f;
    }
    const figures: Figures = {};
    const lines: string[] = [];
    for (const b of BACKENDS) await measureBackend(ctx, b, figures, lines);
    figures.lines = lines.join('\n');
    print(figures);
    return figures;
  },
};
