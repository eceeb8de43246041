// Key check values. One definition for every backend (software, PKCS#11, serial HSM):
//   2-key 3DES: leftmost 3 bytes of 3DES-ECB(K, 00 x 8)            (the classic KCV)
//   AES-128:    leftmost 3 bytes of AES-CMAC(K, 00 x 16)           (ANSI X9.24-1:2017 method, 3 bytes
//               instead of its 5)
// Note for PKCS#11: CKA_CHECK_VALUE of an AES key is AES-ECB(K, 0^16), not ours; compute ours with
// CKM_AES_CMAC over 16 zero bytes. aesEcbCheckValue below gives the PKCS#11 value for comparison.

import { ecbEncrypt, isKeyType, type KeyType } from './cipher.ts';
import { CryptoError } from './errors.ts';
import { computeMac } from './mac.ts';

export const KCV_LENGTH = 3;

export function keyCheckValue(keyType: KeyType, key: Uint8Array, length: number = KCV_LENGTH): Buffer {
  if (!isKeyType(keyType)) throw new CryptoError('CRYPTO_ALGORITHM', `unknown key type '${String(keyType)}'`);
  if (key.length !== 16) throw new CryptoError('CRYPTO_KEY_LENGTH', `${keyType} key must be 16 bytes, got ${key.length}`);
  const max = keyType === 'AES-128' ? 16 : 8;
  if (!Number.isInteger(length) || length < 1 || length > max) {
    throw new CryptoError('CRYPTO_MAC_LENGTH', `check value length must be 1..${max}, got ${length}`);
  }
  if (keyType === 'DES3-2KEY') return ecbEncrypt('DES3-2KEY', key, Buffer.alloc(8)).subarray(0, length);
  return computeMac('AES-CMAC', key, Buffer.alloc(16), 16).subarray(0, length);
}

/** AES-ECB(K, 0^16) leftmost bytes: the PKCS#11 CKA_CHECK_VALUE convention (NOT the purselab KCV). */
export function aesEcbCheckValue(key: Uint8Array, length: number = KCV_LENGTH): Buffer {
  return ecbEncrypt('AES-128', key, Buffer.alloc(16)).subarray(0, length);
}
