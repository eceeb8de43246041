// Bench suite "opal": virtual-card purchases/s and p50/p99 end to end with N concurrent cardholders (default 16):
// each purchase is a new order at the merchant server, then POST /v1/purchase to OPAL, which runs the client
// library over its pseudo reader (records opened/sealed in the HSM, SQLite) against the payment server (pool of
// emulated PSAMs, SQLite) and the merchant, all over loopback HTTP in this process (src/opal/world.ts).
// Backends: the software HSM (in memory) and SoftHSM2 (PKCS#11, throw-away token; skipped if not installed).
// The floor, measured in the same run against the same payment + merchant servers with the same concurrency: the
// same purchase by the client library over an in-process card channel (EmulatorChannel, no OPAL, no sealing), so
// the ratio is what OPAL (its HTTP hop, HSM sealing, card store, history) adds to a physical-card purchase.

import { fileURLToPath } from 'node:url';
import { issuePurseCard, loadPurseProfile } from '../../../card-applet-sim/applets/purse/issuing.ts';
import type { Hsm } from '../../../hsm-bridge/hsm.ts';
import { opensslLegacyActive } from '../../../hsm-bridge/pkcs11/binding.ts';
import { Pkcs11Hsm } from '../../../hsm-bridge/pkcs11/pkcs11-hsm.ts';
import { createTempTokens, softhsmMissing } from '../../../hsm-bridge/pkcs11/softhsm-temp.ts';
import { SoftwareHsm } from '../../../hsm-bridge/software/software-hsm.ts';
import { payAtMerchant } from '../../client/pay.ts';
import { requestJson } from '../../server/http-client.ts';
import { loadIssuerKeySet } from '../../crypto/key-set.ts';
import { EmulatorChannel } from '../../transport/emulator-channel.ts';
import { startOpalWorld, type Cardholder, type OpalWorld } from '../../opal/world.ts';
import { initKeys } from '../commands/hsm-init.ts';
import { fmt, runConcurrently, summarize, type LatencySummary } from './stats.ts';
import type { BenchContext, BenchSuite } from './suite.ts';

const TARGET_PER_SEC = 500;
const root = (rel: string) => fileURLToPath(new URL(`../../../${rel}`, import.meta.url));

interface Measured {
  perSec: number;
  lat: LatencySummary;
  floorPerSec: number;
  floorLat: LatencySummary;
  failures: number;
  firstFailure: string;
  valueOk: boolean;
}

/** One backend: a world on `hsm`, N logged-in cardholders, the floor then the OPAL run; value checked after. */
async function measure(hsm: Hsm, total: number, concurrency: number): Promise<Measured> {
  const world: OpalWorld = await startOpalWorld({ hsm, psams: 4, initialBalance: 50_000, cheapPasswords: true });
  // The shared JSON client (node:http, keep-alive): the same one the client library uses.
  const call = <T>(url: string, body?: object, token?: string) =>
    requestJson<T>(url, { ...(body ? { body } : {}), ...(token ? { headers: { authorization: `Bearer ${token}` } } : {}) });
  const order = async () => (await call<{ payUrl: string }>(`${world.merchantUrl}/api/orders`, { items: [{ sku: 'cent', quantity: 1 }] })).payUrl;
  let failures = 0;
  let firstFailure = '';
  const fail = (why: string) => {
    failures++;
    firstFailure ||= why.slice(0, 200);
  };
  try {
    // Floor: the client library over in-process cards, same servers, same concurrency.
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
    const holders: Cardholder[] = [];
    for (let i = 0; i < concurrency; i++) holders.push(await world.cardholder(`bench.user${i}`));
    const viaOpal = async (w: number) => {
      try {
        const r = await call<{ status: string; message: string }>(`${world.opalUrl}/v1/purchase`, { pageUrl: await order(), amount: 1 }, holders[w]!.token);
        if (r.status !== 'paid') fail(`opal: ${r.status} ${r.message}`);
      } catch (e) {
        fail(`opal: ${(e as Error).message}`);
      }
    };
    const warm = Math.min(200, total);
    await runConcurrently(warm, concurrency, direct);
    const floor = await runConcurrently(total, concurrency, direct);
    await runConcurrently(warm, concurrency, viaOpal);
    const run = await runConcurrently(total, concurrency, viaOpal);
    // Value: every virtual card lost exactly its paid purchases (counter = purchases, balance = 50000 - counter).
    let valueOk = true;
    for (const h of holders) {
      const b = await call<{ balance: number; counter: number }>(`${world.opalUrl}/v1/balance`, undefined, h.token);
      if (b.balance !== 50_000 - b.counter) valueOk = false;
    }
    return { perSec: (total * 1000) / run.elapsedMs, lat: summarize(run.samples), floorPerSec: (total * 1000) / floor.elapsedMs, floorLat: summarize(floor.samples), failures, firstFailure, valueOk };
  } finally {
    await world.close();
  }
}

