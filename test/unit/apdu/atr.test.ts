// ATR parser, explainer and builder against real-world ATRs with known decodings (TCKs verified independently below).

import { describe, expect, it } from 'vitest';
import { buildAtr, clockRate, explainAtr, parseAtr, type AtrOptions } from '../../../src/apdu/atr.ts';
import { fromHex, toHex } from '../../../src/apdu/hex.ts';

const atr = (hex: string) => parseAtr(fromHex(hex));
const xorT0ToEnd = (hex: string): number => fromHex(hex).subarray(1).reduce((x, b) => x ^ b, 0);

const STORAGE = '3B 8F 80 01 80 4F 0C A0 00 00 03 06 03 00 01 00 00 00 00 6A'; // PC/SC part 3: MIFARE Classic 1K
const T0_ONLY = '3B 68 00 00 00 73 C8 40 12 00 90 00';
const T1_GLOBAL = '3B DA 18 FF 81 B1 FE 75 1F 03 00 31 C5 73 C0 01 40 00 90 00 0C';
const INVERSE = '3F 67 25 00 21 20 00 0F 78 90 00';

describe('the reference ATRs', () => {
  it('have TCKs that XOR T0..TCK to zero (checked without the parser)', () => {
    expect(xorT0ToEnd(STORAGE)).toBe(0);
    expect(xorT0ToEnd(T1_GLOBAL)).toBe(0);
  });
});

describe('parseAtr: PC/SC contactless storage card', () => {
  const a = atr(STORAGE);
  it('reads T0, the TD chain and the protocols', () => {
    expect(a.convention).toBe('direct');
    expect(a.t0).toBe(0x8f);
    expect(a.groups.map((g) => g.td)).toEqual([0x80, 0x01, undefined]);
    expect(a.protocols).toEqual([0, 1]);
    expect(a.globalBytes).toBe(false);
    expect(a.tck).toBe(0x6a);
    expect(a.historical.length).toBe(15);
  });
  it('recognises the PC/SC part 3 historical bytes', () => {
    expect(a.historicalInfo.pcscStorageCard).toEqual({ standard: 3, standardName: 'ISO 14443 A, part 3', cardName: 1, cardNameText: 'MIFARE Classic 1K' });
    expect(explainAtr(a)).toEqual(expect.arrayContaining(['    Standard: 03 (ISO 14443 A, part 3)', '    Card name: 00 01 (MIFARE Classic 1K)']));
  });
  it('uses the defaults when TA1 and the T=1 bytes are absent', () => {
    expect([a.fi, a.di, a.fmaxMHz]).toEqual([372, 1, 5]);
    expect(a.t1Parameters).toEqual({ ifsc: 32, bwi: 4, cwi: 13, errorDetection: 'LRC' });
    expect(a.t0Parameters).toEqual({ wi: 10 });
  });
});

describe('parseAtr: T=0 only, no TCK', () => {
  const a = atr(T0_ONLY);
  it('has TB1/TC1, no TD and no TCK', () => {
    expect(a.groups).toEqual([{ index: 1, scope: 'global', tb: 0, tc: 0 }]);
    expect(a.protocols).toEqual([0]);
    expect(a.tck).toBeUndefined();
    expect(a.extraGuardTime).toBe(0);
    expect(a.t1Parameters).toBeUndefined();
  });
  it('decodes category 00 historical bytes: card capabilities and the status indicator', () => {
    const h = a.historicalInfo;
    expect(h.category).toBe(0);
    expect(h.objects.map((o) => [o.tag, toHex(o.value)])).toEqual([[7, 'C84012']]);
    expect(h.status).toEqual({ lcs: 0, sw: 0x9000 });
    const text = explainAtr(a).join('\n');
    expect(text).toContain('- DF selection by full DF name');
    expect(text).toContain('- implicit DF selection');
    expect(text).toContain('behaviour of write functions: write OR');
    expect(text).toContain('logical channel number assignment: by the card');
    expect(text).toContain('maximum number of logical channels: 3');
    expect(text).toContain('SW: 9000 (normal processing');
    expect(text).toContain('+ No TCK (only T=0 offered)');
  });
  it('rejects a TCK appended to a T=0-only ATR', () => {
    expect(() => atr(T0_ONLY + ' 5B')).toThrow(/1 unexpected byte\(s\) after the historical bytes \(an ATR that offers only T=0 has no TCK\): 5B/);
  });
});

