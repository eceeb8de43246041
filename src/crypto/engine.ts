// The fast path: long-lived node:crypto CBC contexts, one per key, reused across calls.
//
// Creating a cipher context costs a key schedule and a native allocation (about 6-10 us for
// 3DES); calling update() on an existing one costs about 1 us plus the cipher itself. A CBC
// context that is never finalised keeps chaining: its next block is XORed with the last
// ciphertext block it produced. We track that block and fold it, together with the IV the
// caller wants, into the first input block, so every call behaves as a fresh CBC operation
// with the caller's IV. No cipher is implemented here; node:crypto (OpenSSL) does all of it.

import { createCipheriv, createDecipheriv, type Cipher, type Decipher } from 'node:crypto';
import { CryptoError } from './errors.ts';
import { LruCache } from '../lru.ts';
import { ZERO16 } from './zero-blocks.ts';
import { sameBytes } from './same-bytes.ts';

/**
 * A block cipher bound to one key, in CBC mode without padding. This is the primitive the MAC
 * algorithms are written against (see mac.ts), so an HSM backend (e.g. PKCS#11 CKM_DES3_CBC /
 * CKM_AES_CBC, or ECB through `cbcFromEcb`) can reuse the exact MAC logic.
 * `data` is a non-empty whole number of blocks; the result is the full ciphertext.
 * A primitive must stay bound to the same key for its whole life (CMAC subkeys are cached per primitive).
 */
export interface CbcPrimitive {
  readonly blockSize: 8 | 16;
  encryptCbc(data: Buffer, iv: Buffer): Buffer;
}

export type CipherFamily = 'des-ede-cbc' | 'aes-128-cbc';

/** A reusable CBC encrypt/decrypt context for one key (node:crypto underneath). */
export class CbcEngine implements CbcPrimitive {
  readonly blockSize: 8 | 16;
  private readonly family: CipherFamily;
  private readonly key: Buffer;
  private enc: Cipher | undefined;
  private readonly encChain: Buffer;
  private dec: Decipher | undefined;
  private readonly decChain: Buffer;
  private ecb: Cipher | undefined;

  constructor(family: CipherFamily, key: Uint8Array) {
    if (key.length !== 16) {
      throw new CryptoError('CRYPTO_KEY_LENGTH', `${family === 'aes-128-cbc' ? 'AES-128' : '2-key 3DES'} key must be 16 bytes, got ${key.length}`);
    }
    this.family = family;
    this.blockSize = family === 'aes-128-cbc' ? 16 : 8;
    this.key = Buffer.from(key);
    this.encChain = Buffer.alloc(this.blockSize);
    this.decChain = Buffer.alloc(this.blockSize);
  }

  private checkArgs(data: Uint8Array, iv: Uint8Array): void {
    const bs = this.blockSize;
    if (data.length === 0 || data.length % bs !== 0) {
      throw new CryptoError('CRYPTO_DATA_LENGTH', `data must be a non-zero multiple of ${bs} bytes (no padding), got ${data.length}`);
    }
    if (iv.length !== bs) throw new CryptoError('CRYPTO_DATA_LENGTH', `IV must be ${bs} bytes, got ${iv.length}`);
  }

  encryptCbc(data: Uint8Array, iv: Uint8Array): Buffer {
    this.checkArgs(data, iv);
    const input = Buffer.allocUnsafe(data.length);
    input.set(data, 0);
    return this.encryptCbcInPlace(input, iv);
  }

  /**
   * The last ciphertext block of the most recent encryption (the CBC chaining value): a view that the
   * next encryption overwrites. What a CBC-MAC keeps of a run.
   */
  get lastBlock(): Buffer {
    return this.encChain;
  }

  /**
   * encryptCbc for a buffer the caller owns and gives up: `input` (whole blocks, checked by the caller)
   * is modified in place, saving a copy on the MAC paths (mac.ts). Returns the ciphertext.
   */
  encryptCbcInPlace(input: Buffer, iv: Uint8Array): Buffer {
    const bs = this.blockSize;
    if (!this.enc) {
      this.enc = createCipheriv(this.family, this.key, ZERO16.subarray(0, bs));
      this.enc.setAutoPadding(false);
      this.encChain.fill(0);
    }
    const chain = this.encChain;
    for (let i = 0; i < bs; i++) input[i]! ^= chain[i]! ^ iv[i]!;
    let out: Buffer;
    try {
      out = this.enc.update(input);
    } catch (err) {
      this.enc = undefined;
      throw err;
    }
    if (out.length !== input.length) {
      this.enc = undefined; // never expected with no padding and whole blocks; start clean next time
      throw new CryptoError('CRYPTO_DATA_LENGTH', `cipher returned ${out.length} bytes for ${input.length}`);
    }
    for (let i = 0, o = out.length - bs; i < bs; i++) chain[i] = out[o + i]!;
    return out;
  }

  decryptCbc(data: Uint8Array, iv: Uint8Array): Buffer {
    this.checkArgs(data, iv);
    const bs = this.blockSize;
    if (!this.dec) {
      this.dec = createDecipheriv(this.family, this.key, ZERO16.subarray(0, bs));
      this.dec.setAutoPadding(false);
      this.decChain.fill(0);
    }
    let out: Buffer;
    try {
      out = this.dec.update(data);
    } catch (err) {
      this.dec = undefined;
      throw err;
    }
    if (out.length !== data.length) {
      this.dec = undefined;
      throw new CryptoError('CRYPTO_DATA_LENGTH', `cipher returned ${out.length} bytes for ${data.length}`);
    }
    const chain = this.decChain;
    for (let i = 0; i < bs; i++) out[i]! ^= chain[i]! ^ iv[i]!;
    chain.set(data.subarray(data.length - bs), 0);
    return out;
  }

