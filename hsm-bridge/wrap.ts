// Key-wrapping formats of importKey: the format follows from the type of the key-encryption key (KEK).
//
//   KEK AES-128    -> AES Key Wrap, RFC 3394 (default IV A6A6A6A6A6A6A6A6); 16-byte key -> 24-byte blob.
//                     PKCS#11: C_UnwrapKey with CKM_AES_KEY_WRAP.
//   KEK RSA-2048   -> RSAES-OAEP, SHA-1 and MGF1-SHA-1, empty label; 256-byte blob. (SHA-1 because SoftHSM2
//                     2.6 unwraps OAEP with SHA-1 only; OAEP's security does not rest on SHA-1 collisions.)
//                     PKCS#11: C_UnwrapKey with CKM_RSA_PKCS_OAEP. Used to bring a first KEK into a device
//                     (a transport key pair made inside the device, so no key ever crosses in clear).
//   KEK DES3-2KEY  -> 3DES-ECB of the key, block by block (the classic ZMK/KEK form); 16-byte blob.
//                     PKCS#11: C_UnwrapKey with CKM_DES3_ECB (SoftHSM2 cannot unwrap with it: the error names it).
//
// The host-side wrap functions are for key ceremonies and fixtures (`purselab hsm init` wraps the demo key set
// under a fixture KEK); the unwrap functions are the software backend's.

import { constants, createCipheriv, createDecipheriv, createPublicKey, privateDecrypt, publicEncrypt, type KeyObject } from 'node:crypto';
import { cbcDecrypt, ecbEncrypt } from '../src/crypto/index.ts';
import { HsmBadInputError, HsmUnwrapError } from './errors.ts';
import type { SymmetricKeyType } from './hsm.ts';

export type WrapFormat = 'AES-KW' | 'RSA-OAEP-SHA1' | 'DES3-ECB';

export function wrapFormatFor(kekType: SymmetricKeyType | 'RSA-2048'): WrapFormat {
  return kekType === 'AES-128' ? 'AES-KW' : kekType === 'RSA-2048' ? 'RSA-OAEP-SHA1' : 'DES3-ECB';
}

const KW_IV = Buffer.from('A6A6A6A6A6A6A6A6', 'hex');

function check16(key: Buffer, what: string): void {
  if (!Buffer.isBuffer(key) || key.length !== 16) throw new HsmBadInputError(`${what} must be 16 bytes`);
}

/** RFC 3394 AES Key Wrap of a 16-byte key under an AES-128 KEK. */
export function aesKeyWrap(kek: Buffer, key: Buffer): Buffer {
  check16(kek, 'AES KEK');
  check16(key, 'key to wrap');
  const c = createCipheriv('id-aes128-wrap', kek, KW_IV);
  return Buffer.concat([c.update(key), c.final()]);
}

export function aesKeyUnwrap(kek: Buffer, blob: Buffer): Buffer {
  if (blob.length !== 24) throw new HsmUnwrapError(`AES key wrap blob of a 16-byte key must be 24 bytes, got ${blob.length}`);
  try {
    const d = createDecipheriv('id-aes128-wrap', kek, KW_IV);
    return Buffer.concat([d.update(blob), d.final()]);
  } catch (e) {
    throw new HsmUnwrapError('key did not unwrap under the KEK (integrity check failed: wrong KEK or corrupt blob)', { cause: e });
  }
}

/** RSAES-OAEP (SHA-1) of a 16-byte key to an RSA public key (SubjectPublicKeyInfo DER). */
export function rsaOaepWrap(publicKeyDer: Buffer, key: Buffer): Buffer {
  check16(key, 'key to wrap');
  const pub = createPublicKey({ key: publicKeyDer, format: 'der', type: 'spki' });
  return publicEncrypt({ key: pub, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' }, key);
}

export function rsaOaepUnwrap(privateKey: KeyObject, blob: Buffer): Buffer {
  let key: Buffer;
  try {
    key = privateDecrypt({ key: privateKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' }, blob);
  } catch (e) {
    throw new HsmUnwrapError('key did not unwrap under the RSA KEK (OAEP decoding failed: wrong key or corrupt blob)', { cause: e });
  }
  if (key.length !== 16) throw new HsmUnwrapError(`unwrapped key is ${key.length} bytes, expected 16`);
  return key;
}

/** 3DES-ECB of a 16-byte key under a 2-key 3DES KEK. */
export function des3EcbWrap(kek: Buffer, key: Buffer): Buffer {
  check16(kek, '3DES KEK');
  check16(key, 'key to wrap');
  return ecbEncrypt('DES3-2KEY', kek, key);
}

export function des3EcbUnwrap(kek: Buffer, blob: Buffer): Buffer {
  if (blob.length !== 16) throw new HsmUnwrapError(`3DES-ECB wrapped key must be 16 bytes, got ${blob.length}`);
  const zero = Buffer.alloc(8);
  // ECB decryption is CBC decryption of each block on its own with a zero IV.
  return Buffer.concat([cbcDecrypt('DES3-2KEY', kek, zero, blob.subarray(0, 8)), cbcDecrypt('DES3-2KEY', kek, zero, blob.subarray(8))]);
}
