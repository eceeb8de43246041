// Purse applet: INITIALIZE FOR LOAD (S1), CREDIT FOR LOAD (issuer S2, S3 + result code), points load, the
// zero-value enquiry of the failed-load recovery, GET CHALLENGE and UPDATE PARAMETERS; all through EmulatorChannel.

import { describe, expect, it } from 'vitest';
import {
  A,
  M,
  POINTS,
  PROFILES,
  enquiry,
  freshLtxid,
  initLoadCommand,
  issuerS2,
  load,
  newCard,
  purchase,
  s1Fields,
  setRawState,
  snapshot,
  update,
  updateCommand,
  variant,
} from './helpers.ts';

const LOAD = A.LoadP2.LOAD;
const ENQ = A.LoadP2.ENQUIRY;

describe('INITIALIZE FOR LOAD', () => {
  it('returns the card data, a fresh CRND, the last-load record and an S1 the issuer verifies; nothing persistent changes', async () => {
    const tc = await newCard(PROFILES.des, { balance: 1330, state: { counter: 44 } });
    const before = snapshot(tc);
    const cmd = initLoadCommand(tc, { amount: 5000 });
    const r = await tc.host.initLoad(0, LOAD, cmd);
    expect(r.sw).toBe(0x9000);
    expect(r.res).toMatchObject({
      cardId: '9990010000000017', alg: 1, keyVersion: 1, counter: 44, balance: 1330, maxBalance: 50000, currency: 978, exponent: 2,
      expiry: '20281231', lastLoadTxnId: Buffer.alloc(8), lastLoadCounter: 0, lastLoadAmount: 0,
    });
    expect(M.verifyLoadS1(tc.kL, s1Fields(cmd, r.res!, M.LoadType.LOAD), r.res!.s1)).toBe(true);
    expect(snapshot(tc)).toBe(before);
  });

  it('draws a new CRND at every INITIALIZE', async () => {
    const tc = await newCard(PROFILES.des);
    const cmd = initLoadCommand(tc, { amount: 100 });
    const a = (await tc.host.initLoad(0, LOAD, cmd)).res!;
    const b = (await tc.host.initLoad(0, LOAD, cmd)).res!;
    expect(a.cardChallenge.equals(b.cardChallenge)).toBe(false);
    expect(a.s1.equals(b.s1)).toBe(false);
  });

  it('S1 covers the request: the issuer rejects it for any other amount, date, time or LTXID', async () => {
    const tc = await newCard(PROFILES.des);
    const cmd = initLoadCommand(tc, { amount: 100 });
    const res = (await tc.host.initLoad(0, LOAD, cmd)).res!;
    const f = s1Fields(cmd, res, M.LoadType.LOAD);
    for (const change of [{ amount: 101 }, { date: '20260117' }, { time: '091501' }, { loadTxnId: freshLtxid() }, { counter: 1 }, { balance: 1 }]) {
      expect(M.verifyLoadS1(tc.kL, { ...f, ...change }, res.s1)).toBe(false);
    }
  });

  it('refuses, in order: blocked 9405, currency 9403, amount 9408, expired 9402, over the maximum 9404, counter 9407', async () => {
    const tc = await newCard(PROFILES.des, { balance: 49000, state: { status: A.PurseStatus.BLOCKED } });
    const before = snapshot(tc);
    const sw = async (spec: Parameters<typeof initLoadCommand>[1]) => (await tc.host.initLoad(0, LOAD, initLoadCommand(tc, spec))).sw;
    expect(await sw({ amount: 0, currency: 840, date: '20300101' })).toBe(0x9405);
    setRawState(tc.applet, { status: 0 });
    expect(await sw({ amount: 0, currency: 840, date: '20300101' })).toBe(0x9403);
    expect(await sw({ amount: 0, exponent: 0 })).toBe(0x9403);
    expect(await sw({ amount: 0, date: '20300101' })).toBe(0x9408);
    expect(await sw({ amount: 2000, date: '20300101' })).toBe(0x9402);
    expect(await sw({ amount: 1001 })).toBe(0x9404);
    expect(await sw({ amount: 1000 })).toBe(0x9000); // exactly up to the maximum
    setRawState(tc.applet, { counter: 0xffffffff });
    expect(await sw({ amount: 1 })).toBe(0x9407);
    setRawState(tc.applet, { counter: 0 });
    expect(snapshot(tc)).toBe(before.replace('"status":{"n":1}', '"status":{"n":0}'));
  });

  it('checks P1/P2 (6A86), the points purse (6A88), Lc (6700) and encodings (6A80)', async () => {
    const tc = await newCard(PROFILES.des);
    const data = A.encodeInitLoadCommand(initLoadCommand(tc, { amount: 1 }));
    expect((await tc.host.initLoad(2, LOAD, data)).sw).toBe(0x6a86);
    expect((await tc.host.initLoad(0, 2, data)).sw).toBe(0x6a86);
    expect((await tc.host.initLoad(1, LOAD, data)).sw).toBe(0x6a88);
    expect((await tc.host.initLoad(0, LOAD, data.subarray(1))).sw).toBe(0x6700);
    const bad = Buffer.from(data);
    bad[4] = 0x0a; // CUR not BCD
    expect((await tc.host.initLoad(0, LOAD, bad)).sw).toBe(0x6a80);
    const badTime = Buffer.from(data);
    badTime[11] = 0x24; // hour 24
    expect((await tc.host.initLoad(0, LOAD, badTime)).sw).toBe(0x6a80);
  });
});

