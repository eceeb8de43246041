// APDU script format: parsing (labels, resets, expectations with wildcards) and line-numbered syntax errors; matching.

import { describe, expect, it } from 'vitest';
import { fromHex, toHex } from '../../../src/apdu/hex.ts';
import { checkResponse, describeStep, mismatch, parseScript, ScriptSyntaxError, type ScriptStep } from '../../../src/apdu/script.ts';
import { parseResponse } from '../../../src/apdu/response.ts';

const EXAMPLE = `# select the echo applet, then read a counter
label: select
00 A4 04 00 07 F0 00 00 00 01 01 01 00  -> 9000
00 A4 04 00 02 3F 00                  # no expectation

reset
label: counter
80 CA 00 00 00 -> 01 02 ?? 9000
80 CA 00 01 00 -> 61XX | 9000
80 CA 00 02 00 -> 6F * 90 00
reset cold
00 B0 00 00 10 -> 6A82
`;

const apdu = (s: ScriptStep) => {
  if (s.kind !== 'apdu') throw new Error('not an apdu step');
  return s;
};

describe('parseScript', () => {
  const script = parseScript(EXAMPLE, 'echo.apdu');

  it('turns each command or reset line into a step with its line number and label', () => {
    expect(script.source).toBe('echo.apdu');
    expect(script.steps.map((s) => [s.kind, s.line, s.label])).toEqual([
      ['apdu', 3, 'select'],
      ['apdu', 4, 'select'],
      ['reset', 6, 'select'],
      ['apdu', 8, 'counter'],
      ['apdu', 9, 'counter'],
      ['apdu', 10, 'counter'],
      ['reset', 11, 'counter'],
      ['apdu', 12, 'counter'],
    ]);
    expect(script.steps[6]).toMatchObject({ kind: 'reset', cold: true });
    expect(script.steps[2]).toMatchObject({ kind: 'reset', cold: false });
  });

  it('keeps the exact bytes and the parsed command', () => {
    const s = apdu(script.steps[0]!);
    expect(toHex(s.bytes)).toBe('00A4040007F000000001010100');
    expect(s.command).toMatchObject({ cla: 0, ins: 0xa4, p1: 4, p2: 0, le: 256 });
    expect(toHex(s.command.data)).toBe('F0000000010101');
    expect(apdu(script.steps[1]!).expect).toEqual([]);
  });

  it('normalises expectations', () => {
    expect(describeStep(script.steps[0]!)).toBe('00 A4 04 00 07 F0 00 00 00 01 01 01 00 -> 9000');
    expect(describeStep(script.steps[3]!)).toBe('80 CA 00 00 00 -> 01 02 XX 9000');
    expect(describeStep(script.steps[4]!)).toBe('80 CA 00 01 00 -> 61XX | 9000');
    expect(describeStep(script.steps[5]!)).toBe('80 CA 00 02 00 -> 6F * 9000');
    expect(describeStep(script.steps[6]!)).toBe('reset cold');
  });

  it('accepts CRLF line endings and compact hex', () => {
    const s = parseScript('00A4040000->9000\r\n00B0000000 -> 9000\r\n');
    expect(s.steps).toHaveLength(2);
  });

  const errors: [string, string, RegExp][] = [
    ['bad hex digit', '# x\n\n00 A4 0G 00', /^t\.apdu:3: APDU: 'G' is not a hex digit$/],
    ['odd hex', '00 A4 040', /^t\.apdu:1: APDU: odd number of hex digits/],
    ['short APDU', '00 A4', /^t\.apdu:1: a command APDU needs at least 4 header bytes, got 2$/],
    ['Lc mismatch', '00 A4 04 00 05 3F 00', /^t\.apdu:1: Lc says 5 data bytes but 2 bytes follow/],
    ['empty expectation', '00A40400 ->', /^t\.apdu:1: nothing after '->'/],
    ['SW too short', '00A40400 -> 900', /^t\.apdu:1: expected response '900' needs a 4-digit SW/],
    ['bad SW character', '00A40400 -> 90G0', /^t\.apdu:1: 'G' in SW '90G0' is not a hex digit or a wildcard/],
    ['odd data digits', '00A40400 -> 010 9000', /^t\.apdu:1: expected data '010' has an odd number of digits/],
    ['two stars', '00A40400 -> 01 * 02 * 9000', /^t\.apdu:1: expected data '01\*02\*' may contain at most one '\*'/],
    ['bad reset mode', 'reset hot', /^t\.apdu:1: 'reset hot': expected 'reset', 'reset warm' or 'reset cold'$/],
    ['empty label', 'label:', /^t\.apdu:1: label needs a text/],
    ['empty alternative', '00A40400 -> 9000 |', /^t\.apdu:1: expected response '' needs a 4-digit SW/],
  ];
  for (const [name, text, err] of errors) {
    it(`reports ${name} with file and line`, () => {
      expect(() => parseScript(text, 't.apdu')).toThrow(err);
    });
  }

  it('syntax errors are ScriptSyntaxErrors with the line and the BAD_SCRIPT code', () => {
    try {
      parseScript('00A40400\n\nzz', 't.apdu');
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(ScriptSyntaxError);
      expect((e as ScriptSyntaxError).line).toBe(3);
      expect((e as ScriptSyntaxError).code).toBe('BAD_SCRIPT');
    }
  });
});

