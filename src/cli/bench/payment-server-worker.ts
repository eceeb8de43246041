// The payment server of `purselab bench payment`: an emulated PSAM pool and SQLite, listening on loopback.
// startBenchServer() runs it in the calling thread; loaded as a worker thread (workerData.benchPayment), it
// runs there instead, so the server and the benchmark's cardholders (their emulated cards and HTTP client) use
// separate cores, as two programs would. Worker messages: out { url } when listening; in 'usage', out { usage }
// (the server thread's CPU time and the PSAM pool's waits); in 'stop'; out { held }.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import { issuePsamCard, loadPsamProfile } from '../../../card-applet-sim/applets/psam/issuing.ts';
import { loadIssuerKeySet } from '../../crypto/key-set.ts';
import { listen } from '../../server/app.ts';
import { parsePaymentConfig } from '../../server/payment/config.ts';
import { createPaymentServer } from '../../server/payment/server.ts';
import type { PaymentVariant } from '../../protocol/payment-messages.ts';
import { EmulatorChannel } from '../../transport/emulator-channel.ts';

export interface BenchMerchantSpec {
  readonly id: string;
  readonly variant: PaymentVariant;
  readonly encrypted: boolean;
}

export interface BenchServerSpec {
  readonly psamCount: number;
  readonly capacity: number;
  readonly dir: string;
  /** The shared key of every bench merchant (hex). */
  readonly key: string;
  /** One merchant per measured variant. */
  readonly merchants: readonly BenchMerchantSpec[];
}

/** What the server side spent so far: its thread's CPU time and the PSAM pool's waits. */
export interface BenchServerUsage {
  /** CPU time of the thread running the server (ms; NaN where /proc/thread-self is not available). */
  readonly cpuMs: number;
  readonly acquires: number;
  readonly waited: number;
  readonly waitMs: number;
}

export interface BenchServer {
  readonly url: string;
  usage(): Promise<BenchServerUsage>;
  /** Close the server; resolves with the number of PSAMs still held just before closing (idempotent). */
  stop(): Promise<number>;
}

const root = (rel: string) => fileURLToPath(new URL(`../../../${rel}`, import.meta.url));

/** CPU time (user + system) of the calling thread in ms, from /proc/thread-self/stat (Linux; clock ticks of 10 ms). */
export function threadCpuMs(): number {
  try {
    const stat = readFileSync('/proc/thread-self/stat', 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) * 10; // fields 14 and 15 (utime, stime), counted after the comm field
  } catch {
    return NaN;
  }
}

export async function startBenchServer(spec: BenchServerSpec): Promise<BenchServer> {
  const keys = loadIssuerKeySet(root('fixtures/keys/demo-issuer.json'));
  const psamProfile = loadPsamProfile(root('fixtures/profiles/psam-3des.json'));
  const psams = Array.from({ length: spec.psamCount }, (_, i) => issuePsamCard({ ...psamProfile, psamId: `99900290000${String(10000 + i)}`, capacity: spec.capacity }, keys).card);
  const config = parsePaymentConfig(
    { merchants: spec.merchants.map((m) => ({ id: m.id, sharedKey: spec.key, variant: m.variant, encrypted: m.encrypted })), psams: psams.map((_, i) => ({ reader: `bench:${i}` })), timeouts: { acquireMs: 10_000 } },
    'bench',
    spec.dir,
  );
  const server = await createPaymentServer({ config, dbPath: join(spec.dir, 'payment.db'), logLevel: false, watchPcsc: false, resolveEveryMs: 0, openPsam: async (r) => new EmulatorChannel(psams[Number(r.split(':')[1])]!) });
  const url = await listen(server.app, '127.0.0.1', 0);
  let held: Promise<number> | undefined;
  return {
    url,
    async usage() {
      return { cpuMs: threadCpuMs(), ...server.pool.stats };
    },
    stop() {
      held ??= (async () => {
        const h = server.pool.heldCount + server.service.heldLeases;
        await server.close();
        return h;
      })();
      return held;
    },
  };
}

if (!isMainThread && (workerData as { benchPayment?: BenchServerSpec } | undefined)?.benchPayment) {
  const s = await startBenchServer((workerData as { benchPayment: BenchServerSpec }).benchPayment);
  parentPort!.on('message', (m: string) => {
    if (m === 'stop') void s.stop().then((held) => parentPort!.postMessage({ held }));
    if (m === 'usage') void s.usage().then((usage) => parentPort!.postMessage({ usage }));
  });
  parentPort!.postMessage({ url: s.url });
}
