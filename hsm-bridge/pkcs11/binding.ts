// pkcs11js, loaded on first use (the native addon is not touched unless a PKCS#11 backend is opened), the
// process-wide registry of loaded modules (a module is C_Initialize'd once per process, whoever uses it), and
// names for CKR_/CKM_ values, and the shapes of its arguments and attribute values (params, ulong).

import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { HsmModuleLoadError, HsmModuleNotFoundError } from '../errors.ts';

export type Pkcs11Js = typeof import('pkcs11js');
export type PKCS11 = import('pkcs11js').PKCS11;
export type Handle = Buffer;

let binding: Pkcs11Js | undefined;

export function pkcs11js(): Pkcs11Js {
  binding ??= createRequire(import.meta.url)('pkcs11js') as Pkcs11Js;
  return binding;
}

let ckrNames: Map<number, string> | undefined;
let ckmNames: Map<number, string> | undefined;

function namesOf(prefix: string): Map<number, string> {
  const m = new Map<number, string>();
  for (const [k, v] of Object.entries(pkcs11js())) {
    if (k.startsWith(prefix) && typeof v === 'number' && !m.has(v)) m.set(v, k);
  }
  return m;
}

export function ckrName(code: number): string {
  ckrNames ??= namesOf('CKR_');
  return ckrNames.get(code) ?? `CKR_0x${code.toString(16).padStart(8, '0')}`;
}

export function mechanismName(mech: number): string {
  ckmNames ??= namesOf('CKM_');
  return ckmNames.get(mech) ?? `CKM_0x${mech.toString(16).padStart(8, '0')}`;
}

/** The CKR_ name of a pkcs11js error, or undefined for anything else. */
export function ckrOf(e: unknown): string | undefined {
  if (e instanceof Error && e.name === 'Pkcs11Error') {
    const msg = e.message;
    return /^CKR_[A-Z0-9_]+$/.test(msg) ? msg : ckrName((e as { code?: number }).code ?? 0);
  }
  return undefined;
}

interface LoadedModule {
  readonly lib: PKCS11;
  refs: number;
}

const loaded = new Map<string, LoadedModule>();

/**
 * Load and initialise a PKCS#11 module, or share the one this process already has. Every acquireModule needs
 * a releaseModule; the last release finalises and unloads it.
 */
export function acquireModule(path: string): PKCS11 {
  const have = loaded.get(path);
  if (have) {
    have.refs++;
    return have.lib;
  }
  if (!existsSync(path)) throw new HsmModuleNotFoundError(path);
  const P = pkcs11js();
  const lib = new P.PKCS11();
  try {
    lib.load(path);
  } catch (e) {
    throw new HsmModuleLoadError(path, (e as Error).message, { cause: e });
  }
  try {
    // OS locking: the pool runs calls from libuv's worker threads.
    lib.C_Initialize({ flags: P.CKF_OS_LOCKING_OK });
  } catch (e) {
    if (ckrOf(e) !== 'CKR_CRYPTOKI_ALREADY_INITIALIZED') {
      try {
        lib.close();
      } catch {
        /* already failing */
      }
      throw new HsmModuleLoadError(path, `C_Initialize failed: ${ckrOf(e) ?? (e as Error).message}`, { cause: e });
    }
  }
  loaded.set(path, { lib, refs: 1 });
  return lib;
}

/** Whether this process has the module loaded (someone acquired it and has not released it). */
export function moduleLoaded(path: string): boolean {
  return loaded.has(path);
}

export function releaseModule(path: string): void {
  const have = loaded.get(path);
  if (!have) return;
  if (--have.refs > 0) return;
  loaded.delete(path);
  try {
    have.lib.C_Finalize();
  } catch {
    /* finalising a module that is going away anyway */
  }
  try {
    have.lib.close();
  } catch {
    /* ditto */
  }
}

/** Mechanism parameter objects (pkcs11js's IParams subtypes are not exported one by one). */
export const params = (p: { type: number } & Record<string, unknown>): import('pkcs11js').IParams => p;

/** CK_ULONG attribute values come back as little-endian machine words. */
export function ulong(buf: Buffer | undefined): number {
  if (!buf || buf.length === 0) return 0;
  if (buf.length >= 8) return Number(buf.readBigUInt64LE(0));
  return buf.readUInt32LE(0);
}

/** Whether this process's OpenSSL has the legacy provider (single DES), which SoftHSM2 uses when loaded into Node. */
export function opensslLegacyActive(): boolean {
  const flag = '--openssl-legacy-provider';
  return process.execArgv.includes(flag) || (process.env.NODE_OPTIONS ?? '').split(/\s+/).includes(flag);
}
