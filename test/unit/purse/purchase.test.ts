// Purse applet: identity, READ PURSE DATA, INITIALIZE FOR PURCHASE, DEBIT (purchase, zero-amount authentication,
// points debit), the session rules and the cardholder PIN; all through EmulatorChannel.

import { describe, expect, it } from 'vitest';
import { A, M, PIN, POINTS, PROFILES, AID, hex, newCard, psamDebit, purchase, setRawState, snapshot, update, variant } from './helpers.ts';

const EUR = 978;

describe('purse applet: identity and dispatch', () => {
  it('SELECT answers the FCI of the spec (6F 13 84 0C AID A5 03 80 01 01)', async () => {
    const tc = await newCard();
    const r = await tc.host.select();
    expect(r.sw).toBe(0x9000);
    expect(hex(r.data)).toBe(`6F13840C${hex(AID)}A503800101`);
  });

  it('answers 6E00 for a CLA other than 00/80 and for the wrong one of the two; 6D00 for an unknown INS', async () => {
    const tc = await newCard();
    expect((await tc.host.tx(0x84, 0x5c, 0, 0, undefined, 256)).sw).toBe(0x6e00);
    expect((await tc.host.tx(0x00, 0x5c, 0, 0, undefined, 256)).sw).toBe(0x6e00); // purse command with CLA 00
    expect((await tc.host.tx(0x80, 0x84, 0, 0, undefined, 8)).sw).toBe(0x6e00); // GET CHALLENGE with CLA 80
    expect((await tc.host.tx(0x80, 0x20, 0, 0x80, A.encodePinBlock('1234'))).sw).toBe(0x6e00); // VERIFY with CLA 80
    expect((await tc.host.tx(0x80, 0x52, 0, 0, undefined, 256)).sw).toBe(0x6d00);
    expect((await tc.host.tx(0x00, 0xb0, 0, 0, undefined, 256)).sw).toBe(0x6d00);
  });
});

describe('READ PURSE DATA', () => {
  it('returns the personalisation and the purse state (60 bytes)', async () => {
    const tc = await newCard(PROFILES.loyalty, { balance: 1234 });
    const r = await tc.host.tx(0x80, 0x5c, 0, 0, undefined, 256);
    expect(r.sw).toBe(0x9000);
    expect(r.data.length).toBe(60);
    expect(A.decodePurseData(r.data)).toEqual({
      cardId: '9990010000000033',
      alg: 0x01,
      status: 0,
      authMode: M.AuthMode.PIN_REQUIRED | M.AuthMode.POINTS_PURSE,
      expiry: '20281231',
      currency: EUR,
      exponent: 2,
      balance: 1234,
      maxBalance: 50000,
      counter: 0,
      purchaseKeyVersion: 1,
      loadKeyVersion: 1,
      updateKeyVersion: 1,
      pointsProgramme: 7001,
      pointsBalance: 0,
      pointsMax: 1_000_000,
      pinTriesLeft: 3,
      lastLoadTxnId: Buffer.alloc(8),
      lastLoadCounter: 0,
      lastLoadAmount: 0,
    });
  });

  it('shows PINTRIES FF and no points purse on a card without them', async () => {
    const pd = await (await newCard(PROFILES.aes)).host.readPurseData();
    expect(pd).toMatchObject({ alg: 0x02, pinTriesLeft: 0xff, pointsProgramme: 0, pointsMax: 0, authMode: 0 });
  });

  it('checks P1/P2 (6A86) and Lc (6700)', async () => {
    const tc = await newCard();
    expect((await tc.host.tx(0x80, 0x5c, 1, 0, undefined, 256)).sw).toBe(0x6a86);
    expect((await tc.host.tx(0x80, 0x5c, 0, 0, Buffer.from([1]), 256)).sw).toBe(0x6700);
  });
});

