// PC/SC transport logic against a fake pcsclite binding (test/unit/support/fake-pcsclite.ts): reader
// and card events, typed errors for every way a card or reader or pcscd can go away (including the
// reader unplugged mid-APDU, which vpcd cannot do), timeouts, and that close() stops every watcher.

import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { command } from '../../src/apdu/command.ts';
import { TransportError } from '../../src/transport/errors.ts';
import { mapPcscError, pcscCode, SCARD } from '../../src/transport/pcsc-errors.ts';
import {
  listReaders,
  openPcscChannel,
  PcscContext,
  resolveReaderName,
  setStuckCallPolicy,
  type PcscEvent,
} from '../../src/transport/pcsc.ts';
import { watchReaders } from '../../src/transport/pcsc-watcher.ts';
import { fake } from './support/fake-pcsclite.ts';

process.env.PURSELAB_PCSCLITE_MODULE = fileURLToPath(new URL('./support/fake-pcsclite.ts', import.meta.url));
setStuckCallPolicy('ignore');

const ATR = Buffer.from('3B80800101', 'hex');
const OK = Buffer.from([0x90, 0x00]);
const tick = (ms = 20) => new Promise((r) => setTimeout(r, ms));

async function until(pred: () => boolean, ms = 2000): Promise<void> {
  const t0 = Date.now();
  while (!pred()) {
    if (Date.now() - t0 > ms) throw new Error('condition not reached');
    await tick(5);
  }
}

