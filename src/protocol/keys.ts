// Keys of the network messages (seed 003 FIG. 9): the long-term key a merchant shares with its payment
// server (key 402, a double-length 3DES key; the same shape for a bank and its load server), the key derived
// from it for one transaction, and the transaction session key (TSK) the merchant makes for the client and
// the payment server, carried to the payment server as ETSK = TSK encrypted under the derived key.
//
//   derived = EMV option-A style diversification of the shared key by
//             D = SHA-256("purselab-txn-key-v1" 00 partyId 00 txnId)[0..8]:
//             3DES-ECB(shared, D) || 3DES-ECB(shared, D xor FF..FF), DES parity adjusted
//   ETSK    = 3DES-CBC(derived, IV = 00..00, TSK)            (16 bytes)
//   sub-key = 3DES-ECB(key, L) || 3DES-ECB(key, L xor FF..FF), L = SHA-256(label)[0..8], parity adjusted
//             (separate keys for encryption and MAC of one envelope: src/protocol/envelope.ts)
//
// These keys live in the servers' configuration, not in the HSM: the patent's key 402 is a business
// arrangement between two web servers. Card keys stay in PSAMs and HSMs.

import { createHash, randomBytes } from 'node:crypto';
import { adjustDesParity } from '../crypto/diversify.ts';
import { tdesCbcDecrypt, tdesCbcEncrypt, tdesEcbEncrypt } from '../crypto/cipher.ts';
import { PurselabError } from '../errors.ts';
import { LruCache } from '../lru.ts';

export const KEY_LENGTH = 16;
const ZERO_IV = Buffer.alloc(8);

export class ProtocolKeyError extends PurselabError {}

function checkKey(key: Uint8Array, what: string): void {
  if (key.length !== KEY_LENGTH) throw new ProtocolKeyError('BAD_KEY', `${what} must be a ${KEY_LENGTH}-byte double-length 3DES key, got ${key.length} bytes`);
}

/** 3DES-ECB(key, d) || 3DES-ECB(key, d xor FF..FF), parity adjusted: a 16-byte key diversified by 8 bytes. */
function diversify(key: Uint8Array, d: Buffer): Buffer {
  const inverted = Buffer.from(d.map((b) => b ^ 0xff));
  return adjustDesParity(Buffer.concat([tdesEcbEncrypt(key, d), tdesEcbEncrypt(key, inverted)]));
}

const sha8 = (...parts: (string | Buffer)[]): Buffer => {
  const h = createHash('sha256');
  parts.forEach((p, i) => {
    if (i) h.update(Buffer.of(0));
    h.update(p);
  });
  return h.digest().subarray(0, 8);
};

/** The per-transaction key both parties derive from their shared key (merchant id or bank id, and the transaction id). */
export function deriveTransactionKey(sharedKey: Uint8Array, partyId: string, txnId: string): Buffer {
  checkKey(sharedKey, 'the shared key');
  return diversify(sharedKey, sha8('purselab-txn-key-v1', partyId, txnId));
}

/**
 * Recently derived sub-keys (a server derives the same per-transaction sub-key for the order MAC and again for
 * the Debit Result): a small LRU keyed by the key and label. Values are copied in and out, so a caller that
 * overwrites its buffer cannot change what the next caller gets.
 */
const subKeyCache = new LruCache<string, Buffer>(256);

/** A separate key for one purpose ('ENC', 'MAC') of a key (the same result as deriving it; recent ones are cached). */
export function subKey(key: Uint8Array, label: string): Buffer {
  checkKey(key, 'the key');
  const id = `${label}\0${Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString('hex')}`;
  const hit = subKeyCache.get(id);
  if (hit) return Buffer.from(hit);
  const k = diversify(key, sha8(label));
  subKeyCache.set(id, Buffer.from(k));
  return k;
}

/** A fresh transaction session key (random, DES parity). */
export function newSessionKey(): Buffer {
  return adjustDesParity(randomBytes(KEY_LENGTH));
}

/** ETSK: the TSK encrypted under the derived key. */
export function wrapSessionKey(derivedKey: Uint8Array, tsk: Uint8Array): Buffer {
  checkKey(derivedKey, 'the derived key');
  checkKey(tsk, 'the session key');
  return tdesCbcEncrypt(derivedKey, ZERO_IV, tsk);
}

/** The TSK back from ETSK. A wrong key gives a wrong TSK, which the first envelope's MAC then refuses. */
export function unwrapSessionKey(derivedKey: Uint8Array, etsk: Uint8Array): Buffer {
  checkKey(derivedKey, 'the derived key');
  if (etsk.length !== KEY_LENGTH) throw new ProtocolKeyError('BAD_ETSK', `ETSK must be ${KEY_LENGTH} bytes, got ${etsk.length}`);
  return tdesCbcDecrypt(derivedKey, ZERO_IV, etsk);
}

/** Parse a 32-hex-digit key from configuration, naming where it came from (never the key itself). */
export function parseSharedKey(hex: string, where: string): Buffer {
  if (!/^[0-9a-fA-F]{32}$/.test(hex)) throw new ProtocolKeyError('BAD_KEY', `${where}: a shared key must be 32 hex digits (a double-length 3DES key)`);
  return Buffer.from(hex, 'hex');
}
