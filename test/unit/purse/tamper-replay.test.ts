// Tamper and replay: any single-byte change in DEBIT data, DEBIT S2, the load request or CREDIT S2 is refused and
// nothing persistent changes (balance, counter, points, last-load record: the applet's whole store); a replayed
// DEBIT or CREDIT (same counter) is refused. Each case starts from the same card image.

import { describe, expect, it } from 'vitest';
import { A, M, POINTS, PROFILES, forceRandom, fromImage, imageOf, initLoadCommand, issuerS2, load, newCard, psamDebit, purchase, s1Fields, snapshot, variant } from './helpers.ts';

const DELTAS = [0x01, 0x10, 0x80, 0xff]; // XOR masks: every byte position gets 4 different single-byte changes

describe('tamper: DEBIT', () => {
  for (const [label, txType, p1] of [
    ['purchase', M.TxType.PURCHASE, A.PurseP1.MONEY],
    ['authentication', M.TxType.AUTHENTICATION, A.PurseP1.MONEY],
    ['points debit', M.TxType.POINTS_DEBIT, A.PurseP1.POINTS],
  ] as const) {
    it(`${label}: every single-byte change of the 42 data bytes (incl. S2) is refused (6982 / 6A80), nothing changes`, async () => {
      const base = await newCard(variant(PROFILES.des, { points: { ...POINTS, balance: 900 } }), { balance: 5000, state: { counter: 41 } });
      const image = imageOf(base);
      const init = await base.host.initPurchase(p1);
      const spec = txType === M.TxType.AUTHENTICATION ? { txType, amount: 0, currency: 999, exponent: 0 } : { txType, amount: 420 };
      const good = A.encodeDebitCommand(psamDebit(base, init.startup!, spec).cmd);
      let cases = 0;
      for (let i = 0; i < good.length; i++) {
        for (const d of DELTAS) {
          const tc = await fromImage(image);
          const before = snapshot(tc);
          await tc.host.initPurchase(p1);
          const bad = Buffer.from(good);
          bad[i]! ^= d;
          const r = await tc.host.debit(txType, bad);
          expect([0x6982, 0x6a80], `byte ${i} ^ ${d.toString(16)}`).toContain(r.sw);
          expect(snapshot(tc)).toBe(before);
          cases++;
        }
      }
      expect(cases).toBe(42 * DELTAS.length);
      // the untampered command works on the same image
      const tc = await fromImage(image);
      await tc.host.initPurchase(p1);
      expect((await tc.host.debit(txType, good)).sw).toBe(0x9000);
    });
  }

  it('changing the header (TXTYPE in P1) under the same S2 is refused', async () => {
    const tc = await newCard(PROFILES.des, { balance: 5000 });
    const before = snapshot(tc);
    const init = await tc.host.initPurchase();
    const data = A.encodeDebitCommand(psamDebit(tc, init.startup!, { amount: 0, currency: 999, exponent: 0, txType: M.TxType.AUTHENTICATION }).cmd);
    expect((await tc.host.debit(M.TxType.PURCHASE, data)).sw).toBe(0x6982); // signed as 02, sent as 01
    await tc.host.initPurchase();
    expect((await tc.host.debit(M.TxType.AUTHENTICATION, data)).sw).toBe(0x9000); // as signed
    expect(snapshot(tc)).not.toBe(before); // only the genuine one moved the counter
    expect((await tc.host.readPurseData()).counter).toBe(1);
  });
});

