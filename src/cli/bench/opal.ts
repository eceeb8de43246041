// Bench suite "opal": virtual-card purchases/s and p50/p99 end to end with N concurrent cardholders (default 16):
// each purchase is a new order at the merchant server, then POST /v1/purchase to OPAL, which runs the client
// library over its pseudo reader (records opened/sealed in the HSM, SQLite) against the payment server (pool of
// emulated PSAMs, SQLite) and the merchant, all over loopback HTTP. Threads (PURSELAB_BENCH_OPAL_THREADS):
// 'split' (default) runs the payment server, the merchant and OPAL each in a worker thread of its own, the load
// generator in the main thread, as separate programs would use the cores; 'shop-opal' runs the shop (payment
// server + merchant) in one worker thread and OPAL in another; 'opal-main' keeps OPAL in the main thread; 'same'
// runs everything in the main thread (src/opal/world-worker.ts). Beside the rates, each thread's
// CPU time per purchase, and the rest of the process's ("other threads": V8's compiler and garbage-collector
// helpers, libuv's pool, whatever else the process ran); under the OPAL runs, the machine's busy/idle/stolen
// shares and the share of the run each thread was ready to run but waited for a vCPU (its run-queue wait,
// /proc/thread-self/schedstat). Backends: the software HSM (in memory) and SoftHSM2 (PKCS#11, throw-away token; skipped
// if not installed; measured in a child Node with --openssl-legacy-provider when this one lacks it). The floor, measured in the same run against the same payment + merchant servers with the
// same concurrency: the same purchase by the client library over an in-process card channel in the main thread
// (EmulatorChannel, no OPAL, no sealing), so the ratio is what OPAL (its HTTP hop, HSM sealing, card store,
// history) adds to a physical-card purchase. After both are warm they are measured in alternating halves
// (floor, OPAL, OPAL, floor), and each rate is taken while all the cardholders were busy (not the drain at the
// end of a half). Then, software HSM only, the capacity: the same OPAL purchase with
// four times as many cardholders at once (PURSELAB_BENCH_CAPACITY_CARDHOLDERS, 0 for none), where the servers'
// rate is no longer bound by one purchase's latency. The target is judged on the run with N cardholders.
// After the runs, value must be conserved on every virtual card.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { issuePurseCard, loadPurseProfile } from '../../../card-applet-sim/applets/purse/issuing.ts';
import { opensslLegacyActive } from '../../../hsm-bridge/pkcs11/binding.ts';
import { createTempTokens, softhsmMissing } from '../../../hsm-bridge/pkcs11/softhsm-temp.ts';
import { payAtMerchant } from '../../client/pay.ts';
import { requestJson } from '../../server/http-client.ts';
import { loadIssuerKeySet } from '../../crypto/key-set.ts';
import { EmulatorChannel } from '../../transport/emulator-channel.ts';
import { runWorldHalf, type HsmSpec, type WorldHalfHandle, type WorldHalfSpec } from '../../opal/world-worker.ts';
import { addWindow, machineCpuNow, machineShares, machineSharesText, NO_TICKS, type MachineCpuTicks } from './machine-cpu.ts';
import { CPU_PARTS, CPU_THREADS, cpuPerPurchase, cpuText, waitText, type ThreadCpu, type ThreadWait } from './opal-cpu.ts';
import { ownProcessCpuMs, threadUsage, UNMEASURED_USAGE } from './proc-cpu.ts';
import { fmt, runConcurrently, summarize, warmUntilSteady, warmUpText, type LatencySummary, type WarmUp } from './stats.ts';
import { measureInLegacyChild } from './legacy-child.ts';
import type { BenchContext, BenchFigures as Figures, BenchSuite } from './suite.ts';

const TARGET_PER_SEC = 500;
const root = (rel: string) => fileURLToPath(new URL(`../../../${rel}`, import.meta.url));

type Threads = 'split' | 'shop-opal' | 'opal-main' | 'same';
const THREADS: readonly Threads[] = ['split', 'shop-opal', 'opal-main', 'same'];
const WHERE: Record<Threads, string> = {
  split: 'payment server, merchant and OPAL each in a worker thread',
  'shop-opal': 'shop (payment server + merchant) and OPAL each in a worker thread',
  'opal-main': 'shop in a worker thread, OPAL in the main thread',
  same: 'everything in the main thread',
};

