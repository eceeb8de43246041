// ISO 7816-4 exchange rules over a scripted raw exchange: 61xx GET RESPONSE chains, 6Cxx re-issue, command chaining.

import { describe, expect, it } from 'vitest';
import { command } from '../../../src/apdu/command.ts';
import { fromHex, toHex } from '../../../src/apdu/hex.ts';
import { TransportError } from '../../../src/transport/errors.ts';
import { isoTransmit, MAX_GET_RESPONSE_ROUNDS, type RawExchange } from '../../../src/transport/iso-exchange.ts';

/** A fake card: answers each raw command from a list of [expected command hex, response hex] in order. */
function scripted(steps: [string, string][]): { raw: RawExchange; sent: string[] } {
  const sent: string[] = [];
  const raw: RawExchange = async (bytes) => {
    const hex = toHex(bytes);
    sent.push(hex);
    const step = steps[sent.length - 1];
    if (!step) throw new Error(`unexpected extra command ${hex}`);
    expect(hex).toBe(step[0].replace(/\s/g, ''));
    return fromHex(step[1]);
  };
  return { raw, sent };
}

describe('isoTransmit', () => {
  it('passes a plain 9000 through in one exchange', async () => {
    const { raw, sent } = scripted([['00A4040002 3F00 00', '6F00 9000']]);
    const r = await isoTransmit(raw, command(0, 0xa4, 4, 0, fromHex('3F00'), 256));
    expect(toHex(r.data)).toBe('6F00');
    expect(r.sw).toBe(0x9000);
    expect(sent).toHaveLength(1);
  });

  it('follows a 61xx chain with GET RESPONSE and concatenates the data', async () => {
    const { raw, sent } = scripted([
      ['00A4040002A000', '6110'],
      ['00C0000010', '00112233445566778899AABBCCDDEEFF 6103'],
      ['00C0000003', 'A1A2A3 9000'],
    ]);
    const r = await isoTransmit(raw, command(0, 0xa4, 4, 0, fromHex('A000')));
    expect(toHex(r.data)).toBe('00112233445566778899AABBCCDDEEFFA1A2A3');
    expect(r.sw).toBe(0x9000);
    expect(sent).toHaveLength(3);
  });

  it('asks for 256 bytes (Le 00) after 6100, and keeps the final non-9000 SW', async () => {
    const { raw } = scripted([
      ['80CA9F7F00', '6100'],
      ['00C0000000', 'AA'.repeat(256) + '6282'], // GET RESPONSE is inter-industry: CLA 00
    ]);
    const r = await isoTransmit(raw, command(0x80, 0xca, 0x9f, 0x7f, undefined, 256));
    expect(r.data.length).toBe(256);
    expect(r.sw).toBe(0x6282);
  });

  it('keeps the logical channel in the GET RESPONSE class byte', async () => {
    const { raw } = scripted([
      ['01B0000010', '6104'],
      ['01C0000004', '01020304 9000'],
    ]);
    expect((await isoTransmit(raw, command(0x01, 0xb0, 0, 0, undefined, 16))).sw).toBe(0x9000);
  });

  it('re-issues the command with the Le from 6Cxx', async () => {
    const { raw } = scripted([
      ['00B0000000', '6C05'],
      ['00B0000005', '0102030405 9000'],
    ]);
    const r = await isoTransmit(raw, command(0, 0xb0, 0, 0, undefined, 256));
    expect(toHex(r.data)).toBe('0102030405');
  });

  it('handles 6Cxx followed by 61xx', async () => {
    const { raw } = scripted([
      ['00CA010100', '6C02'],
      ['00CA010102', '6102'],
      ['00C0000002', 'BEEF 9000'],
    ]);
    expect(toHex((await isoTransmit(raw, command(0, 0xca, 1, 1, undefined, 256))).data)).toBe('BEEF');
  });

  it('cuts off a card that answers 61xx forever', async () => {
    let calls = 0;
    const raw: RawExchange = async () => {
      calls++;
      return fromHex('AA6101');
    };
    const err = await isoTransmit(raw, command(0, 0xb0, 0, 0, undefined, 1)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TransportError);
    expect((err as TransportError).code).toBe('PROTOCOL');
    expect((err as Error).message).toMatch(/kept answering 61xx/);
    expect(calls).toBe(1 + MAX_GET_RESPONSE_ROUNDS);
  });

  it('chains long data in 255-byte blocks with CLA|10, Le only on the last block', async () => {
    const data = Buffer.alloc(600);
    for (let i = 0; i < data.length; i++) data[i] = i & 0xff;
    const block = (from: number, to: number): string => toHex(data.subarray(from, to));
    const { raw, sent } = scripted([
      ['10DA0000FF' + block(0, 255), '9000'],
      ['10DA0000FF' + block(255, 510), '9000'],
      ['00DA00005A' + block(510, 600) + '00', 'CAFE 9000'],
    ]);
    const r = await isoTransmit(raw, command(0, 0xda, 0, 0, data, 256));
    expect(sent).toHaveLength(3);
    expect(toHex(r.data)).toBe('CAFE');
  });

  it('returns the refusal of a chained block without sending the rest', async () => {
    const { raw, sent } = scripted([['10DA0000FF' + 'AB'.repeat(255), '6884']]);
    const r = await isoTransmit(raw, command(0, 0xda, 0, 0, Buffer.alloc(300, 0xab)));
    expect(r.sw).toBe(0x6884);
    expect(sent).toHaveLength(1);
  });

  it('sends long data as one extended APDU when asked, and short APDUs stay short', async () => {
    const { raw, sent } = scripted([
      ['00DA0000' + '00012C' + 'AB'.repeat(300), '9000'],
      ['00B0000010', '9000'],
    ]);
    await isoTransmit(raw, command(0, 0xda, 0, 0, Buffer.alloc(300, 0xab)), { extended: true });
    await isoTransmit(raw, command(0, 0xb0, 0, 0, undefined, 16), { extended: true });
    expect(sent).toHaveLength(2);
  });

  it('passes the timeout to every raw exchange', async () => {
    const timeouts: (number | undefined)[] = [];
    const answers = ['6102', '0102 9000'];
    const raw: RawExchange = async (_b, t) => {
      timeouts.push(t);
      return fromHex(answers.shift()!);
    };
    await isoTransmit(raw, command(0, 0xb0, 0, 0, undefined, 2), { timeoutMs: 1234 });
    expect(timeouts).toEqual([1234, 1234]);
  });
});
