// TtyLine (hsm-bridge/serial/tty-line.ts) over a real socat pty pair: reads on the event loop, order kept across
// partial writes, stale input dropped, the line's loss reported once and never after close(), no descriptor
// left behind by a failed open.

import { openSync, closeSync, readdirSync, writeFileSync, writeSync, constants } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { TtyLine } from '../../../hsm-bridge/serial/tty-line.ts';
import { socatMissing, startPtyPair, tempDir, type PtyPair } from './serial-support/rig.ts';

const openFds = (): number => readdirSync('/proc/self/fd').length;

async function until(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

describe.skipIf(socatMissing() !== undefined)('TtyLine over a socat pty pair', () => {
  let tmp: ReturnType<typeof tempDir>;
  let pty: PtyPair;
  const lines: TtyLine[] = [];

  beforeEach(async () => {
    tmp = tempDir('purselab-ttyline-');
    pty = await startPtyPair(tmp.dir, 't');
  });
  afterEach(async () => {
    for (const l of lines.splice(0)) await l.close();
    await pty.kill().catch(() => undefined);
    tmp.cleanup();
  });

  const open = async (path: string, got: Buffer[], downs: Error[] = []): Promise<TtyLine> => {
    const l = await TtyLine.open({ path, baudRate: 115200 }, { data: (c) => got.push(c), down: (e) => downs.push(e) });
    lines.push(l);
    return l;
  };

  it('reads on the event loop, and 20 KB written in one call arrive whole and in order (partial writes queued behind)', async () => {
    const atSim: Buffer[] = [];
    const host = await open(pty.hostPath, []);
    await open(pty.simPath, atSim);
    expect(host.readsOnLoop).toBe(true);
    const payload = Buffer.alloc(20_000);
    for (let i = 0; i < payload.length; i++) payload[i] = (i * 7 + (i >> 8)) & 0xff;
    await host.write(payload.subarray(0, 15_000));
    await host.write(payload.subarray(15_000));
    await until(() => Buffer.concat(atSim).length >= payload.length, '20 KB at the far end');
    expect(Buffer.concat(atSim).equals(payload)).toBe(true);
  });

  it('drops bytes that were waiting before it opened', async () => {
    const atSim: Buffer[] = [];
    const host = await open(pty.hostPath, []);
    // Someone else holds the far end open, so the tty keeps what arrives (a tty nobody has open drops it).
    const holder = openSync(pty.simPath, constants.O_RDONLY | constants.O_NOCTTY | constants.O_NONBLOCK);
    try {
      await host.write(Buffer.from('stale'));
      await sleep(100);
      await open(pty.simPath, atSim);
    } finally {
      closeSync(holder);
    }
    await host.write(Buffer.from('fresh'));
    await until(() => Buffer.concat(atSim).length >= 5, 'fresh bytes');
    await sleep(50);
    expect(Buffer.concat(atSim).toString()).toBe('fresh');
  });

  it('reports the line lost once when the pty pair goes away, and write() then rejects', async () => {
    const downs: Error[] = [];
    const host = await open(pty.hostPath, [], downs);
    await open(pty.simPath, []);
    await pty.kill();
    await until(() => downs.length > 0, 'line lost');
    await sleep(100);
    expect(downs).toHaveLength(1);
    expect(host.isOpen).toBe(false);
    await expect(host.write(Buffer.from('x'))).rejects.toThrow(/not open/);
  });

  it('close() is quiet (no loss reported), idempotent, and releases both descriptors', async () => {
    const before = openFds();
    const downs: Error[] = [];
    const host = await open(pty.hostPath, [], downs);
    expect(openFds()).toBeGreaterThanOrEqual(before + 2);
    await host.close();
    await host.close();
    await sleep(50);
    expect(downs).toHaveLength(0);
    expect(openFds()).toBe(before);
  });

  it('a path that cannot be opened fails with serialport\'s error and leaves no descriptor open', async () => {
    const before = openFds();
    await expect(TtyLine.open({ path: join(tmp.dir, 'missing'), baudRate: 115200 }, { data: () => undefined, down: () => undefined })).rejects.toThrow(/missing/);
    const file = join(tmp.dir, 'plain-file');
    writeFileSync(file, 'not a tty');
    await expect(TtyLine.open({ path: file, baudRate: 115200 }, { data: () => undefined, down: () => undefined })).rejects.toThrow();
    expect(openFds()).toBe(before);
  });

  it('a descriptor of the peer written directly arrives too (reads do not depend on our own writes)', async () => {
    const atHost: Buffer[] = [];
    await open(pty.hostPath, atHost);
    const fd = openSync(pty.simPath, constants.O_RDWR | constants.O_NOCTTY);
    try {
      writeSync(fd, Buffer.from('from the peer'));
    } finally {
      closeSync(fd);
    }
    await until(() => Buffer.concat(atHost).toString() === 'from the peer', 'peer bytes');
  });
});