describe('INITIALIZE FOR PURCHASE', () => {
  it('returns the start-up data (27 bytes) and changes nothing persistent', async () => {
    const tc = await newCard(PROFILES.des, { balance: 5000, state: { counter: 41 } });
    const before = snapshot(tc);
    const r = await tc.host.initPurchase();
    expect(r.sw).toBe(0x9000);
    expect(r.raw.length).toBe(27);
    expect(r.startup).toEqual({
      alg: 1, keyVersion: 1, cardId: '9990010000000017', expiry: '20281231', balance: 5000, currency: EUR, exponent: 2, authMode: 0, counter: 41, status: 0,
    });
    expect(snapshot(tc)).toBe(before);
  });

  it('P1 = 01 gives the points purse: points balance, programme, exponent 0', async () => {
    const tc = await newCard(variant(PROFILES.des, { points: { ...POINTS, balance: 750 } }), { balance: 100 });
    const r = await tc.host.initPurchase(A.PurseP1.POINTS);
    expect(r.startup).toMatchObject({ balance: 750, currency: 7001, exponent: 0, authMode: M.AuthMode.POINTS_PURSE });
  });

  it('P1 = 01 without a points purse is 6A88; other P1/P2 6A86; data 6700', async () => {
    const tc = await newCard();
    expect((await tc.host.initPurchase(A.PurseP1.POINTS)).sw).toBe(0x6a88);
    expect((await tc.host.initPurchase(2)).sw).toBe(0x6a86);
    expect((await tc.host.tx(0x80, 0x50, 0, 1, undefined, 256)).sw).toBe(0x6a86);
    expect((await tc.host.tx(0x80, 0x50, 0, 0, Buffer.from([0]), 256)).sw).toBe(0x6700);
  });

  it('answers for a blocked or expired card; STATUS and EXPIRY tell the host', async () => {
    const tc = await newCard(PROFILES.des, { state: { status: A.PurseStatus.BLOCKED, expiry: 20200101 } });
    const r = await tc.host.initPurchase();
    expect(r.sw).toBe(0x9000);
    expect(r.startup).toMatchObject({ status: 1, expiry: '20200101' });
  });
});