describe('parseAtr: T=1 with T=15 global bytes', () => {
  const a = atr(T1_GLOBAL);
  it('reads TA1 (Fi 372, Di 12) and TC1 = FF', () => {
    expect([a.fi, a.di, a.fmaxMHz]).toEqual([372, 12, 5]);
    expect(a.extraGuardTime).toBe(255);
  });
  it('takes IFSC/BWI/CWI from TA3/TB3, the bytes after the first TD(i-1) with T=1 and i >= 3', () => {
    expect(a.groups.map((g) => g.scope)).toEqual(['global', 'global', 1, 15]);
    expect(a.t1Parameters).toEqual({ ifsc: 254, bwi: 7, cwi: 5, errorDetection: 'LRC' });
    expect(a.protocols).toEqual([1]);
    expect(a.t0Parameters).toBeUndefined();
  });
  it('reads the T=15 class indicator', () => {
    expect(a.globalBytes).toBe(true);
    expect(a.clockStop).toBe('not supported');
    expect(a.voltageClasses).toEqual(['A', 'B']);
  });
  it('decodes card service data and card capabilities', () => {
    expect(a.historicalInfo.objects.map((o) => o.tag)).toEqual([3, 7]);
    const text = explainAtr(a);
    expect(text).toContain('  TA(1) = 18 --> Fi=372, Di=12, 31 cycles/ETU (129032 bits/s at 4.00 MHz, fMax=5 MHz => 161290 bits/s)');
    expect(text).toContain('  TD(3) = 1F --> Y(4): 0001, T=15 - global interface bytes following');
    expect(text).toContain('  TA(4) = 03 --> clock stop: not supported; class accepted by the card: A 5V, B 3V');
    expect(text).toContain('      - EF.DIR and EF.ATR/INFO access: by GET DATA');
    expect(text).toContain('      - card without MF');
    expect(text).toContain('        - extended Lc and Le fields');
    expect(text).toContain('+ TCK = 0C (correct checksum)');
    expect(text).toContain('+ T=1: IFSC 254, BWI 7, CWI 5, LRC');
  });
  it('rejects a wrong TCK, naming the expected value', () => {
    expect(() => atr(T1_GLOBAL.replace(/0C$/, '0D'))).toThrow(/wrong TCK: ATR ends with 0D but the XOR of T0..the last historical byte is 0C/);
  });
  it('rejects a missing TCK', () => {
    expect(() => atr(T1_GLOBAL.replace(/ 0C$/, ''))).toThrow(/TCK missing: it is required because a protocol other than T=0 is offered/);
  });
});

describe('parseAtr: inverse convention', () => {
  it('accepts TS = 3F and parses the rest as usual', () => {
    const a = atr(INVERSE);
    expect(a.convention).toBe('inverse');
    expect(a.groups[0]).toMatchObject({ tb: 0x25, tc: 0x00 });
    expect(a.protocols).toEqual([0]);
    expect(toHex(a.historical)).toBe('2120000F789000');
    expect(a.historicalInfo.categoryMeaning).toBe('proprietary format');
    expect(explainAtr(a)[1]).toBe('+ TS = 3F --> inverse convention');
  });
  it('explains a TS of 03 as undecoded inverse convention', () => {
    expect(() => atr('03 67 25 00 21 20 00 0F 78 90 00')).toThrow(/got 03 \(03 is 3F read without inverse-convention decoding\)/);
  });
});

describe('parseAtr: malformed ATRs', () => {
  const bad: [string, string, RegExp][] = [
    ['empty', '', /at least TS and T0, got 0/],
    ['TS only', '3B', /at least TS and T0, got 1/],
    ['bad TS', '3C 00', /TS must be 3B .* got 3C/],
    ['TA1 announced but missing', '3B 10', /TA1 is announced but the ATR ends after 2 bytes/],
    ['TD2 announced but missing', '3B 80 80', /TD2 is announced/],
    ['historical bytes cut short', '3B 05 01 02', /T0 announces 5 historical bytes but only 2/],
    ['extra bytes after TCK', '3B 80 01 81 00', /1 unexpected byte\(s\) after TCK: 00/],
  ];
  for (const [name, hex, err] of bad) it(`rejects ${name}`, () => expect(() => atr(hex)).toThrow(err));

  it('errors carry the BAD_ATR code', () => {
    expect(() => atr('3C 00')).toThrow(expect.objectContaining({ code: 'BAD_ATR' }));
  });

  it('warns about RFU Fi/Di values instead of failing', () => {
    const a = atr('3B 10 7A'); // FI=7 (RFU), DI=10 (RFU)
    expect(a.fi).toBeUndefined();
    expect(a.warnings).toEqual(['TA1 = 7A: FI = 7 is RFU', 'TA1 = 7A: DI = 10 is RFU']);
    expect(explainAtr(a)).toContain('! TA1 = 7A: FI = 7 is RFU');
  });
});

describe('clockRate', () => {
  it('follows ISO 7816-3 tables 7 and 8', () => {
    expect(clockRate(0x11)).toEqual({ fi: 372, fmaxMHz: 5, di: 1 });
    expect(clockRate(0x01)).toEqual({ fi: 372, fmaxMHz: 4, di: 1 });
    expect(clockRate(0x96)).toEqual({ fi: 512, fmaxMHz: 5, di: 32 });
    expect(clockRate(0xa8)).toEqual({ fi: 768, fmaxMHz: 7.5, di: 12 });
    expect(clockRate(0xd9)).toEqual({ fi: 2048, fmaxMHz: 20, di: 20 });
  });
});

