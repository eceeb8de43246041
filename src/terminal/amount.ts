// Amounts are integer minor units everywhere; text like "4.20" is parsed with the card's currency exponent.

import { PurselabError } from '../errors.ts';
import { AUTH_CURRENCY } from '../crypto/purse-mac.ts';

export class AmountError extends PurselabError {
  constructor(message: string) {
    super('BAD_AMOUNT', message);
  }
}

/** Largest amount a purse field holds (4 bytes). */
export const MAX_AMOUNT = 0xffffffff;

/**
 * "4.20" with exponent 2 -> 420; "4" -> 400; "4.2" -> 420. More decimals than the exponent allows ("4.205"),
 * signs, exponents, separators or an amount over FFFFFFFF minor units are refused.
 */
export function parseAmount(text: string, exponent: number, what = 'amount'): number {
  if (!Number.isInteger(exponent) || exponent < 0 || exponent > 9) throw new AmountError(`currency exponent must be 0..9, got ${exponent}`);
  const t = text.trim();
  const m = /^([0-9]+)(?:\.([0-9]*))?$/.exec(t);
  if (!m || (m[1] === '' && !m[2])) throw new AmountError(`${what} '${text}' is not a plain decimal number like 4.20`);
  const whole = m[1]!;
  const frac = m[2] ?? '';
  if (frac.length > exponent) {
    throw new AmountError(
      exponent === 0
        ? `${what} '${text}' has decimals, but this currency has none (exponent 0)`
        : `${what} '${text}' has ${frac.length} decimals; this currency has ${exponent} (e.g. ${formatAmount(420, exponent)})`,
    );
  }
  const minor = BigInt(whole) * 10n ** BigInt(exponent) + BigInt(frac.padEnd(exponent, '0') || '0');
  if (minor > BigInt(MAX_AMOUNT)) throw new AmountError(`${what} '${text}' is too large (at most ${formatAmount(MAX_AMOUNT, exponent)})`);
  return Number(minor);
}

/** 420 with exponent 2 -> "4.20". */
export function formatAmount(minor: number, exponent: number): string {
  const s = String(minor).padStart(exponent + 1, '0');
  return exponent === 0 ? s : `${s.slice(0, s.length - exponent)}.${s.slice(s.length - exponent)}`;
}

const ALPHA: Readonly<Record<number, string>> = {
  36: 'AUD', 124: 'CAD', 156: 'CNY', 208: 'DKK', 344: 'HKD', 392: 'JPY', 554: 'NZD', 578: 'NOK', 643: 'RUB', 702: 'SGD',
  752: 'SEK', 756: 'CHF', 826: 'GBP', 840: 'USD', 949: 'TRY', 978: 'EUR', 985: 'PLN', [AUTH_CURRENCY]: 'XXX',
};

/** ISO 4217 alphabetic code for the common numeric codes, else the number padded to 3 digits. */
export function currencyName(code: number): string {
  return ALPHA[code] ?? String(code).padStart(3, '0');
}

/** "4.20 EUR" (or "250 points (programme 7001)" for points). */
export function showAmount(minor: number, currency: number, exponent: number, points = false): string {
  return points ? `${minor} points (programme ${String(currency).padStart(4, '0')})` : `${formatAmount(minor, exponent)} ${currencyName(currency)}`;
}

/** A card number for display and logs: BIN (6 digits) and the last 4, e.g. 999001******0017. */
export function maskCardId(cardId: string): string {
  if (cardId.length < 10) return '*'.repeat(cardId.length);
  return cardId.slice(0, 6) + '*'.repeat(cardId.length - 10) + cardId.slice(-4);
}
