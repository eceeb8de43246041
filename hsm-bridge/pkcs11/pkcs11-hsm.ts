// The PKCS#11 backend: the HSM interface over any PKCS#11 module (SoftHSM2 in CI, a vendor module in a lab).
//
//   const hsm = new Pkcs11Hsm({ module: '/usr/lib/softhsm/libsofthsm2.so', tokenLabel: 'purselab', pinEnv: 'PURSELAB_HSM_PIN' });
//   await hsm.open();
//
// Keys: CKA_LABEL = the key's label, CKA_ID = its version as 2 bytes big-endian (no CKA_ID = version 0).
// Keys this backend creates are token objects, private, CKA_SENSITIVE and not CKA_EXTRACTABLE (token-keys.ts
// finds, reads and templates them). Card keys are derived inside the token (CKM_DES3_CBC_ENCRYPT_DATA /
// CKM_AES_CBC_ENCRYPT_DATA over one block with a zero IV, which is ECB of that block) into session objects
// that are destroyed after use or kept in a small, time-bounded cache (derived-keys.ts). MACs and ciphers use
// the mechanisms the token has, composed by src/crypto's MAC code where the token has no MAC mechanism
// (token-crypto.ts). docs/hsm-bridge.md has the full mechanism map.
//
// Faults give typed errors (hsm-bridge/errors.ts; ckr-errors.ts maps CKR_* values to them) and are never
// retried: a failed operation is reported, the bridge repairs what it can (new sessions, login, looking for
// the token again) on the NEXT call. The one exception is open(): a first look at the token that another
// process's login tore is taken again (torn-token.ts).

import { diversificationBlocks, macEquals } from '../../src/crypto/index.ts';
import { PurselabError } from '../../src/errors.ts';
import {
  checkBuffer,
  checkCipherArgs,
  checkData,
  checkKeyRef,
  checkKeySpec,
  checkMacAlgorithm,
  checkMacToVerify,
  checkRandomLength,
  checkSymmetricType,
  checkUsage,
  DEFAULT_RSA_USAGE,
  describeSpec,
  macKeyType,
  refName,
  requireMacType,
  requireSymmetric,
  requireUsage,
  sortKeys,
  type ResolvedSpec,
} from '../common.ts';
import {
  HsmBadInputError,
  HsmDeviceError,
  HsmError,
  HsmKeyExistsError,
  HsmKeyUsageError,
  HsmMechanismUnsupportedError,
  HsmNotOpenError,
  HsmPinError,
  HsmSessionClosedError,
  HsmTokenNotFoundError,
} from '../errors.ts';
import type { CipherMode, Hsm, HsmHealth, KeyInfo, KeyRef, KeySpec, KeyUsage, MacAlgorithm, SymmetricKeyType } from '../hsm.ts';
import {
  acquireModule,
  ckrOf,
  mechanismName,
  moduleLoaded,
  opensslLegacyActive,
  params,
  pkcs11js,
  releaseModule,
  ulong,
  type Handle,
  type PKCS11,
  type Pkcs11Js,
} from './binding.ts';
import { SessionPool } from './session-pool.ts';
import type { SessionProcesses } from './session-processes.ts';
import { METHOD_INDEX } from './session-protocol.ts';
import { DerivedKeyCache, type DerivedEntry, type DerivedSpec, type Material } from './derived-keys.ts';
import { TokenKeys, type TokenKey } from './token-keys.ts';
import { ZERO8, ZERO16 } from '../../src/crypto/zero-blocks.ts';
import { ckrFailure } from './ckr-errors.ts';
import { andThen, settle } from './maybe-async.ts';
import { TokenCrypto, type OpContext } from './token-crypto.ts';
import { openUntilWhole, readUntilWhole } from './torn-token.ts';

export const DEFAULT_PIN_ENV = 'PURSELAB_HSM_PIN';

export interface Pkcs11HsmOptions {
  /** Path of the PKCS#11 module (shared library). */
  readonly module: string;
  /** The token's label (CKA token info label); the slot is found by it at open and after a token comes back. */
  readonly tokenLabel: string;
  /** The user PIN. Prefer `pinEnv`. */
  readonly pin?: string;
  /** Environment variable holding the user PIN (default PURSELAB_HSM_PIN). */
  readonly pinEnv?: string;
  /**
   * Sessions in the pool = operations in flight at once; opened as concurrency needs them, up to this many
   * (default: twice libuv's thread pool, UV_THREADPOOL_SIZE or 4, so 8: every pool thread has an operation to
   * take while others run their main-thread parts).
   */
  readonly sessions?: number;
  /**
   * Which pkcs11js overloads the single-shot token calls (derive, encrypt, decrypt, sign, verify, generate,
   * unwrap) use. 'auto' (default): an operation that has the token to itself makes synchronous calls (the
   * lowest latency); an operation that starts while others are in flight (or issued in the same synchronous
   * run of the event loop, or waiting for a session) uses the *Async overloads on its own pooled session, so
   * operations run in parallel on libuv's thread pool. 'async': always the *Async overloads (a slow or
   * networked device never blocks the event loop). 'sync': always on the main thread. C_*Init calls, and the
   * block calls of MACs composed from block operations, are synchronous in every mode (pkcs11js has no async
   * C_*Init; src/crypto's MAC code runs over a synchronous block primitive).
   */
  readonly calls?: 'auto' | 'sync' | 'async';
  /**
   * Session processes (default 0: none): child Node processes with their own module instance, sessions and
   * login (hsm-bridge/pkcs11/session-processes.ts). With calls 'auto', a macVerify / macGenerate /
   * keyCheckValue on a derived card key that starts while other operations are in flight waits for the end
   * of the event loop's turn; then the turn's calls are shared out: one runs on the main thread, the others go
   * to the least busy processes, one message per process. For tokens that do not run faster on more threads
   * of one process (SoftHSM2) but do in more processes; the main thread is a worker too, so N cores want
   * N - 1 processes (docs/hsm-bridge.md). Needs tsx (the children run this TypeScript) and starts them at open().
   */
  readonly processes?: number;
  /** Derived card keys kept as session objects for reuse: at most `max` (default 64; 0 = none) for `ttlMs` (default 10 s). */
  readonly derivedKeyCache?: { readonly max?: number; readonly ttlMs?: number };
  /**
   * Derive card keys from a session copy of each master key (default true): C_CopyObject once per master, into
   * the pool's anchor session, so the copy lives as long as the login. SoftHSM2 derives from a session object
   * 1.2-2x faster than from its token object (docs/hsm-bridge.md, "Derived keys"). A token that refuses the copy
   * is used through the token object; false never asks.
   */
  readonly masterCopies?: boolean;
}

