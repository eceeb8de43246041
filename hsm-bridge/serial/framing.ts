// Link-level framing of payShield-style host commands: over TCP a 2-byte big-endian length prefix, over an
// asynchronous serial line STX <message> ETX LRC, where LRC is the XOR of every byte after STX up to and
// including ETX. The deframers are incremental: feed them whatever the line delivered, in any chunking.

export const STX = 0x02;
export const ETX = 0x03;

/**
 * Largest message (between STX and ETX, or after the length prefix) either side accepts: what a 2-byte length
 * prefix can say. Enough for the interface's largest data (16 KiB, hex-encoded to 32 KiB) plus its fields.
 */
export const MAX_MESSAGE = 0xffff;

/** XOR of all bytes: the LRC of a serial frame is lrc(message ++ ETX). */
export function lrc(bytes: Uint8Array, initial = 0): number {
  let x = initial;
  for (const b of bytes) x ^= b;
  return x;
}

/** STX message ETX LRC. The message must not contain STX or ETX (host-command messages are ASCII). */
export function encodeSerialFrame(message: Uint8Array): Buffer {
  for (const b of message) {
    if (b === STX || b === ETX) throw new RangeError('a serial frame message must not contain STX (0x02) or ETX (0x03)');
  }
  if (message.length > MAX_MESSAGE) throw new RangeError(`message of ${message.length} bytes exceeds ${MAX_MESSAGE}`);
  const out = Buffer.alloc(message.length + 3);
  out[0] = STX;
  out.set(message, 1);
  out[message.length + 1] = ETX;
  out[message.length + 2] = lrc(message, ETX);
  return out;
}

/** 2-byte big-endian length, then the message. */
export function encodeTcpFrame(message: Uint8Array): Buffer {
  if (message.length > MAX_MESSAGE) throw new RangeError(`message of ${message.length} bytes is too long for one frame`);
  const out = Buffer.alloc(message.length + 2);
  out.writeUInt16BE(message.length, 0);
  out.set(message, 2);
  return out;
}

export type DeframeEvent =
  | { readonly kind: 'frame'; readonly message: Buffer }
  /** A complete STX..ETX frame whose LRC byte is wrong: `message` is what arrived, unverified. */
  | { readonly kind: 'bad-lrc'; readonly message: Buffer; readonly expected: number; readonly received: number }
  /** Bytes that cannot be part of a frame: noise between frames, an over-long or interrupted frame, a bad length. */
  | { readonly kind: 'garbage'; readonly bytes: Buffer; readonly reason: string; readonly where: 'between-frames' | 'in-frame' };

export interface Deframer {
  push(chunk: Uint8Array): DeframeEvent[];
  /** A frame has started and is not complete. */
  readonly midFrame: boolean;
  /** Bytes are held back: a partial frame, or noise not yet reported. abandon() after a quiet spell reports them. */
  readonly pending: boolean;
  /** Give up on a partial frame (e.g. after an inter-character timeout); returns it as garbage, if any. */
  abandon(reason: string): DeframeEvent[];
  reset(): void;
}

/**
 * Serial deframer. Idle: bytes other than STX are noise (reported as garbage once the next STX or an
 * abandon() closes the run). In a frame: collect up to ETX; an STX inside a frame means the previous one was
 * cut short (it becomes garbage and the new frame starts). After ETX the next byte is the LRC.
 */
export class SerialDeframer implements Deframer {
  private state: 'idle' | 'body' | 'lrc' = 'idle';
  private noise: number[] = [];
  private body: number[] = [];
  constructor(private readonly maxMessage = MAX_MESSAGE) {}

  get midFrame(): boolean {
    return this.state !== 'idle';
  }

  get pending(): boolean {
    return this.state !== 'idle' || this.noise.length > 0;
  }

