// PC/SC error codes (SCARD_E_* / SCARD_W_*) as the pcsclite binding reports them, mapped to TransportError.
// The binding formats errors as "SCardTransmit error: Card was removed.(0x80100069)".

import { TransportError, type TransportErrorCode } from './errors.ts';

export const SCARD = {
  E_CANCELLED: 0x80100002,
  E_INVALID_HANDLE: 0x80100003,
  E_UNKNOWN_READER: 0x80100009,
  E_TIMEOUT: 0x8010000a,
  E_SHARING_VIOLATION: 0x8010000b,
  E_NO_SMARTCARD: 0x8010000c,
  E_PROTO_MISMATCH: 0x8010000f,
  E_NOT_READY: 0x80100010,
  E_SYSTEM_CANCELLED: 0x80100012,
  E_NOT_TRANSACTED: 0x80100016,
  E_READER_UNAVAILABLE: 0x80100017,
  E_NO_SERVICE: 0x8010001d,
  E_SERVICE_STOPPED: 0x8010001e,
  E_NO_READERS_AVAILABLE: 0x8010002e,
  F_COMM_ERROR: 0x80100013,
  W_UNRESPONSIVE_CARD: 0x80100066,
  W_UNPOWERED_CARD: 0x80100067,
  W_RESET_CARD: 0x80100068,
  W_REMOVED_CARD: 0x80100069,
} as const;

/** The SCARD_* code in a binding error message, if any. */
export function pcscCode(err: unknown): number | undefined {
  const msg = err instanceof Error ? err.message : String(err);
  const m = /\(0x([0-9a-fA-F]{8})\)\s*$/.exec(msg);
  return m ? Number.parseInt(m[1]!, 16) : undefined;
}

/** The readable part of a binding error: "Card was removed." */
export function pcscText(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  return msg.replace(/^SCard\w+ error:\s*/, '').replace(/\s*\(0x[0-9a-fA-F]{8}\)\s*$/, '').replace(/\.$/, '');
}

/** pcscd is not there (never started, stopped, or the socket to it broke: "RPC transport error"). */
export function isServiceGone(code: number | undefined): boolean {
  return code === SCARD.E_NO_SERVICE || code === SCARD.E_SERVICE_STOPPED || code === SCARD.F_COMM_ERROR;
}

/**
 * Map a binding error to a typed TransportError. `op` names the call ("connect", "transmit", ...),
 * `reader` the reader. Ambiguous codes (NOT_TRANSACTED) are resolved by the caller, which knows the
 * reader state; here they become PROTOCOL.
 */
export function mapPcscError(err: unknown, op: string, reader: string): TransportError {
  const code = pcscCode(err);
  const text = pcscText(err);
  const hex = code !== undefined ? ` (0x${code.toString(16).toUpperCase()})` : '';
  const mk = (c: TransportErrorCode, message: string) => new TransportError(c, message, { cause: err });
  switch (code) {
    case SCARD.W_REMOVED_CARD:
      return mk('CARD_REMOVED', `card removed from '${reader}' during ${op}`);
    case SCARD.E_NO_SMARTCARD:
      return op === 'connect'
        ? mk('NO_CARD', `no card in reader '${reader}'`)
        : mk('CARD_REMOVED', `card removed from '${reader}' during ${op}`);
    case SCARD.E_UNKNOWN_READER:
    case SCARD.E_READER_UNAVAILABLE:
      return mk('READER_REMOVED', `reader '${reader}' was removed (unplugged) during ${op}`);
    case SCARD.E_NO_SERVICE:
    case SCARD.E_SERVICE_STOPPED:
    case SCARD.F_COMM_ERROR:
      return mk('PCSC_UNAVAILABLE', `pcscd stopped or is not running (${op} on '${reader}': ${text})`);
    case SCARD.E_TIMEOUT:
      return mk('TIMEOUT', `${op} on '${reader}' timed out in pcscd`);
    case SCARD.E_CANCELLED:
    case SCARD.E_SYSTEM_CANCELLED:
      return mk('CHANNEL_CLOSED', `${op} on '${reader}' was cancelled`);
    case SCARD.E_INVALID_HANDLE:
      return mk('CHANNEL_CLOSED', `the connection to '${reader}' is no longer valid (pcscd restarted?) during ${op}`);
    case SCARD.E_SHARING_VIOLATION:
      return mk('READER_BUSY', `reader '${reader}' is in exclusive use by another application${hex}`);
    case SCARD.W_RESET_CARD:
      return mk('PROTOCOL', `the card in '${reader}' was reset by another application; reset() or reopen the channel${hex}`);
    case SCARD.W_UNRESPONSIVE_CARD:
    case SCARD.W_UNPOWERED_CARD:
      return mk('NO_CARD', `the card in '${reader}' does not answer (${text})${hex}`);
    case SCARD.E_PROTO_MISMATCH:
      return mk('PROTOCOL', `the card in '${reader}' does not support the requested protocol${hex}`);
    default:
      return mk('PROTOCOL', `${op} on '${reader}' failed: ${text}${hex}`);
  }
}