// CK_STATE values (not exported by pkcs11js).
const CKS_RO_USER_FUNCTIONS = 1;
const CKS_RW_USER_FUNCTIONS = 3;
const CKZ_DATA_SPECIFIED = 1;

/** A settled promise to hang microtasks on. */
const SETTLED = Promise.resolve();

/**
 * The C_DeriveKey arguments for one card-key block (also used by `purselab bench hsm` for its raw floor):
 * CKM_*_CBC_ENCRYPT_DATA with a zero IV over exactly one block, which is the ECB encryption of that block
 * (pkcs11js cannot pass CK_KEY_DERIVATION_STRING_DATA, the parameter of CKM_*_ECB_ENCRYPT_DATA); 3DES blocks
 * become single-DES CKK_DES session objects (the card key's halves K1, K2), an AES block a CKK_AES one.
 */
export function cardKeyDerivation(P: Pkcs11Js, aes: boolean, block: Buffer): { mechanism: import('pkcs11js').Mechanism; template: import('pkcs11js').Template } {
  const mechanism = aes
    ? { mechanism: P.CKM_AES_CBC_ENCRYPT_DATA, parameter: params({ type: P.CK_PARAMS_AES_CBC, iv: ZERO16, data: block }) }
    : { mechanism: P.CKM_DES3_CBC_ENCRYPT_DATA, parameter: params({ type: P.CK_PARAMS_DES_CBC_ENCRYPT_DATA, iv: ZERO8, data: block }) };
  const template = [
    { type: P.CKA_CLASS, value: P.CKO_SECRET_KEY },
    { type: P.CKA_KEY_TYPE, value: aes ? P.CKK_AES : P.CKK_DES },
    ...(aes ? [{ type: P.CKA_VALUE_LEN, value: 16 }] : []),
    { type: P.CKA_TOKEN, value: false },
    { type: P.CKA_PRIVATE, value: true },
    { type: P.CKA_SENSITIVE, value: true },
    { type: P.CKA_EXTRACTABLE, value: false },
    { type: P.CKA_ENCRYPT, value: true },
    { type: P.CKA_DECRYPT, value: true },
    { type: P.CKA_SIGN, value: aes },
    { type: P.CKA_VERIFY, value: aes },
    { type: P.CKA_DERIVE, value: false },
  ];
  return { mechanism, template };
}

/** The context of an operation on a key spec; its name is only needed for an error message: built then. */
class SpecContext implements OpContext {
  async?: boolean;
  mechanism?: number;
  unwrap?: boolean;
  readonly ref: KeyRef;
  constructor(
    private readonly what: string,
    private readonly spec: ResolvedSpec,
  ) {
    this.ref = spec.kind === 'stored' ? spec.ref : spec.master;
  }
  get op(): string {
    return `${this.what} with ${describeSpec(this.spec)}`;
  }
}

/** Threads in libuv's pool (UV_THREADPOOL_SIZE, default 4), which runs pkcs11js's *Async calls. */
export function uvThreadpoolSize(): number {
  const n = Number(process.env.UV_THREADPOOL_SIZE);
  return Number.isInteger(n) && n >= 1 ? Math.min(n, 1024) : 4;
}

/** The default pool bound: two sessions per pool thread (at most 256). */
export function defaultSessions(): number {
  return Math.min(256, 2 * uvThreadpoolSize());
}

export class Pkcs11Hsm implements Hsm {
  readonly backend = 'pkcs11' as const;
  readonly options: Pkcs11HsmOptions;
  private readonly size: number;
  private readonly calls: 'auto' | 'sync' | 'async';

  private P: Pkcs11Js | undefined;
  private lib: PKCS11 | undefined;
  private slot: Handle | undefined;
  private pool: SessionPool | undefined;
  private procs: SessionProcesses | undefined;
  private mechs = new Map<number, number>();
  private needsLogin = true;
  private singleDes: 'ok' | 'absent' | 'broken' = 'absent';
  /** The token's stored keys (from open() to close()). */
  private keys: TokenKeys | undefined;
  /** Card keys derived inside the token, kept for reuse. */
  private readonly derived: DerivedKeyCache;
  /** The token's cipher, MAC and check-value calls on key material (token-crypto.ts); made at open(). */
  private crypto: TokenCrypto | undefined;
  /** Operations holding a session now (with calls 'auto': > 0 at the start of another means concurrency). */
  private active = 0;
  /** An operation finished synchronously and the microtasks have not run since. */
  private burst = false;
  private readonly burstOver = (): void => {
    this.burst = false;
  };
  /** Operations completed alone (synchronous calls) / while others were in flight (offered the *Async overloads). */
  private readonly counts = { alone: 0, concurrent: 0 };
  /** Opens tried again after a torn first look at the token (torn-token.ts). */
  private rescans = 0;
  /** Token info reads made again in health() after a torn read (torn-token.ts). */
  private rereads = 0;

