// Full loads: the purse applet through EmulatorChannel, the issuer on the HSM bridge's payment operations
// (software backend with the TEST masters). Card side of src/terminal: initializeForLoad, creditForLoad,
// requestZeroValueLoad; runLoad and recoverLoad around them.
import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { LoadResult, LoadType } from '../../../src/crypto/purse-mac.ts';
import {
  creditForLoad,
  initializeForLoad,
  LoadError,
  readPurse,
  recoverLoad,
  requestZeroValueLoad,
  runLoad,
  type LoadRequest,
} from '../../../src/terminal/index.ts';
import { A, CARD_PROFILES, EUR, PROGRAMME, TamperChannel, cardState, newCard, useDemoIssuer } from '../psam/helpers.ts';

const issuer = useDemoIssuer();

const req = (amount: number, extra: Partial<LoadRequest> = {}): LoadRequest => ({ amount, currency: EUR, exponent: 2, date: '20260116', time: '091500', loadTxnId: randomBytes(8), ...extra });

describe('load: card + issuer HSM', () => {
  for (const profile of ['des', 'aes'] as const) {
    it(`S1 verifies at the issuer, S2 credits exactly the amount, S3 verifies (${profile})`, async () => {
      const c = newCard(CARD_PROFILES[profile], 1000);
      const q = req(5000);
      const r = await runLoad(c.ch, issuer, q);
      expect(r).toMatchObject({ cardId: c.cardId, result: LoadResult.CREDITED, resultText: 'credited', credited: true, s3Verified: true, amount: 5000, counterBefore: 0, newCounter: 1, balanceBefore: 1000, newBalance: 6000 });
      expect(await readPurse(c.ch)).toMatchObject({ balance: 6000, counter: 1, lastLoadTxnId: Buffer.from(q.loadTxnId), lastLoadCounter: 1, lastLoadAmount: 5000 });
      // The Load Request fields the load server needs are all there.
      expect(r.init.s1Fields).toMatchObject({ loadType: LoadType.LOAD, cardId: c.cardId, counter: 0, amount: 5000, currency: EUR, exponent: 2, balance: 1000, maxBalance: 50_000, expiry: '20281231', date: '20260116', time: '091500' });
    });
  }

  it('a load over the maximum balance is refused by the card with a signed result 02 (counter unchanged)', async () => {
    const c = newCard(CARD_PROFILES.des, 49_000);
    // INITIALIZE FOR LOAD already refuses an amount that cannot fit (9404) ...
    await expect(runLoad(c.ch, issuer, req(2000))).rejects.toMatchObject({ outcome: 'refused', stage: 'card-init' });
    // ... and if the balance grows between S1 and CREDIT, CREDIT answers result 02, signed.
    const q = req(1000);
    const init = await initializeForLoad(c.ch, q);
    const s2 = await issuer.generateS2(init.s1Fields);
    c.applet.balance.set(49_500); // raw: another load landed meanwhile (test only)
    const credit = await creditForLoad(c.ch, init, s2);
    expect(credit).toMatchObject({ result: LoadResult.MAX_BALANCE_EXCEEDED, credited: false, newCounter: 0, newBalance: 49_500 });
    expect(await issuer.verifyS3(credit.s3Fields, credit.s3)).toBe(true);
  });

  it('an S1 altered on the way is refused by the issuer; nothing is credited', async () => {
    const c = newCard(CARD_PROFILES.des, 1000);
    const card = new TamperChannel(c.ch);
    card.onResponse = (cmd, r) => (cmd.ins === A.IepIns.INITIALIZE_FOR_LOAD ? { ...r, data: Buffer.concat([r.data.subarray(0, 14), Buffer.from([0, 0, 0, 0]), r.data.subarray(18)]) } : r);
    const before = cardState(c);
    await expect(runLoad(card, issuer, req(5000))).rejects.toMatchObject({ code: 'LOAD_REFUSED', stage: 'issuer-s1' });
    expect(cardState(c)).toBe(before);
  });

  it('a forged S2 gives a signed "S2 invalid" (01) and no credit; replaying a good S2 after its session is refused', async () => {
    const c = newCard(CARD_PROFILES.des, 1000);
    const q = req(500);
    const init = await initializeForLoad(c.ch, q);
    const good = await issuer.generateS2(init.s1Fields);
    const bad = Buffer.from(good);
    bad[0]! ^= 1;
    const r = await creditForLoad(c.ch, init, bad);
    expect(r).toMatchObject({ result: LoadResult.S2_INVALID, credited: false, newCounter: 0, newBalance: 1000 });
    expect(await issuer.verifyS3(r.s3Fields, r.s3)).toBe(true);
    // The session is consumed: the good S2 cannot be used now, nor after a new INITIALIZE (new CRND).
    await expect(creditForLoad(c.ch, init, good)).rejects.toMatchObject({ sw: 0x6985 });
    const init2 = await initializeForLoad(c.ch, q);
    const r2 = await creditForLoad(c.ch, init2, good);
    expect(r2.result).toBe(LoadResult.S2_INVALID);
    expect((await readPurse(c.ch)).balance).toBe(1000);
  });

  it('points load: the points purse is credited', async () => {
    const c = newCard(CARD_PROFILES.loyalty, 0);
    const r = await runLoad(c.ch, issuer, req(1000, { currency: PROGRAMME, exponent: 0, purse: 'points' }));
    expect(r).toMatchObject({ credited: true, newBalance: 1000 });
    expect(r.init.s1Fields.loadType).toBe(LoadType.POINTS_LOAD);
    expect(await readPurse(c.ch)).toMatchObject({ pointsBalance: 1000, balance: 0 });
  });

  it('refuses a zero amount before any APDU', () => {
    const c = newCard(CARD_PROFILES.des, 0);
    expect(() => initializeForLoad(c.ch, req(0))).toThrow(/at least 1/);
  });
});

