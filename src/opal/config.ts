// The OPAL server's configuration file (JSON): the issuers it serves, one per BIN (card profile + issuer key
// set through the existing issuing code), password hashing, lockout, session and mail settings. Paths are
// relative to the file. Secrets are never in it (the HSM spec is a command-line option; an admin token is
// named by the environment variable that holds it).

import { dirname, resolve } from 'node:path';
import { fieldChecker, isObj, shown, type Obj } from '../config-fields.ts';
import { loadPurseProfile, type PurseProfile } from '../../card-applet-sim/applets/purse/issuing.ts';
import { loadIssuerKeySet, type IssuerKeySet } from '../crypto/key-set.ts';
import { readJsonFile } from '../json-file.ts';
import { OpalError } from './errors.ts';
import { DEFAULT_SCRYPT, type ScryptParams } from './passwords.ts';

export interface OpalIssuer {
  readonly bin: string;
  readonly name: string;
  readonly profile: PurseProfile;
  readonly keys: IssuerKeySet;
  /** Balance of a new virtual card, minor units (the patent's "pre-loaded card"; default 0). */
  readonly initialBalance: number;
}

export interface OpalConfig {
  readonly issuers: readonly OpalIssuer[];
  readonly scrypt: ScryptParams;
  readonly lockout: { readonly maxFailures: number; readonly lockSeconds: number };
  readonly sessionSeconds: number;
  /** Directory the one-time-password e-mails are dropped into. */
  readonly mailDir: string;
  /** Environment variable holding the operator token for re-credits (absent: re-credit disabled). */
  readonly adminTokenEnv: string | undefined;
  /** Environment variable holding the key shared with the payment server that seals its RecreditClaims (hex). */
  readonly issuerLinkKeyEnv: string | undefined;
}

const FIELDS = ['$comment', 'issuers', 'scrypt', 'lockout', 'sessionSeconds', 'mailDir', 'adminTokenEnv', 'issuerLinkKeyEnv'];

export function parseOpalConfig(json: unknown, source: string, baseDir: string): OpalConfig {
  const { fail, known, int, digits, text } = fieldChecker((field, message) => {
    throw new OpalError('OPAL_CONFIG', `config ${source}: field '${field}': ${message}`);
  });
  if (!isObj(json)) throw new OpalError('OPAL_CONFIG', `config ${source}: must be a JSON object`);
  known(json, FIELDS, '');
  if (!Array.isArray(json.issuers) || json.issuers.length === 0) fail('issuers', 'must be a non-empty list of { "bin", "profile", "keys" }');
  const issuers = (json.issuers as unknown[]).map((raw, i): OpalIssuer => {
    if (!isObj(raw)) fail(`issuers[${i}]`, 'must be an object');
    const o = raw as Obj;
    known(o, ['$comment', 'bin', 'name', 'profile', 'keys', 'initialBalance'], `issuers[${i}].`);
    const bin = digits(o, 'bin', 6);
    if (bin === '000000') fail(`issuers[${i}].bin`, '000000 is reserved');
    const profilePath = text(o, 'profile');
    const keysPath = text(o, 'keys');
    if (!profilePath || !keysPath) fail(`issuers[${i}]`, 'needs "profile" (card profile file) and "keys" (issuer key set file)');
    const profile = loadPurseProfile(resolve(baseDir, profilePath!));
    if (profile.bin !== bin) fail(`issuers[${i}].profile`, `profile BIN ${profile.bin} is not the issuer's BIN ${bin}`);
    const initialBalance = int(o, 'initialBalance', `issuers[${i}].`, 0, profile.maxBalance, 0);
    const keys = loadIssuerKeySet(resolve(baseDir, keysPath!));
    if (keys.issuerBin !== undefined && keys.issuerBin !== bin) fail(`issuers[${i}].keys`, `key set of BIN ${keys.issuerBin} is not the issuer's BIN ${bin}: each BIN's cards come from its own key set`);
    return { bin, name: text(o, 'name') ?? profile.name ?? bin, profile, keys, initialBalance };
  });
  const bins = new Set<string>();
  for (const i of issuers) {
    if (bins.has(i.bin)) fail('issuers', `BIN ${i.bin} appears twice`);
    bins.add(i.bin);
  }
  let scrypt = DEFAULT_SCRYPT;
  if (json.scrypt !== undefined) {
    if (!isObj(json.scrypt)) fail('scrypt', `must be { "N": 2^k, "r": 8, "p": 1 }, got ${shown(json.scrypt)}`);
    const s = json.scrypt as Obj;
    known(s, ['N', 'r', 'p'], 'scrypt.');
    const N = int(s, 'N', 'scrypt.', 1024, 1 << 20, DEFAULT_SCRYPT.N);
    if ((N & (N - 1)) !== 0) fail('scrypt.N', `must be a power of two, got ${N}`);
    scrypt = { N, r: int(s, 'r', 'scrypt.', 1, 32, DEFAULT_SCRYPT.r), p: int(s, 'p', 'scrypt.', 1, 16, DEFAULT_SCRYPT.p) };
  }
  let lockout = { maxFailures: 5, lockSeconds: 900 };
  if (json.lockout !== undefined) {
    if (!isObj(json.lockout)) fail('lockout', 'must be { "maxFailures": N, "lockSeconds": S }');
    const l = json.lockout as Obj;
    known(l, ['maxFailures', 'lockSeconds'], 'lockout.');
    lockout = { maxFailures: int(l, 'maxFailures', 'lockout.', 1, 100, 5), lockSeconds: int(l, 'lockSeconds', 'lockout.', 1, 86_400 * 30, 900) };
  }
  const sessionSeconds = int(json, 'sessionSeconds', '', 30, 86_400, 1800);
  const mailDir = resolve(baseDir, text(json, 'mailDir') ?? 'opal-mail');
  const adminTokenEnv = text(json, 'adminTokenEnv');
  const issuerLinkKeyEnv = text(json, 'issuerLinkKeyEnv');
  return { issuers, scrypt, lockout, sessionSeconds, mailDir, adminTokenEnv, issuerLinkKeyEnv };
}

export function loadOpalConfig(path: string): OpalConfig {
  const json = readJsonFile(path, (reason) => {
    throw new OpalError('OPAL_CONFIG', `config ${path}: ${reason}`);
  });
  return parseOpalConfig(json, path, dirname(resolve(path)));
}