  constructor(options: Pkcs11HsmOptions) {
    if (!options || typeof options.module !== 'string' || !options.module) throw new HsmBadInputError('PKCS#11 backend: module path is required');
    if (typeof options.tokenLabel !== 'string' || !options.tokenLabel) throw new HsmBadInputError('PKCS#11 backend: token label is required');
    const size = options.sessions ?? defaultSessions();
    if (!Number.isInteger(size) || size < 1 || size > 256) throw new HsmBadInputError(`PKCS#11 backend: sessions must be 1..256, got ${String(size)}`);
    this.options = options;
    this.size = size;
    const procs = options.processes ?? 0;
    if (!Number.isInteger(procs) || procs < 0 || procs > 64) throw new HsmBadInputError(`PKCS#11 backend: processes must be 0..64, got ${String(procs)}`);
    const calls = options.calls ?? 'auto';
    if (calls !== 'auto' && calls !== 'sync' && calls !== 'async') throw new HsmBadInputError(`PKCS#11 backend: calls must be auto, sync or async, got ${JSON.stringify(calls)}`);
    this.calls = calls;
    this.derived = new DerivedKeyCache(options.derivedKeyCache?.max ?? 64, options.derivedKeyCache?.ttlMs ?? 10_000, (s, objects) => this.keys?.destroy(s, objects));
  }

  /** The slot the token was found in (undefined until open). */
  get slotId(): Handle | undefined {
    return this.slot;
  }

  /** Derived card keys currently held as session objects. */
  get derivedKeysCached(): number {
    return this.derived.size;
  }

  /**
   * Operations completed so far that had the token to themselves (synchronous calls) / that ran while others
   * were in flight (their derive, generate, unwrap, RSA and large data calls on the *Async overloads).
   */
  get callModes(): { readonly alone: number; readonly concurrent: number } {
    return { ...this.counts };
  }

  /** How many times opening initialised the module again because the first look at the token was torn (torn-token.ts). */
  get tokenRescans(): number {
    return this.rescans;
  }

  /** How many times health() read the token's info again because the read was torn (torn-token.ts). */
  get tokenRereads(): number {
    return this.rereads;
  }

  /** Session copies of master keys this backend derives from now (Pkcs11HsmOptions.masterCopies). */
  get masterCopies(): number {
    return this.keys?.masterCopies ?? 0;
  }

  /** Process ids of the session processes (Pkcs11HsmOptions.processes) running now. */
  get sessionProcessPids(): number[] {
    return this.procs?.pids ?? [];
  }

  /** Sessions of the pool: open, lent out, callers waiting, and the bound (undefined until open). */
  get poolStats(): { open: number; inUse: number; waiting: number; size: number } | undefined {
    return this.pool?.stats;
  }

  /** Whether the token lists a mechanism (after open). */
  hasMechanism(mech: number): boolean {
    return this.mechs.has(mech);
  }

  async open(): Promise<void> {
    if (this.lib) return;
    this.pin(); // a missing PIN is a configuration error: say so before touching the module
    // a first look at the token torn by another process's login is looked at again (torn-token.ts)
    await openUntilWhole(
      (again) => {
        if (again) this.rescans++;
        return this.openToken();
      },
      () => !moduleLoaded(this.options.module),
    );
    try {
      const n = this.options.processes ?? 0;
      if (n > 0 && this.calls === 'auto') {
        const { SessionProcesses } = await import('./session-processes.ts');
        this.procs = new SessionProcesses({ ...this.options, pin: this.pin(), pinEnv: undefined, processes: 0, calls: 'sync' }, n, (method, label, version, cardId, alg, data, mac) =>
          this.serve(method, label, version, cardId, alg, data, mac),
        );
        await this.procs.start();
      }
    } catch (e) {
      await this.close();
      throw e;
    }
  }

  /** Load the module, find the token and log in; when that fails, nothing is left open. */
  private async openToken(): Promise<void> {
    this.lib = acquireModule(this.options.module);
    this.P = pkcs11js();
    this.keys = new TokenKeys(this.lib, this.P, this.options.tokenLabel, (mech) => this.mechs.has(mech));
    this.crypto = new TokenCrypto(this.lib, this.P, this.options.tokenLabel, this.calls, (mech, flag, purpose) => this.requireMechanism(mech, flag, purpose));
    try {
      await this.ready();
    } catch (e) {
      await this.close();
      throw e;
    }
  }

  /**
   * With session processes: whether an operation on a derived card key goes to one (it does not have the
   * token to itself: another operation is in flight here or in a process, one finished synchronously in this
   * same synchronous run, or callers wait for a session).
   */
  private offProcess(procs: SessionProcesses, spec: ResolvedSpec): spec is DerivedSpec {
    if (spec.kind !== 'derived' || !(this.active > 0 || this.burst || procs.inFlight > 0 || (this.pool?.stats.waiting ?? 0) > 0)) return false;
    this.counts.concurrent++;
    return true;
  }

  /** Session processes' calls and the IPC messages (batches) that carried them (undefined without processes). */
  get sessionProcessStats(): { calls: number; batches: number; local: number } | undefined {
    return this.procs?.stats;
  }

  /**
   * A session process's entry (session-process.ts): a served method (session-protocol.ts METHOD_INDEX) on a
   * derived card key, with arguments the parent has checked; the value, or a promise when the call could not
   * run synchronously.
   */
  serve(method: number, label: string, version: number, cardId: Buffer, alg: MacAlgorithm | undefined, data: Buffer | undefined, mac: Buffer | undefined): unknown {
    const spec: ResolvedSpec = { kind: 'derived', master: { label, version }, cardId };
    if (method === METHOD_INDEX.macVerify) return this.verifyNow(spec, alg!, data!, mac!);
    if (method === METHOD_INDEX.macGenerate) return this.generateNow(spec, alg!, data!);
    if (method === METHOD_INDEX.keyCheckValue) return this.kcvNow(spec);
    throw new HsmBadInputError(`session process: method ${String(method)} is not served`);
  }

  async close(): Promise<void> {
    if (!this.lib) return;
    const procs = this.procs;
    this.procs = undefined;
    await procs?.close();
    const pool = this.pool;
    if (pool && this.derived.size) {
      try {
        const s = await pool.acquire();
        this.derived.destroyAll(s);
        pool.release(s);
      } catch {
        /* the objects go with the sessions anyway */
      }
    }
    this.derived.reset();
    pool?.dispose(new HsmNotOpenError('pkcs11'));
    this.pool = undefined;
    this.slot = undefined;
    this.needsLogin = true;
    this.lib = undefined;
    this.keys = undefined;
    this.crypto = undefined;
    releaseModule(this.options.module);
  }