/** One measured run: rate, latencies, each thread's CPU and run-queue wait, and the machine's ticks over it. */
interface RunResult {
  perSec: number;
  lat: LatencySummary;
  cpu: ThreadCpu;
  wait: ThreadWait;
  /** The whole machine's CPU ticks over the run's measured windows (busy, idle, stolen). */
  machine: MachineCpuTicks;
}

interface Measured extends RunResult {
  warm: WarmUp;
  /** The floor, measured the same way in the same run. */
  floor: RunResult & { warm: WarmUp };
  failures: number;
  firstFailure: string;
  valueOk: boolean;
  /** The same OPAL purchase with more cardholders at once (the servers' throughput when not waiting on latency). */
  capacity?: RunResult & { concurrency: number };
}

/**
 * One backend: the shop and OPAL (threads as asked), N logged-in cardholders, the floor then the OPAL run, then
 * (capacity > N) the OPAL run again with that many cardholders; value checked after.
 */
async function measure(hsm: HsmSpec, total: number, concurrency: number, threads: Threads, capacity = 0): Promise<Measured> {
  const dir = mkdtempSync(join(tmpdir(), 'purselab-bench-opal-'));
  // Cardholders (each with a virtual card) and PSAMs for the larger of the two runs.
  const cardholders = Math.max(concurrency, capacity);
  // The servers, each in the thread asked for: the payment server and the merchant apart ('split') or together.
  // Closed in the reverse of the order they started in (insertion order).
  const parts: Partial<Record<'payment' | 'merchant' | 'shop' | 'opal', WorldHalfHandle>> = {};
  let failures = 0;
  let firstFailure = '';
  const fail = (why: string) => {
    failures++;
    firstFailure ||= why.slice(0, 200);
  };
  try {
    const start = async (name: keyof typeof parts, spec: WorldHalfSpec, inWorker: boolean) => (parts[name] = await runWorldHalf(spec, inWorker));
    let merchantUrl: string;
    if (threads === 'split') {
      const payment = await start('payment', { half: 'payment', dir, psams: cardholders }, true);
      merchantUrl = (await start('merchant', { half: 'merchant', dir, paymentUrl: payment.urls.paymentUrl! }, true)).urls.merchantUrl!;
    } else {
      merchantUrl = (await start('shop', { half: 'shop', dir, psams: cardholders }, threads !== 'same')).urls.merchantUrl!;
    }
    const opal = await start('opal', { half: 'opal', dir, hsm, initialBalance: 50_000, cheapPasswords: true }, threads === 'split' || threads === 'shop-opal');
    const opalUrl = opal.urls.opalUrl!;
    // The shared JSON client (undici, keep-alive): the same one the client library uses.
    const call = <T>(url: string, body?: object, token?: string) =>
      requestJson<T>(url, { ...(body ? { body } : {}), ...(token ? { headers: { authorization: `Bearer ${token}` } } : {}) });
    const order = async () => (await call<{ payUrl: string }>(`${merchantUrl}/api/orders`, { items: [{ sku: 'cent', quantity: 1 }] })).payUrl;
    // Tallies of measured runs: rate while all the run's cardholders were busy (runConcurrently's busy window,
    // without the drain at the end), latencies, and each thread's CPU per purchase and run-queue wait over the
    // whole run, drain included (the main thread's own, and each worker's as it reports it).
    const usageNow = () => Promise.all(CPU_THREADS.map((t) => (t === 'main' ? threadUsage() : (parts[t]?.usage() ?? UNMEASURED_USAGE))));
    const newTally = () => ({ busyCount: 0, busyMs: 0, count: 0, wallMs: 0, samples: [] as number[], cpuMs: CPU_THREADS.map(() => 0), waitMs: CPU_THREADS.map(() => 0), processMs: 0, machine: NO_TICKS });
    type Tally = ReturnType<typeof newTally>;
    const measureInto = async (t: Tally, count: number, fn: (w: number) => Promise<void>, callers = concurrency): Promise<Tally> => {
      const use0 = await usageNow();
      const process0 = ownProcessCpuMs();
      const machine0 = machineCpuNow();
      const run = await runConcurrently(count, callers, fn);
      t.machine = addWindow(t.machine, machine0, machineCpuNow());
      t.processMs += ownProcessCpuMs() - process0;
      const use1 = await usageNow();
      use1.forEach((u, i) => {
        t.cpuMs[i]! += u.cpuMs - use0[i]!.cpuMs;
        t.waitMs[i]! += u.waitMs - use0[i]!.waitMs;
      });
      t.wallMs += run.elapsedMs;
      t.busyCount += run.busyCount;
      t.busyMs += run.busyMs;
      t.count += count;
      t.samples.push(...run.samples);
      return t;
    };
    const result = (t: Tally): RunResult => ({
      perSec: (t.busyCount * 1000) / t.busyMs,
      lat: summarize(t.samples),
      cpu: cpuPerPurchase(t.cpuMs, t.processMs, t.count),
      wait: Object.fromEntries(CPU_THREADS.map((k, i) => [k, (100 * t.waitMs[i]!) / t.wallMs])) as ThreadWait,
      machine: t.machine,
    });

    // Floor: the client library over in-process cards in the main thread, same servers, same concurrency.
    const keys = loadIssuerKeySet(root('fixtures/keys/demo-issuer.json'));
    const profile = loadPurseProfile(root('fixtures/profiles/demo-aes.json'));
    const cards = Array.from({ length: concurrency }, (_, i) => new EmulatorChannel(issuePurseCard(profile, keys, { balance: 50_000, purseNumber: String(8_000_000_000 + i) }).card));
    const direct = async (w: number) => {
      try {
        const r = await payAtMerchant(await order(), cards[w]!, { confirm: () => true, terminalId: 'BENCH' });
        if (r.status !== 'paid') fail(`floor: ${r.status} ${r.message}`);
      } catch (e) {
        fail(`floor: ${(e as Error).message}`);
      }
    };
    // OPAL: order at the merchant, then the cardholder confirms it at OPAL.
    const holders = await opal.cardholders('bench.user', cardholders);
    const viaOpal = async (w: number) => {
      try {
        const r = await call<{ status: string; message: string }>(`${opalUrl}/v1/purchase`, { pageUrl: await order(), amount: 1 }, holders[w]!.token);
        if (r.status !== 'paid') fail(`opal: ${r.status} ${r.message}`);
      } catch (e) {
        fail(`opal: ${(e as Error).message}`);
      }
    };
    // Each warmed until its rate stops improving (V8's optimizing compiler done), then measured.
    const warmOf = (fn: (w: number) => Promise<void>) => warmUntilSteady(async (n) => (await runConcurrently(n, concurrency, fn)).elapsedMs, { roundSize: 600 });
    const floorWarm = await warmOf(direct);
    const warm = await warmOf(viaOpal);
    // Then both measured in alternating halves, floor, OPAL, OPAL, floor: a drift in the machine's speed during
    // the run moves both alike, so the ratio between them holds.
    const floorTally = newTally();
    const opalTally = newTally();
    const first = Math.ceil(total / 2);
    await measureInto(floorTally, first, direct);
    await measureInto(opalTally, first, viaOpal);
    await measureInto(opalTally, total - first, viaOpal);
    await measureInto(floorTally, total - first, direct);
    const floor = result(floorTally);
    const run = result(opalTally);
    // Capacity: the servers are warm; one round with the larger crowd, then the same count measured.
    let cap: Measured['capacity'];
    if (capacity > concurrency) {
      await runConcurrently(600, capacity, viaOpal);
      cap = { concurrency: capacity, ...result(await measureInto(newTally(), total, viaOpal, capacity)) };
    }
    // Value: every virtual card lost exactly its paid purchases (counter = purchases, balance = 50000 - counter).
    let valueOk = true;
    for (const h of holders) {
      const b = await call<{ balance: number; counter: number }>(`${opalUrl}/v1/balance`, undefined, h.token);
      if (b.balance !== 50_000 - b.counter) valueOk = false;
    }
    return {
      ...run,
      warm,
      floor: { ...floor, warm: floorWarm },
      failures,
      firstFailure,
      valueOk,
      ...(cap ? { capacity: cap } : {}),
    };
  } finally {
    for (const h of Object.values(parts).reverse()) await h.close().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Set in the child Node that measures the SoftHSM2 half (see softHsmHalf). */
const PART_ENV = 'PURSELAB_BENCH_OPAL_PART';

/**
 * The SoftHSM2 half: a throw-away token for the OPAL HSM (opened and filled by the thread running OPAL). SoftHSM2
 * inside Node needs single DES from OpenSSL's legacy provider: without --openssl-legacy-provider this half runs
 * in a child Node started with it (as `bench hsm` does), which reports its lines and figures back as JSON.
 */
async function softHsmHalf(ctx: BenchContext, total: number, concurrency: number, threads: Threads, inChild: boolean): Promise<Figures> {
  const skip = (why: string): Figures => {
    if (!ctx.json) ctx.io.out(`  SoftHSM2: skipped (${why})`);
    return { 'softhsm2.skipped': why };
  };
  const missing = softhsmMissing();
  if (missing) return skip(missing);
  if (!opensslLegacyActive()) {
    if (inChild) return skip('the child Node has no --openssl-legacy-provider either');
    return softHsmHalfInChild(ctx);
  }
  const t = createTempTokens(['purselab-bench-opal']);
  const tok = t.tokens[0]!;
  try {
    const n = Math.max(100, Math.round(total / 2));
    const r = report(ctx, 'softhsm2', await measure({ kind: 'pkcs11', module: tok.module, tokenLabel: tok.label, pin: tok.pin }, n, concurrency, threads), n, concurrency, threads);
    return inChild ? { ...r.figures, 'softhsm2.lines': r.lines.join('\n') } : r.figures;
  } finally {
    t.remove();
  }
}

/** Run `bench opal --json` for the SoftHSM2 half only, in a child Node with --openssl-legacy-provider. */
function softHsmHalfInChild(ctx: BenchContext): Figures {
  const child = measureInLegacyChild(ctx, 'opal', { [PART_ENV]: 'softhsm2' });
  const { 'softhsm2.lines': lines, ...figures } = Object.fromEntries(Object.entries(child).filter(([k]) => k.startsWith('softhsm2.')));
  if (!ctx.json && typeof lines === 'string') for (const l of lines.split('\n')) ctx.io.out(l);
  return figures;
}

/** A run's figures on its line: "633 purchases/s, p50 24.4 ms, p99 54.8 ms<extra>; CPU ms per purchase: ...". */
function runFigures(r: RunResult, extra = ''): string {
  return `${fmt(r.perSec)} purchases/s, p50 ${fmt(r.lat.medianMs)} ms, p99 ${fmt(r.lat.p99Ms)} ms${extra}; CPU ms per purchase: ${cpuText(r.cpu)}`;
}

/** The lines under an OPAL run: the machine's busy/idle/stolen shares and the threads' waits, where known. */
function runNotes(r: { machine: MachineCpuTicks; wait: ThreadWait }): string[] {
  const machine = machineSharesText(r.machine);
  const wait = waitText(r.wait);
  return [...(machine ? [`      (the machine's vCPUs during this run: ${machine})`] : []), ...(wait ? [`      ${wait}`] : [])];
}

function report(ctx: BenchContext, name: string, m: Measured, total: number, concurrency: number, threads: Threads, target?: number): { figures: Record<string, number | boolean>; lines: string[] } {
  const ratio = m.floor.perSec / m.perSec;
  const met = target === undefined ? undefined : m.perSec >= target && m.failures === 0 && m.valueOk;
  const lines: string[] = [];
  const where = WHERE[threads];
  lines.push(`  ${name}: ${concurrency} concurrent cardholders, ${total} purchases of 0.01 EUR each (order at the merchant + OPAL purchase), ${where}:`);
  lines.push(`    floor (client library over an in-process card, same servers): ${runFigures(m.floor)}`);
  lines.push(`      (${warmUpText(m.floor.warm, 'purchases')})`);
  lines.push(...runNotes(m.floor));
  lines.push(`    ${'OPAL virtual card:'.padEnd(62)}${runFigures(m, ` (${ratio.toFixed(2)}x the floor's time)`)}`);
  lines.push(`      (${warmUpText(m.warm, 'purchases')})`);
  lines.push(...runNotes(m));
  if (m.capacity) {
    const c = m.capacity;
    lines.push(`    ${`the same with ${c.concurrency} cardholders at once (capacity):`.padEnd(62)}${runFigures(c)}`);
    lines.push(...runNotes(c));
  }
  lines.push(`    failures ${m.failures}${m.firstFailure ? ` (first: ${m.firstFailure})` : ''}; value conserved on every virtual card: ${m.valueOk ? 'yes' : 'NO'}`);
  if (target !== undefined) lines.push(`    target >= ${target} purchases/s, no failure, value conserved: ${met ? 'met' : 'NOT met'}`);
  if (!ctx.json) for (const l of lines) ctx.io.out(l);
  const figures = {
    [`${name}.purchasesPerSec`]: Math.round(m.perSec),
    [`${name}.p50Ms`]: Number(m.lat.medianMs.toFixed(2)),
    [`${name}.p99Ms`]: Number(m.lat.p99Ms.toFixed(2)),
    ...Object.fromEntries(
      CPU_PARTS
        .filter((k) => Number.isFinite(m.cpu[k]))
        .flatMap((k) => [
          [`${name}.cpuMs.${k}`, Number(m.cpu[k].toFixed(3))],
          [`${name}.floorCpuMs.${k}`, Number(m.floor.cpu[k].toFixed(3))],
        ]),
    ),
    ...Object.fromEntries(CPU_THREADS.filter((k) => Number.isFinite(m.wait[k])).map((k) => [`${name}.waitPct.${k}`, Number(m.wait[k].toFixed(1))])),
    [`${name}.floorPerSec`]: Math.round(m.floor.perSec),
    [`${name}.floorP99Ms`]: Number(m.floor.lat.p99Ms.toFixed(2)),
    [`${name}.ratioToFloor`]: Number(ratio.toFixed(2)),
    [`${name}.warmUpPurchases`]: m.warm.rounds * m.warm.roundSize,
    ...Object.fromEntries(Object.entries(machineShares(m.machine) ?? {}).map(([k, v]) => [`${name}.machine.${k}`, v])),
    ...(m.capacity
      ? {
          [`${name}.capacity.cardholders`]: m.capacity.concurrency,
          [`${name}.capacity.purchasesPerSec`]: Math.round(m.capacity.perSec),
          [`${name}.capacity.p99Ms`]: Number(m.capacity.lat.p99Ms.toFixed(2)),
        }
      : {}),
    [`${name}.failures`]: m.failures,
    [`${name}.valueConserved`]: m.valueOk,
    ...(met !== undefined ? { [`${name}.targetMet`]: met } : {}),
  };
  return { figures, lines };
}

export const opalBench: BenchSuite = {
  name: 'opal',
  summary: 'OPAL virtual-card purchases/s and p50/p99 end to end (OPAL + payment + merchant, SQLite; software HSM and SoftHSM2) vs the same purchase over an in-process card',
  async run(ctx) {
    const concurrency = Number(process.env.PURSELAB_BENCH_CARDHOLDERS ?? 16);
    const capacity = Number(process.env.PURSELAB_BENCH_CAPACITY_CARDHOLDERS ?? 4 * concurrency);
    if (!Number.isInteger(capacity) || capacity < 0) throw new Error(`PURSELAB_BENCH_CAPACITY_CARDHOLDERS must be a whole number (0: no capacity run), got '${process.env.PURSELAB_BENCH_CAPACITY_CARDHOLDERS}'`);
    const threads = (process.env.PURSELAB_BENCH_OPAL_THREADS ?? 'split') as Threads;
    if (!THREADS.includes(threads)) throw new Error(`PURSELAB_BENCH_OPAL_THREADS must be ${THREADS.join(', ')}, got '${threads}'`);
    const total = Math.max(100, Math.round(2000 * ctx.scale));
    const figures: Figures = { cardholders: concurrency, purchases: total, threads };
    const part = process.env[PART_ENV];
    if (part !== undefined && part !== 'softhsm2') throw new Error(`${PART_ENV} must be softhsm2 (set by the bench itself for its child), got '${part}'`);
    if (part === undefined) Object.assign(figures, report(ctx, 'software', await measure({ kind: 'software' }, total, concurrency, threads, capacity), total, concurrency, threads, TARGET_PER_SEC).figures);
    Object.assign(figures, await softHsmHalf(ctx, total, concurrency, threads, part === 'softhsm2'));
    return figures;
  },
};
