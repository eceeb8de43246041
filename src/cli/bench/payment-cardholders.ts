// The cardholders of `purselab bench payment`: in-process purse cards driven through the payment server's
// purchase flow (src/server/payment/driver.ts buy) over the shared keep-alive HTTP client. startCardholders()
// runs them in the calling thread, or spread over worker threads (each with its share of the cardholders,
// their cards and their own HTTP client), as that many client machines would be: on a 2-core machine one
// client thread and one server thread each wait on the other's round trips, and neither core is kept busy.
// Worker messages (startBenchWorker / serveBenchWorker): in 'run' { merchant, count } -> RunResult.

import { fileURLToPath } from 'node:url';
import { isMainThread, workerData } from 'node:worker_threads';
import { issuePurseCard, loadPurseProfile } from '../../../card-applet-sim/applets/purse/issuing.ts';
import { loadIssuerKeySet } from '../../crypto/key-set.ts';
import { httpRequest } from '../../server/http-client.ts';
import { buy, type DriverMerchant, type Post, type Posted } from '../../server/payment/driver.ts';
import { EmulatorChannel } from '../../transport/emulator-channel.ts';
import type { BenchMerchantSpec } from './payment-server-worker.ts';
import { serveBenchWorker, startBenchWorker } from './payment-server-worker.ts';
import { runConcurrently } from './stats.ts';

const root = (rel: string) => fileURLToPath(new URL(`../../../${rel}`, import.meta.url));

/** JSON POST through the shared keep-alive client (src/server/http-client.ts): status and parsed body, any status. */
export function poster(base: string): Post {
  return async (path, body) => {
    const r = await httpRequest(`${base}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    return { status: r.status, body: JSON.parse(r.text) as Posted['body'] };
  };
}

export interface CardholdersSpec {
  readonly url: string;
  /** The merchants' shared key (hex). */
  readonly key: string;
  /** Cardholders in this group, and the first one's number (purse numbers stay distinct across groups). */
  readonly count: number;
  readonly first: number;
}

export interface RunResult {
  readonly samples: number[];
  readonly elapsedMs: number;
  readonly failures: number;
  readonly firstFailure: string;
}

/** A group of cardholders in the calling thread. */
function cardholderGroup(spec: CardholdersSpec) {
  const keys = loadIssuerKeySet(root('fixtures/keys/demo-issuer.json'));
  const profile = { ...loadPurseProfile(root('fixtures/profiles/demo-3des.json')), maxBalance: 0xfffffff0 };
  const cards = Array.from({ length: spec.count }, (_, i) => new EmulatorChannel(issuePurseCard(profile, keys, { balance: 0x7fffffff, purseNumber: String(1000 + spec.first + i).padStart(10, '0') }).card));
  const post = poster(spec.url);
  const sharedKey = Buffer.from(spec.key, 'hex');
  return {
    /** `count` purchases at this merchant, one at a time per cardholder, all cardholders at once. */
    async run(m: BenchMerchantSpec, count: number): Promise<RunResult> {
      const merchant: DriverMerchant = { id: m.id, sharedKey, encrypted: m.encrypted };
      let failures = 0;
      let firstFailure = '';
      const r = await runConcurrently(count, spec.count, async (w) => {
        const b = await buy(post, merchant, cards[w]!, { amount: 1 });
        if (b.result?.body?.status !== 'approved') {
          failures++;
          firstFailure ||= JSON.stringify(b.result?.body ?? b.draw.body).slice(0, 200);
        }
      });
      return { ...r, failures, firstFailure };
    },
  };
}

export interface Cardholders {
  /** Threads the cardholders run in (0: the calling thread). */
  readonly threads: number;
  /** `count` purchases in all, shared between the groups in proportion to their cardholders; wall time over all. */
  run(m: BenchMerchantSpec, count: number): Promise<RunResult>;
  stop(): Promise<void>;
}

/** `count` cardholders against the payment server at `url`: in this thread (threads 0) or spread over `threads` workers. */
export async function startCardholders(url: string, key: string, count: number, threads: number): Promise<Cardholders> {
  if (threads === 0) {
    const g = cardholderGroup({ url, key, count, first: 0 });
    return { threads, run: (m, n) => g.run(m, n), stop: async () => undefined };
  }
  const sizes = Array.from({ length: threads }, (_, i) => Math.floor(count / threads) + (i < count % threads ? 1 : 0)).filter((n) => n > 0);
  const firsts = sizes.map((_, i) => sizes.slice(0, i).reduce((a, b) => a + b, 0));
  const workers = await Promise.all(sizes.map((n, i) => startBenchWorker<true>(import.meta.url, { benchCardholders: { url, key, count: n, first: firsts[i]! } satisfies CardholdersSpec })));
  return {
    threads: workers.length,
    async run(m, n) {
      const t0 = process.hrtime.bigint();
      const parts = await Promise.all(workers.map((w, i) => w.call<RunResult>('run', { merchant: m, count: Math.round((n * sizes[i]!) / count) })));
      return {
        samples: parts.flatMap((p) => p.samples),
        elapsedMs: Number(process.hrtime.bigint() - t0) / 1e6,
        failures: parts.reduce((a, p) => a + p.failures, 0),
        firstFailure: parts.find((p) => p.firstFailure)?.firstFailure ?? '',
      };
    },
    async stop() {
      await Promise.all(workers.map((w) => w.stop()));
    },
  };
}

if (!isMainThread && (workerData as { benchCardholders?: CardholdersSpec } | undefined)?.benchCardholders) {
  const g = cardholderGroup((workerData as { benchCardholders: CardholdersSpec }).benchCardholders);
  serveBenchWorker(true, { run: (a) => g.run((a as { merchant: BenchMerchantSpec }).merchant, (a as { count: number }).count) });
}
