// The wire between a Pkcs11Hsm and its session processes (session-process.ts): length-prefixed binary frames
// on two pipes (pipe-pair.ts: calls on the child's fd 3, results on its fd 4), not Node's IPC channel, whose
// per-message cost (serializer, events) was measured at ~45 us of the parent's main thread and ~80 us of the
// child per message: several times the ~15 us token call it carried. Calls travel in batches, one frame per batch.
//
//   frame   = u32 length of the rest | u8 type | payload
//   'O' parent -> child  JSON of the Pkcs11HsmOptions to open with (the first frame)
//   'O' child -> parent  JSON {} or {error: ErrorDescription}
//   'C' parent -> child  calls:   u32 id | u8 method | u8 algorithm (255: none) | u32 master version |
//                                 u8 label length | label (ASCII) | u8 card id length | card id |
//                                 u32 data length | data | u8 MAC length | MAC
//   'R' child -> parent  results: u32 id | u8 kind (0 false, 1 true, 2 bytes, 3 error) |
//                                 bytes: u32 length | bytes;  error: u32 length | JSON ErrorDescription

import { PurselabError } from '../../src/errors.ts';
import { MAC_ALGORITHMS } from '../common.ts';
import * as errors from '../errors.ts';
import type { MacAlgorithm } from '../hsm.ts';

/** The per-transaction operations a session process serves, by the index a call carries. */
export const METHOD_INDEX = { macVerify: 0, macGenerate: 1, keyCheckValue: 2 } as const;

export const FRAME_OPEN = 0x4f; // 'O'
export const FRAME_CALLS = 0x43; // 'C'
export const FRAME_RESULTS = 0x52; // 'R'

const NO_ALG = 255;

export interface ErrorDescription {
  readonly name: string;
  readonly message: string;
  readonly props: Record<string, unknown>;
}

/** One call as a session process receives it (arguments checked by the parent). */
export interface WireCall {
  readonly id: number;
  readonly method: number;
  readonly label: string;
  readonly version: number;
  readonly cardId: Buffer;
  readonly alg: MacAlgorithm | undefined;
  readonly data: Buffer | undefined;
  readonly mac: Buffer | undefined;
}

/** A growing frame: appends fields, then hands out the bytes with the length prefix filled in. */
export class FrameWriter {
  private buf: Buffer;
  private at = 5;
  constructor(type: number, size = 512) {
    this.buf = Buffer.allocUnsafe(size);
    this.buf[4] = type;
  }

  get empty(): boolean {
    return this.at === 5;
  }

  /** Start again (the bytes finish() handed out are overwritten by the next frame). */
  reset(): void {
    this.at = 5;
  }

  private room(n: number): void {
    if (this.at + n <= this.buf.length) return;
    const b = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.at + n));
    this.buf.copy(b, 0, 0, this.at);
    this.buf = b;
  }

  u8(v: number): void {
    this.room(1);
    this.buf[this.at++] = v;
  }

  u32(v: number): void {
    this.room(4);
    this.buf.writeUInt32BE(v, this.at);
    this.at += 4;
  }

  bytes(b: Uint8Array, lengthBytes: 1 | 4): void {
    if (lengthBytes === 1) this.u8(b.length);
    else this.u32(b.length);
    this.room(b.length);
    this.buf.set(b, this.at);
    this.at += b.length;
  }

  ascii(s: string): void {
    this.u8(s.length);
    this.room(s.length);
    this.at += this.buf.write(s, this.at, 'latin1');
  }

  /** The whole frame (length prefix included). */
  finish(): Buffer {
    this.buf.writeUInt32BE(this.at - 4, 0);
    return this.buf.subarray(0, this.at);
  }
}

/** Reads fields from one frame's payload. */
export class FrameReader {
  at = 0;
  constructor(readonly buf: Buffer) {}
  get done(): boolean {
    return this.at >= this.buf.length;
  }
  u8(): number {
    return this.buf[this.at++]!;
  }
  u32(): number {
    const v = this.buf.readUInt32BE(this.at);
    this.at += 4;
    return v;
  }
  bytes(lengthBytes: 1 | 4): Buffer {
    const n = lengthBytes === 1 ? this.u8() : this.u32();
    const b = this.buf.subarray(this.at, this.at + n);
    this.at += n;
    return b;
  }
  ascii(): string {
    const n = this.u8();
    const s = this.buf.toString('latin1', this.at, this.at + n);
    this.at += n;
    return s;
  }
}

/** A frame of JSON (the open handshake). */
export function jsonFrame(type: number, value: unknown): Buffer {
  const w = new FrameWriter(type);
  w.bytes(Buffer.from(JSON.stringify(value), 'utf8'), 4);
  return w.finish();
}

export function readJson(r: FrameReader): unknown {
  return JSON.parse(r.bytes(4).toString('utf8')) as unknown;
}