describe('DEBIT: purchase', () => {
  it('verifies S2, decrements the balance by exactly the amount, increments the counter, returns S3 = the expected S3', async () => {
    const tc = await newCard(PROFILES.des, { balance: 5000, state: { counter: 41 } });
    const r = await purchase(tc, { amount: 420 });
    expect(r.sw).toBe(0x9000);
    expect(r.res).toMatchObject({ newCounter: 42, newBalance: 4580, cvr: 0 });
    expect(r.s3Valid).toBe(true);
    const pd = await tc.host.readPurseData();
    expect(pd.balance).toBe(4580);
    expect(pd.counter).toBe(42);
  });

  it('works on the AES suite too', async () => {
    const tc = await newCard(PROFILES.aes, { balance: 1000 });
    const r = await purchase(tc, { amount: 999 });
    expect(r.sw).toBe(0x9000);
    expect(r.s3Valid).toBe(true);
    expect(await tc.host.readPurseData()).toMatchObject({ balance: 1, counter: 1 });
  });

  it('lets the whole balance be spent, but not one unit more (9401), changing nothing', async () => {
    const tc = await newCard(PROFILES.des, { balance: 500 });
    const before = snapshot(tc);
    expect((await purchase(tc, { amount: 501 })).sw).toBe(0x9401);
    expect(snapshot(tc)).toBe(before);
    expect((await purchase(tc, { amount: 500 })).sw).toBe(0x9000);
    expect(await tc.host.readPurseData()).toMatchObject({ balance: 0, counter: 1 });
  });

  it('a bad S2 is 6982 and changes nothing', async () => {
    const tc = await newCard(PROFILES.des, { balance: 5000 });
    const before = snapshot(tc);
    const init = await tc.host.initPurchase();
    const { cmd } = psamDebit(tc, init.startup!, { amount: 100 });
    cmd.s2 = Buffer.from(cmd.s2);
    cmd.s2[0]! ^= 1;
    expect((await tc.host.debit(M.TxType.PURCHASE, cmd)).sw).toBe(0x6982);
    expect(snapshot(tc)).toBe(before);
  });

  it('an S2 made with another card key (wrong key version / other card) is 6982', async () => {
    const tc = await newCard(PROFILES.des, { balance: 5000 });
    const other = await newCard(PROFILES.aes);
    const init = await tc.host.initPurchase();
    const { cmd } = psamDebit({ ...tc, kP: other.kP }, init.startup!, { amount: 100 });
    expect((await tc.host.debit(M.TxType.PURCHASE, cmd)).sw).toBe(0x6982);
    const init2 = await tc.host.initPurchase();
    const s2 = psamDebit(tc, { ...init2.startup!, keyVersion: 2 }, { amount: 100 }).cmd;
    expect((await tc.host.debit(M.TxType.PURCHASE, s2)).sw).toBe(0x6982);
  });

  it('an expired card (DATE > EXPIRY, from the authenticated S2) is 9402; the last valid day still works', async () => {
    const tc = await newCard(PROFILES.des, { balance: 5000 });
    const before = snapshot(tc);
    expect((await purchase(tc, { amount: 100, date: '20290101' })).sw).toBe(0x9402);
    expect(snapshot(tc)).toBe(before);
    expect((await purchase(tc, { amount: 100, date: '20281231' })).sw).toBe(0x9000);
  });

  it('a wrong currency or exponent is 9403 and changes nothing', async () => {
    const tc = await newCard(PROFILES.des, { balance: 5000 });
    const before = snapshot(tc);
    expect((await purchase(tc, { amount: 100, currency: 840 })).sw).toBe(0x9403);
    expect((await purchase(tc, { amount: 100, exponent: 3 })).sw).toBe(0x9403);
    expect(snapshot(tc)).toBe(before);
  });

  it('the four refusals have distinct status words', async () => {
    const tc = await newCard(PROFILES.des, { balance: 100 });
    const init = await tc.host.initPurchase();
    const bad = psamDebit(tc, init.startup!, { amount: 50 }).cmd;
    bad.s2 = Buffer.alloc(8);
    const sws = [
      (await tc.host.debit(1, bad)).sw,
      (await purchase(tc, { amount: 50, date: '20300101' })).sw,
      (await purchase(tc, { amount: 50, currency: 826 })).sw,
      (await purchase(tc, { amount: 101 })).sw,
    ];
    expect(sws).toEqual([0x6982, 0x9402, 0x9403, 0x9401]);
    expect(new Set(sws).size).toBe(4);
  });

  it('a blocked purse is 9405 (after S2), a zero amount 9408, an exhausted counter 9407', async () => {
    const tc = await newCard(PROFILES.des, { balance: 5000 });
    setRawState(tc.applet, { status: A.PurseStatus.BLOCKED });
    expect((await purchase(tc, { amount: 100 })).sw).toBe(0x9405);
    setRawState(tc.applet, { status: A.PurseStatus.ACTIVE });
    expect((await purchase(tc, { amount: 0 })).sw).toBe(0x9408);
    setRawState(tc.applet, { counter: 0xffffffff });
    const before = snapshot(tc);
    expect((await purchase(tc, { amount: 100 })).sw).toBe(0x9407);
    expect(snapshot(tc)).toBe(before);
  });

  it('runs the checks in the order of the spec (S2 first, then status, amount, currency, expiry, PIN, value)', async () => {
    const tc = await newCard(variant(PROFILES.des, { pin: PIN }), { balance: 10, state: { status: A.PurseStatus.BLOCKED } });
    // everything wrong at once: each fix reveals the next check
    expect((await purchase(tc, { amount: 0, currency: 840, date: '20300101' })).sw).toBe(0x9405);
    setRawState(tc.applet, { status: 0 });
    expect((await purchase(tc, { amount: 0, currency: 840, date: '20300101' })).sw).toBe(0x9408);
    expect((await purchase(tc, { amount: 50, currency: 840, date: '20300101' })).sw).toBe(0x9403);
    expect((await purchase(tc, { amount: 50, date: '20300101' })).sw).toBe(0x9402);
    expect((await purchase(tc, { amount: 50 })).sw).toBe(0x9406);
    expect(await tc.host.verify('1234')).toBe(0x9000);
    expect((await purchase(tc, { amount: 50 })).sw).toBe(0x9401);
  });

  it('checks P1/P2 (6A86), Lc (6700) and field encodings (6A80)', async () => {
    const tc = await newCard(PROFILES.des, { balance: 5000 });
    const init = await tc.host.initPurchase();
    const data = A.encodeDebitCommand(psamDebit(tc, init.startup!, { amount: 1 }).cmd);
    expect((await tc.host.debit(4, data)).sw).toBe(0x6a86);
    await tc.host.initPurchase();
    expect((await tc.host.tx(0x80, 0x54, 1, 1, data, 256)).sw).toBe(0x6a86);
    await tc.host.initPurchase();
    expect((await tc.host.debit(1, data.subarray(0, 41))).sw).toBe(0x6700);
    await tc.host.initPurchase();
    const badDate = Buffer.from(data);
    badDate[19] = 0xaa; // DATE not BCD
    expect((await tc.host.debit(1, badDate)).sw).toBe(0x6a80);
  });
});

