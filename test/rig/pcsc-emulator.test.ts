// Host -> pcsclite -> the real pcscd -> vpcd -> `purselab emulate` (reference applet) and back.
// Two emulated cards in two vpcd slots at once (one emulator process), plus a T=0 card in a third.

import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { command } from '../../src/apdu/command.ts';
import { openChannel } from '../../src/transport/open.ts';
import { listReaders, openPcscChannel, type PcscChannel } from '../../src/transport/pcsc.ts';
import { TransportError } from '../../src/transport/errors.ts';
import type { CardChannel } from '../../src/transport/channel.ts';
import { loadCardImage } from '../../card-applet-sim/os/image.ts';
import { ReferenceApplet, REFERENCE_AID } from '../../card-applet-sim/applets/index.ts';
import { describeRig, detectRig, freeSlots, killAll, startEmulator, tempDir, waitForReader, noCardIn, type Proc } from './rig.ts';

const rig = await detectRig(3);

const select = () => command(0x00, 0xa4, 0x04, 0x00, REFERENCE_AID, 256);
const echo = (data: Buffer, le?: number) => command(0x80, 0x01, 0x00, 0x00, data, le);
const increment = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return command(0x80, 0x02, 0x00, 0x00, b, 256);
};
const readCounter = () => command(0x80, 0x04, 0x00, 0x00, undefined, 256);
const sessionInfo = () => command(0x80, 0x06, 0x00, 0x00, undefined, 256);
const getData = (n: number, le: number) => command(0x80, 0xca, n >> 8, n & 0xff, undefined, le);
const store = (data: Buffer) => command(0x80, 0x10, 0x00, 0x00, data, 256);
const readStore = (le: number) => command(0x80, 0x12, 0x00, 0x00, undefined, le);
const pattern = (n: number) => Buffer.from(Array.from({ length: n }, (_, i) => i & 0xff));

