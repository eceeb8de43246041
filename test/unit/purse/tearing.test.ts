// Tearing: for a purchase (INITIALIZE FOR PURCHASE + DEBIT) and a load (INITIALIZE FOR LOAD + CREDIT FOR LOAD),
// cut power at every persistent write point in turn, k = 1..N exhaustively, each k from the same card image, the
// flow run by the host through EmulatorChannel. After the reboot the purse must hold exactly the old state or
// exactly the new one (the whole persistent store, never a mix; never a balance changed without the counter), and
// the host must be able to tell which from READ PURSE DATA (and, for a load, the zero-value enquiry of the
// failed-load recovery, verified by the issuer).

import { describe, expect, it } from 'vitest';
import { TransportError } from '../../../src/transport/errors.ts';
import type { CardImage } from '../../../card-applet-sim/index.ts';
import { A, M, PIN, POINTS, PROFILES, enquiry, fromImage, imageOf, initLoadCommand, load, newCard, purchase, snapshot, update, variant, type TestCard } from './helpers.ts';

interface TearResult {
  /** Write points of the flow (k = N cuts at its last one). */
  n: number;
  outcomes: ('old' | 'new')[];
}

/**
 * Run `flow` on a fresh card from `image` with the power cut at the k-th write, for k = 1, 2, ... until the flow
 * completes untorn; after each cut: reboot, SELECT, and `check(tc, k)` returns 'old' or 'new'.
 */
async function tearEveryWrite(image: CardImage, flow: (tc: TestCard) => Promise<unknown>, check: (tc: TestCard, k: number) => Promise<'old' | 'new'>): Promise<TearResult> {
  const outcomes: ('old' | 'new')[] = [];
  for (let k = 1; k < 100; k++) {
    const tc = await fromImage(image);
    tc.card.armPowerLoss(k);
    let torn = false;
    try {
      await flow(tc);
    } catch (e) {
      if (!(e instanceof TransportError) || e.code !== 'CARD_REMOVED') throw e;
      torn = true;
    }
    if (!torn) {
      expect(tc.card.isPowered).toBe(true);
      tc.card.disarmPowerLoss();
      return { n: k - 1, outcomes };
    }
    expect(tc.card.isPowered).toBe(false);
    await tc.ch.reset();
    expect((await tc.host.select()).sw).toBe(0x9000);
    outcomes.push(await check(tc, k));
    expect(tc.card.lastException).toBeUndefined();
  }
  throw new Error('the flow never completed');
}

/** The whole store after an untorn run of `flow` from `image`. */
async function untornState(image: CardImage, flow: (tc: TestCard) => Promise<unknown>): Promise<string> {
  const tc = await fromImage(image);
  await flow(tc);
  return snapshot(tc);
}

describe('tearing: purchase (DEBIT)', () => {
  const cases = [
    { label: 'purchase 4.20 (3DES)', profile: PROFILES.des, flow: (tc: TestCard) => purchase(tc, { amount: 420 }), n: 3, delta: { balance: -420, points: 0 } },
    { label: 'purchase 4.20 (AES)', profile: PROFILES.aes, flow: (tc: TestCard) => purchase(tc, { amount: 420 }), n: 3, delta: { balance: -420, points: 0 } },
    { label: 'zero-amount authentication', profile: PROFILES.des, flow: (tc: TestCard) => purchase(tc, { txType: M.TxType.AUTHENTICATION, amount: 0 }), n: 2, delta: { balance: 0, points: 0 } },
    {
      label: 'points debit',
      profile: variant(PROFILES.des, { points: { ...POINTS, balance: 900 } }),
      flow: (tc: TestCard) => purchase(tc, { txType: M.TxType.POINTS_DEBIT, amount: 250 }),
      n: 3,
      delta: { balance: 0, points: -250 },
    },
  ];

  for (const c of cases) {
    it(`${c.label}: cut at every write (k = 1..${c.n}) leaves old or new, and the counter tells which`, async () => {
      const base = await newCard(c.profile, { balance: 5000, state: { counter: 41 } });
      const image = imageOf(base);
      const oldState = snapshot(base);
      const old = await base.host.readPurseData();
      const newState = await untornState(image, c.flow);
      expect(newState).not.toBe(oldState);

      const r = await tearEveryWrite(image, c.flow, async (tc) => {
        const pd = await tc.host.readPurseData();
        const s = snapshot(tc);
        expect([oldState, newState]).toContain(s);
        if (pd.counter === old.counter) {
          // the host's verdict: not debited; the PSAM's unconfirmed record is void
          expect(pd.balance).toBe(old.balance);
          expect(pd.pointsBalance).toBe(old.pointsBalance);
          return 'old';
        }
        // the host's verdict: debited exactly once (S3 lost with the power, the counter proves it)
        expect(pd.counter).toBe(old.counter + 1);
        expect(pd.balance).toBe(old.balance + c.delta.balance);
        expect(pd.pointsBalance).toBe(old.pointsBalance + c.delta.points);
        return 'new';
      });
      expect(r.n).toBe(c.n);
      // cuts before the commit leave the old state, the cut at the commit the new one
      expect(r.outcomes).toEqual([...Array(c.n - 1).fill('old'), 'new']);
    });
  }

  it('with a PIN: VERIFY + INITIALIZE + DEBIT (k = 1..5); a cut inside VERIFY costs a try, never value', async () => {
    const base = await newCard(variant(PROFILES.des, { pin: PIN }), { balance: 5000, state: { counter: 7 } });
    const image = imageOf(base);
    const flow = async (tc: TestCard) => {
      expect(await tc.host.verify(PIN.value)).toBe(0x9000);
      return purchase(tc, { amount: 100 });
    };
    const r = await tearEveryWrite(image, flow, async (tc, k) => {
      const pd = await tc.host.readPurseData();
      expect(pd.pinTriesLeft).toBe(k === 1 ? 2 : 3); // cut right after the decrement: the try is spent
      if (pd.counter === 7) {
        expect(pd.balance).toBe(5000);
        return 'old';
      }
      expect(pd).toMatchObject({ counter: 8, balance: 4900 });
      return 'new';
    });
    expect(r.n).toBe(5);
    expect(r.outcomes).toEqual(['old', 'old', 'old', 'old', 'new']);
  });
});

