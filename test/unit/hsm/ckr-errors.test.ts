// The PKCS#11 return values the bridge meets, mapped to the typed error the caller gets and the repair the
// backend makes before its next call (hsm-bridge/pkcs11/ckr-errors.ts), without a token.

import { describe, expect, it } from 'vitest';
import { ckrFailure, type FailedCall } from '../../../hsm-bridge/pkcs11/ckr-errors.ts';

const call = (extra: Partial<FailedCall> = {}): FailedCall => ({ op: 'verify a MAC with conf-aes-mk v1', tokenLabel: 'lab', loggedIn: () => true, ...extra });

describe('ckrFailure', () => {
  it.each([
    ['CKR_USER_NOT_LOGGED_IN', 'HSM_NOT_LOGGED_IN', 'login'],
    ['CKR_SESSION_HANDLE_INVALID', 'HSM_SESSION_CLOSED', 'sessions'],
    ['CKR_SESSION_CLOSED', 'HSM_SESSION_CLOSED', 'sessions'],
    ['CKR_DEVICE_REMOVED', 'HSM_TOKEN_REMOVED', 'token'],
    ['CKR_TOKEN_NOT_PRESENT', 'HSM_TOKEN_REMOVED', 'token'],
    ['CKR_CRYPTOKI_NOT_INITIALIZED', 'HSM_TOKEN_REMOVED', 'token'],
    ['CKR_MECHANISM_INVALID', 'HSM_MECHANISM_UNSUPPORTED', 'none'],
    ['CKR_KEY_FUNCTION_NOT_PERMITTED', 'HSM_KEY_USAGE', 'none'],
    ['CKR_KEY_TYPE_INCONSISTENT', 'HSM_KEY_USAGE', 'none'],
    ['CKR_DATA_LEN_RANGE', 'HSM_BAD_INPUT', 'none'],
    ['CKR_ENCRYPTED_DATA_INVALID', 'HSM_BAD_INPUT', 'none'],
    ['CKR_FUNCTION_FAILED', 'HSM_DEVICE', 'none'],
    ['CKR_GENERAL_ERROR', 'HSM_DEVICE', 'none'],
    ['CKR_PIN_EXPIRED', 'HSM_DEVICE', 'none'],
  ])('%s: %s, repair %s', (ckr, code, repair) => {
    const r = ckrFailure(ckr, call());
    expect(r.error.code).toBe(code);
    expect(r.repair).toBe(repair);
    expect(r.error.message).toContain('verify a MAC with conf-aes-mk v1');
  });

  it('a vanished object handle: logged out when the session is, else the key went away (its label and version named)', () => {
    const out = ckrFailure('CKR_KEY_HANDLE_INVALID', call({ loggedIn: () => false }));
    expect([out.error.code, out.repair]).toEqual(['HSM_NOT_LOGGED_IN', 'login']);
    const gone = ckrFailure('CKR_OBJECT_HANDLE_INVALID', call({ ref: { label: 'conf-aes-mk', version: 1 } }));
    expect([gone.error.code, gone.repair]).toEqual(['HSM_KEY_NOT_FOUND', 'keys']);
    expect(gone.error).toMatchObject({ label: 'conf-aes-mk', version: 1 });
    const noRef = ckrFailure('CKR_OBJECT_HANDLE_INVALID', call());
    expect([noRef.error.code, noRef.repair]).toEqual(['HSM_DEVICE', 'keys']);
  });

  it('an unwrap that fails its integrity check is HSM_UNWRAP_FAILED, whatever the token calls it', () => {
    for (const ckr of ['CKR_GENERAL_ERROR', 'CKR_WRAPPED_KEY_INVALID', 'CKR_ENCRYPTED_DATA_INVALID']) {
      expect(ckrFailure(ckr, call({ unwrap: true })).error.code).toBe('HSM_UNWRAP_FAILED');
    }
  });

  it('names the mechanism the token refused, and keeps the token error as the cause of a device error', () => {
    expect(ckrFailure('CKR_MECHANISM_INVALID', call({ mechanism: 'CKM_AES_CMAC' })).error).toMatchObject({ code: 'HSM_MECHANISM_UNSUPPORTED', mechanism: 'CKM_AES_CMAC' });
    const cause = new Error('CKR_FUNCTION_FAILED:6');
    const r = ckrFailure('CKR_FUNCTION_FAILED', call({ mechanism: 'CKM_DES_CBC' }), cause);
    expect(r.error.message).toContain('(CKM_DES_CBC)');
    expect(r.error.cause).toBe(cause);
  });
});
