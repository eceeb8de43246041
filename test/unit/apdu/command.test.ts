// Command/response APDU codec and hex helpers: every ISO 7816-4 case, short and extended, and every malformed length.

import { describe, expect, it } from 'vitest';
import { apduCase, command, describeCommand, encodeCommand, needsExtended, parseCommand } from '../../../src/apdu/command.ts';
import { fromHex, hexifyBytes, toHex } from '../../../src/apdu/hex.ts';
import { encodeResponse, isSuccess, parseResponse, response, swHex } from '../../../src/apdu/response.ts';

const enc = (...args: Parameters<typeof command>): string => toHex(encodeCommand(command(...args)));
const bytes = (n: number, fill = 0xab): Buffer => Buffer.alloc(n, fill);

describe('command APDU encoding', () => {
  it('case 1: header only', () => {
    expect(enc(0x00, 0xa4, 0x04, 0x00)).toBe('00A40400');
    expect(apduCase(command(0, 0xa4, 4, 0))).toBe(1);
  });

  it('case 2 short: Le 1..255 as one byte, Le 256 as 00', () => {
    expect(enc(0x00, 0xb0, 0x00, 0x00, undefined, 1)).toBe('00B0000001');
    expect(enc(0x00, 0xb0, 0x00, 0x00, undefined, 255)).toBe('00B00000FF');
    expect(enc(0x00, 0xb0, 0x00, 0x00, undefined, 256)).toBe('00B0000000');
    expect(apduCase(command(0, 0xb0, 0, 0, undefined, 256))).toBe(2);
  });

  it('case 3 short: Lc then data', () => {
    expect(enc(0x00, 0xa4, 0x04, 0x00, fromHex('A0000000031010'))).toBe('00A4040007A0000000031010');
    expect(toHex(encodeCommand(command(0, 0xd6, 0, 0, bytes(255))))).toBe('00D60000FF' + 'AB'.repeat(255));
  });

  it('case 4 short: Lc, data, Le (256 as 00)', () => {
    expect(enc(0x00, 0xa4, 0x04, 0x00, fromHex('F0000000010101'), 256)).toBe('00A4040007F000000001010100');
    expect(enc(0x80, 0xca, 0x9f, 0x7f, fromHex('01'), 0x2d)).toBe('80CA9F7F01012D');
  });

  it('case 2 extended: Le 257..65536 as 00 HH LL, 65536 as 00 00 00', () => {
    expect(enc(0x00, 0xb0, 0x00, 0x00, undefined, 257)).toBe('00B00000000101');
    expect(enc(0x00, 0xb0, 0x00, 0x00, undefined, 65536)).toBe('00B00000000000');
    expect(needsExtended(command(0, 0xb0, 0, 0, undefined, 257))).toBe(true);
  });

  it('case 3 extended: Lc 00 HH LL once data exceeds 255 bytes', () => {
    expect(toHex(encodeCommand(command(0, 0xd6, 0, 0, bytes(256)))).slice(0, 14)).toBe('00D60000000100');
    expect(encodeCommand(command(0, 0xd6, 0, 0, bytes(65535))).length).toBe(4 + 3 + 65535);
  });

  it('case 4 extended: Le is two bytes after the data, 65536 as 0000', () => {
    const e = toHex(encodeCommand(command(0, 0xd6, 0, 0, bytes(300), 65536)));
    expect(e.slice(0, 14)).toBe('00D6000000012C');
    expect(e.slice(-4)).toBe('0000');
    expect(e.length / 2).toBe(4 + 3 + 300 + 2);
    // short data but Le > 256 forces extended form for both fields
    expect(enc(0x00, 0xca, 0x00, 0x00, fromHex('01'), 1000)).toBe('00CA0000000001' + '01' + '03E8');
  });

  it('extended form can be forced for lengths that would fit short form', () => {
    expect(toHex(encodeCommand(command(0, 0xb0, 0, 0, undefined, 256), { extended: true }))).toBe('00B00000000100');
    expect(toHex(encodeCommand(command(0, 0xa4, 4, 0, fromHex('3F00'), 256), { extended: true }))).toBe('00A40400' + '000002' + '3F00' + '0100');
  });

  it('builder rejects fields out of range', () => {
    expect(() => command(0x100, 0, 0, 0)).toThrow(/CLA must be a byte/);
    expect(() => command(0, -1, 0, 0)).toThrow(/INS must be a byte/);
    expect(() => command(0, 0, 1.5, 0)).toThrow(/P1 must be a byte/);
    expect(() => command(0, 0, 0, 256)).toThrow(/P2 must be a byte/);
    expect(() => command(0, 0, 0, 0, bytes(65536))).toThrow(/65536 bytes/);
    expect(() => command(0, 0, 0, 0, undefined, 0)).toThrow(/Le must be 1\.\.65536/);
    expect(() => command(0, 0, 0, 0, undefined, 65537)).toThrow(/Le must be/);
    expect(() => command(0xff, 0, 0, 0)).toThrow(/CLA FF is reserved/);
  });

  it('describes a command on one line', () => {
    expect(describeCommand(command(0, 0xa4, 4, 0, fromHex('A000'), 256))).toBe('00 A4 04 00 | Lc=2 A000 | Le=256');
  });
});

