// Benchmark figures for the serial backend: ops/s and latency of MAC verify and key derivation through a real
// tty (socat pty pair, default 115200 baud 8N1) to `purselab hsm-sim` in its own process, next to the wire time
// of the exact bytes each operation puts on the line (framing included). Target: latency within 1.2x the wire
// time. `purselab bench hsm` calls measureSerial(); it prints nothing itself unless given `log`.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Hsm } from '../hsm.ts';
import { SerialHsm, type SerialLine } from './backend.ts';
import { wireTimeMs } from './framing.ts';
import { ptyHostLine, socatMissing, spawnSimulator, startPtyPair, type PtyPair, type SimulatorProcess } from './lab.ts';

/** Serial latency target: at most this many times the wire time of the bytes. */
export const SERIAL_WIRE_TARGET = 1.2;

export interface SerialBenchOp {
  readonly name: string;
  readonly summary: string;
  /** One operation; `i` counts from 0. */
  run(hsm: SerialHsm, i: number): Promise<unknown>;
}

export interface SerialBenchOptions {
  /** 'pty' (default): socat pty pair at `baudRate`; 'tcp': loopback TCP (no wire time). */
  readonly line?: 'pty' | 'tcp';
  readonly baudRate?: number;
  /** Measured operations per op kind (default 200). */
  readonly iterations?: number;
  /** Unmeasured operations first (default 20). */
  readonly warmup?: number;
  /** What to measure (default: macVerify and derive, see DEFAULT_SERIAL_OPS). */
  readonly ops?: readonly SerialBenchOp[];
  readonly log?: (line: string) => void;
}

export interface SerialOpFigures {
  readonly op: string;
  readonly summary: string;
  readonly iterations: number;
  readonly opsPerSec: number;
  readonly medianMs: number;
  readonly p99Ms: number;
  readonly meanMs: number;
  /** Framed bytes per operation: request out, answer in. */
  readonly bytesOut: number;
  readonly bytesIn: number;
  /** Serial: time those bytes occupy the line at the baud rate (10 bits per character). */
  readonly wireMs?: number;
  /** Serial: mean latency / wire time (what ops/s sees), and median latency / wire time (what the target is judged on). */
  readonly ratio?: number;
  readonly medianRatio?: number;
}

export interface SerialBenchResult {
  /** False when the line cannot be set up here (e.g. no socat); `reason` says why. */
  readonly available: boolean;
  readonly reason?: string;
  readonly line: string;
  readonly baudRate?: number;
  readonly target: number;
  readonly ops: readonly SerialOpFigures[];
}

const MASTER = { label: 'bench-issuer-mk', version: 1 };
const CARD = Buffer.from('6012345678901234', 'hex');
const MESSAGE = Buffer.from('000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F', 'hex'); // 32 bytes
let benchMac: Buffer | undefined;

/** MAC verify (ALG3 over 32 bytes, 8-byte MAC, card key derived from the master inside the HSM) and key derivation (KCV of a derived card key). */
export const DEFAULT_SERIAL_OPS: readonly SerialBenchOp[] = [
  {
    name: 'macVerify',
    summary: 'MAC verify: ISO 9797-1 alg 3, 32 bytes, card key derived in the HSM',
    run: async (hsm) => {
      benchMac ??= await hsm.macGenerate({ master: MASTER, cardId: CARD }, 'ISO9797-1-ALG3', MESSAGE);
      if (!(await hsm.macVerify({ master: MASTER, cardId: CARD }, 'ISO9797-1-ALG3', MESSAGE, benchMac))) throw new Error('bench MAC did not verify');
    },
  },
  {
    name: 'derive',
    summary: 'key derivation: card key from master + card id, its KCV',
    run: (hsm) => hsm.keyCheckValue({ master: MASTER, cardId: CARD }),
  },
];

const pct = (sorted: readonly number[], p: number): number => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;

