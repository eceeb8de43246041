// BER-TLV (ISO/IEC 7816-4 / X.690 subset): multi-byte tags, definite lengths up to 4 bytes, nested decoding, lookup, printing.

import { PurselabError } from '../errors.ts';
import { toHex } from './hex.ts';

export class TlvFormatError extends PurselabError {
  constructor(message: string) {
    super('BAD_TLV', message);
  }
}

/**
 * A decoded data object. `tag` is the tag's bytes read as one big-endian number (0x6F, 0x9F38, 0xBF0C), which is
 * how specifications write them. `children` is set for constructed tags (bit 6 of the first tag byte).
 */
export interface Tlv {
  readonly tag: number;
  readonly constructed: boolean;
  readonly value: Buffer;
  readonly children?: readonly Tlv[];
  /** Offset of the tag's first byte in the buffer given to decodeTlv. */
  readonly offset: number;
}

/** What encodeTlv accepts: a primitive value, or children for a constructed tag. */
export type TlvInput = { readonly tag: number; readonly value: Uint8Array } | { readonly tag: number; readonly children: readonly TlvInput[] };

export interface DecodeTlvOptions {
  /** Skip 00 and FF bytes before, between and after objects (ISO 7816-4 5.2.2 allows them in files). Default false. */
  skipPadding?: boolean;
}

export const MAX_TAG_BYTES = 4;
export const MAX_LENGTH_BYTES = 4;
/** Nesting deeper than this is rejected rather than recursed into. */
export const MAX_TLV_DEPTH = 32;

export type TagClass = 'universal' | 'application' | 'context-specific' | 'private';

/** Tag bytes (e.g. [0x9F, 0x38]) from the numeric form, validating the multi-byte tag rules. */
export function encodeTag(tag: number): Buffer {
  if (!Number.isInteger(tag) || tag < 0 || tag > 0xffffffff) throw new TlvFormatError(`tag ${tag} is not 1 to ${MAX_TAG_BYTES} bytes`);
  const bytes: number[] = [];
  for (let t = tag; ; t = Math.floor(t / 256)) {
    bytes.unshift(t % 256);
    if (t < 256) break;
  }
  const [first, ...rest] = bytes as [number, ...number[]];
  const name = tagHex(tag);
  if ((first & 0x1f) !== 0x1f) {
    if (rest.length) throw new TlvFormatError(`tag ${name}: first byte ${toHex(Buffer.from([first]))} does not announce further tag bytes (low 5 bits must be 1F)`);
    return Buffer.from(bytes);
  }
  if (!rest.length) throw new TlvFormatError(`tag ${name}: first byte 1F-form needs at least one more tag byte`);
  if ((rest[0]! & 0x7f) === 0) throw new TlvFormatError(`tag ${name}: first subsequent tag byte must not be 80 or 00 (leading zero bits)`);
  rest.forEach((b, i) => {
    const last = i === rest.length - 1;
    if (last === ((b & 0x80) !== 0)) {
      throw new TlvFormatError(`tag ${name}: byte ${i + 2} must ${last ? 'clear' : 'set'} bit 8 (${last ? 'last' : 'more'} tag bytes)`);
    }
  });
  return Buffer.from(bytes);
}

/** Definite length in the shortest form: 0..127 in one byte, else 81 xx .. 84 xx xx xx xx. */
export function encodeLength(n: number): Buffer {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new TlvFormatError(`length ${n} does not fit in ${MAX_LENGTH_BYTES} length bytes`);
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v % 256);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

export function isConstructed(tag: number): boolean {
  return (firstTagByte(tag) & 0x20) !== 0;
}

export function tagClass(tag: number): TagClass {
  return (['universal', 'application', 'context-specific', 'private'] as const)[firstTagByte(tag) >> 6]!;
}

function firstTagByte(tag: number): number {
  let t = tag;
  while (t >= 256) t = Math.floor(t / 256);
  return t;
}

/** "9F38" for 0x9F38; always an even number of digits. */
export function tagHex(tag: number): string {
  const h = tag.toString(16).toUpperCase();
  return h.length % 2 ? '0' + h : h;
}

/** Encode one object or a sequence of objects. */
export function encodeTlv(input: TlvInput | readonly TlvInput[]): Buffer {
  if (Array.isArray(input)) return Buffer.concat((input as readonly TlvInput[]).map((i) => encodeTlv(i)));
  const item = input as TlvInput;
  const tagBytes = encodeTag(item.tag);
  let value: Buffer;
  if ('children' in item) {
    if (!isConstructed(item.tag)) throw new TlvFormatError(`tag ${tagHex(item.tag)} is primitive (bit 6 clear) and cannot hold children`);
    value = encodeTlv(item.children);
  } else {
    value = Buffer.from(item.value);
  }
  return Buffer.concat([tagBytes, encodeLength(value.length), value]);
}

