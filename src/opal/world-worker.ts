// The parts of the OPAL world (src/opal/world.ts) in bench worker threads, for `purselab bench opal`: the
// payment server, the merchant and OPAL each in a thread of its own (or the shop, payment server + merchant, in
// one), so they use the machine's cores as separate programs would; the load generator stays in the main thread. startWorldHalf() starts a half in the calling
// thread (the bench's same-thread modes); loaded as a worker (workerData.opalWorldHalf, through
// startBenchWorker), it runs there and answers calls: 'cardholders' { prefix, count } -> Cardholder[] (OPAL),
// 'usage' -> the thread's CPU and run-queue wait ms, 'stop'. The OPAL HSM is opened in the thread that runs OPAL (HsmSpec).

import { fileURLToPath } from 'node:url';
import { isMainThread, workerData } from 'node:worker_threads';
import type { Hsm } from '../../hsm-bridge/hsm.ts';
import { Pkcs11Hsm } from '../../hsm-bridge/pkcs11/pkcs11-hsm.ts';
import { SoftwareHsm } from '../../hsm-bridge/software/software-hsm.ts';
import { serveBenchWorker, startBenchWorker } from '../cli/bench/payment-server-worker.ts';
import { threadUsage, UNMEASURED_USAGE, type ThreadUsage } from '../cli/bench/proc-cpu.ts';
import { initKeys } from '../cli/commands/hsm-init.ts';
import { loadIssuerKeySet } from '../crypto/key-set.ts';
import { startMerchantPart, startOpalNode, startPaymentPart, startShop, type Cardholder } from './world.ts';

const root = (rel: string) => fileURLToPath(new URL(`../../${rel}`, import.meta.url));

/** The OPAL HSM: an in-memory software HSM, or a PKCS#11 token (e.g. a throw-away SoftHSM2 one). */
export type HsmSpec = { readonly kind: 'software' } | { readonly kind: 'pkcs11'; readonly module: string; readonly tokenLabel: string; readonly pin: string };

/** Open the HSM and put the TEST record keys and issuer masters in it (hsm init's initKeys). */
export async function openBenchHsm(spec: HsmSpec): Promise<Hsm> {
  const hsm = spec.kind === 'software' ? SoftwareHsm.inMemory() : new Pkcs11Hsm({ module: spec.module, tokenLabel: spec.tokenLabel, pin: spec.pin, sessions: 8 });
  await hsm.open();
  try {
    await initKeys(hsm, loadIssuerKeySet(root('fixtures/keys/demo-issuer.json')), true);
  } catch (e) {
    await hsm.close();
    throw e;
  }
  return hsm;
}

export type WorldHalfSpec =
  | { readonly half: 'shop'; readonly dir: string; readonly psams: number }
  | { readonly half: 'payment'; readonly dir: string; readonly psams: number }
  | { readonly half: 'merchant'; readonly dir: string; readonly paymentUrl: string }
  | { readonly half: 'opal'; readonly dir: string; readonly hsm: HsmSpec; readonly initialBalance: number; readonly cheapPasswords: boolean };

/** A running half: its URL(s), and the calls a worker answers. */
export interface WorldHalf {
  readonly urls: { readonly paymentUrl?: string; readonly merchantUrl?: string; readonly opalUrl?: string };
  /** Register and log in `count` cardholders `${prefix}${i}` (the OPAL half only). */
  cardholders(prefix: string, count: number): Promise<Cardholder[]>;
  close(): Promise<void>;
}

const noCardholders = (half: string) => () => Promise.reject(new Error(`the ${half} half has no cardholders`));

export async function startWorldHalf(spec: WorldHalfSpec): Promise<WorldHalf> {
  if (spec.half === 'shop') {
    const shop = await startShop({ dir: spec.dir, psams: spec.psams });
    return { urls: { paymentUrl: shop.paymentUrl, merchantUrl: shop.merchantUrl }, cardholders: noCardholders('shop'), close: () => shop.close() };
  }
  if (spec.half === 'payment') {
    const part = await startPaymentPart({ dir: spec.dir, psams: spec.psams });
    return { urls: { paymentUrl: part.paymentUrl }, cardholders: noCardholders('payment'), close: () => part.close() };
  }
  if (spec.half === 'merchant') {
    const part = await startMerchantPart({ dir: spec.dir, paymentUrl: spec.paymentUrl });
    return { urls: { merchantUrl: part.merchantUrl }, cardholders: noCardholders('merchant'), close: () => part.close() };
  }
  const hsm = await openBenchHsm(spec.hsm);
  try {
    const node = await startOpalNode({ hsm, dir: spec.dir, initialBalance: spec.initialBalance, cheapPasswords: spec.cheapPasswords });
    return {
      urls: { opalUrl: node.opalUrl },
      async cardholders(prefix, count) {
        const out: Cardholder[] = [];
        for (let i = 0; i < count; i++) out.push(await node.cardholder(`${prefix}${i}`));
        return out;
      },
      async close() {
        await node.close();
        await hsm.close();
      },
    };
  } catch (e) {
    await hsm.close();
    throw e;
  }
}

/** The main thread's handle on a half: in a worker thread, or (inWorker false) in this thread. */
export interface WorldHalfHandle extends WorldHalf {
  /** CPU and run-queue wait ms of the thread running this half (NaN in this thread: the caller measures its own). */
  usage(): Promise<ThreadUsage>;
}

export async function runWorldHalf(spec: WorldHalfSpec, inWorker: boolean): Promise<WorldHalfHandle> {
  if (!inWorker) {
    const h = await startWorldHalf(spec);
    return { ...h, usage: async () => UNMEASURED_USAGE };
  }
  const w = await startBenchWorker<WorldHalf['urls']>(import.meta.url, { opalWorldHalf: spec });
  return {
    urls: w.ready,
    cardholders: (prefix, count) => w.call<Cardholder[]>('cardholders', { prefix, count }),
    usage: () => w.call<ThreadUsage>('usage'),
    close: () => w.stop(),
  };
}

const asWorker = !isMainThread ? (workerData as { opalWorldHalf?: WorldHalfSpec } | undefined)?.opalWorldHalf : undefined;
if (asWorker) {
  const h = await startWorldHalf(asWorker);
  serveBenchWorker(h.urls, {
    cardholders: (arg) => {
      const a = arg as { prefix: string; count: number };
      return h.cardholders(a.prefix, a.count);
    },
    usage: () => threadUsage(),
    stop: () => h.close(),
  });
}