describe('DEBIT: session rules', () => {
  it('needs INITIALIZE FOR PURCHASE first (6985)', async () => {
    const tc = await newCard(PROFILES.des, { balance: 5000 });
    const init = await tc.host.initPurchase();
    const { cmd } = psamDebit(tc, init.startup!, { amount: 100 });
    await tc.host.select(); // SELECT ends the session
    expect((await tc.host.debit(1, cmd)).sw).toBe(0x6985);
  });

  it('any other command in between ends the session', async () => {
    const tc = await newCard(PROFILES.des, { balance: 5000 });
    const init = await tc.host.initPurchase();
    const { cmd } = psamDebit(tc, init.startup!, { amount: 100 });
    await tc.host.readPurseData();
    expect((await tc.host.debit(1, cmd)).sw).toBe(0x6985);
    expect((await tc.host.readPurseData()).balance).toBe(5000);
  });

  it('a reset ends the session', async () => {
    const tc = await newCard(PROFILES.des, { balance: 5000 });
    const init = await tc.host.initPurchase();
    const { cmd } = psamDebit(tc, init.startup!, { amount: 100 });
    await tc.ch.reset();
    await tc.host.select();
    expect((await tc.host.debit(1, cmd)).sw).toBe(0x6985);
  });

  it('one attempt per INITIALIZE: a failed DEBIT consumes the session, a correct S2 after it is 6985', async () => {
    const tc = await newCard(PROFILES.des, { balance: 5000 });
    const init = await tc.host.initPurchase();
    const { cmd } = psamDebit(tc, init.startup!, { amount: 100 });
    expect((await tc.host.debit(1, { ...cmd, s2: Buffer.alloc(8) })).sw).toBe(0x6982);
    expect((await tc.host.debit(1, cmd)).sw).toBe(0x6985);
    expect((await tc.host.readPurseData()).balance).toBe(5000);
  });

  it('the purse of the session must match: points session for TXTYPE 03, money session for 01/02', async () => {
    const tc = await newCard(variant(PROFILES.des, { points: { ...POINTS, balance: 500 } }), { balance: 5000 });
    const money = await tc.host.initPurchase(A.PurseP1.MONEY);
    expect((await tc.host.debit(3, psamDebit(tc, money.startup!, { txType: 3, amount: 10, currency: 7001, exponent: 0 }).cmd)).sw).toBe(0x6985);
    const pts = await tc.host.initPurchase(A.PurseP1.POINTS);
    expect((await tc.host.debit(1, psamDebit(tc, pts.startup!, { amount: 10, currency: EUR, exponent: 2 }).cmd)).sw).toBe(0x6985);
    const pts2 = await tc.host.initPurchase(A.PurseP1.POINTS);
    expect((await tc.host.debit(2, psamDebit(tc, pts2.startup!, { txType: 2, amount: 0, currency: 999, exponent: 0 }).cmd)).sw).toBe(0x6985);
  });

  it('S2 is bound to TXTYPE: a purchase S2 presented as another type is 6982', async () => {
    const tc = await newCard(PROFILES.des, { balance: 5000 });
    const init = await tc.host.initPurchase();
    const { cmd } = psamDebit(tc, init.startup!, { amount: 0, currency: 999, exponent: 0 }); // S2 made for TXTYPE 01
    expect((await tc.host.debit(M.TxType.AUTHENTICATION, cmd)).sw).toBe(0x6982);
  });
});

