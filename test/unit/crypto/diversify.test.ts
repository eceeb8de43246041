// Card ids in BCD, card-key diversification from a master key and card id, DES key parity and key check values.
import { describe, expect, it } from 'vitest';
import {
  CryptoError,
  adjustDesParity,
  aesEcbCheckValue,
  bcdToCardId,
  cardIdToBcd,
  diversificationBlocks,
  diversificationData,
  diversifyCardKey,
  ecbEncrypt,
  hasOddDesParity,
  keyCheckValue,
  makeCardId,
  singleDesK1DiversificationData,
  splitCardId,
  computeMac,
  tdesEcbEncrypt,
} from '../../../src/crypto/index.ts';
import { fixture, hex, toHex } from './helpers.ts';

const div = fixture<any>('fixtures/vectors/diversification.json');

describe('card id BCD', () => {
  it('16 digits <-> 8 bytes', () => {
    expect(toHex(cardIdToBcd('4761739001010010'))).toBe('4761739001010010');
    expect(bcdToCardId(hex('4761739001010010'))).toBe('4761739001010010');
    expect(toHex(cardIdToBcd(hex('1234567890123445')))).toBe('1234567890123445');
  });
  it('BIN + purse number', () => {
    expect(makeCardId('476173', '9001010010')).toBe('4761739001010010');
    expect(splitCardId('4761739001010010')).toEqual({ bin: '476173', purseNumber: '9001010010' });
    expect(splitCardId(hex('4761739001010010'))).toEqual({ bin: '476173', purseNumber: '9001010010' });
    expect(() => makeCardId('47617', '9001010010')).toThrow(CryptoError);
    expect(() => makeCardId('476173', '900101001')).toThrow(CryptoError);
  });
  it('rejects anything but 16 digits / 8 BCD bytes', () => {
    for (const bad of ['', '123456789012345', '12345678901234567', '123456789012345A', ' 234567890123456']) {
      expect(() => cardIdToBcd(bad)).toThrow(CryptoError);
    }
    expect(() => cardIdToBcd(hex('12345678901234'))).toThrow(/8 bytes/);
    expect(() => cardIdToBcd(hex('123456789012345F'))).toThrow(/BCD/);
    expect(() => bcdToCardId(hex('A234567890123456'))).toThrow(CryptoError);
  });
});

describe('diversification', () => {
  for (const v of div.option_a) {
    it(`EMV option A vector: card id ${v.cardId} (PAN ${v.emvPan} PSN ${v.emvPsn})`, () => {
      const key = diversifyCardKey(hex(v.master), v.cardId, 'DES3-2KEY');
      expect(toHex(key)).toBe(v.cardKey);
      expect(hasOddDesParity(key)).toBe(true);
      // the same from the BCD form the HSM KeySpec carries
      expect(toHex(diversifyCardKey(hex(v.master), cardIdToBcd(v.cardId), 'DES3-2KEY'))).toBe(v.cardKey);
    });
  }
  for (const v of div.option_c_aes) {
    it(`AES (option C form) vector: card id ${v.cardId}`, () => {
      expect(toHex(diversificationData(v.cardId, 'AES-128'))).toBe(v.block);
      expect(toHex(diversifyCardKey(hex(v.master), v.cardId, 'AES-128'))).toBe(v.cardKey);
    });
  }
  it('blocks: DES3 = [Y, ~Y], AES = [0^8 || Y]', () => {
    const [a, b] = diversificationBlocks('1234567890123445', 'DES3-2KEY');
    expect(toHex(a!)).toBe('1234567890123445');
    expect(toHex(b!)).toBe('EDCBA9876FEDCBBA');
    expect(diversificationBlocks('1234567890123445', 'AES-128').map(toHex)).toEqual(['00000000000000001234567890123445']);
  });
  it('the card key is "ECB-encrypt the blocks under the master" (what a PKCS#11 *_ECB_ENCRYPT_DATA derive does)', () => {
    const mk = hex(div.option_a[0].master);
    const cid = '4761739001010010';
    const blocks = diversificationBlocks(cid, 'DES3-2KEY');
    const halves = blocks.map((b) => tdesEcbEncrypt(mk, b));
    expect(toHex(adjustDesParity(Buffer.concat(halves)))).toBe(toHex(diversifyCardKey(mk, cid, 'DES3-2KEY')));
    // ALG3's K1 and K2 are the two halves
    const key = diversifyCardKey(mk, cid, 'DES3-2KEY');
    expect(toHex(adjustDesParity(halves[0]!))).toBe(toHex(key.subarray(0, 8)));
    expect(toHex(adjustDesParity(halves[1]!))).toBe(toHex(key.subarray(8)));
    // Y || Y derives K1 || K1: single DES under K1; ALG3 with it as K1 equals ALG3 with the card key
    const k1k1 = ecbEncrypt('DES3-2KEY', mk, singleDesK1DiversificationData(cid));
    expect(toHex(k1k1.subarray(0, 8))).toBe(toHex(halves[0]!));
    expect(toHex(k1k1.subarray(8))).toBe(toHex(halves[0]!));
    const aes = hex('2B7E151628AED2A6ABF7158809CF4F3C');
    expect(toHex(ecbEncrypt('AES-128', aes, diversificationData(cid, 'AES-128')))).toBe(toHex(diversifyCardKey(aes, cid, 'AES-128')));
  });
  it('different card ids give different keys; different masters give different keys', () => {
    const mk = hex('0123456789ABCDEFFEDCBA9876543210');
    const mk2 = hex('FEDCBA98765432100123456789ABCDEF');
    for (const kt of ['DES3-2KEY', 'AES-128'] as const) {
      const seen = new Set<string>();
      for (const cid of ['4761739001010010', '4761739001010011', '4761739001010020', '5761739001010010', '0000000000000000', '9999999999999999']) {
        seen.add(toHex(diversifyCardKey(mk, cid, kt)));
      }
      expect(seen.size).toBe(6);
      expect(toHex(diversifyCardKey(mk, '4761739001010010', kt))).not.toBe(toHex(diversifyCardKey(mk2, '4761739001010010', kt)));
    }
  });
  it('wrong master length and bad card ids are refused', () => {
    expect(() => diversifyCardKey(Buffer.alloc(8), '4761739001010010', 'DES3-2KEY')).toThrow(CryptoError);
    expect(() => diversifyCardKey(Buffer.alloc(24), '4761739001010010', 'AES-128')).toThrow(CryptoError);
    expect(() => diversifyCardKey(Buffer.alloc(16), '476173900101001', 'DES3-2KEY')).toThrow(/16 decimal digits/);
  });
});

