// Bench suite "purchase": purchases/s and loads/s through the in-process EmulatorChannel (purse card + PSAM +
// issuer crypto on the HSM bridge's software backend; target >= 5,000 purchases/s), and the per-purchase
// latency through the real pcscd + vpcd when the rig is up: the emulator's own share (time inside the two
// emulated cards' transmit) against the transport floor (the same APDUs answered by do-nothing stand-ins),
// measured in alternation with the purchases.

import type { IssuerKeySet } from '../../crypto/key-set.ts';
import { psamAdminMac, derivePsamKey } from '../../crypto/purse-mac.ts';
import { closeBatch, purgeBatch, readPsamData } from '../../terminal/psam.ts';
import { purchase } from '../../terminal/purchase.ts';
import { runLoad } from '../../terminal/load.ts';
import { softwareIssuer } from '../commands/hsm-init.ts';
import type { CardChannel } from '../../transport/channel.ts';
import { openEmulatorChannel } from '../../transport/emulator-channel.ts';
import { machineCpuNow, machineCpuSince, machineShares, machineSharesText, sharesText, type MachineCpuTicks, type MachineShares } from './machine-cpu.ts';
import { benchKeys, benchWorld, startBenchCards } from './purchase-cards.ts';
import { CommandTimes, commandLabel, commandMedianFigures, commandMediansText, type CardRole, type CommandMedian } from './card-commands.ts';
import { fmt, rate, summarize, warmUntilSteady, warmUpText, type WarmUp } from './stats.ts';
import type { BenchContext, BenchSuite } from './suite.ts';

const TARGET_PURCHASES_PER_SEC = 5_000;
const TARGET_EMULATOR_SHARE = 0.1;
const AT = { date: '20260115', time: '143005', location: 'BENCH001' };

/** When the PSAM batch has no room for `room` more records: close it and purge it (the concentration point's acknowledgement). */
async function keepBatchOpen(psam: CardChannel, adminKey: Buffer, room = 2000): Promise<void> {
  const d = await readPsamData(psam);
  if (d.recordCount + room <= d.capacity) return;
  const s = await closeBatch(psam);
  await purgeBatch(psam, s.batchNumber, (f) => psamAdminMac(adminKey, f));
}

async function inProcess(ctx: BenchContext, k: IssuerKeySet) {
  const n = Math.max(500, Math.round(20_000 * ctx.scale));
  const out: Record<string, number> = {};
  /** Per suite, the machine's busy, idle and stolen shares while the purchases/s were measured (when long enough). */
  const machine: Partial<Record<'3des' | 'aes', MachineShares>> = {};
  /** Per suite, each command's median time inside its card (warm). */
  const commands: Partial<Record<'3des' | 'aes', CommandMedian[]>> = {};
  for (const suite of ['3des', 'aes'] as const) {
    const w = benchWorld(k, suite);
    const card = openEmulatorChannel(w.card);
    const psam = openEmulatorChannel(w.psam);
    const adminKey = derivePsamKey(k.masterKeys.find((m) => m.usage === 'admin' && m.alg === 1)!.key, w.psamId, 1);
    for (let i = 0; i < Math.min(2000, n); i++) await purchase(card, psam, { amount: 1, ...AT }); // warm-up
    await keepBatchOpen(psam, adminKey);
    const machine0 = machineCpuNow();
    const t0 = process.hrtime.bigint();
    let done = 0;
    while (done < n) {
      const chunk = Math.min(n - done, 2000);
      for (let i = 0; i < chunk; i++) await purchase(card, psam, { amount: 1, ...AT });
      done += chunk;
      await keepBatchOpen(psam, adminKey);
    }
    out[`purchasesPerSec_${suite}`] = Math.round(rate(n, Number(process.hrtime.bigint() - t0) / 1e6));
    const shares = machineShares(machineCpuSince(machine0));
    if (shares) {
      machine[suite] = shares;
      out[`machineStealPct_${suite}`] = shares.stealPct;
    }
    // The cards' own share of an in-process purchase (warm caches): time inside card.transmit of both cards,
    // in all and per command.
    {
      const times = new CommandTimes();
      const restore = ([w.card, w.psam] as const).map((c, who) => {
        const orig = c.transmit.bind(c);
        (c as { transmit: (a: Uint8Array) => Buffer }).transmit = (a) => {
          const s0 = process.hrtime.bigint();
          const r = orig(a);
          const ns = process.hrtime.bigint() - s0; // before the label is built: that is the bench's work, not the card's
          times.add(commandLabel(who as CardRole, a), Number(ns) / 1e3);
          return r;
        };
        return () => void ((c as { transmit: unknown }).transmit = orig);
      });
      const m = Math.min(1000, n);
      await keepBatchOpen(psam, adminKey, m);
      times.clear();
      for (let i = 0; i < m; i++) await purchase(card, psam, { amount: 1, ...AT });
      out[`inCardUsPerPurchase_${suite}`] = Number((times.totalUs / m).toFixed(1));
      commands[suite] = times.medians(m);
      Object.assign(out, commandMedianFigures(`inCardUs_${suite}`, commands[suite]));
      for (const r of restore) r();
    }
    const er = Math.max(200, Math.round(n / 4));
    const t1 = process.hrtime.bigint();
    for (let i = 0; i < er; i++) {
      await purchase(card, psam, { amount: 1, variant: 'early-release', ...AT });
      if (i % 1000 === 999) await keepBatchOpen(psam, adminKey);
    }
    out[`earlyReleasePurchasesPerSec_${suite}`] = Math.round(rate(er, Number(process.hrtime.bigint() - t1) / 1e6));

    const { issuer: iss, hsm } = await softwareIssuer(k);
    const close = () => hsm.close();
    const ln = Math.max(200, Math.round(5_000 * ctx.scale));
    let txn = 0n;
    const ltxid = () => {
      const b = Buffer.alloc(8);
      b.writeBigUInt64BE(++txn);
      return b;
    };
    const req = () => ({ amount: 1, currency: 978, exponent: 2, date: '20260116', time: '091500', loadTxnId: ltxid() });
    for (let i = 0; i < Math.min(200, ln); i++) await runLoad(card, iss, req());
    const t2 = process.hrtime.bigint();
    for (let i = 0; i < ln; i++) await runLoad(card, iss, req());
    out[`loadsPerSec_${suite}`] = Math.round(rate(ln, Number(process.hrtime.bigint() - t2) / 1e6));
    await close();
    await card.close();
    await psam.close();
  }
  return { out, machine, commands };
}

