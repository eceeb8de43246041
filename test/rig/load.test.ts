// Full loads over the real rig: the purse card as an emulated card behind pcscd + vpcd (a separate
// `purselab emulate` process), the issuer on the HSM bridge's payment operations (software backend with the
// TEST masters), the card side through src/terminal over a PC/SC channel. Includes the failed-load recovery.

import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { loadCardImage } from '../../card-applet-sim/os/image.ts';
import type { PurseApplet } from '../../card-applet-sim/applets/purse/purse-applet.ts';
import { IEP_AID } from '../../src/crypto/purse-apdu.ts';
import { LoadResult, LoadType } from '../../src/crypto/purse-mac.ts';
import { openPcscChannel, type PcscChannel } from '../../src/transport/pcsc.ts';
import { creditForLoad, initializeForLoad, readPurse, recoverLoad, runLoad, type LoadIssuer, type LoadRequest } from '../../src/terminal/index.ts';
import { demoIssuer } from '../unit/psam/helpers.ts';
import { describeRig, detectRig, freeSlots, killAll, runCli, startEmulator, tempDir, type Proc } from './rig.ts';

const rig = await detectRig(1);

describeRig('load over pcscd + vpcd: purse card emulated in a vpcd slot, issuer on the HSM bridge', rig, () => {
  const tmp = tempDir('purselab-rig-load-');
  const cardImg = join(tmp.path, 'card.img');
  let slot: { reader: string; port: number };
  let emu: Proc | undefined;
  let ch: PcscChannel;
  let issuer: LoadIssuer;
  let closeHsm: () => Promise<void> = async () => undefined;
  const req = (amount: number): LoadRequest => ({ amount, currency: 978, exponent: 2, date: '20260116', time: '091500', loadTxnId: randomBytes(8) });

  beforeAll(async () => {
    const issue = await runCli(['card', 'issue', '--profile', 'fixtures/profiles/demo-aes.json', '--keys', 'fixtures/keys/demo-issuer.json', '--out', cardImg, '--balance', '1.00']);
    expect(issue.code, issue.stderr).toBe(0);
    [slot] = (await freeSlots(1)) as [{ reader: string; port: number }];
    emu = await startEmulator(['--vpcd', `127.0.0.1:${slot.port}`, '--card', cardImg], [slot.reader]);
    const d = await demoIssuer();
    issuer = d.issuer;
    closeHsm = () => d.hsm.close();
    ch = await openPcscChannel(slot.reader);
  });

  afterAll(async () => {
    await ch?.close().catch(() => undefined);
    await emu?.stop();
    await killAll();
    await closeHsm();
    tmp.remove();
  });

  it('S1 from the card verifies at the issuer HSM, S2 credits exactly the amount, S3 verifies', async () => {
    const q = req(2500);
    const r = await runLoad(ch, issuer, q);
    expect(r).toMatchObject({ result: LoadResult.CREDITED, credited: true, s3Verified: true, balanceBefore: 100, newBalance: 2600, counterBefore: 0, newCounter: 1 });
    expect(r.init.s1Fields).toMatchObject({ loadType: LoadType.LOAD, alg: 2, amount: 2500, balance: 100, maxBalance: 50_000 });
    expect(await readPurse(ch)).toMatchObject({ balance: 2600, counter: 1, lastLoadTxnId: Buffer.from(q.loadTxnId), lastLoadAmount: 2500 });
  });

  it('a forged S2 over PC/SC: a signed "S2 invalid", no credit', async () => {
    const init = await initializeForLoad(ch, req(100));
    const s2 = await issuer.generateS2(init.s1Fields);
    s2[7]! ^= 0x01;
    const credit = await creditForLoad(ch, init, s2);
    expect(credit).toMatchObject({ result: LoadResult.S2_INVALID, credited: false, newBalance: 2600 });
    expect(await issuer.verifyS3(credit.s3Fields, credit.s3)).toBe(true);
  });

  it('failed-load recovery over PC/SC: the credit answer lost after the card committed; the enquiry proves the load', async () => {
    const q = req(400);
    const init = await initializeForLoad(ch, q);
    const s2 = await issuer.generateS2(init.s1Fields);
    await creditForLoad(ch, init, s2); // the host "loses" this answer
    const rec = await recoverLoad(ch, issuer, q, init, randomBytes(8));
    expect(rec).toMatchObject({ verified: true, credited: true });
    // And a load whose CREDIT never happened is a real failure, final.
    const q2 = req(300);
    const init2 = await initializeForLoad(ch, q2);
    const rec2 = await recoverLoad(ch, issuer, q2, init2, randomBytes(8));
    expect(rec2).toMatchObject({ verified: true, credited: false, counterUnchanged: true });
  });

  it('the card image saved by the emulator holds the loaded balance', async () => {
    await ch.close();
    expect((await emu!.stop()).code).toBe(0);
    emu = undefined;
    const purse = loadCardImage(cardImg).getApplet(IEP_AID) as PurseApplet;
    expect(purse.balance.get()).toBe(100 + 2500 + 400);
    expect(purse.counter.get()).toBe(2);
  });
});
