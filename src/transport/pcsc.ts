// PC/SC host transport over the npm `pcsclite` binding: list readers, follow their events in a context
// (PcscWatcher in pcsc-watcher.ts adds pcscd restarts), connect shared or exclusive with T=0/T=1, and a
// PcscChannel that implements CardChannel. Every native call has a timeout; a card pulled or a reader unplugged while
// a command runs ends in a typed TransportError; close() releases every thread and handle the binding
// holds so the process can exit.
//
// Binding facts this module is built around (node-pcsclite 1.0.1, read from its source):
// - `pcsclite()` establishes an SCardContext synchronously (throws when pcscd is not running) and
//   starts, on the next tick, a thread that waits for reader-list changes ("\\?PnP?\Notification").
// - Each reader it finds gets its own status thread (SCardGetStatusChange, INFINITE) and its own card
//   handle. Those threads keep the event loop alive until reader.close() and pcsc.close() are called;
//   both must be called, and only after start() ran (closing earlier leaves the PnP thread running).
// - After close() the binding may still emit 'error' ("Command cancelled"): an 'error' listener must
//   stay attached for the lifetime of the objects, or Node throws.
// - Reader events ('status', 'error', 'end') are delivered while the binding holds that reader's mutex;
//   calling reader.close() from inside one deadlocks the event loop. close() always waits a turn first.
// - There is no SCardReconnect and no SCardStatus: reset = disconnect(RESET/UNPOWER) + connect, and
//   the ATR comes from the reader's status events.
// - `connected` is a plain JS flag the binding sets on success only; after a failed disconnect (card
//   gone) it stays true and connect() becomes a no-op, so we clear it ourselves.
// - transmit runs on the libuv thread pool holding the reader's mutex; a call stuck inside pcscd keeps
//   the process alive (and process.exit() would hang too: libuv joins its pool at exit). We time it
//   out, never touch that reader's mutex again (no reader.close()), and a watchdog ends the process
//   with SIGTERM once nothing but the stuck call keeps it alive.

import { EventEmitter } from 'node:events';
import type { CommandApdu } from '../apdu/command.ts';
import type { ResponseApdu } from '../apdu/response.ts';
import { toHex } from '../apdu/hex.ts';
import type { CardChannel, CardProtocol, TransmitOptions } from './channel.ts';
import { TransportError } from './errors.ts';
import { isoTransmit } from './iso-exchange.ts';
import { loadPcsclite, PCSC_PACKAGES, type BindingContext, type BindingReader } from './pcsc-binding.ts';
import { isServiceGone, mapPcscError, pcscCode, pcscText, SCARD } from './pcsc-errors.ts';

export { loadPcsclite, PCSC_PACKAGES } from './pcsc-binding.ts';

/** Default timeout for one native call (connect, transmit, disconnect), in milliseconds. */
export const DEFAULT_PCSC_TIMEOUT_MS = 30_000;
/** Default time to wait for pcscd to list its readers and their first status. */
export const DEFAULT_OPEN_TIMEOUT_MS = 5_000;
/** Receive buffer for SCardTransmit: the largest response APDU (65536 data bytes + SW1 SW2). */
const RECV_MAX = 65_538;

/** SCARD_STATE_* bits (pcsclite.h); the high 16 bits of a state carry pcscd's event counter. */
export const SCARD_STATE = {
  IGNORE: 0x1,
  CHANGED: 0x2,
  UNKNOWN: 0x4,
  UNAVAILABLE: 0x8,
  EMPTY: 0x10,
  PRESENT: 0x20,
  ATRMATCH: 0x40,
  EXCLUSIVE: 0x80,
  INUSE: 0x100,
  MUTE: 0x200,
  UNPOWERED: 0x400,
} as const;

export function stateFlags(state: number): string[] {
  return Object.entries(SCARD_STATE)
    .filter(([, bit]) => (state & bit) !== 0)
    .map(([name]) => name.toLowerCase());
}

