// ISO 7816-4 exchange rules shared by every channel: GET RESPONSE on 61xx, re-issue on 6Cxx, command chaining.

import { command, encodeCommand, MAX_SHORT_LC, type CommandApdu } from '../apdu/command.ts';
import { parseResponse, type ResponseApdu } from '../apdu/response.ts';
import { TransportError } from './errors.ts';
import type { TransmitOptions } from './channel.ts';

export type RawExchange = (bytes: Buffer, timeoutMs: number | undefined) => Promise<Buffer>;

/** Upper bound on GET RESPONSE rounds, so a card that answers 61xx forever cannot hang the host. */
export const MAX_GET_RESPONSE_ROUNDS = 256;

const CHAINING_BIT = 0x10;

async function exchangeOnce(raw: RawExchange, c: CommandApdu, opts: TransmitOptions): Promise<ResponseApdu> {
  // Short form whenever the lengths allow it: `extended` only means "send long data as one extended APDU instead
  // of chaining", and encodeCommand switches to extended form by itself when Lc > 255 or Le > 256.
  let r = parseResponse(await raw(encodeCommand(c), opts.timeoutMs));
  if (r.sw >> 8 === 0x6c) {
    const le = (r.sw & 0xff) === 0 ? 256 : r.sw & 0xff;
    r = parseResponse(await raw(encodeCommand({ ...c, le }), opts.timeoutMs));
  }
  if (r.sw >> 8 !== 0x61) return r;
  const chunks: Buffer[] = [r.data];
  for (let round = 0; round < MAX_GET_RESPONSE_ROUNDS; round++) {
    const le = (r.sw & 0xff) === 0 ? 256 : r.sw & 0xff;
    // GET RESPONSE is an inter-industry command: CLA 00, keeping the logical-channel bits of an inter-industry CLA.
    const getResponseCla = (c.cla & 0x80) === 0 ? c.cla & 0x03 : 0x00;
    const getResponse = command(getResponseCla, 0xc0, 0x00, 0x00, undefined, le);
    r = parseResponse(await raw(encodeCommand(getResponse), opts.timeoutMs));
    chunks.push(r.data);
    if (r.sw >> 8 !== 0x61) return { data: Buffer.concat(chunks), sw: r.sw };
  }
  throw new TransportError('PROTOCOL', `card kept answering 61xx after ${MAX_GET_RESPONSE_ROUNDS} GET RESPONSE rounds`);
}

/** Apply the ISO exchange rules to one logical command over a raw byte exchange. */
export async function isoTransmit(raw: RawExchange, c: CommandApdu, opts: TransmitOptions = {}): Promise<ResponseApdu> {
  if (c.data.length <= MAX_SHORT_LC || opts.extended === true) return exchangeOnce(raw, c, opts);
  // Command chaining (ISO 7816-4 5.3.3): every block but the last has CLA bit b5 set; only the last carries Le.
  for (let off = 0; off < c.data.length; off += MAX_SHORT_LC) {
    const block = c.data.subarray(off, off + MAX_SHORT_LC);
    const last = off + MAX_SHORT_LC >= c.data.length;
    const part: CommandApdu = last
      ? { ...c, data: block }
      : { ...c, cla: c.cla | CHAINING_BIT, data: block, le: undefined };
    const r = await exchangeOnce(raw, part, opts);
    if (last) return r;
    // The card refused a chained block (e.g. 6884 chaining not supported): its answer is the command's answer.
    if (r.sw !== 0x9000) return r;
  }
  throw new TransportError('PROTOCOL', 'command chaining ended without a final block');
}