describe('DEBIT: zero-amount authentication (TXTYPE 02, currency 0999)', () => {
  it('increments the counter, produces S3, leaves the balance unchanged', async () => {
    const tc = await newCard(PROFILES.des, { balance: 777, state: { counter: 9 } });
    const r = await purchase(tc, { txType: M.TxType.AUTHENTICATION, amount: 0 });
    expect(r.sw).toBe(0x9000);
    expect(r.res).toMatchObject({ newCounter: 10, newBalance: 777 });
    expect(r.s3Valid).toBe(true);
    expect(await tc.host.readPurseData()).toMatchObject({ balance: 777, counter: 10 });
  });

  it('works with an empty purse', async () => {
    const tc = await newCard(PROFILES.aes, { balance: 0 });
    expect((await purchase(tc, { txType: M.TxType.AUTHENTICATION, amount: 0 })).sw).toBe(0x9000);
    expect(await tc.host.readPurseData()).toMatchObject({ balance: 0, counter: 1 });
  });

  it('refuses a non-zero amount, another currency or exponent (9408), changing nothing', async () => {
    const tc = await newCard(PROFILES.des, { balance: 5000 });
    const before = snapshot(tc);
    const auth = M.TxType.AUTHENTICATION;
    expect((await purchase(tc, { txType: auth, amount: 1 })).sw).toBe(0x9408);
    expect((await purchase(tc, { txType: auth, amount: 0, currency: EUR, exponent: 0 })).sw).toBe(0x9408);
    expect((await purchase(tc, { txType: auth, amount: 0, currency: 999, exponent: 2 })).sw).toBe(0x9408);
    expect(snapshot(tc)).toBe(before);
  });

  it('a purchase in the authentication currency is 9403 (TXTYPE 01 needs the purse currency)', async () => {
    const tc = await newCard(PROFILES.des, { balance: 5000 });
    expect((await purchase(tc, { amount: 5, currency: 999, exponent: 0 })).sw).toBe(0x9403);
  });
});

describe('DEBIT: points debit (TXTYPE 03)', () => {
  const profile = variant(PROFILES.des, { points: { ...POINTS, balance: 750 } });

  it('decrements the points balance, not the money balance; counter + 1; S3 valid', async () => {
    const tc = await newCard(profile, { balance: 5000 });
    const r = await purchase(tc, { txType: M.TxType.POINTS_DEBIT, amount: 250 });
    expect(r.sw).toBe(0x9000);
    expect(r.res).toMatchObject({ newCounter: 1, newBalance: 500, cvr: M.AuthMode.POINTS_PURSE });
    expect(r.s3Valid).toBe(true);
    expect(await tc.host.readPurseData()).toMatchObject({ balance: 5000, pointsBalance: 500, counter: 1 });
  });

  it('refuses the wrong programme or a non-zero exponent (9403), more points than held (9401), zero points (9408)', async () => {
    const tc = await newCard(profile, { balance: 5000 });
    const before = snapshot(tc);
    const pd = M.TxType.POINTS_DEBIT;
    expect((await purchase(tc, { txType: pd, amount: 10, currency: 7002 })).sw).toBe(0x9403);
    expect((await purchase(tc, { txType: pd, amount: 10, exponent: 2 })).sw).toBe(0x9403);
    expect((await purchase(tc, { txType: pd, amount: 751 })).sw).toBe(0x9401);
    expect((await purchase(tc, { txType: pd, amount: 0 })).sw).toBe(0x9408);
    expect(snapshot(tc)).toBe(before);
  });
});

