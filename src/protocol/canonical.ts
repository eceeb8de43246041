// Canonical JSON: the byte string a MAC over a JSON message is computed on. Object keys sorted, no
// whitespace, integers only (a MACed message carries amounts in minor units, never floats), no undefined.

import { PurselabError } from '../errors.ts';

export function canonicalJson(value: unknown): string {
  return encode(value, '$');
}

function encode(v: unknown, path: string): string {
  if (v === null) return 'null';
  switch (typeof v) {
    case 'string':
    case 'boolean':
      return JSON.stringify(v);
    case 'number':
      if (!Number.isSafeInteger(v)) throw new PurselabError('NOT_CANONICAL', `${path}: only safe integers can be MACed, got ${v}`);
      return String(v);
    case 'object': {
      if (Array.isArray(v)) return `[${v.map((x, i) => encode(x, `${path}[${i}]`)).join(',')}]`;
      const o = v as Record<string, unknown>;
      const keys = Object.keys(o).filter((k) => o[k] !== undefined).sort();
      return `{${keys.map((k) => `${JSON.stringify(k)}:${encode(o[k], `${path}.${k}`)}`).join(',')}}`;
    }
    default:
      throw new PurselabError('NOT_CANONICAL', `${path}: a ${typeof v} cannot be MACed`);
  }
}