describe('DES parity', () => {
  it('adjusts every byte to odd parity, keeping bits 8..2', () => {
    const k = adjustDesParity(hex('0000000000000000FFFFFFFFFFFFFFFF'));
    expect(toHex(k)).toBe('0101010101010101FEFEFEFEFEFEFEFE');
    expect(hasOddDesParity(k)).toBe(true);
    expect(hasOddDesParity(hex('00'))).toBe(false);
    for (let b = 0; b < 256; b++) {
      const a = adjustDesParity(Buffer.from([b]))[0]!;
      expect(a & 0xfe).toBe(b & 0xfe);
      expect(hasOddDesParity(Buffer.from([a]))).toBe(true);
    }
  });
  it('parity adjustment does not change the KCV', () => {
    const k = hex('0023456789ABCDEFFEDCBA9876543210');
    expect(toHex(keyCheckValue('DES3-2KEY', k))).toBe(toHex(keyCheckValue('DES3-2KEY', adjustDesParity(k))));
  });
});

describe('key check values', () => {
  for (const v of div.kcv) {
    it(`${v.keyType} ${v.key}`, () => {
      const kcv = toHex(keyCheckValue(v.keyType, hex(v.key)));
      expect(kcv.length).toBe(6);
      if (v.kcvPrefix) expect(kcv.startsWith(v.kcvPrefix)).toBe(true);
      if (v.kcv) expect(kcv).toBe(v.kcv);
      if (v.cmacOfZeroBlock) expect(toHex(computeMac('AES-CMAC', hex(v.key), Buffer.alloc(16), 16))).toBe(v.cmacOfZeroBlock);
    });
  }
  it('AES KCV is CMAC-based, not the PKCS#11 ECB-of-zeros value', () => {
    const k = hex('2B7E151628AED2A6ABF7158809CF4F3C');
    expect(toHex(aesEcbCheckValue(k))).toBe('7DF76B');
    expect(toHex(keyCheckValue('AES-128', k))).toBe('7AD386');
  });
  it('length and key checks', () => {
    expect(keyCheckValue('DES3-2KEY', Buffer.alloc(16), 8).length).toBe(8);
    expect(() => keyCheckValue('DES3-2KEY', Buffer.alloc(16), 9)).toThrow(CryptoError);
    expect(() => keyCheckValue('AES-128', Buffer.alloc(15))).toThrow(CryptoError);
  });
});
