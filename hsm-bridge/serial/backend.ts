// The serial host-command backend: the `Hsm` interface over a payShield-style host-command line (async serial
// or TCP). Health is the standard NC diagnostics command; the other operations are purselab commands (lower-case
// codes). The standard key commands A0 and BU are exposed too, for talking to a real payShield.

import type {
  CipherMode,
  Hsm,
  HsmHealth,
  KeyInfo,
  KeyRef,
  KeySpec,
  KeyUsage,
  MacAlgorithm,
  SymmetricKeyType,
} from '../hsm.ts';
import { HostCommandClient, type ClientEvent, type HostCommandClientOptions } from './client.ts';
import { A0, BU, NC, pa, pc, pe, pg, pi, pk, pm, po, pq, ps, pu, pw, xa, type AnyCommand, type DiagnosticsResult, type FaultPlan } from './commands.ts';
import { SerialUsageError } from './errors.ts';
import { INTER_CHAR_MAX_MS } from './framing.ts';
import type { PaymentOps } from '../payment.ts';
import { SerialPaymentOps } from './payment.ts';
import { SerialTransport, TcpTransport, type Transport } from './transport.ts';

export type SerialLine =
  | {
      readonly kind: 'serial';
      readonly path: string;
      readonly baudRate?: number;
      /** Give up on an answer when no byte arrives for this long mid-frame (SerialTransportOptions; default 50 ms). */
      readonly interCharTimeoutMs?: number;
    }
  | { readonly kind: 'tcp'; readonly host: string; readonly port: number };

export interface SerialHsmOptions extends HostCommandClientOptions {
  readonly line: SerialLine;
}

export function makeTransport(line: SerialLine): Transport {
  if (line.kind === 'tcp') return new TcpTransport({ host: line.host, port: line.port });
  const { path, baudRate, interCharTimeoutMs } = line;
  return new SerialTransport({ path, ...(baudRate ? { baudRate } : {}), ...(interCharTimeoutMs ? { interCharTimeoutMs } : {}) });
}

/**
 * Parse "serial:/dev/ttyUSB0@115200", "/dev/ttyS0", "tcp:host:port" into a line description. A serial line may
 * end in ";inter-char-ms=N": how long a partial answer may go quiet before it is dropped (default 50 ms).
 */
export function parseLine(text: string): SerialLine {
  const tcp = /^tcp:(?:\/\/)?(.+):(\d+)$/.exec(text);
  if (tcp) return { kind: 'tcp', host: tcp[1]!, port: Number(tcp[2]) };
  const [main, ...options] = text.split(';');
  const serial = /^(?:serial:)?([^@]+)(?:@(\d+))?$/.exec(main!);
  if (!serial) throw new SerialUsageError(`cannot read line '${text}' (expected tcp:HOST:PORT or [serial:]PATH[@BAUD][;inter-char-ms=N])`);
  let interCharTimeoutMs: number | undefined;
  for (const o of options) {
    const m = /^inter-char-ms=(\d{1,5})$/.exec(o.trim());
    if (!m || Number(m[1]) < 1 || Number(m[1]) > INTER_CHAR_MAX_MS) throw new SerialUsageError(`serial line option '${o}' is not known (inter-char-ms=1..${INTER_CHAR_MAX_MS})`);
    interCharTimeoutMs = Number(m[1]);
  }
  return {
    kind: 'serial',
    path: serial[1]!,
    ...(serial[2] ? { baudRate: Number(serial[2]) } : {}),
    ...(interCharTimeoutMs ? { interCharTimeoutMs } : {}),
  };
}

/** A line description as the text parseLine reads (for a CLI argument or an HSM spec): its inverse. */
export function formatLine(line: SerialLine): string {
  if (line.kind === 'tcp') return `tcp:${line.host}:${line.port}`;
  return `${line.path}${line.baudRate ? `@${line.baudRate}` : ''}${line.interCharTimeoutMs ? `;inter-char-ms=${line.interCharTimeoutMs}` : ''}`;
}

export class SerialHsm implements Hsm {
  readonly backend = 'serial' as const;
  readonly client: HostCommandClient;
  /** Native payment operations: one host command each (q? codes), executed inside the HSM. */
  readonly payment: PaymentOps;
  private events: ((e: ClientEvent) => void)[] = [];

  constructor(options: SerialHsmOptions) {
    const { line, ...clientOptions } = options;
    this.client = new HostCommandClient(makeTransport(line), {
      ...clientOptions,
      onEvent: (e) => {
        options.onEvent?.(e);
        for (const f of this.events) f(e);
      },
    });
    this.payment = new SerialPaymentOps(this.client);
  }

