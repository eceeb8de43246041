// The software backend: the HSM interface over node:crypto and src/crypto, with keys in an encrypted
// key-store file (keystore.ts) or, for tests and simulators, in memory only.
//
//   const hsm = new SoftwareHsm({ path: 'keys.store', create: true });   // passphrase: PURSELAB_HSM_MASTER
//   await hsm.open();
//
// Key values live in this process's memory while it is open (that is what a software HSM is); they leave
// it only wrapped: nothing in this class returns a key value.

import { access } from 'node:fs/promises';
import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, sign as rsaSign, verify as rsaVerify, type KeyObject } from 'node:crypto';
import {
  adjustDesParity,
  cbcDecrypt,
  cbcEncrypt,
  computeMac,
  diversifyCardKey,
  keyCheckValue as cryptoKcv,
  verifyMac,
} from '../../src/crypto/index.ts';
import {
  checkCipherArgs,
  checkData,
  checkKeyRef,
  checkKeySpec,
  checkMacAlgorithm,
  checkMacToVerify,
  checkRandomLength,
  checkSymmetricType,
  checkUsage,
  checkBuffer,
  DEFAULT_RSA_USAGE,
  fullMacLength,
  refKey,
  requireMacType,
  requireRsa,
  requireSymmetric,
  requireUsage,
  rsaCheckValue,
  sortKeys,
  type ResolvedSpec,
} from '../common.ts';
import { HsmBadInputError, HsmKeyExistsError, HsmKeyNotFoundError, HsmNotOpenError } from '../errors.ts';
import type { CipherMode, Hsm, HsmHealth, KeyInfo, KeyRef, KeySpec, KeyUsage, MacAlgorithm, SymmetricKeyType } from '../hsm.ts';
import { aesKeyUnwrap, des3EcbUnwrap, rsaOaepUnwrap } from '../wrap.ts';
import { LruCache } from '../../src/lru.ts';
import { pooledRandomBytes } from '../../src/random-pool.ts';
import { DEFAULT_SCRYPT, KeyStoreFile, type ScryptParams, type StoredKey } from './keystore.ts';
import { obtainPassphrase, type PassphraseOptions } from './passphrase.ts';

export interface SoftwareHsmOptions extends PassphraseOptions {
  /** Key-store file. Omit for a volatile in-memory store (tests, simulators). */
  readonly path?: string;
  /** Create the key store if the file does not exist (default false: a missing store is HSM_STORE_MISSING). */
  readonly create?: boolean;
  /** scrypt cost for a store this instance creates (default N=2^15, r=8, p=1). */
  readonly scrypt?: ScryptParams;
}

interface SymKey {
  readonly info: KeyInfo;
  readonly type: SymmetricKeyType;
  readonly value: Buffer;
}

function toInfo(k: StoredKey): KeyInfo {
  return { label: k.label, version: k.version, type: k.type, usage: [...k.usage], kcv: k.kcv };
}

/** Random requests up to this many bytes come from the CSPRNG pool (src/random-pool.ts). */
const POOLED_RANDOM_MAX = 64;
/** Derived card keys kept per master key (LRU). */
const DERIVED_KEYS_PER_MASTER = 1024;

export class SoftwareHsm implements Hsm {
  readonly backend = 'software' as const;
  private readonly options: SoftwareHsmOptions;
  private store: KeyStoreFile | undefined;
  private keys: Map<string, StoredKey> | undefined;
  private readonly rsaObjects = new Map<string, { priv: KeyObject; pub: KeyObject }>();
  private readonly derivedKeys = new Map<StoredKey, LruCache<string, Buffer>>();

  constructor(options: SoftwareHsmOptions = {}) {
    this.options = options;
  }

  /** A volatile store in memory: nothing is written anywhere, everything is gone at close(). */
  static inMemory(): SoftwareHsm {
    return new SoftwareHsm({});
  }

  get path(): string | undefined {
    return this.options.path;
  }

  async open(): Promise<void> {
    if (this.keys) return;
    const path = this.options.path;
    if (path === undefined) {
      this.keys = new Map();
      return;
    }
    let keys: StoredKey[] = [];
    const present = await access(path).then(
      () => true,
      () => false,
    );
    if (!present && this.options.create) {
      const pass = await obtainPassphrase(this.options, path, true);
      this.store = await KeyStoreFile.create(path, pass, this.options.scrypt ?? DEFAULT_SCRYPT);
    } else {
      const pass = await obtainPassphrase(this.options, path, false);
      const opened = await KeyStoreFile.open(path, pass);
      this.store = opened.store;
      keys = opened.keys;
    }
    this.keys = new Map(keys.map((k) => [refKey(k), k]));
  }

  async close(): Promise<void> {
    if (!this.keys) return;
    for (const k of this.keys.values()) {
      k.value?.fill(0);
      k.privateKeyDer?.fill(0);
    }
    this.keys = undefined;
    this.forgetDerived();
    this.rsaObjects.clear();
    this.store?.close();
    this.store = undefined;
  }

