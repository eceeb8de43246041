// vpcd wire framing (vsmartcard's virtual PCD driver): every message, in both directions, is a 2-byte
// big-endian length followed by that many bytes. A 1-byte body from pcscd is a control message
// (0 power off, 1 power on, 2 reset, 4 get ATR); any longer body is a command APDU.
// We always build a frame in ONE buffer so it leaves in one write (see docs/pcsc-and-vpcd.md: Nagle).

export const VPCD_CTRL_OFF = 0;
export const VPCD_CTRL_ON = 1;
export const VPCD_CTRL_RESET = 2;
export const VPCD_CTRL_ATR = 4;

/** The largest body the 2-byte length can describe. */
export const VPCD_MAX_BODY = 0xffff;
/** A command APDU has at least CLA INS P1 P2. */
export const MIN_APDU_BYTES = 4;

export type VpcdMessage =
  | { kind: 'control'; code: number }
  | { kind: 'apdu'; apdu: Buffer };

export class VpcdFrameError extends Error {
  readonly code = 'VPCD_BAD_FRAME';
}

/** Length prefix + body in a single buffer. */
export function encodeFrame(body: Uint8Array): Buffer {
  if (body.length > VPCD_MAX_BODY) throw new VpcdFrameError(`vpcd frame body of ${body.length} bytes exceeds ${VPCD_MAX_BODY}`);
  const out = Buffer.allocUnsafe(2 + body.length);
  out.writeUInt16BE(body.length, 0);
  out.set(body, 2);
  return out;
}

function classify(body: Buffer): VpcdMessage {
  if (body.length === 1) return { kind: 'control', code: body[0]! };
  if (body.length < MIN_APDU_BYTES) {
    throw new VpcdFrameError(`vpcd sent a ${body.length}-byte frame: neither a control byte nor a command APDU`);
  }
  return { kind: 'apdu', apdu: body };
}

/**
 * Incremental decoder: feed TCP chunks, get whole messages. Throws VpcdFrameError on a frame no
 * vpcd would send (length 0, 2 or 3); the caller drops the connection.
 */
export class VpcdFrameDecoder {
  private pending: Buffer | undefined;

  /** Bytes buffered towards an incomplete frame. */
  get buffered(): number {
    return this.pending?.length ?? 0;
  }

  push(chunk: Buffer): VpcdMessage[] {
    const buf = this.pending ? Buffer.concat([this.pending, chunk]) : chunk;
    this.pending = undefined;
    const out: VpcdMessage[] = [];
    let off = 0;
    while (buf.length - off >= 2) {
      const len = buf.readUInt16BE(off);
      if (len === 0) throw new VpcdFrameError('vpcd sent an empty frame (length 0)');
      if (buf.length - off - 2 < len) break;
      // Copy the body out: the card may keep it, and `buf` may be a pooled socket chunk.
      out.push(classify(Buffer.from(buf.subarray(off + 2, off + 2 + len))));
      off += 2 + len;
    }
    if (off < buf.length) this.pending = Buffer.from(buf.subarray(off));
    return out;
  }

  reset(): void {
    this.pending = undefined;
  }
}
