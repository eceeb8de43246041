// APDU script format (docs/apdu-script.md): one command per line with optional expected response; parser and matcher.

import { PurselabError } from '../errors.ts';
import { parseCommand, type CommandApdu } from './command.ts';
import { fromHex, toHex } from './hex.ts';
import type { ResponseApdu } from './response.ts';
import { describeSw } from './status-words.ts';

export class ScriptSyntaxError extends PurselabError {
  readonly line: number;
  constructor(source: string, line: number, message: string) {
    super('BAD_SCRIPT', `${source}:${line}: ${message}`);
    this.line = line;
  }
}

/** One byte to match: `(actual & mask) === value`; mask 00 is ?? / XX, F0 is 9X, FF an exact byte. */
export interface BytePattern {
  readonly value: number;
  readonly mask: number;
}

/** An expected response: data (absent = not checked) and SW, both with nibble wildcards. */
export interface ResponsePattern {
  /** Bytes before the `*` (or all of them when there is no `*`). */
  readonly data?: { readonly head: readonly BytePattern[]; readonly tail: readonly BytePattern[]; readonly anyMiddle: boolean };
  readonly sw: BytePattern & { readonly text: string };
  /** As written, normalised: "01 02 ?? 9000". */
  readonly text: string;
}

export type ScriptStep =
  | {
      readonly kind: 'apdu';
      readonly line: number;
      readonly label: string | undefined;
      readonly bytes: Buffer;
      readonly command: CommandApdu;
      /** Any one of these must match; empty = no expectation (the step passes on any response). */
      readonly expect: readonly ResponsePattern[];
    }
  | { readonly kind: 'reset'; readonly line: number; readonly label: string | undefined; readonly cold: boolean };

export interface ApduScript {
  /** The file name (or what the caller called the text), used in error messages. */
  readonly source: string;
  readonly steps: readonly ScriptStep[];
}

const ARROW = '->';

function nibbles(text: string, what: string, fail: (m: string) => never): BytePattern[] {
  if (text.length % 2) fail(`${what} '${text}' has an odd number of digits`);
  const out: BytePattern[] = [];
  for (let i = 0; i < text.length; i += 2) {
    let value = 0;
    let mask = 0;
    for (const ch of text.slice(i, i + 2)) {
      value <<= 4;
      mask <<= 4;
      if (ch === '?' || ch === 'X' || ch === 'x') continue;
      if (!/[0-9a-fA-F]/.test(ch)) fail(`'${ch}' in ${what} '${text}' is not a hex digit or a wildcard (?, X)`);
      value |= parseInt(ch, 16);
      mask |= 0xf;
    }
    out.push({ value, mask });
  }
  return out;
}

function patternText(p: readonly BytePattern[]): string {
  return p
    .map(({ value, mask }) =>
      [4, 0]
        .map((s) => (((mask >> s) & 0xf) === 0 ? 'X' : ((value >> s) & 0xf).toString(16).toUpperCase()))
        .join(''),
    )
    .join(' ');
}

function parseExpectation(text: string, fail: (m: string) => never): ResponsePattern {
  const compact = text.replace(/\s+/g, '');
  if (compact.length < 4) fail(`expected response '${text.trim()}' needs a 4-digit SW at the end (e.g. 9000, 61XX)`);
  const swPart = compact.slice(-4);
  const dataPart = compact.slice(0, -4);
  const swBytes = nibbles(swPart, 'SW', fail);
  const swPattern = { value: (swBytes[0]!.value << 8) | swBytes[1]!.value, mask: (swBytes[0]!.mask << 8) | swBytes[1]!.mask };
  const swText = patternText(swBytes).replace(' ', '');
  if (!dataPart) return { sw: { ...swPattern, text: swText }, text: swText };
  const stars = dataPart.split('*').length - 1;
  if (stars > 1) fail(`expected data '${dataPart}' may contain at most one '*'`);
  const [headText, tailText = ''] = dataPart.split('*') as [string, string?];
  const head = nibbles(headText, 'expected data', fail);
  const tail = nibbles(tailText, 'expected data', fail);
  const dataText = [patternText(head), ...(stars ? ['*', patternText(tail)] : [])].filter(Boolean).join(' ');
  return {
    data: { head, tail, anyMiddle: stars === 1 },
    sw: { ...swPattern, text: swText },
    text: `${dataText} ${swText}`,
  };
}

