// Payment operations over the HSM interface: the purse MACs (load S1/S2/S3, purchase S2/S3) with card keys
// derived inside the HSM, the failed-load zero-value S1 check, and sealed virtual-card records.
//
// Byte layouts come from src/crypto/purse-mac.ts (one definition for cards, PSAMs and HSMs); this file only
// says which key and which Hsm call. A backend with native commands for these (a host-command HSM) sets
// `hsm.payment`; `paymentOps(hsm)` returns that, or the generic composition below.
//
// Keys (defaults; `PaymentKeyNames` overrides):
//   card load / purchase key = derived inside the HSM from master `issuer-<usage>-<3des|aes>`, version = the
//   KVER field, by the card id (alg 0x01: 2-key 3DES, EMV option A; 0x02: AES-128) - the names of
//   fixtures/keys/demo-issuer.json.
//   virtual-card records: AES-128 masters `opal-record-enc` and `opal-record-mac` (usage 'derive'), each card's
//   record keys derived from them by its card id, so a record sealed for one card never opens for another.

import { cardIdToBcd, padMethod2, suiteFor, unpadMethod2 } from '../src/crypto/index.ts';
import {
  LoadType,
  loadS1Input,
  loadS2Input,
  loadS3Input,
  purchaseS2Input,
  purchaseS3Input,
  type LoadS1Fields,
  type LoadS2Fields,
  type LoadS3Fields,
  type PurchaseS2Fields,
  type PurchaseS3Fields,
} from '../src/crypto/purse-mac.ts';
import { PurselabError } from '../src/errors.ts';
import { checkBuffer, MAX_DATA_BYTES } from './common.ts';
import { HsmBadInputError, HsmRecordIntegrityError } from './errors.ts';
import type { Hsm, KeyRef, KeySpec } from './hsm.ts';

export type PurseMacKind = 'loadS1' | 'loadS2' | 'loadS3' | 'purchaseS2' | 'purchaseS3';

export interface PurseMacFields {
  loadS1: LoadS1Fields;
  loadS2: LoadS2Fields;
  loadS3: LoadS3Fields;
  purchaseS2: PurchaseS2Fields;
  purchaseS3: PurchaseS3Fields;
}

/** What a zero-value enquiry S1 tells the load server about the card's last credited load (failed-load recovery). */
export interface EnquiryCheck {
  /** The S1 verified under the card's load key: the fields below are the card's word. */
  readonly valid: boolean;
  readonly lastLoadTxnId: Buffer;
  readonly lastLoadCounter: number;
  readonly lastLoadAmount: number;
  /**
   * With `pendingLoadTxnId`: true when the card's last credited load is that load (the value reached the card),
   * false when it is not (the load failed; its value is to be returned). Undefined when the S1 is not valid.
   */
  readonly credited?: boolean;
}

export interface PaymentOps {
  /** Issuer: verify a card's load S1 (LTYPE 01 load or 02 points load). */
  verifyS1(fields: LoadS1Fields, s1: Buffer): Promise<boolean>;
  /** Issuer: the S2 that authorises a load whose S1 verified. */
  generateS2(fields: LoadS2Fields): Promise<Buffer>;
  /** Issuer: verify the card's S3 after CREDIT FOR LOAD (whatever its RESULT). */
  verifyS3(fields: LoadS3Fields, s3: Buffer): Promise<boolean>;
  /** Failed-load recovery: verify a zero-value enquiry S1 (LTYPE 81/82, amount 0) and read the card's last credited load. */
  verifyEnquiryS1(fields: LoadS1Fields, s1: Buffer, pendingLoadTxnId?: Buffer): Promise<EnquiryCheck>;
  /** Any purse MAC (8 bytes) under the card key its layout names: for a virtual card (OPAL) or an HSM standing in for a PSAM. */
  purseMac<K extends PurseMacKind>(kind: K, fields: PurseMacFields[K]): Promise<Buffer>;
  /** Verify any purse MAC; a MAC that is not 8 bytes is simply invalid. */
  purseMacVerify<K extends PurseMacKind>(kind: K, fields: PurseMacFields[K], mac: Buffer): Promise<boolean>;
  /** Encrypt and authenticate a virtual-card record for one card (see RECORD_FORMAT). */
  sealRecord(cardId: string, record: Buffer): Promise<Buffer>;
  /** Check and decrypt a sealed record; HSM_RECORD_INTEGRITY when it was altered or belongs to another card or key. */
  openRecord(cardId: string, sealed: Buffer): Promise<Buffer>;
}

export interface PaymentKeyNames {
  /** Master of a card key: default `issuer-<usage>-<3des|aes>` with version = KVER. */
  cardMaster(usage: 'load' | 'purchase', alg: number, keyVersion: number): KeyRef;
  /** Record masters (AES-128, usage 'derive'): default `opal-record-enc` / `opal-record-mac`, version 1. */
  readonly recordEnc: KeyRef;
  readonly recordMac: KeyRef;
}

