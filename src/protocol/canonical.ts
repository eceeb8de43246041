// Canonical JSON: the byte string a MAC over a JSON message is computed on. Object keys sorted, no
// whitespace, integers only (a MACed message carries amounts in minor units, never floats), no undefined.
// The encoder builds no paths; only when a value cannot be encoded is the value walked again to name where.

import { PurselabError } from '../errors.ts';

export function canonicalJson(value: unknown): string {
  const out = encode(value);
  if (out === undefined) throw notCanonical(value, '$');
  return out;
}

/** The canonical text, or undefined when something in `v` cannot be MACed. */
function encode(v: unknown): string | undefined {
  if (v === null) return 'null';
  switch (typeof v) {
    case 'string':
    case 'boolean':
      return JSON.stringify(v);
    case 'number':
      return Number.isSafeInteger(v) ? String(v) : undefined;
    case 'object': {
      if (Array.isArray(v)) {
        let s = '[';
        for (let i = 0; i < v.length; i++) {
          const x = encode(v[i]);
          if (x === undefined) return undefined;
          s += i ? `,${x}` : x;
        }
        return `${s}]`;
      }
      const o = v as Record<string, unknown>;
      const keys = Object.keys(o).sort();
      let s = '{';
      let first = true;
      for (const k of keys) {
        const val = o[k];
        if (val === undefined) continue;
        const x = encode(val);
        if (x === undefined) return undefined;
        s += `${first ? '' : ','}${JSON.stringify(k)}:${x}`;
        first = false;
      }
      return `${s}}`;
    }
    default:
      return undefined;
  }
}

/** The error for the first value in `v` (in canonical order) that cannot be MACed, named by its path. */
function notCanonical(v: unknown, path: string): PurselabError {
  if (typeof v === 'number') return new PurselabError('NOT_CANONICAL', `${path}: only safe integers can be MACed, got ${v}`);
  if (v !== null && typeof v === 'object') {
    if (Array.isArray(v)) {
      for (let i = 0; i < v.length; i++) if (encode(v[i]) === undefined) return notCanonical(v[i], `${path}[${i}]`);
    } else {
      const o = v as Record<string, unknown>;
      for (const k of Object.keys(o).sort()) if (o[k] !== undefined && encode(o[k]) === undefined) return notCanonical(o[k], `${path}.${k}`);
    }
  }
  return new PurselabError('NOT_CANONICAL', `${path}: a ${typeof v} cannot be MACed`);
}
