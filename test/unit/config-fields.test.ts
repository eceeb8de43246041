// The field checks every JSON input parser shares (src/config-fields.ts): profiles and the servers' config
// files name the bad field, with its prefix, and a string field's message never shows the value (it may be a key).

import { describe, expect, it } from 'vitest';
import { fieldChecker, isObj } from '../../src/config-fields.ts';

class FieldError extends Error {}
const c = fieldChecker((field, message) => {
  throw new FieldError(`${field}: ${message}`);
});

describe('config field checks', () => {
  it('isObj: plain objects only', () => {
    expect([{}, { a: 1 }].map(isObj)).toEqual([true, true]);
    expect([null, [], 'x', 1, undefined].map(isObj)).toEqual([false, false, false, false, false]);
  });
  it('known: unknown fields are refused, $comment allowed and not listed', () => {
    expect(() => c.known({ $comment: 'x', a: 1 }, ['$comment', 'a', 'b'], 'p.')).not.toThrow();
    expect(() => c.known({ z: 1 }, ['$comment', 'a', 'b'], 'p.')).toThrow(/^p\.z: unknown field \(known: a, b\)$/);
  });
  it('int: range, default, missing, wrong type', () => {
    expect(c.int({ n: 5 }, 'n', '', 1, 9)).toBe(5);
    expect(c.int({}, 'n', '', 1, 9, 3)).toBe(3);
    expect(() => c.int({}, 'n', 'x.', 1, 9)).toThrow(/^x\.n: missing \(an integer 1\.\.9\)$/);
    expect(() => c.int({ n: 10 }, 'n', '', 1, 9)).toThrow(/^n: must be an integer 1\.\.9, got 10$/);
    expect(() => c.int({ n: '5' }, 'n', '', 1, 9)).toThrow(/got '5'/);
    expect(() => c.int({ n: 1.5 }, 'n', '', 1, 9)).toThrow(FieldError);
  });
  it('str: required, non-empty, matching; the value is never in the message', () => {
    expect(c.str({ s: 'AB' }, 's', '', /^[A-Z]+$/)).toBe('AB');
    expect(() => c.str({}, 's', 'a.')).toThrow(/^a\.s: must be a non-empty string$/);
    expect(() => c.str({ s: '' }, 's')).toThrow(/must be a non-empty string/);
    const secret = '0123456789ABCDEFFEDCBA987654321Z';
    let message = '';
    try {
      c.str({ key: secret }, 'key', '', /^[0-9A-F]{32}$/);
    } catch (e) {
      message = (e as Error).message;
    }
    expect(message).toMatch(/^key: must be a string matching/);
    expect(message).not.toContain(secret);
  });
});
