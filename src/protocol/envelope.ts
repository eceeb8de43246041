// Sealed and MACed JSON messages between the parties (client terminal, payment/load server, merchant/bank,
// OPAL). A payload is canonical JSON (src/protocol/canonical.ts); `label` names the message type and is
// bound into the MAC, so a message of one type (or for one transaction key) is never accepted as another.
//
//   seal:  iv = 8 random bytes; ct = 3DES-CBC(subKey(k,'ENC'), iv, pad2(utf8(canonical(payload))))
//          mac = ISO 9797-1 alg 3 (subKey(k,'MAC'), utf8(label) 00 iv ct)               -> { iv, ct, mac } hex
//   MAC:   mac = ISO 9797-1 alg 3 (subKey(k,'MAC'), utf8(label) 00 utf8(canonical(payload)))  -> 16 hex digits
//
// open/verify compare the MAC in constant time before anything is decrypted or parsed.

import { randomBytes } from 'node:crypto';
import { tdesCbcDecrypt, tdesCbcEncrypt } from '../crypto/cipher.ts';
import { computeMac, macEquals } from '../crypto/mac.ts';
import { PurselabError } from '../errors.ts';
import { canonicalJson } from './canonical.ts';
import { subKey } from './keys.ts';

export interface Envelope {
  readonly iv: string;
  readonly ct: string;
  readonly mac: string;
}

/** JSON schema of an Envelope, for fastify routes. */
export const ENVELOPE_SCHEMA = {
  type: 'object',
  required: ['iv', 'ct', 'mac'],
  additionalProperties: false,
  properties: {
    iv: { type: 'string', pattern: '^[0-9a-fA-F]{16}$' },
    ct: { type: 'string', pattern: '^([0-9a-fA-F]{16})+$', maxLength: 65536 },
    mac: { type: 'string', pattern: '^[0-9a-fA-F]{16}$' },
  },
} as const;

/** A message failed its MAC, or did not decrypt to JSON: forged, altered, replayed under another key or label. */
export class MessageAuthError extends PurselabError {
  constructor(label: string, why: string) {
    super('MESSAGE_NOT_AUTHENTIC', `the ${label} message is not authentic (${why})`);
  }
}

const labelled = (label: string, ...parts: Uint8Array[]) => Buffer.concat([Buffer.from(label, 'utf8'), Buffer.of(0), ...parts]);

export function macOf(key: Uint8Array, label: string, payload: unknown): string {
  return computeMac('ISO9797-1-ALG3', subKey(key, 'MAC'), labelled(label, Buffer.from(canonicalJson(payload), 'utf8'))).toString('hex');
}

export function verifyMacOf(key: Uint8Array, label: string, payload: unknown, mac: string): boolean {
  if (!/^[0-9a-fA-F]{16}$/.test(mac)) return false;
  let expected: string;
  try {
    expected = macOf(key, label, payload);
  } catch {
    return false; // not canonical (a float, say): cannot be the MACed message
  }
  return macEquals(Buffer.from(expected, 'hex'), Buffer.from(mac, 'hex'));
}

export function seal(key: Uint8Array, label: string, payload: unknown): Envelope {
  const iv = randomBytes(8);
  const ct = tdesCbcEncrypt(subKey(key, 'ENC'), iv, Buffer.from(canonicalJson(payload), 'utf8'), 'method2');
  const mac = computeMac('ISO9797-1-ALG3', subKey(key, 'MAC'), labelled(label, iv, ct));
  return { iv: iv.toString('hex'), ct: ct.toString('hex'), mac: mac.toString('hex') };
}

/** The payload of an envelope; MessageAuthError when it was not sealed under `key` with `label`. */
export function open(key: Uint8Array, label: string, env: Envelope): unknown {
  const hex = /^(?:[0-9a-fA-F]{2})+$/;
  if (!env || typeof env !== 'object' || !hex.test(env.iv) || !hex.test(env.ct) || !hex.test(env.mac)) throw new MessageAuthError(label, 'malformed envelope');
  const iv = Buffer.from(env.iv, 'hex');
  const ct = Buffer.from(env.ct, 'hex');
  if (iv.length !== 8 || ct.length % 8 !== 0 || ct.length === 0) throw new MessageAuthError(label, 'malformed envelope');
  const expected = computeMac('ISO9797-1-ALG3', subKey(key, 'MAC'), labelled(label, iv, ct));
  if (!macEquals(expected, Buffer.from(env.mac, 'hex'))) throw new MessageAuthError(label, 'MAC mismatch');
  let text: string;
  try {
    text = tdesCbcDecrypt(subKey(key, 'ENC'), iv, ct, 'method2').toString('utf8');
    return JSON.parse(text) as unknown;
  } catch {
    throw new MessageAuthError(label, 'bad padding or JSON under a valid MAC');
  }
}