/**
 * Parse a script. Lines: `# comment`, blank, `label: TEXT` (names the steps that follow), `reset` or
 * `reset cold`, or `HEX APDU [-> EXPECTED [| EXPECTED ...]]`. Errors carry the file name and line number.
 */
export function parseScript(text: string, source = '<script>'): ApduScript {
  const steps: ScriptStep[] = [];
  let label: string | undefined;
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = i + 1;
    const fail = (m: string): never => {
      throw new ScriptSyntaxError(source, line, m);
    };
    const content = raw.replace(/#.*$/, '').trim();
    if (!content) return;
    const labelMatch = /^label\s*:\s*(.*)$/i.exec(content);
    if (labelMatch) {
      label = labelMatch[1]!.trim() || fail('label needs a text, e.g. "label: select the purse"');
      return;
    }
    const resetMatch = /^reset(?:\s+(\S+))?$/i.exec(content);
    if (resetMatch) {
      const mode = resetMatch[1]?.toLowerCase();
      if (mode !== undefined && mode !== 'cold' && mode !== 'warm') fail(`'reset ${resetMatch[1]}': expected 'reset', 'reset warm' or 'reset cold'`);
      steps.push({ kind: 'reset', line, label, cold: mode === 'cold' });
      return;
    }
    const arrow = content.indexOf(ARROW);
    const apduText = arrow < 0 ? content : content.slice(0, arrow);
    const expectText = arrow < 0 ? undefined : content.slice(arrow + ARROW.length);
    let bytes: Buffer;
    let command: CommandApdu;
    try {
      bytes = fromHex(apduText, 'APDU');
      command = parseCommand(bytes);
    } catch (e) {
      return fail(e instanceof PurselabError ? e.message : String(e));
    }
    const expect: ResponsePattern[] = [];
    if (expectText !== undefined) {
      if (!expectText.trim()) fail(`nothing after '${ARROW}': write the expected SW, e.g. '${ARROW} 9000'`);
      for (const alt of expectText.split('|')) expect.push(parseExpectation(alt, fail));
    }
    steps.push({ kind: 'apdu', line, label, bytes, command, expect });
  });
  return { source, steps };
}

function byteMismatch(actual: Buffer, at: number, patterns: readonly BytePattern[], base: number): string | undefined {
  for (const [j, p] of patterns.entries()) {
    const v = actual[at + j]!;
    if ((v & p.mask) !== p.value) {
      return `data byte ${base + j} is ${toHex(Buffer.from([v]))}, expected ${patternText([p])}`;
    }
  }
  return undefined;
}

/** Why a response does not match one pattern, or undefined when it does. */
export function mismatch(pattern: ResponsePattern, r: ResponseApdu): string | undefined {
  if ((r.sw & pattern.sw.mask) !== pattern.sw.value) return `SW ${describeSw(r.sw)}; expected ${pattern.sw.text}`;
  const d = pattern.data;
  if (!d) return undefined;
  const fixed = d.head.length + d.tail.length;
  if (d.anyMiddle ? r.data.length < fixed : r.data.length !== fixed) {
    return `response data is ${r.data.length} byte(s), expected ${d.anyMiddle ? `at least ${fixed}` : fixed}`;
  }
  const tailAt = r.data.length - d.tail.length;
  return byteMismatch(r.data, 0, d.head, 0) ?? byteMismatch(r.data, tailAt, d.tail, tailAt);
}

/** Check a response against a step's alternatives: undefined = pass, else the reason (from the first alternative). */
export function checkResponse(expect: readonly ResponsePattern[], r: ResponseApdu): string | undefined {
  if (!expect.length) return undefined;
  const reasons = expect.map((p) => mismatch(p, r));
  if (reasons.some((x) => x === undefined)) return undefined;
  return expect.length === 1 ? reasons[0] : `${reasons[0]} (none of ${expect.map((p) => p.text).join(' | ')} matched)`;
}

/** "00 A4 04 00 ... -> 9000" for printing a step. */
export function describeStep(step: ScriptStep): string {
  if (step.kind === 'reset') return step.cold ? 'reset cold' : 'reset';
  const exp = step.expect.length ? ` ${ARROW} ${step.expect.map((p) => p.text).join(' | ')}` : '';
  return `${toHex(step.bytes, ' ')}${exp}`;
}
