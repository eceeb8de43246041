// Card key diversification from an issuer master key by the 16-digit card identifier, and DES parity.
//
// 2-key 3DES (suite 0x01) - EMV Book 2 Annex A1.4.1 "Option A", with the card id as the 16 digits:
//   Y  = card id, 8 bytes packed BCD
//   ZL = 3DES-ECB(MK, Y)            -> card key left half  K1
//   ZR = 3DES-ECB(MK, Y xor FF..FF) -> card key right half K2
//   card key = ZL || ZR, each byte adjusted to odd parity.
// EMV forms Y from the rightmost 16 digits of PAN || PAN sequence number; we use the whole card id
// (no sequence number), so the result equals EMV Option A for any PAN/PSN whose rightmost 16
// digits are the card id.
//
// AES-128 (suite 0x02) - EMV Book 2 Annex A1.4.3 "Option C" form, card id as the digits:
//   Y' = 00 00 00 00 00 00 00 00 || card id BCD (the digits right-justified in 16 bytes)
//   card key = AES-ECB(MK, Y')
//
// For an HSM that derives inside the token: the card key is exactly "ECB-encrypt
// diversificationData(cardId, keyType) under the master key" (PKCS#11 CKM_DES3_ECB_ENCRYPT_DATA /
// CKM_AES_ECB_ENCRYPT_DATA). Parity bits do not change any DES result, so a token-derived DES2 key
// without parity adjustment computes the same MACs and the same check value.

import { cardIdToBcd, type CardIdInput } from './bcd.ts';
import { ecbEncrypt, isKeyType, type KeyType } from './cipher.ts';
import { CryptoError } from './errors.ts';

function checkKeyType(keyType: KeyType): void {
  if (!isKeyType(keyType)) throw new CryptoError('CRYPTO_ALGORITHM', `unknown key type '${String(keyType)}' (expected DES3-2KEY or AES-128)`);
}

/**
 * The blocks to ECB-encrypt under the master key; the card key is their encryptions concatenated.
 * DES3-2KEY: [Y, Y xor FF..FF] -> [K1, K2]. AES-128: [00*8 || Y].
 */
export function diversificationBlocks(cardId: CardIdInput, keyType: KeyType): Buffer[] {
  checkKeyType(keyType);
  const y = cardIdToBcd(cardId);
  if (keyType === 'AES-128') return [Buffer.concat([Buffer.alloc(8), y])];
  const yInv = Buffer.allocUnsafe(8);
  for (let i = 0; i < 8; i++) yInv[i] = y[i]! ^ 0xff;
  return [y, yInv];
}

/** diversificationBlocks concatenated: the data field for CKM_*_ECB_ENCRYPT_DATA (16 bytes either way). */
export function diversificationData(cardId: CardIdInput, keyType: KeyType): Buffer {
  return Buffer.concat(diversificationBlocks(cardId, keyType));
}

/**
 * Y || Y: ECB-encrypting this under the 3DES master gives K1 || K1, a DES2 key that is single DES
 * under the card key's left half - what ISO 9797-1 MAC algorithm 3 chains with. For a token without
 * single DES (PKCS#11 CKM_DES3_ECB_ENCRYPT_DATA -> CKK_DES2).
 */
export function singleDesK1DiversificationData(cardId: CardIdInput): Buffer {
  const y = cardIdToBcd(cardId);
  return Buffer.concat([y, y]);
}

/** Derive a card key from an issuer master key (16 bytes) of the same type. DES keys come back odd-parity. */
export function diversifyCardKey(masterKey: Uint8Array, cardId: CardIdInput, keyType: KeyType): Buffer {
  checkKeyType(keyType);
  if (masterKey.length !== 16) {
    throw new CryptoError('CRYPTO_KEY_LENGTH', `${keyType} master key must be 16 bytes, got ${masterKey.length}`);
  }
  const key = ecbEncrypt(keyType, masterKey, diversificationData(cardId, keyType));
  return keyType === 'DES3-2KEY' ? adjustDesParity(key) : key;
}

/** Set the low bit of each byte so that every byte has an odd number of 1 bits (DES key parity). */
export function adjustDesParity(key: Uint8Array): Buffer {
  const out = Buffer.from(key);
  for (let i = 0; i < out.length; i++) {
    const b = out[i]! & 0xfe;
    let ones = 0;
    for (let v = b; v; v >>= 1) ones += v & 1;
    out[i] = b | (ones % 2 === 0 ? 1 : 0);
  }
  return out;
}

/** True if every byte has odd parity. */
export function hasOddDesParity(key: Uint8Array): boolean {
  for (const byte of key) {
    let ones = 0;
    for (let v = byte; v; v >>= 1) ones += v & 1;
    if (ones % 2 === 0) return false;
  }
  return true;
}
