// Status words the card OS and applets answer with, and the exceptions that carry them (Java Card style).

import { PurselabError } from '../../src/errors.ts';

/** ISO/IEC 7816-4 status words used by the card OS (names follow javacard.framework.ISO7816). */
export const SW = {
  NO_ERROR: 0x9000,
  BYTES_REMAINING_00: 0x6100,
  WRONG_LENGTH: 0x6700,
  LOGICAL_CHANNEL_NOT_SUPPORTED: 0x6881,
  LAST_COMMAND_EXPECTED: 0x6883,
  COMMAND_CHAINING_NOT_SUPPORTED: 0x6884,
  SECURITY_STATUS_NOT_SATISFIED: 0x6982,
  FILE_INVALID: 0x6983,
  DATA_INVALID: 0x6984,
  CONDITIONS_NOT_SATISFIED: 0x6985,
  COMMAND_NOT_ALLOWED: 0x6986,
  APPLET_SELECT_FAILED: 0x6999,
  WRONG_DATA: 0x6a80,
  FUNC_NOT_SUPPORTED: 0x6a81,
  FILE_NOT_FOUND: 0x6a82,
  RECORD_NOT_FOUND: 0x6a83,
  FILE_FULL: 0x6a84,
  INCORRECT_P1P2: 0x6a86,
  REFERENCED_DATA_NOT_FOUND: 0x6a88,
  WRONG_P1P2: 0x6b00,
  CORRECT_LENGTH_00: 0x6c00,
  INS_NOT_SUPPORTED: 0x6d00,
  CLA_NOT_SUPPORTED: 0x6e00,
  UNKNOWN: 0x6f00,
} as const;

/** True for a status word an applet may answer with: 62xx-6Fxx or 90xx-9Fxx (ISO 7816-4 5.6). */
export function isValidStatusWord(sw: unknown): sw is number {
  if (typeof sw !== 'number' || !Number.isInteger(sw)) return false;
  const hi = sw >> 8;
  return sw >= 0 && sw <= 0xffff && ((hi >= 0x62 && hi <= 0x6f) || (hi >= 0x90 && hi <= 0x9f));
}

/**
 * Thrown by an applet to end the command with a status word (javacard.framework.ISOException).
 * Any response data the applet had set is discarded; the OS answers the SW alone.
 *
 * It carries no stack trace: it is the normal way an applet refuses a command (a status word, not a
 * bug), and capturing a trace would cost more than the whole command (about 10 us). Java Card's
 * ISOException is a preallocated system instance for the same reason.
 */
export class IsoException extends Error {
  readonly sw: number;
  constructor(sw: number, message?: string) {
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    try {
      super(message ?? `SW ${sw.toString(16).toUpperCase().padStart(4, '0')}`);
    } finally {
      Error.stackTraceLimit = limit;
    }
    this.sw = sw;
    this.name = 'IsoException';
  }
  /** `IsoException.throwIt(0x6A86)`, as in Java Card. */
  static throwIt(sw: number): never {
    throw new IsoException(sw);
  }
}

/** Reason codes of javacard.framework.TransactionException. */
export const TransactionReason = {
  IN_PROGRESS: 1,
  NOT_IN_PROGRESS: 2,
  BUFFER_FULL: 3,
  INTERNAL_FAILURE: 4,
} as const;
export type TransactionReasonCode = (typeof TransactionReason)[keyof typeof TransactionReason];

/** Misuse of the transaction API (nested begin, commit without begin). Uncaught, the OS answers 6F00. */
export class TransactionException extends Error {
  readonly reason: TransactionReasonCode;
  constructor(reason: TransactionReasonCode, message: string) {
    super(message);
    this.reason = reason;
    this.name = 'TransactionException';
  }
}

/** Host-side misuse of the emulator API (bad AID, duplicate install, unknown applet type...). */
export class CardOsError extends PurselabError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('CARD_OS', message, options);
  }
}

/**
 * Thrown inside the card when the power-loss switch fires. It unwinds the applet; even if an applet
 * catches it, the card is already off and refuses every further persistent write.
 */
export class PowerLostSignal extends Error {
  constructor() {
    super('card power lost (power-loss switch)');
    this.name = 'PowerLostSignal';
  }
}
