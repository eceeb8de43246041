// bench purchase's per-command figures: labels from the command bytes, medians per label, the text and --json
// forms, and the shared ring the cards' thread writes and the host reads.
import { describe, expect, it } from 'vitest';
import { CommandTimes, commandLabel, commandMedianFigures, commandMediansText } from '../../../src/cli/bench/card-commands.ts';
import { CardTimer, RING } from '../../../src/cli/bench/card-timer.ts';

const apdu = (...b: number[]) => Uint8Array.from(b);

describe('commandLabel', () => {
  it('names the purse card and PSAM commands of a purchase by card and INS', () => {
    expect(commandLabel(0, apdu(0x00, 0xa4, 0x04, 0x00))).toBe('card SELECT');
    expect(commandLabel(1, apdu(0x00, 0xa4, 0x04, 0x00))).toBe('PSAM SELECT');
    expect(commandLabel(0, apdu(0x80, 0x50, 0x00, 0x00))).toBe('card INITIALIZE FOR PURCHASE');
    expect(commandLabel(0, apdu(0x80, 0x54, 0x00, 0x00))).toBe('card DEBIT');
    expect(commandLabel(1, apdu(0x80, 0x32, 0x00, 0x00))).toBe('PSAM INITIALIZE PURCHASE');
    expect(commandLabel(1, apdu(0x80, 0x34, 0x00, 0x00))).toBe('PSAM VERIFY S3');
  });

  it('looks the INS up in the table of the card that answered it', () => {
    // 0x32 is INITIALIZE PURCHASE on the PSAM and nothing on the purse card
    expect(commandLabel(0, apdu(0x80, 0x32, 0x00, 0x00))).toBe('card INS 32');
    expect(commandLabel(1, apdu(0x80, 0x54, 0x00, 0x00))).toBe('PSAM INS 54');
  });

  it('says SELECT only for the ISO class, and copes with a short APDU', () => {
    expect(commandLabel(0, apdu(0x80, 0xa4, 0x04, 0x00))).toBe('card INS A4');
    expect(commandLabel(1, apdu(0x80, 0x30))).toBe('PSAM (short APDU)');
  });
});

describe('CommandTimes', () => {
  it('keeps the median per label, in first-seen order, with how often a purchase sends it', () => {
    const t = new CommandTimes();
    for (const [sel, debit] of [[1, 10], [3, 30], [2, 20]] as const) {
      t.add('card SELECT', sel);
      t.add('card DEBIT', debit);
      t.add('card DEBIT', debit + 1);
    }
    expect(t.totalUs).toBe(129);
    expect(t.medians(3)).toEqual([
      { label: 'card SELECT', medianUs: 2, perPurchase: 1 },
      { label: 'card DEBIT', medianUs: 20, perPurchase: 2 },
    ]);
    t.clear();
    expect(t.totalUs).toBe(0);
    expect(t.medians(3)).toEqual([]);
  });
});

describe('the text and --json forms', () => {
  const rows = [
    { label: 'card SELECT', medianUs: 1.25, perPurchase: 1 },
    { label: 'PSAM VERIFY S3', medianUs: 4.04, perPurchase: 2 },
  ];

  it('prints each median, marks a command sent more than once, and sums the medians per purchase', () => {
    expect(commandMediansText(rows)).toBe('card SELECT 1.3, PSAM VERIFY S3 4.0 x2.0 (sum of medians 9.3)');
  });

  it('names one figure per command under the prefix', () => {
    expect(commandMedianFigures('pcscCardUs_3des', rows)).toEqual({ 'pcscCardUs_3des_card_SELECT': 1.3, 'pcscCardUs_3des_PSAM_VERIFY_S3': 4 });
  });
});

describe('CardTimer', () => {
  it('adds up the time and count, and gives back the commands since a count, labelled', () => {
    const t = new CardTimer();
    t.record(0, apdu(0x00, 0xa4, 0x04, 0x00), 1_000n);
    const from = t.apdus();
    t.record(1, apdu(0x80, 0x32, 0x00, 0x00), 25_500n);
    t.record(0, apdu(0x80, 0x54, 0x00, 0x00), 12_000n);
    expect(t.ns()).toBe(38_500n);
    expect(t.apdus()).toBe(3);
    expect(t.commandsSince(from)).toEqual([
      { label: 'PSAM INITIALIZE PURCHASE', us: 25.5 },
      { label: 'card DEBIT', us: 12 },
    ]);
    expect(t.commandsSince(t.apdus())).toEqual([]);
  });

  it('reads the same memory from another view of the buffer (the other thread), floor switch included', () => {
    const cards = new CardTimer();
    const host = new CardTimer(cards.sab);
    cards.record(1, apdu(0x80, 0x34, 0x00, 0x00), 4_000n);
    expect(host.commandsSince(0)).toEqual([{ label: 'PSAM VERIFY S3', us: 4 }]);
    expect(cards.floor).toBe(false);
    host.floor = true;
    expect(cards.floor).toBe(true);
  });

  it('wraps around the ring, and says so (undefined) when the commands asked for are no longer all in it', () => {
    const t = new CardTimer();
    for (let i = 0; i < RING + 5; i++) t.record(0, apdu(0x80, 0x54, 0x00, 0x00), BigInt(i * 1000));
    const last = t.commandsSince(RING + 3);
    expect(last).toEqual([
      { label: 'card DEBIT', us: RING + 3 },
      { label: 'card DEBIT', us: RING + 4 },
    ]);
    expect(t.commandsSince(5)?.length).toBe(RING);
    expect(t.commandsSince(4)).toBeUndefined();
    expect(t.commandsSince(t.apdus() + 1)).toBeUndefined();
  });

  it('refuses a buffer too small for its layout', () => {
    expect(() => new CardTimer(new SharedArrayBuffer(24))).toThrow(/shared bytes/);
  });
});
