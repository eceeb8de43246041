// The vpcd connector against a stand-in for pcscd's vpcd driver (a TCP server speaking vpcd framing):
// framing, control messages, APDUs, one write per frame, bad frames, reconnect with backoff, stop().

import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { parseVpcdAddress, VpcdConnector, type VpcdCard } from '../../card-applet-sim/vpcd/connector.ts';
import { encodeFrame, VpcdFrameDecoder, VpcdFrameError } from '../../card-applet-sim/vpcd/frame.ts';
import { NullResponderCard, RESPONDER_ATR } from '../../card-applet-sim/vpcd/responder.ts';

const tick = (ms = 10) => new Promise((r) => setTimeout(r, ms));
async function until(pred: () => boolean, ms = 3000): Promise<void> {
  const t0 = Date.now();
  while (!pred()) {
    if (Date.now() - t0 > ms) throw new Error('condition not reached');
    await tick(5);
  }
}

/** A fake vpcd slot: accepts one card connection at a time and exchanges frames with it. */
class FakeVpcd {
  readonly server = net.createServer((s) => this.onConnection(s));
  socket: net.Socket | undefined;
  connections = 0;
  /** Raw chunks received (to check one write per frame). */
  chunks: Buffer[] = [];
  private buf = Buffer.alloc(0);
  private waiting: ((b: Buffer) => void)[] = [];
  private frames: Buffer[] = [];

  async listen(port = 0): Promise<number> {
    await new Promise<void>((r) => this.server.listen(port, '127.0.0.1', r));
    return (this.server.address() as net.AddressInfo).port;
  }

  private onConnection(s: net.Socket): void {
    this.connections++;
    this.socket = s;
    this.buf = Buffer.alloc(0);
    this.frames = [];
    s.setNoDelay(true);
    s.on('data', (d: Buffer) => {
      this.chunks.push(d);
      this.buf = Buffer.concat([this.buf, d]);
      while (this.buf.length >= 2 && this.buf.length >= 2 + this.buf.readUInt16BE(0)) {
        const len = this.buf.readUInt16BE(0);
        const body = this.buf.subarray(2, 2 + len);
        this.buf = this.buf.subarray(2 + len);
        const w = this.waiting.shift();
        if (w) w(body);
        else this.frames.push(body);
      }
    });
    s.on('error', () => undefined);
  }

  send(body: Buffer): void {
    this.socket!.write(encodeFrame(body));
  }

  next(ms = 2000): Promise<Buffer> {
    const f = this.frames.shift();
    if (f) return Promise.resolve(f);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('no frame from the card')), ms);
      this.waiting.push((b) => {
        clearTimeout(t);
        resolve(b);
      });
    });
  }

  async exchange(body: Buffer): Promise<Buffer> {
    this.send(body);
    return this.next();
  }

  async close(): Promise<void> {
    this.socket?.destroy();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}

class RecordingCard extends NullResponderCard {
  log: string[] = [];
  override powerOn(): Buffer {
    this.log.push('on');
    return super.powerOn();
  }
  override powerOff(): void {
    this.log.push('off');
    super.powerOff();
  }
  override reset(): Buffer {
    this.log.push('reset');
    return super.reset();
  }
  override transmit(apdu: Buffer): Buffer {
    this.log.push(apdu.toString('hex'));
    if (apdu[1] === 0xe1) throw new Error('applet bug');
    if (apdu[1] === 0xe2) return Buffer.alloc(0); // power lost mid-command
    if (apdu[1] === 0xca) return Buffer.concat([Buffer.alloc(300, 0xab), Buffer.from([0x90, 0x00])]);
    return super.transmit(apdu);
  }
}

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

async function setup(card: VpcdCard = new RecordingCard(), opts: { minBackoffMs?: number } = {}) {
  const vpcd = new FakeVpcd();
  const port = await vpcd.listen();
  const logs: string[] = [];
  const connector = new VpcdConnector({ host: '127.0.0.1', port, card, log: (l) => logs.push(l), minBackoffMs: opts.minBackoffMs ?? 20, maxBackoffMs: 100 });
  cleanup.push(async () => {
    await connector.stop();
    await vpcd.close();
  });
  connector.start();
  await until(() => vpcd.socket !== undefined);
  return { vpcd, connector, card, logs, port };
}

