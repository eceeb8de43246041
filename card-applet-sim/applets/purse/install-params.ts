// Install parameters of the purse (IEP) applet: the personalisation data the issuing tool hands to
// `card.install(IEP_AID, 'purse', params)` and that the card image keeps (applets[].params). Card keys
// arrive already diversified: the card never sees an issuer master key.
//
// Wire form (version 1): one fixed layout, below. Immutable personalisation data (card id, algorithm,
// keys and key versions, points programme and maximum, PIN, PIN-required bit) is read from the params
// whenever the applet is made; the mutable purse fields (balance, maximum balance, currency, expiry,
// points balance, PIN tries) take their *initial* values from the params and live in the applet's
// persistent store afterwards. README.md in this directory documents every field.

import { CryptoError } from '../../../src/crypto/errors.ts';
import { decodeLayout, encodeLayout, layout, type Layout } from '../../../src/crypto/layout.ts';
import { AUTH_CURRENCY, AuthMode } from '../../../src/crypto/purse-mac.ts';
import { decodePinBlock, encodePinBlock } from '../../../src/crypto/purse-apdu.ts';
import { isAlgorithmId } from '../../../src/crypto/suites.ts';

export const PURSE_INSTALL_PARAMS_VERSION = 1;
/** Most PIN tries a card can count (63Cx shows 0..15). */
export const MAX_PIN_TRY_LIMIT = 15;

export const PURSE_INSTALL_PARAMS_LAYOUT: Layout = layout('purseInstallParams', [
  ['version', 'u8', 'VER', 'install-parameters format version (01)'],
  ['cardId', 'id16', 'CID', 'card id: BIN (6) + purse number (10)'],
  ['alg', 'u8', 'ALG', 'algorithm id (0x01 3DES, 0x02 AES) of all three keys'],
  ['purchaseKeyVersion', 'u8', 'KVER_P', 'purchase key version'],
  ['loadKeyVersion', 'u8', 'KVER_L', 'load key version'],
  ['updateKeyVersion', 'u8', 'KVER_U', 'update key version'],
  ['purchaseKey', 'bytes', 'KEY_P', 'card purchase key (diversified by CID)', 16],
  ['loadKey', 'bytes', 'KEY_L', 'card load key (diversified by CID)', 16],
  ['updateKey', 'bytes', 'KEY_U', 'card update key (diversified by CID)', 16],
  ['currency', 'currency', 'CUR', 'purse currency (ISO 4217 numeric), initial'],
  ['exponent', 'u8', 'EXP', 'currency exponent, initial'],
  ['maxBalance', 'u32', 'MAXBAL', 'maximum balance, initial'],
  ['balance', 'u32', 'BAL', 'balance at issue'],
  ['expiry', 'date', 'EXPIRY', 'expiry date (last valid day), initial'],
  ['pointsProgramme', 'currency', 'PTPROG', 'points programme (0000 = no points purse)'],
  ['pointsMax', 'u32', 'PTMAX', 'maximum points'],
  ['pointsBalance', 'u32', 'PTBAL', 'points balance at issue'],
  ['pinTryLimit', 'u8', 'PINLIM', 'PIN try limit 1..15 (00 = no PIN)'],
  ['pinBlock', 'bytes', 'PINBLK', 'PIN as a format-2 PIN block (FF.. when there is no PIN)', 8],
  ['authMode', 'u8', 'AUTHMODE', '01 = PIN required for purchases (needs a PIN); other bits 0'],
]);

/** The typed install parameters (what `encodePurseInstallParams` takes and `decodePurseInstallParams` gives). */
export interface PurseInstallParams {
  cardId: string;
  alg: number;
  keys: {
    purchase: { version: number; key: Buffer };
    load: { version: number; key: Buffer };
    update: { version: number; key: Buffer };
  };
  currency: number;
  exponent: number;
  maxBalance: number;
  balance: number;
  /** YYYYMMDD */
  expiry: string;
  /** Loyalty points purse; absent = none. */
  points?: { programme: number; max: number; balance: number } | undefined;
  /** Cardholder PIN; absent = none. */
  pin?: { pin: string; tryLimit: number; required: boolean } | undefined;
}

interface FlatParams {
  version: number;
  cardId: string;
  alg: number;
  purchaseKeyVersion: number;
  loadKeyVersion: number;
  updateKeyVersion: number;
  purchaseKey: Buffer;
  loadKey: Buffer;
  updateKey: Buffer;
  currency: number;
  exponent: number;
  maxBalance: number;
  balance: number;
  expiry: string;
  pointsProgramme: number;
  pointsMax: number;
  pointsBalance: number;
  pinTryLimit: number;
  pinBlock: Buffer;
  authMode: number;
}

function bad(field: string, message: string): never {
  throw new CryptoError('CRYPTO_FIELD', `purse install params: ${field}: ${message}`);
}

