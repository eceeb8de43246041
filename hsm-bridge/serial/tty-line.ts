// One open async serial line, as both ends of the host-command protocol use it (the bridge's SerialTransport and
// the simulator's SerialSimLine): serialport opens the tty and sets 8N1 at the baud rate; bytes are read on the
// event loop itself and written straight onto the descriptor.
//
// Why not serialport's own reads and writes: on Linux its read waits for the descriptor in a poll handle, then
// reads it on libuv's thread pool (a worker woken, then the main thread woken again), and its write goes through
// the thread pool too. A tty.ReadStream on a second, non-blocking descriptor of the same tty reads where epoll
// said it is readable, in the same turn. Ping-pong of 34 bytes over a socat pty pair, median round trip
// (two one-way trips, .tmp-style script): 550-650 us with serialport's reads at both ends, 390-400 us with this.
// A path that is not a tty (the poll handle and thread pool are all serialport has there) keeps serialport's
// reads.

import { closeSync, constants, openSync, writeSync } from 'node:fs';
import tty from 'node:tty';
import { SerialPort } from 'serialport';

export interface TtyLineOptions {
  readonly path: string;
  readonly baudRate: number;
}

export interface TtyLineEvents {
  /** Bytes read from the line, in order. */
  data(chunk: Buffer): void;
  /** The line went away (port closed, tty gone, read error). Not called after close(). */
  down(error: Error): void;
}

export class TtyLine {
  readonly path: string;
  private readonly port: SerialPort;
  private reader: tty.ReadStream | undefined;
  private closed = false;
  private downReported = false;

  private constructor(port: SerialPort, path: string) {
    this.port = port;
    this.path = path;
  }

  /** Open the tty at the baud rate (8N1, no flow control), drop what arrived before, and start reading. */
  static async open(options: TtyLineOptions, events: TtyLineEvents): Promise<TtyLine> {
    // The reading descriptor is opened first: serialport locks the tty for exclusive use (TIOCEXCL), after which
    // only root could open it again. Termios settings belong to the tty, so it reads in the mode set below.
    const readFd = openReader(options.path);
    const port = new SerialPort({ path: options.path, baudRate: options.baudRate, dataBits: 8, parity: 'none', stopBits: 1, rtscts: false, autoOpen: false });
    try {
      await new Promise<void>((resolve, reject) => port.open((e) => (e ? reject(e) : resolve())));
      // Stale bytes from before we opened (a previous session, a restarted peer) are not ours.
      await new Promise<void>((resolve) => port.flush(() => resolve()));
    } catch (e) {
      if (readFd !== undefined) closeSync(readFd);
      throw e;
    }
    const line = new TtyLine(port, options.path);
    line.startReading(events, readFd);
    return line;
  }

  get isOpen(): boolean {
    return !this.closed && this.port.isOpen;
  }

  /** Whether reads run on the event loop (a tty) rather than through serialport (anything else). */
  get readsOnLoop(): boolean {
    return this.reader !== undefined;
  }

  private startReading(events: TtyLineEvents, readFd: number | undefined): void {
    const down = (e: Error): void => {
      if (this.closed || this.downReported) return;
      this.downReported = true;
      void this.close();
      events.down(e);
    };
    this.port.on('error', (e: Error) => down(e));
    this.port.on('close', (e: Error | null) => down(e ?? new Error(`${this.path} closed`)));
    if (readFd !== undefined) {
      try {
        this.reader = new tty.ReadStream(readFd);
        // libuv reopens a tty by its name for a descriptor of its own (so that non-blocking mode is not shared)
        // and leaves the one it was given open, made a duplicate of the new one: that one is ours to close.
        const handleFd = (this.reader as unknown as { _handle?: { fd?: number } })._handle?.fd;
        if (typeof handleFd === 'number' && handleFd >= 0 && handleFd !== readFd) closeSync(readFd);
      } catch {
        closeSync(readFd);
      }
    }
    const data = (chunk: Buffer): void => {
      if (!this.closed) events.data(chunk);
    };
    if (this.reader) {
      this.reader.on('data', data);
      this.reader.on('error', (e: Error) => down(e));
      this.reader.on('end', () => down(new Error(`${this.path} closed (end of input)`)));
    } else {
      this.port.on('data', data);
    }
  }

  private get fd(): number | undefined {
    const fd = (this.port.port as { fd?: number | null } | undefined)?.fd;
    return typeof fd === 'number' ? fd : undefined;
  }

  /**
   * Put bytes on the line now: one non-blocking write on the descriptor when nothing is queued in serialport's
   * stream; what the tty does not take at once (EAGAIN, a partial write) goes through serialport after the bytes
   * already written, so order is kept. Resolves when all of it is handed to the tty.
   */
  write(bytes: Buffer): Promise<void> {
    if (!this.isOpen) return Promise.reject(new Error(`${this.path} is not open`));
    let done = 0;
    const fd = this.fd;
    if (fd !== undefined && this.port.writableLength === 0) {
      try {
        done = writeSync(fd, bytes);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EAGAIN') return Promise.reject(e);
      }
    }
    if (done === bytes.length) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.port.write(bytes.subarray(done), (e) => (e ? reject(e) : resolve()));
    });
  }

  /** Stop reading and close the tty (both descriptors). Safe to call twice. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.reader?.destroy();
    this.reader = undefined;
    if (this.port.isOpen) await new Promise<void>((resolve) => this.port.close(() => resolve()));
  }
}

/** A non-blocking read-only descriptor on the path if it is a tty, else undefined (then serialport reads). */
function openReader(path: string): number | undefined {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOCTTY | constants.O_NONBLOCK);
  } catch {
    return undefined; // serialport's open says why, in its words
  }
  if (tty.isatty(fd)) return fd;
  closeSync(fd);
  return undefined;
}