describe('CREDIT FOR LOAD', () => {
  it('credits exactly the amount, counter + 1, records the load, returns result 00 and an S3 the issuer verifies', async () => {
    const tc = await newCard(PROFILES.des, { balance: 1330, state: { counter: 44 } });
    const r = await load(tc, { amount: 5000 });
    expect(r.s1Valid).toBe(true);
    expect(r.creditSw).toBe(0x9000);
    expect(r.res).toMatchObject({ result: M.LoadResult.CREDITED, newCounter: 45, newBalance: 6330 });
    expect(r.s3Valid).toBe(true);
    expect(await tc.host.readPurseData()).toMatchObject({
      balance: 6330, counter: 45, lastLoadTxnId: r.cmd.loadTxnId, lastLoadCounter: 45, lastLoadAmount: 5000,
    });
  });

  it('works on the AES suite', async () => {
    const tc = await newCard(PROFILES.aes);
    const r = await load(tc, { amount: 50000 });
    expect(r.res).toMatchObject({ result: 0, newBalance: 50000, newCounter: 1 });
    expect(r.s3Valid).toBe(true);
  });

  it('a bad S2 gives result 01 with a signed S3 (9000) and changes nothing', async () => {
    const tc = await newCard(PROFILES.des, { balance: 1330, state: { counter: 44 } });
    const before = snapshot(tc);
    const r = await load(tc, { amount: 5000 }, false, (s2) => Buffer.alloc(8, s2[0]! ^ 0x55));
    expect(r.creditSw).toBe(0x9000);
    expect(r.res).toMatchObject({ result: M.LoadResult.S2_INVALID, newCounter: 44, newBalance: 1330 });
    expect(r.s3Valid).toBe(true);
    expect(snapshot(tc)).toBe(before);
  });

  it('never exceeds the maximum balance: result 02 if the purse filled up after INITIALIZE (defence in depth)', async () => {
    const tc = await newCard(PROFILES.des, { balance: 40000 });
    const cmd = initLoadCommand(tc, { amount: 10000 });
    const init = (await tc.host.initLoad(0, LOAD, cmd)).res!;
    const { s2 } = issuerS2(tc, s1Fields(cmd, init, M.LoadType.LOAD), init.s1);
    setRawState(tc.applet, { balance: 40001 }); // raw change inside the session
    const before = snapshot(tc);
    const r = await tc.host.credit(0, s2);
    expect(r.res).toMatchObject({ result: M.LoadResult.MAX_BALANCE_EXCEEDED, newBalance: 40001, newCounter: 0 });
    expect(snapshot(tc)).toBe(before);
  });

  it('result 04 when blocked and 03 when expired inside the session (defence in depth); the S2 check comes first', async () => {
    for (const [raw, result] of [
      [{ status: A.PurseStatus.BLOCKED }, M.LoadResult.PURSE_BLOCKED],
      [{ expiry: 20260101 }, M.LoadResult.CARD_EXPIRED],
    ] as const) {
      const tc = await newCard(PROFILES.des);
      const cmd = initLoadCommand(tc, { amount: 100 });
      const init = (await tc.host.initLoad(0, LOAD, cmd)).res!;
      const { s2, s2Fields } = issuerS2(tc, s1Fields(cmd, init, M.LoadType.LOAD), init.s1);
      setRawState(tc.applet, raw);
      const r = (await tc.host.credit(0, s2)).res!;
      expect(r).toMatchObject({ result, newBalance: 0, newCounter: 0 });
      expect(M.verifyLoadS3(tc.kL, M.loadS3FieldsFor(s2Fields, result, 0, 0), r.s3)).toBe(true);
      const again = (await tc.host.initLoad(0, ENQ, { ...cmd, amount: 0 })).sw;
      expect(again).toBe(0x9000);
    }
  });

  it('needs a LOAD session with the same P1, not an enquiry (6985); one attempt per INITIALIZE', async () => {
    const tc = await newCard(variant(PROFILES.des, { points: POINTS }));
    expect((await tc.host.credit(0, Buffer.alloc(8))).sw).toBe(0x6985);
    const cmd = initLoadCommand(tc, { amount: 100 });
    const init = (await tc.host.initLoad(0, LOAD, cmd)).res!;
    const { s2 } = issuerS2(tc, s1Fields(cmd, init, M.LoadType.LOAD), init.s1);
    expect((await tc.host.credit(1, s2)).sw).toBe(0x6985); // P1 mismatch consumes the session
    expect((await tc.host.credit(0, s2)).sw).toBe(0x6985);
    await tc.host.initLoad(0, ENQ, { ...cmd, amount: 0 });
    expect((await tc.host.credit(0, s2)).sw).toBe(0x6985);
    expect((await tc.host.readPurseData()).balance).toBe(0);
  });

  it('checks P1/P2 (6A86) and Lc (6700)', async () => {
    const tc = await newCard(PROFILES.des);
    await tc.host.initLoad(0, LOAD, initLoadCommand(tc, { amount: 1 }));
    expect((await tc.host.tx(0x80, 0x42, 0, 1, Buffer.alloc(8), 256)).sw).toBe(0x6a86);
    await tc.host.initLoad(0, LOAD, initLoadCommand(tc, { amount: 1 }));
    expect((await tc.host.credit(0, Buffer.alloc(7))).sw).toBe(0x6700);
  });

  it('a new INITIALIZE FOR LOAD replaces the session: the S2 of the earlier session is refused (result 01)', async () => {
    const tc = await newCard(PROFILES.des);
    const cmd = initLoadCommand(tc, { amount: 100 });
    const first = (await tc.host.initLoad(0, LOAD, cmd)).res!;
    const { s2 } = issuerS2(tc, s1Fields(cmd, first, M.LoadType.LOAD), first.s1);
    await tc.host.initLoad(0, LOAD, cmd); // identical request, new CRND
    expect((await tc.host.credit(0, s2)).res!.result).toBe(M.LoadResult.S2_INVALID);
    expect((await tc.host.readPurseData()).balance).toBe(0);
  });

  it('the counter moves only with a credit: purchases and loads share it', async () => {
    const tc = await newCard(PROFILES.des, { balance: 1000 });
    await purchase(tc, { amount: 100 });
    await load(tc, { amount: 200 });
    await purchase(tc, { txType: M.TxType.AUTHENTICATION, amount: 0 });
    await load(tc, { amount: 1 }, false, () => Buffer.alloc(8));
    expect(await tc.host.readPurseData()).toMatchObject({ counter: 3, balance: 1100, lastLoadCounter: 2, lastLoadAmount: 200 });
  });
});