async function softwareHsm(): Promise<Hsm> {
  const hsm = SoftwareHsm.inMemory();
  await hsm.open();
  await initKeys(hsm, loadIssuerKeySet(root('fixtures/keys/demo-issuer.json')), true);
  return hsm;
}

/** A SoftHSM2 token with the record keys and issuer masters (hsm init's initKeys), or why not. */
async function softHsm(): Promise<{ hsm: Hsm; remove: () => void } | { skip: string }> {
  const why = softhsmMissing() ?? (opensslLegacyActive() ? undefined : 'needs NODE_OPTIONS=--openssl-legacy-provider (SoftHSM2 single DES)');
  if (why) return { skip: why };
  const t = createTempTokens(['purselab-bench-opal']);
  const tok = t.tokens[0]!;
  const hsm = new Pkcs11Hsm({ module: tok.module, tokenLabel: tok.label, pin: tok.pin, sessions: 8 });
  await hsm.open();
  await initKeys(hsm, loadIssuerKeySet(root('fixtures/keys/demo-issuer.json')), true);
  return { hsm, remove: () => t.remove() };
}

function report(ctx: BenchContext, name: string, m: Measured, total: number, concurrency: number, target?: number): Record<string, number | boolean> {
  const ratio = m.floorPerSec / m.perSec;
  const met = target === undefined ? undefined : m.perSec >= target && m.failures === 0 && m.valueOk;
  if (!ctx.json) {
    ctx.io.out(`  ${name}: ${concurrency} concurrent cardholders, ${total} purchases of 0.01 EUR each (order at the merchant + OPAL purchase):`);
    ctx.io.out(`    floor (client library over an in-process card, same servers): ${fmt(m.floorPerSec)} purchases/s, p50 ${fmt(m.floorLat.medianMs)} ms, p99 ${fmt(m.floorLat.p99Ms)} ms`);
    ctx.io.out(`    OPAL virtual card:                                            ${fmt(m.perSec)} purchases/s, p50 ${fmt(m.lat.medianMs)} ms, p99 ${fmt(m.lat.p99Ms)} ms (${ratio.toFixed(2)}x the floor's time)`);
    ctx.io.out(`    failures ${m.failures}${m.firstFailure ? ` (first: ${m.firstFailure})` : ''}; value conserved on every virtual card: ${m.valueOk ? 'yes' : 'NO'}`);
    if (target !== undefined) ctx.io.out(`    target >= ${target} purchases/s, no failure, value conserved: ${met ? 'met' : 'NOT met'}`);
  }
  return {
    [`${name}.purchasesPerSec`]: Math.round(m.perSec),
    [`${name}.p50Ms`]: Number(m.lat.medianMs.toFixed(2)),
    [`${name}.p99Ms`]: Number(m.lat.p99Ms.toFixed(2)),
    [`${name}.floorPerSec`]: Math.round(m.floorPerSec),
    [`${name}.floorP99Ms`]: Number(m.floorLat.p99Ms.toFixed(2)),
    [`${name}.ratioToFloor`]: Number(ratio.toFixed(2)),
    [`${name}.failures`]: m.failures,
    [`${name}.valueConserved`]: m.valueOk,
    ...(met !== undefined ? { [`${name}.targetMet`]: met } : {}),
  };
}

export const opalBench: BenchSuite = {
  name: 'opal',
  summary: 'OPAL virtual-card purchases/s and p50/p99 end to end (OPAL + payment + merchant, SQLite; software HSM and SoftHSM2) vs the same purchase over an in-process card',
  async run(ctx) {
    const concurrency = Number(process.env.PURSELAB_BENCH_CARDHOLDERS ?? 16);
    const total = Math.max(100, Math.round(2000 * ctx.scale));
    const figures: Record<string, number | string | boolean> = { cardholders: concurrency, purchases: total };
    const sw = await softwareHsm();
    try {
      Object.assign(figures, report(ctx, 'software', await measure(sw, total, concurrency), total, concurrency, TARGET_PER_SEC));
    } finally {
      await sw.close();
    }
    const p = await softHsm();
    if ('skip' in p) {
      if (!ctx.json) ctx.io.out(`  SoftHSM2: skipped (${p.skip})`);
      figures['softhsm2.skipped'] = p.skip;
    } else {
      try {
        const n = Math.max(100, Math.round(total / 2));
        Object.assign(figures, report(ctx, 'softhsm2', await measure(p.hsm, n, concurrency), n, concurrency));
      } finally {
        await p.hsm.close();
        p.remove();
      }
    }
    return figures;
  },
};
