// The keys stored in a PKCS#11 token as the PKCS#11 backend (pkcs11-hsm.ts) sees them: found by label and
// version (CKA_LABEL; CKA_ID = the version, 2 bytes big-endian), read back into a KeyInfo (type, usage, check
// value) or passed over when purselab cannot use them, remembered by label and version, the templates of the
// secret keys and RSA key pairs this backend creates, the objects it destroys, and the session copies of
// master keys that card keys are derived from. docs/hsm-bridge.md, "Key objects" and "Derived keys".

import { createPublicKey } from 'node:crypto';
import { LABEL_PATTERN, refName, requireRsa, requireUsage, rsaCheckValue } from '../common.ts';
import { HsmDeviceError, HsmKeyNotFoundError } from '../errors.ts';
import type { KeyInfo, KeyRef, KeyUsage, SymmetricKeyType } from '../hsm.ts';
import type { Template } from 'pkcs11js';
import { params, ulong, type Handle, type PKCS11, type Pkcs11Js } from './binding.ts';
import { ZERO8, ZERO16 } from '../../src/crypto/zero-blocks.ts';

export interface TokenKey {
  readonly info: KeyInfo;
  readonly handle: Handle;
  readonly publicHandle?: Handle;
  readonly ckk: number;
  readonly attrs: Readonly<Record<'encrypt' | 'decrypt' | 'sign' | 'verify' | 'derive' | 'wrap' | 'unwrap', boolean>>;
}

/** Version <-> CKA_ID: 2 bytes big-endian; an empty CKA_ID is version 0; IDs over 4 bytes are not ours. */
export function versionToId(version: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(version);
  return b;
}

export function idToVersion(id: Buffer): number | undefined {
  if (id.length === 0) return 0;
  if (id.length > 4) return undefined;
  return id.readUIntBE(0, id.length);
}

/** A CK_BBOOL attribute value: true when present and non-zero. */
function bool(b: Buffer | undefined): boolean {
  return !!b && b.length > 0 && b[0] !== 0;
}

/** Stored keys by label and version (no key string to build and hash per lookup). */
class KeyCache {
  private readonly byLabel = new Map<string, Map<number, TokenKey>>();
  get(ref: KeyRef): TokenKey | undefined {
    return this.byLabel.get(ref.label)?.get(ref.version);
  }
  set(ref: KeyRef, k: TokenKey): void {
    let versions = this.byLabel.get(ref.label);
    if (!versions) this.byLabel.set(ref.label, (versions = new Map()));
    versions.set(ref.version, k);
  }
  clear(): void {
    this.byLabel.clear();
  }
}

/** What C_CopyObject changes in a master key's copy: a session object, no label (so key listings pass it over). */
export function masterCopyTemplate(P: Pkcs11Js): { type: number; value: boolean | string }[] {
  return [
    { type: P.CKA_TOKEN, value: false },
    { type: P.CKA_LABEL, value: '' },
  ];
}

/** A master key's session copy, and the session that made it (the copy lives as long as that session). */
interface MasterCopy {
  readonly handle: Handle;
  readonly session: Handle;
}

/** The stored keys of one token, through one loaded module. */
export class TokenKeys {
  private readonly cache = new KeyCache();
  /** Session copies of master keys by their token object: a copy, or null when the token refused one. */
  private readonly copies = new Map<TokenKey, MasterCopy | null>();

  constructor(
    private readonly lib: PKCS11,
    private readonly P: Pkcs11Js,
    /** For error messages: "token 'LABEL'". */
    private readonly tokenLabel: string,
    /** Whether the token has a mechanism (its list is read after the keys' module is loaded). */
    private readonly hasMechanism: (mech: number) => boolean,
  ) {}

  /**
   * Forget every key read (logged out, token gone, closed): the next lookup asks the token again. The master
   * copies are destroyed where they still exist (after a logout or a lost session they are gone already).
   */
  clear(): void {
    this.cache.clear();
    for (const c of this.copies.values()) if (c) this.destroy(c.session, [c.handle]);
    this.copies.clear();
  }

