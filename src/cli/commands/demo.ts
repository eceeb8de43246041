// `purselab demo`: the whole stack on the embedded defaults — an emulated purse card and PSAM (behind the
// real pcscd + vpcd when the rig is up, in-process otherwise), the issuer's keys in the software HSM, a load,
// purchases, an authentication, and the PSAM batch closed and checked by the concentration point.

import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { issuePurseCard, loadPurseProfile } from '../../../card-applet-sim/applets/purse/issuing.ts';
import { issuePsamCard, loadPsamProfile } from '../../../card-applet-sim/applets/psam/issuing.ts';
import type { SimulatedCard } from '../../../card-applet-sim/os/card.ts';
import { saveCardImage } from '../../../card-applet-sim/os/image.ts';
import { VpcdConnector } from '../../../card-applet-sim/vpcd/connector.ts';
import { explainAtr } from '../../apdu/atr.ts';
import { loadIssuerKeySet } from '../../crypto/key-set.ts';
import { derivePsamKey } from '../../crypto/purse-mac.ts';
import { currencyName, formatAmount, maskCardId } from '../../terminal/amount.ts';
import { runLoad } from '../../terminal/load.ts';
import { authenticate, dateTimeOf, purchase } from '../../terminal/purchase.ts';
import { closeBatch, readBatch, verifyClosedBatch } from '../../terminal/psam.ts';
import { readPurse } from '../../terminal/purse.ts';
import type { CardChannel } from '../../transport/channel.ts';
import { EmulatorChannel } from '../../transport/emulator-channel.ts';
import { PurselabError } from '../../errors.ts';
import { parseCommandArgs, type CliCommand, type CliIo } from '../command.ts';
import { runNetworkDemo } from './demo-network.ts';
import { DEFAULT_KEY_SET, softwareIssuer } from './hsm-init.ts';

const fixture = (rel: string) => fileURLToPath(new URL(`../../../fixtures/${rel}`, import.meta.url));

class DemoError extends PurselabError {
  constructor(message: string) {
    super('DEMO', message);
  }
}

interface Rig {
  card: CardChannel;
  psam: CardChannel;
  how: string;
  close(): Promise<void>;
}

/** Two emulated cards behind the real pcscd: each served to a free vpcd slot by an in-process vpcd connector. */
async function pcscRig(card: SimulatedCard, psam: SimulatedCard): Promise<Rig | string> {
  let pcsc: typeof import('../../transport/pcsc.ts');
  try {
    pcsc = await import('../../transport/pcsc.ts');
  } catch (e) {
    return `PC/SC unavailable (${(e as Error).message})`;
  }
  const { VPCD_SLOTS } = await import('../../transport/pcsc-vpcd.ts');
  let readers;
  try {
    readers = await pcsc.listReaders({ timeoutMs: 3000 });
  } catch (e) {
    return (e as Error).message;
  }
  const free = VPCD_SLOTS.filter((s) => readers.some((r) => r.name === s.reader && !r.cardPresent));
  if (free.length < 2) return `pcscd has ${free.length} free vpcd slot(s), the demo needs 2 (bash .ci/rig-up.sh starts the rig)`;
  const quiet = () => undefined;
  const connectors = [card, psam].map((c, i) => new VpcdConnector({ host: '127.0.0.1', port: free[i]!.port, card: c, log: quiet }).start());
  const stop = async () => void (await Promise.all(connectors.map((c) => c.stop())));
  try {
    await Promise.all(connectors.map((c) => c.waitForSession(10_000)));
    // pcscd reports a card at its next poll of the reader, a moment after the vpcd session starts.
    const missing = await pcsc.waitForCards([free[0]!.reader, free[1]!.reader], 10_000);
    if (missing !== undefined) throw new Error(`pcscd did not report the card in '${missing}' within 10 s`);
    const cardCh = await pcsc.openPcscChannel(free[0]!.reader);
    const psamCh = await pcsc.openPcscChannel(free[1]!.reader).catch(async (e) => {
      await cardCh.close();
      throw e;
    });
    return {
      card: cardCh,
      psam: psamCh,
      how: `real pcscd + vpcd: card in "${free[0]!.reader}", PSAM in "${free[1]!.reader}"`,
      async close() {
        await Promise.allSettled([cardCh.close(), psamCh.close()]);
        await stop();
      },
    };
  } catch (e) {
    await stop();
    return `could not reach the emulated cards through pcscd: ${(e as Error).message}`;
  }
}

