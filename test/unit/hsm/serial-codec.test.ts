// Codec unit tests for the host-command protocol: framing, LRC, messages, fields and command layouts, checked
// against the exact byte examples printed in docs/serial-hsm-protocol.md (and that the document still prints them).

import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { A0, BU, COMMANDS, decodeErrorDetail, encodeErrorDetail, NC, pa, pc, pe, pg, pk, pq, ps, xa } from '../../../hsm-bridge/serial/commands.ts';
import { errorMeaning, WIRE_CODE_FOR } from '../../../hsm-bridge/serial/errors.ts';
import { FieldError, FieldReader, FieldWriter } from '../../../hsm-bridge/serial/fields.ts';
import { encodeSerialFrame, encodeTcpFrame, ETX, lrc, SerialDeframer, STX, TcpDeframer, wireTimeMs } from '../../../hsm-bridge/serial/framing.ts';
import { encodeRequest, encodeResponse, MessageFormatError, parseRequest, parseResponse, responseCodeFor } from '../../../hsm-bridge/serial/message.ts';

const DOC = readFileSync(resolve(import.meta.dirname, '../../../docs/serial-hsm-protocol.md'), 'utf8');
const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const spaced = (b: Buffer): string => b.toString('hex').toUpperCase().replace(/(..)(?!$)/g, '$1 ');
const ascii = (s: string): Buffer => Buffer.from(s, 'latin1');

/** The byte examples of the protocol document: message text, and its TCP and/or serial frame. */
const EXAMPLES: { name: string; text: string; tcp?: string; serial?: string }[] = [
  { name: 'NC request', text: '0001NC', tcp: '00 06 30 30 30 31 4E 43', serial: '02 30 30 30 31 4E 43 03 0F' },
  {
    name: 'ND response',
    text: '0001ND007BD4A1C3E2F09856PL-SIM-01',
    tcp: '00 21 30 30 30 31 4E 44 30 30 37 42 44 34 41 31 43 33 45 32 46 30 39 38 35 36 50 4C 2D 53 49 4D 2D 30 31',
    serial: '02 30 30 30 31 4E 44 30 30 37 42 44 34 41 31 43 33 45 32 46 30 39 38 35 36 50 4C 2D 53 49 4D 2D 30 31 03 44',
  },
  { name: 'A0 request', text: '0002A00003U', tcp: '00 0B 30 30 30 32 41 30 30 30 30 33 55', serial: '02 30 30 30 32 41 30 30 30 30 33 55 03 26' },
  {
    name: 'A1 response',
    text: '0002A100U5B0F3C1A9E4D27086F1B2C3D4E5F60718FFED1',
    serial:
      '02 30 30 30 32 41 31 30 30 55 35 42 30 46 33 43 31 41 39 45 34 44 32 37 30 38 36 46 31 42 32 43 33 44 34 45 35 46 36 30 37 31 38 46 46 45 44 31 03 2B',
  },
  {
    name: 'BU request',
    text: '0003BUFF1U5B0F3C1A9E4D27086F1B2C3D4E5F6071;003;001',
    serial:
      '02 30 30 30 33 42 55 46 46 31 55 35 42 30 46 33 43 31 41 39 45 34 44 32 37 30 38 36 46 31 42 32 43 33 44 34 45 35 46 36 30 37 31 3B 30 30 33 3B 30 30 31 03 76',
  },
  { name: 'BV response', text: '0003BV008FFED1', tcp: '00 0E 30 30 30 33 42 56 30 30 38 46 46 45 44 31', serial: '02 30 30 30 33 42 56 30 30 38 46 46 45 44 31 03 1C' },
  {
    name: 'pk request',
    text: '0004pkD10issuer-mac000010008010203040506070830004001122330008A1B2C3D4E5F60718',
    serial:
      '02 30 30 30 34 70 6B 44 31 30 69 73 73 75 65 72 2D 6D 61 63 30 30 30 30 31 30 30 30 38 30 31 30 32 30 33 30 34 30 35 30 36 30 37 30 38 33 30 30 30 34 30 30 31 31 32 32 33 33 30 30 30 38 41 31 42 32 43 33 44 34 45 35 46 36 30 37 31 38 03 10',
  },
  { name: 'pl verified', text: '0004pl00', serial: '02 30 30 30 34 70 6C 30 30 03 1B' },
  { name: 'pl not verified', text: '0004pl01', serial: '02 30 30 30 34 70 6C 30 31 03 1A' },
  { name: 'pg request', text: '0005pgK03kek00002', tcp: '00 11 30 30 30 35 70 67 4B 30 33 6B 65 6B 30 30 30 30 32' },
  { name: 'pq request', text: '0006pq0008', serial: '02 30 30 30 36 70 71 30 30 30 38 03 0C' },
];