  /**
   * The object to derive card keys from with master key `k`: a session copy of it made in session `owner`
   * (made at the first derivation and kept while `owner` is open), or the token object itself when copies are
   * off, there is no owner session, or the token refuses to copy the key (CKA_COPYABLE false, C_CopyObject not
   * supported, or a copy that is not a private, sensitive, non-extractable session object that derives: such a
   * copy is destroyed at once). SoftHSM2 reads a token object's file on every use, so deriving from a session
   * object is faster there (measured in docs/hsm-bridge.md); the copy has no label, so listing keys never shows it.
   */
  derivationHandle(k: TokenKey, owner: Handle | undefined): Handle {
    if (owner === undefined) return k.handle;
    const known = this.copies.get(k);
    if (known !== undefined) return known ? known.handle : k.handle;
    let copy: MasterCopy | null = null;
    try {
      const h = this.lib.C_CopyObject(owner, k.handle, masterCopyTemplate(this.P));
      if (this.fitForDerivation(owner, h)) copy = { handle: h, session: owner };
      else this.destroy(owner, [h]);
    } catch {
      /* the token keeps this key to itself: derive from the token object */
    }
    this.copies.set(k, copy);
    return copy ? copy.handle : k.handle;
  }

  /** A copy is used only if it is a session object that derives and is as protected as a master must be. */
  private fitForDerivation(s: Handle, h: Handle): boolean {
    const P = this.P;
    const flags = [P.CKA_TOKEN, P.CKA_DERIVE, P.CKA_SENSITIVE, P.CKA_EXTRACTABLE, P.CKA_PRIVATE];
    const on = this.lib.C_GetAttributeValue(s, h, flags.map((type) => ({ type }))).map((a) => bool(a.value));
    return on.length === 5 && !on[0] && on[1] === true && on[2] === true && !on[3] && on[4] === true;
  }

  /** Session copies of master keys made so far (not counting refusals). */
  get masterCopies(): number {
    let n = 0;
    for (const c of this.copies.values()) if (c) n++;
    return n;
  }

  /** Remember a key read or created under `ref`. */
  remember(ref: KeyRef, k: TokenKey): void {
    this.cache.set(ref, k);
  }

  find(s: Handle, template: { type: number; value?: unknown }[]): Handle[] {
    const lib = this.lib;
    lib.C_FindObjectsInit(s, template as Parameters<PKCS11['C_FindObjectsInit']>[1]);
    try {
      const out: Handle[] = [];
      for (;;) {
        const batch = lib.C_FindObjects(s, 64);
        out.push(...batch);
        if (batch.length < 64) return out;
      }
    } finally {
      lib.C_FindObjectsFinal(s);
    }
  }

  /** A stored key by reference (cached), or undefined. */
  lookup(s: Handle, ref: KeyRef): TokenKey | undefined {
    const cached = this.cache.get(ref);
    if (cached) return cached;
    const P = this.P;
    for (const h of this.find(s, [{ type: P.CKA_LABEL, value: ref.label }])) {
      const [cls, id] = this.lib.C_GetAttributeValue(s, h, [{ type: P.CKA_CLASS }, { type: P.CKA_ID }]).map((a) => a.value);
      const c = ulong(cls);
      if ((c !== P.CKO_SECRET_KEY && c !== P.CKO_PRIVATE_KEY) || idToVersion(id ?? Buffer.alloc(0)) !== ref.version) continue;
      const k = this.read(s, h, c);
      if (k) {
        this.cache.set(ref, k);
        return k;
      }
    }
    return undefined;
  }

  /** A stored key by reference; HsmKeyNotFoundError when the token has none. */
  get(s: Handle, ref: KeyRef): TokenKey {
    const k = this.lookup(s, ref);
    if (!k) throw new HsmKeyNotFoundError(ref.label, ref.version, `token '${this.tokenLabel}'`);
    return k;
  }

