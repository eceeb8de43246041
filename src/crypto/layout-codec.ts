// Compiled codecs for the fixed byte layouts of layout.ts. Records are encoded and decoded on every purse
// and PSAM command (MAC inputs, start-up data, log records), and a generic loop over the fields pays for
// reading and writing properties by a name held in a variable (one slow, megamorphic property access per
// field) and for building the decoded object one property at a time. So each layout gets, once, a small
// function that names its properties literally and builds the decoded record as one object literal; the
// work per field stays in the typed helpers below, the same for every layout.
//
// The generated source holds only field offsets, lengths, constant bytes and property names written as
// JSON string literals, all taken from the layout tables in this repository; nothing else goes into it.

import { cardIdToBcd, isValidDate, isValidTime, readBcd, writeBcd } from './bcd.ts';
import { CryptoError } from './errors.ts';
import type { FieldKind, Layout } from './layout.ts';

export interface LayoutCodec {
  encode(values: object): Buffer;
  /** `bytes` has exactly the layout's length (checked by the caller). */
  decode(bytes: Uint8Array): Record<string, unknown>;
}

const MAX: Record<string, number> = { u8: 0xff, u16: 0xffff, u32: 0xffffffff, u48: 0xffffffffffff };

function bad(l: Layout, i: number, message: string): never {
  throw new CryptoError('CRYPTO_FIELD', `${l.name}.${l.fields[i]!.name}: ${message}`);
}

const hexOf = (b: Uint8Array, off: number, len: number): string => Buffer.from(b.buffer, b.byteOffset + off, len).toString('hex').toUpperCase();

/** The per-kind work, called by the generated functions: (layout, field index, buffer, offset, value). */
const put = {
  uint(l: Layout, i: number, out: Buffer, off: number, x: unknown): void {
    const f = l.fields[i]!;
    if (typeof x !== 'number' || !Number.isInteger(x) || x < 0 || x > MAX[f.kind]!) {
      bad(l, i, `must be an integer 0..${MAX[f.kind]}, got ${String(x)}`);
    }
    let len = f.length;
    let v = x;
    if (len > 4) {
      const hi = Math.floor(v / 0x100000000);
      out[off] = hi >>> 8;
      out[off + 1] = hi;
      off += 2;
      len = 4;
    }
    for (let j = len - 1; j >= 0; j--) {
      out[off + j] = v;
      v >>>= 8;
    }
  },
  id16(l: Layout, i: number, out: Buffer, off: number, x: unknown): void {
    if (typeof x === 'string') {
      if (x.length !== 16 || !writeBcd(out, off, x)) bad(l, i, `must be exactly 16 decimal digits, got '${x}'`);
    } else if (x instanceof Uint8Array) {
      try {
        cardIdToBcd(x).copy(out, off);
      } catch (e) {
        bad(l, i, (e as Error).message);
      }
    } else {
      bad(l, i, `must be 16 digits, got ${typeof x}`);
    }
  },
  currency(l: Layout, i: number, out: Buffer, off: number, x: unknown): void {
    if (typeof x !== 'number' || !Number.isInteger(x) || x < 0 || x > 9999) bad(l, i, `must be an integer 0..9999, got ${String(x)}`);
    out[off] = (((x / 1000) | 0) << 4) | ((x / 100) | 0) % 10;
    out[off + 1] = ((((x / 10) | 0) % 10) << 4) | x % 10;
  },
  date(l: Layout, i: number, out: Buffer, off: number, x: unknown): void {
    if (!isValidDate(x)) bad(l, i, `must be a calendar date YYYYMMDD, got '${String(x)}'`);
    writeBcd(out, off, x);
  },
  time(l: Layout, i: number, out: Buffer, off: number, x: unknown): void {
    if (!isValidTime(x)) bad(l, i, `must be a time HHMMSS, got '${String(x)}'`);
    writeBcd(out, off, x);
  },
  bytes(l: Layout, i: number, out: Buffer, off: number, x: unknown): void {
    const n = l.fields[i]!.length;
    if (!(x instanceof Uint8Array) || x.length !== n) bad(l, i, `must be ${n} bytes, got ${x instanceof Uint8Array ? x.length : typeof x}`);
    if (n > 64) out.set(x, off);
    else for (let j = 0; j < n; j++) out[off + j] = x[j]!;
  },
};

