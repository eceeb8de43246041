// Typed transport errors: what went wrong between host and card, never a hang or a stack trace.

import { PurselabError } from '../errors.ts';

export type TransportErrorCode =
  | 'PCSC_UNAVAILABLE' // the pcsclite binding or pcscd is missing / not running
  | 'NO_SUCH_READER'
  | 'NO_CARD'
  | 'CARD_REMOVED' // card pulled out (or reader unplugged) during or between commands
  | 'READER_REMOVED'
  | 'READER_BUSY' // another application holds the reader exclusively (SCARD_E_SHARING_VIOLATION)
  | 'TIMEOUT'
  | 'CHANNEL_CLOSED'
  | 'PROTOCOL'; // the card answered something the ISO exchange cannot follow

export class TransportError extends PurselabError {
  declare readonly code: TransportErrorCode;
  constructor(code: TransportErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}
