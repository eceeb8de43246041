// The CLI on the real rig: `purselab readers` (list, --json, --watch, --wait-card), `purselab apdu` against an
// emulated card behind pcscd, and the errors people see (ambiguous/unknown reader, bad emulate usage,
// corrupt card image): one line, non-zero exit, no stack trace.

import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { toHex } from '../../src/apdu/hex.ts';
import { REFERENCE_AID } from '../../card-applet-sim/applets/index.ts';
import { describeRig, detectRig, freeSlots, killAll, pull, purselab, runCli, startEmulator, tempDir, type Proc } from './rig.ts';

const rig = await detectRig(2);
const SELECT = `00A404000A${toHex(REFERENCE_AID)}00`;

describeRig('CLI on the rig: readers, apdu, emulate', rig, () => {
  const tmp = tempDir();
  let slots: { reader: string; port: number }[] = [];
  let emu: Proc;

  beforeAll(async () => {
    slots = await freeSlots(2);
    emu = await startEmulator(['--vpcd', `127.0.0.1:${slots[0]!.port}`, '--card', join(tmp.path, 'cli.img')], [slots[0]!.reader]);
  });

  afterAll(async () => {
    await emu?.stop();
    await killAll();
    tmp.remove();
  });

  it('purselab readers lists the readers, the card and its ATR', async () => {
    const r = await runCli(['readers']);
    expect(r.code).toBe(0);
    const line = r.stdout.split('\n').find((l) => l.startsWith(slots[0]!.reader + ' '))!;
    expect(line).toMatch(/card present.*ATR 3B 8E/);
    expect(r.stdout.split('\n').find((l) => l.startsWith(slots[1]!.reader + ' '))).toMatch(/no card$/);
  });

  it('purselab readers --json', async () => {
    const r = await runCli(['readers', '--json']);
    expect(r.code).toBe(0);
    const list = JSON.parse(r.stdout) as { name: string; card: boolean; atr: string | null; flags: string[] }[];
    const a = list.find((x) => x.name === slots[0]!.reader)!;
    expect(a.card).toBe(true);
    expect(a.atr).toMatch(/^3B8E/);
    expect(a.flags).toContain('present');
    expect(list.find((x) => x.name === slots[1]!.reader)!.card).toBe(false);
  });

  it('purselab readers --watch follows insert/remove and exits 0 on Ctrl-C', async () => {
    const w = purselab(['readers', '--watch']);
    await w.waitForOutput(new RegExp(`card inserted +${slots[0]!.reader}`));
    const card = await startEmulator(['--vpcd', `127.0.0.1:${slots[1]!.port}`, '--responder'], [slots[1]!.reader]);
    await w.waitForOutput(new RegExp(`card inserted +${slots[1]!.reader} +ATR 3B 80 80 01 01`));
    await pull(card, slots[1]!.reader, 'SIGTERM');
    await w.waitForOutput(new RegExp(`card removed +${slots[1]!.reader}`));
    const t0 = Date.now();
    expect(await w.stop('SIGINT')).toEqual({ code: 0, signal: null });
    expect(Date.now() - t0).toBeLessThan(3000);
    expect(w.stderr).toBe('');
  });

  it('purselab readers --watch --json prints one JSON event per line', async () => {
    const w = purselab(['readers', '--watch', '--json']);
    await w.waitForOutput(`"reader":"${slots[0]!.reader}"`);
    await new Promise((r) => setTimeout(r, 300));
    expect(await w.stop('SIGTERM')).toEqual({ code: 0, signal: null });
    const events = w.stdout.trim().split('\n').map((l) => JSON.parse(l) as { event: string; reader?: string; atr?: string; time: string });
    expect(events.some((e) => e.event === 'reader-added' && e.reader === slots[0]!.reader)).toBe(true);
    expect(events.find((e) => e.event === 'card-inserted' && e.reader === slots[0]!.reader)!.atr).toMatch(/^3B8E/);
  });

  it('purselab readers --wait-card waits until pcscd lists a card just handed to vpcd, and fails on an empty reader', async () => {
    // Started without waiting: pcscd only lists the card at its next poll of the slot, so a plain
    // `purselab readers` right now could still say "no card"; --wait-card waits for it.
    const card = purselab(['emulate', '--vpcd', `127.0.0.1:${slots[1]!.port}`, '--responder']);
    try {
      const r = await runCli(['readers', '--wait-card', slots[1]!.reader, '--wait-card', slots[0]!.reader]);
      expect(r.code).toBe(0);
      expect(r.stdout.split('\n').find((l) => l.startsWith(slots[1]!.reader + ' '))).toMatch(/card present.*ATR 3B 80 80 01 01$/);
      expect(r.stdout.split('\n').find((l) => l.startsWith(slots[0]!.reader + ' '))).toMatch(/card present.*ATR 3B 8E/);
    } finally {
      await pull(card, slots[1]!.reader, 'SIGTERM');
    }
    const empty = await runCli(['readers', '--wait-card', slots[1]!.reader, '--timeout', '800']);
    expect(empty.code).toBe(1);
    expect(empty.stdout).toBe('');
    expect(empty.stderr.trim().split('\n')).toHaveLength(1);
    expect(empty.stderr).toContain(`no card in reader '${slots[1]!.reader}' after 800 ms`);
    const both = await runCli(['readers', '--watch', '--wait-card', slots[0]!.reader]);
    expect(both.code).toBe(2);
    expect(both.stderr).toMatch(/--wait-card and --watch do not go together/);
  });

  it('purselab apdu talks to the emulated card through pcscd (reader by unique substring)', async () => {
    const sub = slots[0]!.reader.replace('Virtual ', '');
    const r = await runCli(['apdu', '--reader', sub, SELECT, '80010000036869210', '80010000036869']);
    // The second APDU has an odd number of hex digits: nothing is sent, one-line error.
    expect(r.code).not.toBe(0);
    expect(r.stdout).toBe('');
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    const ok = await runCli(['apdu', '--reader', sub, SELECT, '800100000368692100']);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toContain(`< 6F 11 84 0A ${toHex(REFERENCE_AID, ' ')} A5 03 80 01 01`);
    expect(ok.stdout).toContain('< 68 69 21');
    expect(ok.stdout.match(/^< 9000: /gm)).toHaveLength(2);
  });

  it('an ambiguous or unknown reader is a one-line error naming the readers', async () => {
    const amb = await runCli(['apdu', '--reader', 'Virtual PCD', SELECT]);
    expect(amb.code).toBe(1);
    expect(amb.stderr.trim().split('\n')).toHaveLength(1);
    expect(amb.stderr).toMatch(/ambiguous/);
    expect(amb.stderr).toContain(slots[0]!.reader);
    const unk = await runCli(['apdu', '--reader', 'ACME Reader 42', SELECT]);
    expect(unk.code).toBe(1);
    expect(unk.stderr.trim().split('\n')).toHaveLength(1);
    expect(unk.stderr).toMatch(/no reader matches 'ACME Reader 42'; readers: /);
    const empty = await runCli(['apdu', '--reader', slots[1]!.reader, SELECT]);
    expect(empty.code).toBe(1);
    expect(empty.stderr).toMatch(/no card in reader/);
  });

  it('emulate: usage errors and a corrupt card image are one-line errors', async () => {
    const none = await runCli(['emulate']);
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/--card/);
    const counts = await runCli(['emulate', '--vpcd', '127.0.0.1:35963', '--vpcd', '127.0.0.1:35964', '--card', 'x.img']);
    expect(counts.code).toBe(2);
    expect(counts.stderr).toMatch(/2 --vpcd slot\(s\) but 1 --card/);
    const badAddr = await runCli(['emulate', '--vpcd', 'localhost:99999', '--responder']);
    expect(badAddr.code).toBe(2);
    const bad = join(tmp.path, 'corrupt.img');
    writeFileSync(bad, 'PURSELAB-CARD-IMAGE 1 10 0000\n{"half":');
    const corrupt = await runCli(['emulate', '--vpcd', `127.0.0.1:${slots[1]!.port}`, '--card', bad]);
    expect(corrupt.code).toBe(1);
    expect(corrupt.stderr.trim().split('\n')).toHaveLength(1);
    expect(corrupt.stderr).toMatch(/corrupt\.img/);
    expect(corrupt.stderr).not.toMatch(/\n\s+at /);
  });
});