  async health(): Promise<HsmHealth> {
    const lib = this.lib;
    if (!lib) return { ok: false, backend: 'pkcs11', detail: 'not open' };
    try {
      const session = await this.run({ op: 'health' }, () => {
        const state = lib.C_GetSessionInfo(this.pool!.anchor).state;
        return { loggedIn: state === CKS_RW_USER_FUNCTIONS || state === CKS_RO_USER_FUNCTIONS, stats: this.pool!.stats };
      });
      // the token's info reads its file, which another process's login can tear: read again (torn-token.ts)
      const t = await readUntilWhole(() => lib.C_GetTokenInfo(this.slot!), () => this.rereads++).catch((e: unknown) => {
        throw new HsmDeviceError(`health: ${ckrOf(e) ?? (e as Error).message}`, ckrOf(e), { cause: e });
      });
      const P = this.P!;
      const pinFlags = [
        t.flags & P.CKF_USER_PIN_COUNT_LOW ? 'user PIN count low' : '',
        t.flags & P.CKF_USER_PIN_FINAL_TRY ? 'user PIN final try' : '',
        t.flags & P.CKF_USER_PIN_LOCKED ? 'user PIN LOCKED' : '',
      ].filter(Boolean);
      const st = session.stats;
      const des =
        this.singleDes === 'ok' ? 'single DES ok' : this.singleDes === 'absent' ? 'no single DES (derived 3DES keys unavailable)' : `single DES broken (${this.singleDesHint()})`;
      const detail = [
        `token '${t.label.trim()}' in slot ${ulong(this.slot)}`,
        `${t.manufacturerID.trim()} ${t.model.trim()} serial ${t.serialNumber.trim()}`,
        session.loggedIn ? 'logged in' : 'NOT logged in',
        `sessions ${st.open}/${st.size} open, ${st.inUse} busy`,
        `${this.mechs.size} mechanisms`,
        des,
        this.options.masterCopies === false ? 'master copies off' : `derivations from ${this.masterCopies} master ${this.masterCopies === 1 ? 'copy' : 'copies'}`,
        ...pinFlags,
      ].join('; ');
      return { ok: session.loggedIn, backend: 'pkcs11', detail };
    } catch (e) {
      return { ok: false, backend: 'pkcs11', detail: e instanceof PurselabError ? `${e.code}: ${e.message}` : String(e) };
    }
  }

  async listKeys(): Promise<KeyInfo[]> {
    return this.run({ op: 'list keys' }, (s) => {
      const P = this.P!;
      const out: KeyInfo[] = [];
      for (const cls of [P.CKO_SECRET_KEY, P.CKO_PRIVATE_KEY]) {
        for (const h of this.keys!.find(s, [{ type: P.CKA_CLASS, value: cls }])) {
          const k = this.keys!.read(s, h, cls);
          if (!k) continue;
          out.push(k.info);
          this.keys!.remember(k.info, k);
        }
      }
      return sortKeys(out);
    });
  }

  async generateKey(ref: KeyRef, type: SymmetricKeyType, usage: readonly KeyUsage[]): Promise<KeyInfo> {
    const r = checkKeyRef(ref);
    const t = checkSymmetricType(type);
    const u = checkUsage(usage);
    return this.run({ op: `generate ${refName(r)}`, ref: r }, async (s, ctx) => {
      const P = this.P!;
      if (this.keys!.lookup(s, r)) throw new HsmKeyExistsError(r.label, r.version);
      const mech = t === 'AES-128' ? P.CKM_AES_KEY_GEN : P.CKM_DES2_KEY_GEN;
      this.requireMechanism(mech, P.CKF_GENERATE, `generating a ${t} key`);
      ctx.mechanism = mech;
      const template = [...this.keys!.secretTemplate(r, t, u), ...(t === 'AES-128' ? [{ type: P.CKA_VALUE_LEN, value: 16 }] : [])];
      const h = ctx.async
        ? await this.lib!.C_GenerateKeyAsync(s, { mechanism: mech }, template)
        : this.lib!.C_GenerateKey(s, { mechanism: mech }, template);
      return this.keys!.readNew(s, h, P.CKO_SECRET_KEY);
    });
  }

  async importKey(ref: KeyRef, type: SymmetricKeyType, usage: readonly KeyUsage[], wrapped: Buffer, kek: KeyRef): Promise<KeyInfo> {
    const r = checkKeyRef(ref);
    const t = checkSymmetricType(type);
    const u = checkUsage(usage);
    const blob = checkBuffer(wrapped, 'wrapped key');
    const kr = checkKeyRef(kek, 'KEK');
    return this.run({ op: `import ${refName(r)}`, ref: kr }, async (s, ctx) => {
      const P = this.P!;
      if (this.keys!.lookup(s, r)) throw new HsmKeyExistsError(r.label, r.version);
      const k = this.keys!.get(s, kr);
      requireUsage(k.info, 'wrap', 'unwrap (import) keys');
      let mechanism: Parameters<PKCS11['C_UnwrapKey']>[1];
      if (k.info.type === 'AES-128') mechanism = { mechanism: P.CKM_AES_KEY_WRAP };
      else if (k.info.type === 'RSA-2048') {
        mechanism = {
          mechanism: P.CKM_RSA_PKCS_OAEP,
          parameter: params({ type: P.CK_PARAMS_RSA_OAEP, hashAlg: P.CKM_SHA_1, mgf: P.CKG_MGF1_SHA1, source: CKZ_DATA_SPECIFIED }),
        };
      } else mechanism = { mechanism: P.CKM_DES3_ECB };
      this.requireMechanism(mechanism.mechanism, P.CKF_UNWRAP, `importing a key under ${k.info.type} KEK ${refName(kr)}`);
      ctx.mechanism = mechanism.mechanism;
      ctx.unwrap = true;
      const template = this.keys!.secretTemplate(r, t, u);
      const h = ctx.async
        ? await this.lib!.C_UnwrapKeyAsync(s, mechanism, k.handle, blob, template)
        : this.lib!.C_UnwrapKey(s, mechanism, k.handle, blob, template);
      ctx.unwrap = false;
      ctx.ref = r;
      return this.keys!.readNew(s, h, P.CKO_SECRET_KEY);
    });
  }