describe('framing: the document examples, byte for byte', () => {
  for (const ex of EXAMPLES) {
    it(ex.name, () => {
      expect(DOC).toContain(`"${ex.text}"`);
      if (ex.tcp) {
        expect(DOC).toContain(ex.tcp);
        expect(spaced(encodeTcpFrame(ascii(ex.text)))).toBe(ex.tcp);
      }
      if (ex.serial) {
        expect(DOC).toContain(ex.serial);
        expect(spaced(encodeSerialFrame(ascii(ex.text)))).toBe(ex.serial);
      }
    });
  }

  it('LRC is the XOR of everything after STX up to and including ETX', () => {
    // 30^30^30^31^4E^43^03 = 0F, as worked in the document
    expect(lrc(ascii('0001NC'), ETX)).toBe(0x0f);
    expect(DOC).toContain('LRC = 30^30^30^31^4E^43^03 = 0F');
    const f = encodeSerialFrame(ascii('0001NC'));
    expect(f[0]).toBe(STX);
    expect(lrc(f.subarray(1, f.length - 1))).toBe(f[f.length - 1]);
  });

  it('refuses STX/ETX inside a serial message and over-long messages', () => {
    expect(() => encodeSerialFrame(Buffer.from([0x30, 0x02]))).toThrow(/STX/);
    expect(() => encodeSerialFrame(Buffer.from([0x03]))).toThrow(/ETX/);
    expect(() => encodeTcpFrame(Buffer.alloc(0x10000))).toThrow(/too long/);
  });

  it('wire time: 10 bits per character at 8N1', () => {
    expect(wireTimeMs(1, 115200)).toBeCloseTo(0.0868, 4);
    expect(wireTimeMs(98, 115200)).toBeCloseTo(8.507, 3);
  });
});

describe('serial deframer', () => {
  const frame = encodeSerialFrame(ascii('0001NC'));

  it('reassembles a frame delivered one byte at a time, and several frames in one chunk', () => {
    const d = new SerialDeframer();
    const events = [...frame].flatMap((b) => d.push(Buffer.from([b])));
    expect(events).toEqual([{ kind: 'frame', message: ascii('0001NC') }]);
    expect(d.push(Buffer.concat([frame, frame])).map((e) => e.kind)).toEqual(['frame', 'frame']);
    expect(d.pending).toBe(false);
  });

  it('reports a bad LRC with what arrived', () => {
    const bad = Buffer.from(frame);
    bad[bad.length - 1] = bad[bad.length - 1]! ^ 0xff;
    const [ev] = new SerialDeframer().push(bad);
    expect(ev).toEqual({ kind: 'bad-lrc', message: ascii('0001NC'), expected: 0x0f, received: 0xf0 });
  });

  it('reports noise between frames once the next frame starts, and still takes the frame', () => {
    const d = new SerialDeframer();
    expect(d.push(Buffer.from([0xff, 0x41]))).toEqual([]);
    expect(d.pending).toBe(true);
    const events = d.push(frame);
    expect(events[0]).toMatchObject({ kind: 'garbage', where: 'between-frames', bytes: Buffer.from([0xff, 0x41]) });
    expect(events[1]).toEqual({ kind: 'frame', message: ascii('0001NC') });
  });

  it('an STX inside a frame cuts the old frame (garbage) and starts a new one', () => {
    const d = new SerialDeframer();
    const events = d.push(Buffer.concat([Buffer.from([STX, 0x30, 0x30]), frame]));
    expect(events.map((e) => e.kind)).toEqual(['garbage', 'frame']);
    expect(events[0]).toMatchObject({ where: 'in-frame', reason: 'frame interrupted by a new STX' });
  });

  it('abandon() turns a partial frame or pending noise into garbage', () => {
    const d = new SerialDeframer();
    d.push(frame.subarray(0, 4));
    expect(d.midFrame).toBe(true);
    expect(d.abandon('quiet')).toEqual([{ kind: 'garbage', bytes: frame.subarray(0, 4), reason: 'quiet', where: 'in-frame' }]);
    d.push(Buffer.from([0x13]));
    expect(d.abandon('quiet')).toMatchObject([{ kind: 'garbage', where: 'between-frames' }]);
    expect(d.pending).toBe(false);
  });

  it('drops a frame longer than the limit', () => {
    const d = new SerialDeframer(8);
    const events = d.push(Buffer.concat([Buffer.from([STX]), Buffer.alloc(9, 0x41), frame]));
    expect(events.map((e) => e.kind)).toEqual(['garbage', 'frame']);
  });
});