describe('buildAtr', () => {
  it('rebuilds the reference ATRs byte for byte', () => {
    expect(toHex(buildAtr({ protocols: [0, 1], historical: fromHex('80 4F 0C A0 00 00 03 06 03 00 01 00 00 00 00') }), ' ')).toBe(STORAGE);
    expect(toHex(buildAtr({ protocols: [0], tb1: 0, tc1: 0, historical: fromHex('0073C84012009000') }), ' ')).toBe(T0_ONLY);
    expect(toHex(buildAtr({ protocols: [0], convention: 'inverse', tb1: 0x25, tc1: 0, historical: fromHex('2120000F789000') }), ' ')).toBe(INVERSE);
    const t1: AtrOptions = { ta1: 0x18, tc1: 0xff, protocols: [1], t1: { ifsc: 254, bwi: 7, cwi: 5 }, global: { ta: 0x03 }, historical: fromHex('0031C573C00140009000') };
    expect(toHex(buildAtr(t1), ' ')).toBe(T1_GLOBAL);
  });

  it('builds the smallest ATRs', () => {
    expect(toHex(buildAtr({ protocols: [0] }))).toBe('3B00');
    expect(toHex(buildAtr())).toBe('3B800181'); // T=1: TD1 = 01 and a TCK
  });

  it('round-trips option combinations through parseAtr', () => {
    const combos: AtrOptions[] = [
      { protocols: [1], t1: { ifsc: 128, crc: true } },
      { protocols: [0, 1], ta1: 0x96, t1: { bwi: 3 }, global: { ta: 0xc7, tb: 0x00 } },
      { protocols: [0], t0: { wi: 20 } },
      { protocols: [0], global: { ta: 0x01 } },
      { protocols: [1], ta2: 0x81, historical: Buffer.alloc(15, 0x41) },
    ];
    for (const o of combos) {
      const a = parseAtr(buildAtr(o));
      expect(a.protocols).toEqual(o.protocols);
      expect(a.warnings).toEqual([]);
      if (o.t1) expect(a.t1Parameters).toMatchObject({ ...(o.t1.ifsc ? { ifsc: o.t1.ifsc } : {}), ...(o.t1.bwi !== undefined ? { bwi: o.t1.bwi, cwi: 13 } : {}), errorDetection: o.t1.crc ? 'CRC' : 'LRC' });
      if (o.t0) expect(a.t0Parameters).toEqual({ wi: o.t0.wi });
      if (o.global?.ta !== undefined) expect(a.globalBytes).toBe(true);
      if (o.ta1 !== undefined) expect(a.fi).toBe(clockRate(o.ta1).fi);
      if (o.ta2 !== undefined) expect(a.specificMode).toEqual({ protocol: 1, canChangeMode: false, implicitParameters: false });
    }
    expect(parseAtr(buildAtr({ protocols: [0], t0: { wi: 20 } })).tck).toBeUndefined(); // still only T=0: no TCK
    expect(parseAtr(buildAtr({ protocols: [0], global: { ta: 0x01 } })).tck).toBeDefined(); // T=15 present: TCK
  });

  it('rejects impossible options', () => {
    expect(() => buildAtr({ protocols: [] })).toThrow(/at least one protocol/);
    expect(() => buildAtr({ protocols: [15] })).toThrow(/T=15 cannot be offered/);
    expect(() => buildAtr({ historical: Buffer.alloc(16) })).toThrow(/at most 15 historical bytes/);
    expect(() => buildAtr({ protocols: [0], t1: { ifsc: 32 } })).toThrow(/T=1 is not offered/);
    expect(() => buildAtr({ protocols: [1], t0: { wi: 10 } })).toThrow(/T=0 is not offered/);
    expect(() => buildAtr({ t1: { ifsc: 255 } })).toThrow(/IFSC must be 1..254/);
    expect(() => buildAtr({ t1: { bwi: 10 } })).toThrow(/BWI must be 0..9/);
    expect(() => buildAtr({ ta1: 0x100 })).toThrow(/TA1 must be a byte/);
    const allProtocols = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14];
    expect(buildAtr({ protocols: allProtocols, historical: Buffer.alloc(15) }).length).toBe(33); // the limit itself is fine
    expect(() => buildAtr({ protocols: allProtocols, ta1: 0x11, historical: Buffer.alloc(15) })).toThrow(/the ATR would be 34 bytes; ISO 7816-3 allows at most 33/);
  });
});

describe('explainAtr', () => {
  it('starts like pcsc_scan and accepts raw bytes', () => {
    const lines = explainAtr(fromHex(T1_GLOBAL));
    expect(lines.slice(0, 3)).toEqual([`ATR: ${T1_GLOBAL}`, '+ TS = 3B --> direct convention', '+ T0 = DA, Y(1): 1101, K: 10 (historical bytes)']);
    expect(lines).toContain('+ Protocols offered: T=1 (with T=15 global interface bytes)');
  });
});