export const DEFAULT_PAYMENT_KEYS: PaymentKeyNames = {
  cardMaster: (usage, alg, keyVersion) => ({ label: `issuer-${usage}-${suiteFor(alg).name.toLowerCase()}`, version: keyVersion }),
  recordEnc: { label: 'opal-record-enc', version: 1 },
  recordMac: { label: 'opal-record-mac', version: 1 },
};

/**
 * Sealed record: FMT (01) || KVER (1, record key version) || IV (16) || C || T (16)
 *   C = AES-128-CBC(Kenc, IV, record || 80 00..)  (ISO 9797-1 padding method 2)
 *   T = AES-CMAC(Kmac, 52 || FMT || KVER || card id BCD (8) || IV || C)
 * Kenc / Kmac = the card's keys derived from the record masters. Encrypt-then-MAC; T is checked before
 * anything is decrypted.
 */
export const RECORD_FORMAT = 0x01;
const RECORD_MAC_TAG = 0x52;
const RECORD_OVERHEAD = 2 + 16 + 16;

const KINDS: Record<PurseMacKind, { usage: 'load' | 'purchase'; input: (f: never) => Buffer }> = {
  loadS1: { usage: 'load', input: loadS1Input as (f: never) => Buffer },
  loadS2: { usage: 'load', input: loadS2Input as (f: never) => Buffer },
  loadS3: { usage: 'load', input: loadS3Input as (f: never) => Buffer },
  purchaseS2: { usage: 'purchase', input: purchaseS2Input as (f: never) => Buffer },
  purchaseS3: { usage: 'purchase', input: purchaseS3Input as (f: never) => Buffer },
};

/** The backend's native payment operations, or the generic composition over its Hsm calls. */
export function paymentOps(hsm: Hsm, keys: PaymentKeyNames = DEFAULT_PAYMENT_KEYS): PaymentOps {
  return hsm.payment ?? new GenericPaymentOps(hsm, keys);
}

/** Field errors of src/crypto (CRYPTO_FIELD, CRYPTO_CARD_ID, ...) become HSM_BAD_INPUT, like every other bad argument. */
function guard<T>(what: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof PurselabError && e.code.startsWith('CRYPTO_')) throw new HsmBadInputError(`${what}: ${e.message}`);
    throw e;
  }
}

export class GenericPaymentOps implements PaymentOps {
  private readonly hsm: Hsm;
  private readonly keys: PaymentKeyNames;

  constructor(hsm: Hsm, keys: PaymentKeyNames = DEFAULT_PAYMENT_KEYS) {
    this.hsm = hsm;
    this.keys = keys;
  }

  async verifyS1(fields: LoadS1Fields, s1: Buffer): Promise<boolean> {
    if (fields?.loadType !== LoadType.LOAD && fields?.loadType !== LoadType.POINTS_LOAD) {
      throw new HsmBadInputError(`verifyS1: load type must be 01 (load) or 02 (points load), got ${String(fields?.loadType)} (enquiries: verifyEnquiryS1)`);
    }
    return this.purseMacVerify('loadS1', fields, s1);
  }

  async generateS2(fields: LoadS2Fields): Promise<Buffer> {
    if (fields?.loadType !== LoadType.LOAD && fields?.loadType !== LoadType.POINTS_LOAD) {
      throw new HsmBadInputError(`generateS2: load type must be 01 or 02 (an enquiry has no S2), got ${String(fields?.loadType)}`);
    }
    return this.purseMac('loadS2', fields);
  }

  async verifyS3(fields: LoadS3Fields, s3: Buffer): Promise<boolean> {
    return this.purseMacVerify('loadS3', fields, s3);
  }

  async verifyEnquiryS1(fields: LoadS1Fields, s1: Buffer, pendingLoadTxnId?: Buffer): Promise<EnquiryCheck> {
    if (fields?.loadType !== LoadType.ENQUIRY && fields?.loadType !== LoadType.POINTS_ENQUIRY) {
      throw new HsmBadInputError(`verifyEnquiryS1: load type must be 81 or 82 (zero-value enquiry), got ${String(fields?.loadType)}`);
    }
    if (fields.amount !== 0) throw new HsmBadInputError(`verifyEnquiryS1: a zero-value enquiry has amount 0, got ${String(fields.amount)}`);
    if (pendingLoadTxnId !== undefined && (!Buffer.isBuffer(pendingLoadTxnId) || pendingLoadTxnId.length !== 8)) {
      throw new HsmBadInputError('verifyEnquiryS1: pending load transaction id must be 8 bytes');
    }
    const valid = await this.purseMacVerify('loadS1', fields, s1);
    const out = {
      valid,
      lastLoadTxnId: Buffer.from(fields.lastLoadTxnId),
      lastLoadCounter: fields.lastLoadCounter,
      lastLoadAmount: fields.lastLoadAmount,
    };
    return valid && pendingLoadTxnId ? { ...out, credited: pendingLoadTxnId.equals(fields.lastLoadTxnId) } : out;
  }

