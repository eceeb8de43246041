// Bench suite "emulator": simple APDUs/s through the in-process EmulatorChannel (target >= 100,000/s), with raw
// SimulatedCard.transmit as the floor, plus a transactional INCREMENT (3 persistent writes + commit) for scale.

import { command } from '../../apdu/command.ts';
import { SimulatedCard } from '../../../card-applet-sim/os/card.ts';
import { REFERENCE_AID, ReferenceApplet } from '../../../card-applet-sim/applets/reference/reference-applet.ts';
import { openEmulatorChannel } from '../../transport/emulator-channel.ts';
import { fmt, rate, ratio, summarize, timeCalls } from './stats.ts';
import type { BenchSuite } from './suite.ts';

const TARGET_APDUS_PER_SEC = 100_000;

function freshCard(): SimulatedCard {
  const card = new SimulatedCard({ serial: Buffer.alloc(8, 1) });
  card.install(REFERENCE_AID, new ReferenceApplet());
  card.select(REFERENCE_AID);
  return card;
}

function loopRate(n: number, fn: () => void): number {
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) fn();
  return rate(n, Number(process.hrtime.bigint() - t0) / 1e6);
}

async function loopRateAsync(n: number, fn: () => Promise<unknown>): Promise<number> {
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) await fn();
  return rate(n, Number(process.hrtime.bigint() - t0) / 1e6);
}

export const emulatorBench: BenchSuite = {
  name: 'emulator',
  summary: 'in-process emulator: simple APDUs/s through EmulatorChannel, raw card.transmit as the floor',
  async run(ctx) {
    const n = Math.max(2_000, Math.round(300_000 * ctx.scale));
    const card = freshCard();
    const echoRaw = Buffer.from('8001000004DEADBEEF00', 'hex');
    const echoCmd = command(0x80, 0x01, 0x00, 0x00, Buffer.from('DEADBEEF', 'hex'), 256);
    const incRaw = Buffer.from('800200000400000001', 'hex');
    const channel = openEmulatorChannel(card);

    // Warm up the JIT on every path measured.
    loopRate(Math.min(n, 20_000), () => card.transmit(echoRaw));
    await loopRateAsync(Math.min(n, 20_000), () => channel.transmit(echoCmd));

    const rawPerSec = loopRate(n, () => card.transmit(echoRaw));
    const channelPerSec = await loopRateAsync(n, () => channel.transmit(echoCmd));
    const latency = summarize(await timeCalls(Math.max(1_000, Math.round(20_000 * ctx.scale)), () => channel.transmit(echoCmd)));
    const writesBefore = card.persistentWrites;
    const incN = Math.max(1_000, Math.round(n / 3));
    const incPerSec = loopRate(incN, () => card.transmit(incRaw));
    const writesPerInc = (card.persistentWrites - writesBefore) / incN;
    await channel.close();

    const ok = channelPerSec >= TARGET_APDUS_PER_SEC;
    if (!ctx.json) {
      const io = ctx.io;
      io.out(`  raw card.transmit (floor), ECHO 4 bytes:   ${fmt(rawPerSec)} APDUs/s`);
      io.out(`  EmulatorChannel.transmit, ECHO 4 bytes:    ${fmt(channelPerSec)} APDUs/s  (per-APDU cost ${ratio(rawPerSec, channelPerSec)} the floor; target >= ${TARGET_APDUS_PER_SEC.toLocaleString('en-US')}/s: ${ok ? 'met' : 'NOT met'})`);
      io.out(`  EmulatorChannel latency: median ${fmt(latency.medianMs * 1000)} us, p99 ${fmt(latency.p99Ms * 1000)} us`);
      io.out(`  raw INCREMENT (transaction, ${writesPerInc} write points): ${fmt(incPerSec)} APDUs/s`);
    }
    return {
      rawApdusPerSec: Math.round(rawPerSec),
      channelApdusPerSec: Math.round(channelPerSec),
      channelCostVsRaw: Number((rawPerSec / channelPerSec).toFixed(2)),
      channelMedianUs: Number((latency.medianMs * 1000).toFixed(2)),
      channelP99Us: Number((latency.p99Ms * 1000).toFixed(2)),
      rawIncrementsPerSec: Math.round(incPerSec),
      writePointsPerIncrement: writesPerInc,
      targetApdusPerSec: TARGET_APDUS_PER_SEC,
      targetMet: ok,
    };
  },
};
