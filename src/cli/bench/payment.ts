// Bench suite "payment": completed purchases/s and p50/p99 latency through the payment server with N concurrent
// cardholders (default 16): real HTTP over loopback (keep-alive), an emulated PSAM pool (one per cardholder), SQLite in a temp
// dir, in-process purse cards. The headline is the standard variant (draw -> DEBIT -> debit response -> VERIFY
// S3 -> Debit Result); then, shorter, the other variants and FIG. 9 (PURSELAB_BENCH_VARIANTS=standard: only the
// headline). The floor, measured in the same run with the same client and concurrency: a bare fastify JSON echo
// route (two echoes = the two HTTP round trips of one purchase). Beside the rates, the process's CPU time per
// purchase and per echo pair: on a shared machine that ratio moves much less than the rates do. Afterwards: no
// PSAM may be held.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PSAM_MAX_CAPACITY } from '../../../card-applet-sim/applets/psam/psam-applet.ts';
import { createServerApp, listen } from '../../server/app.ts';
import { poster, startCardholders } from './payment-cardholders.ts';
import { startBenchServer, startBenchServerInWorker, type BenchMerchantSpec, type BenchServerSpec } from './payment-server-worker.ts';
import { ownProcessCpuMs } from './proc-cpu.ts';
import { fmt, runConcurrently, summarize, warmUntilSteady, warmUpText } from './stats.ts';
import type { BenchSuite } from './suite.ts';

const TARGET_PER_SEC = 1_000;
const TARGET_P99_MS = 50;
const KEY = '0123456789ABCDEFFEDCBA9876543210';

/** A measured case: one merchant (variant, FIG. 9 or not) of the bench server. */
interface BenchCase {
  readonly label: string;
  /** Key prefix in the --json figures ('' for the headline). */
  readonly key: string;
  readonly merchant: BenchMerchantSpec;
}

const CASES: readonly BenchCase[] = [
  { label: 'standard variant', key: '', merchant: { id: 'BENCH-SHOP', variant: 'standard', encrypted: false } },
  { label: 'early release (FIG. 6)', key: 'earlyRelease', merchant: { id: 'BENCH-ER', variant: 'early-release', encrypted: false } },
  { label: 'trusted agent (FIG. 7)', key: 'trustedAgent', merchant: { id: 'BENCH-TA', variant: 'trusted-agent', encrypted: false } },
  { label: 'merchant compare (FIG. 8)', key: 'merchantCompare', merchant: { id: 'BENCH-MC', variant: 'merchant-compare', encrypted: false } },
  { label: 'standard + FIG. 9 encryption', key: 'encrypted', merchant: { id: 'BENCH-ENC', variant: 'standard', encrypted: true } },
];

