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
  const digits = Buffer.from(cardId).toString('hex');
  if (!/^[0-9]{16}$/.test(digits)) throw new CryptoError('CRYPTO_CARD_ID', `card id '${digits.toUpperCase()}' is not packed BCD`);
  return Buffer.from(cardId);
}

/** 8 bytes BCD -> 16 digits. */
export function bcdToCardId(bcd: Uint8Array): string {
  return cardIdToBcd(bcd).toString('hex');
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

function daysInMonth(y: number, m: number): number {
  return new Date(Date.UTC(y, m, 0)).getUTCDate();
}

/** 'YYYYMMDD' (a real calendar date) -> 4 bytes BCD. */
export function encodeDate(date: string, what = 'date'): Buffer {
  if (!isValidDate(date)) throw new CryptoError('CRYPTO_FIELD', `${what} must be a calendar date YYYYMMDD, got '${date}'`);
  return packBcd(date, what);
}

export function isValidDate(date: unknown): date is string {
  if (typeof date !== 'string' || !/^[0-9]{8}$/.test(date)) return false;
  const y = Number(date.slice(0, 4));
  const m = Number(date.slice(4, 6));
  const d = Number(date.slice(6, 8));
  return m >= 1 && m <= 12 && d >= 1 && d <= daysInMonth(y, m);
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
  if (typeof time !== 'string' || !/^[0-9]{6}$/.test(time)) return false;
  return Number(time.slice(0, 2)) <= 23 && Number(time.slice(2, 4)) <= 59 && Number(time.slice(4, 6)) <= 59;
}

export function decodeTime(bytes: Uint8Array, what = 'time'): string {
  if (bytes.length !== 3) throw new CryptoError('CRYPTO_FIELD', `${what} must be 3 bytes, got ${bytes.length}`);
  const s = unpackBcd(bytes, what);
  if (!isValidTime(s)) throw new CryptoError('CRYPTO_FIELD', `${what} '${s}' is not a time of day`);
  return s;
}