describe('tamper: load', () => {
  it('every single-byte change of the CREDIT S2 gives result 01 (signed) and changes nothing', async () => {
    const base = await newCard(PROFILES.aes, { balance: 1330, state: { counter: 44 } });
    const image = imageOf(base);
    const CRND = Buffer.from('A1B2C3D4E5F60718', 'hex');
    const cmd = initLoadCommand(base, { amount: 5000 });
    forceRandom(base.card, CRND);
    const init = (await base.host.initLoad(0, 0, cmd)).res!;
    const { s2, s2Fields } = issuerS2(base, s1Fields(cmd, init, M.LoadType.LOAD), init.s1);
    for (let i = 0; i < 8; i++) {
      for (const d of DELTAS) {
        const tc = await fromImage(image);
        const before = snapshot(tc);
        forceRandom(tc.card, CRND);
        await tc.host.initLoad(0, 0, cmd);
        const bad = Buffer.from(s2);
        bad[i]! ^= d;
        const r = await tc.host.credit(0, bad);
        expect(r.sw).toBe(0x9000);
        expect(r.res).toMatchObject({ result: M.LoadResult.S2_INVALID, newCounter: 44, newBalance: 1330 });
        expect(M.verifyLoadS3(tc.kL, M.loadS3FieldsFor(s2Fields, 1, 44, 1330), r.res!.s3)).toBe(true);
        expect(snapshot(tc)).toBe(before);
      }
    }
    const tc = await fromImage(image);
    forceRandom(tc.card, CRND);
    await tc.host.initLoad(0, 0, cmd);
    expect((await tc.host.credit(0, s2)).res!.result).toBe(M.LoadResult.CREDITED);
  });

  it('every single-byte change of the load request (INITIALIZE FOR LOAD data) voids the issuer S2, even with the same CRND', async () => {
    const base = await newCard(PROFILES.des, { balance: 1330, state: { counter: 44 } });
    const image = imageOf(base);
    const CRND = Buffer.from('0102030405060708', 'hex');
    const cmd = initLoadCommand(base, { amount: 5000 });
    forceRandom(base.card, CRND);
    const init = (await base.host.initLoad(0, 0, cmd)).res!;
    const { s2 } = issuerS2(base, s1Fields(cmd, init, M.LoadType.LOAD), init.s1);
    const good = A.encodeInitLoadCommand(cmd);
    let refusedAtInit = 0;
    for (let i = 0; i < good.length; i++) {
      for (const d of DELTAS) {
        const tc = await fromImage(image);
        const before = snapshot(tc);
        const bad = Buffer.from(good);
        bad[i]! ^= d;
        forceRandom(tc.card, CRND);
        const r = await tc.host.initLoad(0, 0, bad);
        if (r.sw !== 0x9000) {
          refusedAtInit++;
        } else {
          const c = await tc.host.credit(0, s2);
          expect(c.res!.result, `byte ${i} ^ ${d.toString(16)}`).toBe(M.LoadResult.S2_INVALID);
        }
        expect(snapshot(tc)).toBe(before);
      }
    }
    expect(refusedAtInit).toBeLessThan(good.length * DELTAS.length); // most reach CREDIT and are refused there
  });
});

describe('replay', () => {
  it('a replayed DEBIT is refused: 6985 without a session, 6982 after a new INITIALIZE (S2 covers the old counter)', async () => {
    const tc = await newCard(PROFILES.des, { balance: 5000 });
    const init = await tc.host.initPurchase();
    const { cmd } = psamDebit(tc, init.startup!, { amount: 420 });
    expect((await tc.host.debit(1, cmd)).sw).toBe(0x9000);
    const after = snapshot(tc);
    expect((await tc.host.debit(1, cmd)).sw).toBe(0x6985);
    await tc.host.initPurchase();
    expect((await tc.host.debit(1, cmd)).sw).toBe(0x6982);
    await tc.ch.reset();
    await tc.host.select();
    await tc.host.initPurchase();
    expect((await tc.host.debit(1, cmd)).sw).toBe(0x6982);
    expect(snapshot(tc)).toBe(after);
    expect(await tc.host.readPurseData()).toMatchObject({ balance: 4580, counter: 1 });
  });

  it('a replayed authentication or points DEBIT is refused the same way', async () => {
    const tc = await newCard(variant(PROFILES.des, { points: { ...POINTS, balance: 100 } }));
    const p = await purchase(tc, { txType: M.TxType.POINTS_DEBIT, amount: 10 });
    expect(p.sw).toBe(0x9000);
    const init = await tc.host.initPurchase(A.PurseP1.POINTS);
    const replay = { ...psamDebit(tc, { ...init.startup!, counter: 0 }, { txType: 3, amount: 10 }).cmd };
    expect((await tc.host.debit(3, replay)).sw).toBe(0x6982);
    expect((await tc.host.readPurseData()).pointsBalance).toBe(90);
  });

  it('a replayed CREDIT is refused: 6985 without a session, result 01 after a new identical INITIALIZE (even with the same CRND)', async () => {
    const tc = await newCard(PROFILES.des, { balance: 0 });
    const CRND = Buffer.from('1111111111111111', 'hex');
    const cmd = initLoadCommand(tc, { amount: 5000 });
    forceRandom(tc.card, CRND);
    const init = (await tc.host.initLoad(0, 0, cmd)).res!;
    const { s2 } = issuerS2(tc, s1Fields(cmd, init, M.LoadType.LOAD), init.s1);
    expect((await tc.host.credit(0, s2)).res!.result).toBe(M.LoadResult.CREDITED);
    const after = snapshot(tc);
    expect((await tc.host.credit(0, s2)).sw).toBe(0x6985);
    forceRandom(tc.card, CRND); // the worst case: the card's random repeats
    await tc.host.initLoad(0, 0, cmd);
    expect((await tc.host.credit(0, s2)).res).toMatchObject({ result: M.LoadResult.S2_INVALID, newBalance: 5000, newCounter: 1 });
    expect(snapshot(tc)).toBe(after);
  });

  it('loads and purchases in a row: every S2 is used once, value moves exactly once each', async () => {
    const tc = await newCard(PROFILES.aes);
    for (let i = 0; i < 5; i++) {
      const l = await load(tc, { amount: 1000 });
      expect(l.res!.result).toBe(0);
      const p = await purchase(tc, { amount: 300 });
      expect(p.sw).toBe(0x9000);
    }
    expect(await tc.host.readPurseData()).toMatchObject({ balance: 3500, counter: 10, lastLoadCounter: 9 });
  });
});
