// Command chaining (CLA bit 0x10) reassembled by the card OS for applets that take it; 6884 otherwise.

import { describe, expect, it } from 'vitest';
import { SimulatedCard } from '../../../card-applet-sim/index.ts';
import { AID, ProbeApplet, hex, selectedReferenceCard } from './helpers.ts';

function chainingProbe() {
  const card = new SimulatedCard();
  const p = new ProbeApplet();
  p.chaining = true;
  const seen: { cla: number; data: string; chained: boolean; le: number | undefined }[] = [];
  p.onProcess = (a) => {
    seen.push({ cla: a.cla, data: a.data.toString('hex'), chained: a.chained, le: a.le });
    return Buffer.from([a.data.length >> 8, a.data.length & 0xff]);
  };
  card.install(AID, p);
  card.select(AID);
  return { card, p, seen };
}

describe('command chaining', () => {
  it('reassembles the blocks and gives the applet one command with the base CLA and the last Le', () => {
    const { card, seen } = chainingProbe();
    expect(card.transmitHex('90 20 01 02 02 AABB')).toBe('9000');
    expect(card.transmitHex('90 20 01 02 01 CC')).toBe('9000');
    expect(card.transmitHex('80 20 01 02 02 DDEE 00')).toBe('00059000');
    expect(seen).toEqual([{ cla: 0x80, data: 'aabbccddee', chained: true, le: 256 }]);
    // the next command is independent
    expect(card.transmitHex('80 20 01 02 01 FF 00')).toBe('00019000');
    expect(seen[1]).toEqual({ cla: 0x80, data: 'ff', chained: false, le: 256 });
  });

  it('a block with another header mid-chain is 6883 and drops the chain', () => {
    const { card, seen } = chainingProbe();
    expect(card.transmitHex('90 20 00 00 01 AA')).toBe('9000');
    expect(card.transmitHex('90 21 00 00 01 BB')).toBe('6883');
    expect(card.transmitHex('90 20 00 00 01 AA')).toBe('9000');
    expect(card.transmitHex('80 20 00 01 01 BB')).toBe('6883');
    expect(card.transmitHex('80 20 00 00 01 CC 00')).toBe('00019000');
    expect(seen.map((s) => s.data)).toEqual(['cc']);
  });

  it('SELECT mid-chain drops the chain', () => {
    const { card, seen } = chainingProbe();
    card.transmitHex('90 20 00 00 01 AA');
    expect(card.select(AID).sw).toBe(0x9000);
    expect(card.transmitHex('80 20 00 00 01 BB 00')).toBe('00019000');
    expect(seen.map((s) => s.data)).toEqual(['bb']);
  });

  it('6884 when the applet does not take chaining for the instruction', () => {
    const card = selectedReferenceCard();
    expect(card.transmitHex('90 01 00 00 01 AA')).toBe('6884');
    expect(card.transmitHex('80 01 00 00 01 AA 00')).toBe('AA9000');
  });

  it('chains longer than 65535 bytes are refused with 6700', () => {
    const { card } = chainingProbe();
    const block = Buffer.concat([hex('90 20 00 00 FF'), Buffer.alloc(255)]);
    for (let i = 0; i < 257; i++) expect(card.transmit(block).toString('hex')).toBe('9000');
    expect(card.transmitHex('90 20 00 00 01 AA')).toBe('6700');
  });

  it('a chain to the reference STORE of 1000 bytes round-trips through READ STORE', () => {
    const card = selectedReferenceCard();
    const data = Buffer.from(Array.from({ length: 1000 }, (_, i) => (i * 7) & 0xff));
    for (let off = 0; off < data.length; off += 255) {
      const part = data.subarray(off, off + 255);
      const last = off + 255 >= data.length;
      const head = Buffer.from([last ? 0x80 : 0x90, 0x10, 0, 0, part.length]);
      const r = card.transmit(Buffer.concat([head, part, last ? hex('00') : Buffer.alloc(0)]));
      expect(r.toString('hex')).toBe(last ? '03e89000' : '9000');
    }
    expect(card.exchange('80 12 00 00 00')).toEqual({ data, sw: 0x9000 });
  });

  it('no applet selected: a chained block is 6985', () => {
    const card = new SimulatedCard();
    expect(card.transmitHex('90 20 00 00 01 AA')).toBe('6985');
  });
});
