// One way to open a card channel from a string the user typed:
//   "emu:PATH"        an in-process emulated card loaded from a card image (no pcscd)
//   "pcsc:NAME"       a PC/SC reader (explicit prefix, for reader names that start with "emu:")
//   "NAME"            a PC/SC reader: exact name, or a unique substring of one ("PCD 00 01")

import type { CardChannel } from './channel.ts';
import { TransportError } from './errors.ts';

export interface OpenChannelOptions {
  /** Timeout of every call on the channel, and of opening it (ms). */
  timeoutMs?: number;
  /** PC/SC share mode (default 'shared'); ignored for emulated cards. */
  shareMode?: 'shared' | 'exclusive';
}

export async function openChannel(
  spec: string,
  options?: { timeoutMs?: number; shareMode?: 'shared' | 'exclusive' },
): Promise<CardChannel> {
  const s = spec.trim();
  if (s.startsWith('emu:')) {
    const path = s.slice(4);
    if (!path) throw new TransportError('NO_SUCH_READER', "'emu:' needs a card image path, e.g. emu:card.img");
    // Loaded lazily: PC/SC users do not load the card OS, emulator users do not load pcsclite.
    const { openEmulatorImage } = await import('./emulator-channel.ts');
    return openEmulatorImage(path, options?.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {});
  }
  const name = s.startsWith('pcsc:') ? s.slice(5) : s;
  const { openPcscChannel } = await import('./pcsc.ts');
  const o: { timeoutMs?: number; shareMode?: 'shared' | 'exclusive' } = {};
  if (options?.timeoutMs !== undefined) o.timeoutMs = options.timeoutMs;
  if (options?.shareMode !== undefined) o.shareMode = options.shareMode;
  return openPcscChannel(name, o);
}
