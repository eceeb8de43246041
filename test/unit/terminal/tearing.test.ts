// Tearing across whole flows: cut power in the card at every persistent write of a purchase (and of a load),
// and in the PSAM at every persistent write of a purchase, exhaustively (k = 1..N until the flow completes
// untorn). After each reboot: the card's balance and counter are consistent, value is conserved against the
// PSAM log (card balance decrease == PSAM-logged amount, or neither) and the host can tell what happened
// (PurchaseError.cardDebited + resolvePurchase; recoverLoad for loads).
import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { BatchRecordStatus } from '../../../src/crypto/purse-mac.ts';
import { EmulatorChannel } from '../../../src/transport/emulator-channel.ts';
import {
  purchase,
  PurchaseError,
  readBatch,
  readPurse,
  recoverLoad,
  resolvePurchase,
  runLoad,
  LoadError,
  type PurchaseResult,
  type PurchaseVariant,
  psamVerifyS3,
  selectPsam,
} from '../../../src/terminal/index.ts';
import { CARD_PROFILES, EUR, LOC, NOW, TODAY, cardFromImage, cardToImage, newCard, newPsam, useDemoIssuer, type CardImage } from '../psam/helpers.ts';
import type { SimulatedCard } from '../../../card-applet-sim/index.ts';
import type { BatchRecord } from '../../../src/crypto/purse-mac.ts';

const AMOUNT = 420;
const at = { date: TODAY, time: NOW, location: LOC };

interface World {
  card: SimulatedCard;
  psam: SimulatedCard;
  cardCh: EmulatorChannel;
  psamCh: EmulatorChannel;
}

function world(cardImage: CardImage, psamImage: CardImage): World {
  const card = cardFromImage(cardImage);
  const psam = cardFromImage(psamImage);
  return { card, psam, cardCh: new EmulatorChannel(card), psamCh: new EmulatorChannel(psam) };
}

async function setup(pin = false) {
  const c = newCard(pin ? CARD_PROFILES.loyalty : CARD_PROFILES.des, 10_000);
  const p = await newPsam();
  // One earlier purchase, so the log and the card are not at their initial state.
  await purchase(c.ch, p.ch, { amount: 100, ...at, ...(pin ? { pin: '1234' } : {}) });
  return { cardImage: cardToImage(c.card), psamImage: cardToImage(p.card) };
}

/** The PSAM records of this transaction (card id + NEWCTR), in any batch. */
function recordsOf(all: BatchRecord[], cardId: string, newCounter: number): BatchRecord[] {
  return all.filter((r) => r.cardId === cardId && r.newCounter === newCounter && r.psamTxn !== 1);
}

/**
 * After a torn purchase and reboot: consistency, conservation, and what the host can tell. Returns a label of
 * what happened (for the coverage check).
 */
async function checkAfter(w: World, failure: PurchaseError | undefined, result: PurchaseResult | undefined, startBalance: number, startCounter: number, cardId: string): Promise<string> {
  if (!w.card.isPowered) w.card.powerOn();
  if (!w.psam.isPowered) w.psam.powerOn();
  const cardCh = new EmulatorChannel(w.card);
  const psamCh = new EmulatorChannel(w.psam);
  const purse = await readPurse(cardCh);
  const decrease = startBalance - purse.balance;
  // Balance and counter move together, by exactly the amount and one.
  expect([0, AMOUNT]).toContain(decrease);
  expect(purse.counter - startCounter).toBe(decrease === AMOUNT ? 1 : 0);

  const log = await readBatch(psamCh, 'open');
  const mine = recordsOf(log, cardId, startCounter + 1);
  expect(mine.length).toBeLessThanOrEqual(1);
  const rec = mine[0];
  // Never a confirmed record without the debit.
  if (rec?.status === BatchRecordStatus.CONFIRMED) expect(decrease).toBe(AMOUNT);
  // Never a debit the PSAM did not log (S2 leaves the PSAM only after its record is committed).
  if (decrease === AMOUNT) {
    expect(rec).toBeDefined();
    expect(rec!.amount).toBe(AMOUNT);
  }

  // What the host knew from the failure agrees with the card.
  if (!failure) {
    expect(decrease).toBe(AMOUNT);
    if (result!.psamConfirmed) {
      expect(rec!.status).toBe(BatchRecordStatus.CONFIRMED);
      return 'completed';
    }
    // Early release: proven by the expected S3, but posting S3 to the PSAM was cut (before or after its commit).
    // The host posts it again (idempotent when it was already confirmed).
    expect(result!.verifiedBy).toBe('expected-s3');
    await selectPsam(psamCh);
    await psamVerifyS3(psamCh, { psamTxn: result!.psamTxn, newCounter: result!.newCounter, cvr: result!.startup.authMode, s3: result!.s3 });
    expect(recordsOf(await readBatch(psamCh, 'open'), cardId, startCounter + 1)[0]!.status).toBe(BatchRecordStatus.CONFIRMED);
    return 'completed/S3 posted after reboot';
  }
  if (failure.cardDebited === 'no') expect(decrease).toBe(0);
  if (failure.cardDebited === 'yes') expect(decrease).toBe(AMOUNT);

  if (failure.stage === 'card-init') {
    // Stopped before the card sent its start-up data: no S2 was ever asked for.
    expect(decrease).toBe(0);
    expect(rec).toBeUndefined();
    return `${failure.outcome}/${failure.stage}/not debited/no record`;
  }
  // The host resolves it: the card's counter and the PSAM log, and the record confirmed when it can be.
  const res = await resolvePurchase(cardCh, psamCh, failure);
  expect(res.cardDebited).toBe(decrease === AMOUNT);
  const after = recordsOf(await readBatch(psamCh, 'open'), cardId, startCounter + 1)[0];
  // Value conserved against the PSAM log: the decrease equals the logged amount of this card transaction
  // (confirmed, or unconfirmed with the card counter at its NEWCTR), or there is neither.
  const logged = after && (after.status === BatchRecordStatus.CONFIRMED || purse.counter >= after.newCounter) ? after.amount : 0;
  expect(logged).toBe(decrease);
  if (failure.debitResponse && decrease === AMOUNT) expect(after!.status).toBe(BatchRecordStatus.CONFIRMED);
  return `${failure.outcome}/${failure.stage}/${decrease ? 'debited' : 'not debited'}/${after ? (after.status === 1 ? 'confirmed' : 'unconfirmed') : 'no record'}`;
}

