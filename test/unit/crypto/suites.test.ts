// Algorithm identifiers (3DES / AES suites): lookup, and the suite MAC and verify over the right algorithm.
import { describe, expect, it } from 'vitest';
import { ALG_3DES, ALG_AES, CryptoError, allSuites, computeMac, isAlgorithmId, suiteFor, suiteMac, suiteVerify } from '../../../src/crypto/index.ts';
import { hex } from './helpers.ts';

describe('algorithm identifiers', () => {
  it('0x01 = 3DES suite, 0x02 = AES suite', () => {
    expect(ALG_3DES).toBe(0x01);
    expect(ALG_AES).toBe(0x02);
    expect(suiteFor(0x01)).toMatchObject({ name: '3DES', keyType: 'DES3-2KEY', macAlgorithm: 'ISO9797-1-ALG3', macLength: 8, blockSize: 8 });
    expect(suiteFor(0x02)).toMatchObject({ name: 'AES', keyType: 'AES-128', macAlgorithm: 'AES-CMAC', macLength: 8, blockSize: 16 });
    expect(allSuites().map((s) => s.id)).toEqual([1, 2]);
  });
  it('unknown ids fail clearly', () => {
    for (const id of [0x00, 0x03, 0xff, -1, 1.5, 256]) {
      expect(isAlgorithmId(id)).toBe(false);
      try {
        suiteFor(id);
        expect.unreachable();
      } catch (e) {
        expect(e).toBeInstanceOf(CryptoError);
        expect((e as CryptoError).code).toBe('CRYPTO_UNKNOWN_SUITE');
        expect((e as Error).message).toMatch(/unknown algorithm identifier/);
      }
    }
    expect(() => suiteFor(3)).toThrow(/0x03/);
  });
  it('suite MACs are the named algorithm truncated to 8 bytes', () => {
    const k = hex('0123456789ABCDEFFEDCBA9876543210');
    const d = Buffer.from('suite');
    expect(suiteMac(ALG_3DES, k, d).equals(computeMac('ISO9797-1-ALG3', k, d, 8))).toBe(true);
    expect(suiteMac(ALG_AES, k, d).equals(computeMac('AES-CMAC', k, d, 16).subarray(0, 8))).toBe(true);
    expect(suiteVerify(ALG_AES, k, d, suiteMac(ALG_AES, k, d))).toBe(true);
    expect(suiteVerify(ALG_AES, k, d, suiteMac(ALG_AES, k, d).subarray(0, 4))).toBe(false);
    expect(suiteVerify(ALG_3DES, k, d, suiteMac(ALG_AES, k, d))).toBe(false);
  });
});