  async health(): Promise<HsmHealth> {
    if (!this.keys) return { ok: false, backend: 'software', detail: 'not open' };
    const where = this.options.path ? `key store ${this.options.path}` : 'in-memory key store';
    return { ok: true, backend: 'software', detail: `${where}, ${this.keys.size} key(s)` };
  }

  async listKeys(): Promise<KeyInfo[]> {
    const keys = this.opened();
    if (this.store) await this.refresh();
    return sortKeys([...keys.values()].map(toInfo));
  }

  async generateKey(ref: KeyRef, type: SymmetricKeyType, usage: readonly KeyUsage[]): Promise<KeyInfo> {
    this.opened();
    const r = checkKeyRef(ref);
    const t = checkSymmetricType(type);
    const u = checkUsage(usage);
    const raw = randomBytes(16);
    const value = t === 'DES3-2KEY' ? adjustDesParity(raw) : raw;
    return this.add(this.symmetric(r, t, u, value));
  }

  async importKey(ref: KeyRef, type: SymmetricKeyType, usage: readonly KeyUsage[], wrapped: Buffer, kek: KeyRef): Promise<KeyInfo> {
    this.opened();
    const r = checkKeyRef(ref);
    const t = checkSymmetricType(type);
    const u = checkUsage(usage);
    const blob = checkBuffer(wrapped, 'wrapped key');
    const k = await this.find(checkKeyRef(kek, 'KEK'));
    requireUsage(toInfo(k), 'wrap', 'unwrap (import) keys');
    let value: Buffer;
    if (k.type === 'RSA-2048') value = rsaOaepUnwrap(this.rsa(k).priv, blob);
    else if (k.type === 'AES-128') value = aesKeyUnwrap(k.value!, blob);
    else value = des3EcbUnwrap(k.value!, blob);
    return this.add(this.symmetric(r, t, u, value));
  }

  async keyCheckValue(key: KeySpec): Promise<Buffer> {
    const k = await this.symKey(checkKeySpec(key), undefined, '');
    return cryptoKcv(k.type, k.value);
  }

  async macGenerate(key: KeySpec, algorithm: MacAlgorithm, data: Buffer): Promise<Buffer> {
    const alg = checkMacAlgorithm(algorithm);
    const d = checkData(data);
    const k = await this.symKey(checkKeySpec(key), 'mac', 'compute MACs');
    requireMacType(k.type, alg, k.info.label);
    return computeMac(alg, k.value, d, fullMacLength(alg));
  }

  async macVerify(key: KeySpec, algorithm: MacAlgorithm, data: Buffer, mac: Buffer): Promise<boolean> {
    const alg = checkMacAlgorithm(algorithm);
    const d = checkData(data);
    const m = checkMacToVerify(alg, mac);
    const k = await this.symKey(checkKeySpec(key), 'mac', 'verify MACs');
    requireMacType(k.type, alg, k.info.label);
    return verifyMac(alg, k.value, d, m);
  }

  async encrypt(key: KeySpec, mode: CipherMode, iv: Buffer, data: Buffer): Promise<Buffer> {
    const k = await this.symKey(checkKeySpec(key), 'encrypt', 'encrypt');
    const a = checkCipherArgs(k.type, mode, iv, data);
    return cbcEncrypt(k.type, k.value, a.iv, a.data, 'none');
  }

  async decrypt(key: KeySpec, mode: CipherMode, iv: Buffer, data: Buffer): Promise<Buffer> {
    const k = await this.symKey(checkKeySpec(key), 'encrypt', 'decrypt');
    const a = checkCipherArgs(k.type, mode, iv, data);
    return cbcDecrypt(k.type, k.value, a.iv, a.data, 'none');
  }

  async randomBytes(length: number): Promise<Buffer> {
    this.opened();
    const n = checkRandomLength(length);
    // small requests (IVs) from the process's CSPRNG pool: one randomBytes() call costs microseconds
    return n <= POOLED_RANDOM_MAX ? pooledRandomBytes(n) : randomBytes(n);
  }

