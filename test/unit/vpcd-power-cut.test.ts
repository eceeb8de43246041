// The power-cut switch of `purselab emulate --power-cut INS:K` (card-applet-sim/vpcd/power-cut.ts) on a real card
// OS: the reference applet's INCREMENT makes 3 writes in a transaction + the commit (4 write points). A cut at
// writes 1-3 leaves the old counter, at the commit the new one, always with no answer; K beyond the command's
// writes disarms the switch; other instructions pass untouched; one shot. Plus the image saved at the cut.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REFERENCE_AID } from '../../card-applet-sim/applets/index.ts';
import { RefIns } from '../../card-applet-sim/applets/reference/reference-applet.ts';
import { loadCardImage, saveCardImage } from '../../card-applet-sim/os/image.ts';
import { parsePowerCut, PowerCutCard } from '../../card-applet-sim/vpcd/power-cut.ts';
import { newReferenceCard } from '../../src/cli/commands/emulate.ts';

const SELECT = Buffer.concat([Buffer.from([0x00, 0xa4, 0x04, 0x00, REFERENCE_AID.length]), REFERENCE_AID]);
const INCREMENT = Buffer.from([0x80, RefIns.INCREMENT, 0, 0, 4, 0, 0, 0, 5]);
const READ = Buffer.from([0x80, RefIns.READ_COUNTER, 0, 0]);
const sw = (r: Buffer) => r.subarray(-2).toString('hex').toUpperCase();

function world(k: number) {
  const card = newReferenceCard();
  const events: string[] = [];
  const cut = new PowerCutCard(card, parsePowerCut(`${RefIns.INCREMENT.toString(16)}:${k}`), {
    onCut: (i) => events.push(`cut ${i.k} ${i.apduHeader}`),
    onMiss: (i) => events.push(`miss ${i.writes}`),
  });
  expect(sw(cut.transmit(SELECT))).toBe('9000');
  const counter = () => {
    if (!card.isPowered) card.powerOn();
    card.transmit(SELECT);
    return card.transmit(READ).readUInt32BE(0);
  };
  return { card, cut, events, counter };
}

describe('--power-cut INS:K', () => {
  it('parses INS (hex), K and the card number, and refuses anything else', () => {
    expect(parsePowerCut('42:3')).toEqual({ ins: 0x42, k: 3, card: 1 });
    expect(parsePowerCut('0xE2:1@2')).toEqual({ ins: 0xe2, k: 1, card: 2 });
    for (const bad of ['42', '42:0', 'XY:1', '42:1@0', '142:1', '42:-1', '']) expect(() => parsePowerCut(bad), bad).toThrow(/--power-cut/);
  });

  it('a cut at a write inside the transaction: no answer, card off, old state; at the commit: no answer, new state', () => {
    for (const k of [1, 2, 3, 4]) {
      const w = world(k);
      const rsp = w.cut.transmit(INCREMENT);
      expect(rsp.length, `k=${k}`).toBe(0);
      expect(w.card.isPowered).toBe(false);
      expect(w.events).toEqual([`cut ${k} 80020000`]);
      expect(w.counter(), `k=${k}`).toBe(k === 4 ? 5 : 0);
    }
  });

  it('K beyond the writes of the command: answered normally, disarmed, reported with the write count; one shot', () => {
    const w = world(5);
    expect(sw(w.cut.transmit(INCREMENT))).toBe('9000');
    expect(w.events).toEqual(['miss 4']);
    expect(w.card.memory.powerLossArmedIn).toBeUndefined();
    expect(w.cut.done).toBe(true);
    expect(sw(w.cut.transmit(INCREMENT))).toBe('9000');
    expect(w.events).toEqual(['miss 4']);
    expect(w.counter()).toBe(10);
  });

  it('other instructions pass untouched and do not spend the switch', () => {
    const w = world(1);
    expect(sw(w.cut.transmit(READ))).toBe('9000');
    expect(w.cut.done).toBe(false);
    expect(w.events).toEqual([]);
    expect(w.cut.transmit(INCREMENT).length).toBe(0);
    expect(w.events).toHaveLength(1);
  });

  it('the image saved at the cut holds committed state only', () => {
    const dir = mkdtempSync(join(tmpdir(), 'purselab-power-cut-'));
    try {
      const w = world(3);
      w.cut.transmit(INCREMENT);
      saveCardImage(w.card, join(dir, 'card.img'));
      const back = loadCardImage(join(dir, 'card.img'));
      back.transmit(SELECT);
      expect(back.transmit(READ).readUInt32BE(0)).toBe(0);
      expect(sw(back.transmit(INCREMENT))).toBe('9000');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