export async function measureSerial(options: SerialBenchOptions = {}): Promise<SerialBenchResult> {
  const lineKind = options.line ?? 'pty';
  const baudRate = options.baudRate ?? 115200;
  const iterations = Math.max(1, options.iterations ?? 200);
  const warmup = Math.max(1, options.warmup ?? 20);
  const ops = options.ops ?? DEFAULT_SERIAL_OPS;
  const log = options.log ?? (() => undefined);
  const base = { target: SERIAL_WIRE_TARGET, ops: [] as SerialOpFigures[] };

  if (lineKind === 'pty') {
    const why = socatMissing();
    if (why) return { ...base, available: false, reason: why, line: `pty ${baudRate} 8N1`, baudRate };
  }
  const dir = mkdtempSync(join(tmpdir(), 'purselab-serial-bench-'));
  let pty: PtyPair | undefined;
  let sim: SimulatorProcess | undefined;
  let hsm: SerialHsm | undefined;
  try {
    const master = randomBytes(12).toString('hex'); // a throw-away lab store
    let line: SerialLine;
    if (lineKind === 'pty') {
      pty = await startPtyPair(dir, 'bench');
      sim = await spawnSimulator({ serial: pty.simPath, baud: baudRate, keystore: join(dir, 'bench.store'), master });
      line = ptyHostLine(pty, baudRate);
    } else {
      sim = await spawnSimulator({ tcp: 0, keystore: join(dir, 'bench.store'), master });
      line = { kind: 'tcp', host: '127.0.0.1', port: sim.port };
    }
    hsm = new SerialHsm({ line, timeoutMs: 10_000 });
    await hsm.open();
    await hsm.generateKey(MASTER, 'DES3-2KEY', ['mac', 'derive']);
    benchMac = undefined;
    const description = hsm.client.transport.description;
    log(`serial bench on ${description}, ${iterations} operations each`);

    const figures: SerialOpFigures[] = [];
    for (const op of ops) {
      for (let i = 0; i < warmup; i++) await op.run(hsm, i);
      const out0 = hsm.client.stats.bytesOut;
      const in0 = hsm.client.stats.bytesIn;
      const lat: number[] = new Array(iterations);
      const t0 = process.hrtime.bigint();
      for (let i = 0; i < iterations; i++) {
        const s = process.hrtime.bigint();
        await op.run(hsm, i);
        lat[i] = Number(process.hrtime.bigint() - s) / 1e6;
      }
      const elapsedMs = Number(process.hrtime.bigint() - t0) / 1e6;
      const sorted = [...lat].sort((a, b) => a - b);
      const meanMs = lat.reduce((a, b) => a + b, 0) / iterations;
      const bytesOut = (hsm.client.stats.bytesOut - out0) / iterations;
      const bytesIn = (hsm.client.stats.bytesIn - in0) / iterations;
      const f: SerialOpFigures = {
        op: op.name,
        summary: op.summary,
        iterations,
        opsPerSec: (iterations * 1000) / elapsedMs,
        medianMs: pct(sorted, 50),
        p99Ms: pct(sorted, 99),
        meanMs,
        bytesOut,
        bytesIn,
        ...(lineKind === 'pty'
          ? (() => {
              const wireMs = wireTimeMs(bytesOut + bytesIn, baudRate);
              return { wireMs, ratio: meanMs / wireMs, medianRatio: pct(sorted, 50) / wireMs };
            })()
          : {}),
      };
      figures.push(f);
      log(
        `  ${op.name}: ${f.opsPerSec.toFixed(1)} ops/s, latency median ${f.medianMs.toFixed(3)} ms, p99 ${f.p99Ms.toFixed(3)} ms` +
          (f.wireMs !== undefined
            ? `; ${bytesOut}+${bytesIn} bytes = ${f.wireMs.toFixed(3)} ms on the wire: median ${f.medianRatio!.toFixed(2)}x (target <= ${SERIAL_WIRE_TARGET}x: ${f.medianRatio! <= SERIAL_WIRE_TARGET ? 'met' : 'NOT met'}), mean ${f.ratio!.toFixed(2)}x`
            : ''),
      );
    }
    return { ...base, available: true, line: description, ...(lineKind === 'pty' ? { baudRate } : {}), ops: figures };
  } finally {
    await hsm?.close().catch(() => undefined);
    await sim?.stop().catch(() => undefined);
    await pty?.kill().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  }
}