function cardPresent(state: number): boolean {
  return (state & SCARD_STATE.PRESENT) !== 0 && (state & (SCARD_STATE.UNKNOWN | SCARD_STATE.UNAVAILABLE)) === 0;
}

export interface PcscReaderInfo {
  readonly name: string;
  readonly cardPresent: boolean;
  /** ATR of the card in the reader (empty when no card, or a mute card). */
  readonly atr: Buffer;
  /** Card answers nothing (present but mute). */
  readonly mute: boolean;
  /** Another handle (any application) is connected to the card. */
  readonly inUse: boolean;
  readonly exclusive: boolean;
  /** Raw SCARD_STATE_* word and its flag names. */
  readonly state: number;
  readonly flags: string[];
}

export type PcscEvent =
  | { readonly type: 'reader-added'; readonly reader: string }
  | { readonly type: 'reader-removed'; readonly reader: string }
  | { readonly type: 'card-inserted'; readonly reader: string; readonly atr: Buffer }
  | { readonly type: 'card-removed'; readonly reader: string }
  /** pcscd went away (stopped, crashed, restarted); the watcher keeps trying to reconnect. */
  | { readonly type: 'pcscd-lost'; readonly message: string }
  /** pcscd is reachable again (after 'pcscd-lost'); reader and card events for the new state follow. */
  | { readonly type: 'pcscd-back' };

export type ShareMode = 'shared' | 'exclusive';
export type ProtocolChoice = 'T=0' | 'T=1' | 'any';
export type Disposition = 'leave' | 'reset' | 'unpower';

export interface PcscConnectOptions {
  /** Default 'shared' (other applications may use the card between our commands). */
  shareMode?: ShareMode;
  /** Protocols we accept; pcscd negotiates from the ATR. Default 'any' (T=0 or T=1). */
  protocol?: ProtocolChoice;
  /** Timeout of every native call on the channel (ms). Default 30000. */
  timeoutMs?: number;
  /** What close() does to the card. Default 'leave'. */
  disposition?: Disposition;
}

// ---------------------------------------------------------------------------------------------------
// Stuck native calls: the process must still end when the work is done.

const stuckCalls = new Map<number, string>();
let stuckSeq = 0;
let stuckWatchdog: NodeJS.Timeout | undefined;
let stuckPolicy: 'exit-when-idle' | 'ignore' = 'exit-when-idle';
/** Handle types that do not count as "work left": stdio. */
const IDLE_RESOURCES = new Set(['TTYWrap', 'PipeWrap']);

/**
 * What to do when a timed-out native call never returns: 'exit-when-idle' (default) exits the process
 * once nothing else keeps it alive (a CLI run that already reported TIMEOUT ends instead of hanging;
 * a server with open sockets keeps running); 'ignore' leaves it to the application.
 */
export function setStuckCallPolicy(policy: 'exit-when-idle' | 'ignore'): void {
  stuckPolicy = policy;
}

function markStuck(what: string): number {
  const id = ++stuckSeq;
  stuckCalls.set(id, what);
  if (!stuckWatchdog) {
    stuckWatchdog = setInterval(() => {
      if (stuckCalls.size === 0) {
        clearInterval(stuckWatchdog);
        stuckWatchdog = undefined;
        return;
      }
      // A process with an IPC channel (a forked worker, a test runner's child) is its parent's business.
      if (stuckPolicy !== 'exit-when-idle' || process.channel) return;
      const busy = process.getActiveResourcesInfo().filter((r) => !IDLE_RESOURCES.has(r));
      if (busy.length > 0) return;
      const first = stuckCalls.values().next().value as string;
      process.stderr.write(`purselab: ${first} is stuck inside pcscd and nothing else is running; exiting\n`);
      // Not process.exit(): at exit libuv joins its thread pool, where the stuck call sits, so exit()
      // would hang. A default-action SIGTERM ends the process at once (exit status 143).
      process.removeAllListeners('SIGTERM');
      process.kill(process.pid, 'SIGTERM');
    }, 500);
    stuckWatchdog.unref();
  }
  return id;
}

