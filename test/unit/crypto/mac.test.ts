// MACs: ISO/IEC 9797-1 alg 1/3 and AES-CMAC against published vectors (NIST SP 800-38B), the same MACs over
// abstract primitives (the path the HSM backends use), and the MAC API's checks.
import { describe, expect, it } from 'vitest';
import {
  CryptoError,
  cbcFromEcb,
  cbcMacAlg1,
  cmac,
  cmacSubkeys,
  computeMac,
  engineFor,
  macEquals,
  macFromPrimitives,
  prepareMacKey,
  primitivesForKey,
  retailMacAlg3,
  tdesEcbEncrypt,
  aesEcbEncrypt,
  verifyMac,
  type MacAlgorithm,
  type MacPadding,
} from '../../../src/crypto/index.ts';
import { fixture, hex, toHex } from './helpers.ts';

interface IsoVector {
  name: string;
  algorithm: 'ISO9797-1-ALG1' | 'ISO9797-1-ALG3';
  padding: MacPadding;
  key: string;
  dataAscii?: string;
  dataHex?: string;
  mac: string;
  mac8?: string;
}
const iso = fixture<{ vectors: IsoVector[] }>('fixtures/vectors/iso9797-1.json');
const nist = fixture<{ key: string; subkeys: { L: string; K1: string; K2: string }; vectors: { name: string; message: string; mac: string }[] }>(
  'fixtures/vectors/nist-sp800-38b.json',
);

function dataOf(v: IsoVector): Buffer {
  return v.dataAscii !== undefined ? Buffer.from(v.dataAscii, 'ascii') : hex(v.dataHex!);
}

describe('ISO/IEC 9797-1 published vectors', () => {
  for (const v of iso.vectors) {
    it(`${v.name} (${v.padding})`, () => {
      const key = hex(v.key);
      const prims = primitivesForKey(v.algorithm, key);
      const full = v.algorithm === 'ISO9797-1-ALG1' ? cbcMacAlg1(prims.full, dataOf(v), v.padding) : retailMacAlg3(prims.k1!, prims.full, dataOf(v), v.padding);
      expect(toHex(full).startsWith(v.mac)).toBe(true);
      if (v.mac8) expect(toHex(full)).toBe(v.mac8);
      if (v.padding === 'method2') {
        // the public API (padding method 2 always) gives the same bytes
        expect(toHex(computeMac(v.algorithm, key, dataOf(v), v.mac.length / 2))).toBe(v.mac);
        expect(verifyMac(v.algorithm, key, dataOf(v), hex(v.mac))).toBe(true);
      }
    });
  }
});

describe('AES-CMAC, NIST SP 800-38B D.1', () => {
  const key = hex(nist.key);
  it('subkeys K1, K2', () => {
    const prim = engineFor('aes', key);
    const { k1, k2 } = cmacSubkeys(prim);
    expect(toHex(aesEcbEncrypt(key, Buffer.alloc(16)))).toBe(nist.subkeys.L);
    expect(toHex(k1)).toBe(nist.subkeys.K1);
    expect(toHex(k2)).toBe(nist.subkeys.K2);
  });
  for (const v of nist.vectors) {
    it(v.name, () => {
      expect(toHex(computeMac('AES-CMAC', key, hex(v.message), 16))).toBe(v.mac);
      expect(toHex(computeMac('AES-CMAC', key, hex(v.message)))).toBe(v.mac.slice(0, 16)); // default 8 bytes, leftmost
      expect(verifyMac('AES-CMAC', key, hex(v.message), hex(v.mac))).toBe(true);
      expect(verifyMac('AES-CMAC', key, hex(v.message), hex(v.mac).subarray(0, 8))).toBe(true);
    });
  }
});