describe('vpcd framing', () => {
  it('encodes length + body in one buffer', () => {
    expect(encodeFrame(Buffer.from([0x90, 0x00])).toString('hex')).toBe('00029000');
    expect(() => encodeFrame(Buffer.alloc(0x10000))).toThrow(VpcdFrameError);
  });

  it('decodes frames split across chunks and several frames per chunk', () => {
    const d = new VpcdFrameDecoder();
    const all = Buffer.concat([encodeFrame(Buffer.from([4])), encodeFrame(Buffer.from('00A4040000', 'hex')), encodeFrame(Buffer.from([1]))]);
    const out = [...d.push(all.subarray(0, 1)), ...d.push(all.subarray(1, 5)), ...d.push(all.subarray(5))];
    expect(out).toEqual([
      { kind: 'control', code: 4 },
      { kind: 'apdu', apdu: Buffer.from('00A4040000', 'hex') },
      { kind: 'control', code: 1 },
    ]);
    expect(d.buffered).toBe(0);
  });

  it.each([
    ['0000', /empty frame/],
    ['00020102', /2-byte frame/],
    ['0003010203', /3-byte frame/],
  ])('rejects a frame no vpcd sends: %s', (hex, msg) => {
    expect(() => new VpcdFrameDecoder().push(Buffer.from(hex, 'hex'))).toThrow(msg);
  });

  it('parses vpcd addresses', () => {
    expect(parseVpcdAddress('127.0.0.1:35964')).toEqual({ host: '127.0.0.1', port: 35964 });
    expect(parseVpcdAddress('35965')).toEqual({ host: '127.0.0.1', port: 35965 });
    expect(parseVpcdAddress('pcscd-host')).toEqual({ host: 'pcscd-host', port: 35963 });
    expect(parseVpcdAddress('[::1]:35963')).toEqual({ host: '::1', port: 35963 });
    expect(() => parseVpcdAddress('h:70000')).toThrow(/bad vpcd port/);
    expect(() => parseVpcdAddress('')).toThrow(/bad vpcd address/);
  });
});