describe('command APDU parsing', () => {
  const roundTrips: [string, Parameters<typeof command>][] = [
    ['case 1', [0, 0xa4, 0, 0]],
    ['case 2 short', [0, 0xb0, 0, 0, undefined, 16]],
    ['case 2 short Le 256', [0, 0xb0, 0, 0, undefined, 256]],
    ['case 3 short', [0, 0xa4, 4, 0, fromHex('A0000000031010')]],
    ['case 4 short', [0, 0xa4, 4, 0, fromHex('A0000000031010'), 256]],
    ['case 2 extended', [0, 0xb0, 0, 0, undefined, 4096]],
    ['case 2 extended Le 65536', [0, 0xb0, 0, 0, undefined, 65536]],
    ['case 3 extended', [0, 0xd6, 0, 0, bytes(1000)]],
    ['case 4 extended', [0, 0xd6, 0, 0, bytes(1000), 65536]],
  ];
  for (const [name, args] of roundTrips) {
    it(`round-trips ${name}`, () => {
      const c = command(...args);
      const parsed = parseCommand(encodeCommand(c));
      expect(parsed).toEqual(c);
      expect(apduCase(parsed)).toBe(apduCase(c));
    });
  }

  it('parses from a Uint8Array view into a larger buffer', () => {
    const big = fromHex('FFFF00B0000010FFFF');
    expect(parseCommand(big.subarray(2, 7))).toEqual(command(0, 0xb0, 0, 0, undefined, 16));
  });

  const malformed: [string, string, RegExp][] = [
    ['empty', '', /at least 4 header bytes, got 0/],
    ['3 bytes', '00A404', /at least 4 header bytes, got 3/],
    ['short Lc larger than the data', '00A4040007A00000', /Lc says 7 data bytes but 3 bytes follow/],
    ['short Lc with 2 extra bytes', '00A4040002A000FFFF', /Lc says 2 data bytes but 4 bytes follow it \(expected 2 or 3\)/],
    ['extended length field of 2 bytes', '00B000000001', /truncated extended length field: 2 byte/],
    ['extended Lc 0000', '00D60000000000AB', /extended Lc of 0000 is not allowed/],
    ['extended Lc larger than the data', '00D60000000005AABBCC', /extended Lc says 5 data bytes but 3 bytes follow/],
    ['extended case 4 with a one-byte Le', '00D60000000002AABB00', /extended Lc says 2 data bytes but 3 bytes follow it \(expected 2 or 4\)/],
  ];
  for (const [name, hex, err] of malformed) {
    it(`rejects ${name}`, () => expect(() => parseCommand(fromHex(hex))).toThrow(err));
  }

  it('reads header + 00 as case 2 short with Le 256 (not a cut-off extended field)', () => {
    expect(parseCommand(fromHex('00B0000000'))).toEqual(command(0, 0xb0, 0, 0, undefined, 256));
  });

  it('errors carry the BAD_APDU code', () => {
    try {
      parseCommand(fromHex('00A4'));
      expect.unreachable();
    } catch (e) {
      expect((e as { code: string }).code).toBe('BAD_APDU');
    }
  });
});

describe('response APDU', () => {
  it('splits data and SW1SW2', () => {
    const r = parseResponse(fromHex('6F0A9000'));
    expect(toHex(r.data)).toBe('6F0A');
    expect(r.sw).toBe(0x9000);
    expect(parseResponse(fromHex('6A82'))).toEqual({ data: Buffer.alloc(0), sw: 0x6a82 });
  });

  it('rejects fewer than two bytes', () => {
    expect(() => parseResponse(fromHex('90'))).toThrow(/at least SW1 SW2, got 1 byte/);
    expect(() => parseResponse(Buffer.alloc(0))).toThrow(/got 0 byte/);
  });

  it('encodes back to the same bytes', () => {
    expect(toHex(encodeResponse(response(fromHex('0102'), 0x6310)))).toBe('01026310');
  });

  it('validates the SW and classifies success', () => {
    expect(() => response(Buffer.alloc(0), 0x10000)).toThrow(/16 bits/);
    expect(isSuccess(0x9000)).toBe(true);
    expect(isSuccess(0x6110)).toBe(true);
    expect(isSuccess(0x6283)).toBe(false);
    expect(swHex(0x6a82)).toBe('6A82');
    expect(swHex(0x0001)).toBe('0001');
  });
});

describe('hex', () => {
  it('accepts spaces, colons, dashes and a 0x prefix', () => {
    expect(toHex(fromHex('00 a4:04-00'))).toBe('00A40400');
    expect(toHex(fromHex('0x9000'))).toBe('9000');
  });
  it('rejects odd digit counts and non-hex characters, naming the field', () => {
    expect(() => fromHex('0A4', 'APDU')).toThrow(/APDU: odd number of hex digits \(3\)/);
    expect(() => fromHex('00 G4', 'ATR')).toThrow(/ATR: 'G' is not a hex digit/);
  });
  it('prints with a separator', () => {
    expect(toHex(fromHex('3B8F80'), ' ')).toBe('3B 8F 80');
    expect(toHex(Buffer.alloc(0), ' ')).toBe('');
  });
  it('hexifies nested byte fields for JSON', () => {
    expect(hexifyBytes({ a: Buffer.from([1, 2]), b: [new Uint8Array([255])], c: 3, d: { e: 'x' } })).toEqual({ a: '0102', b: ['FF'], c: 3, d: { e: 'x' } });
  });
});