  /** An RSA key pair that signs, for operation `op`. */
  rsa(s: Handle, ref: KeyRef, op: string): TokenKey {
    const k = this.get(s, ref);
    requireRsa(k.info, op);
    requireUsage(k.info, 'mac', op);
    if (!k.publicHandle) throw new HsmKeyNotFoundError(ref.label, ref.version, `token '${this.tokenLabel}' (public key object)`);
    return k;
  }

  /** Read an object into a TokenKey; undefined for objects purselab cannot use (other types, foreign labels or IDs). */
  read(s: Handle, h: Handle, cls: number): TokenKey | undefined {
    const P = this.P;
    const lib = this.lib;
    if (cls === P.CKO_SECRET_KEY) {
      const types = [P.CKA_KEY_TYPE, P.CKA_LABEL, P.CKA_ID, P.CKA_ENCRYPT, P.CKA_DECRYPT, P.CKA_SIGN, P.CKA_VERIFY, P.CKA_DERIVE, P.CKA_WRAP, P.CKA_UNWRAP];
      const v = lib.C_GetAttributeValue(s, h, types.map((type) => ({ type }))).map((a) => a.value);
      const ckk = ulong(v[0]);
      const label = v[1]?.toString('utf8') ?? '';
      const version = idToVersion(v[2] ?? Buffer.alloc(0));
      if (!LABEL_PATTERN.test(label) || version === undefined || version > 0xffff) return undefined;
      let type: SymmetricKeyType;
      if (ckk === P.CKK_DES2 || ckk === P.CKK_DES3) type = 'DES3-2KEY';
      else if (ckk === P.CKK_AES) {
        // SoftHSM2 leaves CKA_VALUE_LEN at 0 on keys it unwrapped: 0 = not told, taken as 16.
        const len = ulong(lib.C_GetAttributeValue(s, h, [{ type: P.CKA_VALUE_LEN }])[0]?.value);
        if (len !== 16 && len !== 0) return undefined;
        type = 'AES-128';
      } else return undefined;
      const attrs = { encrypt: bool(v[3]), decrypt: bool(v[4]), sign: bool(v[5]), verify: bool(v[6]), derive: bool(v[7]), wrap: bool(v[8]), unwrap: bool(v[9]) };
      const usage: KeyUsage[] = [];
      if (attrs.verify) usage.push('mac');
      if (attrs.decrypt) usage.push('encrypt');
      if (attrs.derive) usage.push('derive');
      if (attrs.unwrap) usage.push('wrap');
      const partial = { handle: h, ckk, attrs, info: { label, version, type, usage, kcv: '' } };
      return { ...partial, info: { ...partial.info, kcv: this.storedKcv(s, partial) } };
    }
    if (cls === P.CKO_PRIVATE_KEY) {
      const v = lib.C_GetAttributeValue(s, h, [P.CKA_KEY_TYPE, P.CKA_LABEL, P.CKA_ID, P.CKA_SIGN, P.CKA_UNWRAP].map((type) => ({ type }))).map((a) => a.value);
      if (ulong(v[0]) !== P.CKK_RSA) return undefined;
      const label = v[1]?.toString('utf8') ?? '';
      const id = v[2] ?? Buffer.alloc(0);
      const version = idToVersion(id);
      if (!LABEL_PATTERN.test(label) || version === undefined || version > 0xffff) return undefined;
      const pubs = this.find(s, [
        { type: P.CKA_CLASS, value: P.CKO_PUBLIC_KEY },
        { type: P.CKA_LABEL, value: label },
        { type: P.CKA_ID, value: id },
      ]);
      const pub = pubs[0];
      if (!pub) return undefined;
      const der = this.publicKeyDer(s, pub);
      if (createPublicKey({ key: der, format: 'der', type: 'spki' }).asymmetricKeyDetails?.modulusLength !== 2048) return undefined;
      const attrs = { encrypt: false, decrypt: false, sign: bool(v[3]), verify: bool(v[3]), derive: false, wrap: bool(v[4]), unwrap: bool(v[4]) };
      const usage: KeyUsage[] = [];
      if (attrs.sign) usage.push('mac');
      if (attrs.unwrap) usage.push('wrap');
      return { handle: h, publicHandle: pub, ckk: P.CKK_RSA, attrs, info: { label, version, type: 'RSA-2048', usage, kcv: rsaCheckValue(der).toString('hex').toUpperCase() } };
    }
    return undefined;
  }

