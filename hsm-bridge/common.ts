// Argument checks and rules every backend applies the same way, so that identical inputs give identical
// results and identical error codes on every backend (the conformance suite holds them to it).

import { createHash } from 'node:crypto';
import { cardIdToBcd } from '../src/crypto/index.ts';
import { maskCardId } from '../src/terminal/amount.ts';
import { HsmBadInputError, HsmKeyTypeError, HsmKeyUsageError } from './errors.ts';
import type { CipherMode, KeyInfo, KeyRef, KeyUsage, MacAlgorithm, SymmetricKeyType } from './hsm.ts';

/** Labels: 1..64 characters, letters, digits, '.', '_', '-', starting with a letter or digit. */
export const LABEL_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
export const MAX_VERSION = 0xffff;
export const MAX_RANDOM_BYTES = 4096;
/** Largest data an encrypt/decrypt/MAC call takes (the serial protocol's limit is the same). */
export const MAX_DATA_BYTES = 16 * 1024;

export const KEY_USAGES: readonly KeyUsage[] = ['mac', 'encrypt', 'derive', 'wrap'];
export const SYMMETRIC_TYPES: readonly SymmetricKeyType[] = ['DES3-2KEY', 'AES-128'];
export const MAC_ALGORITHMS: readonly MacAlgorithm[] = ['ISO9797-1-ALG1', 'ISO9797-1-ALG3', 'AES-CMAC'];

/** A checked KeySpec: a stored key, or a card key derived from a stored master and an 8-byte BCD card id. */
export type ResolvedSpec =
  | { readonly kind: 'stored'; readonly ref: KeyRef }
  | { readonly kind: 'derived'; readonly master: KeyRef; readonly cardId: Buffer };

export function refName(ref: KeyRef): string {
  return `'${ref.label}' v${ref.version}`;
}

/** Stable map key for a KeyRef. */
export function refKey(ref: KeyRef): string {
  return `${ref.label}\u0000${ref.version}`;
}

/** An 8-byte packed-BCD card id for messages and logs: BIN and last four digits only (maskCardId). */
export function maskBcdCardId(cardId: Buffer): string {
  const d = cardId.toString('hex');
  return d.length === 16 ? maskCardId(d) : '(malformed card id)';
}

export function describeSpec(spec: ResolvedSpec): string {
  return spec.kind === 'stored' ? refName(spec.ref) : `card key of ${refName(spec.master)} for card ${maskBcdCardId(spec.cardId)}`;
}

export function checkKeyRef(ref: unknown, what = 'key'): KeyRef {
  if (typeof ref !== 'object' || ref === null) throw new HsmBadInputError(`${what}: expected {label, version}`);
  const { label, version } = ref as Record<string, unknown>;
  if (typeof label !== 'string' || !LABEL_PATTERN.test(label)) {
    throw new HsmBadInputError(`${what}: label must be 1-64 of A-Z a-z 0-9 . _ - (starting with a letter or digit), got ${JSON.stringify(label)}`);
  }
  if (typeof version !== 'number' || !Number.isInteger(version) || version < 0 || version > MAX_VERSION) {
    throw new HsmBadInputError(`${what} '${label}': version must be an integer 0..${MAX_VERSION}, got ${String(version)}`);
  }
  return { label, version };
}

export function checkKeySpec(spec: unknown): ResolvedSpec {
  if (typeof spec === 'object' && spec !== null && 'master' in spec) {
    const { master, cardId } = spec as { master: unknown; cardId: unknown };
    const ref = checkKeyRef(master, 'master key');
    if (!Buffer.isBuffer(cardId) && !(cardId instanceof Uint8Array)) {
      throw new HsmBadInputError('card id: expected the 8-byte packed-BCD card id');
    }
    let bcd: Buffer;
    try {
      bcd = cardIdToBcd(cardId);
    } catch (e) {
      throw new HsmBadInputError(`card id: ${(e as Error).message}`);
    }
    return { kind: 'derived', master: ref, cardId: bcd };
  }
  return { kind: 'stored', ref: checkKeyRef(spec) };
}

export function checkSymmetricType(type: unknown): SymmetricKeyType {
  if (!SYMMETRIC_TYPES.includes(type as SymmetricKeyType)) {
    throw new HsmBadInputError(`key type must be one of ${SYMMETRIC_TYPES.join(', ')}, got ${JSON.stringify(type)}`);
  }
  return type as SymmetricKeyType;
}

export function checkUsage(usage: unknown): KeyUsage[] {
  if (!Array.isArray(usage) || usage.length === 0) throw new HsmBadInputError(`usage: expected a non-empty list of ${KEY_USAGES.join(', ')}`);
  for (const u of usage) {
    if (!KEY_USAGES.includes(u as KeyUsage)) throw new HsmBadInputError(`usage: unknown usage ${JSON.stringify(u)} (known: ${KEY_USAGES.join(', ')})`);
  }
  // Canonical order, no repeats: every backend reports usage the same way.
  return KEY_USAGES.filter((u) => usage.includes(u));
}