function unmarkStuck(id: number | undefined): void {
  if (id !== undefined) stuckCalls.delete(id);
}

// ---------------------------------------------------------------------------------------------------

interface ReaderEntry {
  readonly name: string;
  readonly reader: BindingReader;
  state: number;
  atr: Buffer;
  present: boolean;
  /** Status events seen so far (0 = not yet). */
  seq: number;
  /** Card removals seen (a channel opened before a removal is dead even if a card is back). */
  removals: number;
  ended: boolean;
  /** Native calls in flight, and whether one of them timed out (then we keep off the reader's mutex). */
  inflight: number;
  stuck: boolean;
  channel?: PcscChannel;
}

function noCardOrUnknown(name: string): TransportError {
  return new TransportError('NO_SUCH_READER', `no reader named '${name}'`);
}

function pcscdUnavailable(e: unknown): TransportError {
  const code = pcscCode(e);
  if (isServiceGone(code)) {
    return new TransportError(
      'PCSC_UNAVAILABLE',
      `pcscd is not running (${pcscText(e)}): start it (systemctl start pcscd.socket, or run pcscd; Debian packages ${PCSC_PACKAGES})`,
      { cause: e },
    );
  }
  return new TransportError('PCSC_UNAVAILABLE', `cannot open a PC/SC context: ${pcscText(e)}`, { cause: e });
}

/**
 * One PC/SC context: the reader list and each reader's status, as events. Emits 'event' (PcscEvent),
 * the event type itself ('reader-added', ...), 'lost' (TransportError) when pcscd goes away, and
 * 'status' (reader name) on every status update.
 */
export class PcscContext extends EventEmitter {
  private readonly binding: BindingContext;
  private readonly entries = new Map<string, ReaderEntry>();
  /**
   * Every reader object the binding made. Not the same as `entries`: when pcscd lists one name twice
   * (it does for two vpcd entries with the same FRIENDLYNAME) the binding replaces the first object in
   * its map and forgets it, but its status thread runs on; we must still close it.
   */
  private readonly allEntries = new Set<ReaderEntry>();
  private listed = false;
  private _closed = false;
  private closing: Promise<void> | undefined;
  private _lost: TransportError | undefined;

  private constructor(binding: BindingContext) {
    super();
    this.binding = binding;
    // Keep an 'error' listener forever: the binding emits "Command cancelled" after close().
    binding.on('error', (e: Error) => this.onContextError(e));
    binding.on('reader', (r: BindingReader) => this.addReader(r));
    // The binding calls start() on the next tick; wrap it to learn when the first reader list arrived.
    const start = binding.start;
    binding.start = (cb) =>
      start.call(binding, (err, data) => {
        cb(err, data);
        if (!err) {
          this.listed = true;
          this.emit('_changed');
        }
      });
  }

  /** Open a context and wait until pcscd listed its readers and each reader's first status. */
  static async open(options: { timeoutMs?: number } = {}): Promise<PcscContext> {
    const factory = await loadPcsclite();
    let binding: BindingContext;
    try {
      binding = factory();
    } catch (e) {
      throw pcscdUnavailable(e);
    }
    const ctx = new PcscContext(binding);
    try {
      await ctx.settle(options.timeoutMs ?? DEFAULT_OPEN_TIMEOUT_MS);
    } catch (e) {
      await ctx.close();
      throw e;
    }
    return ctx;
  }

  /** True once close() was called. */
  get closed(): boolean {
    return this.closing !== undefined;
  }

  /** @internal true once the binding objects were released (after the channels were closed). */
  get released(): boolean {
    return this._closed;
  }

  /** Set when pcscd went away under this context (it cannot be used any more). */
  get lost(): TransportError | undefined {
    return this._lost;
  }

  readerNames(): string[] {
    return [...this.entries.keys()];
  }

