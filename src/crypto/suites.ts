// Algorithm identifiers: the per-card byte that picks the cipher suite for S1/S2/S3 (seed 003: the
// card record carries its purchase/load "algorithm"). One byte, carried in start-up data and in
// every MAC input.

import { type KeyType } from './cipher.ts';
import { CryptoError } from './errors.ts';
import { computeMac, verifyMac, type MacAlgorithm } from './mac.ts';

export const ALG_3DES = 0x01;
export const ALG_AES = 0x02;
export type AlgorithmId = typeof ALG_3DES | typeof ALG_AES;

export interface CryptoSuite {
  readonly id: AlgorithmId;
  readonly name: '3DES' | 'AES';
  /** Key type of every card key and master key in this suite (16 bytes). */
  readonly keyType: KeyType;
  readonly keyLength: 16;
  readonly blockSize: 8 | 16;
  /** MAC for S1/S2/S3, update, batch: the leftmost macLength bytes. */
  readonly macAlgorithm: MacAlgorithm;
  readonly macLength: 8;
  readonly description: string;
}

const SUITES: ReadonlyMap<number, CryptoSuite> = new Map<number, CryptoSuite>([
  [
    ALG_3DES,
    {
      id: ALG_3DES,
      name: '3DES',
      keyType: 'DES3-2KEY',
      keyLength: 16,
      blockSize: 8,
      macAlgorithm: 'ISO9797-1-ALG3',
      macLength: 8,
      description: '2-key 3DES; MAC = ISO/IEC 9797-1 algorithm 3 (retail MAC), padding method 2, 8 bytes; keys by EMV option A',
    },
  ],
  [
    ALG_AES,
    {
      id: ALG_AES,
      name: 'AES',
      keyType: 'AES-128',
      keyLength: 16,
      blockSize: 16,
      macAlgorithm: 'AES-CMAC',
      macLength: 8,
      description: 'AES-128; MAC = CMAC (NIST SP 800-38B) truncated to the leftmost 8 bytes; keys by EMV option C form',
    },
  ],
]);

export function isAlgorithmId(id: unknown): id is AlgorithmId {
  return typeof id === 'number' && SUITES.has(id);
}

/** The suite for an algorithm identifier byte; CRYPTO_UNKNOWN_SUITE for anything else. */
export function suiteFor(algorithmId: number): CryptoSuite {
  const suite = SUITES.get(algorithmId);
  if (!suite) {
    const shown = Number.isInteger(algorithmId) && algorithmId >= 0 && algorithmId <= 255
      ? `0x${algorithmId.toString(16).padStart(2, '0').toUpperCase()}`
      : String(algorithmId);
    throw new CryptoError('CRYPTO_UNKNOWN_SUITE', `unknown algorithm identifier ${shown} (known: 0x01 = 3DES suite, 0x02 = AES suite)`);
  }
  return suite;
}

export function allSuites(): CryptoSuite[] {
  return [...SUITES.values()];
}

/** MAC under the suite of `algorithmId` (8 bytes). */
export function suiteMac(algorithmId: number, key: Uint8Array, data: Uint8Array): Buffer {
  const s = suiteFor(algorithmId);
  return computeMac(s.macAlgorithm, key, data, s.macLength);
}

/** Verify an 8-byte suite MAC in constant time; a MAC of the wrong length is simply not valid. */
export function suiteVerify(algorithmId: number, key: Uint8Array, data: Uint8Array, mac: Uint8Array): boolean {
  const s = suiteFor(algorithmId);
  if (mac.length !== s.macLength) return false;
  return verifyMac(s.macAlgorithm, key, data, mac);
}
