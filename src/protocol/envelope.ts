// Sealed and MACed JSON messages between the parties (client terminal, payment/load server, merchant/bank,
// OPAL). A payload is canonical JSON (src/protocol/canonical.ts); `label` names the message type and is
// bound into the MAC, so a message of one type (or for one transaction key) is never accepted as another.
//
//   seal:  iv = 16 random bytes; ct = AES-128-CBC(subKey(k,'ENC'), iv, PKCS#7 pad(utf8(canonical(payload))))
//          mac = HMAC-SHA256(subKey(k,'MAC'), utf8(label) 00 iv ct)[0..8]                  -> { iv, ct, mac } hex
//   MAC:   mac = HMAC-SHA256(subKey(k,'MAC'), utf8(label) 00 utf8(canonical(payload)))[0..8]  -> 16 hex digits
//
// open/verify compare the MAC in constant time before anything is decrypted or parsed.
// (One-shot node:crypto ciphers rather than src/crypto/cipher.ts: every envelope key is new, and that module's
// per-key-value engine cache only costs here, about twice the time per seal + open in a micro-benchmark.)

import { createCipheriv, createDecipheriv, createHmac, timingSafeEqual } from 'node:crypto';
import { pooledRandomBytes } from '../random-pool.ts';
import { PurselabError } from '../errors.ts';
import { canonicalJson } from './canonical.ts';
import { subKey } from './keys.ts';

export interface Envelope {
  readonly iv: string;
  readonly ct: string;
  readonly mac: string;
}

/** MAC length in bytes (HMAC-SHA256 truncated: 64 bits, as the ISO 9797-1 MACs of the card layer). */
const MAC_BYTES = 8;
const IV_BYTES = 16;

/** JSON schema of an Envelope, for fastify routes. */
export const ENVELOPE_SCHEMA = {
  type: 'object',
  required: ['iv', 'ct', 'mac'],
  additionalProperties: false,
  properties: {
    iv: { type: 'string', pattern: '^[0-9a-fA-F]{32}$' },
    ct: { type: 'string', pattern: '^([0-9a-fA-F]{32})+$', maxLength: 65536 },
    mac: { type: 'string', pattern: '^[0-9a-fA-F]{16}$' },
  },
} as const;

/** A message failed its MAC, or did not decrypt to JSON: forged, altered, replayed under another key or label. */
export class MessageAuthError extends PurselabError {
  constructor(label: string, why: string) {
    super('MESSAGE_NOT_AUTHENTIC', `the ${label} message is not authentic (${why})`);
  }
}

/** HMAC-SHA256 under the MAC sub-key of `key` over utf8(label) 00 parts..., truncated to MAC_BYTES. */
function labelledMac(key: Uint8Array, label: string, ...parts: (Uint8Array | string)[]): Buffer {
  const h = createHmac('sha256', subKey(key, 'MAC')).update(label, 'utf8').update(ZERO_BYTE);
  for (const p of parts) h.update(p as Buffer);
  return h.digest().subarray(0, MAC_BYTES);
}
const ZERO_BYTE = Buffer.of(0);

const sameMac = (a: Buffer, b: Buffer) => a.length === b.length && timingSafeEqual(a, b);

export function macOf(key: Uint8Array, label: string, payload: unknown): string {
  return labelledMac(key, label, Buffer.from(canonicalJson(payload), 'utf8')).toString('hex');
}

export function verifyMacOf(key: Uint8Array, label: string, payload: unknown, mac: string): boolean {
  if (!/^[0-9a-fA-F]{16}$/.test(mac)) return false;
  let text: string;
  try {
    text = canonicalJson(payload);
  } catch {
    return false; // not canonical (a float, say): cannot be the MACed message
  }
  return sameMac(labelledMac(key, label, Buffer.from(text, 'utf8')), Buffer.from(mac, 'hex'));
}

export function seal(key: Uint8Array, label: string, payload: unknown): Envelope {
  const iv = pooledRandomBytes(IV_BYTES);
  const c = createCipheriv('aes-128-cbc', subKey(key, 'ENC'), iv);
  const ct = Buffer.concat([c.update(canonicalJson(payload), 'utf8'), c.final()]);
  const mac = labelledMac(key, label, iv, ct);
  return { iv: iv.toString('hex'), ct: ct.toString('hex'), mac: mac.toString('hex') };
}

/** The bytes of a non-empty string of hex digit pairs, or undefined (Buffer.from stops at the first non-hex pair). */
function hexField(s: unknown): Buffer | undefined {
  if (typeof s !== 'string' || s.length === 0 || s.length % 2 !== 0) return undefined;
  const b = Buffer.from(s, 'hex');
  return b.length * 2 === s.length ? b : undefined;
}

/** The payload of an envelope; MessageAuthError when it was not sealed under `key` with `label`. */
export function open(key: Uint8Array, label: string, env: Envelope): unknown {
  if (!env || typeof env !== 'object') throw new MessageAuthError(label, 'malformed envelope');
  const iv = hexField(env.iv);
  const ct = hexField(env.ct);
  const mac = hexField(env.mac);
  if (!iv || !ct || !mac || iv.length !== IV_BYTES || ct.length % 16 !== 0 || ct.length === 0) throw new MessageAuthError(label, 'malformed envelope');
  if (!sameMac(labelledMac(key, label, iv, ct), mac)) throw new MessageAuthError(label, 'MAC mismatch');
  try {
    const d = createDecipheriv('aes-128-cbc', subKey(key, 'ENC'), iv);
    return JSON.parse(Buffer.concat([d.update(ct), d.final()]).toString('utf8')) as unknown;
  } catch {
    throw new MessageAuthError(label, 'bad padding or JSON under a valid MAC');
  }
}