describeRig('PC/SC rig: pcsclite -> pcscd -> vpcd -> emulator', rig, () => {
  const tmp = tempDir();
  let slots: { reader: string; port: number }[] = [];
  let emu: Proc;
  let emuT0: Proc;
  const imgA = join(tmp.path, 'a.img');
  const imgB = join(tmp.path, 'b.img');
  const imgT0 = join(tmp.path, 't0.img');
  const open: CardChannel[] = [];
  const track = <C extends CardChannel>(c: C): C => {
    open.push(c);
    return c;
  };

  beforeAll(async () => {
    slots = await freeSlots(3);
    const [a, b, c] = slots as [typeof slots[0], typeof slots[0], typeof slots[0]];
    emu = await startEmulator(['--vpcd', `127.0.0.1:${a.port}`, '--card', imgA, '--vpcd', `127.0.0.1:${b.port}`, '--card', imgB], [a.reader, b.reader]);
    emuT0 = await startEmulator(['--vpcd', `127.0.0.1:${c.port}`, '--card', imgT0, '--protocol', 'T=0'], [c.reader]);
  });

  afterAll(async () => {
    for (const c of open) await c.close().catch(() => undefined);
    await emu?.stop();
    await emuT0?.stop();
    await killAll();
    tmp.remove();
  });

  it('lists both emulated cards with the ATR of their card image', async () => {
    const readers = await listReaders();
    for (const [slot, img] of [[slots[0]!, imgA], [slots[1]!, imgB]] as const) {
      const r = readers.find((x) => x.name === slot.reader)!;
      expect(r.cardPresent).toBe(true);
      expect(r.atr.toString('hex')).toBe(loadCardImage(img).atr.toString('hex'));
    }
    expect(emu.stdout).toContain('did not exist: created a new T=1 card with the reference applet');
  });

  it('selects the reference applet, echoes and counts (T=1)', async () => {
    const ch = track(await openPcscChannel(slots[0]!.reader));
    expect(ch.protocol).toBe('T=1');
    expect(ch.atr.length).toBeGreaterThan(2);
    const fci = await ch.transmit(select());
    expect(fci.sw).toBe(0x9000);
    expect(fci.data.toString('hex').toUpperCase()).toBe(`6F11840A${REFERENCE_AID.toString('hex').toUpperCase()}A503800101`);
    const e = await ch.transmit(echo(Buffer.from('hello card'), 256));
    expect(e).toEqual({ data: Buffer.from('hello card'), sw: 0x9000 });
    const before = (await ch.transmit(readCounter())).data.readUInt32BE(0);
    const inc = await ch.transmit(increment(5));
    expect(inc.sw).toBe(0x9000);
    expect(inc.data.readUInt32BE(0)).toBe(before + 5);
    const rc = await ch.transmit(readCounter());
    expect(rc.data.readUInt32BE(0)).toBe(before + 5);
    expect(rc.data.readUInt32BE(8)).toBe(5); // last amount
    await ch.close();
  });

  it('opens by unique substring through openChannel and reports an ambiguous or unknown reader with the list', async () => {
    const suffix = slots[0]!.reader.replace('Virtual ', '');
    const ch = track(await openChannel(suffix));
    expect(ch.readerName).toBe(slots[0]!.reader);
    await ch.close();
    await expect(openChannel('Virtual PCD')).rejects.toMatchObject({ code: 'NO_SUCH_READER', message: expect.stringContaining('ambiguous') });
    const err = (await openChannel('No Such Reader 99').catch((e) => e)) as TransportError;
    expect(err.code).toBe('NO_SUCH_READER');
    expect(err.message).toContain(slots[0]!.reader);
  });

  it('long responses: 61xx GET RESPONSE and extended Le', async () => {
    const ch = track(await openPcscChannel(slots[0]!.reader));
    await ch.transmit(select());
    // 600 bytes with a short Le: the card sends 256 + 61xx, the channel collects the rest.
    const viaGetResponse = await ch.transmit(getData(600, 256));
    expect(viaGetResponse.sw).toBe(0x9000);
    expect(viaGetResponse.data).toEqual(pattern(600));
    // The same with an extended Le in one exchange.
    const ext = await ch.transmit(getData(4000, 65536));
    expect(ext.sw).toBe(0x9000);
    expect(ext.data).toEqual(pattern(4000));
    await ch.close();
  });

  it('long commands: chained STORE and an extended-length STORE round-trip', async () => {
    const ch = track(await openPcscChannel(slots[0]!.reader));
    await ch.transmit(select());
    const big = Buffer.from(Array.from({ length: 1000 }, (_, i) => (i * 7) & 0xff));
    const chained = await ch.transmit(store(big));
    expect(chained).toEqual({ data: Buffer.from([0x03, 0xe8]), sw: 0x9000 });
    expect((await ch.transmit(readStore(65536))).data).toEqual(big);
    const big2 = Buffer.from(big).reverse();
    const extended = await ch.transmit(store(big2), { extended: true });
    expect(extended).toEqual({ data: Buffer.from([0x03, 0xe8]), sw: 0x9000 });
    expect((await ch.transmit(readStore(256))).data).toEqual(big2); // 256 + 61xx rounds
    await ch.close();
  });

  it('T=0 card: pcscd negotiates T=0 and the channel follows 61xx and 6Cxx', async () => {
    const ch = track(await openPcscChannel(slots[2]!.reader));
    expect(ch.protocol).toBe('T=0');
    // Raw: a case-4 command on T=0 gets 61xx (data waiting for GET RESPONSE).
    const raw = await ch.transmitRaw(Buffer.from('00A404000A' + REFERENCE_AID.toString('hex'), 'hex'));
    expect(raw[0]).toBe(0x61);
    expect(raw.length).toBe(2);
    // Through transmit() the GET RESPONSE is automatic.
    const fci = await ch.transmit(select());
    expect(fci.sw).toBe(0x9000);
    expect(fci.data[0]).toBe(0x6f);
    expect(await ch.transmit(echo(Buffer.from('t0 echo'), 256))).toEqual({ data: Buffer.from('t0 echo'), sw: 0x9000 });
    // Le too short: the card says 6C14, the channel re-issues with Le=20.
    const rawWrongLe = await ch.transmitRaw(Buffer.from('80CA001400', 'hex'));
    expect(rawWrongLe.toString('hex')).toBe('6c14');
    const d = await ch.transmit(getData(20, 256));
    expect(d).toEqual({ data: pattern(20), sw: 0x9000 });
    const long = await ch.transmit(getData(700, 256));
    expect(long).toEqual({ data: pattern(700), sw: 0x9000 });
    await ch.close();
  });

  it('two emulated cards in two slots at once, used concurrently and independent', async () => {
    const a = track(await openPcscChannel(slots[0]!.reader));
    const b = track(await openPcscChannel(slots[1]!.reader));
    await Promise.all([a.transmit(select()), b.transmit(select())]);
    const base = await Promise.all([a.transmit(readCounter()), b.transmit(readCounter())]);
    const [ca, cb] = base.map((r) => r.data.readUInt32BE(0)) as [number, number];
    const work = async (ch: PcscChannel, n: number, rounds: number) => {
      for (let i = 0; i < rounds; i++) expect((await ch.transmit(increment(n))).sw).toBe(0x9000);
    };
    await Promise.all([work(a, 1, 25), work(b, 3, 25)]);
    expect((await a.transmit(readCounter())).data.readUInt32BE(0)).toBe(ca + 25);
    expect((await b.transmit(readCounter())).data.readUInt32BE(0)).toBe(cb + 75);
    await Promise.all([a.close(), b.close()]);
  });

  it('exclusive mode keeps other connections out; shared mode lets them in', async () => {
    const ex = track(await openPcscChannel(slots[1]!.reader, { shareMode: 'exclusive' }));
    expect(ex.shareMode).toBe('exclusive');
    const err = (await openPcscChannel(slots[1]!.reader).catch((e) => e)) as TransportError;
    expect(err).toBeInstanceOf(TransportError);
    expect(err.code).toBe('READER_BUSY');
    expect(err.message).toMatch(/exclusive use/);
    await ex.close();
    const s1 = track(await openPcscChannel(slots[1]!.reader));
    const s2 = track(await openPcscChannel(slots[1]!.reader));
    expect((await s1.transmit(select())).sw).toBe(0x9000);
    expect((await s2.transmit(select())).sw).toBe(0x9000);
    await s1.close();
    await s2.close();
  });

  it('reset() resets the card (session counters and selection cleared) and returns the ATR', async () => {
    const ch = track(await openPcscChannel(slots[0]!.reader));
    await ch.transmit(select());
    await ch.transmit(echo(Buffer.from('x')));
    const before = (await ch.transmit(sessionInfo())).data.readUInt16BE(2);
    expect(before).toBeGreaterThanOrEqual(2);
    const atr = await ch.reset();
    expect(atr).toEqual(ch.atr);
    // After the reset nothing is selected: the applet's command is not understood by the card OS.
    expect((await ch.transmit(sessionInfo())).sw).not.toBe(0x9000);
    await ch.transmit(select());
    expect((await ch.transmit(sessionInfo())).data.readUInt16BE(2)).toBe(1);
    const cold = await ch.reset({ cold: true });
    expect(cold).toEqual(atr);
    await ch.close();
  });

  it('a closed channel says so', async () => {
    const ch = await openPcscChannel(slots[0]!.reader);
    await ch.close();
    await ch.close(); // idempotent
    await expect(ch.transmit(select())).rejects.toMatchObject({ code: 'CHANNEL_CLOSED' });
  });

  it('emulate saves the card images on SIGTERM and exits 0; the counters survive', async () => {
    const ch = await openPcscChannel(slots[1]!.reader);
    await ch.transmit(select());
    const value = (await ch.transmit(increment(1000))).data.readUInt32BE(0);
    await ch.close();
    const exit = await emu.stop('SIGTERM');
    expect(exit).toEqual({ code: 0, signal: null });
    expect(emu.stdout).toContain(`saved ${imgB}`);
    expect(await waitForReader(slots[1]!.reader, noCardIn, 5000)).toBe(true);
    const card = loadCardImage(imgB);
    expect(card.getApplet<ReferenceApplet>(REFERENCE_AID)!.counter.get()).toBe(value);
  });
});