describe('tearing: load (CREDIT FOR LOAD)', () => {
  for (const [label, profile, points] of [
    ['load 50.00 (3DES)', PROFILES.des, false],
    ['load 50.00 (AES)', PROFILES.aes, false],
    ['points load', variant(PROFILES.des, { points: { ...POINTS, balance: 750 } }), true],
  ] as const) {
    it(`${label}: cut at every write (k = 1..6) leaves old or new; the issuer's zero-value enquiry tells which`, async () => {
      const base = await newCard(profile, { balance: 1330, state: { counter: 44 } });
      const image = imageOf(base);
      const oldState = snapshot(base);
      const cmd = initLoadCommand(base, { amount: 5000 }, points);
      let issuedS2: Buffer = Buffer.alloc(0); // the S2 the issuer signed in the torn run
      const flow = (tc: TestCard) =>
        load(tc, { ...cmd }, points, (s2) => {
          issuedS2 = s2;
          return s2;
        });
      const newState = await untornState(image, flow);

      const r = await tearEveryWrite(image, flow, async (tc) => {
        const s = snapshot(tc);
        expect([oldState, newState]).toContain(s);
        const pd = await tc.host.readPurseData();
        // failed-load recovery: fresh LTXID, the original currency and date/time; S1 verified by the issuer
        const e = await enquiry(tc, cmd, points);
        expect(e.s1Valid).toBe(true);
        const credited = e.res!.lastLoadTxnId.equals(cmd.loadTxnId);
        const bal = points ? pd.pointsBalance : pd.balance;
        const oldBal = points ? 750 : 1330;
        if (credited) {
          // hidden success: settle the load
          expect(e.res).toMatchObject({ lastLoadCounter: 45, lastLoadAmount: 5000, counter: 45 });
          expect(bal).toBe(oldBal + 5000);
          expect(s).toBe(newState);
          return 'new';
        }
        // real failure: the counter is still the original S1's, the value never arrived, and the old S2 is dead
        expect(e.res!.counter).toBe(44);
        expect(bal).toBe(oldBal);
        expect(s).toBe(oldState);
        expect((await tc.host.credit(points ? 1 : 0, issuedS2)).sw).toBe(0x6985);
        expect((await tc.host.initLoad(points ? 1 : 0, 0, cmd)).sw).toBe(0x9000);
        expect((await tc.host.credit(points ? 1 : 0, issuedS2)).res!.result).toBe(M.LoadResult.S2_INVALID);
        expect(snapshot(tc)).toBe(oldState);
        return 'old';
      });
      expect(r.n).toBe(6);
      expect(r.outcomes).toEqual(['old', 'old', 'old', 'old', 'old', 'new']);
    });
  }
});

describe('tearing: UPDATE PARAMETERS', () => {
  it('several flags in one transaction: old or new, never some of them', async () => {
    const base = await newCard(PROFILES.des, { balance: 100 });
    const image = imageOf(base);
    const oldState = snapshot(base);
    const flow = (tc: TestCard) =>
      update(tc, { flags: M.UpdateFlags.SET_MAX_BALANCE | M.UpdateFlags.SET_EXPIRY | M.UpdateFlags.BLOCK_PURSE, maxBalance: 70000, expiry: '20301231' });
    const newState = await untornState(image, flow);
    const r = await tearEveryWrite(image, flow, async (tc) => {
      const s = snapshot(tc);
      expect([oldState, newState]).toContain(s);
      return s === oldState ? 'old' : 'new';
    });
    expect(r.n).toBe(4);
    expect(r.outcomes).toEqual(['old', 'old', 'old', 'new']);
    const pd = await (await fromImage(image)).host.readPurseData();
    expect(pd.status).toBe(A.PurseStatus.ACTIVE);
  });
});