describe('failed-load recovery (zero-value load request)', () => {
  it('hidden success: the credit answer is lost, the enquiry shows the load on the card', async () => {
    const c = newCard(CARD_PROFILES.des, 1000);
    const card = new TamperChannel(c.ch);
    card.onResponse = (cmd, r) => (cmd.ins === A.IepIns.CREDIT_FOR_LOAD ? undefined : r);
    const q = req(2500);
    let err: LoadError | undefined;
    await runLoad(card, issuer, q).catch((e) => (err = e as LoadError));
    expect(err).toMatchObject({ code: 'LOAD_CREDIT_UNKNOWN', outcome: 'credit-unknown', stage: 'card-credit' });
    const rec = await recoverLoad(c.ch, issuer, q, err!.init!, randomBytes(8));
    expect(rec).toMatchObject({ verified: true, credited: true, counterUnchanged: false });
    expect(rec.enquiry.s1Fields).toMatchObject({ loadType: LoadType.ENQUIRY, amount: 0, lastLoadTxnId: Buffer.from(q.loadTxnId), lastLoadAmount: 2500, counter: 1 });
    expect((await readPurse(c.ch)).balance).toBe(3500);
  });

  it('real failure: the CREDIT never reached the card; after the enquiry the old S2 is dead', async () => {
    const c = newCard(CARD_PROFILES.aes, 1000);
    const q = req(2500);
    const init = await initializeForLoad(c.ch, q);
    const s2 = await issuer.generateS2(init.s1Fields);
    const rec = await recoverLoad(c.ch, issuer, q, init, randomBytes(8));
    expect(rec).toMatchObject({ verified: true, credited: false, counterUnchanged: true });
    expect(rec.summary).toMatch(/did not happen and never can/);
    // The enquiry session cannot be credited (6985), and the old S2 fails against any new session.
    await expect(creditForLoad(c.ch, rec.enquiry, s2)).rejects.toMatchObject({ sw: 0x6985 });
    const again = await initializeForLoad(c.ch, q);
    expect((await creditForLoad(c.ch, again, s2)).result).toBe(LoadResult.S2_INVALID);
    expect((await readPurse(c.ch)).balance).toBe(1000);
  });

  it('a tampered enquiry S1 leaves the outcome unresolved (never a guess)', async () => {
    const c = newCard(CARD_PROFILES.des, 1000);
    const q = req(100);
    const init = await initializeForLoad(c.ch, q);
    const card = new TamperChannel(c.ch);
    card.onResponse = (cmd, r) => (cmd.ins === A.IepIns.INITIALIZE_FOR_LOAD ? { ...r, data: Buffer.concat([r.data.subarray(0, 37), Buffer.from(q.loadTxnId), r.data.subarray(45)]) } : r);
    const rec = await recoverLoad(card, issuer, q, init, randomBytes(8));
    expect(rec).toMatchObject({ verified: false, credited: false });
  });

  it('requestZeroValueLoad gives a fresh S1 over the current state, with P2 = 01 and LTYPE 81', async () => {
    const c = newCard(CARD_PROFILES.des, 1000);
    const q = req(100);
    const chal = randomBytes(8);
    const e = await requestZeroValueLoad(c.ch, q, chal);
    expect(e).toMatchObject({ enquiry: true, purse: 'money' });
    expect(e.s1Fields).toMatchObject({ loadType: LoadType.ENQUIRY, amount: 0, loadTxnId: chal, balance: 1000 });
    expect((await issuer.verifyEnquiryS1(e.s1Fields, e.s1, Buffer.from(q.loadTxnId))).valid).toBe(true);
  });
});