// ---------------------------------------------------------------------------------------------
// Through pcscd + vpcd

async function waitCard(pcsc: typeof import('../../transport/pcsc.ts'), reader: string, present: boolean, ms = 10_000): Promise<void> {
  const ok = await pcsc.waitForReader(reader, (r) => (present ? pcsc.cardIn(r) && r!.atr.length > 0 : pcsc.noCardIn(r)), ms);
  if (!ok) throw new Error(`${reader}: the card did not ${present ? 'appear' : 'go away'} within ${ms} ms`);
}

/** Where the emulated cards run over pcscd: PURSELAB_BENCH_CARDS_THREAD=main (default: the bench's own thread) or worker (a thread of their own, as `purselab emulate` is a process of its own). */
function benchCardsThread(): 'worker' | 'main' {
  const v = process.env.PURSELAB_BENCH_CARDS_THREAD ?? 'main';
  if (v !== 'worker' && v !== 'main') throw new Error(`PURSELAB_BENCH_CARDS_THREAD must be worker or main, got ${JSON.stringify(v)}`);
  return v;
}

interface PcscSuiteResult {
  lat: ReturnType<typeof summarize>;
  floor: ReturnType<typeof summarize>;
  /** Per purchase, microseconds inside the two emulated cards. */
  emu: ReturnType<typeof summarize>;
  /** Each command's median time inside its card. */
  commands: CommandMedian[];
  apdus: number;
  /** The whole machine's CPU ticks over the measured purchases and floors (busy, idle, stolen). */
  machine: MachineCpuTicks;
}