async function rejection(p: Promise<unknown>): Promise<TransportError> {
  const e = await p.then(
    () => {
      throw new Error('expected a rejection');
    },
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(TransportError);
  return e as TransportError;
}

beforeEach(() => {
  fake.reset();
  fake.addReader('ACME Reader 00 00', ATR);
  fake.addReader('ACME Reader 00 01');
});

afterEach(async () => {
  // Nothing may be left running: that is what keeps a real process from exiting.
  await until(() => fake.liveWatchers === 0).catch(() => undefined);
  expect(fake.liveWatchers).toBe(0);
});

describe('reader names', () => {
  const names = ['Virtual PCD 00 00', 'Virtual PCD 00 01', 'ACS ACR39U ICC Reader 00 00'];
  it('exact, unique substring, case-insensitive substring', () => {
    expect(resolveReaderName('Virtual PCD 00 01', names)).toBe('Virtual PCD 00 01');
    expect(resolveReaderName('ACR39U', names)).toBe('ACS ACR39U ICC Reader 00 00');
    expect(resolveReaderName('acr39u', names)).toBe('ACS ACR39U ICC Reader 00 00');
    expect(resolveReaderName('PCD 00 01', names)).toBe('Virtual PCD 00 01');
  });
  it('ambiguous and unknown names list the readers', () => {
    expect(() => resolveReaderName('Virtual', names)).toThrow(/ambiguous: it matches 'Virtual PCD 00 00', 'Virtual PCD 00 01'/);
    expect(() => resolveReaderName('Gemalto', names)).toThrow(/no reader matches 'Gemalto'; readers: 'Virtual PCD 00 00'/);
    expect(() => resolveReaderName('x', [])).toThrow(/none: is a reader plugged in/);
    try {
      resolveReaderName('x', names);
    } catch (e) {
      expect((e as TransportError).code).toBe('NO_SUCH_READER');
    }
  });
});

describe('PC/SC error mapping', () => {
  const err = (text: string, code: number) => new Error(`SCardTransmit error: ${text}.(0x${code.toString(16)})`);
  const cases: [number, string][] = [
    [SCARD.W_REMOVED_CARD, 'CARD_REMOVED'],
    [SCARD.E_NO_SMARTCARD, 'CARD_REMOVED'],
    [SCARD.E_UNKNOWN_READER, 'READER_REMOVED'],
    [SCARD.E_READER_UNAVAILABLE, 'READER_REMOVED'],
    [SCARD.E_NO_SERVICE, 'PCSC_UNAVAILABLE'],
    [SCARD.E_SERVICE_STOPPED, 'PCSC_UNAVAILABLE'],
    [SCARD.F_COMM_ERROR, 'PCSC_UNAVAILABLE'],
    [SCARD.E_TIMEOUT, 'TIMEOUT'],
    [SCARD.E_SHARING_VIOLATION, 'READER_BUSY'],
    [SCARD.E_INVALID_HANDLE, 'CHANNEL_CLOSED'],
  ];
  it.each(cases.map(([c, x]) => [c.toString(16).toUpperCase(), x, c] as const))('%s -> %s', (_hex, expected, code) => {
    const e = mapPcscError(err('x', code), 'transmit', 'R');
    expect(e.code).toBe(expected);
    expect(e.message).toContain("'R'");
  });
  it('parses the code from the binding message', () => {
    expect(pcscCode(new Error('SCardConnect error: No smart card inserted.(0x8010000c)'))).toBe(0x8010000c);
    expect(pcscCode(new Error('something else'))).toBeUndefined();
    expect(mapPcscError(new Error('SCardConnect error: No smart card inserted.(0x8010000c)'), 'connect', 'R').code).toBe('NO_CARD');
  });
});

describe('contexts and listing', () => {
  it('lists readers with card state and ATR, then releases every watcher', async () => {
    const list = await listReaders();
    expect(list.map((r) => [r.name, r.cardPresent, r.atr.toString('hex')])).toEqual([
      ['ACME Reader 00 00', true, '3b80800101'],
      ['ACME Reader 00 01', false, ''],
    ]);
    expect(list[0]!.flags).toContain('present');
    expect(list[1]!.flags).toContain('empty');
  });

  it('closes the hidden duplicate reader too (pcscd listing one name twice)', async () => {
    fake.duplicates = ['ACME Reader 00 01'];
    const ctx = await PcscContext.open();
    expect(fake.liveWatchers).toBe(4); // context + 3 reader watchers
    await ctx.close();
  });

  it('pcscd not running: PCSC_UNAVAILABLE saying so', async () => {
    fake.establishError = new Error('SCardEstablishContext error: Service not available.(0x8010001d)');
    const e = await rejection(listReaders());
    expect(e.code).toBe('PCSC_UNAVAILABLE');
    expect(e.message).toMatch(/pcscd is not running/);
    expect(e.message).toMatch(/pcscd libpcsclite-dev/);
  });

  it('pcscd that never lists its readers: TIMEOUT, nothing left running', async () => {
    fake.answerStart = false;
    const e = await rejection(PcscContext.open({ timeoutMs: 100 }));
    expect(e.code).toBe('TIMEOUT');
  });
});

describe('channels', () => {
  it('connects shared by default, reports T=1, transmits with the ISO rules, closes leaving the card', async () => {
    fake.autoAnswer = (_r, bytes) => (bytes[1] === 0xc0 ? Buffer.from([0xbe, 0xef, 0x90, 0x00]) : Buffer.from([0x61, 0x02]));
    const ch = await openPcscChannel('00 00');
    expect(ch.readerName).toBe('ACME Reader 00 00');
    expect(ch.protocol).toBe('T=1');
    expect(ch.shareMode).toBe('shared');
    expect(ch.atr).toEqual(ATR);
    expect(await ch.transmit(command(0x80, 0x01, 0, 0, Buffer.from('ab', 'hex'), 256))).toEqual({ data: Buffer.from('beef', 'hex'), sw: 0x9000 });
    await ch.close();
    expect(fake.disconnects).toEqual([{ reader: 'ACME Reader 00 00', disposition: 0 }]);
  });

  it('no card in the reader: NO_CARD', async () => {
    const e = await rejection(openPcscChannel('ACME Reader 00 01'));
    expect(e.code).toBe('NO_CARD');
  });

  it('reader unplugged in the middle of an APDU: READER_REMOVED, and the next call too', async () => {
    const ch = await openPcscChannel('ACME Reader 00 00');
    const pending = ch.transmitRaw(Buffer.from('00A4040000', 'hex'));
    await until(() => fake.pending.length === 1);
    fake.removeReader('ACME Reader 00 00');
    await tick(30);
    fake.pending[0]!.fail('SCardTransmit error: Transaction failed.(0x80100016)');
    const e = await rejection(pending);
    expect(e.code).toBe('READER_REMOVED');
    expect((await rejection(ch.transmitRaw(OK))).code).toBe('READER_REMOVED');
    await ch.close();
  });

  it('card pulled in the middle of an APDU (the reader says "transaction failed"): CARD_REMOVED', async () => {
    const ch = await openPcscChannel('ACME Reader 00 00');
    const pending = ch.transmitRaw(Buffer.from('00A4040000', 'hex'));
    await until(() => fake.pending.length === 1);
    fake.pending[0]!.fail('SCardTransmit error: Transaction failed.(0x80100016)');
    setTimeout(() => fake.pull('ACME Reader 00 00'), 100); // pcscd notices a moment later
    const e = await rejection(pending);
    expect(e.code).toBe('CARD_REMOVED');
    await ch.close();
  });

  it('an answer without a status word after the card left (vpcd) is CARD_REMOVED', async () => {
    const ch = await openPcscChannel('ACME Reader 00 00');
    const pending = ch.transmitRaw(Buffer.from('00A4040000', 'hex'));
    await until(() => fake.pending.length === 1);
    fake.pull('ACME Reader 00 00');
    fake.pending[0]!.answer(Buffer.alloc(0));
    expect((await rejection(pending)).code).toBe('CARD_REMOVED');
    await ch.close();
  });

  it('a card that does not answer: TIMEOUT; the late answer is dropped; close() keeps off the busy reader', async () => {
    const ch = await openPcscChannel('ACME Reader 00 00');
    const t0 = Date.now();
    const e = await rejection(ch.transmitRaw(Buffer.from('00A4040000', 'hex'), { timeoutMs: 80 }));
    expect(e.code).toBe('TIMEOUT');
    expect(e.message).toMatch(/80 ms/);
    expect(Date.now() - t0).toBeLessThan(1000);
    await ch.close();
    expect(fake.disconnects).toEqual([]); // the reader's mutex is held by the stuck call: no disconnect
    expect(fake.liveWatchers).toBe(1); // the stuck reader's watcher is left alone...
    fake.pending[0]!.answer(OK); // ...until the call returns; the application closes it then (or exits)
    for (const r of fake.allReaders) r.close();
  });

  it('pcscd stops: PCSC_UNAVAILABLE for open channels', async () => {
    const ch = await openPcscChannel('ACME Reader 00 00');
    fake.killPcscd();
    await tick(30);
    const e = await rejection(ch.transmitRaw(OK));
    expect(e.code).toBe('PCSC_UNAVAILABLE');
    expect(e.message).toMatch(/pcscd stopped/);
    await ch.close();
  });

  it('a closed channel: CHANNEL_CLOSED; close() is idempotent', async () => {
    const ch = await openPcscChannel('ACME Reader 00 00');
    await ch.close();
    await ch.close();
    expect((await rejection(ch.transmitRaw(OK))).code).toBe('CHANNEL_CLOSED');
  });

  it('calls on one channel are serialized', async () => {
    const ch = await openPcscChannel('ACME Reader 00 00');
    const a = ch.transmitRaw(Buffer.from('00010000', 'hex'));
    const b = ch.transmitRaw(Buffer.from('00020000', 'hex'));
    await until(() => fake.pending.length === 1);
    await tick(20);
    expect(fake.pending).toHaveLength(1); // b waits for a
    fake.pending[0]!.answer(OK);
    await until(() => fake.pending.length === 2);
    fake.pending[1]!.answer(Buffer.from([0x6a, 0x82]));
    expect(await a).toEqual(OK);
    expect((await b).toString('hex')).toBe('6a82');
    await ch.close();
  });
});

describe('watching', () => {
  it('reports readers and cards as events and through the async iterator, then ends on close()', async () => {
    const w = watchReaders();
    const viaEvents: string[] = [];
    w.on('event', (e: PcscEvent) => viaEvents.push(`${e.type}${'reader' in e ? ' ' + e.reader : ''}`));
    const viaIterator: string[] = [];
    const loop = (async () => {
      for await (const e of w) viaIterator.push(`${e.type}${'reader' in e ? ' ' + e.reader : ''}`);
    })();
    await w.ready;
    fake.insert('ACME Reader 00 01', ATR);
    fake.pull('ACME Reader 00 00');
    fake.addReader('ACME Reader 01 00');
    await tick(50);
    fake.removeReader('ACME Reader 01 00');
    await tick(50);
    await w.close();
    await loop;
    const expected = [
      'reader-added ACME Reader 00 00',
      'card-inserted ACME Reader 00 00',
      'reader-added ACME Reader 00 01',
      'card-inserted ACME Reader 00 01',
      'card-removed ACME Reader 00 00',
      'reader-added ACME Reader 01 00',
      'reader-removed ACME Reader 01 00',
    ];
    // Order between readers depends on thread timing; per reader it is fixed.
    const perReader = (list: string[]) => {
      const out: Record<string, string[]> = {};
      for (const l of list) (out[l.split(' ').slice(1).join(' ')] ??= []).push(l);
      return out;
    };
    expect(perReader(viaEvents)).toEqual(perReader(expected));
    expect(viaIterator).toEqual(viaEvents);
  });

  it('follows pcscd going away and coming back, reporting what changed meanwhile', async () => {
    const w = watchReaders({ initial: false, retryMs: 30 });
    const seen: string[] = [];
    w.on('event', (e: PcscEvent) => seen.push(`${e.type}${'reader' in e ? ' ' + e.reader : ''}`));
    await w.ready;
    fake.establishError = new Error('SCardEstablishContext error: Service not available.(0x8010001d)');
    fake.killPcscd();
    await until(() => seen.includes('pcscd-lost'));
    fake.readers.delete('ACME Reader 00 00');
    fake.readers.set('ACME Reader 00 01', ATR);
    fake.establishError = undefined;
    await until(() => seen.includes('pcscd-back'));
    await until(() => seen.length >= 5);
    expect(seen).toEqual([
      'pcscd-lost',
      'pcscd-back',
      'card-removed ACME Reader 00 00',
      'reader-removed ACME Reader 00 00',
      'card-inserted ACME Reader 00 01',
    ]);
    await w.close();
  });

  it('the iterator throws PCSC_UNAVAILABLE when PC/SC cannot be used at all', async () => {
    fake.establishError = new Error('SCardEstablishContext error: Service not available.(0x8010001d)');
    const w = watchReaders();
    const e = await rejection(
      (async () => {
        for await (const _ of w) {
          /* nothing */
        }
      })(),
    );
    expect(e.code).toBe('PCSC_UNAVAILABLE');
    await expect(w.ready).rejects.toMatchObject({ code: 'PCSC_UNAVAILABLE' });
  });
});
