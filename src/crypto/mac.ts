// MACs: ISO/IEC 9797-1 MAC algorithm 1 (CBC-MAC) and 3 (retail MAC) with 2-key 3DES and padding
// method 2, and AES-128 CMAC (NIST SP 800-38B = ISO/IEC 9797-1 MAC algorithm 5).
//
// The algorithms are written once, over CbcPrimitive (engine.ts). The fast path feeds them cached
// node:crypto contexts; an HSM backend can feed them token operations (see MacPrimitives).

import { timingSafeEqual } from 'node:crypto';
import { CbcEngine, engineFor, type CbcPrimitive } from './engine.ts';
import { CryptoError } from './errors.ts';
import { padMethod1, padMethod2 } from './padding.ts';
import { ZERO8, ZERO16 } from './zero-blocks.ts';

/** Padding for the DES MAC algorithms. purselab always uses method 2; method 1 is for published vectors (X9.9/X9.19). */
export type MacPadding = 'method1' | 'method2';

function pad(data: Uint8Array, padding: MacPadding): Buffer {
  if (padding === 'method2') return padMethod2(data, 8);
  if (padding === 'method1') return padMethod1(data, 8);
  throw new CryptoError('CRYPTO_PADDING', `unknown MAC padding '${String(padding)}' (method1 | method2)`);
}

/** Same names as hsm-bridge/hsm.ts MacAlgorithm. */
export type MacAlgorithm = 'ISO9797-1-ALG1' | 'ISO9797-1-ALG3' | 'AES-CMAC';

export const MAC_ALGORITHMS: readonly MacAlgorithm[] = ['ISO9797-1-ALG1', 'ISO9797-1-ALG3', 'AES-CMAC'];

/**
 * What a MAC computation needs from a key holder.
 * - ISO9797-1-ALG1: `full` = 2-key 3DES CBC under K (every block under 3DES).
 * - ISO9797-1-ALG3: `k1` = single-DES CBC under K1 (left half), `full` = 2-key 3DES under K1||K2
 *   for the last block. A PKCS#11 token that only has the 3DES key can get a single-DES K1 as a
 *   DES2 key K1||K1 (for a diversified card key: CKM_DES3_ECB_ENCRYPT_DATA over Y||Y, see
 *   singleDesK1DiversificationData in diversify.ts).
 * - AES-CMAC: `full` = AES-128 CBC under K.
 */
export interface MacPrimitives {
  readonly full: CbcPrimitive;
  readonly k1?: CbcPrimitive;
}

export function isMacAlgorithm(name: unknown): name is MacAlgorithm {
  return name === 'ISO9797-1-ALG1' || name === 'ISO9797-1-ALG3' || name === 'AES-CMAC';
}

function blockSizeOf(alg: MacAlgorithm): 8 | 16 {
  return alg === 'AES-CMAC' ? 16 : 8;
}

function checkAlgorithm(alg: string): asserts alg is MacAlgorithm {
  if (!isMacAlgorithm(alg)) {
    throw new CryptoError('CRYPTO_ALGORITHM', `unknown MAC algorithm '${alg}' (expected ${MAC_ALGORITHMS.join(', ')})`);
  }
}

function checkMacLength(alg: MacAlgorithm, length: number): void {
  const max = blockSizeOf(alg);
  if (!Number.isInteger(length) || length < 4 || length > max) {
    throw new CryptoError('CRYPTO_MAC_LENGTH', `${alg} MAC length must be 4..${max} bytes, got ${length}`);
  }
}

function lastBlock(buf: Buffer, bs: number): Buffer {
  return buf.subarray(buf.length - bs);
}

/** Left-shift a block by one bit and fold in Rb when the top bit falls off (SP 800-38B, 6.1). */
function dbl(block: Buffer): Buffer {
  const out = Buffer.allocUnsafe(block.length);
  let carry = 0;
  for (let i = block.length - 1; i >= 0; i--) {
    const b = block[i]!;
    out[i] = ((b << 1) | carry) & 0xff;
    carry = b >>> 7;
  }
  if (carry) out[block.length - 1]! ^= block.length === 16 ? 0x87 : 0x1b;
  return out;
}

const subkeyCache = new WeakMap<CbcPrimitive, { k1: Buffer; k2: Buffer }>();

/** CMAC subkeys K1, K2 for the key behind `prim` (SP 800-38B 6.1): L = E(K, 0); K1 = dbl(L); K2 = dbl(K1). */
export function cmacSubkeys(prim: CbcPrimitive): { k1: Buffer; k2: Buffer } {
  let sk = subkeyCache.get(prim);
  if (!sk) {
    const zero = prim.blockSize === 16 ? ZERO16 : ZERO8;
    const l = prim.encryptCbc(zero, zero);
    const k1 = dbl(l);
    sk = { k1, k2: dbl(k1) };
    subkeyCache.set(prim, sk);
  }
  return sk;
}

