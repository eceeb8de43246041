// ISO/IEC 9797-1 padding methods 1 and 2, and the removal of method 2 padding with its errors.
import { describe, expect, it } from 'vitest';
import { CryptoError, padMethod1, padMethod2, unpadMethod2 } from '../../../src/crypto/index.ts';
import { hex, toHex } from './helpers.ts';

describe('ISO 9797-1 padding', () => {
  it('method 1: empty input becomes one zero block', () => {
    expect(toHex(padMethod1(Buffer.alloc(0), 8))).toBe('0000000000000000');
    expect(padMethod1(Buffer.alloc(0), 16).length).toBe(16);
  });
  it('method 1: exact multiples are unchanged, others filled with zeros', () => {
    expect(toHex(padMethod1(hex('0102030405060708'), 8))).toBe('0102030405060708');
    expect(toHex(padMethod1(hex('01'), 8))).toBe('0100000000000000');
  });
  it('method 2: empty input -> 80 00..', () => {
    expect(toHex(padMethod2(Buffer.alloc(0), 8))).toBe('8000000000000000');
    expect(toHex(padMethod2(Buffer.alloc(0), 16))).toBe('80' + '00'.repeat(15));
  });
  it('method 2: an exact block multiple gains a whole block', () => {
    expect(toHex(padMethod2(hex('0102030405060708'), 8))).toBe('01020304050607088000000000000000');
    expect(padMethod2(Buffer.alloc(16), 16).length).toBe(32);
  });
  it('method 2: 7 bytes -> one block ending 80', () => {
    expect(toHex(padMethod2(hex('01020304050607'), 8))).toBe('0102030405060780');
  });
  it('method 2 round-trips for every length 0..40', () => {
    for (let n = 0; n <= 40; n++) {
      const d = Buffer.alloc(n, 0xa5);
      for (const bs of [8, 16] as const) expect(unpadMethod2(padMethod2(d, bs), bs).equals(d)).toBe(true);
    }
  });
  it('method 2 unpad keeps data that itself ends in 00 bytes', () => {
    const d = hex('0100');
    expect(toHex(unpadMethod2(padMethod2(d, 8), 8))).toBe('0100');
  });
  it('method 2 unpad rejects missing or malformed padding', () => {
    expect(() => unpadMethod2(hex('0102030405060708'), 8)).toThrow(CryptoError);
    expect(() => unpadMethod2(hex('0000000000000000'), 8)).toThrow(/padding method 2/);
    expect(() => unpadMethod2(hex('8000000000000001'), 8)).toThrow(CryptoError);
    expect(() => unpadMethod2(hex('80000000000000'), 8)).toThrow(/multiple of 8/);
    expect(() => unpadMethod2(Buffer.alloc(0), 8)).toThrow(CryptoError);
    // 80 more than one block from the end is not padding of the last block
    expect(() => unpadMethod2(hex('800000000000000000000000000000000000'), 8)).toThrow(CryptoError);
  });
  it('rejects block sizes other than 8 and 16', () => {
    expect(() => padMethod2(Buffer.alloc(1), 4 as 8)).toThrow(CryptoError);
  });
});
