// Independent cross-checks against the OpenSSL command line (a separate implementation of the
// building blocks): CBC-MAC via `openssl enc -des-ede-cbc -nopad`, CMAC via `openssl mac`, and the
// diversification blocks via `openssl enc -*-ecb -nopad`. Skipped when no OpenSSL 3 CLI is present.
import { describe, expect, it } from 'vitest';
import { computeMac, diversificationData, diversifyCardKey, adjustDesParity, keyCheckValue, padMethod2 } from '../../../src/crypto/index.ts';
import { haveOpenssl, hex, openssl, toHex } from './helpers.ts';

const k3 = '0123456789ABCDEFFEDCBA9876543210';
const kAes = '2B7E151628AED2A6ABF7158809CF4F3C';
const messages = [0, 1, 8, 13, 16, 31, 64].map((n) => Buffer.from(Array.from({ length: n }, (_, i) => (i * 91 + 5) & 0xff)));

describe.skipIf(!haveOpenssl)('openssl CLI cross-checks', () => {
  it('ALG1 (3DES CBC-MAC, pad 2) = last block of openssl des-ede-cbc', () => {
    for (const m of messages) {
      const c = openssl(['enc', '-des-ede-cbc', '-nopad', '-K', k3, '-iv', '0000000000000000'], padMethod2(m, 8));
      expect(toHex(computeMac('ISO9797-1-ALG1', hex(k3), m))).toBe(toHex(c.subarray(c.length - 8)));
    }
  });
  it('ALG3 (retail MAC) = openssl single-DES (K1K1) CBC, then des-ede-ecb of the last block', () => {
    const k1k1 = k3.slice(0, 16).repeat(2);
    for (const m of messages) {
      const p = padMethod2(m, 8);
      let h: Buffer = Buffer.alloc(8);
      if (p.length > 8) {
        const c = openssl(['enc', '-des-ede-cbc', '-nopad', '-K', k1k1, '-iv', '0000000000000000'], p.subarray(0, p.length - 8));
        h = c.subarray(c.length - 8);
      }
      const last = Buffer.from(p.subarray(p.length - 8).map((b, i) => b ^ h[i]!));
      const g = openssl(['enc', '-des-ede-ecb', '-nopad', '-K', k3], last);
      expect(toHex(computeMac('ISO9797-1-ALG3', hex(k3), m))).toBe(toHex(g));
    }
  });
  it('AES-CMAC = openssl mac CMAC', () => {
    for (const m of messages) {
      const out = openssl(['mac', '-cipher', 'AES-128-CBC', '-macopt', `hexkey:${kAes}`, 'CMAC'], m).toString().trim();
      expect(toHex(computeMac('AES-CMAC', hex(kAes), m, 16))).toBe(out.toUpperCase());
    }
  });
  it('diversification = openssl ECB of the documented blocks; AES KCV = openssl CMAC of 0^16', () => {
    for (const cid of ['4761739001010010', '1234567890123445']) {
      const d3 = openssl(['enc', '-des-ede-ecb', '-nopad', '-K', k3], diversificationData(cid, 'DES3-2KEY'));
      expect(toHex(diversifyCardKey(hex(k3), cid, 'DES3-2KEY'))).toBe(toHex(adjustDesParity(d3)));
      const da = openssl(['enc', '-aes-128-ecb', '-nopad', '-K', kAes], diversificationData(cid, 'AES-128'));
      expect(toHex(diversifyCardKey(hex(kAes), cid, 'AES-128'))).toBe(toHex(da));
    }
    const kcv = openssl(['mac', '-cipher', 'AES-128-CBC', '-macopt', `hexkey:${kAes}`, 'CMAC'], Buffer.alloc(16)).toString().trim();
    expect(toHex(keyCheckValue('AES-128', hex(kAes)))).toBe(kcv.slice(0, 6).toUpperCase());
  });
});