describe('MAC over abstract primitives (the HSM-backend path)', () => {
  const k3 = hex('0123456789ABCDEFFEDCBA9876543210');
  const kAes = hex(nist.key);
  // A "token" that only has ECB single-block encryption.
  const ecb3des = (key: Buffer) => cbcFromEcb(8, (b) => tdesEcbEncrypt(key, b));
  const k1k1 = Buffer.concat([k3.subarray(0, 8), k3.subarray(0, 8)]);
  const msgs = [0, 1, 7, 8, 9, 15, 16, 17, 50, 64, 100].map((n) => Buffer.from(Array.from({ length: n }, (_, i) => (i * 37 + 11) & 0xff)));
  it('ALG1 and ALG3 from ECB-only primitives equal the fast path', () => {
    for (const m of msgs) {
      expect(toHex(macFromPrimitives('ISO9797-1-ALG1', { full: ecb3des(k3) }, m))).toBe(toHex(computeMac('ISO9797-1-ALG1', k3, m)));
      expect(toHex(macFromPrimitives('ISO9797-1-ALG3', { full: ecb3des(k3), k1: ecb3des(k1k1) }, m))).toBe(toHex(computeMac('ISO9797-1-ALG3', k3, m)));
    }
  });
  it('CMAC from an ECB-only primitive equals the fast path', () => {
    const prim = cbcFromEcb(16, (b) => aesEcbEncrypt(kAes, b));
    for (const m of msgs) expect(toHex(macFromPrimitives('AES-CMAC', { full: prim }, m))).toBe(toHex(computeMac('AES-CMAC', kAes, m)));
    expect(toHex(cmac(prim, Buffer.alloc(0)))).toBe(nist.vectors[0]!.mac);
  });
  it('ALG3 without the K1 primitive is refused', () => {
    expect(() => macFromPrimitives('ISO9797-1-ALG3', { full: ecb3des(k3) }, Buffer.alloc(3))).toThrow(/K1/);
  });
  it('ALG3 with K1 == K2 is ALG1 with single DES (sanity of the construction)', () => {
    for (const m of msgs) expect(toHex(computeMac('ISO9797-1-ALG3', k1k1, m))).toBe(toHex(computeMac('ISO9797-1-ALG1', k1k1, m)));
  });
});

