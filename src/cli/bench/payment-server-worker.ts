// The payment server of `purselab bench payment`: an emulated PSAM pool and SQLite, listening on loopback.
// startBenchServer() runs it in the calling thread; loaded as a worker thread (workerData.benchPayment), it
// runs there instead, so the server and the benchmark's cardholders (their emulated cards and HTTP client) use
// separate cores, as two programs would. Worker messages: out { url } when listening; in 'usage', out { usage }
// (the server thread's CPU time and the PSAM pool's waits); in 'stop'; out { held }.
// Also the generic pieces other bench suites run their servers in worker threads with: spawnTsWorker (a worker on
// a TypeScript module), startBenchWorker / serveBenchWorker (a ready message, then calls answered by id).

import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { issuePsamCard, loadPsamProfile } from '../../../card-applet-sim/applets/psam/issuing.ts';
import { loadIssuerKeySet } from '../../crypto/key-set.ts';
import { listen } from '../../server/app.ts';
import { parsePaymentConfig } from '../../server/payment/config.ts';
import { createPaymentServer } from '../../server/payment/server.ts';
import type { PaymentVariant } from '../../protocol/payment-messages.ts';
import { EmulatorChannel } from '../../transport/emulator-channel.ts';
import { threadUsage } from './proc-cpu.ts';

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
      return { cpuMs: threadUsage().cpuMs, ...server.pool.stats };
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

/** A worker thread on a TypeScript module: tsx's loader is registered in it first (workers do not inherit it). */
export function spawnTsWorker(moduleUrl: string, data: unknown): Worker {
  const boot = `(async () => { (await import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))})).register(); await import(${JSON.stringify(moduleUrl)}); })()`;
  return new Worker(boot, { eval: true, workerData: data });
}

/** The main thread's side of a bench worker: what it posted when ready, and calls by name. */
export interface BenchWorker<R> {
  readonly ready: R;
  call<T>(op: string, arg?: unknown): Promise<T>;
  /** Call 'stop' (if the worker answers it), then end the thread. Idempotent. */
  stop(): Promise<void>;
}

interface Call {
  readonly id: number;
  readonly op: string;
  readonly arg?: unknown;
}
type Reply = { readonly id: number; readonly value?: unknown; readonly error?: string };

/** Start `moduleUrl` in a worker thread (it calls serveBenchWorker) and wait for its ready message. */
export async function startBenchWorker<R>(moduleUrl: string, data: unknown): Promise<BenchWorker<R>> {
  const worker = spawnTsWorker(moduleUrl, data);
  const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  let failed: Error | undefined;
  const fail = (e: Error) => {
    failed ??= e;
    for (const p of pending.values()) p.reject(e);
    pending.clear();
  };
  const ready = await new Promise<R>((resolve, reject) => {
    worker.once('message', (m: { ready: R }) => resolve(m.ready));
    worker.once('error', reject);
    worker.once('exit', (code) => reject(new Error(`bench worker exited (${code}) before it was ready`)));
  });
  worker.on('message', (m: Reply) => {
    const p = pending.get(m.id);
    if (!p) return;
    pending.delete(m.id);
    if (m.error !== undefined) p.reject(new Error(m.error));
    else p.resolve(m.value);
  });
  worker.on('error', fail);
  worker.on('exit', (code) => fail(new Error(`bench worker exited (${code})`)));
  let next = 0;
  let stopped: Promise<void> | undefined;
  const call = <T>(op: string, arg?: unknown): Promise<T> => {
    if (failed) return Promise.reject(failed);
    const id = ++next;
    return new Promise<T>((resolve, reject) => {
      pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      worker.postMessage({ id, op, arg } satisfies Call);
    });
  };
  return {
    ready,
    call,
    stop() {
      stopped ??= (async () => {
        await call('stop').catch(() => undefined);
        await worker.terminate();
      })();
      return stopped;
    },
  };
}

/** The worker's side: post `ready`, then answer each call with handlers[op](arg) (or its error's message). */
export function serveBenchWorker(ready: unknown, handlers: Record<string, (arg: unknown) => unknown>): void {
  parentPort!.on('message', (m: Call) => {
    const h = handlers[m.op];
    void (async () => (h ? h(m.arg) : Promise.reject(new Error(`no bench worker call '${m.op}'`))))().then(
      (value) => parentPort!.postMessage({ id: m.id, value } satisfies Reply),
      (e: unknown) => parentPort!.postMessage({ id: m.id, error: (e as Error).message ?? String(e) } satisfies Reply),
    );
  });
  parentPort!.postMessage({ ready });
}

/** startBenchServer in a worker thread: the same BenchServer, its calls answered over the worker's messages. */
export async function startBenchServerInWorker(spec: BenchServerSpec): Promise<BenchServer> {
  const w = await startBenchWorker<{ url: string }>(import.meta.url, { benchPayment: spec });
  let held: Promise<number> | undefined;
  return {
    url: w.ready.url,
    usage: () => w.call<BenchServerUsage>('usage'),
    stop() {
      held ??= (async () => {
        const h = await w.call<number>('held').catch(() => -1);
        await w.stop();
        return h;
      })();
      return held;
    },
  };
}

if (!isMainThread && (workerData as { benchPayment?: BenchServerSpec } | undefined)?.benchPayment) {
  const s = await startBenchServer((workerData as { benchPayment: BenchServerSpec }).benchPayment);
  serveBenchWorker({ url: s.url }, { usage: () => s.usage(), held: () => s.stop() });
}