/** Cross-field rules (the byte layout checks each field's own range). */
function check(p: PurseInstallParams): void {
  if (!isAlgorithmId(p.alg)) bad('alg', `unknown algorithm id ${String(p.alg)} (0x01 3DES, 0x02 AES)`);
  if (p.currency === 0 || p.currency === AUTH_CURRENCY) bad('currency', `must be a real currency, not ${p.currency}`);
  if (p.balance > p.maxBalance) bad('balance', `${p.balance} exceeds the maximum balance ${p.maxBalance}`);
  if (p.points) {
    if (p.points.programme === 0) bad('points.programme', 'must be 1..9999 (0000 means no points purse)');
    if (p.points.balance > p.points.max) bad('points.balance', `${p.points.balance} exceeds the maximum ${p.points.max}`);
  }
  if (p.pin) {
    if (!Number.isInteger(p.pin.tryLimit) || p.pin.tryLimit < 1 || p.pin.tryLimit > MAX_PIN_TRY_LIMIT) {
      bad('pin.tryLimit', `must be 1..${MAX_PIN_TRY_LIMIT}, got ${String(p.pin.tryLimit)}`);
    }
  }
}

export function encodePurseInstallParams(p: PurseInstallParams): Buffer {
  check(p);
  let pinBlock: Buffer;
  try {
    pinBlock = p.pin ? encodePinBlock(p.pin.pin) : Buffer.alloc(8, 0xff);
  } catch {
    bad('pin.pin', 'must be 4..12 decimal digits');
  }
  const flat: FlatParams = {
    version: PURSE_INSTALL_PARAMS_VERSION,
    cardId: p.cardId,
    alg: p.alg,
    purchaseKeyVersion: p.keys.purchase.version,
    loadKeyVersion: p.keys.load.version,
    updateKeyVersion: p.keys.update.version,
    purchaseKey: p.keys.purchase.key,
    loadKey: p.keys.load.key,
    updateKey: p.keys.update.key,
    currency: p.currency,
    exponent: p.exponent,
    maxBalance: p.maxBalance,
    balance: p.balance,
    expiry: p.expiry,
    pointsProgramme: p.points?.programme ?? 0,
    pointsMax: p.points?.max ?? 0,
    pointsBalance: p.points?.balance ?? 0,
    pinTryLimit: p.pin?.tryLimit ?? 0,
    pinBlock,
    authMode: p.pin?.required ? AuthMode.PIN_REQUIRED : 0,
  };
  return encodeLayout(PURSE_INSTALL_PARAMS_LAYOUT, flat);
}

export function decodePurseInstallParams(bytes: Uint8Array): PurseInstallParams {
  if (bytes.length === 0) bad('params', 'the purse applet needs install parameters (card issue makes them)');
  const f = decodeLayout<FlatParams>(PURSE_INSTALL_PARAMS_LAYOUT, bytes);
  if (f.version !== PURSE_INSTALL_PARAMS_VERSION) bad('version', `unsupported version ${f.version} (this applet reads ${PURSE_INSTALL_PARAMS_VERSION})`);
  if ((f.authMode & ~AuthMode.PIN_REQUIRED) !== 0) bad('authMode', `reserved bits set (${f.authMode.toString(16)})`);
  if (f.pointsProgramme === 0 && (f.pointsMax !== 0 || f.pointsBalance !== 0)) bad('pointsMax', 'must be 0 without a points programme');
  if (f.pinTryLimit === 0 && (f.authMode & AuthMode.PIN_REQUIRED) !== 0) bad('authMode', 'PIN required but the card has no PIN');
  if (f.pinTryLimit === 0 && !f.pinBlock.equals(Buffer.alloc(8, 0xff))) bad('pinBlock', 'must be FF.. without a PIN');
  let pin: string | undefined;
  if (f.pinTryLimit !== 0) {
    try {
      pin = decodePinBlock(f.pinBlock);
    } catch {
      bad('pinBlock', 'not a format-2 PIN block');
    }
  }
  const p: PurseInstallParams = {
    cardId: f.cardId,
    alg: f.alg,
    keys: {
      purchase: { version: f.purchaseKeyVersion, key: f.purchaseKey },
      load: { version: f.loadKeyVersion, key: f.loadKey },
      update: { version: f.updateKeyVersion, key: f.updateKey },
    },
    currency: f.currency,
    exponent: f.exponent,
    maxBalance: f.maxBalance,
    balance: f.balance,
    expiry: f.expiry,
    points: f.pointsProgramme !== 0 ? { programme: f.pointsProgramme, max: f.pointsMax, balance: f.pointsBalance } : undefined,
    pin: pin !== undefined ? { pin, tryLimit: f.pinTryLimit, required: (f.authMode & AuthMode.PIN_REQUIRED) !== 0 } : undefined,
  };
  check(p);
  return p;
}