describe('points load', () => {
  const profile = variant(PROFILES.des, { points: { ...POINTS, balance: 750 } });

  it('credits the points purse (LTYPE 02), counter + 1, money balance unchanged', async () => {
    const tc = await newCard(profile, { balance: 5000 });
    const r = await load(tc, { amount: 1000 }, true);
    expect(r.init).toMatchObject({ balance: 750, maxBalance: 1_000_000, currency: 7001, exponent: 0 });
    expect(r.s1Valid).toBe(true);
    expect(r.res).toMatchObject({ result: 0, newBalance: 1750, newCounter: 1 });
    expect(r.s3Valid).toBe(true);
    expect(await tc.host.readPurseData()).toMatchObject({ balance: 5000, pointsBalance: 1750, counter: 1, lastLoadAmount: 1000 });
  });

  it('never exceeds the maximum points (9404); the wrong programme is 9403; no points purse is 6A88', async () => {
    const tc = await newCard(profile);
    expect((await tc.host.initLoad(1, LOAD, initLoadCommand(tc, { amount: 999_251 }, true))).sw).toBe(0x9404);
    expect((await tc.host.initLoad(1, LOAD, initLoadCommand(tc, { amount: 999_250 }, true))).sw).toBe(0x9000);
    expect((await tc.host.initLoad(1, LOAD, initLoadCommand(tc, { amount: 1, currency: 7002 }, true))).sw).toBe(0x9403);
    const plain = await newCard(PROFILES.des);
    expect((await plain.host.initLoad(1, LOAD, initLoadCommand(tc, { amount: 1 }, true))).sw).toBe(0x6a88);
  });

  it('an S2 for a money load is refused by a points CREDIT (LTYPE is in S2)', async () => {
    const tc = await newCard(profile);
    const cmd = initLoadCommand(tc, { amount: 10 }, true);
    const init = (await tc.host.initLoad(1, LOAD, cmd)).res!;
    const f = { ...s1Fields(cmd, init, M.LoadType.POINTS_LOAD), loadType: M.LoadType.LOAD };
    const s2 = M.loadS2(tc.kL, M.loadS2FieldsFromS1(f));
    expect((await tc.host.credit(1, s2)).res!.result).toBe(M.LoadResult.S2_INVALID);
  });
});

