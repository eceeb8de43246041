// BER-TLV: round trips, multi-byte tags, long lengths, nested lookup, printing, and strict rejection of malformed input.

import { describe, expect, it } from 'vitest';
import { fromHex, toHex } from '../../../src/apdu/hex.ts';
import {
  decodeTlv,
  decodeTlvObject,
  encodeLength,
  encodeTag,
  encodeTlv,
  findAllTlv,
  findTlv,
  formatTlv,
  isConstructed,
  tagClass,
  tagHex,
  tlv,
  type Tlv,
  type TlvInput,
} from '../../../src/apdu/tlv.ts';

const aid = fromHex('A0000000031010');
const fci = tlv(0x6f, [
  tlv(0x84, aid),
  tlv(0xa5, [tlv(0x50, Buffer.from('VISA CREDIT')), tlv(0x87, fromHex('01')), tlv(0xbf0c, [tlv(0x9f4d, fromHex('0B0A'))])]),
]);

describe('encoding', () => {
  it('encodes a nested FCI with exact bytes', () => {
    expect(toHex(encodeTlv(fci))).toBe(
      '6F23' + '8407A0000000031010' + 'A518' + '500B' + toHex(Buffer.from('VISA CREDIT')) + '870101' + 'BF0C05' + '9F4D020B0A',
    );
  });

  it('encodes lengths in the shortest definite form, up to 4 length bytes', () => {
    expect(toHex(encodeLength(0))).toBe('00');
    expect(toHex(encodeLength(127))).toBe('7F');
    expect(toHex(encodeLength(128))).toBe('8180');
    expect(toHex(encodeLength(255))).toBe('81FF');
    expect(toHex(encodeLength(256))).toBe('820100');
    expect(toHex(encodeLength(65536))).toBe('83010000');
    expect(toHex(encodeLength(0x1000000))).toBe('8401000000');
    expect(() => encodeLength(0x100000000)).toThrow(/4 length bytes/);
    expect(() => encodeLength(-1)).toThrow(/length -1/);
  });

  it('encodes multi-byte tags, including tag numbers above 30', () => {
    expect(toHex(encodeTag(0x9f38))).toBe('9F38');
    expect(toHex(encodeTag(0x1f1f))).toBe('1F1F'); // universal class, tag number 31
    expect(toHex(encodeTag(0x7f21))).toBe('7F21'); // application class, constructed, tag number 33
    expect(toHex(encodeTag(0x9f8101))).toBe('9F8101'); // tag number 129: two subsequent bytes
    expect(toHex(encodeTag(0xdf818101))).toBe('DF818101');
  });

  it('rejects malformed tags', () => {
    expect(() => encodeTag(0x8401)).toThrow(/does not announce further tag bytes/);
    expect(() => encodeTag(0x9f)).toThrow(/needs at least one more tag byte/);
    expect(() => encodeTag(0x9f81)).toThrow(/byte 2 must clear bit 8/);
    expect(() => encodeTag(0x9f0181)).toThrow(/byte 2 must set bit 8/);
    expect(() => encodeTag(0x9f8001)).toThrow(/leading zero bits/);
    expect(() => encodeTag(0x100000000)).toThrow(/not 1 to 4 bytes/);
  });

  it('refuses children under a primitive tag', () => {
    expect(() => encodeTlv(tlv(0x84, [tlv(0x50, aid)]))).toThrow(/84 is primitive/);
  });

  it('knows constructed bit and class', () => {
    expect(isConstructed(0x6f)).toBe(true);
    expect(isConstructed(0xbf0c)).toBe(true);
    expect(isConstructed(0x9f38)).toBe(false);
    expect(tagClass(0x9f38)).toBe('context-specific');
    expect(tagClass(0x5f2d)).toBe('application');
    expect(tagClass(0xdf01)).toBe('private');
    expect(tagClass(0x04)).toBe('universal');
    expect(tagHex(0x84)).toBe('84');
    expect(tagHex(0x9f38)).toBe('9F38');
  });
});

