// Response shaping per protocol: T=1 direct data, 61xx + GET RESPONSE for long responses, extended Le;
// T=0 61xx for cases 3/4, exact Le for case 2 (6Cxx), GET RESPONSE chunking and 6Cxx.

import { describe, expect, it } from 'vitest';
import { SimulatedCard } from '../../../card-applet-sim/index.ts';
import { AID, ProbeApplet, hex, selectedReferenceCard, swOf } from './helpers.ts';

const pattern = (n: number): Buffer => Buffer.from(Array.from({ length: n }, (_, i) => i & 0xff));
const H = (b: Buffer): string => b.toString('hex').toUpperCase();

describe('T=1', () => {
  it('returns data directly for cases 2, 3 and 4 when it fits', () => {
    const card = selectedReferenceCard();
    expect(card.transmitHex('80 01 00 00 03 010203 00')).toBe('0102039000');
    expect(card.transmitHex('80 01 00 00 03 010203')).toBe('0102039000');
    expect(card.transmitHex('80 CA 00 05 05')).toBe('00010203049000');
    expect(card.transmitHex('80 CA 00 05 10')).toBe('00010203049000'); // Le larger than the data: fine in T=1
  });

  it('Le shorter than the data: Le bytes + 61xx, then GET RESPONSE in chunks', () => {
    const card = selectedReferenceCard();
    expect(card.transmitHex('80 CA 00 0A 04')).toBe('00010203' + '6106');
    expect(card.transmitHex('00 C0 00 00 02')).toBe('0405' + '6104');
    expect(card.transmitHex('00 C0 00 00 10')).toBe('060708099000'); // T=1: a larger Le is fine
    expect(card.transmitHex('00 C0 00 00 04')).toBe('6985'); // nothing left
  });

  it('300 bytes: 256 + 612C with Le=00, GET RESPONSE 2C; with CLA 80 too (as isoTransmit sends it)', () => {
    const card = selectedReferenceCard();
    const r = card.transmit(hex('80 CA 01 2C 00'));
    expect(H(r)).toBe(H(pattern(256)) + '612C');
    expect(card.transmitHex('80 C0 00 00 2C')).toBe(H(pattern(300).subarray(256)) + '9000');
  });

  it('more than 512 bytes: 6100 means "256 or more"', () => {
    const card = selectedReferenceCard();
    expect(swOf(card.transmit(hex('80 CA 03 00 00')))).toBe(0x6100);
    expect(swOf(card.transmit(hex('00 C0 00 00 00')))).toBe(0x6100); // 512 left after the first 256
    const last = card.transmit(hex('00 C0 00 00 00'));
    expect(last).toHaveLength(258);
    expect(swOf(last)).toBe(0x9000);
  });

  it('extended Le returns long responses at once; extended Lc carries long data', () => {
    const card = selectedReferenceCard();
    expect(H(card.transmit(hex('80 CA 10 00 00 00 00')))).toBe(H(pattern(4096)) + '9000');
    expect(H(card.transmit(hex('80 CA 01 2C 00 01 2C')))).toBe(H(pattern(300)) + '9000');
    const data = pattern(1000);
    const cmd = Buffer.concat([hex('80 01 00 00 00 03 E8'), data, hex('0000')]);
    expect(H(card.transmit(cmd))).toBe(H(data) + '9000');
  });

  it('any other command drops the pending response', () => {
    const card = selectedReferenceCard();
    card.transmit(hex('80 CA 01 2C 00'));
    expect(card.transmitHex('80 01 00 00 01 AA 00')).toBe('AA9000');
    expect(card.transmitHex('00 C0 00 00 2C')).toBe('6985');
  });

  it('GET RESPONSE checks its own P1P2 and length', () => {
    const card = selectedReferenceCard();
    card.transmit(hex('80 CA 01 2C 00'));
    expect(card.transmitHex('00 C0 01 00 2C')).toBe('6A86');
    expect(card.transmitHex('00 C0 00 00')).toBe('6700');
    expect(card.transmitHex('00 C0 00 00 01 AA 2C')).toBe('6700');
    expect(card.transmitHex('00 C0 00 00 2C')).toBe(H(pattern(300).subarray(256)) + '9000');
  });
});

