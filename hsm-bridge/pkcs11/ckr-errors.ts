// What a PKCS#11 return value (CKR_*) from a failed token call means to the bridge: the typed error the
// caller gets (hsm-bridge/errors.ts), and what the backend must repair before its NEXT call (log in again,
// read its keys again, open new sessions, look for the token again). A pure mapping: pkcs11-hsm.ts applies
// the repair; nothing here touches the token. docs/hsm-bridge.md, "Faults".

import {
  HsmBadInputError,
  HsmDeviceError,
  HsmError,
  HsmKeyNotFoundError,
  HsmKeyUsageError,
  HsmMechanismUnsupportedError,
  HsmNotLoggedInError,
  HsmSessionClosedError,
  HsmTokenRemovedError,
  HsmUnwrapError,
} from '../errors.ts';
import type { KeyRef } from '../hsm.ts';

/**
 * What the backend repairs after the failure. 'login': log in again (private handles and session objects are
 * gone); 'keys': read the stored keys again (an object went away while still logged in); 'sessions': a fresh
 * session pool and a new login; 'token': also look for the token's slot again.
 */
export type CkrRepair = 'none' | 'login' | 'keys' | 'sessions' | 'token';

/** The failed operation, as far as its error message and type need it. */
export interface FailedCall {
  /** 'verify a MAC with ...': the start of the message. */
  readonly op: string;
  readonly tokenLabel: string;
  /** The key the operation named (for HSM_KEY_NOT_FOUND). */
  readonly ref?: KeyRef;
  /** The mechanism of the call that failed, by name (CKM_...). */
  readonly mechanism?: string;
  /** The call was an unwrap (an import under a KEK). */
  readonly unwrap?: boolean;
  /** Whether the session is still logged in (asked only for a vanished object handle). */
  readonly loggedIn: () => boolean;
}

/** The typed error and the repair for a CKR_* name. */
export function ckrFailure(ckr: string, call: FailedCall, cause?: unknown): { error: HsmError; repair: CkrRepair } {
  const { op, mechanism: mech } = call;
  switch (ckr) {
    case 'CKR_USER_NOT_LOGGED_IN':
      return { error: new HsmNotLoggedInError(`${op}: the token is not logged in (CKR_USER_NOT_LOGGED_IN); the next call logs in again`), repair: 'login' };
    case 'CKR_KEY_HANDLE_INVALID':
    case 'CKR_OBJECT_HANDLE_INVALID':
      if (!call.loggedIn()) return { error: new HsmNotLoggedInError(`${op}: the token was logged out (${ckr}); the next call logs in again`), repair: 'login' };
      return {
        error: call.ref ? new HsmKeyNotFoundError(call.ref.label, call.ref.version, `token '${call.tokenLabel}' (object went away: ${ckr})`) : new HsmDeviceError(`${op}: ${ckr}`, ckr),
        repair: 'keys',
      };
    case 'CKR_SESSION_HANDLE_INVALID':
    case 'CKR_SESSION_CLOSED':
      return { error: new HsmSessionClosedError(`${op}: the token session was closed underneath the bridge (${ckr}); the next call opens new sessions`), repair: 'sessions' };
    case 'CKR_DEVICE_REMOVED':
    case 'CKR_TOKEN_NOT_PRESENT':
    case 'CKR_TOKEN_NOT_RECOGNIZED':
    case 'CKR_SLOT_ID_INVALID':
    case 'CKR_DEVICE_ERROR':
    case 'CKR_CRYPTOKI_NOT_INITIALIZED':
      return { error: new HsmTokenRemovedError(`${op}: token '${call.tokenLabel}' went away (${ckr}); the next call looks for it again`), repair: 'token' };
    case 'CKR_MECHANISM_INVALID':
    case 'CKR_MECHANISM_PARAM_INVALID':
      return { error: new HsmMechanismUnsupportedError(mech ?? 'unknown mechanism', `${op}: the token refuses ${mech ?? 'the mechanism'} (${ckr})`), repair: 'none' };
    case 'CKR_KEY_FUNCTION_NOT_PERMITTED':
    case 'CKR_KEY_TYPE_INCONSISTENT':
    case 'CKR_KEY_UNEXTRACTABLE':
      return { error: new HsmKeyUsageError(`${op}: the token does not allow ${mech ?? 'this mechanism'} with this key (${ckr})`), repair: 'none' };
    case 'CKR_WRAPPED_KEY_INVALID':
    case 'CKR_WRAPPED_KEY_LEN_RANGE':
    case 'CKR_ENCRYPTED_DATA_INVALID':
    case 'CKR_ENCRYPTED_DATA_LEN_RANGE':
    case 'CKR_FUNCTION_FAILED':
    case 'CKR_GENERAL_ERROR':
      // SoftHSM2 answers an AES key wrap whose integrity check fails with CKR_GENERAL_ERROR.
      if (call.unwrap) return { error: new HsmUnwrapError(`${op}: the key did not unwrap under the KEK (${ckr}: wrong KEK or corrupt blob)`), repair: 'none' };
      if (ckr.startsWith('CKR_FUNCTION') || ckr.startsWith('CKR_GENERAL')) return { error: new HsmDeviceError(`${op}: ${ckr}${mech ? ` (${mech})` : ''}`, ckr, { cause }), repair: 'none' };
      return { error: new HsmBadInputError(`${op}: ${ckr}`), repair: 'none' };
    case 'CKR_DATA_LEN_RANGE':
    case 'CKR_DATA_INVALID':
      return { error: new HsmBadInputError(`${op}: the token rejects the data (${ckr})`), repair: 'none' };
    default:
      return { error: new HsmDeviceError(`${op}: ${ckr}${mech ? ` (${mech})` : ''}`, ckr, { cause }), repair: 'none' };
  }
}