  // keyCheckValue, macGenerate and macVerify are the per-transaction calls: with synchronous token calls
  // ('sync') they run start to end in one go and hand back one settled promise (see settle()).

  keyCheckValue(key: KeySpec): Promise<Buffer> {
    return settle(() => {
      const spec = checkKeySpec(key);
      const procs = this.procs;
      if (procs && this.offProcess(procs, spec)) return procs.call(METHOD_INDEX.keyCheckValue, spec.master.label, spec.master.version, spec.cardId, 0, 0, 0) as Promise<Buffer>;
      return this.kcvNow(spec);
    });
  }

  macGenerate(key: KeySpec, algorithm: MacAlgorithm, data: Buffer): Promise<Buffer> {
    return settle(() => {
      const alg = checkMacAlgorithm(algorithm);
      const d = checkData(data);
      const spec = checkKeySpec(key);
      const procs = this.procs;
      if (procs && this.offProcess(procs, spec)) return procs.call(METHOD_INDEX.macGenerate, spec.master.label, spec.master.version, spec.cardId, alg, d, 0) as Promise<Buffer>;
      return this.generateNow(spec, alg, d);
    });
  }

  macVerify(key: KeySpec, algorithm: MacAlgorithm, data: Buffer, mac: Buffer): Promise<boolean> {
    return settle(() => {
      const alg = checkMacAlgorithm(algorithm);
      const d = checkData(data);
      const expected = checkMacToVerify(alg, mac);
      const spec = checkKeySpec(key);
      const procs = this.procs;
      if (procs && this.offProcess(procs, spec)) return procs.call(METHOD_INDEX.macVerify, spec.master.label, spec.master.version, spec.cardId, alg, d, expected) as Promise<boolean>;
      return this.verifyNow(spec, alg, d, expected);
    });
  }

  private kcvNow(spec: ResolvedSpec): Buffer | Promise<Buffer> {
    return this.withMaterial(spec, undefined, 'compute a check value', (s, ctx, m, k) => {
      if (!k) return this.crypto!.materialKcv(s, ctx, m);
      if (!k.info.kcv) throw new HsmKeyUsageError(`token '${this.options.tokenLabel}' allows no check value for ${refName(k.info)} (needs CKA_ENCRYPT, CKA_DERIVE or CKA_CHECK_VALUE; AES: CKA_SIGN)`);
      return Buffer.from(k.info.kcv, 'hex');
    });
  }

  private generateNow(spec: ResolvedSpec, alg: MacAlgorithm, d: Buffer): Buffer | Promise<Buffer> {
    return this.withMaterial(spec, 'mac', 'compute MACs', (s, ctx, m, _k, type) => {
      if (macKeyType(alg) !== type) requireMacType(type, alg, describeSpec(spec));
      return this.crypto!.mac(s, ctx, m, alg, d);
    });
  }

  private verifyNow(spec: ResolvedSpec, alg: MacAlgorithm, d: Buffer, expected: Buffer): boolean | Promise<boolean> {
    return this.withMaterial(spec, 'mac', 'verify MACs', (s, ctx, m, _k, type) => {
      if (macKeyType(alg) !== type) requireMacType(type, alg, describeSpec(spec));
      const full = this.crypto!.mac(s, ctx, m, alg, d);
      // inline callbacks, not a named closure: tsx (esbuild keepNames) names those with a defineProperty per call
      return full instanceof Promise ? full.then((f) => macEquals(f.subarray(0, expected.length), expected)) : macEquals(full.subarray(0, expected.length), expected);
    });
  }

  async encrypt(key: KeySpec, mode: CipherMode, iv: Buffer, data: Buffer): Promise<Buffer> {
    return this.withMaterial(checkKeySpec(key), 'encrypt', 'encrypt', async (s, ctx, m, _k, type) => {
      const a = checkCipherArgs(type, mode, iv, data);
      return this.crypto!.encryptCbc(s, ctx, m, a.iv, a.data);
    });
  }

  async decrypt(key: KeySpec, mode: CipherMode, iv: Buffer, data: Buffer): Promise<Buffer> {
    return this.withMaterial(checkKeySpec(key), 'encrypt', 'decrypt', async (s, ctx, m, _k, type) => {
      const a = checkCipherArgs(type, mode, iv, data);
      return this.crypto!.decryptCbc(s, ctx, m, a.iv, a.data);
    });
  }

  async randomBytes(length: number): Promise<Buffer> {
    const n = checkRandomLength(length);
    return this.run({ op: 'random' }, (s) => Buffer.from(this.lib!.C_GenerateRandom(s, Buffer.alloc(n))));
  }

  async generateRsaKeyPair(ref: KeyRef, bits: 2048, usage: readonly KeyUsage[] = DEFAULT_RSA_USAGE): Promise<{ publicKeyDer: Buffer }> {
    const r = checkKeyRef(ref);
    if (bits !== 2048) throw new HsmBadInputError(`RSA key size must be 2048, got ${String(bits)}`);
    const u = checkUsage(usage);
    return this.run({ op: `generate RSA ${refName(r)}`, ref: r }, async (s, ctx) => {
      const P = this.P!;
      if (this.keys!.lookup(s, r)) throw new HsmKeyExistsError(r.label, r.version);
      this.requireMechanism(P.CKM_RSA_PKCS_KEY_PAIR_GEN, P.CKF_GENERATE_KEY_PAIR, 'generating an RSA key pair');
      ctx.mechanism = P.CKM_RSA_PKCS_KEY_PAIR_GEN;
      const { pub, priv } = this.keys!.rsaKeyPairTemplates(r, u);
      const mech = { mechanism: P.CKM_RSA_PKCS_KEY_PAIR_GEN };
      const kp = ctx.async ? await this.lib!.C_GenerateKeyPairAsync(s, mech, pub, priv) : this.lib!.C_GenerateKeyPair(s, mech, pub, priv);
      const k = this.keys!.read(s, kp.privateKey, P.CKO_PRIVATE_KEY);
      if (!k) throw new HsmDeviceError(`the token made an RSA key pair for ${refName(r)} that reads back wrongly`);
      this.keys!.remember(r, k);
      return { publicKeyDer: this.keys!.publicKeyDer(s, kp.publicKey) };
    });
  }