  async purseMac<K extends PurseMacKind>(kind: K, fields: PurseMacFields[K]): Promise<Buffer> {
    const { spec, alg, input } = this.prepare(kind, fields);
    const suite = suiteFor(alg);
    return (await this.hsm.macGenerate(spec, suite.macAlgorithm, input)).subarray(0, suite.macLength);
  }

  async purseMacVerify<K extends PurseMacKind>(kind: K, fields: PurseMacFields[K], mac: Buffer): Promise<boolean> {
    checkBuffer(mac, `${kind} MAC`);
    const { spec, alg, input } = this.prepare(kind, fields);
    const suite = suiteFor(alg);
    if (mac.length !== suite.macLength) return false;
    return this.hsm.macVerify(spec, suite.macAlgorithm, input, mac);
  }

  async sealRecord(cardId: string, record: Buffer): Promise<Buffer> {
    const bcd = guard('sealRecord', () => cardIdToBcd(cardId));
    checkBuffer(record, 'record');
    if (record.length + RECORD_OVERHEAD + 16 > MAX_DATA_BYTES) throw new HsmBadInputError(`record: at most ${MAX_DATA_BYTES - RECORD_OVERHEAD - 16} bytes`);
    const { enc, mac } = this.recordKeys(bcd);
    const kver = this.keys.recordEnc.version & 0xff;
    const iv = await this.hsm.randomBytes(16);
    const c = await this.hsm.encrypt(enc, 'CBC', iv, padMethod2(record, 16));
    const head = Buffer.from([RECORD_FORMAT, kver]);
    const t = await this.hsm.macGenerate(mac, 'AES-CMAC', Buffer.concat([Buffer.from([RECORD_MAC_TAG]), head, bcd, iv, c]));
    return Buffer.concat([head, iv, c, t]);
  }

  async openRecord(cardId: string, sealed: Buffer): Promise<Buffer> {
    const bcd = guard('openRecord', () => cardIdToBcd(cardId));
    checkBuffer(sealed, 'sealed record');
    if (sealed.length < RECORD_OVERHEAD + 16 || (sealed.length - RECORD_OVERHEAD) % 16 !== 0 || sealed.length > MAX_DATA_BYTES) {
      throw new HsmRecordIntegrityError(`sealed record of ${sealed.length} bytes is not a record (format ${RECORD_FORMAT})`);
    }
    if (sealed[0] !== RECORD_FORMAT) throw new HsmRecordIntegrityError(`sealed record format ${sealed[0]} is not ${RECORD_FORMAT}`);
    if (sealed[1] !== (this.keys.recordEnc.version & 0xff)) {
      throw new HsmRecordIntegrityError(`sealed record is under record key version ${sealed[1]}, this server holds version ${this.keys.recordEnc.version}`);
    }
    const { enc, mac } = this.recordKeys(bcd);
    const head = sealed.subarray(0, 2);
    const iv = sealed.subarray(2, 18);
    const c = sealed.subarray(18, sealed.length - 16);
    const t = sealed.subarray(sealed.length - 16);
    const ok = await this.hsm.macVerify(mac, 'AES-CMAC', Buffer.concat([Buffer.from([RECORD_MAC_TAG]), head, bcd, iv, c]), t);
    if (!ok) throw new HsmRecordIntegrityError(`sealed record for card ${cardId.slice(0, 6)}******${cardId.slice(12)} fails its MAC (altered, or not this card's)`);
    const padded = await this.hsm.decrypt(enc, 'CBC', iv, c);
    try {
      return unpadMethod2(padded, 16);
    } catch {
      throw new HsmRecordIntegrityError('sealed record has bad padding under a valid MAC (sealed by a different implementation?)');
    }
  }

  private prepare<K extends PurseMacKind>(kind: K, fields: PurseMacFields[K]): { spec: KeySpec; alg: number; input: Buffer } {
    const k = KINDS[kind];
    if (!k) throw new HsmBadInputError(`unknown purse MAC '${String(kind)}' (known: ${Object.keys(KINDS).join(', ')})`);
    if (typeof fields !== 'object' || fields === null) throw new HsmBadInputError(`${kind}: fields are required`);
    const input = guard(kind, () => k.input(fields as never));
    const { alg, keyVersion, cardId } = fields as { alg: number; keyVersion: number; cardId: string };
    const master = this.keys.cardMaster(k.usage, alg, keyVersion);
    return { spec: { master, cardId: cardIdToBcd(cardId) }, alg, input };
  }

  private recordKeys(bcd: Buffer): { enc: KeySpec; mac: KeySpec } {
    return { enc: { master: this.keys.recordEnc, cardId: bcd }, mac: { master: this.keys.recordMac, cardId: bcd } };
  }
}
