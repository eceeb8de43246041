// EmulatorChannel: the host CardChannel over an in-process card, with the ISO exchange rules from isoTransmit;
// power loss as a typed TransportError; images opened and saved back on close.

import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { command } from '../../../src/apdu/command.ts';
import { TransportError } from '../../../src/transport/errors.ts';
import { EmulatorChannel, openEmulatorChannel, openEmulatorImage } from '../../../src/transport/emulator-channel.ts';
import { openChannel } from '../../../src/transport/open.ts';
import { CardImageError, loadCardImage } from '../../../card-applet-sim/index.ts';
import { REF, hex, readCounter, referenceCard, selectedReferenceCard } from './helpers.ts';

const dir = mkdtempSync(join(tmpdir(), 'purselab-emuchan-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const pattern = (n: number): Buffer => Buffer.from(Array.from({ length: n }, (_, i) => i & 0xff));
const SELECT = command(0x00, 0xa4, 0x04, 0x00, REF);

async function expectTransportError(p: Promise<unknown>, code: string): Promise<void> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(TransportError);
  expect((e as TransportError).code).toBe(code);
}

describe('EmulatorChannel', () => {
  it('reports reader name, ATR and protocol; transmits with the ISO rules', async () => {
    const card = referenceCard();
    const ch = openEmulatorChannel(card, { readerName: 'test reader' });
    expect(ch).toBeInstanceOf(EmulatorChannel);
    expect(ch.readerName).toBe('test reader');
    expect(ch.atr).toEqual(card.atr);
    expect(ch.protocol).toBe('T=1');
    expect((await ch.transmit(SELECT)).sw).toBe(0x9000);
    expect(await ch.transmit(command(0x80, 0x01, 0, 0, hex('AABB'), 256))).toEqual({ data: hex('AABB'), sw: 0x9000 });
    // 300 bytes: 61xx + GET RESPONSE handled by the channel
    expect(await ch.transmit(command(0x80, 0xca, 0x01, 0x2c, undefined, 256))).toEqual({ data: pattern(300), sw: 0x9000 });
    // extended Le
    expect(await ch.transmit(command(0x80, 0xca, 0x10, 0x00, undefined, 65536))).toEqual({ data: pattern(4096), sw: 0x9000 });
    expect((await ch.transmitRaw(hex('80 01 00 00 01 AA 00'))).toString('hex')).toBe('aa9000');
  });

  it('T=0: case 4 through 61xx, case 2 through 6Cxx', async () => {
    const ch = openEmulatorChannel(selectedReferenceCard({ protocol: 'T=0' }));
    expect(ch.protocol).toBe('T=0');
    expect(await ch.transmit(command(0x80, 0x01, 0, 0, hex('010203'), 256))).toEqual({ data: hex('010203'), sw: 0x9000 });
    expect(await ch.transmit(command(0x80, 0x04, 0, 0, undefined, 256))).toEqual({ data: Buffer.alloc(12), sw: 0x9000 });
    expect(await ch.transmit(command(0x80, 0xca, 0x02, 0x00, undefined, 256))).toEqual({ data: pattern(512), sw: 0x9000 });
  });

  it('long data: command chaining to STORE, 6884 for ECHO, extended form on request', async () => {
    const ch = openEmulatorChannel(selectedReferenceCard());
    const data = pattern(1000);
    expect(await ch.transmit(command(0x80, 0x10, 0, 0, data, 256))).toEqual({ data: hex('03E8'), sw: 0x9000 });
    expect(await ch.transmit(command(0x80, 0x12, 0, 0, undefined, 256))).toEqual({ data, sw: 0x9000 });
    expect((await ch.transmit(command(0x80, 0x01, 0, 0, data, 256))).sw).toBe(0x6884);
    expect(await ch.transmit(command(0x80, 0x01, 0, 0, data, 65536), { extended: true })).toEqual({ data, sw: 0x9000 });
  });

  it('power loss: CARD_REMOVED (no hang); reset powers the card up again', async () => {
    const card = selectedReferenceCard();
    const ch = openEmulatorChannel(card);
    card.armPowerLoss(1);
    await expectTransportError(ch.transmit(command(0x80, 0x02, 0, 0, hex('00000001'))), 'CARD_REMOVED');
    await expectTransportError(ch.transmitRaw(hex('80010000')), 'CARD_REMOVED');
    expect(await ch.reset()).toEqual(card.atr);
    expect((await ch.transmit(SELECT)).sw).toBe(0x9000);
    expect(readCounter(card).counter).toBe(0);
    card.powerOff();
    await expectTransportError(ch.transmit(SELECT), 'CARD_REMOVED');
    expect(await ch.reset({ cold: true })).toEqual(card.atr);
    expect((await ch.transmit(SELECT)).sw).toBe(0x9000);
  });

  it('powers on a card that is off; close is idempotent, calls onClose once, then CHANNEL_CLOSED', async () => {
    const card = referenceCard({ poweredOff: true });
    let closes = 0;
    const ch = new EmulatorChannel(card, { onClose: () => void closes++ });
    expect(card.isPowered).toBe(true);
    await ch.close();
    await ch.close();
    expect(closes).toBe(1);
    expect(ch.isClosed).toBe(true);
    await expectTransportError(ch.transmit(SELECT), 'CHANNEL_CLOSED');
    await expectTransportError(ch.transmitRaw(hex('80010000')), 'CHANNEL_CLOSED');
    await expectTransportError(ch.reset(), 'CHANNEL_CLOSED');
  });

  it('concurrent transmits do not interleave their GET RESPONSE sequences', async () => {
    const ch = openEmulatorChannel(selectedReferenceCard({ protocol: 'T=0' }));
    const results = await Promise.all(
      Array.from({ length: 40 }, (_, i) =>
        i % 2 ? ch.transmit(command(0x80, 0xca, 0x01, 0x2c + i, undefined, 256)) : ch.transmit(command(0x80, 0x01, 0, 0, Buffer.from([i, i]), 256)),
      ),
    );
    results.forEach((r, i) => {
      expect(r.sw).toBe(0x9000);
      expect(r.data).toEqual(i % 2 ? pattern(0x12c + i) : Buffer.from([i, i]));
    });
  });

  it('is not pathologically slow (50,000 APDUs through the channel; the figure is in `purselab bench emulator`)', async () => {
    const ch = openEmulatorChannel(selectedReferenceCard());
    const echo = command(0x80, 0x01, 0, 0, hex('DEADBEEF'), 256);
    for (let i = 0; i < 50_000; i++) {
      const r = await ch.transmit(echo);
      if (r.sw !== 0x9000) throw new Error(`APDU ${i}: ${r.sw.toString(16)}`);
    }
  });
});

describe('openEmulatorImage', () => {
  it('missing image: CardImageError; with create: made and saved at once', async () => {
    const path = join(dir, 'new.img');
    await expect(openEmulatorImage(path)).rejects.toThrow(CardImageError);
    const ch = await openEmulatorImage(path, { create: () => referenceCard() });
    expect(existsSync(path)).toBe(true);
    expect(ch.readerName).toContain(path);
    await ch.close();
  });

  it('loads, powers on, and saves back atomically on close; state survives a restart', async () => {
    const path = join(dir, 'persist.img');
    let ch = await openEmulatorImage(path, { create: () => referenceCard() });
    await ch.transmit(SELECT);
    await ch.transmit(command(0x80, 0x02, 0, 0, hex('00000007'), 256));
    await ch.close();
    ch = await openEmulatorImage(path);
    await ch.transmit(SELECT);
    expect((await ch.transmit(command(0x80, 0x04, 0, 0, undefined, 256))).data.readUInt32BE(0)).toBe(7);
    await ch.transmit(command(0x80, 0x02, 0, 0, hex('00000001'), 256));
    await ch.close();
    const card = loadCardImage(path);
    card.select(REF);
    expect(readCounter(card)).toEqual({ counter: 8, increments: 2, last: 1 });
  });

  it('saveOnClose: false leaves the image as it was', async () => {
    const path = join(dir, 'ro.img');
    (await openEmulatorImage(path, { create: () => referenceCard() })).close();
    const ch = await openEmulatorImage(path, { saveOnClose: false });
    await ch.transmit(SELECT);
    await ch.transmit(command(0x80, 0x02, 0, 0, hex('00000001')));
    await ch.close();
    const card = loadCardImage(path);
    card.select(REF);
    expect(readCounter(card).counter).toBe(0);
  });

  it('openChannel("emu:PATH") (src/transport/open.ts) reaches it', async () => {
    const path = join(dir, 'spec.img');
    (await openEmulatorImage(path, { create: () => referenceCard() })).close();
    const ch = await openChannel(`emu:${path}`);
    expect((await ch.transmit(SELECT)).sw).toBe(0x9000);
    await ch.close();
  });
});