  push(chunk: Uint8Array): DeframeEvent[] {
    const events: DeframeEvent[] = [];
    for (const b of chunk) {
      switch (this.state) {
        case 'idle':
          if (b === STX) {
            this.flushNoise(events, 'bytes outside a frame');
            this.state = 'body';
            this.body = [];
          } else {
            this.noise.push(b);
          }
          break;
        case 'body':
          if (b === ETX) {
            this.state = 'lrc';
          } else if (b === STX) {
            events.push({ kind: 'garbage', bytes: Buffer.from([STX, ...this.body]), reason: 'frame interrupted by a new STX', where: 'in-frame' });
            this.body = [];
          } else if (this.body.length >= this.maxMessage) {
            events.push({ kind: 'garbage', bytes: Buffer.from([STX, ...this.body, b]), reason: `frame longer than ${this.maxMessage} bytes`, where: 'in-frame' });
            this.body = [];
            this.state = 'idle';
          } else {
            this.body.push(b);
          }
          break;
        case 'lrc': {
          const message = Buffer.from(this.body);
          const expected = lrc(message, ETX);
          events.push(expected === b ? { kind: 'frame', message } : { kind: 'bad-lrc', message, expected, received: b });
          this.body = [];
          this.state = 'idle';
          break;
        }
      }
    }
    return events;
  }

  abandon(reason: string): DeframeEvent[] {
    const events: DeframeEvent[] = [];
    if (this.state !== 'idle') {
      events.push({ kind: 'garbage', bytes: Buffer.from([STX, ...this.body, ...(this.state === 'lrc' ? [ETX] : [])]), reason, where: 'in-frame' });
      this.body = [];
      this.state = 'idle';
    }
    this.flushNoise(events, `bytes outside a frame (${reason})`);
    return events;
  }

  reset(): void {
    this.state = 'idle';
    this.body = [];
    this.noise = [];
  }

  private flushNoise(events: DeframeEvent[], reason: string): void {
    if (this.noise.length) {
      events.push({ kind: 'garbage', bytes: Buffer.from(this.noise), reason, where: 'between-frames' });
      this.noise = [];
    }
  }
}

/**
 * TCP deframer: a 2-byte big-endian length, then that many bytes. A zero or over-long length cannot be
 * resynchronised on a byte stream: it is reported as garbage and the caller should drop the connection.
 */
export class TcpDeframer implements Deframer {
  private buf: Buffer = Buffer.alloc(0);
  private broken = false;
  constructor(private readonly maxMessage = MAX_MESSAGE) {}

  get midFrame(): boolean {
    return this.buf.length > 0;
  }

  get pending(): boolean {
    return this.buf.length > 0;
  }

  push(chunk: Uint8Array): DeframeEvent[] {
    if (this.broken) return [];
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : Buffer.from(chunk);
    const events: DeframeEvent[] = [];
    while (this.buf.length >= 2) {
      const len = this.buf.readUInt16BE(0);
      if (len === 0 || len > this.maxMessage) {
        events.push({ kind: 'garbage', bytes: this.buf, reason: `impossible length prefix ${len}`, where: 'in-frame' });
        this.buf = Buffer.alloc(0);
        this.broken = true;
        break;
      }
      if (this.buf.length < 2 + len) break;
      events.push({ kind: 'frame', message: Buffer.from(this.buf.subarray(2, 2 + len)) });
      this.buf = this.buf.subarray(2 + len);
    }
    return events;
  }

  abandon(reason: string): DeframeEvent[] {
    if (!this.buf.length) return [];
    const bytes = this.buf;
    this.buf = Buffer.alloc(0);
    return [{ kind: 'garbage', bytes, reason, where: 'in-frame' }];
  }

  reset(): void {
    this.buf = Buffer.alloc(0);
    this.broken = false;
  }
}

/** Bits on the wire per character for an async line: start + data + parity + stop bits (8N1 = 10). */
export function bitsPerChar(dataBits = 8, parity: 'none' | 'even' | 'odd' = 'none', stopBits = 1): number {
  return 1 + dataBits + (parity === 'none' ? 0 : 1) + stopBits;
}

/** Time in ms that `bytes` characters occupy an async line at `baud` (8N1 unless told). */
export function wireTimeMs(bytes: number, baud: number, charBits = 10): number {
  return (bytes * charBits * 1000) / baud;
}

/**
 * How long a receiver waits, by default, on a partial frame that has gone quiet before it drops it: 50 ms, or
 * 20 character times on a line slow enough for that to be longer (both ends of the line use it).
 */
export function defaultInterCharMs(baud: number): number {
  return Math.max(50, wireTimeMs(20, baud));
}

/** The longest quiet spell either end of a line may be configured to wait (ms); the shortest is 1. */
export const INTER_CHAR_MAX_MS = 60_000;
