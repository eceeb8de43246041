// Watching PC/SC readers and cards across pcscd restarts (pcsc.ts does the contexts and channels): events
// for readers added and removed, cards inserted and removed, pcscd lost and back, as an EventEmitter or an
// async iterator; after pcscd went away it tries again every retryMs and reports only what changed.

import { EventEmitter } from 'node:events';
import { TransportError } from './errors.ts';
import { PcscContext, type PcscEvent, type PcscReaderInfo } from './pcsc.ts';

export interface WatchOptions {
  /** Start with 'reader-added' / 'card-inserted' events for what is there already. Default true. */
  initial?: boolean;
  /** How often to try reaching pcscd again after it went away (ms). Default 1000. */
  retryMs?: number;
}

/**
 * Follows readers and cards, across pcscd restarts. Listen with on('event') (or the event type), or
 * iterate: `for await (const ev of watchReaders())`. `ready` resolves when the first state is known
 * and rejects (PCSC_UNAVAILABLE) when PC/SC cannot be used at all. close() ends everything.
 */
export class PcscWatcher extends EventEmitter implements AsyncIterable<PcscEvent> {
  readonly ready: Promise<void>;
  private ctx: PcscContext | undefined;
  private _closed = false;
  private failure: TransportError | undefined;
  private retry: NodeJS.Timeout | undefined;
  /** What we last told listeners: reader -> ATR hex of the card in it ('' = no card). */
  private known = new Map<string, string>();
  private readonly options: Required<WatchOptions>;
  private readonly sinks = new Set<(ev: PcscEvent | null) => void>();

  constructor(options: WatchOptions = {}) {
    super();
    this.options = { initial: options.initial ?? true, retryMs: options.retryMs ?? 1000 };
    this.ready = this.begin();
    this.ready.catch(() => undefined);
  }

  get closed(): boolean {
    return this._closed;
  }

  /** Current readers (empty while pcscd is away). */
  readers(): PcscReaderInfo[] {
    return this.ctx && !this.ctx.lost ? this.ctx.readers() : [];
  }

  async close(): Promise<void> {
    if (this._closed) return;
    this._closed = true;
    if (this.retry) clearTimeout(this.retry);
    this.retry = undefined;
    const ctx = this.ctx;
    this.ctx = undefined;
    if (ctx) await ctx.close();
    for (const s of this.sinks) s(null);
  }

  [Symbol.asyncIterator](): AsyncIterator<PcscEvent> {
    const queue: Array<PcscEvent | null> = [];
    let wake: (() => void) | undefined;
    const sink = (ev: PcscEvent | null) => {
      queue.push(ev);
      wake?.();
    };
    this.sinks.add(sink);
    if (this._closed) sink(null);
    const finish = (): IteratorResult<PcscEvent> => {
      this.sinks.delete(sink);
      return { done: true, value: undefined };
    };
    return {
      next: async () => {
        for (;;) {
          if (queue.length) {
            const ev = queue.shift()!;
            if (ev === null) {
              if (this.failure) {
                this.sinks.delete(sink);
                throw this.failure;
              }
              return finish();
            }
            return { done: false, value: ev };
          }
          await new Promise<void>((resolve) => (wake = resolve));
          wake = undefined;
        }
      },
      return: async () => finish(),
    };
  }

  private deliver(ev: PcscEvent): void {
    if (this._closed) return;
    this.emit('event', ev);
    this.emit(ev.type, ev);
    for (const s of this.sinks) s(ev);
  }

  private async begin(): Promise<void> {
    let ctx: PcscContext;
    try {
      ctx = await PcscContext.open();
    } catch (e) {
      this.failure = e instanceof TransportError ? e : new TransportError('PCSC_UNAVAILABLE', (e as Error).message, { cause: e });
      this._closed = true;
      for (const s of this.sinks) s(null);
      throw this.failure;
    }
    if (this._closed) {
      await ctx.close();
      return;
    }
    this.attach(ctx, this.options.initial);
  }

  /** Adopt a fresh context: report the difference between what listeners know and what is there now. */
  private attach(ctx: PcscContext, report: boolean): void {
    this.ctx = ctx;
    const now = new Map(ctx.readers().map((r) => [r.name, r.cardPresent ? r.atr.toString('hex') : '']));
    for (const [name, atr] of this.known) {
      if (!now.has(name)) {
        if (atr) this.deliver({ type: 'card-removed', reader: name });
        this.deliver({ type: 'reader-removed', reader: name });
      }
    }
    for (const [name, atr] of now) {
      const before = this.known.get(name);
      if (report || this.known.size) {
        if (before === undefined) this.deliver({ type: 'reader-added', reader: name });
        if (before && before !== atr) this.deliver({ type: 'card-removed', reader: name });
        if (atr && before !== atr) this.deliver({ type: 'card-inserted', reader: name, atr: Buffer.from(atr, 'hex') });
      }
    }
    this.known = now;
    ctx.on('event', (ev: PcscEvent) => {
      if (ev.type === 'reader-added') this.known.set(ev.reader, '');
      else if (ev.type === 'reader-removed') this.known.delete(ev.reader);
      else if (ev.type === 'card-inserted') this.known.set(ev.reader, ev.atr.toString('hex'));
      else if (ev.type === 'card-removed') this.known.set(ev.reader, '');
      this.deliver(ev);
    });
    ctx.once('lost', (err: TransportError) => {
      if (this._closed) return;
      this.deliver({ type: 'pcscd-lost', message: err.message });
      void ctx.close();
      this.ctx = undefined;
      this.scheduleReconnect();
    });
  }

  private scheduleReconnect(): void {
    if (this._closed) return;
    this.retry = setTimeout(async () => {
      this.retry = undefined;
      if (this._closed) return;
      try {
        const ctx = await PcscContext.open();
        if (this._closed) {
          await ctx.close();
          return;
        }
        this.deliver({ type: 'pcscd-back' });
        this.attach(ctx, true);
      } catch {
        this.scheduleReconnect();
      }
    }, this.options.retryMs);
  }
}

/** Start watching readers and cards (see PcscWatcher). */
export function watchReaders(options: WatchOptions = {}): PcscWatcher {
  return new PcscWatcher(options);
}
