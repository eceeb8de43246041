// Status words (SW1SW2): the ISO/IEC 7816-4 meanings, plus application-specific tables that applets register.

import { PurselabError } from '../errors.ts';
import { swHex } from './response.ts';

export class StatusWordError extends PurselabError {
  constructor(message: string) {
    super('BAD_STATUS_WORD', message);
  }
}

/** Where an SW sits in ISO 7816-4's classification (by SW1). */
export type SwCategory =
  | 'normal' // 9000, 61xx
  | 'warning' // 62xx (memory unchanged), 63xx (memory changed)
  | 'execution error' // 64xx, 65xx, 66xx
  | 'checking error' // 67xx .. 6Fxx
  | 'application-specific' // 9xxx other than 9000 (ISO leaves them to the application)
  | 'invalid'; // SW1 outside 6x/9x: not a status word a card may send

/** One row of the table: a 4-nibble pattern where X matches any nibble ("6A82", "61XX", "63CX"). */
export interface StatusWordEntry {
  readonly pattern: string;
  /** The meaning as printed in the table (may mention XX / X for the variable part). */
  readonly meaning: string;
  /** "ISO 7816-4" for the built-in rows, otherwise the name given to registerStatusWords. */
  readonly source: string;
}

/** The meaning of one concrete SW. */
export interface SwMeaning {
  readonly sw: number;
  readonly hex: string;
  readonly meaning: string;
  readonly category: SwCategory;
  /** The table the meaning came from, or undefined when nothing matched. */
  readonly source: string | undefined;
}

export const ISO_SOURCE = 'ISO 7816-4';

interface Row extends StatusWordEntry {
  readonly value: number;
  readonly mask: number;
  /** Number of fixed nibbles: the more, the more specific the row. */
  readonly specificity: number;
  /** Meaning for a concrete SW, when it depends on SW2 (e.g. the 63Cx retry counter). */
  readonly detail?: (sw: number) => string;
}

const PATTERN = /^[0-9A-F]{2}[0-9A-FX]{2}$/;

function compile(pattern: string, meaning: string, source: string, detail?: (sw: number) => string): Row {
  const p = pattern.toUpperCase();
  if (!PATTERN.test(p)) {
    throw new StatusWordError(`status-word pattern '${pattern}' must be SW1 as two hex digits then two hex digits or X (e.g. 6985, 9FXX, 63CX)`);
  }
  let value = 0;
  let mask = 0;
  let specificity = 0;
  for (const ch of p) {
    value <<= 4;
    mask <<= 4;
    if (ch !== 'X') {
      value |= parseInt(ch, 16);
      mask |= 0xf;
      specificity++;
    }
  }
  return { pattern: p, meaning, source, value, mask, specificity, ...(detail ? { detail } : {}) };
}

const sw2 = (sw: number): number => sw & 0xff;
const hex2 = (n: number): string => n.toString(16).toUpperCase().padStart(2, '0');
const triggering = (sw: number): string | undefined =>
  sw2(sw) >= 0x02 && sw2(sw) <= 0x80 ? `triggering by the card (query ${hex2(sw2(sw))})` : undefined;