describe('zero-value enquiry and failed-load recovery (seed 003 negative-result handling)', () => {
  it('answers with a fresh S1 (LTYPE 81) over the current state, without changing anything', async () => {
    const tc = await newCard(PROFILES.des, { balance: 1330, state: { counter: 44 } });
    const before = snapshot(tc);
    const e = await enquiry(tc, initLoadCommand(tc, { amount: 5000 }));
    expect(e.sw).toBe(0x9000);
    expect(e.s1Valid).toBe(true);
    expect(e.res).toMatchObject({ counter: 44, balance: 1330 });
    expect(snapshot(tc)).toBe(before);
  });

  it('needs amount 0 (9408) and the purse currency (9403); answers even when blocked or expired or full', async () => {
    const tc = await newCard(PROFILES.des, { balance: 50000, state: { status: A.PurseStatus.BLOCKED, expiry: 20200101, counter: 0xffffffff } });
    const cmd = initLoadCommand(tc, { amount: 0 });
    expect((await tc.host.initLoad(0, ENQ, { ...cmd, amount: 1 })).sw).toBe(0x9408);
    expect((await tc.host.initLoad(0, ENQ, { ...cmd, currency: 840 })).sw).toBe(0x9403);
    const e = await enquiry(tc, cmd);
    expect(e.sw).toBe(0x9000);
    expect(e.s1Valid).toBe(true);
  });

  it('real failure: the CREDIT never reached the card; the enquiry proves it and the old S2 is dead forever', async () => {
    const tc = await newCard(PROFILES.des, { balance: 1330, state: { counter: 44 } });
    const cmd = initLoadCommand(tc, { amount: 5000 });
    const init = (await tc.host.initLoad(0, LOAD, cmd)).res!;
    const { s2 } = issuerS2(tc, s1Fields(cmd, init, M.LoadType.LOAD), init.s1);
    // ... the CREDIT FOR LOAD is lost on the way; the load server asks:
    const e = await enquiry(tc, cmd);
    expect(e.s1Valid).toBe(true);
    expect(e.res!.lastLoadTxnId.equals(cmd.loadTxnId)).toBe(false);
    expect(e.res!.counter).toBe(init.counter); // not loaded
    // the original S2 can never be used: not after the enquiry, not after a new identical INITIALIZE
    expect((await tc.host.credit(0, s2)).sw).toBe(0x6985);
    await tc.host.initLoad(0, LOAD, cmd);
    expect((await tc.host.credit(0, s2)).res!.result).toBe(M.LoadResult.S2_INVALID);
    expect(await tc.host.readPurseData()).toMatchObject({ balance: 1330, counter: 44 });
  });

  it('hidden success: the card was credited but the response was lost; the enquiry shows the load (LTXID, counter, amount)', async () => {
    const tc = await newCard(PROFILES.des, { balance: 1330, state: { counter: 44 } });
    const r = await load(tc, { amount: 5000 }); // pretend r.res never reached the issuer
    const e = await enquiry(tc, r.cmd);
    expect(e.s1Valid).toBe(true);
    expect(e.res).toMatchObject({ lastLoadTxnId: r.cmd.loadTxnId, lastLoadCounter: 45, lastLoadAmount: 5000, counter: 45, balance: 6330 });
  });

  it('a client cannot fake the enquiry answer: a recorded S1 does not verify for a fresh LTXID', async () => {
    const tc = await newCard(PROFILES.des);
    const cmd = initLoadCommand(tc, { amount: 100 });
    const e1 = await enquiry(tc, cmd);
    const replayed = s1Fields({ ...e1.cmd, loadTxnId: freshLtxid() }, e1.res!, M.LoadType.ENQUIRY);
    expect(M.verifyLoadS1(tc.kL, replayed, e1.res!.s1)).toBe(false);
  });

  it('points enquiry uses LTYPE 82', async () => {
    const tc = await newCard(variant(PROFILES.des, { points: POINTS }));
    const e = await enquiry(tc, initLoadCommand(tc, { amount: 0 }, true), true);
    expect(e.s1Valid).toBe(true);
  });
});

