// Purse card issuing (host side, never imported by the applet): card profiles, key diversification from the
// issuer key set (src/crypto/key-set.ts) and the install parameters; `issuePurseCard` makes a personalised
// emulated card.
// `purselab card issue` (src/cli/commands/card-issue.ts) is the command-line front end; tests and other
// tools call these functions directly. Formats: README.md in this directory.
//
// The card keys are diversified here, in the issuing tool, from the issuer masters of the key set
// (`deriveCardKey`, docs/crypto.md); the card only ever receives its own three keys.

import { PurselabError } from '../../../src/errors.ts';
import { readJsonFile } from '../../../src/json-file.ts';
import { KeySetError, findMaster, type IssuerKeySet, type MasterKey } from '../../../src/crypto/key-set.ts';
import { isValidDate } from '../../../src/crypto/bcd.ts';
import { deriveCardKey, AUTH_CURRENCY } from '../../../src/crypto/purse-mac.ts';
import { IEP_AID } from '../../../src/crypto/purse-apdu.ts';
import { ALG_3DES, ALG_AES, suiteFor } from '../../../src/crypto/suites.ts';
import { SimulatedCard, type SimulatedCardOptions } from '../../os/card.ts';
import { REFERENCE_AID } from '../reference/reference-applet.ts';
import '../index.ts'; // registers the applet types (purse, reference) for install by name
import { MAX_PIN_TRY_LIMIT, encodePurseInstallParams, type PurseInstallParams } from './install-params.ts';
import { PurseApplet } from './purse-applet.ts';
import { fieldChecker, isObj, shown, type Obj } from '../../../src/config-fields.ts';

// ---------------------------------------------------------------------------------------------
// Errors

/** A card profile that is not valid; the message names the file and the field. */
export class ProfileError extends PurselabError {
  constructor(message: string) {
    super('BAD_PROFILE', message);
  }
}

// ---------------------------------------------------------------------------------------------
// Card profile

export type KeyUsage = 'purchase' | 'load' | 'update';

/** A card profile (fixtures/profiles/*.json), validated. Amounts are in minor units of the currency. */
export interface PurseProfile {
  name?: string;
  description?: string;
  /** 6 digits: the purse provider (issuer) identification number. */
  bin: string;
  /** 10 digits: the purse (IEP) number. */
  purseNumber: string;
  /** 0x01 3DES suite, 0x02 AES suite. */
  alg: number;
  /** ISO 4217 numeric currency (e.g. 978 EUR). */
  currency: number;
  exponent: number;
  maxBalance: number;
  /** Balance at issue (minor units, default 0). */
  balance: number;
  /** YYYYMMDD, the last valid day. */
  expiry: string;
  keyVersions: Record<KeyUsage, number>;
  points?: { programme: number; max: number; balance: number } | undefined;
  pin?: { value: string; tryLimit: number; required: boolean } | undefined;
}

const PROFILE_FIELDS = ['$comment', 'name', 'description', 'bin', 'purseNumber', 'algorithm', 'currency', 'exponent', 'maxBalance', 'balance', 'expiry', 'keyVersions', 'points', 'pin'];

const profileChecker = (source: string) =>
  fieldChecker((field, message) => {
    throw new ProfileError(`profile ${source}: field '${field}': ${message}`);
  });

/** Validate a parsed profile; `source` names it in error messages. */
export function parsePurseProfile(json: unknown, source = 'profile'): PurseProfile {
  const { fail, known, int, digits, text } = profileChecker(source);
  if (!isObj(json)) throw new ProfileError(`profile ${source}: must be a JSON object`);
  known(json, PROFILE_FIELDS, '');
  const name = text(json, 'name');
  const description = text(json, 'description');
  const bin = digits(json, 'bin', 6);
  const purseNumber = digits(json, 'purseNumber', 10);

  const a = json.algorithm;
  let alg: number;
  if (a === '3DES' || a === 1) alg = ALG_3DES;
  else if (a === 'AES' || a === 2) alg = ALG_AES;
  else fail('algorithm', `must be "3DES" (0x01) or "AES" (0x02), got ${shown(a)}`);

  const currency = int(json, 'currency', '', 1, 999);
  if (currency === AUTH_CURRENCY) fail('currency', '999 is the authentication currency, not a purse currency');
  const exponent = int(json, 'exponent', '', 0, 9);
  const maxBalance = int(json, 'maxBalance', '', 0, 0xffffffff);
  const balance = int(json, 'balance', '', 0, 0xffffffff, 0);
  if (balance > maxBalance) fail('balance', `${balance} exceeds maxBalance ${maxBalance}`);

  const e = json.expiry;
  const expiry = typeof e === 'string' ? e.replace(/^(\d{4})-(\d{2})-(\d{2})$/, '$1$2$3') : '';
  if (!isValidDate(expiry)) fail('expiry', `must be a calendar date "YYYY-MM-DD" (or "YYYYMMDD"), got ${shown(e)}`);

  const kv = json.keyVersions;
  if (!isObj(kv)) fail('keyVersions', 'must be an object { "purchase": N, "load": N, "update": N } (key versions 0..255)');
  known(kv as Obj, ['purchase', 'load', 'update'], 'keyVersions.');
  const keyVersions = {
    purchase: int(kv as Obj, 'purchase', 'keyVersions.', 0, 255),
    load: int(kv as Obj, 'load', 'keyVersions.', 0, 255),
    update: int(kv as Obj, 'update', 'keyVersions.', 0, 255),
  };

  let points: PurseProfile['points'];
  if (json.points !== undefined && json.points !== null) {
    const p = json.points;
    if (!isObj(p)) fail('points', 'must be an object { "programme": N, "max": N, "balance"?: N } or absent');
    known(p as Obj, ['programme', 'max', 'balance'], 'points.');
    points = {
      programme: int(p as Obj, 'programme', 'points.', 1, 9999),
      max: int(p as Obj, 'max', 'points.', 0, 0xffffffff),
      balance: int(p as Obj, 'balance', 'points.', 0, 0xffffffff, 0),
    };
    if (points.balance > points.max) fail('points.balance', `${points.balance} exceeds points.max ${points.max}`);
  }

  let pin: PurseProfile['pin'];
  if (json.pin !== undefined && json.pin !== null) {
    const p = json.pin;
    if (!isObj(p)) fail('pin', 'must be an object { "value": "1234", "tryLimit": 3, "required"?: true } or absent');
    known(p as Obj, ['value', 'tryLimit', 'required'], 'pin.');
    const value = (p as Obj).value;
    if (typeof value !== 'string' || !/^[0-9]{4,12}$/.test(value)) fail('pin.value', 'must be a string of 4..12 digits'); // never echo a PIN
    const required = (p as Obj).required ?? true;
    if (typeof required !== 'boolean') fail('pin.required', `must be true or false, got ${shown(required)}`);
    pin = { value: value as string, tryLimit: int(p as Obj, 'tryLimit', 'pin.', 1, MAX_PIN_TRY_LIMIT), required: required as boolean };
  }

  const out: PurseProfile = { bin, purseNumber, alg: alg!, currency, exponent, maxBalance, balance, expiry, keyVersions, points, pin };
  if (name !== undefined) out.name = name;
  if (description !== undefined) out.description = description;
  return out;
}