function inProcessRig(card: SimulatedCard, psam: SimulatedCard, why: string): Rig {
  card.powerOn();
  psam.powerOn();
  const cardCh = new EmulatorChannel(card, { readerName: 'in-process card' });
  const psamCh = new EmulatorChannel(psam, { readerName: 'in-process PSAM' });
  return {
    card: cardCh,
    psam: psamCh,
    how: `in-process emulator channels (${why})`,
    async close() {
      await Promise.allSettled([cardCh.close(), psamCh.close()]);
    },
  };
}

async function runDemo(io: CliIo, opts: { inProcess: boolean; network: boolean; keep: string | undefined }): Promise<number> {
  const step = (title: string) => io.out(`\n== ${title}`);
  const keys = loadIssuerKeySet(DEFAULT_KEY_SET, { complete: true });

  step('Issuer HSM (software backend, in memory) with the TEST issuer key set');
  const { hsm, issuer, rows } = await softwareIssuer(keys, { recordKeys: opts.network });
  io.out(`  ${rows.length} keys: ${rows.map((r) => `${r.label} v${r.version} KCV ${r.kcv}`).slice(0, 3).join(', ')}, ...`);

  step('Issuing an emulated purse card (AES suite) and a purchase SAM');
  const issued = issuePurseCard(loadPurseProfile(fixture('profiles/demo-aes.json')), keys, { balance: 500 });
  const psamProfile = loadPsamProfile(fixture('profiles/psam-aes.json'));
  const psamIssued = issuePsamCard(psamProfile, keys);
  io.out(`  card ${maskCardId(issued.cardId)}, PSAM ${maskCardId(psamProfile.psamId)}`);

  const rig = opts.inProcess ? inProcessRig(issued.card, psamIssued.card, '--in-process') : await pcscRig(issued.card, psamIssued.card);
  const active = typeof rig === 'string' ? inProcessRig(issued.card, psamIssued.card, rig) : rig;
  try {
    io.out(`  transport: ${active.how}`);
    io.out(`  card ATR ${active.card.atr.toString('hex').toUpperCase()}`);
    for (const line of explainAtr(active.card.atr).slice(0, 4)) io.out(`    ${line}`);

    const before = await readPurse(active.card);
    const money = (minor: number) => `${formatAmount(minor, before.exponent)} ${currencyName(before.currency)}`;
    io.out(`  balance ${money(before.balance)}, max ${money(before.maxBalance)}, counter ${before.counter}`);

    step('Load 20.00 from the issuer (S1 verified in the HSM, S2 to the card, S3 verified)');
    const { date, time } = dateTimeOf(new Date());
    const load = await runLoad(active.card, issuer, { amount: 2000, currency: before.currency, exponent: before.exponent, date, time, loadTxnId: randomBytes(8) });
    io.out(`  ${load.resultText}; S3 verified: ${load.s3Verified}; balance ${money(load.balanceBefore)} -> ${money(load.newBalance)}`);

    step('Purchase 4.20 (PSAM issues DEBIT with S2, card returns S3, PSAM verifies)');
    const p1 = await purchase(active.card, active.psam, { amount: 420, location: 'DEMOSHOP' });
    io.out(`  PSAM txn ${p1.psamTxn}, verified by ${p1.verifiedBy}; balance ${money(p1.balanceBefore)} -> ${money(p1.newBalance)}`);

    step('Purchase 1.00, early-release variant (expected S3 released with S2, compared by the host)');
    const p2 = await purchase(active.card, active.psam, { amount: 100, variant: 'early-release', location: 'DEMOSHOP' });
    io.out(`  verified by ${p2.verifiedBy}, PSAM record confirmed: ${p2.psamConfirmed}; balance -> ${money(p2.newBalance)}`);

    step('Authentication (zero amount, special currency): counter moves, balance does not');
    const auth = await authenticate(active.card, active.psam);
    io.out(`  counter ${auth.counterBefore} -> ${auth.newCounter}; balance ${money(auth.newBalance)}`);

    step('Close the PSAM batch; the concentration point checks its MAC and totals');
    const records = await readBatch(active.psam, 'open');
    const summary = await closeBatch(active.psam);
    const master = keys.masterKeys.find((k) => k.usage === 'batch' && k.alg === 2);
    if (!master) throw new DemoError('the key set has no AES batch master');
    const macOk = verifyClosedBatch(summary, records, derivePsamKey(master.key, summary.psamId, 2), 2, master.version);
    const sum = summary.totals.filter((t) => t.currency === before.currency).reduce((a, t) => a + t.sum, 0);
    io.out(`  batch ${summary.batchNumber}: ${summary.recordCount} records, purchases ${money(sum)}, MAC ${macOk ? 'verified' : 'WRONG'}`);

    const after = await readPurse(active.card);
    const conserved = before.balance + 2000 - sum === after.balance;
    step('Value check');
    io.out(`  ${money(before.balance)} + loaded ${money(2000)} - purchases ${money(sum)} = ${money(after.balance)}: ${conserved ? 'conserved' : 'NOT CONSERVED'}`);
    let networkOk = true;
    if (opts.network) {
      const dir = opts.keep ?? mkdtempSync(join(tmpdir(), 'purselab-demo-'));
      mkdirSync(dir, { recursive: true });
      try {
        networkOk = await runNetworkDemo({ card: active.card, hsm, issuer, dir, step, io });
      } finally {
        if (!opts.keep) rmSync(dir, { recursive: true, force: true });
      }
    }
    if (opts.keep) {
      mkdirSync(opts.keep, { recursive: true });
      saveCardImage(issued.card, join(opts.keep, 'card.img'));
      saveCardImage(psamIssued.card, join(opts.keep, 'psam.img'));
      io.out(`  card images and the servers' SQLite files saved in ${opts.keep} (use the card with: purselab card info --reader emu:${join(opts.keep, 'card.img')})`);
    }
    io.out(`\n${conserved && macOk && networkOk ? 'demo: every check held' : 'demo: a check FAILED (see above)'}`);
    return conserved && macOk && networkOk ? 0 : 1;
  } finally {
    await active.close();
    await hsm.close();
  }
}

