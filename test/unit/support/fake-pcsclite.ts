// A stand-in for the npm `pcsclite` binding with the same JS surface (factory, PCSCLite/CardReader
// event emitters, callbacks), driven by the test: readers come and go, cards are inserted and pulled,
// transmits answer when the test says so, pcscd "dies". It also counts the status watchers the real
// binding runs as threads, so tests can check that close() releases every one of them.
// Load it through PURSELAB_PCSCLITE_MODULE (src/transport/pcsc-binding.ts).

import { EventEmitter } from 'node:events';

type Cb<T> = (err: Error | null | undefined, v?: T) => void;

export const STATE = { UNKNOWN: 0x4, EMPTY: 0x10, PRESENT: 0x20, CHANGED: 0x2 } as const;

export interface PendingTransmit {
  readonly reader: string;
  readonly bytes: Buffer;
  answer(rsp: Buffer): void;
  fail(message: string): void;
}

const pcscError = (method: string, text: string, code: number) => new Error(`${method} error: ${text}.(0x${code.toString(16).padStart(8, '0')})`);

export const fake = {
  /** Readers pcscd has: name -> card ATR (undefined = no card). Change with the helpers below. */
  readers: new Map<string, Buffer | undefined>(),
  /** Thrown by the factory (SCardEstablishContext), e.g. pcscd not running. */
  establishError: undefined as Error | undefined,
  /** When false, start() never reports the reader list (a hung pcscd). */
  answerStart: true,
  /** Status watchers running (threads in the real binding). */
  liveWatchers: 0,
  contexts: new Set<FakeContext>(),
  /** Every reader object ever made (the test can reach a reader its context forgot). */
  allReaders: [] as FakeReader[],
  pending: [] as PendingTransmit[],
  /** Automatic answer for transmits (undefined: leave them pending for the test). */
  autoAnswer: undefined as ((reader: string, bytes: Buffer) => Buffer) | undefined,
  connectError: undefined as Error | undefined,
  disconnects: [] as { reader: string; disposition: number }[],
  /** Names listed a second time (pcscd does this for two vpcd entries with the same FRIENDLYNAME). */
  duplicates: [] as string[],

  reset(): void {
    this.readers.clear();
    this.establishError = undefined;
    this.answerStart = true;
    this.pending = [];
    this.autoAnswer = undefined;
    this.connectError = undefined;
    this.disconnects = [];
    this.duplicates = [];
  },
  addReader(name: string, atr?: Buffer): void {
    this.readers.set(name, atr);
    for (const c of this.contexts) c.listChanged();
  },
  removeReader(name: string): void {
    this.readers.delete(name);
    for (const c of this.contexts) c.readerGone(name);
  },
  insert(name: string, atr: Buffer): void {
    this.readers.set(name, atr);
    for (const c of this.contexts) c.statusChanged(name);
  },
  pull(name: string): void {
    this.readers.set(name, undefined);
    for (const c of this.contexts) c.statusChanged(name);
  },
  /** pcscd goes away: every context and reader watcher fails like the real binding's threads do. */
  killPcscd(): void {
    for (const c of this.contexts) c.serviceGone();
  },
};

function stateOf(name: string): number {
  if (!fake.readers.has(name)) return STATE.UNKNOWN | STATE.CHANGED;
  return (fake.readers.get(name) ? STATE.PRESENT : STATE.EMPTY) | STATE.CHANGED;
}

class FakeReader extends EventEmitter {
  readonly SCARD_SHARE_SHARED = 2;
  readonly SCARD_SHARE_EXCLUSIVE = 1;
  readonly SCARD_PROTOCOL_T0 = 1;
  readonly SCARD_PROTOCOL_T1 = 2;
  readonly SCARD_PROTOCOL_RAW = 4;
  readonly SCARD_LEAVE_CARD = 0;
  readonly SCARD_RESET_CARD = 1;
  readonly SCARD_UNPOWER_CARD = 2;
  connected = false;
  watching = false;
  private handleValid = false;

  constructor(readonly name: string) {
    super();
  }

  get_status(cb: (err: Error | undefined, state?: number, atr?: Buffer) => void): void {
    this.watching = true;
    fake.liveWatchers++;
    this.statusCb = cb;
    setImmediate(() => this.report());
  }

  statusCb: ((err: Error | undefined, state?: number, atr?: Buffer) => void) | undefined;

  report(): void {
    if (!this.watching) return;
    const atr = fake.readers.get(this.name);
    this.statusCb?.(undefined, stateOf(this.name), atr ?? Buffer.alloc(0));
    if (!fake.readers.has(this.name)) this.stop();
  }

  fail(err: Error): void {
    if (!this.watching) return;
    this.statusCb?.(err);
    this.stop();
  }

  /** The status thread ends (reader gone or error): the binding emits '_end'. */
  private stop(): void {
    if (!this.watching) return;
    this.watching = false;
    fake.liveWatchers--;
    this.emit('_end');
  }

