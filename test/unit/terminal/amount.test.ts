// Amounts in integer minor units: parsing and formatting with the card exponent, currency names, masked card ids.
import { describe, expect, it } from 'vitest';
import { currencyName, formatAmount, maskCardId, parseAmount, showAmount } from '../../../src/terminal/amount.ts';

describe('amounts: integer minor units, parsed with the card exponent', () => {
  it('parses', () => {
    expect(parseAmount('4.20', 2)).toBe(420);
    expect(parseAmount('4.2', 2)).toBe(420);
    expect(parseAmount('4', 2)).toBe(400);
    expect(parseAmount('4.', 2)).toBe(400);
    expect(parseAmount(' 0.01 ', 2)).toBe(1);
    expect(parseAmount('250', 0)).toBe(250);
    expect(parseAmount('1.234', 3)).toBe(1234);
    expect(parseAmount('42949672.95', 2)).toBe(0xffffffff);
  });

  it('refuses too many decimals, signs, separators, exponents, overflow', () => {
    expect(() => parseAmount('4.205', 2)).toThrow(/has 3 decimals; this currency has 2/);
    expect(() => parseAmount('4.200', 2)).toThrow(/decimals/);
    expect(() => parseAmount('4.5', 0)).toThrow(/has decimals, but this currency has none/);
    for (const bad of ['-1', '+1', '1,5', '1e3', '', '.5', 'abc', '0x10', '1 000']) expect(() => parseAmount(bad, 2), bad).toThrow(/not a plain decimal/);
    expect(() => parseAmount('42949672.96', 2)).toThrow(/too large/);
    expect(() => parseAmount('1', 10)).toThrow(/exponent/);
  });

  it('formats and shows', () => {
    expect(formatAmount(420, 2)).toBe('4.20');
    expect(formatAmount(5, 2)).toBe('0.05');
    expect(formatAmount(0, 2)).toBe('0.00');
    expect(formatAmount(250, 0)).toBe('250');
    expect(showAmount(420, 978, 2)).toBe('4.20 EUR');
    expect(showAmount(250, 7001, 0, true)).toBe('250 points (programme 7001)');
    expect(currencyName(999)).toBe('XXX');
    expect(currencyName(4)).toBe('004');
    for (const n of [0, 1, 99, 100, 12345, 0xffffffff]) expect(parseAmount(formatAmount(n, 2), 2)).toBe(n);
  });

  it('masks card numbers: BIN and the last 4 digits', () => {
    expect(maskCardId('9990010000000017')).toBe('999001******0017');
    expect(maskCardId('123')).toBe('***');
  });
});
