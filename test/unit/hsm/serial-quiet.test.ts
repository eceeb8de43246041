// How long the host side of a serial line waits on a partial frame before it gives the bytes up as garbage:
// 50 ms by default (a real line never pauses mid-frame for that long), or the line's interCharTimeoutMs, which
// the tests over ptys raise because a process on a shared VM can be held off the CPU mid-frame.

import { closeSync, constants, openSync, writeSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { makeTransport, type SerialLine } from '../../../hsm-bridge/serial/backend.ts';
import type { DeframeEvent } from '../../../hsm-bridge/serial/framing.ts';
import type { Transport } from '../../../hsm-bridge/serial/transport.ts';
import { socatMissing, startPtyPair, tempDir, type PtyPair } from './serial-support/rig.ts';

type Garbage = Exclude<DeframeEvent, { kind: 'frame' }>;

describe.skipIf(socatMissing() !== undefined)('serial line: a partial frame that goes quiet', () => {
  let tmp: ReturnType<typeof tempDir>;
  let pty: PtyPair;
  let transport: Transport | undefined;

  beforeEach(async () => {
    tmp = tempDir('purselab-quiet-');
    pty = await startPtyPair(tmp.dir, 'q');
  });
  afterEach(async () => {
    await transport?.close();
    transport = undefined;
    await pty.kill().catch(() => undefined);
    tmp.cleanup();
  });

  /** Connect the host end, put STX and two bytes on the line from the other end, and wait for the garbage. */
  async function partialFrame(line: SerialLine): Promise<{ garbage: Garbage; afterMs: number }> {
    const errors: { ev: Garbage; at: number }[] = [];
    transport = makeTransport(line);
    await transport.connect({ message: () => undefined, frameError: (ev) => errors.push({ ev, at: performance.now() }), down: () => undefined });
    const fd = openSync(pty.simPath, constants.O_RDWR | constants.O_NOCTTY);
    const t0 = performance.now();
    try {
      writeSync(fd, Buffer.from([0x02, 0x41, 0x42]));
      const deadline = Date.now() + 10_000;
      while (!errors.length && Date.now() < deadline) await sleep(10);
    } finally {
      closeSync(fd);
    }
    expect(errors).toHaveLength(1);
    return { garbage: errors[0]!.ev, afterMs: errors[0]!.at - t0 };
  }

  it('gives the bytes up after 50 ms of quiet by default', async () => {
    const { garbage } = await partialFrame({ kind: 'serial', path: pty.hostPath, baudRate: 115200 });
    expect(garbage).toMatchObject({ kind: 'garbage', reason: 'line quiet for 50 ms', where: 'in-frame' });
  });

  it("waits the line's interCharTimeoutMs instead when it is given", async () => {
    const { garbage, afterMs } = await partialFrame({ kind: 'serial', path: pty.hostPath, baudRate: 115200, interCharTimeoutMs: 400 });
    expect(garbage).toMatchObject({ kind: 'garbage', reason: 'line quiet for 400 ms', where: 'in-frame' });
    // it waited well past the default 50 ms (libuv's timers count from the loop's cached clock, so one can end
    // a little before its time by performance.now(): no exact bound here)
    expect(afterMs).toBeGreaterThan(300);
  });
});