describe('vpcd connector', () => {
  it('answers get-ATR, power and reset control bytes (no answer to those), and APDUs', async () => {
    const { vpcd, card } = await setup();
    const log = (card as RecordingCard).log;
    expect(await vpcd.exchange(Buffer.from([4]))).toEqual(RESPONDER_ATR);
    vpcd.send(Buffer.from([1]));
    vpcd.send(Buffer.from([0]));
    vpcd.send(Buffer.from([2]));
    expect(await vpcd.exchange(Buffer.from('00A4040000', 'hex'))).toEqual(Buffer.from([0x90, 0x00]));
    expect(log).toEqual(['on', 'off', 'reset', '00a4040000']);
    const long = await vpcd.exchange(Buffer.from('80CA0000', 'hex'));
    expect(long.length).toBe(302);
  });

  it('writes each frame in one piece', async () => {
    const { vpcd } = await setup();
    vpcd.chunks = [];
    for (let i = 0; i < 20; i++) await vpcd.exchange(Buffer.from('00010000', 'hex'));
    expect(vpcd.chunks.every((c) => c.length === 4 && c.toString('hex') === '00029000')).toBe(true);
  });

  it('a card error answers 6F00 and keeps the connection', async () => {
    const { vpcd, connector, logs } = await setup();
    expect(await vpcd.exchange(Buffer.from('80E10000', 'hex'))).toEqual(Buffer.from([0x6f, 0x00]));
    expect(logs.join('\n')).toMatch(/card error on APDU 80E10000: applet bug; answered 6F00/);
    expect(connector.stats.cardErrors).toBe(1);
    expect(vpcd.connections).toBe(1);
  });

  it('a card that goes mute mid-command leaves the slot and comes back (pcscd sees remove + insert)', async () => {
    const { vpcd, logs } = await setup();
    vpcd.send(Buffer.from('80E20000', 'hex'));
    await until(() => vpcd.connections === 2);
    expect(logs.join('\n')).toMatch(/gave no answer to 80E20000 \(power lost\)/);
    expect(await vpcd.exchange(Buffer.from([4]))).toEqual(RESPONDER_ATR);
  });

  it('a bad frame drops the connection with one logged line, then reconnects', async () => {
    const { vpcd, connector, logs } = await setup();
    vpcd.socket!.write(Buffer.from('0002abcd', 'hex'));
    await until(() => vpcd.connections === 2);
    expect(connector.stats.badFrames).toBe(1);
    expect(logs.filter((l) => /2-byte frame/.test(l))).toHaveLength(1);
    expect(await vpcd.exchange(Buffer.from([4]))).toEqual(RESPONDER_ATR);
  });

  it('an unknown control byte is a bad frame too', async () => {
    const { vpcd, logs } = await setup();
    vpcd.send(Buffer.from([7]));
    await until(() => vpcd.connections === 2);
    expect(logs.join('\n')).toMatch(/unknown vpcd control byte 0x07/);
  });

  it('waits for pcscd with backoff (one log line), connects when it appears, reconnects after a restart', async () => {
    // Find a free port, then start with nothing listening there.
    const probe = new FakeVpcd();
    const port = await probe.listen();
    await probe.close();
    const logs: string[] = [];
    const connector = new VpcdConnector({ host: '127.0.0.1', port, card: new NullResponderCard(), log: (l) => logs.push(l), minBackoffMs: 10, maxBackoffMs: 40 });
    const vpcd = new FakeVpcd();
    cleanup.push(async () => {
      await connector.stop();
      await vpcd.close().catch(() => undefined);
    });
    connector.start();
    await tick(200);
    expect(connector.state === 'waiting' || connector.state === 'connecting').toBe(true);
    expect(logs.filter((l) => /cannot reach pcscd's vpcd port \(ECONNREFUSED\)/.test(l))).toHaveLength(1);
    await vpcd.listen(port);
    await until(() => vpcd.socket !== undefined);
    const session = connector.waitForSession(2000);
    expect(await vpcd.exchange(Buffer.from([4]))).toEqual(RESPONDER_ATR);
    await session;
    // "pcscd restarts": the connection closes; the connector comes back on its own.
    vpcd.socket!.destroy();
    await until(() => vpcd.connections === 2);
    expect(logs.join('\n')).toMatch(/connection lost/);
    expect(await vpcd.exchange(Buffer.from([4]))).toEqual(RESPONDER_ATR);
    expect(connector.stats.sessions).toBe(2);
  });

  it('stop() disconnects, stops reconnecting and leaves nothing running', async () => {
    const { vpcd, connector } = await setup();
    await vpcd.exchange(Buffer.from([4]));
    const closed = new Promise((r) => vpcd.socket!.once('close', r));
    await connector.stop();
    await closed;
    expect(connector.state).toBe('stopped');
    await tick(150);
    expect(vpcd.connections).toBe(1);
    await connector.stop(); // idempotent
  });

  it('serves several cards on several ports from one process', async () => {
    const a = await setup(new RecordingCard());
    const b = await setup(new (class extends NullResponderCard {
      override transmit(): Buffer {
        return Buffer.from([0x6a, 0x82]);
      }
    })(Buffer.from('3B00', 'hex')));
    const [ra, rb] = await Promise.all([a.vpcd.exchange(Buffer.from('00010000', 'hex')), b.vpcd.exchange(Buffer.from('00010000', 'hex'))]);
    expect(ra.toString('hex')).toBe('9000');
    expect(rb.toString('hex')).toBe('6a82');
    expect((await b.vpcd.exchange(Buffer.from([4]))).toString('hex')).toBe('3b00');
  });
});
