// Packed BCD and the fixed-width numeric fields of the purse layouts (card id, currency, dates).

import { CryptoError } from './errors.ts';

/** Pack a string of decimal digits (even length) into BCD, two digits per byte. */
export function packBcd(digits: string, what = 'digits'): Buffer {
  if (!/^[0-9]*$/.test(digits)) throw new CryptoError('CRYPTO_FIELD', `${what}: '${digits}' is not all decimal digits`);
  if (digits.length % 2 !== 0) throw new CryptoError('CRYPTO_FIELD', `${what}: need an even number of digits, got ${digits.length}`);
  return Buffer.from(digits, 'hex');
}

/** Unpack BCD into digits; throws if a nibble is A-F. */
export function unpackBcd(bytes: Uint8Array, what = 'BCD field'): string {
  const s = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
  if (!/^[0-9]*$/.test(s)) throw new CryptoError('CRYPTO_FIELD', `${what}: '${s.toUpperCase()}' is not packed BCD`);
  return s;
}

/** Card identifier: 6-digit BIN + 10-digit purse number = 16 digits = 8 bytes packed BCD. */
export const CARD_ID_DIGITS = 16;
export const CARD_ID_BYTES = 8;

/** A card id as 16 digits (string) or as its 8-byte packed-BCD form (what the HSM KeySpec carries). */
export type CardIdInput = string | Uint8Array;

export function isCardId(s: unknown): s is string {
  return typeof s === 'string' && /^[0-9]{16}$/.test(s);
}

/** 16 digits -> 8 bytes BCD. Accepts an 8-byte BCD buffer too (validated and copied). */
export function cardIdToBcd(cardId: CardIdInput): Buffer {
  if (typeof cardId === 'string') {
    if (!isCardId(cardId)) {
      throw new CryptoError('CRYPTO_CARD_ID', `card id must be exactly 16 decimal digits (BIN + purse number), got '${cardId}'`);
    }
    return Buffer.from(cardId, 'hex');
  }
  if (cardId.length !== CARD_ID_BYTES) {
    throw new CryptoError('CRYPTO_CARD_ID', `card id in BCD must be 8 bytes, got ${cardId.length}`);
  }
  for (let i = 0; i < CARD_ID_BYTES; i++) {
    const b = cardId[i]!;
    if (b >> 4 > 9 || (b & 15) > 9) throw new CryptoError('CRYPTO_CARD_ID', `card id '${Buffer.from(cardId).toString('hex').toUpperCase()}' is not packed BCD`);
  }
  return Buffer.from(cardId);
}

/** 8 bytes BCD -> 16 digits. */
export function bcdToCardId(bcd: Uint8Array): string {
  const digits = bcd.length === CARD_ID_BYTES ? readBcd(bcd, 0, CARD_ID_BYTES) : undefined;
  return digits ?? cardIdToBcd(bcd).toString('hex'); // the slow path throws the precise error
}

/** BIN (first 6 digits) and purse number (last 10 digits) of a card id. */
export function splitCardId(cardId: CardIdInput): { bin: string; purseNumber: string } {
  const digits = typeof cardId === 'string' ? (cardIdToBcd(cardId), cardId) : bcdToCardId(cardId);
  return { bin: digits.slice(0, 6), purseNumber: digits.slice(6) };
}

/** BIN (6 digits) + purse number (10 digits) -> card id. */
export function makeCardId(bin: string, purseNumber: string): string {
  if (!/^[0-9]{6}$/.test(bin)) throw new CryptoError('CRYPTO_CARD_ID', `BIN must be 6 digits, got '${bin}'`);
  if (!/^[0-9]{10}$/.test(purseNumber)) throw new CryptoError('CRYPTO_CARD_ID', `purse number must be 10 digits, got '${purseNumber}'`);
  return bin + purseNumber;
}

/** 4-digit code (ISO 4217 numeric currency 0..999, or a points programme 0..9999) -> 2 bytes BCD. */
export function encodeCurrency(code: number, what = 'currency'): Buffer {
  if (!Number.isInteger(code) || code < 0 || code > 9999) {
    throw new CryptoError('CRYPTO_FIELD', `${what} must be an integer 0..9999, got ${code}`);
  }
  return packBcd(code.toString().padStart(4, '0'), what);
}

