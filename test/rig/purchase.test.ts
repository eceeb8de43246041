// Full purchases over the real rig: host -> pcsclite -> pcscd -> vpcd -> two `purselab emulate` processes, the
// purse card in one vpcd slot and the PSAM in another. The same src/terminal code as the in-process suites;
// the CLI (`purselab card info`, `purselab purchase`) as a user runs it. Afterwards the card images (saved by
// the emulators on SIGTERM) must conserve value against the PSAM log.

import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { loadCardImage } from '../../card-applet-sim/os/image.ts';
import type { PsamApplet } from '../../card-applet-sim/applets/psam/psam-applet.ts';
import type { PurseApplet } from '../../card-applet-sim/applets/purse/purse-applet.ts';
import { derivePsamKey } from '../../src/crypto/purse-mac.ts';
import * as A from '../../src/crypto/purse-apdu.ts';
import { openPcscChannel, type PcscChannel } from '../../src/transport/pcsc.ts';
import { closeBatch, purchase, PurchaseError, readBatch, readPsamData, readPurse, readTotals, verifyClosedBatch } from '../../src/terminal/index.ts';
import { KEYS } from '../unit/psam/helpers.ts';
import { describeRig, detectRig, freeSlots, killAll, runCli, startEmulator, tempDir, type Proc } from './rig.ts';

const rig = await detectRig(2);

describeRig('purchase over pcscd + vpcd: purse card and PSAM as emulated cards in two slots', rig, () => {
  const tmp = tempDir('purselab-rig-purchase-');
  const cardImg = join(tmp.path, 'card.img');
  const psamImg = join(tmp.path, 'psam.img');
  let slots: { reader: string; port: number }[] = [];
  let cardEmu: Proc | undefined;
  let psamEmu: Proc | undefined;
  const open: PcscChannel[] = [];
  let debited = 0;

  beforeAll(async () => {
    const issue = await runCli(['card', 'issue', '--profile', 'fixtures/profiles/demo-3des.json', '--keys', 'fixtures/keys/demo-issuer.json', '--out', cardImg, '--balance', '20.00']);
    expect(issue.code, issue.stderr).toBe(0);
    const psam = await runCli(['psam', 'issue', '--profile', 'fixtures/profiles/psam-3des.json', '--keys', 'fixtures/keys/demo-issuer.json', '--out', psamImg]);
    expect(psam.code, psam.stderr).toBe(0);
    slots = await freeSlots(2);
    // Two emulator processes, one card each, like two cards in two readers.
    cardEmu = await startEmulator(['--vpcd', `127.0.0.1:${slots[0]!.port}`, '--card', cardImg], [slots[0]!.reader]);
    psamEmu = await startEmulator(['--vpcd', `127.0.0.1:${slots[1]!.port}`, '--card', psamImg], [slots[1]!.reader]);
  });

  afterAll(async () => {
    for (const c of open) await c.close().catch(() => undefined);
    await cardEmu?.stop();
    await psamEmu?.stop();
    await killAll();
    tmp.remove();
  });

  const channels = async () => {
    const card = await openPcscChannel(slots[0]!.reader);
    const psam = await openPcscChannel(slots[1]!.reader);
    open.push(card, psam);
    return { card, psam };
  };

  it('purselab card info reads the purse through pcscd (card number masked)', async () => {
    const r = await runCli(['card', 'info', '--reader', slots[0]!.reader, '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ reader: slots[0]!.reader, card: '999001******0017', balance: 2000, currency: 978, exponent: 2, counter: 0 });
  });

  it('purselab purchase --card READER --psam READER --amount 4.20: debited and verified by the PSAM', async () => {
    const r = await runCli(['purchase', '--card', slots[0]!.reader, '--psam', slots[1]!.reader, '--amount', '4.20']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^purchase: debited 4\.20 EUR on card 999001\*{6}0017; balance 15\.80 EUR \(was 20\.00\), counter 1/);
    expect(r.stdout).toMatch(/S3 verified by the PSAM, record confirmed/);
    debited += 420;
  });

  it('purchase() over two PC/SC channels, standard and early release; the PSAM log and totals match', async () => {
    const { card, psam } = await channels();
    const std = await purchase(card, psam, { amount: 199, location: 'RIG00001' });
    expect(std).toMatchObject({ verifiedBy: 'psam', psamConfirmed: true, balanceBefore: 1580, newBalance: 1381, psamTxn: 2 });
    const er = await purchase(card, psam, { amount: 1, variant: 'early-release', location: 'RIG00001' });
    expect(er).toMatchObject({ verifiedBy: 'expected-s3', psamConfirmed: true, newBalance: 1380, psamTxn: 3 });
    expect(er.expectedS3).toEqual(er.s3);
    debited += 200;
    expect((await readPurse(card)).balance).toBe(2000 - debited);
    const log = await readBatch(psam, 'open');
    expect(log.map((r) => [r.psamTxn, r.amount, r.status])).toEqual([[1, 420, 1], [2, 199, 1], [3, 1, 1]]);
    expect(await readTotals(psam)).toEqual([{ txType: 1, currency: 978, exponent: 2, count: 3, sum: debited, unconfirmedCount: 0, unconfirmedSum: 0 }]);
  });

  it('insufficient funds through the CLI: one line, exit 1, nothing debited', async () => {
    const r = await runCli(['purchase', '--card', slots[0]!.reader, '--psam', slots[1]!.reader, '--amount', '99.00']);
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toBe('purselab purchase: insufficient funds: the card holds 13.80 EUR, the purchase is 99.00 EUR; nothing was debited');
    const { card } = await channels();
    expect((await readPurse(card)).balance).toBe(2000 - debited);
  });

  it('a PurchaseError over PC/SC is typed too (card refuses a currency it does not hold)', async () => {
    const { card, psam } = await channels();
    const e = (await purchase(card, psam, { amount: 1, currency: 840 }).catch((x) => x)) as PurchaseError;
    expect(e).toBeInstanceOf(PurchaseError);
    expect(e).toMatchObject({ outcome: 'refused', stage: 'psam-init', sw: A.Sw.CURRENCY_MISMATCH, cardDebited: 'no' });
  });

  it('the concentration point: CLOSE BATCH over PC/SC, and the batch MAC verifies with the acquirer key', async () => {
    const { psam } = await channels();
    const summary = await closeBatch(psam);
    const records = await readBatch(psam, 'closed');
    const info = await readPsamData(psam);
    expect(info).toMatchObject({ closedBatchNumber: 1, closedRecordCount: 3, batchNumber: 2, recordCount: 0 });
    const master = KEYS.masterKeys.find((k) => k.usage === 'batch' && k.alg === 1)!.key;
    expect(verifyClosedBatch(summary, records, derivePsamKey(master, summary.psamId, 1), 1, 1)).toBe(true);
    expect(summary.totals[0]!.sum).toBe(debited);
  });

  it('after the emulators stop, the saved images conserve value: card decrease == PSAM confirmed sum', async () => {
    for (const c of open.splice(0)) await c.close();
    expect((await cardEmu!.stop()).code).toBe(0);
    expect((await psamEmu!.stop()).code).toBe(0);
    cardEmu = psamEmu = undefined;
    const card = loadCardImage(cardImg).getApplet(A.IEP_AID) as PurseApplet;
    const psam = loadCardImage(psamImg).getApplet(A.PSAM_AID) as PsamApplet;
    expect(card.balance.get()).toBe(2000 - debited);
    expect(card.counter.get()).toBe(3);
    expect(psam.closedBatchNumber.get()).toBe(1);
    expect(psam.nextTxn.get()).toBe(4);
  });
});