const get = {
  constant(l: Layout, i: number, b: Uint8Array, off: number): void {
    const want = l.fields[i]!.value!;
    if (b[off] !== want) bad(l, i, `expected ${want.toString(16).padStart(2, '0')}, got ${b[off]!.toString(16).padStart(2, '0')}`);
  },
  uint(l: Layout, i: number, b: Uint8Array, off: number): number {
    let v = 0;
    for (let j = 0, n = l.fields[i]!.length; j < n; j++) v = v * 256 + b[off + j]!;
    return v;
  },
  id16(l: Layout, i: number, b: Uint8Array, off: number): string {
    const d = readBcd(b, off, 8);
    if (d === undefined) bad(l, i, `'${hexOf(b, off, 8)}' is not packed BCD`);
    return d;
  },
  currency(l: Layout, i: number, b: Uint8Array, off: number): number {
    const hi = b[off]!;
    const lo = b[off + 1]!;
    if (hi >> 4 > 9 || (hi & 15) > 9 || lo >> 4 > 9 || (lo & 15) > 9) bad(l, i, `'${hexOf(b, off, 2)}' is not packed BCD`);
    return (hi >> 4) * 1000 + (hi & 15) * 100 + (lo >> 4) * 10 + (lo & 15);
  },
  date(l: Layout, i: number, b: Uint8Array, off: number): string {
    const d = readBcd(b, off, 4);
    if (d === undefined || !isValidDate(d)) bad(l, i, `'${hexOf(b, off, 4)}' is not a calendar date`);
    return d;
  },
  time(l: Layout, i: number, b: Uint8Array, off: number): string {
    const d = readBcd(b, off, 3);
    if (d === undefined || !isValidTime(d)) bad(l, i, `'${hexOf(b, off, 3)}' is not a time of day`);
    return d;
  },
  bytes(l: Layout, i: number, b: Uint8Array, off: number): Buffer {
    const n = l.fields[i]!.length;
    const c = Buffer.allocUnsafe(n);
    for (let j = 0; j < n; j++) c[j] = b[off + j]!;
    return c;
  },
};

const KIND_OF: Record<FieldKind, 'uint' | 'id16' | 'currency' | 'date' | 'time' | 'bytes' | 'const'> = {
  u8: 'uint',
  u16: 'uint',
  u32: 'uint',
  u48: 'uint',
  id16: 'id16',
  currency: 'currency',
  date: 'date',
  time: 'time',
  bytes: 'bytes',
  const: 'const',
};

function compile(l: Layout): LayoutCodec {
  const enc: string[] = [`const out = Buffer.alloc(${l.length});`];
  const dec: string[] = [];
  const props: string[] = [];
  let off = 0;
  l.fields.forEach((f, i) => {
    const kind = KIND_OF[f.kind];
    if (kind === undefined || !Number.isInteger(f.length) || f.length < 1) throw new Error(`layout ${l.name}: field ${f.name} has kind ${f.kind}, length ${f.length}`);
    const name = JSON.stringify(f.name);
    if (kind === 'const') {
      enc.push(`out[${off}] = ${Number(f.value ?? 0) & 0xff};`);
      dec.push(`get.constant(L, ${i}, b, ${off});`);
    } else if (kind === 'uint' && f.length === 1) {
      // u8 inline: the commonest field
      enc.push(`x = v[${name}]; if (typeof x === 'number' && x >= 0 && x <= 255 && Number.isInteger(x)) out[${off}] = x; else put.uint(L, ${i}, out, ${off}, x);`);
      dec.push(`const f${i} = b[${off}];`);
      props.push(`${name}: f${i}`);
    } else {
      enc.push(`put.${kind}(L, ${i}, out, ${off}, v[${name}]);`);
      dec.push(`const f${i} = get.${kind}(L, ${i}, b, ${off});`);
      props.push(`${name}: f${i}`);
    }
    off += f.length;
  });
  if (off !== l.length) throw new Error(`layout ${l.name}: fields add up to ${off} bytes, the layout says ${l.length}`);
  const make = new Function('Buffer', 'put', 'get', 'L', `"use strict";
return {
  encode(v) { let x; ${enc.join('\n')}
    return out; },
  decode(b) { ${dec.join('\n')}
    return { ${props.join(', ')} }; },
};`) as (buffer: typeof Buffer, p: typeof put, g: typeof get, layout: Layout) => LayoutCodec;
  return make(Buffer, put, get, l);
}

const codecs = new WeakMap<Layout, LayoutCodec>();

/** The compiled codec of a layout (built on first use). */
export function codecFor(l: Layout): LayoutCodec {
  let c = codecs.get(l);
  if (c === undefined) {
    c = compile(l);
    codecs.set(l, c);
  }
  return c;
}
