// Typed errors of the host-side purse protocols: a refused command names the device, the command and the SW
// meaning from the applet's own table (docs/purse-applet.md, docs/psam-applet.md).

import type { CommandApdu } from '../apdu/command.ts';
import { swHex } from '../apdu/response.ts';
import { lookupSw } from '../apdu/status-words.ts';
import { IEP_STATUS_WORDS, PSAM_STATUS_WORDS } from '../crypto/purse-apdu.ts';
import { PurselabError } from '../errors.ts';
import type { CardChannel } from '../transport/channel.ts';

export type Device = 'card' | 'psam';

/** The meaning of an SW from the purse's or the PSAM's table, else ISO 7816-4. */
export function swMeaning(device: Device, sw: number): string {
  const hex = swHex(sw);
  const table = device === 'card' ? IEP_STATUS_WORDS : PSAM_STATUS_WORDS;
  const own = table[hex] ?? (hex.startsWith('63C') ? table['63CX']?.replace('X', String(sw & 0x0f)) : undefined);
  return own ?? lookupSw(sw).meaning;
}

/** A purse or PSAM command answered with a status word other than 9000. */
export class CardStatusError extends PurselabError {
  readonly device: Device;
  readonly commandName: string;
  readonly sw: number;
  constructor(device: Device, commandName: string, sw: number) {
    super(device === 'card' ? 'CARD_STATUS' : 'PSAM_STATUS', `${device === 'card' ? 'card' : 'PSAM'} ${commandName}: ${swHex(sw)} ${swMeaning(device, sw)}`);
    this.device = device;
    this.commandName = commandName;
    this.sw = sw;
  }
}

/** A response that does not have the layout the spec gives (wrong length, bad encoding). */
export class ResponseFormatError extends PurselabError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('BAD_RESPONSE', message, options);
  }
}

/** Send one command; 9000 returns the data, anything else is CardStatusError. */
export async function exchange(channel: CardChannel, device: Device, name: string, c: CommandApdu): Promise<Buffer> {
  const r = await channel.transmit(c);
  if (r.sw !== 0x9000) throw new CardStatusError(device, name, r.sw);
  return r.data;
}

/** Decode a response with a spec codec; a wrong length or encoding is a ResponseFormatError naming the command. */
export function decodeResponse<T>(device: Device, name: string, data: Buffer, decode: (b: Uint8Array) => T): T {
  try {
    return decode(data);
  } catch (e) {
    throw new ResponseFormatError(`${device === 'card' ? 'card' : 'PSAM'} ${name}: malformed response (${(e as Error).message})`, { cause: e });
  }
}