export const paymentBench: BenchSuite = {
  name: 'payment',
  summary: 'purchases/s and p50/p99 through the payment server (HTTP loopback, PSAM pool, SQLite) vs a fastify echo floor',
  async run(ctx) {
    const io = ctx.io;
    const concurrency = Number(process.env.PURSELAB_BENCH_CARDHOLDERS ?? 16);
    // One PSAM per concurrent cardholder by default (a pool sized for the concurrency: with fewer, every standard
    // draw waits for a PSAM held across another cardholder's DEBIT round trip); PURSELAB_BENCH_PSAMS overrides.
    const psamCount = Number(process.env.PURSELAB_BENCH_PSAMS ?? concurrency);
    const total = Math.max(200, Math.round(4000 * ctx.scale));
    const perVariant = Math.max(100, Math.round(total / 4));
    const cases = process.env.PURSELAB_BENCH_VARIANTS === 'standard' ? CASES.slice(0, 1) : CASES;
    const dir = mkdtempSync(join(tmpdir(), 'purselab-bench-payment-'));

    // The floor: a bare fastify JSON echo, same client, same concurrency, two round trips per "purchase".
    const echo = createServerApp({ name: 'echo', logLevel: false });
    echo.post('/echo', { schema: { body: { type: 'object' } } }, async (req) => req.body);
    const echoPost = poster(await listen(echo, '127.0.0.1', 0));
    const payload = { paymentId: 'pay_000000000000000000000000', response: { paymentId: 'pay_000000000000000000000000', sw: '9000', debitResponse: '00'.repeat(17) } };
    const pair = async () => {
      await echoPost('/echo', payload);
      await echoPost('/echo', payload);
    };
    const floorWarm = await warmUntilSteady(async (n) => (await runConcurrently(n, concurrency, pair)).elapsedMs, { roundSize: 1000 });
    const floorCpu0 = ownProcessCpuMs();
    const floor = await runConcurrently(total, concurrency, pair);
    const floorCpuMs = (ownProcessCpuMs() - floorCpu0) / total;
    await echo.close();

    // The payment server, on its own thread (PURSELAB_BENCH_SAME_THREAD=1: in this thread); the cardholders in
    // PURSELAB_BENCH_CLIENT_THREADS worker threads (0: in this thread).
    const sameThread = process.env.PURSELAB_BENCH_SAME_THREAD === '1';
    const clientThreads = Number(process.env.PURSELAB_BENCH_CLIENT_THREADS ?? 0);
    const spec: BenchServerSpec = { psamCount, capacity: PSAM_MAX_CAPACITY, dir, key: KEY, merchants: cases.map((c) => c.merchant) };
    const server = sameThread ? await startBenchServer(spec) : await startBenchServerInWorker(spec);
    const holders = await startCardholders(server.url, KEY, concurrency, clientThreads);
    let failures = 0;
    let firstFailure = '';
    try {
      const measure = async (c: BenchCase, count: number) => {
        // Until the rate stops improving (V8's optimizing compiler done); the headline variant longer than the others.
        const warm = await warmUntilSteady(async (n) => (await holders.run(c.merchant, n)).elapsedMs, c.key ? { roundSize: 250, maxRounds: 4 } : { roundSize: 1000 });
        const cpu0 = ownProcessCpuMs();
        const u0 = await server.usage();
        const run = await holders.run(c.merchant, count);
        const u1 = await server.usage();
        failures += run.failures;
        firstFailure ||= run.firstFailure;
        const done = run.samples.length;
        const lat = summarize(run.samples);
        return {
          warm,
          perSec: (done * 1000) / run.elapsedMs,
          lat,
          cpuMsPer: (ownProcessCpuMs() - cpu0) / done,
          serverCpuMsPer: sameThread ? NaN : (u1.cpuMs - u0.cpuMs) / done,
          waitedShare: (u1.waited - u0.waited) / Math.max(1, u1.acquires - u0.acquires),
          meanWaitMs: (u1.waitMs - u0.waitMs) / Math.max(1, u1.waited - u0.waited),
        };
      };
      const results: { c: BenchCase; r: Awaited<ReturnType<typeof measure>> }[] = [];
      for (const c of cases) results.push({ c, r: await measure(c, c.key ? perVariant : total) });
      const held = await server.stop();
      const head = results[0]!.r;
      const fl = summarize(floor.samples);
      const floorPerSec = (total * 1000) / floor.elapsedMs;
      const ok = head.perSec >= TARGET_PER_SEC && head.lat.p99Ms < TARGET_P99_MS && held === 0 && failures === 0;
      if (!ctx.json) {
        io.out(`  ${concurrency} concurrent cardholders, ${psamCount} emulated PSAMs, SQLite in ${dir}, HTTP keep-alive over loopback, server ${sameThread ? 'in the same thread' : 'in a worker thread'}, ${total} purchases (${perVariant} per other variant):`);
        io.out(`    floor (fastify echo, 2 round trips):   ${fmt(floorPerSec)} /s, p50 ${fmt(fl.medianMs)} ms, p99 ${fmt(fl.p99Ms)} ms, CPU ${fmt(floorCpuMs)} ms per pair (whole process)`);
        io.out(`      (${warmUpText(floorWarm, 'pairs')})`);
        for (const { c, r } of results) {
          io.out(`    payment, ${`${c.label}:`.padEnd(30)} ${fmt(r.perSec)} purchases/s, p50 ${fmt(r.lat.medianMs)} ms, p99 ${fmt(r.lat.p99Ms)} ms (${(floorPerSec / r.perSec).toFixed(2)}x the floor's time), CPU ${fmt(r.cpuMsPer)} ms per purchase (${(r.cpuMsPer / floorCpuMs).toFixed(2)}x the floor's)`);
          io.out(`      (${warmUpText(r.warm, 'purchases')})`);
          io.out(`      server thread ${Number.isNaN(r.serverCpuMsPer) ? 'CPU not measured (same thread)' : `CPU ${fmt(r.serverCpuMsPer)} ms per purchase (one core: ${fmt(1000 / r.serverCpuMsPer)} purchases/s)`}; draws that waited for a PSAM ${(100 * r.waitedShare).toFixed(0)}%, mean wait ${fmt(r.meanWaitMs)} ms`);
        }
        io.out(`    failures ${failures}${firstFailure ? ` (first: ${firstFailure})` : ''}; PSAMs held after the run: ${held}`);
        io.out(`    target (standard variant) >= ${TARGET_PER_SEC} purchases/s and p99 < ${TARGET_P99_MS} ms, none held: ${ok ? 'met' : 'NOT met'}`);
      }
      const figures: Record<string, number | boolean> = {
        cardholders: concurrency,
        psams: psamCount,
        purchases: total,
        floorPerSec: Math.round(floorPerSec),
        floorP50Ms: Number(fl.medianMs.toFixed(3)),
        floorP99Ms: Number(fl.p99Ms.toFixed(3)),
        floorCpuMsPerPair: Number(floorCpuMs.toFixed(3)),
        floorWarmUpRounds: floorWarm.rounds,
        failures,
        heldAfterRun: held,
        targetMet: ok,
      };
      for (const { c, r } of results) {
        const k = (name: string) => (c.key ? `${c.key}${name[0]!.toUpperCase()}${name.slice(1)}` : name);
        figures[k('purchasesPerSec')] = Math.round(r.perSec);
        figures[k('p50Ms')] = Number(r.lat.medianMs.toFixed(3));
        figures[k('p99Ms')] = Number(r.lat.p99Ms.toFixed(3));
        figures[k('ratioToFloor')] = Number((floorPerSec / r.perSec).toFixed(2));
        figures[k('cpuMsPerPurchase')] = Number(r.cpuMsPer.toFixed(3));
        if (!Number.isNaN(r.serverCpuMsPer)) figures[k('serverCpuMsPerPurchase')] = Number(r.serverCpuMsPer.toFixed(3));
        figures[k('psamWaitedShare')] = Number(r.waitedShare.toFixed(3));
        figures[k('warmUpPurchases')] = r.warm.rounds * r.warm.roundSize;
      }
      return figures;
    } finally {
      await holders.stop();
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  },
};
