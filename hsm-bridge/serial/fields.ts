// Field encoding inside host-command messages. Everything is printable ASCII, so frames never carry STX/ETX
// and the same bytes travel over TCP and serial. Notation as in the payShield manuals: nN = n decimal digits,
// nH = n hex digits (upper case), nA = n characters.
//
// purselab field types (docs/serial-hsm-protocol.md, "Field types"):
//   text2   2N character count + that many characters (labels, error codes)
//   text3   3N character count + that many characters (error messages)
//   bytes   4H byte count + 2 x count hex digits (all binary data: MACs, IVs, data, card ids, DER)
//   keyref  text2 label + 5N version (0..65535)
//   keyspec 'K' keyref (a stored key) | 'D' keyref bytes (card key derived from master keyref and card id)

import type { KeyRef, KeySpec } from '../hsm.ts';

export class FieldError extends Error {}

const HEX = /^[0-9A-F]*$/;

export class FieldWriter {
  private parts: string[] = [];

  fixed(text: string, length: number, what = 'field'): this {
    if (text.length !== length) throw new FieldError(`${what} must be ${length} characters, got ${text.length}`);
    return this.raw(text, what);
  }

  raw(text: string, what = 'field'): this {
    if (!/^[\x20-\x7e]*$/.test(text)) throw new FieldError(`${what} must be printable ASCII`);
    this.parts.push(text);
    return this;
  }

  num(value: number, digits: number, what = 'number'): this {
    if (!Number.isInteger(value) || value < 0 || value >= 10 ** digits) throw new FieldError(`${what} must be an integer 0..${10 ** digits - 1}, got ${value}`);
    this.parts.push(String(value).padStart(digits, '0'));
    return this;
  }

  text2(text: string, what = 'text'): this {
    if (text.length > 99) throw new FieldError(`${what} longer than 99 characters`);
    return this.num(text.length, 2, `${what} length`).raw(text, what);
  }

  text3(text: string, what = 'text'): this {
    if (text.length > 999) throw new FieldError(`${what} longer than 999 characters`);
    return this.num(text.length, 3, `${what} length`).raw(text, what);
  }

  bytes(data: Uint8Array, what = 'data'): this {
    if (!(data instanceof Uint8Array)) throw new FieldError(`${what}: expected a Buffer`);
    if (data.length > 0xffff) throw new FieldError(`${what} longer than 65535 bytes`);
    this.parts.push(data.length.toString(16).toUpperCase().padStart(4, '0'));
    this.parts.push(Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('hex').toUpperCase());
    return this;
  }

  keyRef(ref: KeyRef, what = 'key'): this {
    if (typeof ref !== 'object' || ref === null || typeof ref.label !== 'string') throw new FieldError(`${what}: expected {label, version}`);
    if (ref.label.length === 0) throw new FieldError(`${what} label is empty`);
    return this.text2(ref.label, `${what} label`).num(ref.version, 5, `${what} version`);
  }

  keySpec(spec: KeySpec, what = 'key'): this {
    if (typeof spec === 'object' && spec !== null && 'master' in spec) return this.raw('D').keyRef(spec.master, `${what} master`).bytes(spec.cardId, 'card id');
    return this.raw('K').keyRef(spec, what);
  }

  toString(): string {
    return this.parts.join('');
  }
}

export class FieldReader {
  private pos = 0;
  constructor(private readonly text: string) {}

  get remaining(): number {
    return this.text.length - this.pos;
  }

  fixed(length: number, what = 'field'): string {
    if (this.pos + length > this.text.length) throw new FieldError(`${what}: message ends early`);
    const s = this.text.slice(this.pos, this.pos + length);
    this.pos += length;
    return s;
  }

  /** Peek at the next character without consuming it ('' at the end). */
  peek(): string {
    return this.text.charAt(this.pos);
  }

  num(digits: number, what = 'number'): number {
    const s = this.fixed(digits, what);
    if (!/^[0-9]+$/.test(s)) throw new FieldError(`${what}: '${s}' is not ${digits} decimal digits`);
    return Number(s);
  }

  hexNum(digits: number, what = 'length'): number {
    const s = this.fixed(digits, what);
    if (!HEX.test(s)) throw new FieldError(`${what}: '${s}' is not ${digits} upper-case hex digits`);
    return parseInt(s, 16);
  }

  hex(chars: number, what = 'hex'): Buffer {
    const s = this.fixed(chars, what);
    if (!HEX.test(s) || chars % 2) throw new FieldError(`${what}: not upper-case hex`);
    return Buffer.from(s, 'hex');
  }

  text2(what = 'text'): string {
    return this.fixed(this.num(2, `${what} length`), what);
  }

  text3(what = 'text'): string {
    return this.fixed(this.num(3, `${what} length`), what);
  }

  bytes(what = 'data'): Buffer {
    const n = this.hexNum(4, `${what} length`);
    return this.hex(2 * n, what);
  }

  keyRef(what = 'key'): KeyRef {
    const label = this.text2(`${what} label`);
    if (!label) throw new FieldError(`${what} label is empty`);
    return { label, version: this.num(5, `${what} version`) };
  }

  keySpec(what = 'key'): KeySpec {
    const kind = this.fixed(1, `${what} spec kind`);
    if (kind === 'K') return this.keyRef(what);
    if (kind === 'D') {
      const master = this.keyRef(`${what} master`);
      return { master, cardId: this.bytes('card id') };
    }
    throw new FieldError(`${what} spec kind must be 'K' or 'D', got '${kind}'`);
  }

  /** Throw unless every character was consumed. */
  end(what = 'message'): void {
    if (this.pos !== this.text.length) throw new FieldError(`${what}: ${this.text.length - this.pos} unexpected trailing character(s)`);
  }
}