/** Append one call to a calls frame. */
export function writeCall(w: FrameWriter, id: number, method: number, label: string, version: number, cardId: Buffer, alg: MacAlgorithm | 0, data: Buffer | 0, mac: Buffer | 0): void {
  w.u32(id);
  w.u8(method);
  w.u8(alg === 0 ? NO_ALG : MAC_ALGORITHMS.indexOf(alg));
  w.u32(version);
  w.ascii(label);
  w.bytes(cardId, 1);
  w.bytes(data === 0 ? EMPTY : data, 4);
  w.bytes(mac === 0 ? EMPTY : mac, 1);
}

const EMPTY = Buffer.alloc(0);

/** The next call of a calls frame (its Buffers are views of the frame). */
export function readCall(r: FrameReader): WireCall {
  const id = r.u32();
  const method = r.u8();
  const a = r.u8();
  const version = r.u32();
  const label = r.ascii();
  const cardId = r.bytes(1);
  const data = r.bytes(4);
  const mac = r.bytes(1);
  const withData = method !== METHOD_INDEX.keyCheckValue;
  return {
    id,
    method,
    label,
    version,
    cardId,
    alg: a === NO_ALG ? undefined : MAC_ALGORITHMS[a],
    data: withData ? data : undefined,
    mac: method === METHOD_INDEX.macVerify ? mac : undefined,
  };
}

/** Append one result (a boolean, a Buffer, or an error) to a results frame. */
export function writeResult(w: FrameWriter, id: number, ok: boolean, value: unknown): void {
  w.u32(id);
  if (!ok) {
    w.u8(3);
    w.bytes(Buffer.from(JSON.stringify(describeError(value)), 'utf8'), 4);
  } else if (typeof value === 'boolean') w.u8(value ? 1 : 0);
  else if (value instanceof Uint8Array) {
    w.u8(2);
    w.bytes(value, 4);
  } else {
    w.u8(3);
    w.bytes(Buffer.from(JSON.stringify(describeError(new errors.HsmDeviceError(`session process: a result of type ${typeof value} cannot travel`))), 'utf8'), 4);
  }
}

/** The next result of a results frame: id, and the value (ok) or the typed error. Bytes are copied out of the frame. */
export function readResult(r: FrameReader): { id: number; ok: boolean; value: unknown } {
  const id = r.u32();
  const kind = r.u8();
  if (kind === 0 || kind === 1) return { id, ok: true, value: kind === 1 };
  if (kind === 2) return { id, ok: true, value: Buffer.from(r.bytes(4)) };
  return { id, ok: false, value: reviveError(JSON.parse(r.bytes(4).toString('utf8')) as ErrorDescription) };
}

/**
 * The complete frames in the first `end` bytes of buf (each a 4-byte big-endian length, then that many bytes):
 * their payloads (type byte first, views into buf), and where the unread rest starts.
 */
export function completeFrames(buf: Buffer, end: number): { frames: Buffer[]; rest: number } {
  const frames: Buffer[] = [];
  let at = 0;
  while (end - at >= 4) {
    const n = buf.readUInt32BE(at);
    if (end - at - 4 < n) break;
    frames.push(buf.subarray(at + 4, at + 4 + n));
    at += 4 + n;
  }
  return { frames, rest: at };
}

/**
 * Cuts a byte stream into frames: push() each chunk read, and get back the complete frames' payloads
 * (type byte first).
 */
export class FrameSplitter {
  private have: Buffer = EMPTY;
  push(chunk: Buffer): Buffer[] {
    const buf = this.have.length ? Buffer.concat([this.have, chunk]) : chunk;
    const { frames, rest } = completeFrames(buf, buf.length);
    this.have = rest < buf.length ? Buffer.from(buf.subarray(rest)) : EMPTY;
    return frames;
  }
}

export function describeError(e: unknown): ErrorDescription {
  if (e instanceof Error) {
    const props: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(e)) if (k !== 'cause' && (v === null || ['string', 'number', 'boolean'].includes(typeof v))) props[k] = v;
    return { name: e.constructor.name, message: e.message, props };
  }
  return { name: 'Error', message: String(e), props: {} };
}

/** The error a session process reported, as the same typed class (HsmDeviceError when the class is unknown here). */
export function reviveError(d: ErrorDescription): Error {
  const Cls = (errors as Record<string, unknown>)[d.name];
  const base = new errors.HsmDeviceError(d.message);
  if (typeof Cls === 'function' && (Cls as { prototype: unknown }).prototype instanceof PurselabError) Object.setPrototypeOf(base, (Cls as { prototype: object }).prototype);
  Object.assign(base, d.props);
  Object.defineProperty(base, 'name', { value: d.name, enumerable: false, configurable: true, writable: true });
  return base;
}
