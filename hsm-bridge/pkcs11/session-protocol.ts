// The messages between a Pkcs11Hsm and its session processes (session-process.ts): requests naming an Hsm
// method and its arguments, replies with the value or the typed error, Buffers revived on each side (the
// 'advanced' IPC serialization hands them over as plain Uint8Arrays).

import { PurselabError } from '../../src/errors.ts';
import * as errors from '../errors.ts';
import type { Pkcs11HsmOptions } from './pkcs11-hsm.ts';

/** The per-transaction operations a session process serves. */
export const SERVED_METHODS = ['macVerify', 'macGenerate', 'keyCheckValue'] as const;
export type ServedMethod = (typeof SERVED_METHODS)[number];

export type SessionRequest =
  | { readonly t: 'open'; readonly id: number; readonly options: Pkcs11HsmOptions }
  | { readonly t: 'call'; readonly id: number; readonly method: ServedMethod; readonly args: unknown[] };

export interface ErrorDescription {
  readonly name: string;
  readonly message: string;
  readonly props: Record<string, unknown>;
}

export type SessionReply = { readonly id: number; readonly ok: true; readonly value?: unknown } | { readonly id: number; readonly ok: false; readonly error: ErrorDescription };

/** A Uint8Array (or one inside a plain object, one level down: a KeySpec's cardId) as a Buffer again. */
export function revive(v: unknown): unknown {
  if (v instanceof Uint8Array) return Buffer.isBuffer(v) ? v : Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  if (v && typeof v === 'object' && Object.getPrototypeOf(v) === Object.prototype) {
    const o: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) o[k] = x instanceof Uint8Array ? revive(x) : x;
    return o;
  }
  return v;
}

export function describeError(e: unknown): ErrorDescription {
  if (e instanceof Error) {
    const props: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(e)) if (k !== 'cause' && (v === null || ['string', 'number', 'boolean'].includes(typeof v))) props[k] = v;
    return { name: e.constructor.name, message: e.message, props };
  }
  return { name: 'Error', message: String(e), props: {} };
}

/** The error a session process reported, as the same typed class (HsmDeviceError when the class is unknown here). */
export function reviveError(d: ErrorDescription): Error {
  const Cls = (errors as Record<string, unknown>)[d.name];
  const base = new errors.HsmDeviceError(d.message);
  if (typeof Cls === 'function' && (Cls as { prototype: unknown }).prototype instanceof PurselabError) Object.setPrototypeOf(base, (Cls as { prototype: object }).prototype);
  Object.assign(base, d.props);
  Object.defineProperty(base, 'name', { value: d.name, enumerable: false, configurable: true, writable: true });
  return base;
}