  close(): void {
    if (this.watching) {
      this.watching = false;
      fake.liveWatchers--;
      setImmediate(() => this.emit('_end'));
    }
  }

  connect(options: { share_mode?: number; protocol?: number }, cb: Cb<number>): void {
    if (this.connected) return void cb(undefined);
    setImmediate(() => {
      if (fake.connectError) return cb(fake.connectError);
      if (!fake.readers.has(this.name)) return cb(pcscError('SCardConnect', 'Unknown reader specified', 0x80100009));
      if (!fake.readers.get(this.name)) return cb(pcscError('SCardConnect', 'No smart card inserted', 0x8010000c));
      this.connected = true;
      this.handleValid = true;
      cb(null, options.protocol && options.protocol & 2 ? 2 : 1);
    });
  }

  disconnect(disposition: number, cb: (err: Error | null | undefined) => void): void {
    if (!this.connected) return cb(undefined);
    setImmediate(() => {
      fake.disconnects.push({ reader: this.name, disposition });
      this.connected = false;
      this.handleValid = false;
      cb(null);
    });
  }

  transmit(data: Buffer, _resLen: number, _protocol: number, cb: Cb<Buffer>): void {
    if (!this.connected) return cb(new Error('Card Reader not connected'));
    if (!this.handleValid) return cb(pcscError('SCardTransmit', 'Invalid handle', 0x80100003));
    let done = false;
    const p: PendingTransmit = {
      reader: this.name,
      bytes: Buffer.from(data),
      answer: (rsp) => {
        if (done) return;
        done = true;
        cb(null, rsp);
      },
      fail: (message) => {
        if (done) return;
        done = true;
        const m = /\(0x([0-9a-f]{8})\)$/i.exec(message);
        cb(m ? new Error(message) : pcscError('SCardTransmit', message, 0x80100016));
      },
    };
    if (fake.autoAnswer) {
      const rsp = fake.autoAnswer(this.name, p.bytes);
      setImmediate(() => p.answer(rsp));
    } else {
      fake.pending.push(p);
    }
  }
}

export class FakeContext extends EventEmitter {
  readers: Record<string, FakeReader> = {};
  private watching = false;
  private startCb: ((err: Error | undefined, data: Buffer) => void) | undefined;

  start(cb: (err: Error | undefined, data: Buffer) => void): void {
    this.watching = true;
    fake.liveWatchers++;
    this.startCb = cb;
    if (fake.answerStart) setImmediate(() => this.listChanged());
  }

  listChanged(): void {
    if (!this.watching || !this.startCb) return;
    const names = [...fake.readers.keys(), ...fake.duplicates.filter((n) => fake.readers.has(n))];
    this.startCb(undefined, Buffer.from(names.map((n) => n + '\0').join('') + '\0'));
  }

  statusChanged(name: string): void {
    for (const r of this.allReaders) if (r.name === name) setImmediate(() => r.report());
  }

  readerGone(name: string): void {
    this.statusChanged(name);
    setImmediate(() => this.listChanged());
  }

  serviceGone(): void {
    const err = pcscError('SCardGetStatusChange', 'Service not available', 0x8010001d);
    for (const r of this.allReaders) setImmediate(() => r.fail(err));
    setImmediate(() => {
      if (!this.watching) return;
      this.startCb?.(err, Buffer.alloc(0));
      this.watching = false;
      fake.liveWatchers--;
    });
  }

  /** Every CardReader object made, including ones replaced in `readers` (duplicate names). */
  readonly allReaders: FakeReader[] = [];

  close(): void {
    if (this.watching) {
      this.watching = false;
      fake.liveWatchers--;
      // The real binding reports the cancelled status call as an error after close.
      setImmediate(() => this.emit('error', pcscError('SCardGetStatusChange', 'Command cancelled', 0x80100002)));
    }
    fake.contexts.delete(this);
  }
}

/** Same shape as node-pcsclite's module.exports (lib/pcsclite.js), including start() on the next tick. */
export default function pcsc(): FakeContext {
  if (fake.establishError) throw fake.establishError;
  const p = new FakeContext();
  fake.contexts.add(p);
  process.nextTick(() => {
    p.start((err, data) => {
      if (err) return void p.emit('error', err);
      const names = data.toString().split('\0').filter(Boolean);
      const current = Object.keys(p.readers);
      // Like the binding: every listed name not known yet gets a reader (a duplicate name, two).
      for (const name of names.filter((n) => !current.includes(n))) {
        const r = new FakeReader(name);
        p.allReaders.push(r);
        fake.allReaders.push(r);
        r.on('_end', () => {
          r.removeAllListeners('status');
          r.emit('end');
          if (p.readers[name] === r) delete p.readers[name];
        });
        p.readers[name] = r;
        r.get_status((e, state, atr) => {
          if (e) return void r.emit('error', e);
          r.emit('status', { state, atr });
        });
        p.emit('reader', r);
      }
      for (const name of current.filter((n) => !names.includes(n))) p.readers[name]?.close();
    });
  });
  return p;
}