  async sign(key: KeyRef, data: Buffer): Promise<Buffer> {
    const r = checkKeyRef(key);
    const d = checkData(data);
    return this.run({ op: `sign with ${refName(r)}`, ref: r }, async (s, ctx) => {
      const P = this.P!;
      const k = this.keys!.rsa(s, r, 'sign');
      const mech = { mechanism: P.CKM_SHA256_RSA_PKCS };
      this.requireMechanism(mech.mechanism, P.CKF_SIGN, 'RSA signatures');
      ctx.mechanism = mech.mechanism;
      this.lib!.C_SignInit(s, mech, k.handle);
      return Buffer.from(ctx.async ? await this.lib!.C_SignAsync(s, d, Buffer.alloc(512)) : this.lib!.C_Sign(s, d, Buffer.alloc(512)));
    });
  }

  async verify(key: KeyRef, data: Buffer, signature: Buffer): Promise<boolean> {
    const r = checkKeyRef(key);
    const d = checkData(data);
    const sig = checkBuffer(signature, 'signature');
    return this.run({ op: `verify with ${refName(r)}`, ref: r }, async (s, ctx) => {
      const P = this.P!;
      const k = this.keys!.rsa(s, r, 'verify signatures');
      const mech = { mechanism: P.CKM_SHA256_RSA_PKCS };
      this.requireMechanism(mech.mechanism, P.CKF_VERIFY, 'RSA signatures');
      ctx.mechanism = mech.mechanism;
      this.lib!.C_VerifyInit(s, mech, k.publicHandle!);
      try {
        return ctx.async ? await this.lib!.C_VerifyAsync(s, d, sig) : this.lib!.C_Verify(s, d, sig);
      } catch (e) {
        const ckr = ckrOf(e);
        if (ckr === 'CKR_SIGNATURE_INVALID' || ckr === 'CKR_SIGNATURE_LEN_RANGE') return false;
        throw e;
      }
    });
  }

  // ------------------------------------------------------------------------------------------------------
  // Sessions, login and fault handling

  /** Make sure there is a slot, a pool and a login; repairs after a fault happen here, on the next call. */
  private async ready(): Promise<SessionPool> {
    if (!this.lib || !this.P) throw new HsmNotOpenError('pkcs11');
    try {
      if (!this.pool) {
        this.slot = this.findSlot();
        this.pool = new SessionPool(this.P, this.lib, this.slot, this.size);
        this.loadMechanisms();
        this.needsLogin = true;
      }
      if (this.needsLogin) {
        this.login(this.pool.anchor);
        this.needsLogin = false;
        this.probeSingleDes(this.pool.anchor);
      }
      return this.pool;
    } catch (e) {
      throw this.translate(e, this.pool?.anchor, { op: `open token '${this.options.tokenLabel}'` });
    }
  }

  /**
   * Run fn on a pooled session. Synchronous from start to end when the pool is ready, a session is free and fn
   * is synchronous (sync token calls): no promise is made here then; otherwise a promise.
   */
  private run<T>(ctx: OpContext, fn: (s: Handle, ctx: OpContext) => Promise<T> | T): T | Promise<T> {
    const pool = this.pool && !this.needsLogin ? this.pool : undefined;
    if (!pool) return this.ready().then((p) => this.runOn(p, ctx, fn));
    return this.runOn(pool, ctx, fn);
  }

  private runOn<T>(pool: SessionPool, ctx: OpContext, fn: (s: Handle, ctx: OpContext) => Promise<T> | T): T | Promise<T> {
    const got = pool.acquire();
    if (got instanceof Promise) return got.then((s) => this.runWith(pool, s, ctx, fn, true));
    return this.runWith(pool, got, ctx, fn, false);
  }

  /**
   * Run fn on session s. With calls 'auto' the operation is told (ctx.async) to use the *Async overloads when
   * it does not have the token to itself: another operation is in flight, or one finished synchronously in
   * this same synchronous run (a caller that issued it has not even looked at its result yet: several callers
   * are issuing calls), or it had to wait for a session.
   */
  private runWith<T>(pool: SessionPool, s: Handle, ctx: OpContext, fn: (s: Handle, ctx: OpContext) => Promise<T> | T, waited: boolean): T | Promise<T> {
    const async = this.calls === 'async' || (this.calls === 'auto' && (waited || this.active > 0 || this.burst));
    ctx.async = async;
    this.active++;
    let r: T | Promise<T>;
    try {
      r = fn(s, ctx);
    } catch (e) {
      this.active--;
      throw this.failed(pool, s, ctx, e);
    }
    if (r instanceof Promise) {
      return r.then(
        (v) => {
          this.active--;
          if (async) this.counts.concurrent++;
          else this.counts.alone++;
          pool.release(s);
          return v;
        },
        (e: unknown) => {
          this.active--;
          throw this.failed(pool, s, ctx, e);
        },
      );
    }
    this.active--;
    if (async) this.counts.concurrent++;
    else this.counts.alone++;
    pool.release(s);
    if (!this.burst) {
      // Until the microtasks run, another call means a caller other than this one's. (A reaction on a settled
      // promise, not queueMicrotask, which makes an AsyncResource per call: measured 0.5 us of a 17 us verify.)
      this.burst = true;
      void SETTLED.then(this.burstOver);
    }
    return r;
  }

  /** An operation failed on session s: the error to report, with the session given back (or closed). */
  private failed(pool: SessionPool, s: Handle, ctx: OpContext, e: unknown): HsmError | PurselabError {
    // A call that failed inside the token may leave an operation active on the session (CKR_OPERATION_ACTIVE
    // for the next user): such a session is closed and replaced rather than reused. Our own checks (HsmError,
    // thrown before any token call of the operation) leave the session clean.
    const dead = !(e instanceof HsmError);
    try {
      return this.translate(e, s, ctx);
    } finally {
      if (dead) this.derived.forgetSession(s);
      pool.release(s, dead);
    }
  }