  /** An RSA public key object as SubjectPublicKeyInfo DER. */
  publicKeyDer(s: Handle, pub: Handle): Buffer {
    const P = this.P;
    const [n, e] = this.lib.C_GetAttributeValue(s, pub, [{ type: P.CKA_MODULUS }, { type: P.CKA_PUBLIC_EXPONENT }]).map((a) => a.value);
    const key = createPublicKey({ key: { kty: 'RSA', n: n!.toString('base64url'), e: e!.toString('base64url') }, format: 'jwk' });
    return key.export({ type: 'spki', format: 'der' });
  }

  /** Read back and remember a key this backend has just created. */
  readNew(s: Handle, h: Handle, cls: number): KeyInfo {
    const k = this.read(s, h, cls);
    if (!k) throw new HsmDeviceError('the token created a key that reads back wrongly');
    this.cache.set(k.info, k);
    return k.info;
  }

  /** Attributes for a secret key this backend creates. See docs/hsm-bridge.md, "Key objects". */
  secretTemplate(ref: KeyRef, type: SymmetricKeyType, usage: readonly KeyUsage[]): { type: number; value: number | boolean | string | Buffer }[] {
    const P = this.P;
    const has = (u: KeyUsage): boolean => usage.includes(u);
    const des = type === 'DES3-2KEY';
    return [
      { type: P.CKA_CLASS, value: P.CKO_SECRET_KEY },
      { type: P.CKA_KEY_TYPE, value: des ? P.CKK_DES2 : P.CKK_AES },
      { type: P.CKA_TOKEN, value: true },
      { type: P.CKA_PRIVATE, value: true },
      { type: P.CKA_SENSITIVE, value: true },
      { type: P.CKA_EXTRACTABLE, value: false },
      { type: P.CKA_LABEL, value: ref.label },
      { type: P.CKA_ID, value: versionToId(ref.version) },
      // 3DES CBC-MACs are CBC encryptions (no CKM_DES3_MAC on SoftHSM2), and a 3DES check value is an ECB
      // encryption: every 3DES key encrypts except a derivation-only master (which would otherwise give out card
      // key halves as ciphertext; its check value comes from a derivation). AES keys sign so the CMAC check value
      // can be made.
      { type: P.CKA_ENCRYPT, value: has('encrypt') || (des && (has('mac') || !has('derive'))) },
      { type: P.CKA_DECRYPT, value: has('encrypt') },
      { type: P.CKA_SIGN, value: has('mac') || !des },
      { type: P.CKA_VERIFY, value: has('mac') },
      { type: P.CKA_DERIVE, value: has('derive') },
      { type: P.CKA_WRAP, value: has('wrap') },
      { type: P.CKA_UNWRAP, value: has('wrap') },
    ];
  }

