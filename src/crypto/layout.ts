// Fixed byte layouts: one table per record drives encoding, decoding and the offset tables in the docs,
// so the code and docs/purse-applet.md / docs/psam-applet.md cannot drift apart.

import { CryptoError } from './errors.ts';
import { codecFor } from './layout-codec.ts';

/**
 * Field kinds. Integers are unsigned big-endian.
 * - id16: 16 decimal digits as 8 bytes packed BCD (card id, PSAM id); value is the digit string.
 * - currency: 4 BCD digits in 2 bytes (ISO 4217 numeric, or a points programme); value is a number.
 * - date: YYYYMMDD in 4 bytes BCD; time: HHMMSS in 3 bytes BCD; values are digit strings.
 * - bytes: opaque, fixed length; value is a Buffer.
 * - const: a fixed byte (the MAC-input tag); not supplied by the caller.
 */
export type FieldKind = 'u8' | 'u16' | 'u32' | 'u48' | 'id16' | 'currency' | 'date' | 'time' | 'bytes' | 'const';

export interface FieldSpec {
  readonly name: string;
  readonly kind: FieldKind;
  readonly length: number;
  /** Short label used in the docs (e.g. CTR, AMT). */
  readonly label: string;
  readonly doc: string;
  /** For kind 'const': the byte. */
  readonly value?: number;
}

/** A layout; `D` (its field definitions, as written) gives the record type, LayoutValues<Layout<D>>. */
export interface Layout<D extends readonly FieldDef[] = readonly FieldDef[]> {
  readonly name: string;
  readonly fields: readonly FieldSpec[];
  readonly length: number;
  /** Type only (never set): the definitions the layout was made from. */
  readonly defs?: D;
}

const FIXED: Partial<Record<FieldKind, number>> = { u8: 1, u16: 2, u32: 4, u48: 6, id16: 8, currency: 2, date: 4, time: 3, const: 1 };

/** A field: [name, kind, label, doc] or [name, 'bytes', label, doc, length] or [name, 'const', label, doc, value]. */
export type FieldDef = readonly [string, FieldKind, string, string, number?];

/** What a field holds in a record: digit strings (id16, date, time), a Buffer (bytes), else a number. */
type KindValue<K extends FieldKind> = K extends 'id16' | 'date' | 'time' ? string : K extends 'bytes' ? Buffer : number;

/** The record a layout encodes and decodes: one property per field but the const ones. */
export type LayoutValues<L extends Layout<readonly FieldDef[]>> =
  L extends Layout<infer D>
    ? { -readonly [F in D[number] as F[1] extends 'const' ? never : F[0]]: KindValue<F[1]> }
    : never;

export function layout<const D extends readonly FieldDef[]>(name: string, defs: D): Layout<D> {
  const fields: FieldSpec[] = defs.map(([fname, kind, label, doc, extra]) => {
    if (kind === 'bytes') {
      if (extra === undefined) throw new Error(`layout ${name}: bytes field ${fname} needs a length`);
      return { name: fname, kind, label, doc, length: extra };
    }
    if (kind === 'const') return { name: fname, kind, label, doc, length: 1, value: extra ?? 0 };
    return { name: fname, kind, label, doc, length: FIXED[kind]! };
  });
  return { name, fields, length: fields.reduce((n, f) => n + f.length, 0) };
}

/** Encode `values` (one property per non-const field) into the layout's bytes (compiled per layout: layout-codec.ts). */
export function encodeLayout(l: Layout, values: object): Buffer {
  return codecFor(l).encode(values);
}

/** Decode bytes of exactly the layout's length; const fields must hold their value. */
export function decodeLayout<T>(l: Layout, bytes: Uint8Array): T {
  if (bytes.length !== l.length) {
    throw new CryptoError('CRYPTO_FIELD', `${l.name}: expected ${l.length} bytes, got ${bytes.length}`);
  }
  return codecFor(l).decode(bytes) as T;
}

/** The record of layout `l` taken from `src`, which may hold more properties: one property per non-const field, in layout order. */
export function layoutFields<L extends Layout>(l: L, src: LayoutValues<L>): LayoutValues<L> {
  const v = src as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const f of l.fields) if (f.kind !== 'const') out[f.name] = v[f.name];
  return out as LayoutValues<L>;
}

const KIND_DOC: Record<FieldKind, string> = {
  u8: 'binary',
  u16: 'binary',
  u32: 'binary',
  u48: 'binary',
  id16: 'BCD n16',
  currency: 'BCD n4',
  date: 'BCD YYYYMMDD',
  time: 'BCD HHMMSS',
  bytes: 'bytes',
  const: 'constant',
};

/** The layout as a markdown table (offset, length, label, encoding, meaning): pasted verbatim into the docs. */
export function layoutMarkdown(l: Layout): string {
  const rows = ['| offset | len | field | encoding | meaning |', '|-------:|----:|-------|----------|---------|'];
  let off = 0;
  for (const f of l.fields) {
    const enc = f.kind === 'const' ? `\`${f.value!.toString(16).padStart(2, '0').toUpperCase()}\`` : KIND_DOC[f.kind];
    rows.push(`| ${off} | ${f.length} | ${f.label} | ${enc} | ${f.doc} |`);
    off += f.length;
  }
  rows.push(`| | **${l.length}** | | | total |`);
  return rows.join('\n');
}