describe('T=0', () => {
  const t0 = () => selectedReferenceCard({ protocol: 'T=0' });

  it('case 4 answers 61xx; GET RESPONSE with the exact Le returns data and the final SW', () => {
    const card = t0();
    expect(card.transmitHex('80 01 00 00 03 010203 00')).toBe('6103');
    expect(card.transmitHex('00 C0 00 00 03')).toBe('0102039000');
  });

  it('case 3 with response data answers 61xx too (T=0 cannot tell 3 from 4)', () => {
    const card = t0();
    expect(card.transmitHex('80 01 00 00 03 010203')).toBe('6103');
    expect(card.transmitHex('00 C0 00 00 03')).toBe('0102039000');
  });

  it('GET RESPONSE: too large an Le gets 6Cxx and the data stays; a smaller Le chunks with 61xx', () => {
    const card = t0();
    expect(card.transmitHex('80 01 00 00 04 01020304 00')).toBe('6104');
    expect(card.transmitHex('00 C0 00 00 00')).toBe('6C04');
    expect(card.transmitHex('00 C0 00 00 02')).toBe('01026102');
    expect(card.transmitHex('00 C0 00 00 03')).toBe('6C02');
    expect(card.transmitHex('00 C0 00 00 02')).toBe('03049000');
  });

  it('case 2: exact Le answers directly, any other Le gets 6C(Na)', () => {
    const card = t0();
    expect(card.transmitHex('80 04 00 00 0C')).toBe('0000000000000000000000009000');
    expect(card.transmitHex('80 04 00 00 00')).toBe('6C0C');
    expect(card.transmitHex('80 04 00 00 0B')).toBe('6C0C');
    expect(card.transmitHex('80 04 00 00 0D')).toBe('6C0C');
    expect(card.transmitHex('80 CA 01 00 00')).toBe(H(pattern(256)) + '9000'); // Le 00 = 256 exactly
  });

  it('case 2 with more than 256 bytes: Le bytes now, 61xx, rest by GET RESPONSE', () => {
    const card = t0();
    expect(H(card.transmit(hex('80 CA 01 2C 00')))).toBe(H(pattern(256)) + '612C');
    expect(card.transmitHex('00 C0 00 00 2C')).toBe(H(pattern(300).subarray(256)) + '9000');
    expect(H(card.transmit(hex('80 CA 01 2C 10')))).toBe(H(pattern(16)) + '6100');
  });

  it('SELECT returns its FCI through 61xx; errors carry no data; extended APDUs are refused', () => {
    const card = t0();
    expect(card.transmitHex('00 A4 04 00 0A F070757273656C616201')).toBe('6113');
    expect(card.transmitHex('00 C0 00 00 13')).toBe('6F11840AF070757273656C616201A5038001019000');
    expect(card.transmitHex('80 E0 6A 88')).toBe('6A88');
    expect(card.transmitHex('80 CA 00 10 00 00 10')).toBe('6700');
  });

  it('exchange() follows 61xx and 6Cxx like a host', () => {
    const card = t0();
    expect(card.exchange('80 04 00 00 00')).toEqual({ data: Buffer.alloc(12), sw: 0x9000 });
    expect(card.exchange('80 CA 02 00 00')).toEqual({ data: pattern(512), sw: 0x9000 });
    expect(card.exchange('80 01 00 00 02 AABB 00')).toEqual({ data: hex('AABB'), sw: 0x9000 });
  });

  it('a warning SW with data comes at the end of GET RESPONSE', () => {
    const card = new SimulatedCard({ protocol: 'T=0' });
    const p = new ProbeApplet();
    p.onProcess = (a) => a.send(hex('AABBCC'), 0x6310);
    card.install(AID, p);
    card.select(AID);
    expect(card.transmitHex('80 10 00 00 01 00')).toBe('6103');
    expect(card.transmitHex('00 C0 00 00 03')).toBe('AABBCC6310');
  });
});
