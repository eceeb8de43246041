// Password hashing for OPAL users: scrypt from node:crypto (memory-hard; default N=2^15, r=8, p=1: 32 MiB and
// tens of milliseconds per hash), a 16-byte random salt per hash, stored as one self-describing string
// "scrypt$N$r$p$salt$hash" so the parameters can be raised later without breaking old hashes. Comparison is
// constant-time. The password policy is here too.

import { randomBytes, scrypt as scryptCb, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import { OpalError } from './errors.ts';

export interface ScryptParams {
  readonly N: number;
  readonly r: number;
  readonly p: number;
}

export const DEFAULT_SCRYPT: ScryptParams = { N: 1 << 15, r: 8, p: 1 };
const KEY_LENGTH = 32;

function scrypt(password: string, salt: Buffer, params: ScryptParams): Promise<Buffer> {
  const options: ScryptOptions = { N: params.N, r: params.r, p: params.p, maxmem: 256 * params.N * params.r + 16 * 1024 * 1024 };
  return new Promise((resolve, reject) => scryptCb(password.normalize('NFC'), salt, KEY_LENGTH, options, (err, key) => (err ? reject(err) : resolve(key))));
}

export async function hashPassword(password: string, params: ScryptParams = DEFAULT_SCRYPT): Promise<string> {
  const salt = randomBytes(16);
  const key = await scrypt(password, salt, params);
  return `scrypt$${params.N}$${params.r}$${params.p}$${salt.toString('base64')}$${key.toString('base64')}`;
}

/** Whether `password` matches `stored`; a stored string that is not a scrypt hash never matches. */
export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const m = /^scrypt\$(\d+)\$(\d+)\$(\d+)\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)$/.exec(stored);
  if (!m) return false;
  const params = { N: Number(m[1]), r: Number(m[2]), p: Number(m[3]) };
  const expected = Buffer.from(m[5]!, 'base64');
  const key = await scrypt(password, Buffer.from(m[4]!, 'base64'), params);
  return key.length === expected.length && timingSafeEqual(key, expected);
}

/** A hash to verify against when the user does not exist, so a wrong user id costs the same time as a wrong password. */
let dummy: Promise<string> | undefined;
export function dummyHash(params: ScryptParams = DEFAULT_SCRYPT): Promise<string> {
  dummy ??= hashPassword(randomBytes(16).toString('hex'), params);
  return dummy;
}

export const MIN_PASSWORD_LENGTH = 10;
export const MAX_PASSWORD_LENGTH = 128;

/** The password policy: 10..128 characters, at least one letter and one digit, not the user id. */
export function checkPasswordPolicy(password: string, userId: string): void {
  const fail = (why: string): never => {
    throw new OpalError('OPAL_PASSWORD_POLICY', `the password ${why}`);
  };
  if (password.length < MIN_PASSWORD_LENGTH) fail(`must have at least ${MIN_PASSWORD_LENGTH} characters`);
  if (password.length > MAX_PASSWORD_LENGTH) fail(`must have at most ${MAX_PASSWORD_LENGTH} characters`);
  if (!/[A-Za-z]/.test(password) || !/[0-9]/.test(password)) fail('must contain at least one letter and one digit');
  if (password.toLowerCase().includes(userId.toLowerCase())) fail('must not contain the user id');
}

/** A one-time password for the first login: 12 characters from an alphabet without look-alikes. */
export function oneTimePassword(): string {
  const alphabet = 'ABCDEFGHJKMNPQRSTUVWXYZabcdefghjkmnpqrstuvwxyz23456789';
  const bytes = randomBytes(12);
  let out = '';
  for (const b of bytes) out += alphabet[b % alphabet.length];
  // Guarantee the policy's letter + digit rule.
  return `${out.slice(0, 10)}${alphabet[26 + (bytes[0]! % 26)]}${2 + (bytes[1]! % 8)}`;
}