describe('VERIFY (cardholder PIN)', () => {
  it('is 6A88 on a card without a PIN', async () => {
    const tc = await newCard(PROFILES.des);
    expect(await tc.host.verify('1234')).toBe(0x6a88);
    expect(await tc.host.verify()).toBe(0x6a88);
  });

  it('a PIN-required card refuses DEBIT until VERIFY (9406); then CVR = 03 goes into S3', async () => {
    const tc = await newCard(variant(PROFILES.des, { pin: PIN }), { balance: 5000 });
    expect((await purchase(tc, { amount: 100 })).sw).toBe(0x9406);
    expect(await tc.host.verify('1234')).toBe(0x9000);
    const r = await purchase(tc, { amount: 100 });
    expect(r.sw).toBe(0x9000);
    expect(r.res!.cvr).toBe(M.AuthMode.PIN_REQUIRED | M.AuthMode.PIN_VERIFIED);
    expect(r.s3Valid).toBe(true);
  });

  it('a PIN that is not required still shows up in CVR when verified', async () => {
    const tc = await newCard(variant(PROFILES.des, { pin: { ...PIN, required: false } }), { balance: 5000 });
    expect((await purchase(tc, { amount: 1 })).res!.cvr).toBe(0);
    await tc.host.verify('1234');
    expect((await purchase(tc, { amount: 1 })).res!.cvr).toBe(M.AuthMode.PIN_VERIFIED);
  });

  it('case 1 tells the state: 63C3 before, 9000 once verified', async () => {
    const tc = await newCard(variant(PROFILES.des, { pin: PIN }));
    expect(await tc.host.verify()).toBe(0x63c3);
    expect(await tc.host.verify('1234')).toBe(0x9000);
    expect(await tc.host.verify()).toBe(0x9000);
  });

  it('counts wrong tries (63C2, 63C1, 63C0), then blocks (6983) even for the right PIN', async () => {
    const tc = await newCard(variant(PROFILES.des, { pin: PIN }));
    expect(await tc.host.verify('0000')).toBe(0x63c2);
    expect((await tc.host.readPurseData()).pinTriesLeft).toBe(2);
    expect(await tc.host.verify('4321')).toBe(0x63c1);
    expect(await tc.host.verify('12345')).toBe(0x63c0);
    expect(await tc.host.verify('1234')).toBe(0x6983);
    expect(await tc.host.verify()).toBe(0x6983);
    expect((await tc.host.readPurseData()).pinTriesLeft).toBe(0);
  });

  it('the right PIN restores the try counter to the limit', async () => {
    const tc = await newCard(variant(PROFILES.des, { pin: PIN }));
    expect(await tc.host.verify('9999')).toBe(0x63c2);
    expect(await tc.host.verify('1234')).toBe(0x9000);
    expect((await tc.host.readPurseData()).pinTriesLeft).toBe(3);
  });

  it('a wrong PIN clears an earlier verification', async () => {
    const tc = await newCard(variant(PROFILES.des, { pin: PIN }), { balance: 100 });
    await tc.host.verify('1234');
    await tc.host.verify('1111');
    expect((await purchase(tc, { amount: 1 })).sw).toBe(0x9406);
  });

  it('the verification lasts until SELECT or reset', async () => {
    const tc = await newCard(variant(PROFILES.des, { pin: PIN }), { balance: 100 });
    await tc.host.verify('1234');
    await tc.host.select();
    expect(await tc.host.verify()).toBe(0x63c3);
    await tc.host.verify('1234');
    await tc.ch.reset();
    await tc.host.select();
    expect((await tc.host.initPurchase()).startup!.authMode).toBe(M.AuthMode.PIN_REQUIRED);
  });

  it('checks P1/P2 (6A86), Lc (6700) and the PIN block format (6A80) without costing a try', async () => {
    const tc = await newCard(variant(PROFILES.des, { pin: PIN }));
    expect((await tc.host.tx(0x00, 0x20, 0, 0x81, A.encodePinBlock('1234'))).sw).toBe(0x6a86);
    expect(await tc.host.verify(Buffer.from('241234FFFFFF', 'hex'))).toBe(0x6700);
    expect(await tc.host.verify(Buffer.from('2412341FFFFFFFFF', 'hex'))).toBe(0x6a80); // digits after N
    expect(await tc.host.verify(Buffer.from('3412340FFFFFFFFF', 'hex'))).toBe(0x6a80); // not format 2
    expect(await tc.host.verify(Buffer.from('2312 3FFFFFFFFFFF'.replace(' ', ''), 'hex'))).toBe(0x6a80); // N = 3
    expect((await tc.host.readPurseData()).pinTriesLeft).toBe(3);
  });

  it('VERIFY between INITIALIZE and DEBIT ends the purchase session (verify first)', async () => {
    const tc = await newCard(variant(PROFILES.des, { pin: PIN }), { balance: 100 });
    const init = await tc.host.initPurchase();
    await tc.host.verify('1234');
    expect((await tc.host.debit(1, psamDebit(tc, init.startup!, { amount: 1 }).cmd)).sw).toBe(0x6985);
  });

  it('UPDATE PARAMETERS flag 08 unblocks a blocked PIN', async () => {
    const tc = await newCard(variant(PROFILES.des, { pin: PIN }));
    setRawState(tc.applet, { pinTriesLeft: 0 });
    expect(await tc.host.verify('1234')).toBe(0x6983);
    expect(await update(tc, { flags: M.UpdateFlags.RESET_PIN_TRY_COUNTER })).toBe(0x9000);
    expect((await tc.host.readPurseData()).pinTriesLeft).toBe(3);
    expect(await tc.host.verify('1234')).toBe(0x9000);
  });
});
