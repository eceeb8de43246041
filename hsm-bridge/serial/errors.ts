// Typed errors of the serial/TCP host-command HSM link, and the two-character error codes on the wire.
//
// Every failure a caller of the serial backend can see is one of these PurselabError subclasses, with a
// stable code: TIMEOUT, LINE_DOWN, BAD_LRC, BAD_HEADER, GARBLED (the line) or HSM_ERROR (the HSM answered
// with an error code). Line errors say whether the command may have run at the HSM (`outcomeUnknown`), so a
// caller of a non-idempotent command (generate, import) knows it must check before trying again.

import { PurselabError } from '../../src/errors.ts';
import { HsmError, type HsmErrorCode } from '../errors.ts';

export type SerialHsmErrorCode = 'TIMEOUT' | 'LINE_DOWN' | 'BAD_LRC' | 'BAD_HEADER' | 'GARBLED' | 'HSM_ERROR' | 'SERIAL_USAGE';

export interface LineErrorDetail {
  /** The two-letter command code the error belongs to, when there is one. */
  readonly command?: string;
  /**
   * True when the request reached the line and the HSM may have executed it (no answer, or an answer we could
   * not read). False when the request never left the host, or the HSM said it rejected the frame.
   */
  readonly outcomeUnknown?: boolean;
  readonly cause?: unknown;
}

export class SerialHsmError extends PurselabError {
  declare readonly code: SerialHsmErrorCode;
  readonly command: string | undefined;
  readonly outcomeUnknown: boolean;
  constructor(code: SerialHsmErrorCode, message: string, detail: LineErrorDetail = {}) {
    super(code, message, detail.cause === undefined ? undefined : { cause: detail.cause });
    this.command = detail.command;
    this.outcomeUnknown = detail.outcomeUnknown ?? false;
  }
}

/** No (complete) response within the command's timeout. */
export class HsmTimeoutError extends SerialHsmError {
  constructor(message: string, detail: LineErrorDetail = {}) {
    super('TIMEOUT', message, detail);
  }
}

/** The serial port or TCP connection is closed, failed or cannot be opened. */
export class HsmLineDownError extends SerialHsmError {
  constructor(message: string, detail: LineErrorDetail = {}) {
    super('LINE_DOWN', message, detail);
  }
}

/** A frame arrived whose LRC does not match (or the HSM reported error 90: it saw a bad LRC/parity on our request). */
export class HsmBadLrcError extends SerialHsmError {
  constructor(message: string, detail: LineErrorDetail = {}) {
    super('BAD_LRC', message, detail);
  }
}

/** The response header does not echo the request header (or the HSM reported error 51, invalid message header). */
export class HsmBadHeaderError extends SerialHsmError {
  constructor(message: string, detail: LineErrorDetail = {}) {
    super('BAD_HEADER', message, detail);
  }
}

/** Bytes that are not a well-formed response: noise, a truncated frame, non-ASCII, wrong response code, bad fields. */
export class HsmGarbledError extends SerialHsmError {
  constructor(message: string, detail: LineErrorDetail = {}) {
    super('GARBLED', message, detail);
  }
}

/** The HSM answered with an error code other than 00 (and other than 01 where 01 means "verification failed"). */
export class HsmCommandError extends SerialHsmError {
  /** The two-character error code from the response, e.g. "15". */
  readonly hsmCode: string;
  /** Its meaning, from the payShield table (or ours for purselab codes). */
  readonly meaning: string;
  /** For purselab commands: the error code the simulator's backend raised (e.g. a PurselabError code), if it said. */
  readonly remoteCode: string | undefined;
  constructor(command: string, hsmCode: string, remote?: { code: string; message: string }) {
    const meaning = errorMeaning(hsmCode);
    const tail = remote ? `: ${remote.code}: ${remote.message}` : '';
    super('HSM_ERROR', `HSM error ${hsmCode} (${meaning}) on command ${command}${tail}`, { command });
    this.hsmCode = hsmCode;
    this.meaning = meaning;
    this.remoteCode = remote?.code;
  }
}

/**
 * The HSM refused a purselab command for a reason the `Hsm` interface names (no such key, bad input, wrong key
 * usage...): re-raised with the interface's own code, so the serial backend fails exactly like the software
 * backend behind the simulator. The wire error code and its meaning are kept alongside.
 */
export class HsmRemoteError extends HsmError {
  readonly hsmCode: string;
  readonly meaning: string;
  readonly command: string;
  constructor(code: HsmErrorCode, message: string, command: string, hsmCode: string) {
    super(code, message);
    this.command = command;
    this.hsmCode = hsmCode;
    this.meaning = errorMeaning(hsmCode);
  }
}

/** Interface error codes carried across the line, and the two-character wire code each one travels as. */
export const WIRE_CODE_FOR: Readonly<Partial<Record<HsmErrorCode, string>>> = {
  HSM_BAD_INPUT: '15',
  HSM_KEY_TYPE: '28',
  HSM_KEY_USAGE: '29',
  HSM_KEY_NOT_FOUND: 'P0',
  HSM_KEY_EXISTS: 'P1',
  HSM_UNWRAP_FAILED: 'P2',
  HSM_MECHANISM_UNSUPPORTED: 'P3',
  HSM_RECORD_INTEGRITY: 'P4',
};

export function isRelayedCode(code: string): code is HsmErrorCode {
  return Object.prototype.hasOwnProperty.call(WIRE_CODE_FOR, code);
}

/** Bad arguments to the serial backend itself (never reaches the line). */
export class SerialUsageError extends SerialHsmError {
  constructor(message: string) {
    super('SERIAL_USAGE', message);
  }
}

/**
 * Two-character error codes. The numeric ones are payShield's own meanings (the subset this stack produces or
 * understands); the ones starting with 'P' are purselab's and are only ever sent in answer to purselab commands.
 */
export const ERROR_CODES: Readonly<Record<string, string>> = {
  '00': 'no error',
  '01': 'verification failure',
  '02': 'key inappropriate length for algorithm',
  '04': 'invalid key type code',
  '05': 'invalid key length flag',
  '10': 'source key parity error',
  '15': 'invalid input data (invalid format, invalid characters, or not enough data provided)',
  '17': 'HSM not authorized, or operation prohibited by security settings',
  '26': 'invalid key scheme',
  '27': 'incompatible key length',
  '28': 'invalid key type',
  '29': 'key function not permitted',
  '41': 'internal hardware/software error',
  '43': 'RSA key generation failure',
  '51': 'invalid message header',
  '68': 'command has been disabled',
  '76': 'RSA public key length error or RSA encrypted data length error',
  '80': 'data length error',
  '90': 'data parity error in the request message received by the HSM',
  // purselab codes (answers to purselab commands only)
  P0: 'purselab: no key with that label and version',
  P1: 'purselab: a key with that label and version already exists',
  P2: 'purselab: unwrapping the imported key failed',
  P3: 'purselab: mechanism not supported by the HSM',
  P4: 'purselab: sealed record failed its integrity check',
};

export function errorMeaning(code: string): string {
  return ERROR_CODES[code] ?? 'unknown error code';
}