  readers(): PcscReaderInfo[] {
    return [...this.entries.values()].map((e) => ({
      name: e.name,
      cardPresent: e.present,
      atr: e.present ? e.atr : Buffer.alloc(0),
      mute: (e.state & SCARD_STATE.MUTE) !== 0,
      inUse: (e.state & SCARD_STATE.INUSE) !== 0,
      exclusive: (e.state & SCARD_STATE.EXCLUSIVE) !== 0,
      state: e.state,
      flags: stateFlags(e.state),
    }));
  }

  /** Wait until `pred` holds for the reader (re-checked on every status change), or timeoutMs passes. */
  async waitFor(name: string, pred: (info: PcscReaderInfo | undefined) => boolean, timeoutMs: number): Promise<boolean> {
    const check = () => pred(this.readers().find((r) => r.name === name));
    if (check()) return true;
    return new Promise((resolve) => {
      const done = (v: boolean) => {
        clearTimeout(t);
        this.off('_changed', on);
        resolve(v);
      };
      const on = () => {
        if (check()) done(true);
        else if (this._closed || this._lost) done(check());
      };
      const t = setTimeout(() => done(check()), timeoutMs);
      this.on('_changed', on);
    });
  }

  /** Connect to the card in a reader of this context. */
  async connect(name: string, options: PcscConnectOptions = {}): Promise<PcscChannel> {
    this.assertUsable();
    const entry = this.entries.get(name);
    if (!entry) throw noCardOrUnknown(name);
    if (entry.channel && !entry.channel.closed) {
      throw new TransportError('PROTOCOL', `reader '${name}' already has an open channel in this PC/SC context`);
    }
    if (!entry.present) throw new TransportError('NO_CARD', `no card in reader '${name}'`);
    const r = entry.reader;
    const share = options.shareMode === 'exclusive' ? r.SCARD_SHARE_EXCLUSIVE : r.SCARD_SHARE_SHARED;
    const mask =
      options.protocol === 'T=0'
        ? r.SCARD_PROTOCOL_T0
        : options.protocol === 'T=1'
          ? r.SCARD_PROTOCOL_T1
          : r.SCARD_PROTOCOL_T0 | r.SCARD_PROTOCOL_T1;
    const timeoutMs = options.timeoutMs ?? DEFAULT_PCSC_TIMEOUT_MS;
    r.connected = false; // see the header: never let a stale flag turn connect() into a no-op
    let proto: number;
    try {
      proto = await this.native<number>(entry, 'connect', timeoutMs, (cb) => r.connect({ share_mode: share, protocol: mask }, cb));
    } catch (e) {
      throw e instanceof TransportError ? e : mapPcscError(e, 'connect', name);
    }
    const channel = new PcscChannel(this, entry, {
      protocol: proto,
      share,
      mask,
      shareMode: options.shareMode ?? 'shared',
      timeoutMs,
      disposition: options.disposition ?? 'leave',
    });
    entry.channel = channel;
    return channel;
  }