describe('GET CHALLENGE and UPDATE PARAMETERS', () => {
  it('GET CHALLENGE returns 8 fresh random bytes; Le must be 8, P1P2 0000', async () => {
    const tc = await newCard();
    const a = await tc.host.getChallenge();
    const b = await tc.host.getChallenge();
    expect(a.length).toBe(8);
    expect(a.equals(b)).toBe(false);
    expect((await tc.host.tx(0x00, 0x84, 0, 0, undefined, 16)).sw).toBe(0x6700);
    expect((await tc.host.tx(0x00, 0x84, 0, 0)).sw).toBe(0x6700);
    expect((await tc.host.tx(0x00, 0x84, 1, 0, undefined, 8)).sw).toBe(0x6a86);
  });

  it('sets the maximum balance and the expiry under the update MAC; the counter does not move', async () => {
    const tc = await newCard(PROFILES.des, { balance: 100, state: { counter: 45 } });
    const sw = await update(tc, { flags: M.UpdateFlags.SET_MAX_BALANCE | M.UpdateFlags.SET_EXPIRY, maxBalance: 100000, expiry: '20301231' });
    expect(sw).toBe(0x9000);
    expect(await tc.host.readPurseData()).toMatchObject({ maxBalance: 100000, expiry: '20301231', counter: 45, balance: 100, currency: 978 });
  });

  it('ignores (but MACs) the fields whose flag is clear', async () => {
    const tc = await newCard(PROFILES.des);
    expect(await update(tc, { flags: M.UpdateFlags.SET_EXPIRY, maxBalance: 7, expiry: '20291231', currency: 840, exponent: 0 })).toBe(0x9000);
    expect(await tc.host.readPurseData()).toMatchObject({ maxBalance: 50000, expiry: '20291231', currency: 978, exponent: 2 });
  });

  it('changes the currency only with an empty purse (6985 otherwise)', async () => {
    const tc = await newCard(PROFILES.des, { balance: 1 });
    expect(await update(tc, { flags: M.UpdateFlags.SET_CURRENCY, currency: 840, exponent: 2 })).toBe(0x6985);
    setRawState(tc.applet, { balance: 0 });
    expect(await update(tc, { flags: M.UpdateFlags.SET_CURRENCY, currency: 826, exponent: 2 })).toBe(0x9000);
    expect(await tc.host.readPurseData()).toMatchObject({ currency: 826, exponent: 2 });
  });

  it('blocks and unblocks the purse: a blocked purse refuses DEBIT (9405) and loads (9405)', async () => {
    const tc = await newCard(PROFILES.des, { balance: 500 });
    expect(await update(tc, { flags: M.UpdateFlags.BLOCK_PURSE })).toBe(0x9000);
    expect((await tc.host.readPurseData()).status).toBe(A.PurseStatus.BLOCKED);
    expect((await purchase(tc, { amount: 1 })).sw).toBe(0x9405);
    expect((await load(tc, { amount: 1 })).initSw).toBe(0x9405);
    expect(await update(tc, { flags: M.UpdateFlags.UNBLOCK_PURSE })).toBe(0x9000);
    expect((await purchase(tc, { amount: 1 })).sw).toBe(0x9000);
  });

  it('a bad MAC is 6982 and changes nothing', async () => {
    const tc = await newCard(PROFILES.des);
    const before = snapshot(tc);
    const cmd = await updateCommand(tc, { flags: M.UpdateFlags.SET_MAX_BALANCE, maxBalance: 1 });
    cmd.mac[7]! ^= 0x01;
    expect(await tc.host.update(cmd)).toBe(0x6982);
    expect(snapshot(tc)).toBe(before);
  });

  it('needs GET CHALLENGE directly before (6985); the challenge is single use', async () => {
    const tc = await newCard(PROFILES.des);
    const cmd = await updateCommand(tc, { flags: M.UpdateFlags.SET_MAX_BALANCE, maxBalance: 1000 });
    expect(await tc.host.update(cmd)).toBe(0x9000);
    expect(await tc.host.update(cmd)).toBe(0x6985); // replay, no challenge
    await tc.host.getChallenge();
    expect(await tc.host.update(cmd)).toBe(0x6982); // replay, another challenge
    const cmd2 = await updateCommand(tc, { flags: M.UpdateFlags.SET_MAX_BALANCE, maxBalance: 2000 });
    await tc.host.readPurseData(); // ends the challenge
    expect(await tc.host.update(cmd2)).toBe(0x6985);
    expect((await tc.host.readPurseData()).maxBalance).toBe(1000);
  });

  it('refuses reserved flags, block+unblock, and a maximum below the balance (6A80) after the MAC check', async () => {
    const tc = await newCard(PROFILES.des, { balance: 500 });
    const before = snapshot(tc);
    expect(await update(tc, { flags: 0x40 })).toBe(0x6a80);
    expect(await update(tc, { flags: 0x80 | M.UpdateFlags.SET_EXPIRY })).toBe(0x6a80);
    expect(await update(tc, { flags: M.UpdateFlags.BLOCK_PURSE | M.UpdateFlags.UNBLOCK_PURSE })).toBe(0x6a80);
    expect(await update(tc, { flags: M.UpdateFlags.SET_MAX_BALANCE, maxBalance: 499 })).toBe(0x6a80);
    expect(snapshot(tc)).toBe(before);
    expect(await update(tc, { flags: M.UpdateFlags.SET_MAX_BALANCE, maxBalance: 500 })).toBe(0x9000);
  });

  it('checks P1/P2 (6A86), Lc (6700) and encodings (6A80)', async () => {
    const tc = await newCard(PROFILES.des);
    const data = A.encodeUpdateCommand(await updateCommand(tc, { flags: 0 }));
    expect((await tc.host.tx(0x80, 0x58, 0, 1, data)).sw).toBe(0x6a86);
    await tc.host.getChallenge();
    expect(await tc.host.update(data.subarray(0, 19))).toBe(0x6700);
    await tc.host.getChallenge();
    const bad = Buffer.from(data);
    bad[5] = 0x20;
    bad[6] = 0x30;
    bad[7] = 0x13; // month 13
    expect(await tc.host.update(bad)).toBe(0x6a80);
  });
});

describe('over T=0 (61xx / 6Cxx response shaping through the channel)', () => {
  it('a purchase, a load, an enquiry and an update work unchanged', async () => {
    const tc = await newCard(PROFILES.aes, { balance: 1000, card: { protocol: 'T=0' } });
    expect(tc.card.protocol).toBe('T=0');
    const p = await purchase(tc, { amount: 250 });
    expect(p.s3Valid).toBe(true);
    const l = await load(tc, { amount: 500 });
    expect(l.s3Valid).toBe(true);
    expect((await enquiry(tc, l.cmd)).s1Valid).toBe(true);
    expect(await update(tc, { flags: M.UpdateFlags.SET_EXPIRY, expiry: '20291231' })).toBe(0x9000);
    expect(await tc.host.readPurseData()).toMatchObject({ balance: 1250, counter: 2, expiry: '20291231' });
  });
});
