// 3DES and AES: CBC and ECB known answers, and the cipher helpers (padding method 2 round trips, IVs, key and length checks).
import { describe, expect, it } from 'vitest';
import {
  CryptoError,
  aesCbcDecrypt,
  aesCbcEncrypt,
  cbcDecrypt,
  cbcEncrypt,
  ecbEncrypt,
  tdesCbcDecrypt,
  tdesCbcEncrypt,
  type KeyType,
} from '../../../src/crypto/index.ts';
import { fixture, hex, toHex } from './helpers.ts';

const kat = fixture<{ vectors: { name: string; keyType: KeyType; key: string; iv: string; plaintext: string; ciphertext: string }[] }>(
  'fixtures/vectors/cipher-kat.json',
);

describe('CBC known answers', () => {
  for (const v of kat.vectors) {
    it(v.name, () => {
      expect(toHex(cbcEncrypt(v.keyType, hex(v.key), hex(v.iv), hex(v.plaintext)))).toBe(v.ciphertext);
      expect(toHex(cbcDecrypt(v.keyType, hex(v.key), hex(v.iv), hex(v.ciphertext)))).toBe(v.plaintext);
    });
  }
  it('ECB equals CBC block by block with a zero IV', () => {
    const v = kat.vectors[2]!;
    const pt = hex(v.plaintext);
    const ecb = ecbEncrypt('AES-128', hex(v.key), pt);
    for (let off = 0; off < pt.length; off += 16) {
      expect(toHex(ecb.subarray(off, off + 16))).toBe(toHex(aesCbcEncrypt(hex(v.key), Buffer.alloc(16), pt.subarray(off, off + 16))));
    }
  });
});

describe('CBC helpers', () => {
  const k3 = hex('0123456789ABCDEFFEDCBA9876543210');
  const ka = hex('2B7E151628AED2A6ABF7158809CF4F3C');
  it('method 2 round-trips every length 0..40 and adds 1..bs bytes', () => {
    for (let n = 0; n <= 40; n++) {
      const d = Buffer.alloc(n, n);
      const iv8 = Buffer.alloc(8, 3);
      const iv16 = Buffer.alloc(16, 3);
      const c3 = tdesCbcEncrypt(k3, iv8, d, 'method2');
      expect(c3.length).toBe((Math.floor(n / 8) + 1) * 8);
      expect(tdesCbcDecrypt(k3, iv8, c3, 'method2').equals(d)).toBe(true);
      const ca = aesCbcEncrypt(ka, iv16, d, 'method2');
      expect(ca.length).toBe((Math.floor(n / 16) + 1) * 16);
      expect(aesCbcDecrypt(ka, iv16, ca, 'method2').equals(d)).toBe(true);
    }
  });
  it('repeated calls with different IVs behave like fresh CBC operations', () => {
    const d = hex('00112233445566778899AABBCCDDEEFF0011223344556677');
    const ivs = [Buffer.alloc(8), hex('0102030405060708'), hex('FFFFFFFFFFFFFFFF')];
    const first = ivs.map((iv) => toHex(tdesCbcEncrypt(k3, iv, d)));
    for (let r = 0; r < 3; r++) ivs.forEach((iv, i) => expect(toHex(tdesCbcEncrypt(k3, iv, d))).toBe(first[i]));
    for (let r = 0; r < 3; r++) ivs.forEach((iv, i) => expect(toHex(tdesCbcDecrypt(k3, iv, hex(first[i]!)))).toBe(toHex(d)));
  });
  it('no-padding mode refuses partial blocks and empty input', () => {
    expect(() => tdesCbcEncrypt(k3, Buffer.alloc(8), Buffer.alloc(7))).toThrow(CryptoError);
    expect(() => aesCbcEncrypt(ka, Buffer.alloc(16), Buffer.alloc(0))).toThrow(CryptoError);
    expect(() => aesCbcDecrypt(ka, Buffer.alloc(16), Buffer.alloc(17))).toThrow(CryptoError);
  });
  it('wrong key and IV lengths are refused', () => {
    expect(() => tdesCbcEncrypt(Buffer.alloc(8), Buffer.alloc(8), Buffer.alloc(8))).toThrow(/16 bytes/);
    expect(() => tdesCbcEncrypt(Buffer.alloc(24), Buffer.alloc(8), Buffer.alloc(8))).toThrow(CryptoError);
    expect(() => aesCbcEncrypt(Buffer.alloc(32), Buffer.alloc(16), Buffer.alloc(16))).toThrow(CryptoError);
    expect(() => aesCbcEncrypt(ka, Buffer.alloc(8), Buffer.alloc(16))).toThrow(/IV/);
  });
  it('a wrong key gives a padding error on method-2 decrypt (almost always)', () => {
    const c = tdesCbcEncrypt(k3, Buffer.alloc(8), Buffer.from('hello'), 'method2');
    expect(() => tdesCbcDecrypt(hex('00112233445566778899AABBCCDDEEFF'), Buffer.alloc(8), c, 'method2')).toThrow(CryptoError);
  });
  it('unknown key type is refused', () => {
    expect(() => cbcEncrypt('DES' as KeyType, k3, Buffer.alloc(8), Buffer.alloc(8))).toThrow(/unknown key type/);
  });
});
