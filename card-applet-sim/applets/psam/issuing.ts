// PSAM issuing (host side, never imported by the applet): PSAM profiles (fixtures/profiles/psam-*.json), the
// keys a PSAM receives from the issuer/acquirer key set, and `issuePsamCard`, which makes a personalised
// emulated PSAM. `purselab psam issue` is the command-line front end.
//
// What the PSAM receives:
//   - the issuer's purchase masters named by the profile (BIN, suite, version), from which it derives each
//     card's purchase key (docs/psam-applet.md "What the PSAM holds");
//   - its own batch and admin keys, diversified here by PSAMID from the acquirer masters (`derivePsamKey`);
//     the acquirer masters themselves never enter the PSAM.
//
// Profile format (JSON; amounts none; unknown fields are refused):
//   {
//     "name": "psam-3des", "description": "...",
//     "psamId": "9990029000000001",               16 digits
//     "algorithm": "3DES" | "AES",                suite of the PSAM's batch and admin keys
//     "keyVersions": { "batch": 1, "admin": 1 },
//     "capacity": 1000,                           records per batch (1..4096)
//     "purchaseMasters": [ { "bin": "999001", "algorithm": "3DES", "keyVersion": 1 }, ... ],
//     "acceptedCurrencies": [ { "currency": 978, "exponent": 2 }, { "programme": 7001 } ],
//     "blockedCards": [ "9990010000000099" ],     optional
//     "nextTxn": 1, "batchNumber": 1              optional
//   }

import { PurselabError } from '../../../src/errors.ts';
import { readJsonFile } from '../../../src/json-file.ts';
import { derivePsamKey } from '../../../src/crypto/purse-mac.ts';
import { PSAM_AID } from '../../../src/crypto/purse-apdu.ts';
import { ALG_3DES, ALG_AES, suiteFor } from '../../../src/crypto/suites.ts';
import { SimulatedCard, type SimulatedCardOptions } from '../../os/card.ts';
import { findMaster, type IssuerKeySet, type MasterKey } from '../../../src/crypto/key-set.ts';
import { PSAM_MAX_CAPACITY, PsamApplet, type PsamPersonalization } from './psam-applet.ts';
import { fieldChecker, isObj, shown, type Obj } from '../../../src/config-fields.ts';

export class PsamProfileError extends PurselabError {
  constructor(message: string) {
    super('BAD_PROFILE', message);
  }
}

export interface PsamProfile {
  name?: string;
  description?: string;
  psamId: string;
  alg: number;
  keyVersions: { batch: number; admin: number };
  capacity: number;
  purchaseMasters: { bin: string; alg: number; keyVersion: number }[];
  acceptedCurrencies: { currency: number; exponent: number }[];
  blockedCards: string[];
  nextTxn?: number;
  batchNumber?: number;
}

const FIELDS = ['$comment', 'name', 'description', 'psamId', 'algorithm', 'keyVersions', 'capacity', 'purchaseMasters', 'acceptedCurrencies', 'blockedCards', 'nextTxn', 'batchNumber'];