export function checkMacAlgorithm(alg: unknown): MacAlgorithm {
  if (!MAC_ALGORITHMS.includes(alg as MacAlgorithm)) {
    throw new HsmBadInputError(`MAC algorithm must be one of ${MAC_ALGORITHMS.join(', ')}, got ${JSON.stringify(alg)}`);
  }
  return alg as MacAlgorithm;
}

/** The key type a MAC algorithm runs on. */
export function macKeyType(alg: MacAlgorithm): SymmetricKeyType {
  return alg === 'AES-CMAC' ? 'AES-128' : 'DES3-2KEY';
}

/** macGenerate's output length: the whole last block (8 bytes for the DES algorithms, 16 for AES-CMAC). */
export function fullMacLength(alg: MacAlgorithm): 8 | 16 {
  return alg === 'AES-CMAC' ? 16 : 8;
}

export function blockSizeOf(type: SymmetricKeyType): 8 | 16 {
  return type === 'AES-128' ? 16 : 8;
}

export function checkBuffer(value: unknown, what: string): Buffer {
  if (!Buffer.isBuffer(value)) throw new HsmBadInputError(`${what}: expected a Buffer`);
  return value;
}

export function checkData(data: unknown, what = 'data'): Buffer {
  const b = checkBuffer(data, what);
  if (b.length > MAX_DATA_BYTES) throw new HsmBadInputError(`${what}: at most ${MAX_DATA_BYTES} bytes, got ${b.length}`);
  return b;
}

/** A MAC to verify: 4 bytes up to the algorithm's block (the leftmost bytes of the full MAC are compared). */
export function checkMacToVerify(alg: MacAlgorithm, mac: unknown): Buffer {
  const b = checkBuffer(mac, 'MAC');
  const max = fullMacLength(alg);
  if (b.length < 4 || b.length > max) throw new HsmBadInputError(`${alg} MAC to verify must be 4..${max} bytes, got ${b.length}`);
  return b;
}

/** encrypt/decrypt: CBC, no padding: IV of one block, data a non-empty whole number of blocks. */
export function checkCipherArgs(type: SymmetricKeyType, mode: unknown, iv: unknown, data: unknown): { iv: Buffer; data: Buffer } {
  if (mode !== ('CBC' satisfies CipherMode)) throw new HsmBadInputError(`cipher mode must be CBC, got ${JSON.stringify(mode)}`);
  const bs = blockSizeOf(type);
  const ivb = checkBuffer(iv, 'IV');
  if (ivb.length !== bs) throw new HsmBadInputError(`IV must be ${bs} bytes for ${type}, got ${ivb.length}`);
  const d = checkData(data);
  if (d.length === 0 || d.length % bs !== 0) {
    throw new HsmBadInputError(`data must be a non-empty multiple of ${bs} bytes for ${type} CBC (no padding), got ${d.length}`);
  }
  return { iv: ivb, data: d };
}

export function checkRandomLength(length: unknown): number {
  if (typeof length !== 'number' || !Number.isInteger(length) || length < 1 || length > MAX_RANDOM_BYTES) {
    throw new HsmBadInputError(`random length must be 1..${MAX_RANDOM_BYTES}, got ${String(length)}`);
  }
  return length;
}

export function requireUsage(info: KeyInfo, usage: KeyUsage, op: string): void {
  if (!info.usage.includes(usage)) {
    throw new HsmKeyUsageError(`key ${refName(info)} may not ${op}: its usage is ${info.usage.join(', ') || 'none'} (needs ${usage})`);
  }
}

export function requireSymmetric(info: KeyInfo, op: string): SymmetricKeyType {
  if (info.type === 'RSA-2048') throw new HsmKeyTypeError(`key ${refName(info)} is an RSA key; ${op} needs a symmetric key`);
  return info.type;
}

export function requireRsa(info: KeyInfo, op: string): void {
  if (info.type !== 'RSA-2048') throw new HsmKeyTypeError(`key ${refName(info)} is ${info.type}; ${op} needs an RSA key`);
}

export function requireMacType(type: SymmetricKeyType, alg: MacAlgorithm, name: string): void {
  if (macKeyType(alg) !== type) throw new HsmKeyTypeError(`${alg} needs a ${macKeyType(alg)} key; ${name} is ${type}`);
}

/** KCV of an RSA key: the first 3 bytes of SHA-256 over its SubjectPublicKeyInfo DER (no cipher KCV exists for RSA). */
export function rsaCheckValue(publicKeyDer: Buffer): Buffer {
  return createHash('sha256').update(publicKeyDer).digest().subarray(0, 3);
}

/** Usage of an RSA key pair when generateRsaKeyPair is not told: sign/verify ('mac') and transport KEK ('wrap'). */
export const DEFAULT_RSA_USAGE: readonly KeyUsage[] = ['mac', 'wrap'];

export function sortKeys(keys: KeyInfo[]): KeyInfo[] {
  return keys.sort((a, b) => (a.label < b.label ? -1 : a.label > b.label ? 1 : a.version - b.version));
}
