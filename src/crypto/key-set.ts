// The issuer/acquirer key set (fixtures/keys/demo-issuer.json format), read and checked in one place for card
// and PSAM issuing (card-applet-sim/applets/{purse,psam}/issuing.ts) and for `purselab hsm init` / `demo`.
// Host-side only (reads files): applets never import it. Messages never carry key bytes.

import { PurselabError } from '../errors.ts';
import { readJsonFile } from '../json-file.ts';
import type { KeyType } from './cipher.ts';
import { keyCheckValue } from './kcv.ts';
import { ALG_3DES, ALG_AES, suiteFor } from './suites.ts';
import { isObj, type Obj } from '../config-fields.ts';

/** An issuer key set that is not usable (missing master, KCV mismatch...); never carries key bytes. */
export class KeySetError extends PurselabError {
  constructor(message: string) {
    super('BAD_KEY_SET', message);
  }
}

export interface MasterKey {
  label: string;
  usage: string;
  alg: number;
  version: number;
  /** The key type of the suite of `alg` (the file's `keyType`, when given, must say the same). */
  keyType: KeyType;
  key: Buffer;
  /** KCV of `key`, upper-case hex (the file's `kcv`, when given, must say the same). */
  kcv: string;
}

/** A card or PSAM key listed in the file (`cards[]`, `psams[]`) with its KCV, for cross-checks. */
export interface DerivedKeyEntry {
  cardId?: string;
  psamId?: string;
  alg: number;
  usage: string;
  keyVersion: number;
  kcv: string;
}

export interface IssuerKeySet {
  source: string;
  issuerBin: string | undefined;
  masterKeys: MasterKey[];
  cards: DerivedKeyEntry[];
  psams: DerivedKeyEntry[];
}

export interface KeySetOptions {
  /**
   * A key set to bring into an HSM (`hsm init`) must be complete: at least one master, and each master with
   * a label, its `keyType` and its `kcv` stated in the file.
   */
  complete?: boolean;
}

const shown = (v: unknown): string => (typeof v === 'string' ? `'${v}'` : (JSON.stringify(v) ?? String(v)));

/**
 * Validate a key set: every master has usage, alg (1 or 2), version 0..255 and a 16-byte key, and its keyType
 * and KCV (if given; required with `complete`) match. `source` names it in error messages.
 */
export function parseIssuerKeySet(json: unknown, source = 'key set', options: KeySetOptions = {}): IssuerKeySet {
  const fail = (m: string): never => {
    throw new KeySetError(`key set ${source}: ${m}`);
  };
  if (!isObj(json)) fail('must be a JSON object');
  const j = json as Obj;
  const issuer = j.issuer;
  const issuerBin = isObj(issuer) && typeof issuer.bin === 'string' ? issuer.bin : undefined;
  if (!Array.isArray(j.masterKeys)) fail("field 'masterKeys' must be an array");
  if (options.complete && (j.masterKeys as unknown[]).length === 0) fail('no masterKeys');
  const masterKeys: MasterKey[] = (j.masterKeys as unknown[]).map((m, i) => {
    const where = `masterKeys[${i}]`;
    if (!isObj(m)) fail(`${where} must be an object`);
    const o = m as Obj;
    if (options.complete && typeof o.label !== 'string') fail(`${where}.label must be a string`);
    const label = typeof o.label === 'string' ? o.label : where;
    if (typeof o.usage !== 'string') fail(`${where}.usage must be a string`);
    if (o.alg !== ALG_3DES && o.alg !== ALG_AES) fail(`${label}: alg must be 1 (3DES) or 2 (AES)`);
    if (typeof o.version !== 'number' || !Number.isInteger(o.version) || o.version < 0 || o.version > 255) fail(`${label}: version must be 0..255`);
    if (typeof o.key !== 'string' || !/^[0-9A-Fa-f]{32}$/.test(o.key)) fail(`${label}: key must be 32 hex digits (a TEST key set)`);
    const key = Buffer.from(o.key as string, 'hex');
    const keyType = suiteFor(o.alg as number).keyType;
    if (options.complete && o.keyType === undefined) fail(`${label}: keyType must be DES3-2KEY or AES-128`);
    if (o.keyType !== undefined && o.keyType !== keyType) fail(`${label}: keyType ${shown(o.keyType)} does not match alg ${o.alg as number} (${keyType})`);
    const kcv = keyCheckValue(keyType, key).toString('hex').toUpperCase();
    if (options.complete && o.kcv === undefined) fail(`${label}: kcv missing (the KCV of the key, 6 hex digits)`);
    if (o.kcv !== undefined && (typeof o.kcv !== 'string' || o.kcv.toUpperCase() !== kcv)) {
      fail(`${label}: the key does not match its KCV ${shown(o.kcv)}: the key set is corrupt`);
    }
    return { label, usage: o.usage as string, alg: o.alg as number, version: o.version as number, keyType, key, kcv };
  });
  const derived = (field: 'cards' | 'psams'): DerivedKeyEntry[] => {
    const v = j[field];
    if (v !== undefined && !Array.isArray(v)) fail(`field '${field}' must be an array`);
    return (v ?? []) as DerivedKeyEntry[];
  };
  return { source, issuerBin, masterKeys, cards: derived('cards'), psams: derived('psams') };
}

export function loadIssuerKeySet(path: string, options: KeySetOptions = {}): IssuerKeySet {
  const json = readJsonFile(path, (reason) => {
    throw new KeySetError(`key set ${path}: ${reason}`);
  });
  return parseIssuerKeySet(json, path, options);
}

/** The master of the key set for a usage, suite and key version, if it has one. */
export function findMaster(keys: IssuerKeySet, usage: string, alg: number, version: number): MasterKey | undefined {
  return keys.masterKeys.find((k) => k.usage === usage && k.alg === alg && k.version === version);
}
