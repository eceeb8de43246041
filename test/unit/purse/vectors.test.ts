// The purse applet reproduces fixtures/vectors/purse-iep.json: the card accepts the vector S2s and produces the
// vector S1s and S3s byte for byte (card state set to the vector's counter/balance; CRND/RND forced to the
// vector's values through the card's random source). The card keys come from `card issue` diversification and
// must equal the vectors' keys.

import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { A, M, PIN, POINTS, PROFILES, forceRandom, hex, newCard, repoPath, variant, type TestCard } from './helpers.ts';
import { buildPurseInstallParams } from '../../../card-applet-sim/applets/purse/issuing.ts';
import { KEYS } from './helpers.ts';

interface Vector {
  name: string;
  layout: string;
  alg: number;
  keyUsage: string;
  keyOwner: string;
  key: string;
  fields: Record<string, unknown>;
  input: string;
  mac: string;
}
const VECTORS: Vector[] = JSON.parse(readFileSync(repoPath('fixtures/vectors/purse-iep.json'), 'utf8')).vectors;

const h = (s: unknown) => Buffer.from(s as string, 'hex');
const num = (v: unknown) => v as number;
const str = (v: unknown) => v as string;

for (const suite of ['3DES', 'AES'] as const) {
  const covered = new Set<string>();
  const vec = (name: string): Vector => {
    covered.add(`${name} (${suite})`);
    const v = VECTORS.find((x) => x.name === `${name} (${suite})`);
    if (!v) throw new Error(`vector '${name} (${suite})' missing`);
    return v;
  };
  const base = suite === '3DES' ? PROFILES.des : PROFILES.aes;

  describe(`purse vectors reproduced by the applet (${suite})`, () => {
    it('card issue diversifies exactly the vectors\' card keys', () => {
      const p = buildPurseInstallParams(base, KEYS);
      expect(hex(p.keys.purchase.key)).toBe(vec('purchase S2').key);
      expect(hex(p.keys.load.key)).toBe(vec('load S1').key);
      expect(hex(p.keys.update.key)).toBe(vec('UPDATE PARAMETERS MAC').key);
    });

    /** DEBIT with the vector's S2; the card's S3 must be the vector's S3. */
    async function debitVector(tc: TestCard, s2v: Vector, s3v: Vector, p1: number): Promise<void> {
      const f = s2v.fields;
      const init = await tc.host.initPurchase(p1);
      expect(init.startup).toMatchObject({ alg: f.alg, keyVersion: f.keyVersion, cardId: f.cardId, counter: f.counter });
      const r = await tc.host.debit(num(f.txType), {
        psamId: str(f.psamId),
        psamTxn: num(f.psamTxn),
        amount: num(f.amount),
        currency: num(f.currency),
        exponent: num(f.exponent),
        date: str(f.date),
        time: str(f.time),
        location: h(f.location),
        s2: h(s2v.mac),
      });
      expect(r.sw).toBe(0x9000);
      expect(r.res!.newCounter).toBe(s3v.fields.newCounter);
      expect(r.res!.cvr).toBe(s3v.fields.cvr);
      expect(hex(r.res!.s3)).toBe(s3v.mac);
    }

    it('purchase: accepts the vector S2 and answers the vector S3 (= early-release expected S3)', async () => {
      const s2 = vec('purchase S2');
      const tc = await newCard(base, { balance: 5000, state: { counter: num(s2.fields.counter) } });
      await debitVector(tc, s2, vec('purchase S3 = early-release expected S3'), A.PurseP1.MONEY);
      expect((await tc.host.readPurseData()).balance).toBe(5000 - 420);
    });

    it('authentication with a verified PIN: the vector S3 with CVR 03', async () => {
      const s2 = vec('authentication S2');
      const tc = await newCard(variant(base, { pin: PIN }), { balance: 5000, state: { counter: num(s2.fields.counter) } });
      expect(await tc.host.verify(PIN.value)).toBe(0x9000);
      await debitVector(tc, s2, vec('authentication S3 (PIN verified)'), A.PurseP1.MONEY);
      expect((await tc.host.readPurseData()).balance).toBe(5000);
    });

    it('points debit: the vector S3 with CVR 04', async () => {
      const s2 = vec('points debit S2');
      const tc = await newCard(variant(base, { points: { ...POINTS, balance: 1000 } }), { state: { counter: num(s2.fields.counter) } });
      await debitVector(tc, s2, vec('points debit S3'), A.PurseP1.POINTS);
      expect((await tc.host.readPurseData()).pointsBalance).toBe(750);
    });

    /** INITIALIZE FOR LOAD with the vector's request; S1 must be the vector's. */
    async function initLoadVector(tc: TestCard, s1v: Vector, p1: number, p2: number): Promise<A.InitLoadResponse> {
      const f = s1v.fields;
      forceRandom(tc.card, h(f.cardChallenge));
      const r = await tc.host.initLoad(p1, p2, {
        amount: num(f.amount), currency: num(f.currency), exponent: num(f.exponent), date: str(f.date), time: str(f.time), loadTxnId: h(f.loadTxnId),
      });
      expect(r.sw).toBe(0x9000);
      expect(r.res).toMatchObject({ counter: f.counter, balance: f.balance, maxBalance: f.maxBalance, expiry: f.expiry, lastLoadCounter: f.lastLoadCounter });
      expect(hex(r.res!.s1)).toBe(s1v.mac);
      return r.res!;
    }

    it('load: the vector S1, then the vector S2 is accepted and the card answers the vector S3 (credited)', async () => {
      const s1 = vec('load S1');
      const tc = await newCard(base, { balance: num(s1.fields.balance), state: { counter: num(s1.fields.counter) } });
      await initLoadVector(tc, s1, A.PurseP1.MONEY, A.LoadP2.LOAD);
      const r = await tc.host.credit(A.PurseP1.MONEY, h(vec('load S2').mac));
      const s3 = vec('load S3, credited');
      expect(r.res).toMatchObject({ result: s3.fields.result, newCounter: s3.fields.newCounter, newBalance: s3.fields.newBalance });
      expect(hex(r.res!.s3)).toBe(s3.mac);

      // then the zero-value enquiry: "load did happen"
      const e = vec('zero-value enquiry S1, load did happen');
      const er = await initLoadVector(tc, e, A.PurseP1.MONEY, A.LoadP2.ENQUIRY);
      expect(hex(er.lastLoadTxnId)).toBe(e.fields.lastLoadTxnId);
    });

    it('load with a wrong S2: the vector S3 with result 01; then the enquiry "did not happen"', async () => {
      const s1 = vec('load S1');
      const tc = await newCard(base, { balance: num(s1.fields.balance), state: { counter: num(s1.fields.counter) } });
      await initLoadVector(tc, s1, A.PurseP1.MONEY, A.LoadP2.LOAD);
      const wrong = h(vec('load S2').mac);
      wrong[0]! ^= 0xff;
      const r = await tc.host.credit(A.PurseP1.MONEY, wrong);
      const s3 = vec('load S3, S2 invalid');
      expect(r.res).toMatchObject({ result: M.LoadResult.S2_INVALID, newCounter: s3.fields.newCounter, newBalance: s3.fields.newBalance });
      expect(hex(r.res!.s3)).toBe(s3.mac);
      await initLoadVector(tc, vec('zero-value enquiry S1, load did not happen'), A.PurseP1.MONEY, A.LoadP2.ENQUIRY);
    });

    it('points load: the vector S1 (LTYPE 02)', async () => {
      const s1 = vec('points load S1');
      const tc = await newCard(variant(base, { points: { ...POINTS, balance: num(s1.fields.balance) } }), { state: { counter: num(s1.fields.counter) } });
      await initLoadVector(tc, s1, A.PurseP1.POINTS, A.LoadP2.LOAD);
    });

    it('UPDATE PARAMETERS: the vector MAC over the vector challenge is accepted', async () => {
      const u = vec('UPDATE PARAMETERS MAC');
      const f = u.fields;
      const tc = await newCard(base, { state: { counter: num(f.counter) } });
      forceRandom(tc.card, h(f.challenge));
      expect(hex(await tc.host.getChallenge())).toBe(str(f.challenge));
      const sw = await tc.host.update({ flags: num(f.flags), maxBalance: num(f.maxBalance), expiry: str(f.expiry), currency: num(f.currency), exponent: num(f.exponent), mac: h(u.mac) });
      expect(sw).toBe(0x9000);
      expect(await tc.host.readPurseData()).toMatchObject({ maxBalance: f.maxBalance, expiry: f.expiry, counter: f.counter });
    });

    it(`covers every ${suite} vector of purse-iep.json`, () => {
      const all = VECTORS.filter((v) => v.name.endsWith(`(${suite})`)).map((v) => v.name);
      expect(all.length).toBeGreaterThanOrEqual(14);
      expect([...covered].sort()).toEqual([...all].sort());
    });
  });
}