  /** Listen to line events (connected, down, retry, stale, frame-error). */
  onEvent(f: (e: ClientEvent) => void): void {
    this.events.push(f);
  }

  open(): Promise<void> {
    return this.client.open();
  }

  close(): Promise<void> {
    return this.client.close();
  }

  async health(): Promise<HsmHealth> {
    const line = this.client.transport.description;
    try {
      const d = await this.diagnostics();
      return { ok: true, backend: 'serial', detail: `host-command HSM on ${line}: LMK check ${d.lmkCheck}, firmware ${d.firmware}` };
    } catch (e) {
      return { ok: false, backend: 'serial', detail: `host-command HSM on ${line}: ${(e as Error).message}` };
    }
  }

  /** NC: LMK check value and firmware number (works against a real payShield). */
  diagnostics(): Promise<DiagnosticsResult> {
    return this.client.execute(NC, undefined);
  }

  /** A0 mode 0: generate a double-length key of payShield key type `keyType` (e.g. '003' TAK), returned under the LMK (scheme U). */
  generateKeyUnderLmk(keyType: string): Promise<{ keyUnderLmk: string; kcv: string }> {
    return this.client.execute(A0, { mode: '0', keyType, keyScheme: 'U' });
  }

  /** BU: check value of a key under the LMK ('U' + 32H), 6H (default) or 16H. */
  async keyCheckValueOfToken(keyUnderLmk: string, options: { keyType?: string; long?: boolean } = {}): Promise<string> {
    const r = await this.client.execute(BU, { keyTypeCode: 'FF', keyLengthFlag: '1', key: keyUnderLmk, keyType: options.keyType ?? '000', kcvType: options.long ? '0' : '1' });
    return r.kcv;
  }

  /** Send any command of the table (e.g. payment-ops commands registered by another layer). */
  run<Req, Res>(cmd: { code: string } & AnyCommand, req: Req): Promise<Res> {
    return this.client.execute(cmd, req) as Promise<Res>;
  }

  /** Simulator only (started with --allow-faults): arm a fault for the next matching command(s). */
  armSimulatorFault(plan: Partial<FaultPlan> & Pick<FaultPlan, 'kind'>): Promise<void> {
    return this.client.execute(xa, { count: 1, ms: 0, match: '**', ...plan });
  }

  listKeys(): Promise<KeyInfo[]> {
    return this.client.execute(pa, undefined);
  }

  generateKey(ref: KeyRef, type: SymmetricKeyType, usage: readonly KeyUsage[]): Promise<KeyInfo> {
    return this.client.execute(pc, { ref, type, usage });
  }

  importKey(ref: KeyRef, type: SymmetricKeyType, usage: readonly KeyUsage[], wrapped: Buffer, kek: KeyRef): Promise<KeyInfo> {
    return this.client.execute(pe, { ref, type, usage, wrapped, kek });
  }

  keyCheckValue(key: KeySpec): Promise<Buffer> {
    return this.client.execute(pg, key);
  }

  macGenerate(key: KeySpec, algorithm: MacAlgorithm, data: Buffer): Promise<Buffer> {
    return this.client.execute(pi, { key, algorithm, data });
  }

  macVerify(key: KeySpec, algorithm: MacAlgorithm, data: Buffer, mac: Buffer): Promise<boolean> {
    return this.client.execute(pk, { key, algorithm, data, mac });
  }

  encrypt(key: KeySpec, mode: CipherMode, iv: Buffer, data: Buffer): Promise<Buffer> {
    return this.client.execute(pm, { key, mode, iv, data });
  }

  decrypt(key: KeySpec, mode: CipherMode, iv: Buffer, data: Buffer): Promise<Buffer> {
    return this.client.execute(po, { key, mode, iv, data });
  }

  randomBytes(length: number): Promise<Buffer> {
    return this.client.execute(pq, length);
  }

  async generateRsaKeyPair(ref: KeyRef, bits: 2048, usage?: readonly KeyUsage[]): Promise<{ publicKeyDer: Buffer }> {
    return { publicKeyDer: await this.client.execute(ps, usage === undefined ? { ref, bits } : { ref, bits, usage }) };
  }

  sign(key: KeyRef, data: Buffer): Promise<Buffer> {
    return this.client.execute(pu, { key, data });
  }

  verify(key: KeyRef, data: Buffer, signature: Buffer): Promise<boolean> {
    return this.client.execute(pw, { key, data, signature });
  }
}