  private pin(): string {
    if (typeof this.options.pin === 'string' && this.options.pin) return this.options.pin;
    const env = this.options.pinEnv ?? DEFAULT_PIN_ENV;
    const pin = process.env[env];
    if (!pin) throw new HsmPinError('HSM_PIN_MISSING', `no user PIN for token '${this.options.tokenLabel}': set ${env}`);
    return pin;
  }

  private findSlot(): Handle {
    const lib = this.lib!;
    const labels: string[] = [];
    let slots: Handle[];
    try {
      slots = lib.C_GetSlotList(true);
    } catch (e) {
      throw new HsmDeviceError(`C_GetSlotList failed: ${ckrOf(e) ?? (e as Error).message}`, ckrOf(e), { cause: e });
    }
    for (const slot of slots) {
      let label: string;
      try {
        label = lib.C_GetTokenInfo(slot).label.trim();
      } catch {
        continue; // a token going away while we look
      }
      if (label === this.options.tokenLabel) return slot;
      if (label) labels.push(label); // SoftHSM2's spare uninitialised slot has an empty label
    }
    throw new HsmTokenNotFoundError(this.options.tokenLabel, labels);
  }

  private loadMechanisms(): void {
    const lib = this.lib!;
    this.mechs = new Map();
    for (const m of lib.C_GetMechanismList(this.slot!)) {
      let flags = 0;
      try {
        flags = lib.C_GetMechanismInfo(this.slot!, m).flags;
      } catch {
        /* listed but no info: treat as present without flags */
      }
      this.mechs.set(m, flags);
    }
  }

  private login(s: Handle): void {
    try {
      this.lib!.C_Login(s, this.P!.CKU_USER, this.pin());
    } catch (e) {
      const ckr = ckrOf(e);
      if (ckr === 'CKR_USER_ALREADY_LOGGED_IN') return;
      if (ckr === 'CKR_PIN_INCORRECT') {
        throw new HsmPinError('HSM_PIN_INCORRECT', `wrong user PIN for token '${this.options.tokenLabel}' (CKR_PIN_INCORRECT)`);
      }
      if (ckr === 'CKR_PIN_LOCKED') throw new HsmPinError('HSM_PIN_LOCKED', `the user PIN of token '${this.options.tokenLabel}' is locked (CKR_PIN_LOCKED)`);
      throw e;
    }
  }

  /** Does single DES really work? SoftHSM2 lists it but, inside Node, needs Node's OpenSSL legacy provider. */
  private probeSingleDes(s: Handle): void {
    const P = this.P!;
    if (!this.mechs.has(P.CKM_DES_ECB) || !this.mechs.has(P.CKM_DES_CBC) || !this.mechs.has(P.CKM_DES3_CBC_ENCRYPT_DATA)) {
      this.singleDes = 'absent';
      return;
    }
    let k: Handle | undefined;
    try {
      const template = [
        { type: P.CKA_CLASS, value: P.CKO_SECRET_KEY },
        { type: P.CKA_KEY_TYPE, value: P.CKK_DES },
        { type: P.CKA_TOKEN, value: false },
        { type: P.CKA_PRIVATE, value: false },
        { type: P.CKA_ENCRYPT, value: true },
      ];
      k = this.lib!.C_GenerateKey(s, { mechanism: P.CKM_DES_KEY_GEN }, template);
      this.lib!.C_EncryptInit(s, { mechanism: P.CKM_DES_ECB }, k);
      this.lib!.C_Encrypt(s, ZERO8, Buffer.alloc(8));
      this.singleDes = 'ok';
    } catch {
      this.singleDes = 'broken';
    } finally {
      if (k) this.keys!.destroy(s, [k]);
    }
  }

  private singleDesHint(): string {
    return opensslLegacyActive()
      ? 'the token lists CKM_DES_ECB but refuses to use it'
      : 'the token lists CKM_DES_ECB but refuses it; SoftHSM2 inside Node uses Node\'s OpenSSL 3, whose single DES is in the legacy provider: run node with --openssl-legacy-provider (NODE_OPTIONS=--openssl-legacy-provider)';
  }

  /** Turn whatever a call threw into a typed error, and note what must be repaired on the next call. */
  private translate(e: unknown, s: Handle | undefined, ctx: OpContext): HsmError | PurselabError {
    if (e instanceof HsmError) return e;
    const ckr = ckrOf(e);
    if (!ckr) {
      if (e instanceof PurselabError) return e;
      return new HsmDeviceError(`${ctx.op}: ${(e as Error)?.message ?? String(e)}`, undefined, { cause: e });
    }
    const { error, repair } = ckrFailure(
      ckr,
      {
        op: ctx.op,
        tokenLabel: this.options.tokenLabel,
        ...(ctx.ref ? { ref: ctx.ref } : {}),
        ...(ctx.mechanism === undefined ? {} : { mechanism: mechanismName(ctx.mechanism) }),
        ...(ctx.unwrap ? { unwrap: true } : {}),
        loggedIn: () => this.sessionLoggedIn(s),
      },
      e,
    );
    if (repair === 'login') this.loggedOut();
    else if (repair === 'keys') {
      this.keys?.clear();
      this.derived.drop();
    } else if (repair === 'sessions') this.sessionsLost();
    else if (repair === 'token') this.tokenLost();
    return error;
  }

  private sessionLoggedIn(s: Handle | undefined): boolean {
    if (!s) return false;
    try {
      const state = this.lib!.C_GetSessionInfo(s).state;
      return state === CKS_RW_USER_FUNCTIONS || state === CKS_RO_USER_FUNCTIONS;
    } catch {
      return false;
    }
  }

  /** Logged out: private object handles and private session objects are gone (PKCS#11 2.40, 5.6 C_Logout). */
  private loggedOut(): void {
    this.needsLogin = true;
    this.keys?.clear();
    this.derived.drop();
  }

  /** Sessions closed underneath us: start a fresh pool (closing a token's last session also logs out). */
  private sessionsLost(): void {
    this.pool?.dispose(new HsmSessionClosedError());
    this.pool = undefined;
    this.loggedOut();
  }