/** Validate a parsed PSAM profile; `source` names it in error messages. */
export function parsePsamProfile(json: unknown, source = 'profile'): PsamProfile {
  const { fail, known, int, text } = fieldChecker((field, m) => {
    throw new PsamProfileError(`PSAM profile ${source}: field '${field}': ${m}`);
  });
  if (!isObj(json)) throw new PsamProfileError(`PSAM profile ${source}: must be a JSON object`);
  known(json, FIELDS, '');
  const alg = (v: unknown, where: string): number => {
    if (v === '3DES' || v === 1) return ALG_3DES;
    if (v === 'AES' || v === 2) return ALG_AES;
    return fail(where, `must be "3DES" or "AES", got ${shown(v)}`);
  };
  const psamId = json.psamId;
  if (typeof psamId !== 'string' || !/^[0-9]{16}$/.test(psamId)) fail('psamId', `must be a string of 16 digits, got ${shown(psamId)}`);
  const kv = json.keyVersions;
  if (!isObj(kv)) fail('keyVersions', 'must be an object { "batch": N, "admin": N }');
  const masters = json.purchaseMasters;
  if (!Array.isArray(masters) || masters.length === 0) fail('purchaseMasters', 'must be a non-empty array of { "bin", "algorithm", "keyVersion" }');
  const purchaseMasters = (masters as unknown[]).map((m, i) => {
    const where = `purchaseMasters[${i}].`;
    if (!isObj(m)) return fail(`purchaseMasters[${i}]`, 'must be an object');
    if (typeof m.bin !== 'string' || !/^[0-9]{6}$/.test(m.bin)) fail(where + 'bin', `must be 6 digits, got ${shown(m.bin)}`);
    return { bin: m.bin as string, alg: alg(m.algorithm, where + 'algorithm'), keyVersion: int(m, 'keyVersion', where, 0, 255) };
  });
  const curs = json.acceptedCurrencies ?? [];
  if (!Array.isArray(curs)) fail('acceptedCurrencies', 'must be an array');
  const acceptedCurrencies = (curs as unknown[]).map((c, i) => {
    const where = `acceptedCurrencies[${i}].`;
    if (!isObj(c)) return fail(`acceptedCurrencies[${i}]`, 'must be { "currency": N, "exponent": N } or { "programme": N }');
    if (c.programme !== undefined) return { currency: int(c, 'programme', where, 1, 9999), exponent: 0 };
    return { currency: int(c, 'currency', where, 1, 999), exponent: int(c, 'exponent', where, 0, 9) };
  });
  const blocked = json.blockedCards ?? [];
  if (!Array.isArray(blocked) || blocked.some((b) => typeof b !== 'string' || !/^[0-9]{16}$/.test(b))) fail('blockedCards', 'must be an array of 16-digit card ids');
  const out: PsamProfile = {
    psamId: psamId as string,
    alg: alg(json.algorithm, 'algorithm'),
    keyVersions: { batch: int(kv as Obj, 'batch', 'keyVersions.', 0, 255), admin: int(kv as Obj, 'admin', 'keyVersions.', 0, 255) },
    capacity: int(json, 'capacity', '', 1, PSAM_MAX_CAPACITY),
    purchaseMasters,
    acceptedCurrencies,
    blockedCards: blocked as string[],
  };
  if (json.nextTxn !== undefined) out.nextTxn = int(json, 'nextTxn', '', 1, 0xffffffff);
  if (json.batchNumber !== undefined) out.batchNumber = int(json, 'batchNumber', '', 1, 0xfffffffe);
  const name = text(json, 'name');
  const description = text(json, 'description');
  if (name !== undefined) out.name = name;
  if (description !== undefined) out.description = description;
  return out;
}

export function loadPsamProfile(path: string): PsamProfile {
  const json = readJsonFile(path, (reason) => {
    throw new PsamProfileError(`PSAM profile ${path}: ${reason}`);
  });
  return parsePsamProfile(json, path);
}

function master(keys: IssuerKeySet, usage: string, alg: number, version: number): MasterKey {
  const m = findMaster(keys, usage, alg, version);
  if (!m) throw new PsamProfileError(`key set ${keys.source}: no ${usage} master for the ${suiteFor(alg).name} suite, version ${version}`);
  return m;
}

/** The personalisation of a PSAM: purchase masters from the key set, batch/admin keys derived by PSAMID. */
export function buildPsamPersonalization(profile: PsamProfile, keys: IssuerKeySet): PsamPersonalization {
  return {
    psamId: profile.psamId,
    alg: profile.alg,
    batchKeyVersion: profile.keyVersions.batch,
    adminKeyVersion: profile.keyVersions.admin,
    batchKey: derivePsamKey(master(keys, 'batch', profile.alg, profile.keyVersions.batch).key, profile.psamId, profile.alg),
    adminKey: derivePsamKey(master(keys, 'admin', profile.alg, profile.keyVersions.admin).key, profile.psamId, profile.alg),
    purchaseMasters: profile.purchaseMasters.map((m) => ({ ...m, key: master(keys, 'purchase', m.alg, m.keyVersion).key })),
    capacity: profile.capacity,
    acceptedCurrencies: profile.acceptedCurrencies,
    blockedCards: profile.blockedCards,
    ...(profile.nextTxn !== undefined ? { nextTxn: profile.nextTxn } : {}),
    ...(profile.batchNumber !== undefined ? { batchNumber: profile.batchNumber } : {}),
  };
}

export interface IssuedPsam {
  card: SimulatedCard;
  applet: PsamApplet;
  personalization: PsamPersonalization;
}

/** A new emulated card with the PSAM applet (PSAM_AID) personalised from `profile` and `keys`. */
export function issuePsamCard(profile: PsamProfile, keys: IssuerKeySet, options: { card?: SimulatedCardOptions; overrides?: Partial<PsamPersonalization> } = {}): IssuedPsam {
  const personalization = { ...buildPsamPersonalization(profile, keys), ...options.overrides };
  const card = new SimulatedCard(options.card ?? {});
  let applet: PsamApplet;
  try {
    applet = PsamApplet.personalized(personalization);
  } catch (e) {
    throw new PsamProfileError((e as Error).message);
  }
  card.install(PSAM_AID, applet);
  return { card, applet, personalization };
}