describe('TCP deframer', () => {
  it('splits and joins by the 2-byte length', () => {
    const a = encodeTcpFrame(ascii('0001NC'));
    const b = encodeTcpFrame(ascii('0002NC'));
    const d = new TcpDeframer();
    const all = Buffer.concat([a, b]);
    const events = [d.push(all.subarray(0, 1)), d.push(all.subarray(1, 9)), d.push(all.subarray(9))].flat();
    expect(events).toEqual([
      { kind: 'frame', message: ascii('0001NC') },
      { kind: 'frame', message: ascii('0002NC') },
    ]);
  });

  it('a zero length cannot be resynchronised: garbage, then nothing', () => {
    const d = new TcpDeframer();
    expect(d.push(Buffer.from([0, 0, 0x41]))).toMatchObject([{ kind: 'garbage', reason: 'impossible length prefix 0' }]);
    expect(d.push(encodeTcpFrame(ascii('0001NC')))).toEqual([]);
    d.reset();
    expect(d.push(encodeTcpFrame(ascii('0001NC')))).toHaveLength(1);
  });
});

describe('messages', () => {
  it('response code = second character + 1', () => {
    expect(responseCodeFor('NC')).toBe('ND');
    expect(responseCodeFor('A0')).toBe('A1');
    expect(responseCodeFor('BU')).toBe('BV');
    expect(responseCodeFor('pk')).toBe('pl');
    for (const bad of ['A9', 'AZ', 'pz', 'N', 'N#']) expect(() => responseCodeFor(bad)).toThrow(RangeError);
  });

  it('every command of the table has a distinct code and response code', () => {
    const codes = [...COMMANDS.values()].flatMap((c) => [c.code, c.response]);
    expect(new Set(codes).size).toBe(codes.length);
    for (const c of COMMANDS.values()) expect(c.origin === 'payShield').toBe(/^[A-Z]/.test(c.code));
  });

  it('parses requests and responses, header echoed, trailer after EM', () => {
    expect(parseRequest(ascii('0001NC'), 4)).toEqual({ header: '0001', code: 'NC', body: '' });
    const withTrailer = Buffer.concat([ascii('ABCDNC'), Buffer.from([0x19]), ascii('T1')]);
    expect(parseRequest(withTrailer, 4)).toEqual({ header: 'ABCD', code: 'NC', body: '', trailer: 'T1' });
    const res = encodeResponse({ header: 'ABCD', code: 'ND', errorCode: '00', body: 'X', trailer: 'T1' }, 4);
    expect(parseResponse(res, 4)).toEqual({ header: 'ABCD', code: 'ND', errorCode: '00', body: 'X', trailer: 'T1' });
    expect(parseRequest(ascii('000001NC'), 6)).toMatchObject({ header: '000001', code: 'NC' });
  });

  it('names the part that is wrong', () => {
    const part = (f: () => unknown): string => {
      try {
        f();
      } catch (e) {
        if (e instanceof MessageFormatError) return e.part;
      }
      return 'none';
    };
    expect(part(() => parseRequest(ascii('0001N'), 4))).toBe('length');
    expect(part(() => parseRequest(ascii('0001N#'), 4))).toBe('code');
    expect(part(() => parseRequest(Buffer.from([0x30, 0x30, 0x30, 0x80, 0x4e, 0x43]), 4))).toBe('header');
    expect(part(() => parseRequest(Buffer.concat([ascii('0001NC'), Buffer.from([0x80])]), 4))).toBe('charset');
    expect(part(() => parseResponse(Buffer.concat([ascii('0001ND00'), Buffer.from([0xc1])]), 4))).toBe('charset');
    expect(part(() => parseResponse(ascii('0001ND0'), 4))).toBe('length');
    expect(part(() => parseResponse(ascii('0001NDx0'), 4))).toBe('code');
    expect(part(() => encodeRequest({ header: '01', code: 'NC', body: '' }, 4))).toBe('header');
  });
});

