// ISO/IEC 7816-4 response APDUs: data followed by the two status bytes SW1 SW2.

import { ApduFormatError } from './command.ts';

export interface ResponseApdu {
  readonly data: Buffer;
  /** SW1SW2 as one 16-bit number, e.g. 0x9000. */
  readonly sw: number;
}

export const SW_OK = 0x9000;

export function response(data: Uint8Array, sw: number): ResponseApdu {
  if (!Number.isInteger(sw) || sw < 0 || sw > 0xffff) throw new ApduFormatError(`status word must be 16 bits, got ${sw}`);
  return { data: Buffer.from(data), sw };
}

export function parseResponse(bytes: Uint8Array): ResponseApdu {
  if (bytes.length < 2) throw new ApduFormatError(`a response APDU needs at least SW1 SW2, got ${bytes.length} byte(s)`);
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return { data: Buffer.from(b.subarray(0, b.length - 2)), sw: b.readUInt16BE(b.length - 2) };
}

export function encodeResponse(r: ResponseApdu): Buffer {
  const out = Buffer.alloc(r.data.length + 2);
  r.data.copy(out, 0);
  out.writeUInt16BE(r.sw, r.data.length);
  return out;
}

export const sw1 = (sw: number): number => sw >> 8;
export const sw2 = (sw: number): number => sw & 0xff;

/** 9000 and 61xx are normal processing. */
export function isSuccess(sw: number): boolean {
  return sw === SW_OK || sw1(sw) === 0x61;
}

export function swHex(sw: number): string {
  return sw.toString(16).toUpperCase().padStart(4, '0');
}