  async generateRsaKeyPair(ref: KeyRef, bits: 2048, usage: readonly KeyUsage[] = DEFAULT_RSA_USAGE): Promise<{ publicKeyDer: Buffer }> {
    this.opened();
    const r = checkKeyRef(ref);
    if (bits !== 2048) throw new HsmBadInputError(`RSA key size must be 2048, got ${String(bits)}`);
    const u = checkUsage(usage);
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048, publicExponent: 0x10001 });
    const publicKeyDer = publicKey.export({ type: 'spki', format: 'der' });
    const privateKeyDer = privateKey.export({ type: 'pkcs8', format: 'der' });
    await this.add({
      label: r.label,
      version: r.version,
      type: 'RSA-2048',
      usage: u,
      kcv: rsaCheckValue(publicKeyDer).toString('hex').toUpperCase(),
      createdAt: new Date().toISOString(),
      privateKeyDer,
      publicKeyDer,
    });
    return { publicKeyDer: Buffer.from(publicKeyDer) };
  }

  async sign(key: KeyRef, data: Buffer): Promise<Buffer> {
    const k = await this.rsaKey(key, 'sign');
    return rsaSign('sha256', checkData(data), this.rsa(k).priv);
  }

  async verify(key: KeyRef, data: Buffer, signature: Buffer): Promise<boolean> {
    const k = await this.rsaKey(key, 'verify signatures');
    return rsaVerify('sha256', checkData(data), this.rsa(k).pub, checkBuffer(signature, 'signature'));
  }

  // --- internals ---

  private opened(): Map<string, StoredKey> {
    if (!this.keys) throw new HsmNotOpenError('software');
    return this.keys;
  }

  private symmetric(ref: KeyRef, type: SymmetricKeyType, usage: KeyUsage[], value: Buffer): StoredKey {
    return {
      label: ref.label,
      version: ref.version,
      type,
      usage,
      kcv: cryptoKcv(type, value).toString('hex').toUpperCase(),
      createdAt: new Date().toISOString(),
      value,
    };
  }

  private async add(k: StoredKey): Promise<KeyInfo> {
    const keys = this.opened();
    const id = refKey(k);
    if (this.store) {
      const next = await this.store.update((current) => {
        if (current.some((c) => refKey(c) === id)) throw new HsmKeyExistsError(k.label, k.version);
        return [...current, k];
      });
      this.replace(next);
    } else {
      if (keys.has(id)) throw new HsmKeyExistsError(k.label, k.version);
      keys.set(id, k);
    }
    return toInfo(k);
  }

  private replace(next: StoredKey[]): void {
    const keys = this.opened();
    keys.clear();
    this.forgetDerived();
    for (const k of next) keys.set(refKey(k), k);
  }

  private async refresh(): Promise<void> {
    if (this.store) this.replace(await this.store.reload());
  }

  /**
   * The card key derived from master `m` for `cardId`, kept per master (forgotten, zeroed, when the key set is
   * re-read or closed): an OPAL purchase seals and opens records under the same card's two record keys four times.
   */
  private derived(m: StoredKey, cardId: Buffer, type: SymmetricKeyType): Buffer {
    let cache = this.derivedKeys.get(m);
    if (!cache) this.derivedKeys.set(m, (cache = new LruCache(DERIVED_KEYS_PER_MASTER)));
    const id = cardId.toString('latin1');
    let value = cache.get(id);
    if (!value) cache.set(id, (value = diversifyCardKey(m.value!, cardId, type)));
    return value;
  }

  private forgetDerived(): void {
    for (const cache of this.derivedKeys.values()) for (const v of cache.values()) v.fill(0);
    this.derivedKeys.clear();
  }

  /** A stored key by reference; a store shared with other processes is re-read once before "not found". */
  private async find(ref: KeyRef): Promise<StoredKey> {
    const keys = this.opened();
    let k = keys.get(refKey(ref));
    if (!k && this.store) {
      await this.refresh();
      k = keys.get(refKey(ref));
    }
    if (!k) throw new HsmKeyNotFoundError(ref.label, ref.version, this.options.path ? `key store ${this.options.path}` : 'the in-memory key store');
    return k;
  }

  /** The symmetric key a spec names: stored (with usage checked) or derived from its master (which needs 'derive'). */
  private async symKey(spec: ResolvedSpec, usage: KeyUsage | undefined, op: string): Promise<SymKey> {
    if (spec.kind === 'stored') {
      const k = await this.find(spec.ref);
      const info = toInfo(k);
      const type = requireSymmetric(info, op || 'a key check value');
      if (usage) requireUsage(info, usage, op);
      return { info, type, value: k.value! };
    }
    const m = await this.find(spec.master);
    const info = toInfo(m);
    const type = requireSymmetric(info, 'derivation');
    requireUsage(info, 'derive', 'derive card keys');
    return { info, type, value: this.derived(m, spec.cardId, type) };
  }

  private async rsaKey(ref: KeyRef, op: string): Promise<StoredKey> {
    const k = await this.find(checkKeyRef(ref));
    const info = toInfo(k);
    requireRsa(info, op);
    requireUsage(info, 'mac', op);
    return k;
  }

  private rsa(k: StoredKey): { priv: KeyObject; pub: KeyObject } {
    const id = refKey(k);
    let o = this.rsaObjects.get(id);
    if (!o) {
      o = {
        priv: createPrivateKey({ key: k.privateKeyDer!, format: 'der', type: 'pkcs8' }),
        pub: createPublicKey({ key: k.publicKeyDer!, format: 'der', type: 'spki' }),
      };
      this.rsaObjects.set(id, o);
    }
    return o;
  }
}