  /** ECB-encrypt whole blocks (a long-lived ECB context: ECB carries no state between calls). */
  encryptEcb(data: Uint8Array): Buffer {
    const bs = this.blockSize;
    if (data.length === 0 || data.length % bs !== 0) {
      throw new CryptoError('CRYPTO_DATA_LENGTH', `data must be a non-zero multiple of ${bs} bytes, got ${data.length}`);
    }
    if (!this.ecb) {
      this.ecb = createCipheriv(this.family === 'aes-128-cbc' ? 'aes-128-ecb' : 'des-ede-ecb', this.key, null);
      this.ecb.setAutoPadding(false);
    }
    let out: Buffer;
    try {
      out = this.ecb.update(data);
    } catch (err) {
      this.ecb = undefined;
      throw err;
    }
    if (out.length !== data.length) {
      this.ecb = undefined;
      throw new CryptoError('CRYPTO_DATA_LENGTH', `cipher returned ${out.length} bytes for ${data.length}`);
    }
    return out;
  }
}

/** Which engine of a key: the whole key, or (2-key 3DES only) single DES under its left half K1. */
export type EngineRole = 'tdes' | 'tdes-k1' | 'aes';

interface CacheEntry {
  readonly copy: Buffer;
  readonly engines: Map<EngineRole, CbcEngine>;
}

// Keyed by the caller's key object, so a key that lives in a card image or a key store gets its
// contexts built once. The copy guards against a caller rewriting the same buffer with a new key.
const cache = new WeakMap<Uint8Array, CacheEntry>();

// Second level, by key value, bounded (least recently used out): a key derived afresh for each
// operation (the PSAM's card purchase key at S2 and again at VERIFY S3, an HSM's derived card key)
// finds the contexts built for the same value a moment ago.
const recent = new LruCache<string, CacheEntry>(256);

function lookupRecent(key: Uint8Array): CacheEntry {
  const id = Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString('hex');
  let entry = recent.get(id);
  if (!entry) {
    entry = { copy: Buffer.from(key), engines: new Map() };
    recent.set(id, entry);
  }
  return entry;
}

function build(role: EngineRole, key: Uint8Array): CbcEngine {
  switch (role) {
    case 'aes':
      return new CbcEngine('aes-128-cbc', key);
    case 'tdes':
      return new CbcEngine('des-ede-cbc', key);
    case 'tdes-k1': {
      // OpenSSL 3 keeps single DES in the legacy provider; EDE with K1||K1 is single DES under K1.
      if (key.length !== 16) throw new CryptoError('CRYPTO_KEY_LENGTH', `2-key 3DES key must be 16 bytes, got ${key.length}`);
      const k1k1 = Buffer.allocUnsafe(16);
      k1k1.set(key.subarray(0, 8), 0);
      k1k1.set(key.subarray(0, 8), 8);
      return new CbcEngine('des-ede-cbc', k1k1);
    }
  }
}

/** The cached engine for `key` in `role`, built on first use. */
export function engineFor(role: EngineRole, key: Uint8Array): CbcEngine {
  let entry = cache.get(key);
  if (!entry || !sameBytes(entry.copy, key)) {
    entry = lookupRecent(key);
    cache.set(key, entry);
  }
  let engine = entry.engines.get(role);
  if (!engine) {
    engine = build(role, key);
    entry.engines.set(role, engine);
  }
  return engine;
}

/**
 * Adapt a single-block ECB encrypt (e.g. a token's CKM_DES3_ECB / CKM_AES_ECB C_Encrypt) into a
 * CbcPrimitive: the CBC chaining is done here, one block call per block.
 */
export function cbcFromEcb(blockSize: 8 | 16, encryptBlock: (block: Buffer) => Buffer): CbcPrimitive {
  return {
    blockSize,
    encryptCbc(data: Buffer, iv: Buffer): Buffer {
      if (data.length === 0 || data.length % blockSize !== 0) {
        throw new CryptoError('CRYPTO_DATA_LENGTH', `data must be a non-zero multiple of ${blockSize} bytes, got ${data.length}`);
      }
      if (iv.length !== blockSize) throw new CryptoError('CRYPTO_DATA_LENGTH', `IV must be ${blockSize} bytes, got ${iv.length}`);
      const out = Buffer.allocUnsafe(data.length);
      let prev: Uint8Array = iv;
      const x = Buffer.allocUnsafe(blockSize);
      for (let off = 0; off < data.length; off += blockSize) {
        for (let i = 0; i < blockSize; i++) x[i] = data[off + i]! ^ prev[i]!;
        const c = encryptBlock(Buffer.from(x));
        if (c.length !== blockSize) throw new CryptoError('CRYPTO_DATA_LENGTH', `block encrypt returned ${c.length} bytes, expected ${blockSize}`);
        c.copy(out, off);
        prev = out.subarray(off, off + blockSize);
      }
      return out;
    },
  };
}
