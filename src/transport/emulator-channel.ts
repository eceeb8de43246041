// CardChannel over an in-process SimulatedCard (no pcscd): the ISO exchange rules (61xx, 6Cxx, chaining) come
// from isoTransmit exactly as for PC/SC, so host code runs unchanged against the emulator.

import { existsSync } from 'node:fs';
import type { CommandApdu } from '../apdu/command.ts';
import type { ResponseApdu } from '../apdu/response.ts';
import { SimulatedCard } from '../../card-applet-sim/os/card.ts';
import { loadCardImage, saveCardImage } from '../../card-applet-sim/os/image.ts';
import type { AppletTypeRegistry } from '../../card-applet-sim/os/registry.ts';
import '../../card-applet-sim/applets/index.ts'; // registers the built-in applet types for image loading
import type { CardChannel, CardProtocol, TransmitOptions } from './channel.ts';
import { TransportError } from './errors.ts';
import { isoTransmit, type RawExchange } from './iso-exchange.ts';

export interface EmulatorChannelOptions {
  /** Name reported as readerName (default "purselab emulator"). */
  readerName?: string;
  /** Accepted for symmetry with PC/SC channels; the emulator answers synchronously, so nothing can time out. */
  timeoutMs?: number;
  /** Called once by close() (openEmulatorImage uses it to save the image). */
  onClose?: (card: SimulatedCard) => void | Promise<void>;
}

export class EmulatorChannel implements CardChannel {
  readonly card: SimulatedCard;
  readonly readerName: string;
  private closed = false;
  private busy = false;
  private readonly waiters: (() => void)[] = [];
  private readonly onClose: ((card: SimulatedCard) => void | Promise<void>) | undefined;
  private readonly raw: RawExchange;

  constructor(card: SimulatedCard, options: EmulatorChannelOptions = {}) {
    this.card = card;
    this.readerName = options.readerName ?? 'purselab emulator';
    this.onClose = options.onClose;
    if (!card.isPowered) card.powerOn();
    this.raw = (bytes) => Promise.resolve(this.exchange(bytes));
  }

  get atr(): Buffer {
    return this.card.atr;
  }
  get protocol(): CardProtocol {
    return this.card.protocol;
  }
  get isClosed(): boolean {
    return this.closed;
  }

  /** One raw exchange with the card; a card without power (power-loss switch, powerOff) is CARD_REMOVED. */
  private exchange(bytes: Uint8Array): Buffer {
    if (this.closed) throw new TransportError('CHANNEL_CLOSED', `${this.readerName}: the channel is closed`);
    const r = this.card.transmit(bytes);
    if (r.length < 2) {
      throw new TransportError(
        'CARD_REMOVED',
        `${this.readerName}: the emulated card has no power${this.card.powerLossCount > 0 ? ' (power-loss switch fired)' : ''}; reset the channel to power it up`,
      );
    }
    return r;
  }

  async transmit(command: CommandApdu, options: TransmitOptions = {}): Promise<ResponseApdu> {
    if (this.closed) throw new TransportError('CHANNEL_CLOSED', `${this.readerName}: the channel is closed`);
    if (this.busy) await new Promise<void>((resolve) => this.waiters.push(resolve));
    this.busy = true;
    try {
      return await isoTransmit(this.raw, command, options);
    } finally {
      this.release();
    }
  }

  async transmitRaw(bytes: Uint8Array): Promise<Buffer> {
    if (this.busy) await new Promise<void>((resolve) => this.waiters.push(resolve));
    this.busy = true;
    try {
      return this.exchange(bytes);
    } finally {
      this.release();
    }
  }

  /** Hand the channel to the next waiting call, if any (keeps multi-APDU exchanges from interleaving). */
  private release(): void {
    const next = this.waiters.shift();
    if (next) next();
    else this.busy = false;
  }

  /** Power the card up again (cold) or reset it (warm); both bring back a card that lost power. */
  async reset(options: { cold?: boolean } = {}): Promise<Buffer> {
    if (this.closed) throw new TransportError('CHANNEL_CLOSED', `${this.readerName}: the channel is closed`);
    return options.cold ? this.card.powerOn() : this.card.reset();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const w of this.waiters.splice(0)) w();
    await this.onClose?.(this.card);
  }
}

/** A channel over a card you already hold (tests, benchmarks). The card is powered on if it is off. */
export function openEmulatorChannel(card: SimulatedCard, options: EmulatorChannelOptions = {}): EmulatorChannel {
  return new EmulatorChannel(card, options);
}

export interface OpenEmulatorImageOptions extends Omit<EmulatorChannelOptions, 'onClose'> {
  /** Registry to restore applets from (default: the shared registry with the built-in applets). */
  registry?: AppletTypeRegistry;
  /** When the image does not exist: make the card with this function and save it at once (default: error). */
  create?: () => SimulatedCard;
  /** Save the image back on close (default true). */
  saveOnClose?: boolean;
}

/**
 * Load a card image, power the card on, and return a channel to it; close() saves the image back atomically.
 * Errors (missing, corrupt or truncated image, unknown applet type) are CardImageError with a one-line message.
 */
export async function openEmulatorImage(path: string, options: OpenEmulatorImageOptions = {}): Promise<EmulatorChannel> {
  let card: SimulatedCard;
  if (options.create && !existsSync(path)) {
    card = options.create();
    saveCardImage(card, path);
  } else {
    card = loadCardImage(path, options.registry ? { registry: options.registry } : {});
  }
  const o: EmulatorChannelOptions = { readerName: options.readerName ?? `purselab emulator (${path})` };
  if (options.saveOnClose !== false) o.onClose = (c) => saveCardImage(c, path);
  return new EmulatorChannel(card, o);
}