/** ISO/IEC 9797-1 MAC algorithm 1 (CBC-MAC), padding method 2 unless told: output = last block (untruncated). */
export function cbcMacAlg1(full: CbcPrimitive, data: Uint8Array, padding: MacPadding = 'method2'): Buffer {
  if (full.blockSize !== 8) throw new CryptoError('CRYPTO_ALGORITHM', 'ISO9797-1-ALG1 is defined here for DES primitives (8-byte blocks)');
  return Buffer.from(lastBlock(full.encryptCbc(pad(data, padding), ZERO8), 8));
}

/**
 * ISO/IEC 9797-1 MAC algorithm 3, padding method 2 (retail MAC, ANSI X9.19):
 * H(q-1) = single-DES CBC under K1 over blocks 1..q-1; G = 3DES(K1,K2) of (X(q) xor H(q-1)),
 * which is e_K1(d_K2(e_K1(...))), i.e. ISO output transformation 3 with K' = K2.
 */
export function retailMacAlg3(k1: CbcPrimitive, full: CbcPrimitive, data: Uint8Array, padding: MacPadding = 'method2'): Buffer {
  if (k1.blockSize !== 8 || full.blockSize !== 8) {
    throw new CryptoError('CRYPTO_ALGORITHM', 'ISO9797-1-ALG3 needs DES primitives (8-byte blocks)');
  }
  return retailMacPadded(k1, full, pad(data, padding));
}

function retailMacPadded(k1: CbcPrimitive, full: CbcPrimitive, padded: Buffer): Buffer {
  const q = padded.length / 8;
  const h = q > 1 ? lastBlock(k1.encryptCbc(padded.subarray(0, (q - 1) * 8), ZERO8), 8) : ZERO8;
  return full.encryptCbc(padded.subarray((q - 1) * 8), h);
}

/** AES CMAC (NIST SP 800-38B; ISO/IEC 9797-1:2011 MAC algorithm 5), untruncated 16 bytes. */
export function cmac(full: CbcPrimitive, data: Uint8Array): Buffer {
  const bs = full.blockSize;
  const { k1, k2 } = cmacSubkeys(full);
  const complete = data.length > 0 && data.length % bs === 0;
  const n = complete ? data.length : (Math.floor(data.length / bs) + 1) * bs;
  const m = Buffer.alloc(n);
  m.set(data, 0);
  if (!complete) m[data.length] = 0x80;
  const sub = complete ? k1 : k2;
  const off = n - bs;
  for (let i = 0; i < bs; i++) m[off + i]! ^= sub[i]!;
  return Buffer.from(lastBlock(full.encryptCbc(m, bs === 16 ? ZERO16 : ZERO8), bs));
}

/** Compute a MAC from primitives (the HSM-backend entry point). Returns the leftmost `length` bytes. */
export function macFromPrimitives(alg: MacAlgorithm, prims: MacPrimitives, data: Uint8Array, length = 8): Buffer {
  checkAlgorithm(alg);
  checkMacLength(alg, length);
  let full: Buffer;
  switch (alg) {
    case 'ISO9797-1-ALG1':
      full = cbcMacAlg1(prims.full, data);
      break;
    case 'ISO9797-1-ALG3':
      if (!prims.k1) throw new CryptoError('CRYPTO_ALGORITHM', 'ISO9797-1-ALG3 needs the single-DES K1 primitive (prims.k1)');
      full = retailMacAlg3(prims.k1, prims.full, data);
      break;
    case 'AES-CMAC':
      if (prims.full.blockSize !== 16) throw new CryptoError('CRYPTO_ALGORITHM', 'AES-CMAC needs an AES primitive');
      full = cmac(prims.full, data);
      break;
  }
  return full.subarray(0, length);
}

function checkKey(alg: MacAlgorithm, key: Uint8Array): void {
  if (key.length !== 16) {
    const what = alg === 'AES-CMAC' ? 'AES-128' : '2-key 3DES';
    throw new CryptoError('CRYPTO_KEY_LENGTH', `${alg} needs a 16-byte ${what} key, got ${key.length} bytes`);
  }
}

// ---------------------------------------------------------------------------------------------
// The clear-key fast path: the same algorithms as above (same results), straight on cached node:crypto
// contexts, with one scratch buffer per cipher call and no intermediate views or copies. A MAC costs
// one cipher call for AES-CMAC and two for the retail MAC (K1 chain, then the 3DES last block).

/** ISO 9797-1 alg 3, padding method 2: blocks 1..q-1 under single DES K1, the padded last block under 3DES. */
function retailMacFast(k1: CbcEngine, full: CbcEngine, data: Uint8Array, length: number): Buffer {
  const n = data.length;
  const head = n & ~7; // whole blocks before the padded last block (method 2 always adds a byte)
  let h: Uint8Array = ZERO8;
  if (head > 0) {
    const blocks = Buffer.allocUnsafe(head);
    for (let i = 0; i < head; i++) blocks[i] = data[i]!;
    k1.encryptCbcInPlace(blocks, ZERO8);
    h = k1.lastBlock;
  }
  const last = Buffer.alloc(8);
  for (let i = head; i < n; i++) last[i - head] = data[i]!;
  last[n - head] = 0x80;
  const mac = full.encryptCbcInPlace(last, h);
  return length === 8 ? mac : mac.subarray(0, length);
}

