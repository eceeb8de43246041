// Line transports for the host-command client: an async serial line (tty-line.ts: serialport opens it, 8N1, default 115200 baud)
// framed STX..ETX+LRC, and TCP framed with a 2-byte length prefix. A transport frames outgoing messages,
// deframes incoming bytes and reports what it saw; queueing, matching and retries live in client.ts.

import net from 'node:net';
import { defaultInterCharMs, encodeSerialFrame, encodeTcpFrame, SerialDeframer, TcpDeframer, wireTimeMs, type DeframeEvent, type Deframer } from './framing.ts';
import { TtyLine } from './tty-line.ts';

export interface TransportEvents {
  /** A complete, well-framed message (LRC checked on serial). */
  message(message: Buffer): void;
  /** A frame with a bad LRC, or bytes that cannot be a frame. */
  frameError(event: Exclude<DeframeEvent, { kind: 'frame' }>): void;
  /** The line is gone (port closed/unplugged, connection reset). Not called for close(). */
  down(error: Error): void;
}

export interface Transport {
  readonly kind: 'serial' | 'tcp';
  /** e.g. "/dev/ttyUSB0 115200 8N1" or "tcp 10.0.0.5:1500" — never secrets. */
  readonly description: string;
  /** Whether several commands may be outstanding at once (TCP: yes, matched by header; serial: no). */
  readonly supportsPipelining: boolean;
  readonly connected: boolean;
  connect(events: TransportEvents): Promise<void>;
  send(message: Buffer): Promise<void>;
  close(): Promise<void>;
  /** Bytes on the wire for a message of `messageLength` bytes (framing included). */
  frameBytes(messageLength: number): number;
  /** Serial only: time in ms the line needs to carry `bytes` characters. */
  lineTimeMs?(bytes: number): number;
}

export interface SerialTransportOptions {
  readonly path: string;
  /** Default 115200. */
  readonly baudRate?: number;
  /** Give up on a frame when no byte arrives for this long mid-frame (default: 50 ms or 20 character times). */
  readonly interCharTimeoutMs?: number;
}

export class SerialTransport implements Transport {
  readonly kind = 'serial' as const;
  readonly supportsPipelining = false;
  readonly baudRate: number;
  private line: TtyLine | undefined;
  private deframer = new SerialDeframer();
  private interCharTimer: NodeJS.Timeout | undefined;
  private readonly interCharTimeoutMs: number;

  constructor(private readonly options: SerialTransportOptions) {
    this.baudRate = options.baudRate ?? 115200;
    this.interCharTimeoutMs = options.interCharTimeoutMs ?? defaultInterCharMs(this.baudRate);
  }

  get description(): string {
    return `${this.options.path} ${this.baudRate} 8N1`;
  }

  get connected(): boolean {
    return this.line?.isOpen ?? false;
  }

  frameBytes(messageLength: number): number {
    return messageLength + 3;
  }

  lineTimeMs(bytes: number): number {
    return wireTimeMs(bytes, this.baudRate);
  }

  async connect(events: TransportEvents): Promise<void> {
    await this.close();
    this.deframer.reset();
    const line = await TtyLine.open(
      { path: this.options.path, baudRate: this.baudRate },
      {
        data: (chunk) => {
          if (this.line !== line) return;
          for (const ev of this.deframer.push(chunk)) this.dispatch(ev, events);
          clearTimeout(this.interCharTimer);
          if (this.deframer.pending) {
            this.interCharTimer = setTimeout(() => {
              for (const ev of this.deframer.abandon(`line quiet for ${this.interCharTimeoutMs.toFixed(0)} ms`)) this.dispatch(ev, events);
            }, this.interCharTimeoutMs);
          }
        },
        down: (e) => {
          if (this.line !== line) return;
          this.line = undefined;
          clearTimeout(this.interCharTimer);
          events.down(e);
        },
      },
    );
    this.line = line;
  }

  private dispatch(ev: DeframeEvent, events: TransportEvents): void {
    if (ev.kind === 'frame') events.message(ev.message);
    else events.frameError(ev);
  }

  send(message: Buffer): Promise<void> {
    const line = this.line;
    if (!line) return Promise.reject(new Error(`${this.options.path} is not open`));
    return line.write(encodeSerialFrame(message));
  }

  async close(): Promise<void> {
    clearTimeout(this.interCharTimer);
    const line = this.line;
    this.line = undefined;
    await line?.close();
  }
}

export interface TcpTransportOptions {
  readonly host: string;
  readonly port: number;
  /** Connect timeout (default 3000 ms). */
  readonly connectTimeoutMs?: number;
}

export class TcpTransport implements Transport {
  readonly kind = 'tcp' as const;
  readonly supportsPipelining = true;
  private socket: net.Socket | undefined;

  constructor(private readonly options: TcpTransportOptions) {}

  get description(): string {
    return `tcp ${this.options.host}:${this.options.port}`;
  }

  get connected(): boolean {
    return this.socket !== undefined && !this.socket.destroyed;
  }

  frameBytes(messageLength: number): number {
    return messageLength + 2;
  }

  async connect(events: TransportEvents): Promise<void> {
    await this.close();
    const socket = await new Promise<net.Socket>((resolve, reject) => {
      const s = net.createConnection({ host: this.options.host, port: this.options.port });
      const timer = setTimeout(() => {
        s.destroy();
        reject(new Error(`connect to ${this.options.host}:${this.options.port} timed out`));
      }, this.options.connectTimeoutMs ?? 3000);
      s.once('connect', () => {
        clearTimeout(timer);
        resolve(s);
      });
      s.once('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
    });
    // One write per frame and no Nagle: a command must not sit in the kernel waiting for an ACK.
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 10_000);
    const deframer: Deframer = new TcpDeframer();
    this.socket = socket;
    let downReported = false;
    const down = (e: Error): void => {
      if (this.socket !== socket || downReported) return;
      downReported = true;
      this.socket = undefined;
      socket.destroy();
      events.down(e);
    };
    socket.on('data', (chunk: Buffer) => {
      if (this.socket !== socket) return;
      for (const ev of deframer.push(chunk)) {
        if (ev.kind === 'frame') events.message(ev.message);
        else {
          events.frameError(ev);
          // A byte stream with a nonsense length cannot be resynchronised: start a fresh connection.
          down(new Error(`framing lost on ${this.description}: ${ev.kind === 'garbage' ? ev.reason : 'bad frame'}`));
          return;
        }
      }
    });
    socket.on('error', (e) => down(e));
    socket.on('close', () => down(new Error(`${this.description}: connection closed by peer`)));
  }

  send(message: Buffer): Promise<void> {
    const socket = this.socket;
    if (!socket) return Promise.reject(new Error(`${this.description} is not connected`));
    const frame = encodeTcpFrame(message);
    return new Promise((resolve, reject) => {
      socket.write(frame, (e) => (e ? reject(e) : resolve()));
    });
  }

  async close(): Promise<void> {
    const socket = this.socket;
    this.socket = undefined;
    if (socket && !socket.destroyed) {
      await new Promise<void>((resolve) => {
        socket.once('close', () => resolve());
        socket.end();
        setTimeout(() => {
          socket.destroy();
          resolve();
        }, 200).unref();
      });
    }
  }
}