  /** Disconnect open channels, stop every status thread and release the context. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      // Never tear down synchronously: close() may be called from inside a binding callback (a status
      // or error event, e.g. through a 'lost' listener), and the binding runs those holding the reader's
      // mutex, which reader.close() takes again: a self-deadlock of the event loop.
      await new Promise<void>((resolve) => setImmediate(resolve));
      for (const e of this.entries.values()) {
        if (e.channel && !e.channel.closed) await e.channel.close({ fromContext: true });
      }
      this._closed = true;
      for (const e of this.allEntries) {
        // A reader with a stuck call holds its mutex: reader.close() would block the event loop.
        if (e.stuck) continue;
        try {
          e.reader.close();
        } catch {
          /* already closed */
        }
      }
      try {
        this.binding.close();
      } catch {
        /* already closed */
      }
      this.emit('_changed');
    })();
    return this.closing;
  }

  // -------------------------------------------------------------------------------------------------

  /** @internal run one native call with a timeout; rejects with TIMEOUT or the binding's raw error. */
  native<T>(entry: ReaderEntry, op: string, timeoutMs: number, start: (cb: (err: Error | null | undefined, v: T) => void) => void): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      let settled = false;
      let stuckId: number | undefined;
      entry.inflight++;
      const timer = setTimeout(() => {
        if (settled) return;
        settled = true;
        entry.stuck = true;
        stuckId = markStuck(`${op} on reader '${entry.name}'`);
        reject(new TransportError('TIMEOUT', `${op} on reader '${entry.name}' got no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      const finish = (err: Error | null | undefined, v: T) => {
        entry.inflight--;
        if (entry.inflight === 0) entry.stuck = false;
        unmarkStuck(stuckId);
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (err) reject(err);
        else resolve(v);
      };
      try {
        start(finish);
      } catch (e) {
        finish(e as Error, undefined as T);
      }
    });
  }

  /** @internal */
  entryLost(entry: ReaderEntry): TransportError | undefined {
    if (this._lost) return this._lost;
    if (entry.ended) return new TransportError('READER_REMOVED', `reader '${entry.name}' was removed (unplugged)`);
    return undefined;
  }

  private assertUsable(): void {
    if (this.closing) throw new TransportError('CHANNEL_CLOSED', 'the PC/SC context is closed');
    if (this._lost) throw this._lost;
  }

  private settle(timeoutMs: number): Promise<void> {
    const ready = () => this.listed && [...this.allEntries].every((e) => e.seq > 0 || e.ended);
    if (ready()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const done = (err?: TransportError) => {
        clearTimeout(t);
        this.off('_changed', on);
        if (err) reject(err);
        else resolve();
      };
      const on = () => {
        if (this._lost) done(this._lost);
        else if (ready()) done();
      };
      const t = setTimeout(
        () => done(new TransportError('TIMEOUT', `pcscd did not report its readers within ${timeoutMs} ms`)),
        timeoutMs,
      );
      this.on('_changed', on);
    });
  }

  private publish(ev: PcscEvent): void {
    this.emit('event', ev);
    this.emit(ev.type, ev);
  }

  private addReader(r: BindingReader): void {
    const entry: ReaderEntry = {
      name: r.name,
      reader: r,
      state: 0,
      atr: Buffer.alloc(0),
      present: false,
      seq: 0,
      removals: 0,
      ended: false,
      inflight: 0,
      stuck: false,
    };
    this.entries.set(r.name, entry);
    this.allEntries.add(entry);
    r.on('error', (e: Error) => this.onReaderError(entry, e));
    r.on('status', (s: { state: number; atr?: Buffer }) => this.onStatus(entry, s));
    r.on('end', () => this.onReaderEnd(entry));
    if (!this._closed) this.publish({ type: 'reader-added', reader: r.name });
    this.emit('_changed');
  }

  private onStatus(entry: ReaderEntry, s: { state: number; atr?: Buffer }): void {
    if (this._closed) return;
    const wasPresent = entry.present;
    const first = entry.seq === 0;
    entry.state = s.state;
    entry.present = cardPresent(s.state);
    entry.atr = s.atr && s.atr.length ? Buffer.from(s.atr) : entry.present ? entry.atr : Buffer.alloc(0);
    entry.seq++;
    if (entry.present && (!wasPresent || first)) {
      this.publish({ type: 'card-inserted', reader: entry.name, atr: entry.atr });
    } else if (!entry.present && wasPresent) {
      entry.removals++;
      this.publish({ type: 'card-removed', reader: entry.name });
    }
    this.emit('status', entry.name);
    this.emit('_changed');
  }

  private onReaderError(entry: ReaderEntry, e: Error): void {
    if (this._closed) return;
    if (isServiceGone(pcscCode(e))) this.markLost(e);
    // Other errors end the reader's status thread; 'end' follows and reports the removal.
  }

  private onReaderEnd(entry: ReaderEntry): void {
    entry.ended = true;
    if (this.entries.get(entry.name) === entry) this.entries.delete(entry.name);
    if (!this._closed && !this._lost) {
      if (entry.present) {
        entry.removals++;
        entry.present = false;
      }
      this.publish({ type: 'reader-removed', reader: entry.name });
    }
    this.emit('_changed');
  }

  private onContextError(e: Error): void {
    if (this._closed) return; // "Command cancelled" after close()
    this.markLost(e);
  }

  private markLost(e: Error): void {
    if (this._lost) return;
    this._lost = isServiceGone(pcscCode(e))
      ? new TransportError('PCSC_UNAVAILABLE', `pcscd stopped (${pcscText(e)})`, { cause: e })
      : new TransportError('PCSC_UNAVAILABLE', `lost the PC/SC context: ${pcscText(e)}`, { cause: e });
    this.emit('lost', this._lost);
    this.emit('_changed');
  }
}

// ---------------------------------------------------------------------------------------------------

interface ChannelSetup {
  protocol: number;
  share: number;
  mask: number;
  shareMode: ShareMode;
  timeoutMs: number;
  disposition: Disposition;
}

/** A connection to the card in one PC/SC reader. */
export class PcscChannel implements CardChannel {
  readonly readerName: string;
  readonly shareMode: ShareMode;
  private readonly ctx: PcscContext;
  private readonly entry: ReaderEntry;
  private readonly setup: ChannelSetup;
  private _atr: Buffer;
  private _protocol: number;
  private removalsAtConnect: number;
  private _closed = false;
  private queue: Promise<unknown> = Promise.resolve();
  /** Set by openPcscChannel: close() also closes the context. */
  ownsContext = false;

  /** @internal created by PcscContext.connect */
  constructor(ctx: PcscContext, entry: ReaderEntry, setup: ChannelSetup) {
    this.ctx = ctx;
    this.entry = entry;
    this.setup = setup;
    this.readerName = entry.name;
    this.shareMode = setup.shareMode;
    this._atr = entry.atr;
    this._protocol = setup.protocol;
    this.removalsAtConnect = entry.removals;
  }

  get atr(): Buffer {
    return this._atr;
  }

  get protocol(): CardProtocol {
    const r = this.entry.reader;
    if (this._protocol === r.SCARD_PROTOCOL_T0) return 'T=0';
    if (this._protocol === r.SCARD_PROTOCOL_T1) return 'T=1';
    return 'RAW';
  }

  get closed(): boolean {
    return this._closed;
  }

  transmit(command: CommandApdu, options: TransmitOptions = {}): Promise<ResponseApdu> {
    return this.serial(() => isoTransmit((bytes, t) => this.exchange(bytes, t), command, options));
  }

  transmitRaw(bytes: Uint8Array, options: { timeoutMs?: number } = {}): Promise<Buffer> {
    return this.serial(() => this.exchange(Buffer.from(bytes), options.timeoutMs));
  }

  reset(options: { cold?: boolean } = {}): Promise<Buffer> {
    return this.serial(async () => {
      this.assertOpen();
      const lost = this.ctx.lost ?? this.ctx.entryLost(this.entry);
      if (lost) throw lost;
      const r = this.entry.reader;
      const t = this.setup.timeoutMs;
      const seq0 = this.entry.seq;
      try {
        await this.ctx.native<void>(this.entry, 'reset', t, (cb) =>
          r.disconnect(options.cold ? r.SCARD_UNPOWER_CARD : r.SCARD_RESET_CARD, (err) => cb(err, undefined)),
        );
      } catch (e) {
        if (e instanceof TransportError && e.code === 'TIMEOUT') throw e;
        r.connected = false; // the old handle is gone (card removed, pcscd restarted): start afresh
      }
      if (!this.entry.present) throw new TransportError('NO_CARD', `no card in reader '${this.readerName}'`);
      try {
        this._protocol = await this.ctx.native<number>(this.entry, 'connect', t, (cb) =>
          r.connect({ share_mode: this.setup.share, protocol: this.setup.mask }, cb),
        );
      } catch (e) {
        throw e instanceof TransportError ? e : mapPcscError(e, 'connect', this.readerName);
      }
      // The new ATR arrives as a status event; take it if pcscd reports one promptly.
      await this.ctx.waitFor(this.readerName, () => this.entry.seq > seq0, 300);
      if (this.entry.present && this.entry.atr.length) this._atr = this.entry.atr;
      this.removalsAtConnect = this.entry.removals;
      return this._atr;
    });
  }

  async close(options: { fromContext?: boolean } = {}): Promise<void> {
    if (this._closed) return;
    this._closed = true;
    await this.queue.catch(() => undefined);
    const r = this.entry.reader;
    if (!this.entry.stuck && !this.entry.ended && !this.ctx.lost && !this.ctx.released) {
      const disp =
        this.setup.disposition === 'reset'
          ? r.SCARD_RESET_CARD
          : this.setup.disposition === 'unpower'
            ? r.SCARD_UNPOWER_CARD
            : r.SCARD_LEAVE_CARD;
      try {
        await this.ctx.native<void>(this.entry, 'disconnect', 3000, (cb) => r.disconnect(disp, (err) => cb(err, undefined)));
      } catch {
        /* the card is already gone; nothing to release */
      }
    }
    if (this.ownsContext && !options.fromContext) await this.ctx.close();
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  private assertOpen(): void {
    if (this._closed) throw new TransportError('CHANNEL_CLOSED', `the channel to '${this.readerName}' is closed`);
  }

  private cardGone(): TransportError | undefined {
    const lost = this.ctx.lost ?? this.ctx.entryLost(this.entry);
    if (lost) return lost;
    if (!this.entry.present || this.entry.removals > this.removalsAtConnect) {
      return new TransportError('CARD_REMOVED', `card removed from '${this.readerName}' (reset() or reopen the channel when a card is back)`);
    }
    return undefined;
  }

  private async exchange(bytes: Buffer, timeoutMs: number | undefined): Promise<Buffer> {
    this.assertOpen();
    const gone = this.cardGone();
    if (gone) throw gone;
    if (bytes.length === 0) throw new TransportError('PROTOCOL', 'cannot transmit an empty APDU');
    const r = this.entry.reader;
    let rsp: Buffer;
    try {
      rsp = await this.ctx.native<Buffer>(this.entry, 'transmit', timeoutMs ?? this.setup.timeoutMs, (cb) =>
        r.transmit(bytes, RECV_MAX, this._protocol, cb),
      );
    } catch (e) {
      throw await this.classify(e, 'transmit', bytes);
    }
    if (rsp.length >= 2) return rsp;
    // No status word. vpcd does this when the card's socket closes mid-command (it reports success
    // with 0 bytes); a real reader would not. Either way the card is gone or broken: say which.
    await this.ctx.waitFor(this.readerName, (info) => !info || !info.cardPresent, 1500);
    const pulled = this.cardGone();
    if (pulled) throw pulled;
    throw new TransportError(
      'PROTOCOL',
      `the card in '${this.readerName}' answered ${toHex(bytes.subarray(0, 4), ' ')} ... with ${rsp.length} byte(s) and no status word`,
    );
  }

  /** Turn a failed call into the typed error that says what happened to the card or reader. */
  private async classify(e: unknown, op: string, bytes: Buffer): Promise<TransportError> {
    if (e instanceof TransportError) return e;
    const code = pcscCode(e);
    if (code === SCARD.E_NOT_TRANSACTED || code === SCARD.W_REMOVED_CARD || code === SCARD.E_NO_SMARTCARD) {
      // The exchange broke: usually the card was pulled (or the emulator's socket closed). pcscd notices
      // on its next presence poll (about 400 ms); wait for that verdict before naming the error.
      await this.ctx.waitFor(this.readerName, (info) => !info || !info.cardPresent, 1500);
      const gone = this.cardGone();
      if (gone) return gone;
    }
    const mapped = mapPcscError(e, op, this.readerName);
    if (code === SCARD.E_NOT_TRANSACTED) {
      return new TransportError(
        'PROTOCOL',
        `the reader could not exchange ${toHex(bytes.subarray(0, 4), ' ')} ... with the card in '${this.readerName}' (${pcscText(e)})`,
        { cause: e },
      );
    }
    return mapped;
  }
}

// ---------------------------------------------------------------------------------------------------

/** Pick a reader: exact name, else the unique reader whose name contains `spec` (case-sensitive, then not). */
export function resolveReaderName(spec: string, names: readonly string[]): string {
  if (names.includes(spec)) return spec;
  const list = names.length ? names.map((n) => `'${n}'`).join(', ') : '(none: is a reader plugged in?)';
  if (spec === '') throw new TransportError('NO_SUCH_READER', `no reader given; readers: ${list}`);
  let hits = names.filter((n) => n.includes(spec));
  if (hits.length === 0) hits = names.filter((n) => n.toLowerCase().includes(spec.toLowerCase()));
  if (hits.length === 1) return hits[0]!;
  if (hits.length > 1) {
    throw new TransportError('NO_SUCH_READER', `reader '${spec}' is ambiguous: it matches ${hits.map((n) => `'${n}'`).join(', ')}`);
  }
  throw new TransportError('NO_SUCH_READER', `no reader matches '${spec}'; readers: ${list}`);
}

/** List the readers and what is in them (opens and closes its own context). */
export async function listReaders(options: { timeoutMs?: number } = {}): Promise<PcscReaderInfo[]> {
  const ctx = await PcscContext.open(options);
  try {
    return ctx.readers();
  } finally {
    await ctx.close();
  }
}

/**
 * Wait until a reader's state satisfies `pred`, re-checked on every status change; true when it did within
 * `timeoutMs`. Opens its own context, and a new one when pcscd goes away and comes back meanwhile. What a
 * program that has just plugged a card into vpcd needs: pcscd reports the card at its next poll of the
 * reader, a moment after the vpcd session starts.
 */
export async function waitForReader(reader: string, pred: (info: PcscReaderInfo | undefined) => boolean, timeoutMs = 10_000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const left = deadline - Date.now();
    if (left <= 0) return false;
    let ctx: PcscContext | undefined;
    try {
      ctx = await PcscContext.open({ timeoutMs: Math.min(left, 3000) });
      const ok = await ctx.waitFor(reader, pred, Math.max(0, deadline - Date.now()));
      if (ok) return true;
      if (!ctx.lost) return false;
    } catch {
      await new Promise((r) => setTimeout(r, 200)); // pcscd away (restarting): try again
    } finally {
      await ctx?.close();
    }
  }
}

/**
 * waitForReader(cardIn) for each reader in turn, all within one deadline: the first reader that still had no card
 * when it passed, or undefined when every one has a card.
 */
export async function waitForCards(readers: readonly string[], timeoutMs = 10_000): Promise<string | undefined> {
  const deadline = Date.now() + timeoutMs;
  for (const reader of readers) {
    if (!(await waitForReader(reader, cardIn, Math.max(0, deadline - Date.now())))) return reader;
  }
  return undefined;
}

/** For waitForReader: a card is in the reader. */
export const cardIn = (info: PcscReaderInfo | undefined): boolean => info?.cardPresent === true;
/** For waitForReader: the reader is there and empty. */
export const noCardIn = (info: PcscReaderInfo | undefined): boolean => info !== undefined && !info.cardPresent;

/** Open a channel to the card in the reader named (exactly, or by a unique substring) by `spec`. */
export async function openPcscChannel(spec: string, options: PcscConnectOptions = {}): Promise<PcscChannel> {
  const ctx = await PcscContext.open({ timeoutMs: Math.max(options.timeoutMs ?? 0, DEFAULT_OPEN_TIMEOUT_MS) });
  try {
    const name = resolveReaderName(spec, ctx.readerNames());
    const channel = await ctx.connect(name, options);
    channel.ownsContext = true;
    return channel;
  } catch (e) {
    await ctx.close();
    throw e;
  }
}