export const demoCommand: CliCommand = {
  name: 'demo',
  summary: 'run the whole stack on the embedded defaults: issue card + PSAM, load, purchases, batch (no hardware needed)',
  help: [
    'Usage: purselab demo [--in-process] [--no-network] [--keep DIR]',
    '',
    'Issues an emulated purse card and PSAM from the TEST key set (fixtures/keys/demo-issuer.json), puts the',
    "issuer's master keys into an in-memory software HSM, then runs a load of 20.00, a purchase of 4.20, an",
    'early-release purchase of 1.00 and an authentication, closes the PSAM batch and checks its MAC and that',
    'value was conserved. Then the Internet flows over loopback HTTP with SQLite stores: a payment server with',
    'two emulated PSAMs, a merchant, the OPAL virtual-card server, a bank and the load server (issuer keys in',
    'the same software HSM): an Internet load of 10.00 onto the card, a purchase at the merchant paid with the',
    'card, and a purchase paid with a newly registered OPAL virtual card. Exit code 0 when every check holds.',
    '',
    'When pcscd runs with two free vpcd slots (bash .ci/rig-up.sh), the cards are served to pcscd by vpcd',
    'connectors and every APDU goes host -> pcsclite -> pcscd -> vpcd -> emulator; otherwise the demo says why',
    'and uses in-process channels.',
    '',
    'Options:',
    '  --in-process  do not use pcscd even when it is running',
    '  --no-network  skip the Internet flows (servers over loopback HTTP)',
    '  --keep DIR    keep the card and PSAM images and the servers\' SQLite files in DIR',
  ].join('\n'),
  async run(args, io) {
    const { values } = parseCommandArgs(args, { 'in-process': { type: 'boolean', default: false }, 'no-network': { type: 'boolean', default: false }, keep: { type: 'string' } });
    return runDemo(io, { inProcess: values['in-process'] === true, network: values['no-network'] !== true, keep: values.keep });
  },
};
