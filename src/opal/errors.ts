// Typed errors of the OPAL virtual-card server. Codes are stable; messages never carry keys, passwords or
// full card numbers (maskCardId).

import { PurselabError } from '../errors.ts';

export type OpalErrorCode =
  | 'OPAL_CARD_NOT_FOUND' // no virtual card with that id (in that BIN partition)
  | 'OPAL_CARD_EXISTS' // a virtual card with that id is already stored
  | 'OPAL_RECORD_TAMPERED' // a stored record failed its HSM integrity check, or its inner fields disagree with its row
  | 'OPAL_CARD_CONFLICT' // the record changed underneath an open session (another OPAL instance wrote it)
  | 'OPAL_CARD_BUSY' // the card stayed locked by another session for longer than the lock timeout
  | 'OPAL_SESSION_CLOSED' // a pseudo-reader session used after close() or after a failed save
  | 'OPAL_CONFIG' // the server configuration is not valid
  | 'OPAL_REGISTRATION' // a registration field is not acceptable
  | 'OPAL_USER_EXISTS' // the user id is taken
  | 'OPAL_LOGIN_FAILED' // wrong user id or password (never says which)
  | 'OPAL_LOCKED' // too many failed logins: locked for a while
  | 'OPAL_PASSWORD_CHANGE_REQUIRED' // first login with the one-time password: change it first
  | 'OPAL_PASSWORD_POLICY' // the new password is not acceptable
  | 'OPAL_SESSION_INVALID' // unknown or expired session token
  | 'OPAL_BIN_UNKNOWN' // no issuer with that BIN on this server
  | 'OPAL_RECREDIT' // a re-credit that is not allowed (not debited, already credited, a claim that does not verify)
  | 'OPAL_RESUME'; // a load that cannot be resumed (not interrupted, no transaction id)

export class OpalError extends PurselabError {
  declare readonly code: OpalErrorCode;
  constructor(code: OpalErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}
