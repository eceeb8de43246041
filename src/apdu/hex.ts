// Hex <-> bytes with precise errors; accepts the separators people type (spaces, colons, dashes).

import { PurselabError } from '../errors.ts';

export class HexFormatError extends PurselabError {
  constructor(message: string) {
    super('BAD_HEX', message);
  }
}

const HEX_DIGIT = /^[0-9a-fA-F]*$/;

/** Parse hex text such as "00 A4 04 00" or "00:a4:04:00" into bytes. `what` names the field in errors. */
export function fromHex(text: string, what = 'hex'): Buffer {
  const compact = text.replace(/[\s:-]/g, '').replace(/^0x/i, '');
  if (!HEX_DIGIT.test(compact)) {
    const bad = compact.match(/[^0-9a-fA-F]/)?.[0] ?? '?';
    throw new HexFormatError(`${what}: '${bad}' is not a hex digit`);
  }
  if (compact.length % 2 !== 0) {
    throw new HexFormatError(`${what}: odd number of hex digits (${compact.length})`);
  }
  return Buffer.from(compact, 'hex');
}

/** Bytes as upper-case hex, optionally separated (e.g. ' ' for "00 A4 04 00"). */
export function toHex(bytes: Uint8Array, separator = ''): string {
  const hex = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex').toUpperCase();
  if (!separator) return hex;
  return hex.replace(/(..)(?!$)/g, `$1${separator}`);
}

/** A deep copy of `value` with every Buffer/Uint8Array replaced by its hex string, for --json output. */
export function hexifyBytes(value: unknown): unknown {
  if (value instanceof Uint8Array) return toHex(value);
  if (Array.isArray(value)) return value.map(hexifyBytes);
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, hexifyBytes(v)]));
  }
  return value;
}