describe('MAC API behaviour', () => {
  const k = hex('0123456789ABCDEFFEDCBA9876543210');
  const algs: MacAlgorithm[] = ['ISO9797-1-ALG1', 'ISO9797-1-ALG3', 'AES-CMAC'];
  it('wrong key lengths are refused with CRYPTO_KEY_LENGTH', () => {
    for (const alg of algs) {
      for (const n of [0, 8, 15, 17, 24, 32]) {
        try {
          computeMac(alg, Buffer.alloc(n), Buffer.alloc(4));
          expect.unreachable();
        } catch (e) {
          expect(e).toBeInstanceOf(CryptoError);
          expect((e as CryptoError).code).toBe('CRYPTO_KEY_LENGTH');
        }
      }
    }
  });
  it('unknown algorithm names are refused', () => {
    expect(() => computeMac('HMAC' as MacAlgorithm, k, Buffer.alloc(1))).toThrow(/unknown MAC algorithm/);
  });
  it('MAC lengths: 4..8 for DES, 4..16 for AES; leftmost bytes', () => {
    const d = Buffer.from('abc');
    expect(computeMac('ISO9797-1-ALG3', k, d, 4).equals(computeMac('ISO9797-1-ALG3', k, d, 8).subarray(0, 4))).toBe(true);
    expect(() => computeMac('ISO9797-1-ALG3', k, d, 9)).toThrow(CryptoError);
    expect(() => computeMac('ISO9797-1-ALG1', k, d, 3)).toThrow(CryptoError);
    expect(computeMac('AES-CMAC', k, d, 16).length).toBe(16);
    expect(() => computeMac('AES-CMAC', k, d, 17)).toThrow(CryptoError);
  });
  it('verify rejects a flipped bit in data or MAC and a truncated MAC below 4 bytes', () => {
    for (const alg of algs) {
      const d = Buffer.from('the quick brown fox');
      const mac = computeMac(alg, k, d);
      expect(verifyMac(alg, k, d, mac)).toBe(true);
      for (let i = 0; i < mac.length; i++) {
        const bad = Buffer.from(mac);
        bad[i]! ^= 0x01;
        expect(verifyMac(alg, k, d, bad)).toBe(false);
      }
      const d2 = Buffer.from(d);
      d2[3]! ^= 0x80;
      expect(verifyMac(alg, k, d2, mac)).toBe(false);
      expect(() => verifyMac(alg, k, d, mac.subarray(0, 3))).toThrow(CryptoError);
    }
  });
  it('macEquals: constant-time equal, different lengths unequal', () => {
    expect(macEquals(hex('0102'), hex('0102'))).toBe(true);
    expect(macEquals(hex('0102'), hex('0103'))).toBe(false);
    expect(macEquals(hex('0102'), hex('010203'))).toBe(false);
    expect(macEquals(Buffer.alloc(0), Buffer.alloc(0))).toBe(true);
  });
  it('cached contexts: interleaving keys, algorithms and reused key buffers gives stable results', () => {
    const k2 = hex('00112233445566778899AABBCCDDEEFF');
    const d = Buffer.from('interleave');
    const ref = algs.map((a) => [toHex(computeMac(a, k, d)), toHex(computeMac(a, k2, d))]);
    for (let r = 0; r < 5; r++) {
      algs.forEach((a, i) => {
        expect(toHex(computeMac(a, k, d))).toBe(ref[i]![0]);
        expect(toHex(computeMac(a, Buffer.from(k2), d))).toBe(ref[i]![1]);
      });
    }
  });
  it('a key buffer rewritten in place is not served from a stale cache', () => {
    const key = Buffer.from(k);
    const d = Buffer.from('rewrite');
    const before = computeMac('ISO9797-1-ALG3', key, d);
    key[0]! ^= 0x02; // a different DES key (not just a parity bit)
    const after = computeMac('ISO9797-1-ALG3', key, d);
    expect(after.equals(before)).toBe(false);
    expect(after.equals(computeMac('ISO9797-1-ALG3', Buffer.from(key), d))).toBe(true);
  });
  it('fresh key buffers of a known value (derived keys) and LRU eviction never change a result', () => {
    const d = Buffer.from('lru');
    const keys = Array.from({ length: 300 }, (_, i) => Buffer.from(Array.from({ length: 16 }, (_, j) => (i * 7 + j * 13) & 0xff)));
    const ref = keys.map((kk) => toHex(computeMac('ISO9797-1-ALG3', Buffer.from(kk), d)));
    for (let r = 0; r < 2; r++) keys.forEach((kk, i) => expect(toHex(computeMac('ISO9797-1-ALG3', Buffer.from(kk), d))).toBe(ref[i]));
    keys.forEach((kk, i) => expect(toHex(computeMac('ISO9797-1-ALG3', kk, d))).toBe(ref[i]));
  });
  it('prepareMacKey gives the same MACs as computeMac', () => {
    for (const alg of algs) {
      const mk = prepareMacKey(alg, k);
      const d = Buffer.from('prepared');
      expect(mk.mac(d).equals(computeMac(alg, k, d))).toBe(true);
      expect(mk.verify(d, computeMac(alg, k, d, 6))).toBe(true);
      expect(mk.verify(Buffer.from('prepareD'), computeMac(alg, k, d))).toBe(false);
    }
  });
  it('DES parity bits do not change a MAC', () => {
    const flipped = Buffer.from(k.map((b) => b ^ 0x01));
    const d = Buffer.from('parity');
    expect(computeMac('ISO9797-1-ALG3', flipped, d).equals(computeMac('ISO9797-1-ALG3', k, d))).toBe(true);
  });
  it('is fast: well under 100 us per 50-byte MAC on a warm key', () => {
    const d = Buffer.alloc(50, 7);
    for (const alg of algs) {
      for (let i = 0; i < 200; i++) computeMac(alg, k, d);
      const n = 2000;
      const t0 = process.hrtime.bigint();
      for (let i = 0; i < n; i++) computeMac(alg, k, d);
      const us = Number(process.hrtime.bigint() - t0) / n / 1000;
      expect(us).toBeLessThan(100);
    }
  });
});
