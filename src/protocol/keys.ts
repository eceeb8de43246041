// Keys of the network messages (seed 003 FIG. 9): the long-term key a merchant shares with its payment
// server (key 402, a 16-byte AES-128 key; the same shape for a bank and its load server), the key derived
// from it for one transaction, and the transaction session key (TSK) the merchant makes for the client and
// the payment server, carried to the payment server as ETSK = TSK encrypted under the derived key.
//
//   derived = HMAC-SHA256(shared, "purselab-txn-key-v2" 00 partyId 00 txnId)[0..16]
//   ETSK    = AES-128-ECB(derived, TSK)                       (one block: TSK is 16 random bytes)
//   sub-key = HMAC-SHA256(key, "purselab-subkey-v2" 00 label)[0..16]
//             (separate keys for encryption and MAC of one envelope: src/protocol/envelope.ts)
//
// (Version 1 used 3DES for all of this; OpenSSL's 3DES runs at ~20 MB/s in software, and the message crypto
// was a fifth of a purchase's CPU. AES-NI and SHA-256 are an order of magnitude cheaper; docs/payment-messages.md.)
//
// These keys live in the servers' configuration, not in the HSM: the patent's key 402 is a business
// arrangement between two web servers. Card keys stay in PSAMs and HSMs.

import { createCipheriv, createDecipheriv, createHmac, randomBytes } from 'node:crypto';
import { PurselabError } from '../errors.ts';
import { LruCache } from '../lru.ts';

export const KEY_LENGTH = 16;

export class ProtocolKeyError extends PurselabError {}

function checkKey(key: Uint8Array, what: string): void {
  if (key.length !== KEY_LENGTH) throw new ProtocolKeyError('BAD_KEY', `${what} must be a ${KEY_LENGTH}-byte AES-128 key, got ${key.length} bytes`);
}

/** HMAC-SHA256(key, parts joined by 00 bytes), its first 16 bytes: a key for one purpose. */
function kdf(key: Uint8Array, ...parts: string[]): Buffer {
  const h = createHmac('sha256', key);
  parts.forEach((p, i) => {
    if (i) h.update(ZERO_BYTE);
    h.update(p, 'utf8');
  });
  return h.digest().subarray(0, KEY_LENGTH);
}
const ZERO_BYTE = Buffer.of(0);

/** The per-transaction key both parties derive from their shared key (merchant id or bank id, and the transaction id). */
export function deriveTransactionKey(sharedKey: Uint8Array, partyId: string, txnId: string): Buffer {
  checkKey(sharedKey, 'the shared key');
  return kdf(sharedKey, 'purselab-txn-key-v2', partyId, txnId);
}

// Sub-keys of recent keys, by key value and label: one transaction's key serves several messages of the same
// party (a merchant MACs the order, then opens the result), and an HMAC key set-up costs more than the MAC.
// Each caller gets a copy, so one that overwrites its buffer cannot change what the next caller gets.
const recentSubKeys = new LruCache<string, Buffer>(2048);

/** A separate key for one purpose ('ENC', 'MAC') of a key (the same result as deriving it; recent ones are cached). */
export function subKey(key: Uint8Array, label: string): Buffer {
  checkKey(key, 'the key');
  const id = `${label}:${Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString('hex')}`;
  let k = recentSubKeys.get(id);
  if (!k) {
    k = kdf(key, 'purselab-subkey-v2', label);
    recentSubKeys.set(id, k);
  }
  return Buffer.from(k);
}

/** A fresh transaction session key (16 random bytes). */
export function newSessionKey(): Buffer {
  return randomBytes(KEY_LENGTH);
}

function ecb(encrypt: boolean, key: Uint8Array, block: Uint8Array): Buffer {
  const c = encrypt ? createCipheriv('aes-128-ecb', key, null) : createDecipheriv('aes-128-ecb', key, null);
  c.setAutoPadding(false);
  return Buffer.concat([c.update(block), c.final()]);
}

/** ETSK: the TSK encrypted under the derived key. */
export function wrapSessionKey(derivedKey: Uint8Array, tsk: Uint8Array): Buffer {
  checkKey(derivedKey, 'the derived key');
  checkKey(tsk, 'the session key');
  return ecb(true, derivedKey, tsk);
}

/** The TSK back from ETSK. A wrong key gives a wrong TSK, which the first envelope's MAC then refuses. */
export function unwrapSessionKey(derivedKey: Uint8Array, etsk: Uint8Array): Buffer {
  checkKey(derivedKey, 'the derived key');
  if (etsk.length !== KEY_LENGTH) throw new ProtocolKeyError('BAD_ETSK', `ETSK must be ${KEY_LENGTH} bytes, got ${etsk.length}`);
  return ecb(false, derivedKey, etsk);
}

/** Parse a 32-hex-digit key from configuration, naming where it came from (never the key itself). */
export function parseSharedKey(hex: string, where: string): Buffer {
  if (!/^[0-9a-fA-F]{32}$/.test(hex)) throw new ProtocolKeyError('BAD_KEY', `${where}: a shared key must be 32 hex digits (an AES-128 key)`);
  return Buffer.from(hex, 'hex');
}
