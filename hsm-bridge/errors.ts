// Typed errors of the HSM interface, shared by every backend (software, PKCS#11; the serial backend adds its
// line errors in serial/errors.ts). Each carries a stable code; the conformance suite compares codes across
// backends, so the same fault gives the same code whichever backend raised it. Messages never carry key
// material, PINs or full card ids.

import { PurselabError } from '../src/errors.ts';

export type HsmErrorCode =
  // interface-level (every backend)
  | 'HSM_NOT_OPEN' // an operation before open() or after close()
  | 'HSM_BAD_INPUT' // a malformed argument: label, version, IV or data length, card id, MAC length
  | 'HSM_KEY_NOT_FOUND' // no key with that label and version
  | 'HSM_KEY_EXISTS' // generate/import onto a label and version that is taken
  | 'HSM_KEY_USAGE' // the key is not allowed to do this (its usage, or the token attribute behind it)
  | 'HSM_KEY_TYPE' // the key's type does not fit the algorithm (e.g. an AES key for ISO9797-1-ALG3)
  | 'HSM_UNWRAP_FAILED' // an imported key did not unwrap under the KEK (wrong KEK, corrupt blob)
  | 'HSM_MECHANISM_UNSUPPORTED' // the device lacks a mechanism the operation needs (named in the error)
  | 'HSM_RECORD_INTEGRITY' // a sealed record failed its MAC check (tampered, wrong card, wrong key)
  // software backend
  | 'HSM_STORE_MISSING' // the key-store file does not exist (and create was not asked for)
  | 'HSM_STORE_CORRUPT' // the key-store file is not a purselab key store
  | 'HSM_STORE_PASSPHRASE' // the master passphrase does not open the key store
  | 'HSM_MASTER_MISSING' // no master passphrase: env var unset and no terminal to prompt on
  | 'HSM_STORE_LOCKED' // another process holds the key-store lock for too long
  // PKCS#11 backend
  | 'HSM_MODULE_NOT_FOUND' // the PKCS#11 module file does not exist
  | 'HSM_MODULE_LOAD' // the module exists but cannot be loaded or initialised
  | 'HSM_TOKEN_NOT_FOUND' // no token with the configured label in any slot
  | 'HSM_PIN_MISSING' // no user PIN configured (env var unset)
  | 'HSM_PIN_INCORRECT' // CKR_PIN_INCORRECT
  | 'HSM_PIN_LOCKED' // CKR_PIN_LOCKED
  | 'HSM_NOT_LOGGED_IN' // the token session is not logged in (e.g. logged out underneath us)
  | 'HSM_SESSION_CLOSED' // the session handle is gone (closed by someone else, device reset)
  | 'HSM_TOKEN_REMOVED' // the token or device went away
  | 'HSM_DEVICE'; // any other device error (the CKR_ name is in the message)

export class HsmError extends PurselabError {
  declare readonly code: HsmErrorCode;
  constructor(code: HsmErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

export class HsmNotOpenError extends HsmError {
  constructor(backend: string) {
    super('HSM_NOT_OPEN', `${backend} HSM is not open (call open() first)`);
  }
}

export class HsmBadInputError extends HsmError {
  constructor(message: string) {
    super('HSM_BAD_INPUT', message);
  }
}

export class HsmKeyNotFoundError extends HsmError {
  readonly label: string;
  readonly version: number;
  constructor(label: string, version: number, where = '') {
    super('HSM_KEY_NOT_FOUND', `no key '${label}' version ${version}${where ? ` in ${where}` : ''}`);
    this.label = label;
    this.version = version;
  }
}

export class HsmKeyExistsError extends HsmError {
  constructor(label: string, version: number) {
    super('HSM_KEY_EXISTS', `key '${label}' version ${version} already exists`);
  }
}

export class HsmKeyUsageError extends HsmError {
  constructor(message: string) {
    super('HSM_KEY_USAGE', message);
  }
}

export class HsmKeyTypeError extends HsmError {
  constructor(message: string) {
    super('HSM_KEY_TYPE', message);
  }
}

export class HsmUnwrapError extends HsmError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('HSM_UNWRAP_FAILED', message, options);
  }
}

/** The device has no mechanism for this operation; `mechanism` names it (e.g. "CKM_DES_ECB"). */
export class HsmMechanismUnsupportedError extends HsmError {
  readonly mechanism: string;
  constructor(mechanism: string, message: string) {
    super('HSM_MECHANISM_UNSUPPORTED', message);
    this.mechanism = mechanism;
  }
}

export class HsmRecordIntegrityError extends HsmError {
  constructor(message: string) {
    super('HSM_RECORD_INTEGRITY', message);
  }
}

/** The key store file: missing, corrupt, wrong passphrase, no passphrase, or locked. */
export class HsmStoreError extends HsmError {
  readonly path: string;
  constructor(
    code: 'HSM_STORE_MISSING' | 'HSM_STORE_CORRUPT' | 'HSM_STORE_PASSPHRASE' | 'HSM_MASTER_MISSING' | 'HSM_STORE_LOCKED',
    path: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
    this.path = path;
  }
}

export class HsmModuleNotFoundError extends HsmError {
  readonly modulePath: string;
  constructor(modulePath: string) {
    super('HSM_MODULE_NOT_FOUND', `PKCS#11 module not found: ${modulePath}`);
    this.modulePath = modulePath;
  }
}

export class HsmModuleLoadError extends HsmError {
  constructor(modulePath: string, reason: string, options?: { cause?: unknown }) {
    super('HSM_MODULE_LOAD', `cannot load PKCS#11 module ${modulePath}: ${reason}`, options);
  }
}

export class HsmTokenNotFoundError extends HsmError {
  constructor(label: string, available: readonly string[]) {
    super(
      'HSM_TOKEN_NOT_FOUND',
      `no token labelled '${label}' (tokens present: ${available.length ? available.map((l) => `'${l}'`).join(', ') : 'none'})`,
    );
  }
}

export class HsmPinError extends HsmError {
  constructor(code: 'HSM_PIN_MISSING' | 'HSM_PIN_INCORRECT' | 'HSM_PIN_LOCKED', message: string) {
    super(code, message);
  }
}

export class HsmNotLoggedInError extends HsmError {
  constructor(message = 'the token session is not logged in (logged out underneath the bridge); the next call logs in again') {
    super('HSM_NOT_LOGGED_IN', message);
  }
}

export class HsmSessionClosedError extends HsmError {
  constructor(message = 'the token session was closed underneath the bridge; the next call opens a new one') {
    super('HSM_SESSION_CLOSED', message);
  }
}

export class HsmTokenRemovedError extends HsmError {
  constructor(message = 'the token was removed or the device went away; the next call looks for it again') {
    super('HSM_TOKEN_REMOVED', message);
  }
}

/** Any other device failure; `ckr` is the PKCS#11 return value name when there is one. */
export class HsmDeviceError extends HsmError {
  readonly ckr: string | undefined;
  constructor(message: string, ckr?: string, options?: { cause?: unknown }) {
    super('HSM_DEVICE', message, options);
    this.ckr = ckr;
  }
}
