// 3DES (2-key) and AES-128 CBC/ECB encryption helpers, no padding or ISO 9797-1 padding method 2.

import { engineFor } from './engine.ts';
import { CryptoError } from './errors.ts';
import { padMethod2, unpadMethod2 } from './padding.ts';

export type Padding = 'none' | 'method2';

/** Same names as hsm-bridge/hsm.ts SymmetricKeyType. */
export type KeyType = 'DES3-2KEY' | 'AES-128';

export function isKeyType(t: unknown): t is KeyType {
  return t === 'DES3-2KEY' || t === 'AES-128';
}

export function blockSizeOfKeyType(t: KeyType): 8 | 16 {
  return t === 'AES-128' ? 16 : 8;
}

function roleOf(t: KeyType): 'tdes' | 'aes' {
  if (t === 'DES3-2KEY') return 'tdes';
  if (t === 'AES-128') return 'aes';
  throw new CryptoError('CRYPTO_ALGORITHM', `unknown key type '${String(t)}' (expected DES3-2KEY or AES-128)`);
}

function checkPadding(p: Padding): void {
  if (p !== 'none' && p !== 'method2') throw new CryptoError('CRYPTO_PADDING', `unknown padding '${String(p)}' (none | method2)`);
}

/** CBC-encrypt under a 16-byte key of `keyType`. With 'none', data must be whole blocks. */
export function cbcEncrypt(keyType: KeyType, key: Uint8Array, iv: Uint8Array, data: Uint8Array, padding: Padding = 'none'): Buffer {
  checkPadding(padding);
  const engine = engineFor(roleOf(keyType), key);
  const input = padding === 'method2' ? padMethod2(data, engine.blockSize) : data;
  return engine.encryptCbc(input, iv);
}

/** CBC-decrypt; with 'method2' the padding is checked and removed (CRYPTO_PADDING if absent). */
export function cbcDecrypt(keyType: KeyType, key: Uint8Array, iv: Uint8Array, data: Uint8Array, padding: Padding = 'none'): Buffer {
  checkPadding(padding);
  const engine = engineFor(roleOf(keyType), key);
  const out = engine.decryptCbc(data, iv);
  return padding === 'method2' ? unpadMethod2(out, engine.blockSize) : out;
}

/** ECB-encrypt whole blocks (used for key diversification and check values). */
export function ecbEncrypt(keyType: KeyType, key: Uint8Array, data: Uint8Array): Buffer {
  return engineFor(roleOf(keyType), key).encryptEcb(data);
}

export const tdesCbcEncrypt = (key: Uint8Array, iv: Uint8Array, data: Uint8Array, padding: Padding = 'none'): Buffer =>
  cbcEncrypt('DES3-2KEY', key, iv, data, padding);
export const tdesCbcDecrypt = (key: Uint8Array, iv: Uint8Array, data: Uint8Array, padding: Padding = 'none'): Buffer =>
  cbcDecrypt('DES3-2KEY', key, iv, data, padding);
export const aesCbcEncrypt = (key: Uint8Array, iv: Uint8Array, data: Uint8Array, padding: Padding = 'none'): Buffer =>
  cbcEncrypt('AES-128', key, iv, data, padding);
export const aesCbcDecrypt = (key: Uint8Array, iv: Uint8Array, data: Uint8Array, padding: Padding = 'none'): Buffer =>
  cbcDecrypt('AES-128', key, iv, data, padding);
export const tdesEcbEncrypt = (key: Uint8Array, data: Uint8Array): Buffer => ecbEncrypt('DES3-2KEY', key, data);
export const aesEcbEncrypt = (key: Uint8Array, data: Uint8Array): Buffer => ecbEncrypt('AES-128', key, data);
