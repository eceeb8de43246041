// The second half of `purselab demo`: the Internet flows of seed 003 over loopback HTTP with SQLite stores,
// around the demo's card (behind pcscd when the rig is up). In one process, each on its own port: a payment
// server with a pool of emulated PSAMs, a merchant, the OPAL virtual-card server (src/opal/world.ts), a bank
// and the load server with the issuer keys in the demo's software HSM. Then: an Internet load onto the card,
// a purchase at the merchant paid with the card, and a purchase paid with an OPAL virtual card.

import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Hsm } from '../../../hsm-bridge/hsm.ts';
import { internetLoad } from '../../client/load-client.ts';
import { payAtMerchant } from '../../client/pay.ts';
import { startOpalWorld } from '../../opal/world.ts';
import { listen } from '../../server/app.ts';
import { createBankApp } from '../../server/bank/app.ts';
import { loadBankConfig } from '../../server/bank/config.ts';
import { BankService } from '../../server/bank/service.ts';
import { SqliteBankStore } from '../../server/bank/store.ts';
import { requestJson } from '../../server/http-client.ts';
import { loadLoadConfig } from '../../server/load/config.ts';
import { createLoadServer } from '../../server/load/server.ts';
import { showAmount } from '../../terminal/amount.ts';
import type { LoadIssuer } from '../../terminal/load.ts';
import { readPurse } from '../../terminal/purse.ts';
import type { CardChannel } from '../../transport/channel.ts';
import type { CliIo } from '../command.ts';

const fixture = (rel: string) => fileURLToPath(new URL(`../../../fixtures/${rel}`, import.meta.url));

/** The demo bank's cardholder (fixtures/bank/demo-bank.json; demo password). */
const BANK_USER = { user: 'alice', password: 'alice-demo-pw', accountId: 'alice' };
const LOAD_AMOUNT = 1000;

export interface NetworkDemoInput {
  readonly card: CardChannel;
  /** The demo's software HSM: issuer masters and the OPAL record keys. */
  readonly hsm: Hsm;
  readonly issuer: LoadIssuer;
  /** Directory for the SQLite files. */
  readonly dir: string;
  readonly step: (title: string) => void;
  readonly io: CliIo;
}

/** Run the network flows; true when every check held. */
export async function runNetworkDemo(d: NetworkDemoInput): Promise<boolean> {
  const { io, step, card } = d;
  const closers: Array<() => Promise<unknown>> = [];
  const checks: [string, boolean][] = [];
  try {
    step('Servers on loopback HTTP with SQLite stores: payment (2 PSAMs), merchant, OPAL, bank, load (issuer HSM)');
    const world = await startOpalWorld({ hsm: d.hsm, psams: 2, dir: join(d.dir, 'opal-world'), initialBalance: 2000 });
    closers.push(() => world.close());
    const bankConfig = loadBankConfig(fixture('bank/demo-bank.json'));
    const load = await createLoadServer({ config: loadLoadConfig(fixture('load/demo-load.json')), dbPath: join(d.dir, 'load.db'), hsm: { issuer: d.issuer, description: 'the demo software HSM' }, logLevel: false });
    closers.push(() => load.close());
    const loadUrl = await listen(load.app, '127.0.0.1', 0);
    const bankStore = new SqliteBankStore(join(d.dir, 'bank.db'));
    closers.push(() => bankStore.close());
    const bank = new BankService({ store: bankStore, config: bankConfig, loadServer: loadUrl });
    await bank.seed();
    const bankApp = createBankApp({ service: bank, sweepIntervalSeconds: 0, logLevel: false });
    closers.unshift(() => bankApp.close());
    const bankUrl = await listen(bankApp, '127.0.0.1', 0);
    for (const [name, url] of [['payment', world.paymentUrl], ['merchant', world.merchantUrl], ['OPAL', world.opalUrl], ['bank', bankUrl], ['load', loadUrl]] as const) io.out(`  ${name.padEnd(8)} ${url}`);

    const start = await readPurse(card);
    const money = (minor: number) => showAmount(minor, start.currency, start.exponent);
    const accountBefore = await bankStore.totals(bankConfig.floatAccount.accountId);

    step(`Internet load of ${money(LOAD_AMOUNT)} from the bank (hold -> load server: S1 in the HSM, S2 -> card -> S3 -> capture)`);
    const loaded = await internetLoad(card, { bankUrl, user: BANK_USER.user, password: BANK_USER.password, amount: LOAD_AMOUNT, confirm: async () => true, progress: (l) => io.out(`  ${l.trim()}`) });
    const accountAfter = await bankStore.totals(bankConfig.floatAccount.accountId);
    io.out(`  ${loaded.status}; card ${money(loaded.balanceBefore)} -> ${money(loaded.balance)}; bank customers ${money(accountBefore.customers)} -> ${money(accountAfter.customers)}, float +${money(accountAfter.float - accountBefore.float)}`);
    checks.push(['load: card credited once, account debited once, float credited', loaded.status === 'loaded' && loaded.balance === loaded.balanceBefore + LOAD_AMOUNT && accountBefore.customers - accountAfter.customers === LOAD_AMOUNT && accountAfter.float - accountBefore.float === LOAD_AMOUNT]);

    step('Internet purchase at the merchant with the card (draw request -> PSAM S2 -> DEBIT -> S3 -> Debit Result -> goods)');
    const payUrl = await world.order('ebook');
    const paid = await payAtMerchant(payUrl, card, { confirm: () => true, onProgress: (_s, m) => io.out(`  ${m}`) });
    io.out(`  ${paid.message}; goods: ${paid.goods ?? 'none'}; card ${money(paid.balanceBefore)} -> ${money(paid.balanceAfter)}`);
    checks.push(['purchase: goods released, card debited the merchant amount', paid.released && paid.balanceBefore - paid.balanceAfter === paid.amount]);

    step('OPAL: register a cardholder (one-time password, forced change) and pay with the virtual card');
    const holder = await world.cardholder('demo-cardholder');
    const auth = { authorization: `Bearer ${holder.token}` };
    const before = await requestJson<{ balance: number }>(`${world.opalUrl}/v1/balance`, { headers: auth });
    const opalPage = await world.order('ebook');
    const quote = await requestJson<{ amount: number }>(`${world.opalUrl}/v1/purchase/quote`, { body: { pageUrl: opalPage }, headers: auth });
    const opalPaid = await requestJson<{ status: string; released: boolean }>(`${world.opalUrl}/v1/purchase`, { body: { pageUrl: opalPage, amount: quote.amount }, headers: auth });
    const after = await requestJson<{ balance: number }>(`${world.opalUrl}/v1/balance`, { headers: auth });
    io.out(`  ${opalPaid.status}, goods released: ${opalPaid.released}; virtual card ${money(before.balance)} -> ${money(after.balance)}`);
    checks.push(['OPAL purchase: goods released, virtual card debited', opalPaid.released && before.balance - after.balance === quote.amount]);

    step('Network checks');
    for (const [what, ok] of checks) io.out(`  ${ok ? 'ok  ' : 'FAIL'} ${what}`);
    return checks.every(([, ok]) => ok);
  } finally {
    for (const c of closers) await c().catch(() => undefined);
  }
}