/** Shorthand for building inputs: tlv(0x84, aid), tlv(0x6F, [tlv(0x84, aid), ...]). */
export function tlv(tag: number, content: Uint8Array | readonly TlvInput[]): TlvInput {
  return Array.isArray(content) ? { tag, children: content as readonly TlvInput[] } : { tag, value: content as Uint8Array };
}

function hexAt(offset: number): string {
  return `offset ${offset} (0x${offset.toString(16).toUpperCase()})`;
}

function readTag(b: Buffer, at: number, end: number): { tag: number; next: number } {
  const first = b[at]!;
  let tag = first;
  let p = at + 1;
  if ((first & 0x1f) === 0x1f) {
    for (let n = 1; ; n++) {
      if (n >= MAX_TAG_BYTES) throw new TlvFormatError(`tag at ${hexAt(at)} is longer than ${MAX_TAG_BYTES} bytes`);
      if (p >= end) throw new TlvFormatError(`truncated tag at ${hexAt(at)}: tag byte ${n + 1} missing`);
      const byte = b[p]!;
      if (n === 1 && (byte & 0x7f) === 0) throw new TlvFormatError(`tag at ${hexAt(at)}: subsequent tag byte ${toHex(Buffer.from([byte]))} has leading zero bits`);
      tag = tag * 256 + byte;
      p++;
      if ((byte & 0x80) === 0) break;
    }
  }
  return { tag, next: p };
}

function readLength(b: Buffer, at: number, end: number, tag: number): { length: number; next: number } {
  if (at >= end) throw new TlvFormatError(`truncated TLV: tag ${tagHex(tag)} has no length byte at ${hexAt(at)}`);
  const first = b[at]!;
  if (first < 0x80) return { length: first, next: at + 1 };
  if (first === 0x80) throw new TlvFormatError(`tag ${tagHex(tag)}: indefinite length (80) at ${hexAt(at)} is not allowed in BER-TLV for cards`);
  const n = first & 0x7f;
  if (n > MAX_LENGTH_BYTES) throw new TlvFormatError(`tag ${tagHex(tag)}: length field at ${hexAt(at)} announces ${n} length bytes (at most ${MAX_LENGTH_BYTES})`);
  if (at + 1 + n > end) throw new TlvFormatError(`truncated TLV: tag ${tagHex(tag)} length at ${hexAt(at)} needs ${n} more byte(s)`);
  let length = 0;
  for (let i = 1; i <= n; i++) length = length * 256 + b[at + i]!;
  return { length, next: at + 1 + n };
}

function decodeRange(b: Buffer, start: number, end: number, depth: number, opts: DecodeTlvOptions): Tlv[] {
  if (depth > MAX_TLV_DEPTH) throw new TlvFormatError(`TLV nesting deeper than ${MAX_TLV_DEPTH} levels at ${hexAt(start)}`);
  const out: Tlv[] = [];
  let p = start;
  while (p < end) {
    if (opts.skipPadding && (b[p] === 0x00 || b[p] === 0xff)) {
      p++;
      continue;
    }
    const offset = p;
    const { tag, next } = readTag(b, p, end);
    const { length, next: valueAt } = readLength(b, next, end, tag);
    if (valueAt + length > end) {
      throw new TlvFormatError(
        `truncated TLV: tag ${tagHex(tag)} at ${hexAt(offset)} says ${length} value bytes but only ${end - valueAt} ${depth ? 'remain in its parent' : 'follow'}`,
      );
    }
    const value = Buffer.from(b.subarray(valueAt, valueAt + length));
    const constructed = (firstTagByte(tag) & 0x20) !== 0;
    out.push(
      constructed
        ? { tag, constructed, value, offset, children: decodeRange(b, valueAt, valueAt + length, depth + 1, opts) }
        : { tag, constructed, value, offset },
    );
    p = valueAt + length;
  }
  return out;
}

/**
 * Decode a sequence of BER-TLV objects that must fill `bytes` exactly; constructed objects are decoded
 * recursively. Truncation, indefinite lengths, over-long tags/lengths and anything left over are errors
 * naming the offset.
 */
