// The one host-side card interface: every protocol in src/terminal speaks APDUs through a CardChannel,
// whether the card sits in a PC/SC reader or in the in-process emulator.

import type { CommandApdu } from '../apdu/command.ts';
import type { ResponseApdu } from '../apdu/response.ts';

export type CardProtocol = 'T=0' | 'T=1' | 'RAW';

export interface TransmitOptions {
  /** Per-call timeout in milliseconds (default: the channel's). */
  timeoutMs?: number;
  /** Send long data as extended-length APDUs instead of command chaining (default false: chain). */
  extended?: boolean;
}

export interface CardChannel {
  /** Reader name (PC/SC) or a descriptive name (emulator). */
  readonly readerName: string;
  /** Answer-to-reset of the card as last powered/reset. */
  readonly atr: Buffer;
  readonly protocol: CardProtocol;
  /**
   * Send one command with ISO 7816-4 exchange rules applied by the channel: SW 61xx is followed by
   * GET RESPONSE until all data is collected, SW 6Cxx re-issues the command with the right Le, and data
   * longer than 255 bytes is sent by command chaining (or extended length when asked).
   */
  transmit(command: CommandApdu, options?: TransmitOptions): Promise<ResponseApdu>;
  /** One raw exchange: bytes out, bytes back (data + SW), with no ISO handling. */
  transmitRaw(bytes: Uint8Array, options?: { timeoutMs?: number }): Promise<Buffer>;
  /** Reset the card (warm by default) and return the new ATR. */
  reset(options?: { cold?: boolean }): Promise<Buffer>;
  /** Release the card; the channel cannot be used afterwards. Idempotent. */
  close(): Promise<void>;
}
