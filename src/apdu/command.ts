// ISO/IEC 7816-4 command APDUs: cases 1-4, short and extended length; builder, encoder and strict parser.

import { PurselabError } from '../errors.ts';
import { toHex } from './hex.ts';

export class ApduFormatError extends PurselabError {
  constructor(message: string) {
    super('BAD_APDU', message);
  }
}

/**
 * A command APDU. `le` is the number of response bytes expected (1..256 short, 1..65536 extended),
 * or undefined when no response data is expected (cases 1 and 3). Le = 256 is encoded 00 (short);
 * 65536 is encoded 0000 (extended).
 */
export interface CommandApdu {
  readonly cla: number;
  readonly ins: number;
  readonly p1: number;
  readonly p2: number;
  readonly data: Buffer;
  readonly le: number | undefined;
}

export const MAX_SHORT_LC = 255;
export const MAX_SHORT_LE = 256;
export const MAX_EXTENDED_LC = 65535;
export const MAX_EXTENDED_LE = 65536;

function checkByte(name: string, v: number): void {
  if (!Number.isInteger(v) || v < 0 || v > 0xff) throw new ApduFormatError(`${name} must be a byte (0..255), got ${v}`);
}

/** Build a command APDU, validating every field. */
export function command(cla: number, ins: number, p1: number, p2: number, data?: Uint8Array, le?: number): CommandApdu {
  checkByte('CLA', cla);
  checkByte('INS', ins);
  checkByte('P1', p1);
  checkByte('P2', p2);
  const body = data ? Buffer.from(data) : Buffer.alloc(0);
  if (body.length > MAX_EXTENDED_LC) {
    throw new ApduFormatError(`command data is ${body.length} bytes; the most an APDU can carry is ${MAX_EXTENDED_LC}`);
  }
  if (le !== undefined && (!Number.isInteger(le) || le < 1 || le > MAX_EXTENDED_LE)) {
    throw new ApduFormatError(`Le must be 1..${MAX_EXTENDED_LE} (256 = '00'), got ${le}`);
  }
  if (cla === 0xff) throw new ApduFormatError('CLA FF is reserved for PPS and is not a valid command class');
  return { cla, ins, p1, p2, data: body, le };
}

/** ISO 7816-4 case: 1 (no data, no Le), 2 (Le only), 3 (data only), 4 (data and Le). */
export function apduCase(c: CommandApdu): 1 | 2 | 3 | 4 {
  if (c.data.length === 0) return c.le === undefined ? 1 : 2;
  return c.le === undefined ? 3 : 4;
}

/** True when the APDU cannot be sent in short form. */
export function needsExtended(c: CommandApdu): boolean {
  return c.data.length > MAX_SHORT_LC || (c.le !== undefined && c.le > MAX_SHORT_LE);
}

/** Encode to bytes; short form unless the lengths need extended form or `extended` is forced. */
export function encodeCommand(c: CommandApdu, options: { extended?: boolean } = {}): Buffer {
  const extended = options.extended === true || needsExtended(c);
  const header = [c.cla, c.ins, c.p1, c.p2];
  const parts: number[] = [...header];
  const n = c.data.length;
  if (!extended) {
    if (n > 0) parts.push(n);
    const out = Buffer.alloc(parts.length + n + (c.le !== undefined ? 1 : 0));
    Buffer.from(parts).copy(out, 0);
    c.data.copy(out, parts.length);
    if (c.le !== undefined) out[out.length - 1] = c.le === 256 ? 0 : c.le;
    return out;
  }
  // Extended: Lc = 00 HH LL; Le = HH LL after Lc, or 00 HH LL when there is no Lc.
  if (n > 0) parts.push(0, n >> 8, n & 0xff);
  const leBytes: number[] = [];
  if (c.le !== undefined) {
    const le = c.le === 65536 ? 0 : c.le;
    if (n === 0) leBytes.push(0);
    leBytes.push(le >> 8, le & 0xff);
  }
  return Buffer.concat([Buffer.from(parts), c.data, Buffer.from(leBytes)]);
}

/** Parse a command APDU from bytes, rejecting anything that is not exactly one well-formed APDU. */
export function parseCommand(bytes: Uint8Array): CommandApdu {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (b.length < 4) throw new ApduFormatError(`a command APDU needs at least 4 header bytes, got ${b.length}`);
  const [cla, ins, p1, p2] = [b[0]!, b[1]!, b[2]!, b[3]!];
  const rest = b.length - 4;
  const mk = (data: Buffer, le: number | undefined): CommandApdu => ({ cla, ins, p1, p2, data: Buffer.from(data), le });
  if (rest === 0) return mk(Buffer.alloc(0), undefined); // case 1
  const b4 = b[4]!;
  if (rest === 1) return mk(Buffer.alloc(0), b4 === 0 ? 256 : b4); // case 2 short
  if (b4 !== 0) {
    // short Lc
    const lc = b4;
    if (rest === 1 + lc) return mk(b.subarray(5, 5 + lc), undefined); // case 3 short
    if (rest === 2 + lc) {
      const le = b[5 + lc]!;
      return mk(b.subarray(5, 5 + lc), le === 0 ? 256 : le); // case 4 short
    }
    throw new ApduFormatError(
      `Lc says ${lc} data bytes but ${rest - 1} bytes follow it (expected ${lc} or ${lc + 1}): ${toHex(b.subarray(0, 5), ' ')} ...`,
    );
  }
  // b4 == 0 and rest >= 2: extended form
  if (rest === 3) {
    const le = (b[5]! << 8) | b[6]!;
    return mk(Buffer.alloc(0), le === 0 ? 65536 : le); // case 2 extended
  }
  if (rest < 3) throw new ApduFormatError(`truncated extended length field: ${rest} byte(s) after the header`);
  const lc = (b[5]! << 8) | b[6]!;
  if (lc === 0) throw new ApduFormatError('extended Lc of 0000 is not allowed');
  if (rest === 3 + lc) return mk(b.subarray(7, 7 + lc), undefined); // case 3 extended
  if (rest === 5 + lc) {
    const le = (b[7 + lc]! << 8) | b[8 + lc]!;
    return mk(b.subarray(7, 7 + lc), le === 0 ? 65536 : le); // case 4 extended
  }
  throw new ApduFormatError(
    `extended Lc says ${lc} data bytes but ${rest - 3} bytes follow it (expected ${lc} or ${lc + 2})`,
  );
}

/** A one-line human form: "00 A4 04 00 | Lc=07 A0000000031010 | Le=256". */
export function describeCommand(c: CommandApdu): string {
  const head = toHex(Buffer.from([c.cla, c.ins, c.p1, c.p2]), ' ');
  const data = c.data.length ? ` | Lc=${c.data.length} ${toHex(c.data)}` : '';
  const le = c.le !== undefined ? ` | Le=${c.le}` : '';
  return head + data + le;
}