describe('matching responses', () => {
  const pattern = (text: string) => apdu(parseScript(`00A40400 -> ${text}`).steps[0]!).expect;
  const resp = (hex: string) => parseResponse(fromHex(hex));

  it('matches the SW exactly or with nibble wildcards', () => {
    expect(checkResponse(pattern('9000'), resp('9000'))).toBeUndefined();
    expect(checkResponse(pattern('9000'), resp('0102 9000'))).toBeUndefined(); // data unchecked when not given
    expect(checkResponse(pattern('61XX'), resp('6110'))).toBeUndefined();
    expect(checkResponse(pattern('63CX'), resp('63C2'))).toBeUndefined();
    expect(checkResponse(pattern('63CX'), resp('6302'))).toBe('SW 6302: warning, memory changed: SW2 02 not defined by ISO 7816-4; expected 63CX');
    expect(checkResponse(pattern('9000'), resp('6A82'))).toBe('SW 6A82: checking error: file or application not found; expected 9000');
  });

  it('checks data length and bytes, with ?? and X wildcards', () => {
    expect(checkResponse(pattern('01 02 ?? 9000'), resp('0102FF 9000'))).toBeUndefined();
    expect(checkResponse(pattern('01 02 ?? 9000'), resp('0102 9000'))).toBe('response data is 2 byte(s), expected 3');
    expect(checkResponse(pattern('01 02 ?? 9000'), resp('01020304 9000'))).toBe('response data is 4 byte(s), expected 3');
    expect(checkResponse(pattern('01 03 ?? 9000'), resp('0102FF 9000'))).toBe('data byte 1 is 02, expected 03');
    expect(checkResponse(pattern('0X 9000'), resp('0F 9000'))).toBeUndefined();
    expect(checkResponse(pattern('0X 9000'), resp('1F 9000'))).toBe('data byte 0 is 1F, expected 0X');
  });

  it('matches a prefix and suffix around *', () => {
    const p = pattern('6F * 90 00 9000');
    expect(checkResponse(p, resp('6F 9000 9000'))).toBeUndefined();
    expect(checkResponse(p, resp('6F 01 02 03 9000 9000'))).toBeUndefined();
    expect(checkResponse(p, resp('6F 90 9000'))).toBe('response data is 2 byte(s), expected at least 3');
    expect(checkResponse(p, resp('6F 01 9001 9000'))).toBe('data byte 3 is 01, expected 00');
    expect(checkResponse(pattern('* 9000'), resp('9000'))).toBeUndefined();
  });

  it('passes when any alternative matches and reports all when none does', () => {
    const p = pattern('9000 | 61XX');
    expect(checkResponse(p, resp('6105'))).toBeUndefined();
    expect(checkResponse(p, resp('6A82'))).toMatch(/^SW 6A82: .*; expected 9000 \(none of 9000 \| 61XX matched\)$/);
  });

  it('mismatch reports the SW before the data', () => {
    expect(mismatch(pattern('01 9000')[0]!, resp('02 6A82'))).toMatch(/^SW 6A82/);
  });
});