async function overPcscd(ctx: BenchContext, k: IssuerKeySet): Promise<Record<string, number | string | boolean>> {
  let pcsc: typeof import('../../transport/pcsc.ts');
  let vpcd: typeof import('../../transport/pcsc-vpcd.ts');
  try {
    pcsc = await import('../../transport/pcsc.ts');
    vpcd = await import('../../transport/pcsc-vpcd.ts');
  } catch (e) {
    return { pcscSkipped: `PC/SC support not loadable: ${(e as Error).message}` };
  }
  let readers;
  try {
    readers = await pcsc.listReaders({ timeoutMs: 3000 });
  } catch (e) {
    return { pcscSkipped: `${(e as Error).message} (start the rig: bash .ci/rig-up.sh)` };
  }
  const free = vpcd.allowedSlots().filter((s) => readers.some((r) => r.name === s.reader && !r.cardPresent)).slice(0, 2).map((s) => ({ ...s }));
  if (free.length < 2) return { pcscSkipped: `need 2 free vpcd readers${process.env.PURSELAB_RIG_SLOTS ? ` among PURSELAB_RIG_SLOTS=${process.env.PURSELAB_RIG_SLOTS}` : ''}, found ${free.length} (readers: ${readers.map((r) => r.name).join(', ') || 'none'}; start the rig: bash .ci/rig-up.sh)` };
  const quickack = await vpcd.quickackRouteActive().catch(() => undefined);

  const thread = benchCardsThread();
  const n = Math.max(20, Math.round(300 * ctx.scale));
  const perSuite: Record<string, PcscSuiteResult> = {};
  const warm: Record<string, WarmUp> = {};
  for (const suite of ['3des', 'aes'] as const) {
    const cards = await startBenchCards(suite, free, thread);
    try {
      for (const s of free) await waitCard(pcsc, s.reader, true);
      const card = await pcsc.openPcscChannel(free[0]!.reader);
      const psam = await pcsc.openPcscChannel(free[1]!.reader);
      const chans = [card, psam] as const;
      try {
        // Warm up until the rate stops improving (V8's optimizing compiler done with the host and card paths).
        warm[suite] = await warmUntilSteady(async (m) => {
          const t0 = process.hrtime.bigint();
          for (let i = 0; i < m; i++) await purchase(card, psam, { amount: 1, ...AT });
          return Number(process.hrtime.bigint() - t0) / 1e6;
        }, { roundSize: Math.max(20, Math.round(200 * ctx.scale)) });
        // Record one purchase's APDUs (both cards, in order) to build the floor from.
        await cards.startRecording();
        await purchase(card, psam, { amount: 1, ...AT });
        const seq = await cards.stopRecording();

        const floorOnce = async () => {
          for (const [who, cmd] of seq) await chans[who].transmitRaw(cmd);
        };
        cards.setFloor(true);
        for (let i = 0; i < warm[suite].roundSize; i++) await floorOnce();
        cards.setFloor(false);

        const lat: number[] = [];
        const floor: number[] = [];
        const emu: number[] = [];
        const times = new CommandTimes();
        let timedPurchases = 0;
        const a0 = cards.apdus();
        const machine0 = machineCpuNow();
        const timeFloor = async () => {
          cards.setFloor(true);
          const t0 = process.hrtime.bigint();
          await floorOnce();
          floor.push(Number(process.hrtime.bigint() - t0) / 1e6);
          cards.setFloor(false);
        };
        for (let i = 0; i < n; i++) {
          if (i % 2 === 1) await timeFloor(); // alternate which comes first
          const ns0 = cards.ns();
          const apdus0 = cards.apdus();
          const t0 = process.hrtime.bigint();
          await purchase(card, psam, { amount: 1, ...AT });
          lat.push(Number(process.hrtime.bigint() - t0) / 1e6);
          emu.push(Number(cards.ns() - ns0) / 1e6);
          const sent = cards.commandsSince(apdus0);
          if (sent) {
            for (const c of sent) times.add(c.label, c.us);
            timedPurchases++;
          }
          if (i % 2 === 0) await timeFloor();
        }
        const machine = machineCpuSince(machine0);
        perSuite[suite] = { lat: summarize(lat), floor: summarize(floor), emu: summarize(emu), commands: times.medians(timedPurchases), apdus: (cards.apdus() - a0) / n, machine };
      } finally {
        await card.close();
        await psam.close();
      }
    } finally {
      await cards.unplug();
      for (const s of free) await waitCard(pcsc, s.reader, false).catch(() => undefined);
    }
  }

  const d = perSuite['3des']!;
  const a = perSuite['aes']!;
  const share = (r: PcscSuiteResult) => r.emu.medianMs / r.floor.medianMs;
  const ok = share(d) <= TARGET_EMULATOR_SHARE;
  const stolen = machineShares(d.machine)?.stealPct;
  if (!ctx.json) {
    const io = ctx.io;
    io.out(`  over pcscd + vpcd (${free[0]!.reader} + ${free[1]!.reader}; quickack route ${quickack === true ? 'on' : quickack === false ? 'OFF: ~40 ms stalls per APDU' : 'unknown'}), ${n} purchases per card suite,`);
    io.out('  each followed or preceded by the floor: the same APDUs (sizes, order, readers) answered at once by do-nothing');
    io.out('  stand-ins with answers of the same lengths. "emulator" = time inside SimulatedCard.transmit of card + PSAM');
    io.out('  (card OS + applets + their crypto; not vpcd framing, sockets, pcscd or the host), per purchase');
    io.out(`  (${warmUpText(warm['3des']!, 'purchases')} for the 3DES card, ${warm['aes']!.rounds} rounds for the AES card; the floor then as many times as a round):`);
    for (const [name, r] of [['3DES', d], ['AES ', a]] as const) {
      io.out(`    ${name} card: purchase median ${fmt(r.lat.medianMs)} ms (p99 ${fmt(r.lat.p99Ms)} ms, ${r.apdus.toFixed(0)} APDUs); floor median ${fmt(r.floor.medianMs)} ms;`);
      io.out(`          emulator median ${fmt(r.emu.medianMs * 1000)} us (mean ${fmt(r.emu.meanMs * 1000)} us) = ${(share(r) * 100).toFixed(1)}% of the floor`);
      io.out(`          per command, median us inside the card: ${commandMediansText(r.commands)}`);
      const machine = machineSharesText(r.machine);
      if (machine) io.out(`          (the machine's vCPUs meanwhile: ${machine})`);
    }
    io.out(`    emulator share target <= ${TARGET_EMULATOR_SHARE * 100}% of the floor (3DES card, medians): ${ok ? 'met' : 'NOT met'}`);
  }
  return {
    pcscPurchases: n,
    pcscFloorMedianMs: Number(d.floor.medianMs.toFixed(3)),
    pcscPurchaseMedianMs: Number(d.lat.medianMs.toFixed(3)),
    pcscPurchaseP99Ms: Number(d.lat.p99Ms.toFixed(3)),
    pcscEmulatorUsPerPurchase: Number((d.emu.medianMs * 1000).toFixed(1)),
    pcscEmulatorMeanUsPerPurchase: Number((d.emu.meanMs * 1000).toFixed(1)),
    pcscEmulatorShareOfFloor: Number(share(d).toFixed(4)),
    pcscFloorMedianMs_aes: Number(a.floor.medianMs.toFixed(3)),
    pcscPurchaseMedianMs_aes: Number(a.lat.medianMs.toFixed(3)),
    pcscEmulatorUsPerPurchase_aes: Number((a.emu.medianMs * 1000).toFixed(1)),
    pcscEmulatorMeanUsPerPurchase_aes: Number((a.emu.meanMs * 1000).toFixed(1)),
    pcscEmulatorShareOfFloor_aes: Number(share(a).toFixed(4)),
    pcscApdusPerPurchase: d.apdus,
    pcscQuickack: quickack === undefined ? 'unknown' : quickack,
    pcscShareTargetMet: ok,
    ...commandMedianFigures('pcscCardUs_3des', d.commands),
    ...commandMedianFigures('pcscCardUs_aes', a.commands),
    ...(stolen !== undefined ? { pcscMachineStealPct: stolen } : {}),
  };
}