export function loadPurseProfile(path: string): PurseProfile {
  const json = readJsonFile(path, (reason) => {
    throw new ProfileError(`profile ${path}: ${reason}`);
  });
  return parsePurseProfile(json, path);
}

function masterFor(keys: IssuerKeySet, usage: KeyUsage, alg: number, version: number): MasterKey {
  const m = findMaster(keys, usage, alg, version);
  if (!m) throw new KeySetError(`key set ${keys.source}: no issuer ${usage} master for the ${suiteFor(alg).name} suite, version ${version}`);
  return m;
}

// ---------------------------------------------------------------------------------------------
// Issuing

export interface IssueOptions {
  /** Balance at issue in minor units (overrides the profile's). */
  balance?: number;
  /** 10-digit purse number (overrides the profile's). */
  purseNumber?: string;
}

/** The card id of a profile: BIN + purse number. */
export function profileCardId(profile: PurseProfile, purseNumber = profile.purseNumber): string {
  if (!/^[0-9]{10}$/.test(purseNumber)) throw new ProfileError(`purse number must be exactly 10 digits, got '${purseNumber}'`);
  return profile.bin + purseNumber;
}

/** The purse install parameters for a profile: the three card keys diversified from the issuer masters by the card id. */
export function buildPurseInstallParams(profile: PurseProfile, keys: IssuerKeySet, options: IssueOptions = {}): PurseInstallParams {
  if (keys.issuerBin !== undefined && keys.issuerBin !== profile.bin) {
    throw new KeySetError(`key set ${keys.source} belongs to issuer BIN ${keys.issuerBin}, but the profile's BIN is ${profile.bin}`);
  }
  const cardId = profileCardId(profile, options.purseNumber);
  const balance = options.balance ?? profile.balance;
  if (!Number.isInteger(balance) || balance < 0 || balance > profile.maxBalance) {
    throw new ProfileError(`balance ${balance} must be 0..maxBalance (${profile.maxBalance}) minor units`);
  }
  const key = (usage: KeyUsage) => {
    const version = profile.keyVersions[usage];
    return { version, key: deriveCardKey(masterFor(keys, usage, profile.alg, version).key, cardId, profile.alg) };
  };
  return {
    cardId,
    alg: profile.alg,
    keys: { purchase: key('purchase'), load: key('load'), update: key('update') },
    currency: profile.currency,
    exponent: profile.exponent,
    maxBalance: profile.maxBalance,
    balance,
    expiry: profile.expiry,
    points: profile.points ? { ...profile.points } : undefined,
    pin: profile.pin ? { pin: profile.pin.value, tryLimit: profile.pin.tryLimit, required: profile.pin.required } : undefined,
  };
}

export interface IssueCardOptions extends IssueOptions {
  /** Card options (protocol, serial, randomSeed...). */
  card?: SimulatedCardOptions;
  /** Also install the reference applet (docs/reference-applet.md). */
  withReference?: boolean;
}

export interface IssuedCard {
  card: SimulatedCard;
  cardId: string;
  applet: PurseApplet;
  params: PurseInstallParams;
}

/** A new emulated card with the purse applet (IEP_AID) personalised from `profile` and `keys`. */
export function issuePurseCard(profile: PurseProfile, keys: IssuerKeySet, options: IssueCardOptions = {}): IssuedCard {
  const params = buildPurseInstallParams(profile, keys, options);
  const card = new SimulatedCard(options.card ?? {});
  const applet = card.install(IEP_AID, PurseApplet.typeName!, encodePurseInstallParams(params)) as PurseApplet;
  if (options.withReference) card.install(REFERENCE_AID, 'reference');
  return { card, cardId: params.cardId, applet, params };
}