/** AES-CMAC (SP 800-38B), leftmost `length` bytes. */
function cmacFast(e: CbcEngine, data: Uint8Array, length: number): Buffer {
  const { k1, k2 } = cmacSubkeys(e);
  const n = data.length;
  const complete = n > 0 && n % 16 === 0;
  const total = complete ? n : (Math.floor(n / 16) + 1) * 16;
  const m = Buffer.allocUnsafe(total);
  for (let i = 0; i < n; i++) m[i] = data[i]!;
  if (!complete) {
    m[n] = 0x80;
    for (let i = n + 1; i < total; i++) m[i] = 0;
  }
  const sub = complete ? k1 : k2;
  for (let i = 0, off = total - 16; i < 16; i++) m[off + i]! ^= sub[i]!;
  e.encryptCbcInPlace(m, ZERO16);
  const out = Buffer.allocUnsafe(length);
  const lastBlock = e.lastBlock;
  for (let i = 0; i < length; i++) out[i] = lastBlock[i]!;
  return out;
}

interface Engines {
  readonly full: CbcEngine;
  readonly k1: CbcEngine | undefined;
}

function enginesFor(alg: MacAlgorithm, key: Uint8Array): Engines {
  if (alg === 'AES-CMAC') return { full: engineFor('aes', key), k1: undefined };
  return { full: engineFor('tdes', key), k1: alg === 'ISO9797-1-ALG3' ? engineFor('tdes-k1', key) : undefined };
}

/** A MAC with the engines of a clear key (checks done by the caller). */
function macWithEngines(alg: MacAlgorithm, full: CbcEngine, k1: CbcEngine | undefined, data: Uint8Array, length: number): Buffer {
  if (alg === 'ISO9797-1-ALG3') return retailMacFast(k1!, full, data, length);
  if (alg === 'AES-CMAC') return cmacFast(full, data, length);
  return cbcMacAlg1(full, data).subarray(0, length);
}

function fastMac(alg: MacAlgorithm, key: Uint8Array, data: Uint8Array, length: number): Buffer {
  if (alg === 'ISO9797-1-ALG3') return retailMacFast(engineFor('tdes-k1', key), engineFor('tdes', key), data, length);
  if (alg === 'AES-CMAC') return cmacFast(engineFor('aes', key), data, length);
  return cbcMacAlg1(engineFor('tdes', key), data).subarray(0, length);
}

/** The fast-path primitives for a clear key (cached node:crypto contexts). */
export function primitivesForKey(alg: MacAlgorithm, key: Uint8Array): MacPrimitives {
  checkAlgorithm(alg);
  checkKey(alg, key);
  if (alg === 'AES-CMAC') return { full: engineFor('aes', key) };
  if (alg === 'ISO9797-1-ALG1') return { full: engineFor('tdes', key) };
  return { full: engineFor('tdes', key), k1: engineFor('tdes-k1', key) };
}

/**
 * Compute a MAC with a clear 16-byte key: 'ISO9797-1-ALG1' / 'ISO9797-1-ALG3' (2-key 3DES, padding
 * method 2) or 'AES-CMAC' (AES-128). Returns the leftmost `length` bytes (4..8 for DES, 4..16 for AES).
 */
export function computeMac(alg: MacAlgorithm, key: Uint8Array, data: Uint8Array, length = 8): Buffer {
  checkAlgorithm(alg);
  checkKey(alg, key);
  checkMacLength(alg, length);
  return fastMac(alg, key, data, length);
}

/** Verify a MAC (its length is taken from `mac`) in constant time with respect to its content. */
export function verifyMac(alg: MacAlgorithm, key: Uint8Array, data: Uint8Array, mac: Uint8Array): boolean {
  checkAlgorithm(alg);
  checkMacLength(alg, mac.length);
  return macEquals(computeMac(alg, key, data, mac.length), mac);
}

/** Constant-time comparison of two MACs. Different lengths compare unequal (length is not secret). */
export function macEquals(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  return timingSafeEqual(a, b);
}

/** A MAC key prepared once for a hot path: holds its cipher contexts for as long as it lives. */
export interface MacKey {
  readonly algorithm: MacAlgorithm;
  mac(data: Uint8Array, length?: number): Buffer;
  verify(data: Uint8Array, mac: Uint8Array): boolean;
}

export function prepareMacKey(alg: MacAlgorithm, key: Uint8Array): MacKey {
  checkAlgorithm(alg);
  checkKey(alg, key);
  const { full, k1 } = enginesFor(alg, key); // bound to the key's value now, as long as this MacKey lives
  return {
    algorithm: alg,
    mac: (data, length = 8) => {
      checkMacLength(alg, length);
      return macWithEngines(alg, full, k1, data, length);
    },
    verify: (data, mac) => {
      checkMacLength(alg, mac.length);
      return macEquals(macWithEngines(alg, full, k1, data, mac.length), mac);
    },
  };
}