export const purchaseBench: BenchSuite = {
  name: 'purchase',
  summary: 'purchases/s and loads/s in-process (card + PSAM + issuer HSM crypto), per-purchase latency over pcscd',
  async run(ctx) {
    const k = benchKeys();
    const { out: inproc, machine, commands } = await inProcess(ctx, k);
    const ok = (inproc.purchasesPerSec_3des ?? 0) >= TARGET_PURCHASES_PER_SEC;
    if (!ctx.json) {
      const io = ctx.io;
      io.out('  in-process (EmulatorChannel; purse + PSAM applets; issuer = HSM bridge software backend):');
      for (const s of ['3des', 'aes'] as const) {
        io.out(`    ${s === '3des' ? '3DES' : 'AES '} card: ${fmt(inproc[`purchasesPerSec_${s}`]!)} purchases/s, ${fmt(inproc[`earlyReleasePurchasesPerSec_${s}`]!)} early-release purchases/s, ${fmt(inproc[`loadsPerSec_${s}`]!)} loads/s; inside the two cards ${fmt(inproc[`inCardUsPerPurchase_${s}`]!)} us per purchase`);
        const rows = commands[s];
        if (rows) io.out(`          per command, median us inside the card: ${commandMediansText(rows)}`);
        const m = machine[s];
        if (m) io.out(`          (the machine's vCPUs during the purchases/s: ${sharesText(m)})`);
      }
      io.out(`    target >= ${TARGET_PURCHASES_PER_SEC.toLocaleString('en-US')} purchases/s: ${ok ? 'met' : 'NOT met'}`);
    }
    const pc = await overPcscd(ctx, k);
    if (!ctx.json && typeof pc.pcscSkipped === 'string') ctx.io.out(`  over pcscd: SKIPPED: ${pc.pcscSkipped}`);
    return { ...inproc, targetPurchasesPerSec: TARGET_PURCHASES_PER_SEC, targetMet: ok, ...pc };
  },
};