  /**
   * Attributes for an RSA-2048 key pair this backend generates (exponent 65537): the public key not private,
   * the private key sensitive and not extractable; 'mac' usage signs and verifies, 'wrap' wraps and unwraps,
   * never encrypt or decrypt.
   */
  rsaKeyPairTemplates(ref: KeyRef, usage: readonly KeyUsage[]): { pub: Template; priv: Template } {
    const P = this.P;
    const id = versionToId(ref.version);
    const pub = [
      { type: P.CKA_CLASS, value: P.CKO_PUBLIC_KEY },
      { type: P.CKA_KEY_TYPE, value: P.CKK_RSA },
      { type: P.CKA_TOKEN, value: true },
      { type: P.CKA_PRIVATE, value: false },
      { type: P.CKA_LABEL, value: ref.label },
      { type: P.CKA_ID, value: id },
      { type: P.CKA_MODULUS_BITS, value: 2048 },
      { type: P.CKA_PUBLIC_EXPONENT, value: Buffer.from([1, 0, 1]) },
      { type: P.CKA_VERIFY, value: usage.includes('mac') },
      { type: P.CKA_WRAP, value: usage.includes('wrap') },
      { type: P.CKA_ENCRYPT, value: false },
    ];
    const priv = [
      { type: P.CKA_CLASS, value: P.CKO_PRIVATE_KEY },
      { type: P.CKA_KEY_TYPE, value: P.CKK_RSA },
      { type: P.CKA_TOKEN, value: true },
      { type: P.CKA_PRIVATE, value: true },
      { type: P.CKA_SENSITIVE, value: true },
      { type: P.CKA_EXTRACTABLE, value: false },
      { type: P.CKA_LABEL, value: ref.label },
      { type: P.CKA_ID, value: id },
      { type: P.CKA_SIGN, value: usage.includes('mac') },
      { type: P.CKA_UNWRAP, value: usage.includes('wrap') },
      { type: P.CKA_DECRYPT, value: false },
    ];
    return { pub, priv };
  }

  /** Destroy objects, ignoring those already gone (session closed, logout). */
  destroy(s: Handle, objects: Handle[]): void {
    for (const o of objects) {
      try {
        this.lib.C_DestroyObject(s, o);
      } catch {
        /* gone already (session closed, logout) */
      }
    }
  }

  /**
   * Check value of a stored key, from what the token allows: 3DES: CKA_CHECK_VALUE, else 3DES-ECB of zeros
   * (CKA_ENCRYPT), else a derivation of the zero block (CKA_DERIVE); AES: CMAC of 16 zeros (CKA_SIGN).
   * '' when the key allows none of these.
   */
  private storedKcv(s: Handle, k: Omit<TokenKey, 'info'> & { info: KeyInfo }): string {
    const P = this.P;
    const lib = this.lib;
    const hex = (b: Buffer): string => b.subarray(0, 3).toString('hex').toUpperCase();
    if (k.info.type === 'AES-128') {
      if (!k.attrs.sign || !this.hasMechanism(P.CKM_AES_CMAC)) return '';
      lib.C_SignInit(s, { mechanism: P.CKM_AES_CMAC }, k.handle);
      return hex(lib.C_Sign(s, ZERO16, Buffer.alloc(16)));
    }
    try {
      const cv = lib.C_GetAttributeValue(s, k.handle, [{ type: P.CKA_CHECK_VALUE }])[0]?.value;
      if (cv && cv.length >= 3) return hex(cv);
    } catch {
      /* no CKA_CHECK_VALUE on this token */
    }
    if (k.attrs.encrypt && this.hasMechanism(P.CKM_DES3_ECB)) {
      lib.C_EncryptInit(s, { mechanism: P.CKM_DES3_ECB }, k.handle);
      return hex(lib.C_Encrypt(s, ZERO8, Buffer.allocUnsafe(8)));
    }
    if (k.attrs.derive && this.hasMechanism(P.CKM_DES3_CBC_ENCRYPT_DATA)) {
      const h = lib.C_DeriveKey(s, { mechanism: P.CKM_DES3_CBC_ENCRYPT_DATA, parameter: params({ type: P.CK_PARAMS_DES_CBC_ENCRYPT_DATA, iv: ZERO8, data: ZERO8 }) }, k.handle, [
        { type: P.CKA_CLASS, value: P.CKO_SECRET_KEY },
        { type: P.CKA_KEY_TYPE, value: P.CKK_GENERIC_SECRET },
        { type: P.CKA_VALUE_LEN, value: 8 },
        { type: P.CKA_TOKEN, value: false },
        { type: P.CKA_SENSITIVE, value: false },
        { type: P.CKA_EXTRACTABLE, value: true },
      ]);
      try {
        return hex(lib.C_GetAttributeValue(s, h, [{ type: P.CKA_VALUE }])[0]!.value);
      } finally {
        this.destroy(s, [h]);
      }
    }
    return '';
  }
}