// ISO/IEC 7816-4:2013 section 5.6, tables 5 and 6. Group rows (xxXX) catch the SW2 values ISO does not define.
const ISO_ROWS: Row[] = [
  compile('9000', 'normal processing: no further qualification', ISO_SOURCE),
  compile('61XX', 'normal processing: XX more response bytes available (send GET RESPONSE)', ISO_SOURCE, (sw) =>
    `normal processing: ${sw2(sw) === 0 ? '256 or more' : sw2(sw)} more response bytes available (send GET RESPONSE)`),
  compile('62XX', 'warning, memory unchanged', ISO_SOURCE, (sw) =>
    `warning, memory unchanged: ${triggering(sw) ?? `SW2 ${hex2(sw2(sw))} not defined by ISO 7816-4`}`),
  compile('6200', 'warning, memory unchanged: no information given', ISO_SOURCE),
  compile('6281', 'warning, memory unchanged: part of the returned data may be corrupted', ISO_SOURCE),
  compile('6282', 'warning, memory unchanged: end of file or record reached before reading Ne bytes', ISO_SOURCE),
  compile('6283', 'warning, memory unchanged: selected file deactivated', ISO_SOURCE),
  compile('6284', 'warning, memory unchanged: file control information not formatted per ISO 7816-4', ISO_SOURCE),
  compile('6285', 'warning, memory unchanged: selected file in termination state', ISO_SOURCE),
  compile('6286', 'warning, memory unchanged: no input data available from a sensor on the card', ISO_SOURCE),
  compile('6287', 'warning, memory unchanged: at least one of the referenced records is deactivated', ISO_SOURCE),
  compile('63XX', 'warning, memory changed', ISO_SOURCE, (sw) => `warning, memory changed: SW2 ${hex2(sw2(sw))} not defined by ISO 7816-4`),
  compile('6300', 'warning, memory changed: no information given (often: verification failed)', ISO_SOURCE),
  compile('6340', 'warning, memory changed: unsuccessful comparison', ISO_SOURCE),
  compile('6381', 'warning, memory changed: file filled up by the last write', ISO_SOURCE),
  compile('63CX', 'warning, memory changed: counter X (typically X tries left)', ISO_SOURCE, (sw) =>
    `warning, memory changed: counter ${sw & 0xf} (typically ${sw & 0xf} ${(sw & 0xf) === 1 ? 'try' : 'tries'} left)`),
  compile('64XX', 'execution error, memory unchanged', ISO_SOURCE, (sw) =>
    `execution error, memory unchanged: ${triggering(sw) ?? `SW2 ${hex2(sw2(sw))} not defined by ISO 7816-4`}`),
  compile('6400', 'execution error, memory unchanged: no information given', ISO_SOURCE),
  compile('6401', 'execution error, memory unchanged: immediate response required by the card', ISO_SOURCE),
  compile('65XX', 'execution error, memory changed', ISO_SOURCE, (sw) => `execution error, memory changed: SW2 ${hex2(sw2(sw))} not defined by ISO 7816-4`),
  compile('6500', 'execution error, memory changed: no information given', ISO_SOURCE),
  compile('6581', 'execution error, memory changed: memory failure', ISO_SOURCE),
  compile('66XX', 'execution error: security-related issue (reserved)', ISO_SOURCE),
  compile('6700', 'checking error: wrong length (Lc or Le)', ISO_SOURCE),
  compile('67XX', 'checking error: wrong length (SW2 qualification is proprietary)', ISO_SOURCE),
  compile('68XX', 'checking error: function in CLA not supported', ISO_SOURCE),
  compile('6800', 'checking error: function in CLA not supported, no information given', ISO_SOURCE),
  compile('6881', 'checking error: logical channel not supported', ISO_SOURCE),
  compile('6882', 'checking error: secure messaging not supported', ISO_SOURCE),
  compile('6883', 'checking error: last command of the chain expected', ISO_SOURCE),
  compile('6884', 'checking error: command chaining not supported', ISO_SOURCE),
  compile('69XX', 'checking error: command not allowed', ISO_SOURCE),
  compile('6900', 'checking error: command not allowed, no information given', ISO_SOURCE),
  compile('6981', 'checking error: command incompatible with file structure', ISO_SOURCE),
  compile('6982', 'checking error: security status not satisfied', ISO_SOURCE),
  compile('6983', 'checking error: authentication method blocked', ISO_SOURCE),
  compile('6984', 'checking error: reference data not usable', ISO_SOURCE),
  compile('6985', 'checking error: conditions of use not satisfied', ISO_SOURCE),
  compile('6986', 'checking error: command not allowed (no current EF)', ISO_SOURCE),
  compile('6987', 'checking error: expected secure messaging data objects missing', ISO_SOURCE),
  compile('6988', 'checking error: incorrect secure messaging data objects', ISO_SOURCE),
  compile('6AXX', 'checking error: wrong parameters P1-P2', ISO_SOURCE),
  compile('6A00', 'checking error: wrong parameters P1-P2, no information given', ISO_SOURCE),
  compile('6A80', 'checking error: incorrect parameters in the command data field', ISO_SOURCE),
  compile('6A81', 'checking error: function not supported', ISO_SOURCE),
  compile('6A82', 'checking error: file or application not found', ISO_SOURCE),
  compile('6A83', 'checking error: record not found', ISO_SOURCE),
  compile('6A84', 'checking error: not enough memory space in the file', ISO_SOURCE),
  compile('6A85', 'checking error: Nc inconsistent with TLV structure', ISO_SOURCE),
  compile('6A86', 'checking error: incorrect parameters P1-P2', ISO_SOURCE),
  compile('6A87', 'checking error: Nc inconsistent with parameters P1-P2', ISO_SOURCE),
  compile('6A88', 'checking error: referenced data or reference data not found', ISO_SOURCE),
  compile('6A89', 'checking error: file already exists', ISO_SOURCE),
  compile('6A8A', 'checking error: DF name already exists', ISO_SOURCE),
  compile('6B00', 'checking error: wrong parameters P1-P2 (offset outside the EF)', ISO_SOURCE),
  compile('6CXX', 'checking error: wrong Le field; XX is the exact number of available bytes', ISO_SOURCE, (sw) =>
    `checking error: wrong Le field; ${sw2(sw) === 0 ? 256 : sw2(sw)} bytes available (re-send with Le=${hex2(sw2(sw))})`),
  compile('6D00', 'checking error: instruction code not supported or invalid', ISO_SOURCE),
  compile('6E00', 'checking error: class not supported', ISO_SOURCE),
  compile('6F00', 'checking error: no precise diagnosis', ISO_SOURCE),
];