async function tearLoop(where: 'card' | 'psam', variant: PurchaseVariant, pin = false): Promise<{ cuts: number; outcomes: Set<string> }> {
  const { cardImage, psamImage } = await setup(pin);
  const base = world(cardImage, psamImage);
  const start = await readPurse(base.cardCh);
  const outcomes = new Set<string>();
  for (let k = 1; ; k++) {
    const w = world(cardImage, psamImage);
    const victim = where === 'card' ? w.card : w.psam;
    victim.armPowerLoss(k);
    let failure: PurchaseError | undefined;
    let result: PurchaseResult | undefined;
    try {
      result = await purchase(w.cardCh, w.psamCh, { amount: AMOUNT, variant, ...at, ...(pin ? { pin: '1234' } : {}) });
    } catch (e) {
      if (!(e instanceof PurchaseError)) throw e;
      failure = e;
    }
    if (victim.isPowered) {
      victim.disarmPowerLoss();
      expect(failure, `k=${k}: completed untorn`).toBeUndefined();
      outcomes.add(await checkAfter(w, failure, result, start.balance, start.counter, start.cardId));
      return { cuts: k - 1, outcomes };
    }
    outcomes.add(await checkAfter(w, failure, result, start.balance, start.counter, start.cardId));
  }
}

describe('tearing across a purchase (exhaustive)', () => {
  for (const variant of ['standard', 'early-release'] as const) {
    it(`power cut in the CARD at every persistent write (${variant})`, async () => {
      const { cuts, outcomes } = await tearLoop('card', variant);
      expect(cuts).toBeGreaterThanOrEqual(2);
      // Cut inside the DEBIT transaction: not debited; cut at its commit: debited, answer lost.
      expect([...outcomes]).toEqual(expect.arrayContaining(['debit-unknown/card-debit/not debited/unconfirmed', 'debit-unknown/card-debit/debited/unconfirmed', 'completed']));
    });

    it(`power cut in the PSAM at every persistent write (${variant})`, async () => {
      const { cuts, outcomes } = await tearLoop('psam', variant);
      expect(cuts).toBeGreaterThanOrEqual(4);
      expect([...outcomes]).toEqual(expect.arrayContaining(['refused/psam-init/not debited/no record', 'refused/psam-init/not debited/unconfirmed', 'completed']));
      expect([...outcomes]).toContain(variant === 'standard' ? 'debited-unverified/psam-verify/debited/confirmed' : 'completed/S3 posted after reboot');
    });
  }

  it('power cut in the card at every write, with the PIN verified first (PIN try counter writes too)', async () => {
    const { cuts, outcomes } = await tearLoop('card', 'standard', true);
    expect(cuts).toBeGreaterThanOrEqual(4);
    expect([...outcomes]).toContain('refused/card-init/not debited/no record');
  });
});

describe('tearing across a load (exhaustive, card side)', () => {
  const issuer = useDemoIssuer();

  it('every cut leaves the old or the new state, and the zero-value enquiry tells the issuer which', async () => {
    const c = newCard(CARD_PROFILES.des, 1000);
    const image = cardToImage(c.card);
    const seen = new Set<string>();
    for (let k = 1; ; k++) {
      const card = cardFromImage(image);
      const ch = new EmulatorChannel(card);
      card.armPowerLoss(k);
      const q = { amount: 2500, currency: EUR, exponent: 2, date: '20260116', time: '091500', loadTxnId: randomBytes(8) };
      let err: LoadError | undefined;
      try {
        await runLoad(ch, issuer, q);
      } catch (e) {
        err = e as LoadError;
      }
      if (card.isPowered) {
        card.disarmPowerLoss();
        expect(err).toBeUndefined();
        break;
      }
      card.powerOn();
      const ch2 = new EmulatorChannel(card);
      const p = await readPurse(ch2);
      const credited = p.balance === 3500;
      expect([1000, 3500]).toContain(p.balance);
      expect(p.counter).toBe(credited ? 1 : 0);
      expect(p.lastLoadTxnId.equals(Buffer.from(q.loadTxnId))).toBe(credited);
      // The host knows the credit answer was lost; the issuer finds out from a fresh, verified S1.
      expect(err).toMatchObject({ outcome: 'credit-unknown' });
      const rec = await recoverLoad(ch2, issuer, q, err!.init!, randomBytes(8));
      expect(rec).toMatchObject({ verified: true, credited });
      seen.add(credited ? 'credited' : 'not credited');
    }
    expect([...seen].sort()).toEqual(['credited', 'not credited']);
  });
});
