// Faults on the real rig: a card pulled between and during commands (the emulator's socket closes),
// a card that stops answering (timeout, and the process still exits), and a pcscd restart (the
// emulator reconnects by itself, watchers report it, old channels fail with a typed error).

import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { command } from '../../src/apdu/command.ts';
import { TransportError } from '../../src/transport/errors.ts';
import { openPcscChannel, type PcscEvent } from '../../src/transport/pcsc.ts';
import { watchReaders } from '../../src/transport/pcsc-watcher.ts';
import { REFERENCE_AID } from '../../card-applet-sim/applets/index.ts';
import { cardIn, describeRig, detectRig, freeSlots, killAll, noCardIn, pull, REPO, runCli, startEmulator, startFixture, tempDir, waitForReader } from './rig.ts';

const rig = await detectRig(2);
const RIG_DIR = process.env.PURSELAB_RIG_DIR ?? '/tmp/purselab-rig';

const ping = Buffer.from('00010000', 'hex');

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function expectTyped(p: Promise<unknown>, code: string, withinMs: number): Promise<TransportError> {
  const t0 = Date.now();
  const err = await p.then(
    () => {
      throw new Error(`expected ${code}, the call succeeded`);
    },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(TransportError);
  expect((err as TransportError).code).toBe(code);
  expect(Date.now() - t0).toBeLessThan(withinMs);
  return err as TransportError;
}

describeRig('PC/SC rig faults: pulled cards, mute cards, pcscd restarts', rig, () => {
  const tmp = tempDir();
  let slots: { reader: string; port: number }[] = [];

  beforeAll(async () => {
    slots = await freeSlots(2);
  });

  afterAll(async () => {
    await killAll();
    tmp.remove();
  });

  it('card pulled between commands: the next command fails with CARD_REMOVED', async () => {
    const s = slots[0]!;
    const card = await startFixture('fault-card.ts', [String(s.port)], s.reader);
    const ch = await openPcscChannel(s.reader);
    expect(await ch.transmitRaw(ping)).toEqual(Buffer.from([0x90, 0x00]));
    await pull(card, s.reader);
    const err = await expectTyped(ch.transmitRaw(ping), 'CARD_REMOVED', 3000);
    expect(err.message).toContain(s.reader);
    await ch.close();
  });

  it('card pulled in the middle of a command (socket closes before the answer): CARD_REMOVED, no hang', async () => {
    const s = slots[0]!;
    const card = await startFixture('fault-card.ts', [String(s.port)], s.reader);
    const ch = await openPcscChannel(s.reader);
    // INS EE: the card process dies while processing the command, without answering.
    await expectTyped(ch.transmit(command(0x00, 0xee, 0, 0)), 'CARD_REMOVED', 5000);
    // And stays removed for later commands on this channel.
    await expectTyped(ch.transmitRaw(ping), 'CARD_REMOVED', 1000);
    await ch.close();
    await pull(card, s.reader);
  });

  it('card pulled while a slow command runs: CARD_REMOVED once the socket closes', async () => {
    const s = slots[0]!;
    const card = await startFixture('fault-card.ts', [String(s.port)], s.reader);
    const ch = await openPcscChannel(s.reader);
    const pending = ch.transmitRaw(Buffer.from('00EF0000', 'hex')); // the card works for 3 s
    setTimeout(() => card.child.kill('SIGKILL'), 300);
    await expectTyped(pending, 'CARD_REMOVED', 5000);
    await ch.close();
    await pull(card, s.reader);
  });

  it('a card that stops answering: TIMEOUT after the per-call timeout; later calls work again', async () => {
    const s = slots[0]!;
    const card = await startFixture('fault-card.ts', [String(s.port)], s.reader);
    const ch = await openPcscChannel(s.reader);
    const err = await expectTyped(ch.transmitRaw(Buffer.from('00EF0000', 'hex'), { timeoutMs: 500 }), 'TIMEOUT', 2000);
    expect(err.message).toMatch(/500 ms/);
    await new Promise((r) => setTimeout(r, 3000)); // the slow command finishes inside pcscd
    expect(await ch.transmitRaw(ping)).toEqual(Buffer.from([0x90, 0x00]));
    await ch.close();
    await pull(card, s.reader);
  });

  it('the CLI exits with a one-line TIMEOUT error even when the card hangs inside pcscd', async () => {
    const s = slots[0]!;
    const card = await startFixture('fault-card.ts', [String(s.port)], s.reader);
    card.child.kill('SIGSTOP'); // the card process freezes: vpcd waits for it forever
    try {
      const r = await runCli(['apdu', '--reader', s.reader, '--timeout', '800', '00A4040000'], { timeoutMs: 15_000 });
      // It ended by itself (runCli's guard would SIGKILL it): the stuck-call watchdog ends it with SIGTERM
      // because libuv cannot join the thread stuck in pcscd at a normal exit.
      expect(r.signal === 'SIGTERM' || (r.signal === null && r.code !== 0)).toBe(true);
      expect(r.stderr).toMatch(/800 ms/);
      expect(r.stderr).toMatch(/stuck inside pcscd/);
      expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
      expect(r.ms).toBeLessThan(10_000);
    } finally {
      await pull(card, s.reader);
    }
  });

  it('pcscd restart: the emulator reconnects, watchers report it, old channels fail typed, new ones work', async () => {
    const s = slots[1]!;
    const emu = await startEmulator(['--vpcd', `127.0.0.1:${s.port}`, '--card', join(tmp.path, 'r.img')], [s.reader]);
    const events: PcscEvent[] = [];
    const watcher = watchReaders({ initial: false, retryMs: 200 });
    watcher.on('event', (e: PcscEvent) => events.push(e));
    await watcher.ready;
    const old = await openPcscChannel(s.reader);
    expect((await old.transmit(command(0x00, 0xa4, 0x04, 0x00, REFERENCE_AID, 256))).sw).toBe(0x9000);

    const pid = Number(readFileSync(join(RIG_DIR, 'pcscd.pid'), 'utf8'));
    expect(pid).toBeGreaterThan(1); // never kill(0): that is our own process group
    process.kill(pid, 'SIGTERM');
    await expect.poll(() => events.some((e) => e.type === 'pcscd-lost'), { timeout: 10_000 }).toBe(true);
    const err = await expectTyped(old.transmitRaw(ping), 'PCSC_UNAVAILABLE', 2000);
    expect(err.message).toMatch(/pcscd stopped/);
    await old.close();

    // Let the old pcscd finish exiting, else rig-up would take it for a running rig.
    await expect.poll(() => alive(pid), { timeout: 10_000 }).toBe(false);
    execFileSync('bash', [join(REPO, '.ci/rig-up.sh')], { stdio: ['ignore', 'ignore', 'pipe'] });
    await expect.poll(() => events.some((e) => e.type === 'pcscd-back'), { timeout: 15_000 }).toBe(true);
    expect(await waitForReader(s.reader, cardIn, 15_000)).toBe(true);
    await expect
      .poll(() => events.filter((e) => e.type === 'card-inserted' && e.reader === s.reader).length, { timeout: 5000 })
      .toBeGreaterThanOrEqual(1);
    expect(emu.stderr).toMatch(/connection lost/);
    expect(emu.running).toBe(true);

    const fresh = await openPcscChannel(s.reader);
    expect((await fresh.transmit(command(0x00, 0xa4, 0x04, 0x00, REFERENCE_AID, 256))).sw).toBe(0x9000);
    await fresh.close();
    await watcher.close();
    expect(await emu.stop('SIGTERM')).toEqual({ code: 0, signal: null });
    expect(await waitForReader(s.reader, noCardIn, 10_000)).toBe(true);
  });

  it('watchers report card insertion and removal, as events and through the async iterator', async () => {
    const s = slots[0]!;
    const watcher = watchReaders({ initial: false });
    const seen: PcscEvent[] = [];
    const iterate = (async () => {
      for await (const ev of watcher) {
        if ('reader' in ev && ev.reader !== s.reader) continue;
        seen.push(ev);
        if (ev.type === 'card-removed') break;
      }
    })();
    await watcher.ready;
    const emu = await startEmulator(['--vpcd', `127.0.0.1:${s.port}`, '--responder'], [s.reader]);
    await emu.stop('SIGINT');
    await iterate;
    expect(seen.map((e) => `${e.type} ${'reader' in e ? e.reader : ''}`)).toEqual([`card-inserted ${s.reader}`, `card-removed ${s.reader}`]);
    expect((seen[0] as { atr: Buffer }).atr.toString('hex')).toBe('3b80800101');
    await watcher.close();
  });
});