describe('fields', () => {
  it('keyspec: stored and derived, round trip', () => {
    const stored = { label: 'issuer-mac', version: 65535 };
    const derived = { master: { label: 'mk', version: 3 }, cardId: hex('0102030405060708') };
    const w = new FieldWriter().keySpec(stored).keySpec(derived).toString();
    expect(w).toBe('K10issuer-mac65535D02mk000030008' + '0102030405060708');
    const r = new FieldReader(w);
    expect(r.keySpec()).toEqual(stored);
    expect(r.keySpec()).toEqual(derived);
    r.end();
  });

  it('rejects what it cannot carry and what does not parse', () => {
    expect(() => new FieldWriter().keyRef({ label: '', version: 1 })).toThrow(FieldError);
    expect(() => new FieldWriter().keyRef({ label: 'k', version: 100000 })).toThrow(FieldError);
    expect(() => new FieldWriter().keyRef({ label: 'k', version: -1 })).toThrow(FieldError);
    expect(() => new FieldWriter().bytes('not a buffer' as unknown as Buffer)).toThrow(FieldError);
    expect(() => new FieldReader('0001ab').bytes()).toThrow(/upper-case hex/);
    expect(() => new FieldReader('0004AB').bytes()).toThrow(/ends early/);
    expect(() => new FieldReader('X03kek00001').keySpec()).toThrow(/'K' or 'D'/);
    expect(() => new FieldReader('00').end()).toThrow(/trailing/);
  });
});