export function decodeTlv(bytes: Uint8Array, options: DecodeTlvOptions = {}): Tlv[] {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return decodeRange(b, 0, b.length, 0, options);
}

/** Decode exactly one object (no trailing bytes allowed). */
export function decodeTlvObject(bytes: Uint8Array): Tlv {
  const all = decodeTlv(bytes);
  if (all.length !== 1) {
    const extra = all[1];
    throw new TlvFormatError(
      all.length === 0 ? 'expected one TLV object, got no bytes' : `trailing bytes after the TLV object at ${hexAt(extra!.offset)}`,
    );
  }
  return all[0]!;
}

function parsePath(path: readonly number[] | string): number[] {
  if (typeof path !== 'string') return [...path];
  return path
    .split(/[/.\s]+/)
    .filter(Boolean)
    .map((part) => {
      if (!/^([0-9A-Fa-f]{2})+$/.test(part)) throw new TlvFormatError(`'${part}' in tag path '${path}' is not a hex tag`);
      return parseInt(part, 16);
    });
}

/**
 * All objects reached by a tag path, e.g. findAllTlv(nodes, '6F/A5/50') or [0x6F, 0xA5, 0x50]: the first tag is
 * matched among `nodes`, each next tag among the children of the previous match.
 */
export function findAllTlv(nodes: readonly Tlv[], path: readonly number[] | string): Tlv[] {
  const tags = parsePath(path);
  if (!tags.length) throw new TlvFormatError('empty tag path');
  let level: readonly Tlv[] = nodes;
  let matches: Tlv[] = [];
  for (const [i, tag] of tags.entries()) {
    matches = level.filter((n) => n.tag === tag);
    if (i < tags.length - 1) level = matches.flatMap((m) => m.children ?? []);
  }
  return matches;
}

/** The first object at a tag path, or undefined. */
export function findTlv(nodes: readonly Tlv[], path: readonly number[] | string): Tlv | undefined {
  return findAllTlv(nodes, path)[0];
}

/** A few interindustry tags from ISO 7816-4/-6 and EMV, for the pretty-printer. */
export const COMMON_TAG_NAMES: Readonly<Record<number, string>> = {
  0x4f: 'application identifier (AID)',
  0x50: 'application label',
  0x5a: 'application PAN',
  0x61: 'application template',
  0x62: 'file control parameters (FCP)',
  0x64: 'file management data (FMD)',
  0x6f: 'file control information (FCI)',
  0x70: 'record template',
  0x77: 'response template format 2',
  0x80: 'context-specific 0 / response template format 1',
  0x82: 'file descriptor / application interchange profile',
  0x83: 'file identifier',
  0x84: 'DF name',
  0x87: 'application priority indicator',
  0x88: 'short EF identifier',
  0x8a: 'life cycle status',
  0xa5: 'proprietary information (FCI)',
  0x5f2d: 'language preference',
  0x9f38: 'PDOL',
  0xbf0c: 'FCI issuer discretionary data',
};

export interface FormatTlvOptions {
  /** Tag names to print next to tags (default COMMON_TAG_NAMES; pass {} for none). */
  names?: Readonly<Record<number, string>>;
  /** Indent per level (default two spaces). */
  indent?: string;
}

function printable(value: Buffer): string | undefined {
  if (!value.length || !value.every((c) => c >= 0x20 && c < 0x7f)) return undefined;
  return JSON.stringify(value.toString('latin1'));
}

/**
 * Lines for people:
 *   6F (26 bytes) file control information (FCI)
 *     84 (7 bytes) DF name: A0 00 00 00 03 10 10
 *     50 (4 bytes) application label: 56 49 53 41 "VISA"
 */
export function formatTlv(nodes: readonly Tlv[], options: FormatTlvOptions = {}): string[] {
  const names = options.names ?? COMMON_TAG_NAMES;
  const indent = options.indent ?? '  ';
  const lines: string[] = [];
  const walk = (list: readonly Tlv[], depth: number): void => {
    for (const n of list) {
      const name = names[n.tag];
      const head = `${indent.repeat(depth)}${tagHex(n.tag)} (${n.value.length} byte${n.value.length === 1 ? '' : 's'})${name ? ' ' + name : ''}`;
      if (n.children) {
        lines.push(head);
        walk(n.children, depth + 1);
      } else {
        const text = printable(n.value);
        lines.push(`${head}:${n.value.length ? ' ' + toHex(n.value, ' ') : ''}${text ? ' ' + text : ''}`);
      }
    }
  };
  walk(nodes, 0);
  return lines;
}