describe('decoding', () => {
  it('round-trips a nested structure with offsets', () => {
    const bytes = encodeTlv(fci);
    const [top, ...rest] = decodeTlv(bytes);
    expect(rest).toHaveLength(0);
    expect(top!.tag).toBe(0x6f);
    expect(top!.constructed).toBe(true);
    expect(top!.children!.map((c) => c.tag)).toEqual([0x84, 0xa5]);
    const a5 = top!.children![1]!;
    expect(a5.offset).toBe(11);
    expect(a5.children!.map((c) => c.tag)).toEqual([0x50, 0x87, 0xbf0c]);
    const back = (n: Tlv): TlvInput => (n.children ? tlv(n.tag, n.children.map(back)) : tlv(n.tag, n.value));
    expect(toHex(encodeTlv(decodeTlv(bytes).map(back)))).toBe(toHex(bytes));
  });

  it('decodes long lengths, including non-minimal 81 forms', () => {
    const value = Buffer.alloc(300, 0x5a);
    const [obj] = decodeTlv(encodeTlv(tlv(0x53, value)));
    expect(obj!.value.equals(value)).toBe(true);
    expect(toHex(decodeTlv(fromHex('53 81 02 AA BB'))[0]!.value)).toBe('AABB');
    expect(decodeTlv(fromHex('53 84 00 00 00 01 FF'))[0]!.value.length).toBe(1);
  });

  it('decodes a 3-byte tag and a sequence of top-level objects', () => {
    const nodes = decodeTlv(fromHex('9F8101 01 AA 5F2D 02 656E'));
    expect(nodes.map((n) => tagHex(n.tag))).toEqual(['9F8101', '5F2D']);
    expect(nodes[1]!.offset).toBe(5);
  });

  it('finds objects by tag path (string or array)', () => {
    const nodes = decodeTlv(encodeTlv(fci));
    expect(findTlv(nodes, '6F/A5/50')!.value.toString()).toBe('VISA CREDIT');
    expect(toHex(findTlv(nodes, [0x6f, 0xa5, 0xbf0c, 0x9f4d])!.value)).toBe('0B0A');
    expect(toHex(findTlv(nodes, '6F.84')!.value)).toBe(toHex(aid));
    expect(findTlv(nodes, '6F/50')).toBeUndefined();
    expect(findTlv(nodes, '84')).toBeUndefined();
    const records = decodeTlv(encodeTlv([tlv(0x70, [tlv(0x5a, fromHex('01'))]), tlv(0x70, [tlv(0x5a, fromHex('02'))])]));
    expect(findAllTlv(records, '70/5A').map((n) => toHex(n.value))).toEqual(['01', '02']);
    expect(() => findTlv(nodes, '6F/G1')).toThrow(/not a hex tag/);
    expect(() => findTlv(nodes, '')).toThrow(/empty tag path/);
  });

  it('skips 00/FF padding only when asked', () => {
    const padded = fromHex('00 FF 84 01 AA 00 00');
    expect(() => decodeTlv(padded)).toThrow();
    expect(decodeTlv(padded, { skipPadding: true }).map((n) => tagHex(n.tag))).toEqual(['84']);
  });

  it('decodes empty input to nothing, and decodeTlvObject insists on exactly one object', () => {
    expect(decodeTlv(Buffer.alloc(0))).toEqual([]);
    expect(decodeTlvObject(fromHex('8401AA')).tag).toBe(0x84);
    expect(() => decodeTlvObject(fromHex('8401AA 8401BB'))).toThrow(/trailing bytes after the TLV object at offset 3/);
    expect(() => decodeTlvObject(Buffer.alloc(0))).toThrow(/got no bytes/);
  });
});

describe('malformed input', () => {
  const bad: [string, string, RegExp][] = [
    ['value cut short', '84 07 A0 00 00', /tag 84 at offset 0 \(0x0\) says 7 value bytes but only 3 follow/],
    ['tag with no length byte', '8401AA 84', /tag 84 has no length byte at offset 4/],
    ['multi-byte tag cut off', '9F', /truncated tag at offset 0 \(0x0\): tag byte 2 missing/],
    ['3-byte tag cut off', '9F 81', /tag byte 3 missing/],
    ['tag longer than 4 bytes', '9F 81 81 81 01 00', /longer than 4 bytes/],
    ['tag with leading zero bits', '9F 80 01 00', /leading zero bits/],
    ['indefinite length', '6F 80 84 01 AA 00 00', /indefinite length \(80\) at offset 1/],
    ['5 length bytes', '53 85 00 00 00 00 01 AA', /announces 5 length bytes \(at most 4\)/],
    ['long length cut off', '53 82 01', /length at offset 1 \(0x1\) needs 2 more byte/],
    ['trailing garbage after an object', '84 01 AA FF', /truncated tag at offset 3 \(0x3\)/],
    ['child overrunning its parent', '6F 03 84 05 AA', /tag 84 at offset 2 .* only 1 remain in its parent/],
  ];
  for (const [name, hex, err] of bad) {
    it(`rejects ${name}`, () => expect(() => decodeTlv(fromHex(hex))).toThrow(err));
  }

  it('rejects nesting deeper than the limit instead of recursing without bound', () => {
    let bytes = Buffer.alloc(0);
    for (let i = 0; i < 40; i++) bytes = Buffer.concat([Buffer.from([0xa0]), encodeLength(bytes.length), bytes]);
    expect(() => decodeTlv(bytes)).toThrow(/nesting deeper than 32/);
  });

  it('errors carry the BAD_TLV code', () => {
    expect(() => decodeTlv(fromHex('84'))).toThrow(expect.objectContaining({ code: 'BAD_TLV' }));
  });
});

describe('formatTlv', () => {
  it('prints an indented tree with names, hex and printable text', () => {
    expect(formatTlv(decodeTlv(encodeTlv(fci)))).toEqual([
      '6F (35 bytes) file control information (FCI)',
      '  84 (7 bytes) DF name: A0 00 00 00 03 10 10',
      '  A5 (24 bytes) proprietary information (FCI)',
      '    50 (11 bytes) application label: 56 49 53 41 20 43 52 45 44 49 54 "VISA CREDIT"',
      '    87 (1 byte) application priority indicator: 01',
      '    BF0C (5 bytes) FCI issuer discretionary data',
      '      9F4D (2 bytes): 0B 0A',
    ]);
  });

  it('uses the names given, and prints empty values', () => {
    expect(formatTlv(decodeTlv(fromHex('C1 00')), { names: { 0xc1: 'my tag' }, indent: '\t' })).toEqual(['C1 (0 bytes) my tag:']);
  });
});
