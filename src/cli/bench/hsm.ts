// `purselab bench hsm`: operations/s and latency per HSM backend for MAC verify and card-key derivation,
// next to a floor measured in the same run on the same keys:
//   - PKCS#11: the raw pkcs11js calls the backend makes for that operation, issued directly (sync, no
//     wrapper) on the same token and key objects. Ratio = backend / raw median latency (target <= 1.3x,
//     on the default 'auto' calls, whose lone caller takes the synchronous path).
//   - software: the src/crypto call on the clear key (what the backend wraps).
// Then concurrency: 1, 4 and 8 callers in interleaved rounds, ops/s and how many cores the process kept busy
// (all its threads, plus its session processes), of which the main JS thread, and the whole machine (other
// processes included), and the speed-up over the lone caller (median of the rounds' own ratios); target for PKCS#11 'auto' (per target: plain, 1 and 2 session processes): >= 90% of the cores
// busy with 4 and 8 callers, with real work (4 callers make at least the lone caller's ops/s). Each slice
// settles unmeasured for a quarter of its length first (SETTLE_SHARE). The load
// average is printed before and after, and last the targets judged together on the setting the docs recommend
// for this machine (hsm-verdict.ts).
// PURSELAB_BENCH_HSM_TARGETS='(auto)|(sync)' (substrings of the target names, separated by |) measures only those.
//
// The PKCS#11 runs use a throw-away SoftHSM2 token (temp directory) holding the demo key set, brought in
// the way `purselab hsm init` does it. SoftHSM2 inside Node needs --openssl-legacy-provider for single DES:
// without it this suite measures in a child Node started with it.

import { readFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import type { Hsm, KeySpec } from '../../../hsm-bridge/hsm.ts';
import { paymentOps } from '../../../hsm-bridge/payment.ts';
import { acquireModule, opensslLegacyActive, pkcs11js, releaseModule, type Handle } from '../../../hsm-bridge/pkcs11/binding.ts';
import { cardKeyDerivation, Pkcs11Hsm } from '../../../hsm-bridge/pkcs11/pkcs11-hsm.ts';
import { createTempTokens, softhsmMissing } from '../../../hsm-bridge/pkcs11/softhsm-temp.ts';
import { masterCopyTemplate } from '../../../hsm-bridge/pkcs11/token-keys.ts';
import { ZERO8, ZERO16 } from '../../crypto/zero-blocks.ts';
import { SoftwareHsm } from '../../../hsm-bridge/software/software-hsm.ts';
import { serialTarget } from '../../../hsm-bridge/serial/bench.ts';
import { cardIdToBcd, diversificationBlocks, diversifyCardKey, keyCheckValue, padMethod2, verifyMac } from '../../crypto/index.ts';
import { loadS1Input, verifyLoadS1, type LoadS1Fields } from '../../crypto/purse-mac.ts';
import { DEFAULT_KEY_SET, initKeys } from '../commands/hsm-init.ts';
import { loadIssuerKeySet } from '../../crypto/key-set.ts';
import { mainThreadCpuMs, ownProcessCpuMs, processCpuMs } from './proc-cpu.ts';
import { fmt, percentile, runTimedSlice, summarize, timeCalls } from './stats.ts';
import { measureInLegacyChild } from './legacy-child.ts';
import { CORES_BUSY_SHARE, LONE_CALLER_SPEEDUP_TARGET, PKCS11_BY_PROCESSES, PKCS11_OVERHEAD_TARGET, targetsVerdict } from './hsm-verdict.ts';
import type { BenchContext, BenchFigures as Figures, BenchSuite } from './suite.ts';

/** One measured operation: what to call on an Hsm, and (optionally) its floor for a target. */
export interface HsmBenchOp {
  readonly key: string;
  readonly label: string;
  run(hsm: Hsm, i: number): Promise<unknown>;
}

/** A backend to measure. open() returns the opened HSM with the demo key set in it, or a reason to skip. */
export interface HsmBenchTarget {
  readonly name: string;
  open(ctx: BenchContext): Promise<OpenedTarget | { skip: string }>;
}

export interface OpenedTarget {
  readonly hsm: Hsm;
  /** Floors for some ops (same work without the backend), keyed by op key. */
  readonly floors?: Record<string, { label: string; run: (i: number) => unknown }>;
  /** Extra figures the target reports itself (e.g. the serial line's wire time). */
  extraFigures?(): Promise<Record<string, number | string>>;
  close(): Promise<void>;
}

// ----- the workload: the demo key set's S1 for card 9990010000000017 and its derivations -----------------

const vectors = JSON.parse(readFileSync(new URL('../../../fixtures/vectors/purse-iep.json', import.meta.url), 'utf8')) as {
  vectors: { name: string; fields: Record<string, unknown>; mac: string }[];
};
function s1(alg: '3DES' | 'AES'): { fields: LoadS1Fields; mac: Buffer; input: Buffer } {
  const v = vectors.vectors.find((x) => x.name === `load S1 (${alg})`)!;
  const bytes = new Set(['loadTxnId', 'cardChallenge', 'lastLoadTxnId']);
  const fields = Object.fromEntries(Object.entries(v.fields).map(([k, x]) => [k, bytes.has(k) ? Buffer.from(x as string, 'hex') : x])) as unknown as LoadS1Fields;
  return { fields, mac: Buffer.from(v.mac, 'hex'), input: loadS1Input(fields) };
}
const S1_DES = s1('3DES');
const S1_AES = s1('AES');
const MASTER_DES = { label: 'issuer-load-3des', version: 1 };
const MASTER_AES = { label: 'issuer-load-aes', version: 1 };
const keySet = loadIssuerKeySet(DEFAULT_KEY_SET, { complete: true });
const clearMaster = (label: string): Buffer => keySet.masterKeys.find((m) => m.label === label)!.key;
/** A different card for every call: no derived-key cache can help. */
const coldCard = (i: number): Buffer => cardIdToBcd(`99900200${String(i % 100_000_000).padStart(8, '0')}`);
const cold = (master: typeof MASTER_DES, i: number): KeySpec => ({ master, cardId: coldCard(i) });

const WARM_DES: KeySpec = { master: MASTER_DES, cardId: cardIdToBcd(S1_DES.fields.cardId) };
const WARM_AES: KeySpec = { master: MASTER_AES, cardId: cardIdToBcd(S1_AES.fields.cardId) };
const WARM_DES_BCD = cardIdToBcd(S1_DES.fields.cardId);
const WARM_AES_BCD = cardIdToBcd(S1_AES.fields.cardId);

export const HSM_BENCH_OPS: readonly HsmBenchOp[] = [
  { key: 'macVerify_3des_warm', label: 'S1 MAC verify, 3DES card key (warm)', run: (h) => h.macVerify(WARM_DES, 'ISO9797-1-ALG3', S1_DES.input, S1_DES.mac) },
  { key: 'macVerify_3des_cold', label: 'S1 MAC verify, 3DES card key derived', run: (h, i) => h.macVerify(cold(MASTER_DES, i), 'ISO9797-1-ALG3', S1_DES.input, S1_DES.mac) },
  { key: 'derive_3des', label: 'derive 3DES card key (+ KCV)', run: (h, i) => h.keyCheckValue(cold(MASTER_DES, i)) },
  { key: 'macVerify_aes_warm', label: 'S1 MAC verify, AES card key (warm)', run: (h) => h.macVerify(WARM_AES, 'AES-CMAC', S1_AES.input, S1_AES.mac) },
  { key: 'derive_aes', label: 'derive AES card key (+ KCV)', run: (h, i) => h.keyCheckValue(cold(MASTER_AES, i)) },
  { key: 'verifyS1_3des', label: 'paymentOps.verifyS1 (layout + MAC), 3DES', run: (h) => paymentOps(h).verifyS1(S1_DES.fields, S1_DES.mac) },
];
/** The ops measured with several concurrent callers. */
const CONCURRENT_OPS = ['macVerify_3des_cold', 'macVerify_aes_warm'];

// ----- targets -----------------------------------------------------------------------------------------

const softwareTarget: HsmBenchTarget = {
  name: 'software',
  async open() {
    const hsm = SoftwareHsm.inMemory();
    await hsm.open();
    await initKeys(hsm, keySet, false);
    const mkDes = clearMaster(MASTER_DES.label);
    const mkAes = clearMaster(MASTER_AES.label);
    return {
      hsm,
      floors: {
        macVerify_3des_warm: { label: 'src/crypto: diversify + verify', run: () => verifyMac('ISO9797-1-ALG3', diversifyCardKey(mkDes, WARM_DES_BCD, 'DES3-2KEY'), S1_DES.input, S1_DES.mac) },
        macVerify_3des_cold: { label: 'src/crypto: diversify + verify', run: (i) => verifyMac('ISO9797-1-ALG3', diversifyCardKey(mkDes, coldCard(i), 'DES3-2KEY'), S1_DES.input, S1_DES.mac) },
        derive_3des: { label: 'src/crypto: diversify + KCV', run: (i) => keyCheckValue('DES3-2KEY', diversifyCardKey(mkDes, coldCard(i), 'DES3-2KEY')) },
        macVerify_aes_warm: { label: 'src/crypto: diversify + verify', run: () => verifyMac('AES-CMAC', diversifyCardKey(mkAes, WARM_AES_BCD, 'AES-128'), S1_AES.input, S1_AES.mac) },
        derive_aes: { label: 'src/crypto: diversify + KCV', run: (i) => keyCheckValue('AES-128', diversifyCardKey(mkAes, coldCard(i), 'AES-128')) },
        verifyS1_3des: { label: 'src/crypto: verifyLoadS1', run: () => verifyLoadS1(diversifyCardKey(mkDes, WARM_DES_BCD, 'DES3-2KEY'), S1_DES.fields, S1_DES.mac) },
      },
      close: () => hsm.close(),
    };
  },
};

interface SoftHsmRig {
  module: string;
  label: string;
  pin: string;
  remove(): void;
}
let rig: SoftHsmRig | undefined;

/** A PKCS#11 target's name: its calls setting and session processes. */
function pkcs11TargetName(calls: 'auto' | 'sync' | 'async', processes: number): string {
  return `pkcs11 SoftHSM2 (${calls}${processes ? `, ${processes} process${processes > 1 ? 'es' : ''}` : ''})`;
}

function pkcs11Target(calls: 'auto' | 'sync' | 'async', processes = 0): HsmBenchTarget {
  return {
    name: pkcs11TargetName(calls, processes),
    async open() {
      const why = softhsmMissing();
      if (why) return { skip: why };
      if (!rig) {
        const t = createTempTokens(['purselab-bench']);
        rig = { module: t.module, label: 'purselab-bench', pin: t.tokens[0]!.pin, remove: () => t.remove() };
        const setup = new Pkcs11Hsm({ module: rig.module, tokenLabel: rig.label, pin: rig.pin });
        await setup.open();
        await initKeys(setup, keySet, false);
        await setup.close();
      }
      // the default pool bound (two sessions per libuv pool thread): what a server gets
      const hsm = new Pkcs11Hsm({ module: rig.module, tokenLabel: rig.label, pin: rig.pin, calls, processes });
      await hsm.open();
      const raw = rawFloors(rig.module, hsm.slotId!);
      return {
        hsm,
        floors: raw.floors,
        close: async () => {
          raw.close();
          await hsm.close();
        },
      };
    },
  };
}

/**
 * The floor for PKCS#11: exactly the token calls the backend makes for each op, issued straight through
 * pkcs11js (sync) on a session of our own, with the key objects looked up once.
 */
function rawFloors(module: string, slot: Handle): { floors: NonNullable<OpenedTarget['floors']>; close(): void } {
  const P = pkcs11js();
  const lib = acquireModule(module);
  const s = lib.C_OpenSession(slot, P.CKF_SERIAL_SESSION | P.CKF_RW_SESSION);
  const find = (label: string): Handle => {
    lib.C_FindObjectsInit(s, [{ type: P.CKA_LABEL, value: label }, { type: P.CKA_CLASS, value: P.CKO_SECRET_KEY }]);
    const [h] = lib.C_FindObjects(s, 1);
    lib.C_FindObjectsFinal(s);
    return h!;
  };
  // The backend derives from a session copy of each master (Pkcs11HsmOptions.masterCopies): so does the floor.
  const copy = (h: Handle): Handle => lib.C_CopyObject(s, h, masterCopyTemplate(P));
  const mkDes = copy(find(MASTER_DES.label));
  const mkAes = copy(find(MASTER_AES.label));
  const derive = (mk: Handle, aes: boolean, block: Buffer): Handle => {
    const { mechanism, template } = cardKeyDerivation(P, aes, block); // the backend's own arguments
    return lib.C_DeriveKey(s, mechanism, mk, template);
  };
  const enc = (mech: number, key: Handle, data: Buffer, iv?: Buffer): Buffer => {
    lib.C_EncryptInit(s, iv ? { mechanism: mech, parameter: iv } : { mechanism: mech }, key);
    return lib.C_Encrypt(s, data, Buffer.alloc(data.length));
  };
  const dec = (mech: number, key: Handle, data: Buffer): Buffer => {
    lib.C_DecryptInit(s, { mechanism: mech }, key);
    return lib.C_Decrypt(s, data, Buffer.alloc(data.length));
  };
  const ede = (k1: Handle, k2: Handle, b: Buffer): Buffer => enc(P.CKM_DES_ECB, k1, dec(P.CKM_DES_ECB, k2, enc(P.CKM_DES_ECB, k1, b)));
  const padded = padMethod2(S1_DES.input, 8);
  const retail = (k1: Handle, k2: Handle): Buffer => {
    const h = enc(P.CKM_DES_CBC, k1, padded.subarray(0, padded.length - 8), ZERO8).subarray(-8);
    const last = Buffer.from(padded.subarray(padded.length - 8));
    for (let i = 0; i < 8; i++) last[i]! ^= h[i]!;
    return ede(k1, k2, last);
  };
  const halves = (i: number): [Handle, Handle] => {
    const [y, yInv] = diversificationBlocks(coldCard(i), 'DES3-2KEY');
    return [derive(mkDes, false, y!), derive(mkDes, false, yInv!)];
  };
  const cmac = (k: Handle, data: Buffer): Buffer => {
    lib.C_SignInit(s, { mechanism: P.CKM_AES_CMAC }, k);
    return lib.C_Sign(s, data, Buffer.alloc(16));
  };
  const [w1, w2] = diversificationBlocks(S1_DES.fields.cardId, 'DES3-2KEY').map((b) => derive(mkDes, false, b)) as [Handle, Handle];
  const wa = derive(mkAes, true, diversificationBlocks(S1_AES.fields.cardId, 'AES-128')[0]!);
  return {
    floors: {
      macVerify_3des_warm: { label: 'raw pkcs11js: DES-CBC + 3x DES-ECB', run: () => retail(w1, w2).equals(S1_DES.mac) },
      macVerify_3des_cold: {
        label: 'raw pkcs11js: 2 derive + DES-CBC + 3x DES-ECB + 2 destroy',
        run: (i) => {
          const [k1, k2] = halves(i);
          const ok = retail(k1, k2).equals(S1_DES.mac);
          lib.C_DestroyObject(s, k1);
          lib.C_DestroyObject(s, k2);
          return ok;
        },
      },
      derive_3des: {
        label: 'raw pkcs11js: 2 derive + 3x DES-ECB + 2 destroy',
        run: (i) => {
          const [k1, k2] = halves(i);
          const kcv = ede(k1, k2, ZERO8);
          lib.C_DestroyObject(s, k1);
          lib.C_DestroyObject(s, k2);
          return kcv;
        },
      },
      macVerify_aes_warm: { label: 'raw pkcs11js: AES-CMAC sign', run: () => cmac(wa, S1_AES.input).subarray(0, 8).equals(S1_AES.mac) },
      derive_aes: {
        label: 'raw pkcs11js: derive + AES-CMAC + destroy',
        run: (i) => {
          const k = derive(mkAes, true, diversificationBlocks(coldCard(i), 'AES-128')[0]!);
          const kcv = cmac(k, ZERO16);
          lib.C_DestroyObject(s, k);
          return kcv;
        },
      },
    },
    close: () => {
      for (const h of [w1, w2, wa]) lib.C_DestroyObject(s, h);
      lib.C_CloseSession(s);
      releaseModule(module);
    },
  };
}

/**
 * The backends measured, in order. ===== HOOK for other backends: the serial host-command backend adds its
 * target here (e.g. `serialTarget(115200)` opening an hsm-sim over a socat pty pair, with the key set loaded by
 * initKeys() and its wire-time floor in extraFigures()). Nothing else in this file needs to change. =====
 */
export const HSM_BENCH_TARGETS: HsmBenchTarget[] = [softwareTarget, pkcs11Target('auto'), pkcs11Target('auto', 1), pkcs11Target('auto', 2), pkcs11Target('sync'), pkcs11Target('async'), serialTarget({ baudRate: 115200, ops: HSM_BENCH_OPS, loadKeys: (h) => initKeys(h, keySet, false) })];

// ----- measuring ---------------------------------------------------------------------------------------

async function measureTarget(ctx: BenchContext, target: HsmBenchTarget, figures: Figures, lines: string[]): Promise<void> {
  const opened = await target.open(ctx);
  if ('skip' in opened) {
    figures[`${target.name}.skipped`] = opened.skip;
    lines.push(`  ${target.name}: skipped (${opened.skip})`);
    return;
  }
  const n = Math.max(20, Math.round(1000 * ctx.scale));
  try {
    for (const op of HSM_BENCH_OPS) {
      // Backend and floor alternate in rounds, so a machine busy with something else slows both alike; the
      // ratio is the median over the rounds of (backend median latency / floor median latency).
      const floor = opened.floors?.[op.key];
      const rounds = 9;
      const minPer = Math.max(4, Math.round(n / rounds));
      let i0 = 1;
      // Warm-up: enough calls for the JIT to compile both paths (a backend's few microseconds of JS are
      // otherwise measured interpreted, with --quick especially), bounded in time for the slow serial line.
      const w0 = performance.now();
      const warm = await warmUp((i) => op.run(opened.hsm, i0 + i), minPer);
      const msPerCall = (performance.now() - w0) / warm;
      i0 += warm;
      if (floor) i0 += await warmUp((i) => floor.run(i0 + i), minPer);
      // Rounds of at least ~40 ms each (a cheap call's median over a dozen samples moves with every preemption
      // on a shared machine), at most 4,000 calls.
      const per = Math.max(minPer, Math.min(4000, Math.round(40 / msPerCall)));
      const lat: number[] = [];
      const flat: number[] = [];
      const ratios: number[] = [];
      for (let r = 0; r < rounds; r++) {
        const a = await timeCalls(per, (i) => op.run(opened.hsm, i0 + i));
        i0 += per;
        lat.push(...a);
        if (floor) {
          const b = await timeCalls(per, (i) => floor.run(i0 + i));
          i0 += per;
          flat.push(...b);
          // medians: a preempted call (this machine may be busy with other work) does not move them
          ratios.push(summarize(a).medianMs / summarize(b).medianMs);
        }
      }
      const l = summarize(lat);
      const p = `${target.name}.${op.key}`;
      figures[`${p}.opsPerSec`] = Math.round(1000 / l.meanMs);
      figures[`${p}.medianUs`] = Math.round(l.medianMs * 1000);
      figures[`${p}.p99Us`] = Math.round(l.p99Ms * 1000);
      let floorText = '';
      if (floor) {
        const f = summarize(flat);
        const rt = percentile(ratios, 50);
        figures[`${p}.floorOpsPerSec`] = Math.round(1000 / f.meanMs);
        figures[`${p}.floorMedianUs`] = Math.round(f.medianMs * 1000);
        figures[`${p}.ratio`] = Number(rt.toFixed(2));
        floorText = `| floor ${fmt(1000 / f.meanMs).padStart(6)} ops/s, median ${fmt(f.medianMs * 1000)} us (${floor.label}) | ratio ${rt.toFixed(2)}x`;
      }
      lines.push(`  ${target.name.padEnd(24)} ${op.label.padEnd(42)} ${fmt(1000 / l.meanMs).padStart(6)} ops/s, median ${fmt(l.medianMs * 1000)} us, p99 ${fmt(l.p99Ms * 1000)} us ${floorText}`);
    }
    for (const key of CONCURRENT_OPS) {
      const op = HSM_BENCH_OPS.find((o) => o.key === key)!;
      // Unmeasured warm-up with 4 callers: the concurrent paths warm, as the single-caller paths were above. A
      // session process gets no calls before this (a lone caller runs in this process): its JIT takes about
      // a second of calls to settle (measured: 0.4 s slices of 4 callers made 16k, 39k, then 53-60k ops/s).
      const warmUntil = performance.now() + (opened.hsm instanceof Pkcs11Hsm && opened.hsm.sessionProcessPids.length ? 1200 : 300);
      let w = 0;
      await Promise.all(Array.from({ length: 4 }, async () => {
        while (performance.now() < warmUntil) await op.run(opened.hsm, 20_000_000 + w++);
      }));
      // 1, 4 and 8 callers in interleaved rounds (a slice of each per round), so a machine whose speed
      // changes from second to second (a shared VM) slows all three alike; the speed-up over the lone caller
      // is the median of the rounds' own ratios.
      const kids = opened.hsm instanceof Pkcs11Hsm ? opened.hsm.sessionProcessPids : [];
      const series = new Map(CALLER_COUNTS.map((c) => [c, newSeries()]));
      // For a fixed time rather than a fixed count: CPU figures need more than a few scheduler ticks.
      const sliceMs = Math.max(400, 4000 * ctx.scale) / CONCURRENCY_ROUNDS;
      for (let round = 0; round < CONCURRENCY_ROUNDS; round++) {
        const perRound = new Map<number, number>();
        for (const callers of CALLER_COUNTS) {
          const s = series.get(callers)!;
          const slice = await runTimedSlice(callers, sliceMs * SETTLE_SHARE, sliceMs, (i) => op.run(opened.hsm, 10_000_000 + i), () => sampleCpu(opened.hsm, kids));
          addSlice(s, slice.ms, slice.calls, slice.before, slice.after);
          perRound.set(callers, (slice.calls * 1000) / slice.ms);
        }
        for (const c of CALLER_COUNTS) series.get(c)!.speedups.push(perRound.get(c)! / perRound.get(1)!);
      }
      for (const callers of CALLER_COUNTS) {
        const s = series.get(callers)!;
        const busy = s.cpuMs / s.ms;
        const mainBusy = s.mainMs !== undefined ? s.mainMs / s.ms : undefined;
        const machine = s.machineTicks[1] ? cpus().length * (1 - s.machineTicks[0] / s.machineTicks[1]) : undefined;
        const speedup = percentile(s.speedups, 50);
        const p = `${target.name}.${key}.c${callers}`;
        figures[`${p}.opsPerSec`] = Math.round((s.ops * 1000) / s.ms);
        figures[`${p}.coresBusy`] = Number(busy.toFixed(2));
        figures[`${p}.speedup`] = Number(speedup.toFixed(2));
        if (mainBusy !== undefined) figures[`${p}.mainThreadBusy`] = Number(mainBusy.toFixed(2));
        if (machine !== undefined) figures[`${p}.machineBusy`] = Number(machine.toFixed(2));
        let modeText = '';
        if (s.modes) {
          const done = s.modes.concurrent + s.modes.alone;
          figures[`${p}.concurrentShare`] = done ? Number((s.modes.concurrent / done).toFixed(2)) : 0;
          modeText = `, ${Math.round((100 * s.modes.concurrent) / Math.max(1, done))}% of ops concurrent`;
        }
        lines.push(
          `  ${target.name.padEnd(24)} ${`${op.label}, ${callers} caller${callers > 1 ? 's' : ''}`.padEnd(46)} ${fmt((s.ops * 1000) / s.ms).padStart(6)} ops/s  cores busy ${busy.toFixed(2)} of ${cpus().length}` +
            (mainBusy !== undefined ? ` (main thread ${mainBusy.toFixed(2)})` : '') +
            (machine !== undefined ? `; machine ${machine.toFixed(2)} busy (all processes)` : '') +
            (callers > 1 ? `; ${speedup.toFixed(2)}x the lone caller (median of ${CONCURRENCY_ROUNDS} rounds)` : '') +
            modeText,
        );
      }
    }
    if (opened.extraFigures) {
      const extra = await opened.extraFigures();
      Object.assign(figures, Object.fromEntries(Object.entries(extra).map(([k, v]) => [`${target.name}.${k}`, v])));
      // A line's wire-time figures (serial): median latency over the time the operation's bytes take on the wire.
      for (const [k, v] of Object.entries(extra)) {
        if (!k.endsWith('.latencyOverWire')) continue;
        const op = k.slice(0, -'.latencyOverWire'.length);
        const label = HSM_BENCH_OPS.find((o) => o.key === op)?.label ?? op;
        lines.push(`  ${target.name.padEnd(24)} ${label.padEnd(42)} ${String(extra[`${op}.wireBytes`])} bytes on the wire = ${fmt(Number(extra[`${op}.wireUs`]))} us; median latency ${String(v)}x the wire time`);
      }
      if (extra.worstLatencyOverWire !== undefined) lines.push(`  ${target.name.padEnd(24)} worst median latency / wire time ${String(extra.worstLatencyOverWire)}x (target <= 1.2x: ${String(extra.wireTargetMet)})`);
    }
  } finally {
    await opened.close();
  }
}

/** The machine's [idle, total] CPU ticks (Linux /proc/stat; undefined elsewhere). */
function machineTicks(): [number, number] | undefined {
  try {
    const v = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!.trim().split(/\s+/).slice(1).map(Number);
    return [v[3]! + v[4]!, v.reduce((a, b) => a + b, 0)];
  } catch {
    return undefined;
  }
}

function callModesOf(hsm: Hsm): { alone: number; concurrent: number } | undefined {
  return hsm instanceof Pkcs11Hsm ? hsm.callModes : undefined;
}

/** Rounds of the concurrency series (each runs a slice of every caller count). */
const CONCURRENCY_ROUNDS = 8;
/** Each slice first runs its callers unmeasured for this share of its length, so that it measures that caller count settled (a session process idle through the lone caller's slice wakes cold), not the change from the slice before. */
const SETTLE_SHARE = 0.25;
const CALLER_COUNTS = [1, 4, 8] as const;

interface CpuSample {
  /** this process's CPU ms so far, every thread */
  readonly cpu: number;
  readonly kids: (number | undefined)[];
  readonly main: number | undefined;
  readonly machine: [number, number] | undefined;
  readonly modes: { alone: number; concurrent: number } | undefined;
}

function sampleCpu(hsm: Hsm, kids: readonly number[]): CpuSample {
  return { cpu: ownProcessCpuMs(), kids: kids.map(processCpuMs), main: mainThreadCpuMs(), machine: machineTicks(), modes: callModesOf(hsm) };
}

/** One caller count's sums over its slices. */
interface Series {
  ms: number;
  ops: number;
  /** the process tree's CPU: this process (all threads) and its session processes */
  cpuMs: number;
  mainMs: number | undefined;
  /** the machine's [idle, total] tick deltas */
  machineTicks: [number, number];
  modes: { alone: number; concurrent: number } | undefined;
  readonly speedups: number[];
}

function newSeries(): Series {
  return { ms: 0, ops: 0, cpuMs: 0, mainMs: 0, machineTicks: [0, 0], modes: undefined, speedups: [] };
}

function addSlice(s: Series, ms: number, ops: number, a: CpuSample, b: CpuSample): void {
  s.ms += ms;
  s.ops += ops;
  s.cpuMs += b.cpu - a.cpu;
  s.cpuMs += a.kids.reduce<number>((t, k0, i) => t + Math.max(0, (b.kids[i] ?? 0) - (k0 ?? 0)), 0);
  s.mainMs = s.mainMs !== undefined && a.main !== undefined && b.main !== undefined ? s.mainMs + b.main - a.main : undefined;
  if (a.machine && b.machine) {
    s.machineTicks[0] += b.machine[0] - a.machine[0];
    s.machineTicks[1] += b.machine[1] - a.machine[1];
  }
  if (a.modes && b.modes) {
    s.modes ??= { alone: 0, concurrent: 0 };
    s.modes.alone += b.modes.alone - a.modes.alone;
    s.modes.concurrent += b.modes.concurrent - a.modes.concurrent;
  }
}

const load = (): string => loadavg().map((x) => x.toFixed(2)).join(' ');

/** Call fn at least `min` times, then on up to WARM_CALLS calls or WARM_MS milliseconds; returns the calls made. */
const WARM_CALLS = 2000;
const WARM_MS = 400;
async function warmUp(fn: (i: number) => unknown, min: number): Promise<number> {
  const t0 = Date.now();
  let i = 0;
  while (i < Math.max(5, min) || (i < WARM_CALLS && Date.now() - t0 < WARM_MS)) await fn(i++);
  return i;
}

/** The two PKCS#11 target lines: single-caller overhead and cores busy with >= 4 callers, on 'auto' calls (the default). */
function pkcs11Targets(figures: Figures, lines: string[]): void {
  for (const { processes, key } of PKCS11_BY_PROCESSES) pkcs11TargetsOf(pkcs11TargetName('auto', processes), key, figures, lines);
}

function pkcs11TargetsOf(auto: string, key: string, figures: Figures, lines: string[]): void {
  const title = `PKCS#11 ${auto.slice('pkcs11 SoftHSM2 '.length)}`;
  const ratios = Object.entries(figures).filter(([k]) => k.startsWith(`${auto}.`) && k.endsWith('.ratio'));
  if (ratios.length) {
    const worst = Math.max(...ratios.map(([, v]) => v as number));
    const worstOp = ratios.find(([, v]) => v === worst)![0].slice(auto.length + 1, -'.ratio'.length);
    figures[`${key}.worstRatio`] = worst;
    const overheadMet = worst <= PKCS11_OVERHEAD_TARGET;
    figures[`${key}.ratioTargetMet`] = overheadMet;
    lines.push(`  ${title} single-caller overhead over raw pkcs11js: worst ${worst.toFixed(2)}x (${worstOp}) (target <= ${PKCS11_OVERHEAD_TARGET}x: ${overheadMet ? 'met' : 'NOT met'})`);
  }
  const cores = cpus().length;
  const goal = CORES_BUSY_SHARE * cores;
  const speedup = LONE_CALLER_SPEEDUP_TARGET.toFixed(2);
  const fig = (op: string, c: number, f: string): number | undefined => figures[`${auto}.${op}.c${c}.${f}`] as number | undefined;
  const conc = CONCURRENT_OPS.flatMap((op) => [4, 8].map((c) => ({ op, c, busy: fig(op, c, 'coresBusy'), machine: fig(op, c, 'machineBusy'), speedup: fig(op, c, 'speedup') ?? 0 })));
  const have = conc.filter((x) => x.busy !== undefined);
  if (!have.length) return;
  // Busy with real work: the cores busy with 4 and 8 callers, and with 4 callers at least the lone caller's ops/s.
  let allMet = true;
  for (const op of CONCURRENT_OPS) {
    const mine = have.filter((x) => x.op === op);
    if (!mine.length) continue;
    const ok = mine.every((x) => x.busy! >= goal && (x.c !== 4 || x.speedup >= LONE_CALLER_SPEEDUP_TARGET));
    allMet &&= ok;
    figures[`${key}.${op}.concurrencyTargetMet`] = ok;
    const parts = mine.map((x) => `${x.busy!.toFixed(2)} with ${x.c} callers (${x.speedup.toFixed(2)}x the lone caller's ops/s; machine ${x.machine?.toFixed(2) ?? '?'})`);
    lines.push(`  ${title} ${op}: cores busy ${parts.join(', ')}: ${ok ? 'met' : 'NOT met'} (>= ${goal.toFixed(1)} cores, and >= ${speedup}x ops/s with 4 callers)`);
  }
  const least = have.reduce((a, b) => (b.busy! < a.busy! ? b : a));
  figures[`${key}.concurrentCoresBusyMin`] = least.busy!;
  figures[`${key}.concurrencyTargetMet`] = allMet;
  const others = least.machine !== undefined ? `; the machine was ${least.machine.toFixed(2)} busy then, ${Math.max(0, least.machine - least.busy!).toFixed(2)} of it other processes` : '';
  lines.push(`  ${title} with >= 4 callers: least ${least.busy!.toFixed(2)} of ${cores} cores busy (${least.op}, ${least.c} callers${others}) (target >= ${goal.toFixed(1)} with >= ${speedup}x the lone caller's ops/s with 4 callers, every op: ${allMet ? 'met' : 'NOT met'})`);
}

function printFigures(ctx: BenchContext, f: Figures): void {
  if (ctx.json) return;
  for (const line of (f.lines as string).split('\n')) ctx.io.out(line);
}

export const hsmBench: BenchSuite = {
  name: 'hsm',
  summary: 'HSM backends: MAC verify and card-key derivation, ops/s and latency, PKCS#11 vs raw pkcs11js, concurrency',
  async run(ctx) {
    if (!opensslLegacyActive() && !process.env.PURSELAB_BENCH_HSM_CHILD && !softhsmMissing()) {
      const f = measureInLegacyChild(ctx, 'hsm', { PURSELAB_BENCH_HSM_CHILD: '1' });
      printFigures(ctx, f);
      return f;
    }
    const figures: Figures = {};
    const lines: string[] = [];
    const only = process.env.PURSELAB_BENCH_HSM_TARGETS?.split('|').map((x) => x.trim()).filter(Boolean);
    const targets = only?.length ? HSM_BENCH_TARGETS.filter((t) => only.some((o) => t.name.includes(o))) : HSM_BENCH_TARGETS;
    figures.loadAvgBefore = load();
    lines.push(`  load average before: ${load()} (${cpus().length} cores; UV_THREADPOOL_SIZE ${process.env.UV_THREADPOOL_SIZE ?? '4 (default)'})`);
    try {
      for (const target of targets) await measureTarget(ctx, target, figures, lines);
    } finally {
      rig?.remove();
      rig = undefined;
    }
    figures.loadAvgAfter = load();
    lines.push(`  load average after: ${load()}`);
    pkcs11Targets(figures, lines);
    const verdict = targetsVerdict(figures, cpus().length);
    if (verdict) {
      figures.targetsMet = verdict.met;
      lines.push(verdict.line);
    }
    figures.lines = lines.join('\n');
    printFigures(ctx, figures);
    return figures;
  },
};