  private tokenLost(): void {
    this.sessionsLost();
    this.slot = undefined;
  }

  private requireMechanism(mech: number, flag: number | undefined, purpose: string): void {
    const flags = this.mechs.get(mech);
    if (flags === undefined) {
      const name = mechanismName(mech);
      throw new HsmMechanismUnsupportedError(name, `token '${this.options.tokenLabel}' has no ${name} (needed for ${purpose})`);
    }
    if (flag !== undefined && flags !== 0 && (flags & flag) === 0) {
      const name = mechanismName(mech);
      throw new HsmMechanismUnsupportedError(name, `token '${this.options.tokenLabel}' has ${name} but not for this use (needed for ${purpose})`);
    }
  }

  // ------------------------------------------------------------------------------------------------------
  // Key material: stored keys and card keys derived inside the token

  private withMaterial<T>(
    spec: ResolvedSpec,
    usage: KeyUsage | undefined,
    op: string,
    fn: (s: Handle, ctx: OpContext, m: Material, stored: TokenKey | undefined, type: SymmetricKeyType) => Promise<T> | T,
  ): T | Promise<T> {
    const ctx = new SpecContext(op, spec);
    return this.run(ctx, (s): T | Promise<T> => {
      if (spec.kind === 'stored') {
        const k = this.keys!.get(s, spec.ref);
        const type = requireSymmetric(k.info, op);
        if (usage) requireUsage(k.info, usage, op);
        const m: Material = type === 'AES-128' ? { kind: 'aes', key: k.handle } : { kind: 'des2', key: k.handle };
        return fn(s, ctx, m, k, type);
      }
      const mk = this.keys!.get(s, spec.master);
      const type = requireSymmetric(mk.info, 'derivation');
      requireUsage(mk.info, 'derive', 'derive card keys');
      const cached = this.derived.lookup(spec);
      if (cached) return this.using(s, cached, () => fn(s, ctx, cached.material, undefined, type));
      return andThen(this.derivedKey(s, ctx, spec, mk, type), (entry) => this.using(s, entry, () => fn(s, ctx, entry.material, undefined, type)));
    });
  }

  /** Run f with a derived key taken into use, and give it back after (synchronously when f is synchronous). */
  private using<T>(s: Handle, entry: DerivedEntry, f: () => T | Promise<T>): T | Promise<T> {
    let r: T | Promise<T>;
    try {
      r = f();
    } catch (e) {
      this.derived.release(s, entry);
      throw e;
    }
    if (r instanceof Promise) return r.finally(() => this.derived.release(s, entry));
    this.derived.release(s, entry);
    return r;
  }

  /** Derive a card key inside the token (synchronously with sync token calls) and cache it. */
  private derivedKey(s: Handle, ctx: OpContext, spec: DerivedSpec, mk: TokenKey, type: SymmetricKeyType): DerivedEntry | Promise<DerivedEntry> {
    const P = this.P!;
    const now = Date.now();
    const blocks = diversificationBlocks(spec.cardId, type);
    const master = this.options.masterCopies === false ? mk.handle : this.keys!.derivationHandle(mk, this.pool?.anchor);
    if (type === 'DES3-2KEY') {
      this.requireMechanism(P.CKM_DES3_CBC_ENCRYPT_DATA, P.CKF_DERIVE, 'deriving 2-key 3DES card keys');
      this.requireSingleDes();
      return andThen(this.deriveOne(s, ctx, master, P.CKM_DES3_CBC_ENCRYPT_DATA, blocks[0]!), (k1) => {
        // (inline callbacks: no named closures per call, see macVerify)
        let k2: Handle | Promise<Handle>;
        try {
          k2 = this.deriveOne(s, ctx, master, P.CKM_DES3_CBC_ENCRYPT_DATA, blocks[1]!);
        } catch (e) {
          this.keys!.destroy(s, [k1]);
          throw e;
        }
        if (!(k2 instanceof Promise)) return this.derived.keep(s, spec, now, [k1, k2], { kind: 'des-halves', k1, k2 });
        return k2.then(
          (h) => this.derived.keep(s, spec, now, [k1, h], { kind: 'des-halves', k1, k2: h }),
          (e: unknown) => {
            this.keys!.destroy(s, [k1]);
            throw e;
          },
        );
      });
    }
    this.requireMechanism(P.CKM_AES_CBC_ENCRYPT_DATA, P.CKF_DERIVE, 'deriving AES card keys');
    return andThen(this.deriveOne(s, ctx, master, P.CKM_AES_CBC_ENCRYPT_DATA, blocks[0]!), (k) => this.derived.keep(s, spec, now, [k], { kind: 'aes', key: k }));
  }

  /** Whether new derived card keys are being kept in the cache (see derived-keys.ts). */
  get keepingDerivedKeys(): boolean {
    return this.derived.keepingNew;
  }

  /** One card-key block derived inside the token (see cardKeyDerivation). */
  private deriveOne(s: Handle, ctx: OpContext, master: Handle, mech: number, block: Buffer): Handle | Promise<Handle> {
    const { mechanism, template } = cardKeyDerivation(this.P!, mech === this.P!.CKM_AES_CBC_ENCRYPT_DATA, block);
    ctx.mechanism = mech;
    return ctx.async ? this.lib!.C_DeriveKeyAsync(s, mechanism, master, template) : this.lib!.C_DeriveKey(s, mechanism, master, template);
  }

  private requireSingleDes(): void {
    if (this.singleDes === 'ok') return;
    const why =
      'a 2-key 3DES card key is derived as two single-DES halves (the token cannot assemble a CKK_DES2 from two derived blocks), so its operations need CKM_DES_ECB / CKM_DES_CBC';
    if (this.singleDes === 'absent') throw new HsmMechanismUnsupportedError('CKM_DES_ECB', `token '${this.options.tokenLabel}' has no CKM_DES_ECB/CKM_DES_CBC: ${why}`);
    throw new HsmMechanismUnsupportedError('CKM_DES_ECB', `${this.singleDesHint()}; ${why}`);
  }
}
