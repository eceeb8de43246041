// The pseudo card reader (the patent's module 264): a CardChannel over one virtual card, so the client code that
// drives a physical reader (src/terminal, src/client) runs unchanged inside OPAL. Each command goes through an
// EmulatorChannel over the live card (the same ISO exchange rules as every channel: 61xx, 6Cxx, chaining), and
// before the response is handed back, a command that wrote the card's persistent memory is sealed and stored
// (CardSession.saveIfChanged). A crash before that store loses the command the way a torn card would: the
// response never leaves OPAL and the stored card is the one before the command.

import type { CommandApdu } from '../apdu/command.ts';
import type { ResponseApdu } from '../apdu/response.ts';
import type { CardChannel, CardProtocol, TransmitOptions } from '../transport/channel.ts';
import { EmulatorChannel } from '../transport/emulator-channel.ts';
import { IepIns } from '../crypto/purse-apdu.ts';
import { maskCardId } from '../terminal/amount.ts';
import type { CardSession, ConnectOptions, VirtualCardStore } from './card-store.ts';
import type { CrashHook } from './crash.ts';

export interface PseudoReaderOptions extends ConnectOptions {
  /** Test-only fault injection around the save of a DEBIT / CREDIT FOR LOAD (src/opal/crash.ts). */
  readonly crash?: CrashHook | undefined;
  /** Awaited before each command reaches the card (a flow storing what it learnt before the card moves value). */
  readonly beforeCommand?: (() => Promise<void>) | undefined;
}

/** The value-moving commands whose save a crash test cuts. */
const CRASH_NAMES: Partial<Record<number, 'debit' | 'credit'>> = { [IepIns.DEBIT]: 'debit', [IepIns.CREDIT_FOR_LOAD]: 'credit' };

export class PseudoReader implements CardChannel {
  readonly readerName: string;
  private readonly emulator: EmulatorChannel;
  private tail: Promise<unknown> = Promise.resolve();
  private closed = false;

  constructor(
    readonly session: CardSession,
    private readonly crash?: CrashHook,
    private readonly beforeCommand?: () => Promise<void>,
  ) {
    this.readerName = `OPAL pseudo reader (${maskCardId(session.cardId)})`;
    this.emulator = new EmulatorChannel(session.card, { readerName: this.readerName });
  }

  get atr(): Buffer {
    return this.emulator.atr;
  }
  get protocol(): CardProtocol {
    return this.emulator.protocol;
  }
  get cardId(): string {
    return this.session.cardId;
  }

  transmit(command: CommandApdu, options: TransmitOptions = {}): Promise<ResponseApdu> {
    return this.serial(async () => {
      await this.beforeCommand?.();
      const r = await this.emulator.transmit(command, options);
      const name = this.crash ? CRASH_NAMES[command.ins] : undefined;
      if (name) this.crash!(`${name}-before-save`);
      await this.session.saveIfChanged();
      if (name) this.crash!(`${name}-after-save`);
      return r;
    });
  }

  transmitRaw(bytes: Uint8Array): Promise<Buffer> {
    return this.serial(async () => {
      await this.beforeCommand?.();
      const r = await this.emulator.transmitRaw(bytes);
      await this.session.saveIfChanged();
      return r;
    });
  }

  /** Warm or cold reset: transient state (selected applet, open purchase session) is lost, stored state stays. */
  reset(options: { cold?: boolean } = {}): Promise<Buffer> {
    return this.serial(async () => {
      this.session.check();
      return this.emulator.reset(options);
    });
  }

  /** Release the card (its lock); the reader cannot be used afterwards. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.tail.catch(() => undefined);
    await this.emulator.close();
    this.session.release();
  }

  /** One operation at a time: a command and its save finish before the next command starts. */
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.tail.then(() => {
      this.session.check();
      return fn();
    });
    this.tail = run.catch(() => undefined);
    return run;
  }
}

/** Connect to a stored virtual card and put a pseudo reader in front of it; close() releases the card. */
export async function openPseudoReader(store: VirtualCardStore, cardId: string, options: PseudoReaderOptions = {}): Promise<PseudoReader> {
  return new PseudoReader(await store.connect(cardId, options), options.crash, options.beforeCommand);
}

/** Run fn with a pseudo reader on the card and close it whatever happens. */
export async function withPseudoReader<T>(store: VirtualCardStore, cardId: string, fn: (reader: PseudoReader) => Promise<T>, options: PseudoReaderOptions = {}): Promise<T> {
  const reader = await openPseudoReader(store, cardId, options);
  try {
    return await fn(reader);
  } finally {
    await reader.close();
  }
}
