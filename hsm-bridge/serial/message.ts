// Host-command messages inside a frame: header (fixed length, echoed), two-character command code, fields;
// responses carry the response code (command code with its second character + 1) and a two-character error
// code before their fields. An optional trailer after EM (0x19) is echoed back, as payShield does.

export const TRAILER_DELIMITER = 0x19;
export const MAX_TRAILER = 32;

export interface RequestMessage {
  readonly header: string;
  readonly code: string;
  /** The fields after the command code, as ASCII text. */
  readonly body: string;
  readonly trailer?: string;
}

export interface ResponseMessage {
  readonly header: string;
  /** The response code, e.g. "ND" for NC. */
  readonly code: string;
  readonly errorCode: string;
  readonly body: string;
  readonly trailer?: string;
}

export class MessageFormatError extends Error {
  constructor(
    message: string,
    /** Which part is wrong: the frame is too short, the header, the code, or characters in the body. */
    readonly part: 'length' | 'header' | 'code' | 'charset' | 'trailer',
  ) {
    super(message);
  }
}

const CODE = /^[A-Za-z0-9]{2}$/;
const ERROR_CODE = /^[0-9A-Z]{2}$/;

/** Printable ASCII only (0x20-0x7E): everything in a host-command message except the trailer delimiter. */
export function isPrintableAscii(text: string): boolean {
  return /^[\x20-\x7e]*$/.test(text);
}

/** The response code for a command code: the second character plus one (NC -> ND, A0 -> A1, BU -> BV, pk -> pl). */
export function responseCodeFor(code: string): string {
  if (!CODE.test(code)) throw new RangeError(`'${code}' is not a two-character command code`);
  const second = code.charCodeAt(1);
  if (second === 0x39 /* 9 */ || second === 0x5a /* Z */ || second === 0x7a /* z */) {
    throw new RangeError(`command code '${code}' has no response code (second character cannot be incremented)`);
  }
  return code[0] + String.fromCharCode(second + 1);
}

function splitTrailer(bytes: Buffer): { main: Buffer; trailer?: string } {
  const at = bytes.indexOf(TRAILER_DELIMITER);
  if (at < 0) return { main: bytes };
  const trailer = bytes.subarray(at + 1).toString('latin1');
  if (trailer.length > MAX_TRAILER || !isPrintableAscii(trailer)) throw new MessageFormatError('bad message trailer', 'trailer');
  return { main: bytes.subarray(0, at), trailer };
}

function join(main: string, trailer: string | undefined): Buffer {
  if (!isPrintableAscii(main)) throw new MessageFormatError('a host-command message must be printable ASCII', 'charset');
  if (trailer === undefined) return Buffer.from(main, 'latin1');
  if (trailer.length > MAX_TRAILER || !isPrintableAscii(trailer)) throw new MessageFormatError('bad message trailer', 'trailer');
  return Buffer.concat([Buffer.from(main, 'latin1'), Buffer.from([TRAILER_DELIMITER]), Buffer.from(trailer, 'latin1')]);
}

export function encodeRequest(m: RequestMessage, headerLength: number): Buffer {
  if (m.header.length !== headerLength) throw new MessageFormatError(`header must be ${headerLength} characters, got ${m.header.length}`, 'header');
  if (!CODE.test(m.code)) throw new MessageFormatError(`'${m.code}' is not a two-character command code`, 'code');
  return join(m.header + m.code + m.body, m.trailer);
}

export function encodeResponse(m: ResponseMessage, headerLength: number): Buffer {
  if (m.header.length !== headerLength) throw new MessageFormatError(`header must be ${headerLength} characters, got ${m.header.length}`, 'header');
  if (!CODE.test(m.code)) throw new MessageFormatError(`'${m.code}' is not a two-character response code`, 'code');
  if (!ERROR_CODE.test(m.errorCode)) throw new MessageFormatError(`'${m.errorCode}' is not a two-character error code`, 'code');
  return join(m.header + m.code + m.errorCode + m.body, m.trailer);
}

/** Split a request message. Throws MessageFormatError naming the part that is wrong. */
export function parseRequest(bytes: Buffer, headerLength: number): RequestMessage {
  const { main, trailer } = splitTrailer(bytes);
  if (main.length < headerLength + 2) throw new MessageFormatError(`message of ${main.length} bytes is shorter than header + command code`, 'length');
  const text = main.toString('latin1');
  const header = text.slice(0, headerLength);
  if (!isPrintableAscii(header)) throw new MessageFormatError('header contains non-printable characters', 'header');
  const code = text.slice(headerLength, headerLength + 2);
  if (!CODE.test(code)) throw new MessageFormatError(`'${code}' is not a command code`, 'code');
  const body = text.slice(headerLength + 2);
  if (!isPrintableAscii(body)) throw new MessageFormatError('message contains non-printable characters', 'charset');
  return trailer === undefined ? { header, code, body } : { header, code, body, trailer };
}

/** Split a response message. Throws MessageFormatError naming the part that is wrong. */
export function parseResponse(bytes: Buffer, headerLength: number): ResponseMessage {
  const { main, trailer } = splitTrailer(bytes);
  if (main.length < headerLength + 4) throw new MessageFormatError(`response of ${main.length} bytes is shorter than header + response code + error code`, 'length');
  const text = main.toString('latin1');
  if (!isPrintableAscii(text)) throw new MessageFormatError('response contains non-printable characters', 'charset');
  const header = text.slice(0, headerLength);
  const code = text.slice(headerLength, headerLength + 2);
  const errorCode = text.slice(headerLength + 2, headerLength + 4);
  if (!CODE.test(code)) throw new MessageFormatError(`'${code}' is not a response code`, 'code');
  if (!ERROR_CODE.test(errorCode)) throw new MessageFormatError(`'${errorCode}' is not an error code`, 'code');
  const body = text.slice(headerLength + 4);
  return trailer === undefined ? { header, code, errorCode, body } : { header, code, errorCode, body, trailer };
}
