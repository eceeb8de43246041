// Script runner over a small fake CardChannel: raw vs ISO mode, failures, resets, transport errors, early stop.

import { describe, expect, it } from 'vitest';
import { fromHex, toHex } from '../../../src/apdu/hex.ts';
import { parseScript } from '../../../src/apdu/script.ts';
import { runScript, type StepResult } from '../../../src/terminal/script-runner.ts';
import type { CardChannel } from '../../../src/transport/channel.ts';
import { TransportError } from '../../../src/transport/errors.ts';
import { isoTransmit } from '../../../src/transport/iso-exchange.ts';

const ATR = fromHex('3B800181');

/**
 * A card that answers from a table (command hex → response hex, or an error to throw); anything else gets 6D00.
 * transmit() runs the real ISO exchange rules over transmitRaw, as the real channels do.
 */
function fakeCard(table: Record<string, string | Error>) {
  const sent: string[] = [];
  const resets: boolean[] = [];
  const channel: CardChannel = {
    readerName: 'fake',
    atr: ATR,
    protocol: 'T=1',
    async transmitRaw(bytes) {
      const hex = toHex(bytes);
      sent.push(hex);
      const answer = table[hex];
      if (answer instanceof Error) throw answer;
      return fromHex(answer ?? '6D00');
    },
    async transmit(c, options) {
      return isoTransmit((b, t) => channel.transmitRaw(b, { ...(t !== undefined ? { timeoutMs: t } : {}) }), c, options);
    },
    async reset(options) {
      resets.push(options?.cold === true);
      return ATR;
    },
    async close() {},
  };
  return { channel, sent, resets };
}

const CARD = {
  '00A4040002F000': '9000',
  '80CA000000': '6103',
  '80C0000003': '010203 9000', // a raw script may send GET RESPONSE in any class
  '00C0000003': '010203 9000', // iso-exchange sends GET RESPONSE as inter-industry CLA 00
  '00B0000000': '6A82',
};

describe('runScript', () => {
  it('raw mode (default) sends the exact bytes and sees 61xx itself', async () => {
    const { channel, sent } = fakeCard(CARD);
    const script = parseScript('00A4040002F000 -> 9000\n80CA000000 -> 61XX\n80C0000003 -> 01 02 03 9000\n', 's.apdu');
    const r = await runScript(script, channel);
    expect(r).toMatchObject({ mode: 'raw', pass: true, passed: 3, failed: 0, notRun: 0 });
    expect(sent).toEqual(['00A4040002F000', '80CA000000', '80C0000003']);
    expect(toHex(r.steps[1]!.received!)).toBe('6103');
    expect(toHex(r.steps[1]!.sent!)).toBe('80CA000000');
  });

  it('iso mode lets the channel follow 61xx and checks the assembled response', async () => {
    const { channel, sent } = fakeCard(CARD);
    const r = await runScript(parseScript('80CA000000 -> 01 02 03 9000'), channel, { mode: 'iso' });
    expect(r.pass).toBe(true);
    expect(sent).toEqual(['80CA000000', '00C0000003']);
    expect(toHex(r.steps[0]!.received!)).toBe('0102039000');
  });

  it('a mismatching step fails with a reason and the run continues', async () => {
    const { channel } = fakeCard(CARD);
    const r = await runScript(parseScript('00B0000000 -> 9000\n00A4040002F000 -> 9000'), channel);
    expect(r).toMatchObject({ pass: false, passed: 1, failed: 1, notRun: 0 });
    expect(r.steps[0]).toMatchObject({ pass: false, reason: 'SW 6A82: checking error: file or application not found; expected 9000' });
    expect(r.steps[1]!.pass).toBe(true);
  });

  it('stopOnFailure ends the run at the first failing step', async () => {
    const { channel, sent } = fakeCard(CARD);
    const r = await runScript(parseScript('00B0000000 -> 9000\n00A4040002F000 -> 9000'), channel, { stopOnFailure: true });
    expect(r).toMatchObject({ pass: false, failed: 1, notRun: 1 });
    expect(sent).toHaveLength(1);
  });

  it('a step without expectation passes on any response', async () => {
    const { channel } = fakeCard(CARD);
    const r = await runScript(parseScript('00B0000000'), channel);
    expect(r.pass).toBe(true);
    expect(r.steps[0]!.response!.sw).toBe(0x6a82);
  });

  it('reset steps reset the card (warm or cold) and record the ATR', async () => {
    const { channel, resets } = fakeCard(CARD);
    const r = await runScript(parseScript('reset\nreset cold'), channel);
    expect(resets).toEqual([false, true]);
    expect(r.pass).toBe(true);
    expect(toHex(r.steps[0]!.atr!)).toBe('3B800181');
  });

  it('a transport error fails the step and stops the run', async () => {
    const { channel, sent } = fakeCard({ ...CARD, '00A4040002F000': new TransportError('CARD_REMOVED', 'card removed from reader fake') });
    const r = await runScript(parseScript('00B0000000\n00A4040002F000 -> 9000\n00B0000000'), channel);
    expect(r).toMatchObject({ pass: false, passed: 1, failed: 1, notRun: 1 });
    expect(r.steps[1]).toMatchObject({ pass: false, reason: 'card removed from reader fake' });
    expect(sent).toHaveLength(2);
  });

  it('a bug (non-Purselab error) is not swallowed', async () => {
    const { channel } = fakeCard({ '00B0000000': new TypeError('boom') });
    await expect(runScript(parseScript('00B0000000'), channel)).rejects.toThrow(TypeError);
  });

  it('reports each step through onStep as it runs, and passes the timeout on', async () => {
    const { channel } = fakeCard(CARD);
    const timeouts: (number | undefined)[] = [];
    const raw = channel.transmitRaw.bind(channel);
    channel.transmitRaw = async (b, o) => {
      timeouts.push(o?.timeoutMs);
      return raw(b, o);
    };
    const seen: StepResult[] = [];
    await runScript(parseScript('label: one\n00A4040002F000 -> 9000\n00B0000000 -> 6A82'), channel, { onStep: (s) => seen.push(s), timeoutMs: 500 });
    expect(seen.map((s) => [s.index, s.step.line, s.step.label, s.pass])).toEqual([
      [0, 2, 'one', true],
      [1, 3, 'one', true],
    ]);
    expect(timeouts).toEqual([500, 500]);
  });

  it('an empty script passes trivially', async () => {
    const { channel } = fakeCard(CARD);
    expect(await runScript(parseScript('# nothing\n'), channel)).toMatchObject({ pass: true, steps: [], notRun: 0 });
  });
});