// ---- `purselab bench hsm` target ---------------------------------------------------------------------------

/** An operation of `purselab bench hsm` (src/cli/bench/hsm.ts HsmBenchOp, structurally). */
export interface HsmBenchOpLike {
  readonly key: string;
  readonly label: string;
  run(hsm: Hsm, i: number): Promise<unknown>;
}

export interface SerialTargetOptions {
  readonly baudRate?: number;
  /** Load the bench's key set into the fresh simulator (the bench passes its initKeys of the demo key set). */
  readonly loadKeys: (hsm: Hsm) => Promise<unknown>;
  /** The bench's operations: for each, extraFigures() reports its bytes, wire time and latency / wire time. */
  readonly ops: readonly HsmBenchOpLike[];
  /** Operations per op for the wire figures (default 30). */
  readonly wireSamples?: number;
}

/**
 * A target for `purselab bench hsm` (HSM_BENCH_TARGETS): the serial backend over a socat pty pair at `baudRate`
 * to a simulator process. Its extra figures are, per op: framed bytes out/in, their wire time, and the median
 * latency over the wire time (target <= SERIAL_WIRE_TARGET).
 */
export function serialTarget(options: SerialTargetOptions): {
  readonly name: string;
  open(): Promise<
    | { skip: string }
    | { readonly hsm: Hsm; extraFigures(): Promise<Record<string, number | string>>; close(): Promise<void> }
  >;
} {
  const baudRate = options.baudRate ?? 115200;
  return {
    name: `serial pty ${baudRate}`,
    async open() {
      const why = socatMissing();
      if (why) return { skip: why };
      const dir = mkdtempSync(join(tmpdir(), 'purselab-serial-bench-'));
      let pty: PtyPair | undefined;
      let sim: SimulatorProcess | undefined;
      let hsm: SerialHsm | undefined;
      const close = async (): Promise<void> => {
        await hsm?.close().catch(() => undefined);
        await sim?.stop().catch(() => undefined);
        await pty?.kill().catch(() => undefined);
        rmSync(dir, { recursive: true, force: true });
      };
      try {
        pty = await startPtyPair(dir, 'bench');
        sim = await spawnSimulator({ serial: pty.simPath, baud: baudRate, keystore: join(dir, 'bench.store'), master: randomBytes(12).toString('hex') });
        hsm = new SerialHsm({ line: ptyHostLine(pty, baudRate), timeoutMs: 10_000 });
        await hsm.open();
        await options.loadKeys(hsm);
      } catch (e) {
        await close();
        throw e;
      }
      const serial = hsm;
      return {
        hsm: serial,
        close,
        async extraFigures() {
          const out: Record<string, number | string> = { baudRate, line: serial.client.transport.description };
          let worst = 0;
          for (const op of options.ops) {
            const n = Math.max(5, options.wireSamples ?? 30);
            await op.run(serial, 900_000_000);
            const b0 = serial.client.stats.bytesOut;
            const i0 = serial.client.stats.bytesIn;
            const lat: number[] = [];
            for (let i = 0; i < n; i++) {
              const s = process.hrtime.bigint();
              await op.run(serial, 900_000_001 + i);
              lat.push(Number(process.hrtime.bigint() - s) / 1e6);
            }
            const bytes = (serial.client.stats.bytesOut - b0 + serial.client.stats.bytesIn - i0) / n;
            const wireMs = wireTimeMs(bytes, baudRate);
            const ratio = pct([...lat].sort((a, b) => a - b), 50) / wireMs;
            worst = Math.max(worst, ratio);
            out[`${op.key}.wireBytes`] = bytes;
            out[`${op.key}.wireUs`] = Math.round(wireMs * 1000);
            out[`${op.key}.latencyOverWire`] = Number(ratio.toFixed(2));
          }
          out.worstLatencyOverWire = Number(worst.toFixed(2));
          out.wireTargetMet = worst <= SERIAL_WIRE_TARGET ? 'met' : 'NOT met';
          return out;
        },
      };
    },
  };
}