export function decodeCurrency(bytes: Uint8Array, what = 'currency'): number {
  if (bytes.length !== 2) throw new CryptoError('CRYPTO_FIELD', `${what} must be 2 bytes, got ${bytes.length}`);
  return Number.parseInt(unpackBcd(bytes, what), 10);
}

const DAYS = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

function daysInMonth(y: number, m: number): number {
  if (m === 2 && ((y % 4 === 0 && y % 100 !== 0) || y % 400 === 0)) return 29;
  return DAYS[m - 1]!;
}

/**
 * Write `digits` (decimal, even count) as packed BCD into `out` at `off`; returns false (writing
 * nothing useful) if a character is not a digit. The hot-path form of packBcd.
 */
export function writeBcd(out: Buffer, off: number, digits: string): boolean {
  const n = digits.length;
  if (n % 2 !== 0) return false;
  for (let i = 0; i < n; i += 2) {
    const hi = digits.charCodeAt(i) - 48;
    const lo = digits.charCodeAt(i + 1) - 48;
    if (hi < 0 || hi > 9 || lo < 0 || lo > 9) return false;
    out[off + (i >> 1)] = (hi << 4) | lo;
  }
  return true;
}

/** "00".."99" by packed-BCD byte value (undefined where a nibble is A-F): two digits per lookup. */
const BCD_PAIRS: (string | undefined)[] = Array.from({ length: 256 }, (_, b) => ((b >> 4) > 9 || (b & 15) > 9 ? undefined : `${b >> 4}${b & 15}`));

/** Read packed BCD from `buf` as digits; undefined if a nibble is A-F. */
export function readBcd(buf: Uint8Array, off: number, len: number): string | undefined {
  let s = '';
  for (let i = 0; i < len; i++) {
    const pair = BCD_PAIRS[buf[off + i]!];
    if (pair === undefined) return undefined;
    s += pair;
  }
  return s;
}

/** 'YYYYMMDD' (a real calendar date) -> 4 bytes BCD. */
export function encodeDate(date: string, what = 'date'): Buffer {
  if (!isValidDate(date)) throw new CryptoError('CRYPTO_FIELD', `${what} must be a calendar date YYYYMMDD, got '${date}'`);
  return packBcd(date, what);
}

function digitsAt(s: string, from: number, count: number): number {
  let v = 0;
  for (let i = from; i < from + count; i++) {
    const c = s.charCodeAt(i) - 48;
    if (c < 0 || c > 9) return -1;
    v = v * 10 + c;
  }
  return v;
}

export function isValidDate(date: unknown): date is string {
  if (typeof date !== 'string' || date.length !== 8) return false;
  const y = digitsAt(date, 0, 4);
  const m = digitsAt(date, 4, 2);
  const d = digitsAt(date, 6, 2);
  if (y < 0 || m < 1 || m > 12 || d < 1) return false;
  return d <= daysInMonth(y, m);
}

export function decodeDate(bytes: Uint8Array, what = 'date'): string {
  if (bytes.length !== 4) throw new CryptoError('CRYPTO_FIELD', `${what} must be 4 bytes, got ${bytes.length}`);
  const s = unpackBcd(bytes, what);
  if (!isValidDate(s)) throw new CryptoError('CRYPTO_FIELD', `${what} '${s}' is not a calendar date`);
  return s;
}

/** 'HHMMSS' (00..23, 00..59, 00..59) -> 3 bytes BCD. */
export function encodeTime(time: string, what = 'time'): Buffer {
  if (!isValidTime(time)) throw new CryptoError('CRYPTO_FIELD', `${what} must be HHMMSS, got '${time}'`);
  return packBcd(time, what);
}

export function isValidTime(time: unknown): time is string {
  if (typeof time !== 'string' || time.length !== 6) return false;
  const h = digitsAt(time, 0, 2);
  const m = digitsAt(time, 2, 2);
  const sec = digitsAt(time, 4, 2);
  return h >= 0 && h <= 23 && m >= 0 && m <= 59 && sec >= 0 && sec <= 59;
}

export function decodeTime(bytes: Uint8Array, what = 'time'): string {
  if (bytes.length !== 3) throw new CryptoError('CRYPTO_FIELD', `${what} must be 3 bytes, got ${bytes.length}`);
  const s = unpackBcd(bytes, what);
  if (!isValidTime(s)) throw new CryptoError('CRYPTO_FIELD', `${what} '${s}' is not a time of day`);
  return s;
}