/** Application-specific rows, newest registration last. */
let appRows: Row[] = [];

/**
 * Register an application's status words, e.g. registerStatusWords({ '9F10': 'purse balance too low' }, 'purse').
 * Keys are patterns (X = any nibble). Registering the same source again replaces its rows; a pattern another
 * application already gave a different meaning is rejected, so one table never says two things.
 */
export function registerStatusWords(table: Readonly<Record<string, string>>, source: string): void {
  if (!source.trim() || source === ISO_SOURCE) throw new StatusWordError(`status-word source must be an application name, got '${source}'`);
  const rows = Object.entries(table).map(([pattern, meaning]) => {
    if (!meaning.trim()) throw new StatusWordError(`status word ${pattern} from ${source} has an empty meaning`);
    return compile(pattern, meaning, source);
  });
  for (const row of rows) {
    const clash = appRows.find((r) => r.source !== source && r.pattern === row.pattern && r.meaning !== row.meaning);
    if (clash) {
      throw new StatusWordError(`status word ${row.pattern} is already registered by ${clash.source} as '${clash.meaning}'`);
    }
  }
  appRows = [...appRows.filter((r) => r.source !== source), ...rows];
}

/** Remove an application's rows (tests, applet uninstall). */
export function unregisterStatusWords(source: string): void {
  appRows = appRows.filter((r) => r.source !== source);
}

export function swCategory(sw: number): SwCategory {
  const s1 = sw >> 8;
  if (sw === 0x9000 || s1 === 0x61) return 'normal';
  if (s1 === 0x62 || s1 === 0x63) return 'warning';
  if (s1 >= 0x64 && s1 <= 0x66) return 'execution error';
  if (s1 >= 0x67 && s1 <= 0x6f) return 'checking error';
  if (s1 >= 0x90 && s1 <= 0x9f) return 'application-specific';
  return 'invalid';
}

function bestMatch(rows: readonly Row[], sw: number): Row | undefined {
  let best: Row | undefined;
  for (const r of rows) if ((sw & r.mask) === r.value && (!best || r.specificity > best.specificity)) best = r;
  return best;
}

/**
 * The meaning of a status word. With `source`, that application's table is consulted first (an applet may
 * give an ISO SW a sharper meaning); then ISO 7816-4; then any registered application table.
 */
export function lookupSw(sw: number, source?: string): SwMeaning {
  if (!Number.isInteger(sw) || sw < 0 || sw > 0xffff) throw new StatusWordError(`a status word is 16 bits, got ${sw}`);
  const category = swCategory(sw);
  const own = source ? bestMatch(appRows.filter((r) => r.source === source), sw) : undefined;
  const row = own ?? bestMatch(ISO_ROWS, sw) ?? bestMatch(appRows, sw);
  const fallback =
    category === 'application-specific'
      ? 'application-specific status (no registered meaning)'
      : category === 'invalid'
        ? 'not a valid status word (SW1 must be 6x or 9x, and not 60)'
        : 'status word not defined by ISO 7816-4';
  return {
    sw,
    hex: swHex(sw),
    meaning: row ? (row.detail?.(sw) ?? row.meaning) : fallback,
    category,
    source: row?.source,
  };
}

/** One line: "6A82: checking error: file or application not found". */
export function describeSw(sw: number, source?: string): string {
  const m = lookupSw(sw, source);
  return `${m.hex}: ${m.meaning}`;
}

/** Parse "6A82", "6a 82" or "0x6A82" into a number. */
export function parseSw(text: string): number {
  const compact = text.replace(/[\s:]/g, '').replace(/^0x/i, '');
  if (!/^[0-9a-fA-F]{4}$/.test(compact)) throw new StatusWordError(`'${text}' is not a status word (expected 4 hex digits, e.g. 9000)`);
  return parseInt(compact, 16);
}

/** Every row, ISO first, then registered applications, each sorted by pattern (group rows first). */
export function listStatusWords(): StatusWordEntry[] {
  const view = (r: Row): StatusWordEntry => ({ pattern: r.pattern, meaning: r.meaning, source: r.source });
  // A group row (62XX) sorts before the rows it generalises (6200, 6281, ...).
  const key = (r: Row): string => r.pattern.replace(/X/g, ' ');
  const byPattern = (a: Row, b: Row): number => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0);
  return [...[...ISO_ROWS].sort(byPattern).map(view), ...[...appRows].sort(byPattern).map(view)];
}
