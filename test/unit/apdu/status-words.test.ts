// Status-word table: ISO 7816-4 meanings, SW2-dependent meanings, application registrations and the printed table.

import { afterEach, describe, expect, it } from 'vitest';
import {
  describeSw,
  ISO_SOURCE,
  listStatusWords,
  lookupSw,
  parseSw,
  registerStatusWords,
  swCategory,
  unregisterStatusWords,
} from '../../../src/apdu/status-words.ts';

afterEach(() => {
  unregisterStatusWords('purse');
  unregisterStatusWords('loyalty');
});

describe('ISO 7816-4 meanings', () => {
  const cases: [number, RegExp, string][] = [
    [0x9000, /^9000: normal processing/, 'normal'],
    [0x6282, /end of file or record reached/, 'warning'],
    [0x6300, /verification failed/, 'warning'],
    [0x6581, /memory failure/, 'execution error'],
    [0x6700, /wrong length/, 'checking error'],
    [0x6882, /secure messaging not supported/, 'checking error'],
    [0x6884, /command chaining not supported/, 'checking error'],
    [0x6982, /security status not satisfied/, 'checking error'],
    [0x6983, /authentication method blocked/, 'checking error'],
    [0x6985, /conditions of use not satisfied/, 'checking error'],
    [0x6a82, /file or application not found/, 'checking error'],
    [0x6a86, /incorrect parameters P1-P2/, 'checking error'],
    [0x6b00, /offset outside the EF/, 'checking error'],
    [0x6d00, /instruction code not supported/, 'checking error'],
    [0x6e00, /class not supported/, 'checking error'],
    [0x6f00, /no precise diagnosis/, 'checking error'],
  ];
  for (const [sw, meaning, category] of cases) {
    it(`${sw.toString(16).toUpperCase()} → ${meaning.source}`, () => {
      expect(describeSw(sw)).toMatch(meaning);
      expect(lookupSw(sw).category).toBe(category);
      expect(lookupSw(sw).source).toBe(ISO_SOURCE);
    });
  }

  it('reads the retry counter from 63Cx', () => {
    expect(describeSw(0x63c3)).toBe('63C3: warning, memory changed: counter 3 (typically 3 tries left)');
    expect(describeSw(0x63c1)).toMatch(/1 try left/);
    expect(describeSw(0x63c0)).toMatch(/0 tries left/);
  });

  it('reads the byte counts from 61xx and 6Cxx', () => {
    expect(describeSw(0x6110)).toMatch(/16 more response bytes available/);
    expect(describeSw(0x6100)).toMatch(/256 or more/);
    expect(describeSw(0x6c08)).toMatch(/8 bytes available \(re-send with Le=08\)/);
    expect(describeSw(0x6c00)).toMatch(/256 bytes available/);
  });

  it('falls back to the SW1 group for SW2 values ISO does not define', () => {
    expect(describeSw(0x6a99)).toBe('6A99: checking error: wrong parameters P1-P2');
    expect(describeSw(0x6999)).toMatch(/command not allowed$/);
    expect(describeSw(0x6202)).toMatch(/triggering by the card \(query 02\)/);
    expect(describeSw(0x6290)).toMatch(/SW2 90 not defined/);
  });

  it('says so when nothing matches', () => {
    expect(lookupSw(0x9f10)).toMatchObject({ category: 'application-specific', source: undefined, meaning: expect.stringMatching(/no registered meaning/) });
    expect(lookupSw(0x6000)).toMatchObject({ category: 'invalid', source: undefined });
    expect(lookupSw(0x1234).meaning).toMatch(/not a valid status word/);
    expect(swCategory(0x6400)).toBe('execution error');
  });

  it('rejects numbers that are not 16-bit', () => {
    expect(() => lookupSw(0x10000)).toThrow(/16 bits/);
    expect(() => lookupSw(-1)).toThrow(/16 bits/);
  });
});

describe('application-specific status words', () => {
  it('registers meanings with patterns; the most specific wins', () => {
    registerStatusWords({ '9FXX': 'purse error', '9F10': 'purse balance too low' }, 'purse');
    expect(lookupSw(0x9f10)).toMatchObject({ meaning: 'purse balance too low', source: 'purse', category: 'application-specific' });
    expect(lookupSw(0x9f11)).toMatchObject({ meaning: 'purse error', source: 'purse' });
  });

  it('lets an application sharpen an ISO meaning only when asked for its context', () => {
    registerStatusWords({ '6985': 'purse is locked' }, 'purse');
    expect(describeSw(0x6985)).toMatch(/conditions of use not satisfied/);
    expect(describeSw(0x6985, 'purse')).toBe('6985: purse is locked');
    expect(describeSw(0x6a82, 'purse')).toMatch(/file or application not found/);
  });

  it('re-registering a source replaces its rows', () => {
    registerStatusWords({ '9F10': 'old' }, 'purse');
    registerStatusWords({ '9F20': 'new' }, 'purse');
    expect(lookupSw(0x9f10).source).toBeUndefined();
    expect(lookupSw(0x9f20).meaning).toBe('new');
  });

  it('rejects a pattern another application gave a different meaning', () => {
    registerStatusWords({ '9F10': 'purse balance too low' }, 'purse');
    expect(() => registerStatusWords({ '9F10': 'no points left' }, 'loyalty')).toThrow(/9F10 is already registered by purse/);
    registerStatusWords({ '9F10': 'purse balance too low' }, 'loyalty'); // same meaning is fine
  });

  it('rejects malformed patterns, empty meanings and the ISO source name', () => {
    expect(() => registerStatusWords({ '9G00': 'x' }, 'purse')).toThrow(/pattern '9G00'/);
    expect(() => registerStatusWords({ XX00: 'x' }, 'purse')).toThrow(/pattern 'XX00'/);
    expect(() => registerStatusWords({ '900': 'x' }, 'purse')).toThrow(/pattern '900'/);
    expect(() => registerStatusWords({ '9F00': ' ' }, 'purse')).toThrow(/empty meaning/);
    expect(() => registerStatusWords({ '9F00': 'x' }, ISO_SOURCE)).toThrow(/application name/);
  });
});

describe('the printed table', () => {
  it('lists ISO rows, group rows before their specific rows, then registered rows', () => {
    registerStatusWords({ '9F10': 'purse balance too low' }, 'purse');
    const rows = listStatusWords();
    const patterns = rows.map((r) => r.pattern);
    for (const p of ['9000', '61XX', '62XX', '63CX', '6700', '6A82', '6B00', '6CXX', '6D00', '6E00', '6F00']) expect(patterns).toContain(p);
    expect(patterns.indexOf('6AXX')).toBeLessThan(patterns.indexOf('6A80'));
    expect(rows.at(-1)).toEqual({ pattern: '9F10', meaning: 'purse balance too low', source: 'purse' });
    expect(rows.filter((r) => r.source === ISO_SOURCE).length).toBeGreaterThan(50);
  });
});

describe('parseSw', () => {
  it('accepts the usual spellings', () => {
    expect(parseSw('6A82')).toBe(0x6a82);
    expect(parseSw('63 c2')).toBe(0x63c2);
    expect(parseSw('0x9000')).toBe(0x9000);
  });
  it('rejects anything else', () => {
    expect(() => parseSw('900')).toThrow(/not a status word/);
    expect(() => parseSw('90000')).toThrow(/not a status word/);
    expect(() => parseSw('zz00')).toThrow(/not a status word/);
  });
});