describe('command layouts', () => {
  const body = (text: string, headerLength = 4): string => text.slice(headerLength + 2);

  it('NC / ND', () => {
    expect(NC.encodeRequest()).toBe('');
    expect(NC.decodeResponse(new FieldReader(body('0001ND007BD4A1C3E2F09856PL-SIM-01').slice(2)))).toEqual({ lmkCheck: '7BD4A1C3E2F09856', firmware: 'PL-SIM-01' });
  });

  it('A0 / A1', () => {
    expect(A0.encodeRequest({ mode: '0', keyType: '003', keyScheme: 'U' })).toBe(body('0002A00003U'));
    expect(A0.decodeRequest(new FieldReader('0003U'))).toEqual({ mode: '0', keyType: '003', keyScheme: 'U' });
    expect(A0.decodeResponse(new FieldReader('U5B0F3C1A9E4D27086F1B2C3D4E5F60718FFED1'))).toEqual({ keyUnderLmk: 'U5B0F3C1A9E4D27086F1B2C3D4E5F6071', kcv: '8FFED1' });
  });

  it('BU / BV, with and without the key type and KCV type fields', () => {
    const key = 'U5B0F3C1A9E4D27086F1B2C3D4E5F6071';
    expect(BU.encodeRequest({ keyTypeCode: 'FF', keyLengthFlag: '1', key, keyType: '003', kcvType: '1' })).toBe(body('0003BUFF1U5B0F3C1A9E4D27086F1B2C3D4E5F6071;003;001'));
    expect(BU.decodeRequest(new FieldReader(`FF1${key};003;001`))).toEqual({ keyTypeCode: 'FF', keyLengthFlag: '1', key, keyType: '003', kcvType: '1' });
    expect(BU.decodeRequest(new FieldReader(`021${key}`))).toEqual({ keyTypeCode: '02', keyLengthFlag: '1', key });
    expect(BU.decodeRequest(new FieldReader(`021${key};000`))).toEqual({ keyTypeCode: '02', keyLengthFlag: '1', key, kcvType: '0' });
    expect(() => BU.decodeRequest(new FieldReader(`FF1${key}`))).toThrow(FieldError);
    expect(BU.decodeResponse(new FieldReader('8FFED1'))).toEqual({ kcv: '8FFED1' });
    expect(BU.decodeResponse(new FieldReader('6AE7CD3DFB6F78F0'))).toEqual({ kcv: '6AE7CD3DFB6F78F0' });
    expect(() => BU.decodeResponse(new FieldReader('8FFE'))).toThrow(FieldError);
  });

  it('pk (MAC verify on a derived key) and the others of the document', () => {
    const req = {
      key: { master: { label: 'issuer-mac', version: 1 }, cardId: hex('0102030405060708') },
      algorithm: 'ISO9797-1-ALG3' as const,
      data: hex('00112233'),
      mac: hex('A1B2C3D4E5F60718'),
    };
    const text = pk.encodeRequest(req);
    expect(text).toBe(body('0004pkD10issuer-mac000010008010203040506070830004001122330008A1B2C3D4E5F60718'));
    expect(pk.decodeRequest(new FieldReader(text))).toEqual(req);
    expect(pg.encodeRequest({ label: 'kek', version: 2 })).toBe(body('0005pgK03kek00002'));
    expect(pq.encodeRequest(8)).toBe(body('0006pq0008'));
  });

  it('key info, generate, import, RSA generate round trip', () => {
    const info = { label: 'psam-master', version: 7, type: 'AES-128' as const, usage: ['mac', 'derive'] as const, kcv: 'C0FFEE' };
    const listing = pa.encodeResponse([info, { ...info, label: 'rsa', type: 'RSA-2048' as const, usage: ['mac', 'wrap'] as const, kcv: '0A0B0C' }]);
    expect(listing.startsWith('0002' + '11psam-master00007A12MD06C0FFEE')).toBe(true);
    expect(pa.decodeResponse(new FieldReader(listing))[1]).toMatchObject({ label: 'rsa', type: 'RSA-2048', usage: ['mac', 'wrap'] });
    expect(pc.decodeRequest(new FieldReader(pc.encodeRequest({ ref: { label: 'k', version: 1 }, type: 'DES3-2KEY', usage: ['encrypt'] })))).toEqual({ ref: { label: 'k', version: 1 }, type: 'DES3-2KEY', usage: ['encrypt'] });
    const imp = { ref: { label: 'k', version: 1 }, type: 'AES-128' as const, usage: ['wrap'] as const, kek: { label: 'zmk', version: 2 }, wrapped: hex('00'.repeat(24)) };
    expect(pe.decodeRequest(new FieldReader(pe.encodeRequest(imp)))).toEqual(imp);
    expect(ps.decodeRequest(new FieldReader(ps.encodeRequest({ ref: { label: 'r', version: 1 }, bits: 2048 })))).toEqual({ ref: { label: 'r', version: 1 }, bits: 2048 });
    expect(xa.decodeRequest(new FieldReader(xa.encodeRequest({ kind: 'delay', count: 2, ms: 1500, match: 'pc' })))).toEqual({ kind: 'delay', count: 2, ms: 1500, match: 'pc' });
  });

  it('error detail fields of purselab answers', () => {
    const d = encodeErrorDetail('HSM_KEY_NOT_FOUND', "no key 'nope' version 1");
    expect(d).toBe("17HSM_KEY_NOT_FOUND023no key 'nope' version 1");
    expect(decodeErrorDetail(d)).toEqual({ code: 'HSM_KEY_NOT_FOUND', message: "no key 'nope' version 1" });
    expect(decodeErrorDetail('')).toBeUndefined();
    expect(decodeErrorDetail('zz')).toBeUndefined();
  });
});

describe('error codes', () => {
  it('payShield meanings and purselab codes, each documented', () => {
    expect(errorMeaning('00')).toBe('no error');
    expect(errorMeaning('90')).toMatch(/parity/);
    expect(errorMeaning('ZZ')).toBe('unknown error code');
    for (const [iface, wire] of Object.entries(WIRE_CODE_FOR)) {
      expect(DOC).toContain(`| \`${wire}\` |`);
      expect(DOC).toContain(iface);
    }
  });
});
